//! The VIPs, clients and frames the BPF_PROG_TEST_RUN fixture files share.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use herald_ebpf::abi::FlowKey;
use herald_ebpf::hash::flow_hash;
use herald_ebpf::{Balancer, LoadOptions};

use super::packet::*;
use super::*;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

pub fn backends4() -> Vec<(u32, IpAddr)> {
    (0..3)
        .map(|i| (i, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1 + i as u8))))
        .collect()
}

pub fn backends6() -> Vec<(u32, IpAddr)> {
    (0..3)
        .map(|i| {
            (
                10 + i,
                IpAddr::V6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1 + i as u16)),
            )
        })
        .collect()
}

pub fn web() -> Service {
    Service::new(IpAddr::V4(VIP), 80, TCP, 0, &backends4())
}

pub fn load() -> Balancer {
    Balancer::load(&LoadOptions::default()).expect("loading the balancer")
}

pub fn syn4(sport: u16) -> (Vec<u8>, Vec<u8>) {
    let ip = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(sport, 80, SYN, b""));
    (eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip), ip)
}

/// A flow's first two packets from CLIENT to VIP:80 (a SYN, then an ACK) on the calling
/// thread's CPU, both forwarded: the SYN caches the flow, the ACK stores it in that CPU's
/// flow table.
pub fn open4(prog: &Xdp, sport: u16) {
    let ack = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(sport, 80, ACK, b""));
    for (what, frame) in [
        ("syn", syn4(sport).0),
        ("ack", eth(LB_MAC, CLIENT_MAC, ETH_IP, &ack)),
    ] {
        let (verdict, _) = run(prog, &frame);
        assert_eq!(verdict, XDP_REDIRECT, "{what} of port {sport} is forwarded");
    }
}

pub fn key4(sport: u16, dport: u16, proto: u8) -> FlowKey {
    FlowKey::new(IpAddr::V4(CLIENT), sport, IpAddr::V4(VIP), dport, proto)
}

/// The fixture for a client packet `ip` that must be encapsulated to `svc`'s choice.
pub fn forwarded(name: &str, svc: &Service, key: &FlowKey, frame: Vec<u8>, ip: &[u8]) -> Fixture {
    let (_, backend) = svc.choice(key);
    forwarded_to(name, backend, key, frame, ip)
}

pub fn forwarded_to(
    name: &str,
    backend: IpAddr,
    key: &FlowKey,
    frame: Vec<u8>,
    ip: &[u8],
) -> Fixture {
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

/// A client port whose flow the table sends to a different backend after `changed`.
pub fn port_that_moves(before: &Service, after: &Service) -> u16 {
    (20000..30000)
        .find(|&p| {
            let k = key4(p, 80, TCP);
            let old = before.choice(&k).0;
            old != after.choice(&k).0 && after.backends.iter().any(|b| b.0 == old)
        })
        .expect("some flow moves when a backend is added")
}

/// web on backends 0 and 1 (`before`), then with backend 2 added (`after`), and a client
/// port whose flow the change moves: what a stored flow must hold on to.
pub fn moving_service() -> (Service, Service, u16) {
    let before = Service::new(IpAddr::V4(VIP), 80, TCP, 0, &backends4()[..2]);
    let mut after = before.clone();
    after
        .backends
        .push((2, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3)), 1));
    after.rebuild();
    let port = port_that_moves(&before, &after);
    (before, after, port)
}

/// An ICMPv4 destination-unreachable/fragmentation-needed from a router on the way back to
/// the client, quoting a packet the backend sent (VIP:80 -> client:sport).
pub fn icmp_frag_needed(sport: u16) -> Vec<u8> {
    let quoted = ipv4(VIP, CLIENT, TCP, 0x4000, &tcp(80, sport, ACK, b""));
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&quoted[..28]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(Ipv4Addr::new(203, 0, 113, 1), VIP, 1, 0, &icmp)
}
