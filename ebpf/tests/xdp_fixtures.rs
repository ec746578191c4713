//! The XDP balancer through BPF_PROG_TEST_RUN: packet fixtures (input, expected verdict,
//! expected output bytes) in a namespace laid out like a balancer host. The expected backend
//! of a new flow comes from the speaker's Maglev table and the Rust mirror of the flow hash.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::packet::*;
use common::*;
use herald_ebpf::abi::{Backend, DropReason, Event, FlowKey};
use herald_ebpf::hash::flow_hash;
use herald_ebpf::{Balancer, LoadOptions};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

fn backends4() -> Vec<(u32, IpAddr)> {
    (0..3)
        .map(|i| (i, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1 + i as u8))))
        .collect()
}

fn backends6() -> Vec<(u32, IpAddr)> {
    (0..3)
        .map(|i| {
            (
                10 + i,
                IpAddr::V6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1 + i as u16)),
            )
        })
        .collect()
}

fn web() -> Service {
    Service::new(IpAddr::V4(VIP), 80, TCP, 0, &backends4())
}

fn load() -> Balancer {
    Balancer::load(&LoadOptions::default()).expect("loading the balancer")
}

fn syn4(sport: u16) -> (Vec<u8>, Vec<u8>) {
    let ip = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(sport, 80, SYN, b""));
    (eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip), ip)
}

fn key4(sport: u16, dport: u16, proto: u8) -> FlowKey {
    FlowKey::new(IpAddr::V4(CLIENT), sport, IpAddr::V4(VIP), dport, proto)
}

/// The fixture for a client packet `ip` that must be encapsulated to `svc`'s choice.
fn forwarded(name: &str, svc: &Service, key: &FlowKey, frame: Vec<u8>, ip: &[u8]) -> Fixture {
    let (_, backend) = svc.choice(key);
    forwarded_to(name, backend, key, frame, ip)
}

fn forwarded_to(name: &str, backend: IpAddr, key: &FlowKey, frame: Vec<u8>, ip: &[u8]) -> Fixture {
    let h = flow_hash(key);
    let output = match backend {
        IpAddr::V4(b) => encap_v4(b, h, ip[1], ip),
        IpAddr::V6(b) => encap_v6(
            b,
            h,
            (u32::from_be_bytes([ip[0], ip[1], ip[2], ip[3]]) >> 20) as u8,
            ip,
        ),
    };
    Fixture {
        name: name.to_owned(),
        input: frame,
        verdict: XDP_REDIRECT,
        output,
    }
}

#[test]
fn non_vip_traffic_and_other_ports_pass_untouched() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        web().install(&mut bal);
        let other = Ipv4Addr::new(192, 0, 2, 99);
        let fx = vec![
            Fixture::pass(
                "tcp to another address",
                eth(
                    LB_MAC,
                    CLIENT_MAC,
                    ETH_IP,
                    &ipv4(CLIENT, other, TCP, 0, &tcp(1, 80, SYN, b"")),
                ),
            ),
            Fixture::pass(
                "tcp to the VIP on another port",
                eth(
                    LB_MAC,
                    CLIENT_MAC,
                    ETH_IP,
                    &ipv4(CLIENT, VIP, TCP, 0, &tcp(1, 81, SYN, b"")),
                ),
            ),
            Fixture::pass(
                "udp to the VIP's tcp port",
                eth(
                    LB_MAC,
                    CLIENT_MAC,
                    ETH_IP,
                    &ipv4(CLIENT, VIP, UDP, 0, &udp(1, 80, b"x")),
                ),
            ),
            Fixture::pass(
                "icmp echo to the VIP",
                eth(
                    LB_MAC,
                    CLIENT_MAC,
                    ETH_IP,
                    &ipv4(CLIENT, VIP, 1, 0, &[8, 0, 0, 0, 0, 1, 0, 1]),
                ),
            ),
            Fixture::pass("arp", eth([0xff; 6], CLIENT_MAC, 0x0806, &[0u8; 28])),
        ];
        check(bal.program(), &fx);
        assert_eq!(
            bal.vip_stats(0).unwrap().packets,
            0,
            "no VIP packet counted"
        );
    });
}

#[test]
fn tcp_syn_is_encapsulated_to_the_maglev_choice() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let svc = web();
        svc.install(&mut bal);
        let mut fx = Vec::new();
        let mut per_backend = [0u64; 3];
        for sport in 40000..40030 {
            let (frame, ip) = syn4(sport);
            let key = key4(sport, 80, TCP);
            per_backend[svc.choice(&key).0 as usize] += 1;
            fx.push(forwarded(
                &format!("syn from port {sport}"),
                &svc,
                &key,
                frame,
                &ip,
            ));
        }
        assert!(
            per_backend.iter().filter(|&&n| n > 0).count() >= 2,
            "the fixture ports should reach more than one backend: {per_backend:?}"
        );
        check(bal.program(), &fx);
        assert_eq!(bal.vip_stats(0).unwrap().packets, 30);
        for (id, n) in per_backend.iter().enumerate() {
            assert_eq!(
                bal.backend_counter(id as u32).unwrap().packets,
                *n,
                "backend {id}"
            );
        }
        assert_eq!(bal.lru_stats().unwrap().1, 30);
        // Every SYN stored its flow.
        let flow = bal
            .flow(&key4(40000, 80, TCP))
            .unwrap()
            .expect("flow stored");
        assert_eq!(flow.backend, svc.choice(&key4(40000, 80, TCP)).0);
    });
}

#[test]
fn all_ports_vip_matches_every_port_and_an_exact_port_wins() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let all = Service::new(IpAddr::V4(VIP), 0, TCP, 3, &backends4()[..1]);
        let exact = Service::new(IpAddr::V4(VIP), 443, TCP, 4, &backends4()[2..]);
        all.install(&mut bal);
        exact.install(&mut bal);
        let mut fx = Vec::new();
        for dport in [22u16, 8080, 443] {
            let ip = ipv4(CLIENT, VIP, TCP, 0, &tcp(5555, dport, SYN, b""));
            let key = key4(5555, dport, TCP);
            let svc = if dport == 443 { &exact } else { &all };
            fx.push(forwarded(
                &format!("port {dport}"),
                svc,
                &key,
                eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip),
                &ip,
            ));
        }
        check(bal.program(), &fx);
        assert_eq!(bal.vip_stats(3).unwrap().packets, 2);
        assert_eq!(bal.vip_stats(4).unwrap().packets, 1);
    });
}

/// A client port whose flow the table sends to a different backend after `changed`.
fn port_that_moves(before: &Service, after: &Service) -> u16 {
    (20000..30000)
        .find(|&p| {
            let k = key4(p, 80, TCP);
            let old = before.choice(&k).0;
            old != after.choice(&k).0 && after.backends.iter().any(|b| b.0 == old)
        })
        .expect("some flow moves when a backend is added")
}

#[test]
fn established_flow_stays_on_its_backend_after_the_backend_set_changes() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let before = Service::new(IpAddr::V4(VIP), 80, TCP, 0, &backends4()[..2]);
        before.install(&mut bal);
        let mut after = before.clone();
        after
            .backends
            .push((2, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3)), 1));
        after.rebuild();
        let port = port_that_moves(&before, &after);
        let key = key4(port, 80, TCP);
        let (_, old) = before.choice(&key);
        let (_, new) = after.choice(&key);

        let (syn, syn_ip) = syn4(port);
        check(
            bal.program(),
            &[forwarded_to(
                "syn before the change",
                old,
                &key,
                syn.clone(),
                &syn_ip,
            )],
        );
        after.install(&mut bal);

        let ack_ip = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(port, 80, ACK, b"data"));
        let rst_ip = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(port, 80, RST | ACK, b""));
        let new_port = (port + 1..port + 2000)
            .find(|&p| after.choice(&key4(p, 80, TCP)).1 == new)
            .expect("a port the new table maps like the moved flow");
        let (fresh, fresh_ip) = syn4(new_port);
        check(
            bal.program(),
            &[
                forwarded_to(
                    "ack stays on the old backend",
                    old,
                    &key,
                    eth(LB_MAC, CLIENT_MAC, ETH_IP, &ack_ip),
                    &ack_ip,
                ),
                forwarded_to(
                    "rst stays on the old backend",
                    old,
                    &key,
                    eth(LB_MAC, CLIENT_MAC, ETH_IP, &rst_ip),
                    &rst_ip,
                ),
                forwarded_to(
                    "a new flow uses the new table",
                    new,
                    &key4(new_port, 80, TCP),
                    fresh,
                    &fresh_ip,
                ),
                forwarded_to(
                    "a new syn on the same tuple picks afresh",
                    new,
                    &key,
                    syn,
                    &syn_ip,
                ),
            ],
        );
        assert!(bal.lru_stats().unwrap().0 >= 2);
        // The re-SYN replaced the stored flow.
        assert_eq!(
            bal.flow(&key).unwrap().map(|f| f.backend),
            Some(after.choice(&key).0)
        );
    });
}

#[test]
fn flow_whose_backend_is_removed_falls_back_to_the_table() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let before = web();
        before.install(&mut bal);
        let key = key4(4242, 80, TCP);
        let (old_id, old) = before.choice(&key);
        let (syn, syn_ip) = syn4(4242);
        check(
            bal.program(),
            &[forwarded_to("syn", old, &key, syn, &syn_ip)],
        );

        let mut after = before.clone();
        after.backends.retain(|b| b.0 != old_id);
        after.rebuild();
        after.install(&mut bal);
        bal.remove_backend(old_id).unwrap();
        let ack = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(4242, 80, ACK, b""));
        let (_, new) = after.choice(&key);
        assert_ne!(new, old);
        check(
            bal.program(),
            &[forwarded_to(
                "ack after removal",
                new,
                &key,
                eth(LB_MAC, CLIENT_MAC, ETH_IP, &ack),
                &ack,
            )],
        );
    });
}

#[test]
fn udp_to_a_udp_vip_is_encapsulated() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let dns = Service::new(IpAddr::V4(VIP), 53, UDP, 1, &backends4());
        dns.install(&mut bal);
        let fx: Vec<Fixture> = (3000..3010)
            .map(|sport| {
                let ip = ipv4(CLIENT, VIP, UDP, 0, &udp(sport, 53, b"query"));
                let key = key4(sport, 53, UDP);
                forwarded(
                    &format!("udp {sport}"),
                    &dns,
                    &key,
                    eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip),
                    &ip,
                )
            })
            .collect();
        check(bal.program(), &fx);
    });
}

#[test]
fn ipv6_is_encapsulated_in_ipv6() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let svc = Service::new(IpAddr::V6(VIP6), 443, TCP, 2, &backends6());
        svc.install(&mut bal);
        let fx: Vec<Fixture> = (50000..50010)
            .map(|sport| {
                let ip = ipv6_vtc(CLIENT6, VIP6, TCP, 0x6b80_0000, &tcp(sport, 443, SYN, b""));
                let key = FlowKey::new(IpAddr::V6(CLIENT6), sport, IpAddr::V6(VIP6), 443, TCP);
                forwarded(
                    &format!("v6 syn {sport}"),
                    &svc,
                    &key,
                    eth(LB_MAC, CLIENT_MAC, ETH_IPV6, &ip),
                    &ip,
                )
            })
            .collect();
        check(bal.program(), &fx);
        // A v6 packet to a v4-only port and a v6 non-VIP pass.
        let other = ipv6(CLIENT6, VIP6, TCP, &tcp(1, 80, SYN, b""));
        check(
            bal.program(),
            &[Fixture::pass(
                "v6 other port",
                eth(LB_MAC, CLIENT_MAC, ETH_IPV6, &other),
            )],
        );
    });
}

#[test]
fn vlan_tagged_frames_are_encapsulated_untagged() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let svc = web();
        svc.install(&mut bal);
        let ip = ipv4_tos(CLIENT, VIP, TCP, 0x4000, 0x28, &tcp(7000, 80, SYN, b""));
        let key = key4(7000, 80, TCP);
        let frame = eth_vlan(LB_MAC, CLIENT_MAC, 42, ETH_IP, &ip);
        let other = eth_vlan(
            LB_MAC,
            CLIENT_MAC,
            42,
            ETH_IP,
            &ipv4(CLIENT, VIP, TCP, 0, &tcp(1, 81, SYN, b"")),
        );
        let qinq = {
            let mut f = eth_vlan(LB_MAC, CLIENT_MAC, 42, 0x8100, &[0, 7, 8, 0]);
            f.extend_from_slice(&ip);
            f
        };
        check(
            bal.program(),
            &[
                forwarded("tagged syn (tos copied)", &svc, &key, frame, &ip),
                Fixture::pass("tagged, other port", other),
                Fixture::pass("two tags", qinq),
            ],
        );
    });
}

#[test]
fn fragments_pass_untouched() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        web().install(&mut bal);
        let mut frag6 = vec![TCP, 0, 0, 1, 0, 0, 0, 9]; // fragment header, offset 0, M=1
        frag6.extend_from_slice(&tcp(1, 80, SYN, b""));
        let mut svc6 = Service::new(IpAddr::V6(VIP6), 80, TCP, 2, &backends6());
        svc6.rebuild();
        svc6.install(&mut bal);
        check(
            bal.program(),
            &[
                Fixture::pass(
                    "first fragment (MF)",
                    eth(
                        LB_MAC,
                        CLIENT_MAC,
                        ETH_IP,
                        &ipv4(CLIENT, VIP, TCP, 0x2000, &tcp(1, 80, SYN, b"")),
                    ),
                ),
                Fixture::pass(
                    "later fragment (offset)",
                    eth(
                        LB_MAC,
                        CLIENT_MAC,
                        ETH_IP,
                        &ipv4(CLIENT, VIP, TCP, 0x0010, &[0u8; 24]),
                    ),
                ),
                Fixture::pass(
                    "ipv6 fragment header",
                    eth(
                        LB_MAC,
                        CLIENT_MAC,
                        ETH_IPV6,
                        &ipv6(CLIENT6, VIP6, 44, &frag6),
                    ),
                ),
            ],
        );
        assert_eq!(bal.vip_stats(0).unwrap().packets, 0);
    });
}

/// An ICMPv4 destination-unreachable/fragmentation-needed from a router on the way back to
/// the client, quoting a packet the backend sent (VIP:80 -> client:sport).
fn icmp_frag_needed(sport: u16) -> Vec<u8> {
    let quoted = ipv4(VIP, CLIENT, TCP, 0x4000, &tcp(80, sport, ACK, b""));
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&quoted[..28]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(Ipv4Addr::new(203, 0, 113, 1), VIP, 1, 0, &icmp)
}

#[test]
fn icmp_error_follows_its_flow() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let before = Service::new(IpAddr::V4(VIP), 80, TCP, 0, &backends4()[..2]);
        before.install(&mut bal);
        let mut after = before.clone();
        after
            .backends
            .push((2, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3)), 1));
        after.rebuild();
        let port = port_that_moves(&before, &after);
        let key = key4(port, 80, TCP);
        let (syn, syn_ip) = syn4(port);
        let (_, old) = before.choice(&key);
        check(
            bal.program(),
            &[forwarded_to("syn", old, &key, syn, &syn_ip)],
        );
        after.install(&mut bal);

        let icmp = icmp_frag_needed(port);
        // Unknown flow: the ICMP error goes where the table would send the flow.
        let unknown = (port + 1..port + 100).next().unwrap();
        let unknown_key = key4(unknown, 80, TCP);
        let icmp_unknown = icmp_frag_needed(unknown);
        check(
            bal.program(),
            &[
                forwarded_to(
                    "icmp for a known flow",
                    old,
                    &key,
                    eth(LB_MAC, CLIENT_MAC, ETH_IP, &icmp),
                    &icmp,
                ),
                forwarded(
                    "icmp for an unknown flow",
                    &after,
                    &unknown_key,
                    eth(LB_MAC, CLIENT_MAC, ETH_IP, &icmp_unknown),
                    &icmp_unknown,
                ),
            ],
        );
        assert_eq!(bal.events(Event::IcmpFollowed).unwrap(), 2);
        assert_eq!(
            bal.flow(&unknown_key).unwrap(),
            None,
            "ICMP errors never create flows"
        );
    });
}

#[test]
fn truncated_and_malformed_headers_never_forward() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        web().install(&mut bal);
        let svc6 = Service::new(IpAddr::V6(VIP6), 443, TCP, 2, &backends6());
        svc6.install(&mut bal);
        let mut fx = Vec::new();
        // Every truncation of VIP packets, IPv4, IPv6, VLAN and ICMP error alike.
        let v4 = syn4(9000).0;
        let v6 = eth(
            LB_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, TCP, &tcp(9000, 443, SYN, b"")),
        );
        let vlan = eth_vlan(LB_MAC, CLIENT_MAC, 7, ETH_IP, &syn4(9000).1);
        let icmp = eth(LB_MAC, CLIENT_MAC, ETH_IP, &icmp_frag_needed(9000));
        for (what, frame) in [("v4", v4), ("v6", v6), ("vlan", vlan), ("icmp", icmp)] {
            for len in 14..frame.len() {
                fx.push(Fixture::pass(
                    &format!("{what} cut to {len}"),
                    frame[..len].to_vec(),
                ));
            }
        }
        // Inconsistent headers.
        let mut bad_ihl = syn4(9001).0;
        bad_ihl[14] = 0x44;
        let mut bad_version = syn4(9001).0;
        bad_version[14] = 0x55;
        let mut long_total = syn4(9001).0;
        long_total[16..18].copy_from_slice(&200u16.to_be_bytes());
        let mut short_total = syn4(9001).0;
        short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
        let mut bad_doff = syn4(9001).0;
        bad_doff[14 + 20 + 12] = 0x40;
        let mut big_ihl = syn4(9001).0;
        big_ihl[14] = 0x4f; // 60-byte header in a 40-byte packet
        for (name, frame) in [
            ("ihl 4", bad_ihl),
            ("version 5", bad_version),
            ("total length beyond the frame", long_total),
            ("total length below the header", short_total),
            ("tcp data offset 4", bad_doff),
            ("ihl beyond the packet", big_ihl),
        ] {
            fx.push(Fixture::pass(name, frame));
        }
        check(bal.program(), &fx);
        assert_eq!(bal.vip_stats(0).unwrap().packets, 0);
        assert_eq!(bal.flow_count().unwrap(), 0);
    });
}

#[test]
fn oversized_packets_get_an_icmp_too_big_answer() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        web().install(&mut bal);
        let svc6 = Service::new(IpAddr::V6(VIP6), 443, TCP, 2, &backends6());
        svc6.install(&mut bal);

        // 1500-byte IPv4 packet: with 20 bytes of IPIP it exceeds the uplink MTU of 1500.
        let ip = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(9100, 80, ACK, &[0xab; 1460]));
        let (verdict, out) = run(bal.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip));
        assert_eq!(verdict, XDP_TX);
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&1480u16.to_be_bytes());
        icmp.extend_from_slice(&ip[..28]);
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut reply = ipv4(VIP, CLIENT, 1, 0, &icmp);
        reply[4..6].copy_from_slice(&[0, 0]); // id 0
        reply[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&reply[..20]);
        reply[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            hex(&out),
            hex(&eth(CLIENT_MAC, LB_MAC, ETH_IP, &reply)),
            "IPv4 answer"
        );

        // IPv6: 1480 + 40 outer > 1500; the answer quotes 128 bytes and says 1460.
        let ip6 = ipv6(CLIENT6, VIP6, TCP, &tcp(9100, 443, ACK, &[0xcd; 1420]));
        let (verdict, out) = run(bal.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IPV6, &ip6));
        assert_eq!(verdict, XDP_TX);
        let mut msg = vec![2, 0, 0, 0];
        msg.extend_from_slice(&1460u32.to_be_bytes());
        msg.extend_from_slice(&ip6[..128]);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&VIP6.octets());
        pseudo.extend_from_slice(&CLIENT6.octets());
        pseudo.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(&msg);
        let c = checksum(&pseudo);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let reply6 = ipv6(VIP6, CLIENT6, 58, &msg);
        assert_eq!(
            hex(&out),
            hex(&eth(CLIENT_MAC, LB_MAC, ETH_IPV6, &reply6)),
            "IPv6 answer"
        );

        assert_eq!(bal.events(Event::IcmpTooBig).unwrap(), 2);
        // One byte less fits and is forwarded.
        let fits = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(9100, 80, ACK, &[0xab; 1440]));
        let (verdict, _) = run(bal.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IP, &fits));
        assert_eq!(verdict, XDP_REDIRECT);
    });
}

#[test]
fn local_backend_passes_up_and_vip_without_table_drops_counted() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let svc = Service::new(IpAddr::V4(VIP), 80, TCP, 0, &backends4()[..1]);
        svc.install(&mut bal);
        bal.set_backend(0, &Backend::new(svc.backends[0].1, true))
            .unwrap();
        let (syn, _) = syn4(1234);
        check(bal.program(), &[Fixture::pass("local backend", syn)]);
        assert_eq!(bal.events(Event::Local).unwrap(), 1);

        let tableless = herald_ebpf::abi::VipKey::new(IpAddr::V4(VIP), 8080, TCP);
        bal.set_vip(&tableless, 9).unwrap();
        let ip = ipv4(CLIENT, VIP, TCP, 0, &tcp(1, 8080, SYN, b""));
        let (verdict, _) = run(bal.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip));
        assert_eq!(verdict, XDP_DROP);
        assert_eq!(bal.drops(DropReason::NoBackend).unwrap(), 1);
    });
}

#[test]
fn flood_of_new_flows_skips_flow_inserts_but_still_forwards() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let svc = web();
        svc.install(&mut bal);
        let mut cfg = bal.config().unwrap();
        cfg.max_new_flows = 5;
        bal.set_config(&cfg).unwrap();
        let fx: Vec<Fixture> = (100..120)
            .map(|p| {
                let (frame, ip) = syn4(p);
                forwarded(&format!("syn {p}"), &svc, &key4(p, 80, TCP), frame, &ip)
            })
            .collect();
        check(bal.program(), &fx);
        // All 20 within one second on one CPU: 5 stored, 15 skipped.
        assert_eq!(bal.flow_count().unwrap(), 5);
        assert_eq!(bal.events(Event::FlowSkipped).unwrap(), 15);
    });
}

#[test]
fn a_backend_moved_behind_another_next_hop_is_reached_at_once() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let mut svc = Service::new(IpAddr::V4(VIP), 80, TCP, 0, &backends4()[..1]);
        svc.install(&mut bal);
        let key = key4(6000, 80, TCP);
        let (syn, syn_ip) = syn4(6000);
        check(
            bal.program(),
            &[forwarded(
                "before the move",
                &svc,
                &key,
                syn.clone(),
                &syn_ip,
            )],
        );

        // Same id, new address behind 10.0.0.3: the cached next hop must not be used.
        let moved = Ipv4Addr::new(10, 2, 0, 1);
        svc.backends[0].1 = IpAddr::V4(moved);
        bal.set_backend(0, &Backend::new(IpAddr::V4(moved), false))
            .unwrap();
        let mut want = encap_v4(moved, flow_hash(&key), syn_ip[1], &syn_ip);
        want[..6].copy_from_slice(&ROUTER2_MAC);
        check(
            bal.program(),
            &[Fixture {
                name: "after the move".to_owned(),
                input: syn,
                verdict: XDP_REDIRECT,
                output: want,
            }],
        );
    });
}
