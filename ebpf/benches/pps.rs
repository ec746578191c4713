//! Packets per second one balancer host forwards: the XDP path against the kernel doing the
//! same balancing the way kube-proxy's iptables mode does (DNAT chosen by the `statistic`
//! match, conntrack keeping the flow), on the same topology in the same run.
//!
//! ```text
//!              ┌── veth ──> lb0    (XDP: send straight back)                 ──┐
//!   router ────┼── veth ──> lb-xdp (herald_xdp: IPIP to a backend, XDP_TX)   ──┼──> router: sink
//!  (generator) └── veth ──> lb-ipt (kernel: iptables DNAT + statistic, fwd)  ──┘    (XDP, counts)
//! ```
//!
//! The generator is BPF_PROG_RUN in live-frame mode in the router namespace: an XDP program
//! writes a 64-byte UDP frame to the VIP and transmits it towards one balancer; whatever the
//! balancer sends back to the router is counted and dropped by an XDP sink. On veth all of it
//! runs on the generating CPU, so frames/s measures the whole chain. `lb0` (an XDP program
//! that only sends the frame back) measures the chain without a balancer; subtracting its
//! per-packet time leaves what each balancer costs per packet, and the inverse of that is the
//! rate one core of the balancer host sustains. One UDP flow (after the first packet an
//! established flow for both: flow-table hit / conntrack hit); 1M frames per sample, median
//! of 7 samples, the three configurations interleaved.
//!
//! Needs root and iptables: `cargo bench -p herald-ebpf --bench pps`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp};
use common::packet::*;
use common::*;
use herald_ebpf::balancer::{EMPTY_PROGRAM, SINK_PROGRAM, TX_PROGRAM};
use herald_ebpf::{Balancer, LoadOptions, Variant, XdpMode};
use herald_tests::{Netns, veth_pair};

const FRAMES: u32 = 1_000_000;
const SAMPLES: usize = 7;
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);

fn inside<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread();
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn ifindex(ns: &Netns, ifname: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", ifname]);
    out.split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("ifindex")
}

fn mac(ns: &Netns, ifname: &str) -> [u8; 6] {
    let out = ns.ip(&["-o", "link", "show", "dev", ifname]);
    let s = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("link/ether");
    let mut m = [0u8; 6];
    for (i, b) in s.split(':').enumerate() {
        m[i] = u8::from_str_radix(b, 16).expect("hex");
    }
    m
}

/// Runs the generator on `FRAMES` frames out of `ifindex`; returns the elapsed seconds.
fn live(prog: &Xdp, frame: &[u8], ifindex: u32) -> f64 {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let start = Instant::now();
    prog.test_run(TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        repeat: FRAMES,
        attrs: TestRunAttrs::new().xdp_live_frames(64),
        ..TestRunOptions::new()
    })
    .expect("BPF_PROG_RUN live frames");
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A balancer namespace linked to the router, MTU 1600, forwarding on, default via the router.
fn lb(router: &Netns, tag: &str, k: u8) -> (Netns, String, String) {
    let ns = Netns::new(tag);
    let (lb_if, r_if) = veth_pair(
        &ns,
        &[&format!("10.11.{k}.2/24")],
        router,
        &[&format!("10.11.{k}.1/24")],
    );
    for (n, ifn) in [(&ns, &lb_if), (router, &r_if)] {
        n.ip(&["link", "set", "dev", ifn, "mtu", "1600"]);
    }
    ns.enable_forwarding();
    ns.exec(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    );
    ns.ip(&["route", "add", "default", "via", &format!("10.11.{k}.1")]);
    ns.exec("ping", &["-c1", "-W2", &format!("10.11.{k}.1")]);
    (ns, lb_if, r_if)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it
    // and must not start a minute-long benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if herald_tests::skip_privileged() {
        return;
    }
    herald_tests::require_command("iptables", "iptables");
    herald_tests::require_command("ping", "iputils-ping");

    let router = Netns::new("ppsr");
    router.enable_forwarding();
    let bench = || {
        Balancer::load(&LoadOptions {
            variant: Variant::Bench,
            ..LoadOptions::default()
        })
        .expect("loading the bench build")
    };
    let mut tools = bench(); // generator and sink (router)
    let mut lb0_prog = bench(); // lb0's send-back program, lb-ipt's pass program

    let (lb0, lb0_if, r0_if) = lb(&router, "pps0", 0);
    let (lbx, x_if, rx_if) = lb(&router, "ppsx", 1);
    let (lbi, i_if, ri_if) = lb(&router, "ppsi", 2);

    // lb0: sends every frame straight back (re-writing it from the template, as the generator).
    inside(&lb0, || {
        lb0_prog
            .bench_program_mut(TX_PROGRAM)
            .unwrap()
            .attach(&lb0_if, XdpMode::Driver)
            .expect("lb0 XDP")
    });

    // lb-xdp: the balancer, 3 backends behind the router.
    let mut bal = Balancer::load(&LoadOptions::default()).expect("loading the balancer");
    let backends: Vec<(u32, IpAddr)> = (0..3u32)
        .map(|i| (i, IpAddr::V4(Ipv4Addr::new(10, 12, i as u8 + 1, 2))))
        .collect();
    Service::new(IpAddr::V4(VIP), 80, UDP, 0, &backends).install(&mut bal);
    inside(&lbx, || {
        bal.attach(&x_if, XdpMode::Driver)
            .expect("attaching the balancer")
    });

    // lb-ipt: kube-proxy iptables mode for a 3-endpoint Service. Its uplink carries the empty
    // XDP program, as veth only takes XDP-transmitted frames into an XDP-enabled peer; that
    // adds one empty program run (~20 ns) to the anchor.
    let ipt = |args: &[&str]| {
        lbi.exec("iptables", args);
    };
    ipt(&["-t", "nat", "-N", "KUBE-SVC-HERALD"]);
    ipt(&[
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-d",
        &format!("{VIP}/32"),
        "-p",
        "udp",
        "--dport",
        "80",
        "-j",
        "KUBE-SVC-HERALD",
    ]);
    for (i, p) in [
        (1, Some("0.33333333349")),
        (2, Some("0.50000000000")),
        (3, None),
    ] {
        let to = format!("10.12.{i}.2:80");
        let mut args = vec!["-t", "nat", "-A", "KUBE-SVC-HERALD", "-p", "udp"];
        if let Some(p) = p {
            args.extend_from_slice(&["-m", "statistic", "--mode", "random", "--probability", p]);
        }
        args.extend_from_slice(&["-j", "DNAT", "--to-destination", &to]);
        ipt(&args);
    }
    inside(&lbi, || {
        lb0_prog
            .bench_program_mut(EMPTY_PROGRAM)
            .unwrap()
            .attach(&i_if, XdpMode::Driver)
            .expect("lb-ipt XDP pass")
    });

    // The router's ends count and drop what comes back.
    inside(&router, || {
        let sink = tools.bench_program_mut(SINK_PROGRAM).unwrap();
        for r_if in [&r0_if, &rx_if, &ri_if] {
            sink.attach(r_if, XdpMode::Driver).expect("router sink");
        }
    });

    let frame = |ns: &Netns, ifn: &str| -> [u8; 64] {
        eth(
            mac(ns, ifn),
            CLIENT_MAC,
            ETH_IP,
            &ipv4(CLIENT, VIP, UDP, 0, &udp(40000, 80, &[0u8; 22])),
        )
        .try_into()
        .expect("a 64-byte frame")
    };
    let configs = [
        ("none (lb0)", frame(&lb0, &lb0_if), ifindex(&router, &r0_if)),
        ("herald XDP", frame(&lbx, &x_if), ifindex(&router, &rx_if)),
        ("iptables", frame(&lbi, &i_if), ifindex(&router, &ri_if)),
    ];
    // lb0 re-writes frames from the same template as the generator: give it its own frame.
    lb0_prog
        .set_generator_frame(&configs[0].1)
        .expect("lb0 template");

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut delivered = vec![0u64; configs.len()];
    for _ in 0..SAMPLES {
        for (c, (_, frame, idx)) in configs.iter().enumerate() {
            tools
                .set_generator_frame(frame)
                .expect("generator template");
            let before = tools.sink_count().expect("sink count");
            let elapsed = inside(&router, || {
                live(tools.tx_program().expect("bench build"), frame, *idx)
            });
            delivered[c] += tools.sink_count().expect("sink count") - before;
            rates[c].push(f64::from(FRAMES) / elapsed);
        }
    }
    let total = f64::from(FRAMES) * SAMPLES as f64;
    let med: Vec<f64> = rates.into_iter().map(median).collect();
    println!("generator -> balancer -> sink on veth, one UDP flow, 64-byte frames");
    println!("(median of {SAMPLES} x {FRAMES} frames; whole chain on the generating CPU)");
    for (c, (name, _, _)) in configs.iter().enumerate() {
        println!(
            "  {name:<12} chain {:>9.0} frames/s  ({:>6.1} ns/frame, {:.1} % came back)",
            med[c],
            1e9 / med[c],
            delivered[c] as f64 / total * 100.0
        );
    }
    let base = 1e9 / med[0];
    let cost_x = 1e9 / med[1] - base;
    let cost_i = 1e9 / med[2] - base;
    println!(
        "  balancer alone: herald XDP {cost_x:.1} ns/packet ({:.0} pps per core)",
        1e9 / cost_x
    );
    println!(
        "                  iptables   {cost_i:.1} ns/packet ({:.0} pps per core)",
        1e9 / cost_i
    );
    println!(
        "  ratio XDP / iptables (packets per second): {:.2}  (goal >= 5)",
        cost_i / cost_x
    );
    println!("  ratio of whole chains: {:.2}", med[1] / med[2]);
}
