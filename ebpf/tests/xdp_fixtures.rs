//! The XDP balancer through BPF_PROG_TEST_RUN, forwarding: packet fixtures (input, expected
//! verdict, expected output bytes) in a namespace laid out like a balancer host. The expected
//! backend of a new flow comes from the speaker's Maglev table and the Rust mirror of the flow
//! hash. Edge cases (fragments, malformed headers, ICMP, drops) are in `xdp_edge_cases.rs`.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::packet::*;
use common::vip::*;
use common::*;
use herald_dataplane::maglev::{self, TableSize};
use herald_ebpf::abi::{Backend, FlowKey};
use herald_ebpf::hash::flow_hash;

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
        // Every SYN cached its flow, pending: the table gets it with the flow's next packet.
        assert_eq!(bal.flow_count().unwrap(), 0);
        let cached = bal.cached_flows(&key4(40000, 80, TCP)).unwrap();
        assert_eq!(cached.len(), 1, "cached on this CPU");
        assert_eq!(cached[0].1.pending, 1);
        let flow = cached[0].1.flow;
        assert_eq!(flow.backend, svc.choice(&key4(40000, 80, TCP)).0);
        assert_eq!(
            flow.hash,
            flow_hash(&key4(40000, 80, TCP)),
            "the flow keeps its hash"
        );
    });
}

#[test]
fn tables_of_any_size_pick_slot_hash_mod_size_and_a_resize_takes_effect_at_once() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let mut svc = web();
        // Sizes the speaker may configure (primes), far from the default, one after the
        // other on the same VIP: the program must take M from the table it reads.
        for size in [13u32, 251, 65_537, 7] {
            let backends: Vec<maglev::Backend> = svc
                .backends
                .iter()
                .map(|&(id, key, weight)| maglev::Backend { id, key, weight })
                .collect();
            svc.table = maglev::build_table(&backends, TableSize::new(size).unwrap()).unwrap();
            svc.install(&mut bal);
            let fx: Vec<Fixture> = (50000..50040)
                .map(|sport| {
                    let (syn, ip) = syn4(sport);
                    forwarded(
                        &format!("size {size}, port {sport}"),
                        &svc,
                        &key4(sport, 80, TCP),
                        syn,
                        &ip,
                    )
                })
                .collect();
            check(bal.program(), &fx);
        }
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

#[test]
fn established_flow_stays_on_its_backend_after_the_backend_set_changes() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let (before, after, port) = moving_service();
        before.install(&mut bal);
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
        // The re-SYN's choice replaces the stored flow with the tuple's next packet.
        assert_eq!(
            bal.flow(&key).unwrap().map(|f| f.backend),
            Some(before.choice(&key).0)
        );
        check(
            bal.program(),
            &[forwarded_to(
                "the new connection's ack",
                new,
                &key,
                eth(LB_MAC, CLIENT_MAC, ETH_IP, &ack_ip),
                &ack_ip,
            )],
        );
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

#[test]
fn removing_a_vip_passes_its_traffic_and_keeps_other_ports_of_the_address() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let web = web();
        let tls = Service::new(IpAddr::V4(VIP), 443, TCP, 1, &backends4());
        web.install(&mut bal);
        tls.install(&mut bal);
        bal.remove_vip(&web.key).unwrap();

        let (syn80, _) = syn4(3333);
        let ip443 = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(3333, 443, SYN, b""));
        check(
            bal.program(),
            &[
                Fixture::pass("removed VIP", syn80),
                forwarded(
                    "same address, other port",
                    &tls,
                    &key4(3333, 443, TCP),
                    eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip443),
                    &ip443,
                ),
            ],
        );
        bal.remove_vip(&tls.key).unwrap();
        let frame = eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip443);
        check(
            bal.program(),
            &[Fixture::pass("last VIP of the address removed", frame)],
        );
    });
}

#[test]
fn established_flows_of_a_removed_vip_pass_and_are_not_trusted_when_it_returns() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let web = web();
        // Another port of the address keeps the address filter's bit set, so the ACKs below
        // reach the flow table rather than passing at the filter.
        let tls = Service::new(IpAddr::V4(VIP), 443, TCP, 1, &backends4());
        web.install(&mut bal);
        tls.install(&mut bal);
        let key = key4(5151, 80, TCP);
        let (syn, syn_ip) = syn4(5151);
        let ack_ip = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(5151, 80, ACK, b"data"));
        let ack = eth(LB_MAC, CLIENT_MAC, ETH_IP, &ack_ip);
        check(
            bal.program(),
            &[
                forwarded("syn", &web, &key, syn, &syn_ip),
                forwarded("ack of the stored flow", &web, &key, ack.clone(), &ack_ip),
            ],
        );
        assert_eq!(bal.vip_stats(0).unwrap().lru_hit, 1, "the ack hit the flow");

        bal.remove_vip(&web.key).unwrap();
        assert!(
            bal.flow(&key).unwrap().is_some(),
            "the flow is still stored"
        );
        check(
            bal.program(),
            &[Fixture::pass("ack after its VIP is removed", ack.clone())],
        );
        assert_eq!(
            bal.vip_stats(0).unwrap().lru_hit,
            1,
            "no hit on a removed VIP"
        );

        // Back under the same id: the old flow is not trusted, the table decides again.
        web.install(&mut bal);
        let misses = bal.vip_stats(0).unwrap().lru_miss;
        check(
            bal.program(),
            &[forwarded(
                "ack after the VIP is back",
                &web,
                &key,
                ack.clone(),
                &ack_ip,
            )],
        );
        assert_eq!(bal.vip_stats(0).unwrap().lru_miss, misses + 1);
        // ... and stored it again, so the next packet hits.
        check(
            bal.program(),
            &[forwarded("next ack", &web, &key, ack, &ack_ip)],
        );
        assert_eq!(bal.vip_stats(0).unwrap().lru_hit, 2);
    });
}
