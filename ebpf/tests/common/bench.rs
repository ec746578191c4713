//! The benchmark's setup, shared by `benches/xdp.rs` and the CI guard on its ratios
//! (`tests/bench_guard.rs`): the bench build with one IPv4 TCP VIP of 10 backends, and the
//! frames it is timed with.

use std::net::{IpAddr, Ipv4Addr};

use herald_ebpf::{Balancer, LoadOptions, Variant};

use super::packet::*;
use super::*;

/// The loaded bench build and its three frames.
pub struct BenchLab {
    /// The bench build (`-DHERALD_BENCH`: forwarded frames are restored).
    pub balancer: Balancer,
    /// An ACK to an address that is no VIP: passed up.
    pub non_vip: Vec<u8>,
    /// A SYN to the VIP: Maglev lookup, flow cached as pending, IPIP.
    pub syn: Vec<u8>,
    /// An ACK of the SYN's flow: a flow-cache hit.
    pub ack: Vec<u8>,
}

/// Loads the bench build in the current namespace (one made by [`in_lb_netns`]) and checks
/// that both VIP frames are forwarded and handed back unchanged, so that every repeat of a
/// timed run sees the client's packet; the SYN also caches the flow, which the ACK then
/// stores in the table and hits in the cache from then on.
pub fn bench_lab() -> BenchLab {
    let mut balancer = Balancer::load(&LoadOptions {
        variant: Variant::Bench,
        ..LoadOptions::default()
    })
    .expect("loading the bench build");
    let vip = Ipv4Addr::new(192, 0, 2, 10);
    let backends: Vec<(u32, IpAddr)> = (0..10)
        .map(|i| (i, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1 + i as u8))))
        .collect();
    Service::new(IpAddr::V4(vip), 80, TCP, 0, &backends).install(&mut balancer);
    let client = Ipv4Addr::new(198, 51, 100, 7);
    let frame = |dst: Ipv4Addr, flags: u8| {
        eth(
            LB_MAC,
            CLIENT_MAC,
            ETH_IP,
            &ipv4(client, dst, TCP, 0x4000, &tcp(40000, 80, flags, &[0; 18])),
        )
    };
    let lab = BenchLab {
        non_vip: frame(Ipv4Addr::new(192, 0, 2, 99), ACK),
        syn: frame(vip, SYN),
        ack: frame(vip, ACK),
        balancer,
    };
    for (name, input) in [("syn", &lab.syn), ("ack", &lab.ack)] {
        let (verdict, out) = run(lab.balancer.program(), input);
        assert_eq!(verdict, XDP_REDIRECT, "{name} is forwarded");
        assert_eq!(&out, input, "{name}: the bench build restores the frame");
    }
    lab
}
