//! BFD (RFC 5880/5881) between Herald and BIRD / FRR: when the link fails, the routes are gone
//! at the peer within the detection time plus 200 ms, and Herald's BGP session comes back only
//! after BFD is Up again.
//!
//! Topology: speaker ─ veth ─ [bridge in a switch namespace] ─ veth ─ peer. The link failure
//! is the speaker's port on the switch going down: the peer keeps carrier, so only BFD (not
//! link state) can tell it.

use std::time::{Duration, Instant};

use herald_tests::bird::Bird;
use herald_tests::frr::Frr;
use herald_tests::lab::HeraldLab;
use herald_tests::{Netns, require_privileged, veth_pair, wait_until};
use serde_json::Value;

const LAB: &str = env!("CARGO_BIN_EXE_herald-bgp-lab");
const DEADLINE: Duration = Duration::from_secs(30);
/// Detect multiplier 3 × 100 ms (both sides ask for 100 ms).
const DETECT: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(200);

const LAB_CONFIG: &str = "local-as 64512
router-id 192.0.2.1
peer 10.0.0.2 as 64513
source 10.0.0.1
bfd 100 3
route 198.51.100.1/32";

struct Topo {
    spk: Netns,
    switch: Netns,
    peer: Netns,
    spk_port: String,
}

fn topo(tag: &str) -> Topo {
    let spk = Netns::new(&format!("{tag}-s"));
    let switch = Netns::new(&format!("{tag}-w"));
    let peer = Netns::new(&format!("{tag}-p"));
    let (_, spk_port) = veth_pair(&spk, &["10.0.0.1/24"], &switch, &[]);
    let (peer_port, _) = veth_pair(&switch, &[], &peer, &["10.0.0.2/24"]);
    switch.ip(&["link", "add", "br0", "type", "bridge"]);
    for port in [&spk_port, &peer_port] {
        switch.ip(&["link", "set", port, "master", "br0"]);
    }
    switch.ip(&["link", "set", "br0", "up"]);
    Topo {
        spk,
        switch,
        peer,
        spk_port,
    }
}

/// Takes the speaker's switch port down and returns how long until `gone` holds (polled as
/// fast as the peer's CLI answers).
fn time_until_gone(t: &Topo, gone: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    t.switch.ip(&["link", "set", &t.spk_port, "down"]);
    while !gone() {
        assert!(start.elapsed() < DEADLINE, "routes never went");
    }
    start.elapsed()
}

fn lab_error(lab: &HeraldLab) -> String {
    lab.field("10.0.0.2", "last_error").unwrap_or_default()
}

#[test]
fn bfd_with_bird_removes_routes_within_detect_time_and_bgp_waits_for_bfd() {
    require_privileged!();
    let t = topo("bfdb");
    let bird = Bird::start(
        &t.peer,
        "router id 10.0.0.2;
protocol device { }
protocol bfd { interface \"*\" { interval 100 ms; multiplier 3; }; }
protocol bgp hrd {
  local 10.0.0.2 as 64513; neighbor 10.0.0.1 as 64512; passive on;
  bfd on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
",
    );
    let lab = HeraldLab::start(LAB, &t.spk, LAB_CONFIG);
    let count = || bird.route_count("hrd").unwrap_or(usize::MAX);
    wait_until("the route at bird", DEADLINE, || match count() {
        1 => Ok(()),
        n => Err(format!("{n}: {}", bird.protocol("hrd"))),
    });
    wait_until("bird's bfd session Up", DEADLINE, || {
        let s = bird.birdc(&["show", "bfd", "sessions"]);
        if s.contains("Up") { Ok(()) } else { Err(s) }
    });

    let took = time_until_gone(&t, || count() == 0);
    eprintln!("routes gone {took:?} after the link went down");
    assert!(
        took <= DETECT + SLACK,
        "routes went after {took:?}, more than {:?}",
        DETECT + SLACK
    );
    // Herald's own BFD saw the failure and tore its BGP session down.
    wait_until(
        "herald's bgp torn down by bfd",
        DEADLINE,
        || match lab_error(&lab).as_str() {
            "bfd_down" => Ok(()),
            other => Err(format!("{other}: {}", lab.status())),
        },
    );
    // Link back: BFD first, then BGP, then the route.
    t.switch.ip(&["link", "set", &t.spk_port, "up"]);
    wait_until("the route back at bird", DEADLINE, || match count() {
        1 => Ok(()),
        n => Err(format!("{n}: {}", bird.protocol("hrd"))),
    });
}

#[test]
fn bfd_with_frr_removes_routes_within_detect_time() {
    require_privileged!();
    let t = topo("bfdf");
    let frr = Frr::start(
        &t.peer,
        "router bgp 64513
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 neighbor 10.0.0.1 remote-as 64512
 neighbor 10.0.0.1 passive
 neighbor 10.0.0.1 bfd profile fast
",
        true,
    );
    // bfdd's profile lives in its own daemon; configure it through vtysh.
    let out = frr.vtysh(
        "configure terminal\nbfd\nprofile fast\nreceive-interval 100\ntransmit-interval 100\ndetect-multiplier 3",
    );
    assert!(!out.contains("Unknown command"), "{out}");
    let _lab = HeraldLab::start(LAB, &t.spk, LAB_CONFIG);
    let present = || {
        frr.json("show bgp ipv4 unicast 198.51.100.1/32 json")
            .ok()
            .and_then(|v| v.get("paths").and_then(Value::as_array).map(Vec::len))
            .unwrap_or(0)
            > 0
    };
    wait_until("the route at frr", DEADLINE, || {
        if present() {
            Ok(())
        } else {
            Err(frr.vtysh("show bgp summary"))
        }
    });
    wait_until("frr's bfd peer up with 100 ms timers", DEADLINE, || {
        let s = frr.vtysh("show bfd peers");
        if s.contains("Status: up") && s.contains("Transmission interval: 100ms") {
            Ok(())
        } else {
            Err(s)
        }
    });
    let took = time_until_gone(&t, || !present());
    eprintln!("routes gone {took:?} after the link went down");
    assert!(
        took <= DETECT + SLACK,
        "routes went after {took:?}, more than {:?}",
        DETECT + SLACK
    );
}
