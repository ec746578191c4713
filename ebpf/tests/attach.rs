//! Attaching, detaching and pinning on real interfaces (veth in a namespace), refusing to
//! displace a foreign XDP program, and the TC decapsulation program.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use aya::programs::tc::TcAttachType;
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use common::packet::*;
use common::*;
use herald_ebpf::abi::FlowKey;
use herald_ebpf::{Balancer, Decap, Error, LoadOptions, Variant, XdpMode};
use herald_tests::{BpfFs, Netns, veth_pair, wait_until};

/// How long a detach may take to show. Dropping the last reference to a link (closing its
/// fd, or unpinning it: the bpffs inode goes after an RCU grace period) detaches the program
/// from a kernel work item, not always before the call returns.
const DETACH_DEADLINE: Duration = Duration::from_secs(10);

/// A pin directory on a bpf filesystem of this test's own (mounted for it, unmounted with
/// everything pinned in it on drop): nothing depends on `/sys/fs/bpf` being mounted already,
/// or on another test mounting it first.
struct PinDir {
    path: PathBuf,
    _fs: BpfFs,
}

impl PinDir {
    fn new() -> Self {
        let fs = BpfFs::mount();
        Self {
            path: fs.pin_dir("herald"),
            _fs: fs,
        }
    }
}

/// Runs `f` on a thread inside `ns`.
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

fn xdp_state(ns: &Netns, ifname: &str) -> String {
    let out = ns.ip(&["-d", "link", "show", "dev", ifname]);
    out.split_whitespace()
        .skip_while(|w| !w.starts_with("prog/xdp"))
        .take(5)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until the XDP program of `ifname` is gone (see [`DETACH_DEADLINE`]).
fn wait_xdp_detached(ns: &Netns, ifname: &str, what: &str) {
    wait_until(what, DETACH_DEADLINE, || {
        let state = xdp_state(ns, ifname);
        if state.is_empty() { Ok(()) } else { Err(state) }
    });
}

/// Waits until `listed` (the programs on an interface's hook) is empty.
fn wait_none_listed<T: std::fmt::Debug>(what: &str, listed: impl Fn() -> Vec<T>) {
    wait_until(what, DETACH_DEADLINE, || {
        let now = listed();
        if now.is_empty() {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });
}

fn lab() -> (Netns, Netns, String) {
    let a = Netns::new("att");
    let b = Netns::new("atp");
    let (a_if, _) = veth_pair(&a, &["10.9.0.1/24"], &b, &["10.9.0.2/24"]);
    (a, b, a_if)
}

#[test]
fn xdp_attaches_in_native_and_generic_mode_and_detaches_cleanly() {
    herald_tests::require_privileged!();
    let (ns, _peer, ifname) = lab();
    inside(&ns, || {
        let mut bal = Balancer::load(&LoadOptions::default()).unwrap();
        for mode in [XdpMode::Driver, XdpMode::Skb] {
            bal.attach(&ifname, mode).unwrap();
            let state = xdp_state(&ns, &ifname);
            assert!(state.contains("name herald_xdp"), "{mode:?}: {state}");
            let link = ns.ip(&["link", "show", "dev", &ifname]);
            let want = if mode == XdpMode::Skb {
                "xdpgeneric"
            } else {
                "xdp "
            };
            assert!(link.contains(want), "{mode:?}: {link}");
            bal.detach(&ifname).unwrap();
            wait_xdp_detached(&ns, &ifname, &format!("the {mode:?} program detached"));
        }
        // Detaching again is a no-op.
        bal.detach(&ifname).unwrap();
    });
}

#[test]
fn a_foreign_xdp_program_is_refused_and_named() {
    herald_tests::require_privileged!();
    let (ns, _peer, ifname) = lab();
    inside(&ns, || {
        // Someone else's program: the bench build's empty program, attached by itself.
        let mut other = Balancer::load(&LoadOptions {
            variant: Variant::Bench,
            ..LoadOptions::default()
        })
        .unwrap();
        let prog = other.empty_program_mut().unwrap();
        prog.attach(&ifname, XdpMode::Skb).unwrap();

        let mut bal = Balancer::load(&LoadOptions::default()).unwrap();
        let err = bal.attach(&ifname, XdpMode::Skb).unwrap_err();
        match &err {
            Error::ForeignXdp { interface, program } => {
                assert_eq!(interface, &ifname);
                assert!(program.contains("herald_xdp_nop"), "{program}");
            }
            other => panic!("expected ForeignXdp, got {other:?}"),
        }
        assert!(err.to_string().contains("herald_xdp_nop"), "{err}");
        let state = xdp_state(&ns, &ifname);
        assert!(state.contains("herald_xdp_nop"), "still attached: {state}");
    });
}

#[test]
fn a_map_pinned_with_another_layout_is_refused_naming_it_instead_of_reused() {
    herald_tests::require_privileged!();
    let pins = PinDir::new();
    std::fs::create_dir_all(&pins.path).unwrap();
    // As an older build's flow table might be: same name, another key and value size.
    let flows = pins.path.join("herald_flows");
    aya::maps::Array::<aya::maps::MapData, u32>::create(4, 0)
        .expect("creating a map")
        .pin(&flows)
        .expect("pinning it");
    let err = Balancer::load(&LoadOptions {
        pin_dir: Some(pins.path.clone()),
        variant: Variant::Forwarding,
    })
    .expect_err("an incompatible pinned map must be refused");
    assert!(
        matches!(&err, Error::IncompatiblePin { path, .. } if *path == flows),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("herald_flows") && text.contains("value 4 B") && text.contains("rm "),
        "{text}"
    );
}

#[test]
fn pinned_maps_and_attachment_survive_a_restart_and_unpin_cleanly() {
    herald_tests::require_privileged!();
    let (ns, _peer, ifname) = lab();
    let pins = PinDir::new();
    let opts = LoadOptions {
        pin_dir: Some(pins.path.clone()),
        variant: Variant::Forwarding,
    };
    inside(&ns, || {
        let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let svc = Service::new(
            vip,
            80,
            TCP,
            0,
            &[(0, IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2)))],
        );
        let key = FlowKey::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            1000,
            vip,
            80,
            TCP,
        );

        let mut first = Balancer::load(&opts).unwrap();
        svc.install(&mut first);
        first.attach(&ifname, XdpMode::Driver).unwrap();
        let ip = ipv4(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(192, 0, 2, 10),
            TCP,
            0,
            &tcp(1000, 80, SYN, b""),
        );
        // One CPU: a flow's cache and table are that CPU's.
        pin_to_cpu(0);
        let (verdict, _) = run(first.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip));
        assert_ne!(verdict, XDP_PASS, "the VIP is handled");
        // A second flow, seen once: cached, pending, not in the table.
        let once = FlowKey::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
            1000,
            vip,
            80,
            TCP,
        );
        let once_ip = ipv4(
            Ipv4Addr::new(198, 51, 100, 2),
            Ipv4Addr::new(192, 0, 2, 10),
            TCP,
            0,
            &tcp(1000, 80, SYN, b""),
        );
        let (verdict, _) = run(first.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IP, &once_ip));
        assert_ne!(verdict, XDP_PASS);
        let ack = ipv4(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(192, 0, 2, 10),
            TCP,
            0,
            &tcp(1000, 80, ACK, b""),
        );
        let (verdict, _) = run(first.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IP, &ack));
        assert_ne!(verdict, XDP_PASS);
        assert!(first.flow(&key).unwrap().is_some());
        assert!(first.flow(&once).unwrap().is_none());
        assert_eq!(first.cached_flows(&once).unwrap()[0].1.pending, 1);
        let before = xdp_state(&ns, &ifname);
        drop(first); // the speaker exits

        assert_eq!(
            xdp_state(&ns, &ifname),
            before,
            "still attached after the loader is gone"
        );
        for name in herald_ebpf::abi::map_name::XDP_MAPS {
            assert!(pins.path.join(name).exists(), "{name} pinned");
        }

        let mut second = Balancer::load(&opts).unwrap();
        assert!(second.flow(&key).unwrap().is_some(), "flows survive");
        assert_eq!(
            second.cached_flows(&once).unwrap()[0].1.pending,
            1,
            "flows seen once survive in the cache"
        );
        assert_eq!(second.vip_stats(0).unwrap().packets, 3, "counters survive");
        // The VIP, backends and table survive: the new program forwards without reprogramming.
        let (verdict, _) = run(second.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip));
        assert_ne!(verdict, XDP_PASS);
        second.attach(&ifname, XdpMode::Driver).unwrap();
        let after = xdp_state(&ns, &ifname);
        assert!(after.contains("name herald_xdp"), "{after}");
        assert_ne!(
            after, before,
            "the new program replaced the old one in the pinned link"
        );

        second.detach(&ifname).unwrap();
        wait_xdp_detached(&ns, &ifname, "the pinned XDP link detached");
        second.unpin_all().unwrap();
        let left: Vec<_> = std::fs::read_dir(&pins.path).unwrap().collect();
        assert!(left.is_empty(), "pin directory empty: {left:?}");
    });
}

fn run_tc(decap: &Decap, input: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; input.len() + 256];
    let res = decap
        .program()
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

#[test]
fn decap_strips_ipip_and_ip6ip6_and_leaves_the_rest() {
    herald_tests::require_privileged!();
    let decap = Decap::load().unwrap();
    const TC_ACT_OK: u32 = 0;
    let inner = ipv4(
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(192, 0, 2, 10),
        TCP,
        0,
        &tcp(1, 80, SYN, b""),
    );
    let outer = ipv4(
        Ipv4Addr::new(172, 16, 1, 2),
        Ipv4Addr::new(10, 1, 0, 1),
        4,
        0x4000,
        &inner,
    );
    let (verdict, out) = run_tc(&decap, &eth(LB_MAC, ROUTER_MAC, ETH_IP, &outer));
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(hex(&out), hex(&eth(LB_MAC, ROUTER_MAC, ETH_IP, &inner)));

    let c6 = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    let inner6 = ipv6(c6, v6, TCP, &tcp(1, 443, SYN, b""));
    let outer6 = ipv6(
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1),
        41,
        &inner6,
    );
    let (verdict, out) = run_tc(&decap, &eth(LB_MAC, ROUTER_MAC, ETH_IPV6, &outer6));
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(hex(&out), hex(&eth(LB_MAC, ROUTER_MAC, ETH_IPV6, &inner6)));

    for (name, frame) in [
        ("plain tcp", eth(LB_MAC, ROUTER_MAC, ETH_IP, &inner)),
        ("plain v6", eth(LB_MAC, ROUTER_MAC, ETH_IPV6, &inner6)),
        (
            "ipip fragment",
            eth(
                LB_MAC,
                ROUTER_MAC,
                ETH_IP,
                &ipv4(
                    Ipv4Addr::new(172, 16, 1, 2),
                    Ipv4Addr::new(10, 1, 0, 1),
                    4,
                    0x2000,
                    &inner,
                ),
            ),
        ),
        ("arp", eth([0xff; 6], ROUTER_MAC, 0x0806, &[0u8; 28])),
    ] {
        let (verdict, out) = run_tc(&decap, &frame);
        assert_eq!((verdict, hex(&out)), (TC_ACT_OK, hex(&frame)), "{name}");
    }
    let (ok, failed) = decap.counters().unwrap();
    assert_eq!((ok.packets, failed.packets), (2, 0));
}

#[test]
fn decap_attaches_to_ingress_and_detaches() {
    herald_tests::require_privileged!();
    let (ns, _peer, ifname) = lab();
    inside(&ns, || {
        let mut decap = Decap::load().unwrap();
        let attached = || -> Vec<String> {
            SchedClassifier::query_tcx(&ifname, TcAttachType::Ingress)
                .expect("querying tcx ingress")
                .1
                .iter()
                .filter_map(|p| p.name_as_str().map(str::to_owned))
                .collect()
        };
        decap.attach(&ifname).unwrap();
        assert_eq!(attached(), vec!["herald_decap".to_owned()]);
        decap.detach(&ifname).unwrap();
        wait_none_listed("herald_decap gone from tcx ingress", attached);
    });
}

#[test]
fn pinned_decap_attachment_outlives_its_loader_and_is_replaced_in_place() {
    herald_tests::require_privileged!();
    let (ns, _peer, ifname) = lab();
    let pins = PinDir::new();
    inside(&ns, || {
        let ids = || -> Vec<u32> {
            SchedClassifier::query_tcx(&ifname, TcAttachType::Ingress)
                .expect("querying tcx ingress")
                .1
                .iter()
                .map(|p| p.id())
                .collect()
        };
        let mut first = Decap::load_pinned(Some(&pins.path)).unwrap();
        first.attach(&ifname).unwrap();
        let before = ids();
        assert_eq!(before.len(), 1);
        drop(first); // the speaker exits
        assert_eq!(ids(), before, "still attached after the loader is gone");

        let mut second = Decap::load_pinned(Some(&pins.path)).unwrap();
        second.attach(&ifname).unwrap();
        let after = ids();
        assert_eq!(after.len(), 1, "replaced, not added: {after:?}");
        assert_ne!(after, before, "the new program is the one attached");
        second.detach(&ifname).unwrap();
        wait_none_listed("the pinned decap link gone from tcx ingress", ids);
        assert!(
            std::fs::read_dir(&pins.path).unwrap().next().is_none(),
            "pin removed"
        );
    });
}
