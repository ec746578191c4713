//! `herald-speaker standalone` with a `BFDProfile` on its `BGPPeer`: BFD with BIRD and with
//! FRR comes Up, a link failure that only BFD can see removes the routes at the router within
//! the detection time plus 200 ms, and everything returns when the link does.
//!
//! Topology: node ─ veth ─ [bridge in a switch namespace] ─ veth ─ router (BIRD). The failure
//! is the node's port on the switch going down, so the router keeps carrier.

use std::time::{Duration, Instant};

use herald_tests::bird::Bird;
use herald_tests::frr::Frr;
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};

const DEADLINE: Duration = Duration::from_secs(30);
const DETECT: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(200);

const CONFIG: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.1/32]}
---
apiVersion: herald.dev/v1alpha1
kind: BFDProfile
metadata: {name: fast}
spec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: router}
spec: {peerAddress: 10.0.0.2, peerASN: 64513, myASN: 64512, bfdProfile: fast}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;

const BIRD: &str = "router id 10.0.0.2;
protocol device { }
protocol bfd { interface \"*\" { interval 100 ms; multiplier 3; }; }
protocol bgp node {
  local 10.0.0.2 as 64513; neighbor 10.0.0.1 as 64512; passive on;
  bfd on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
";

fn status(node: &Netns) -> serde_json::Value {
    let bin = workspace_binary("herald-speaker");
    let out = node.try_exec(bin.to_str().unwrap(), &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// node ─ veth ─ [bridge in a switch namespace] ─ veth ─ router, and the speaker on the node
/// with `CONFIG`. The link failure is the node's port on the switch going down.
struct Topo {
    node: Netns,
    switch: Netns,
    router: Netns,
    node_port: String,
    dir: tempfile::TempDir,
}

impl Topo {
    fn new(tag: &str) -> Self {
        let (node, switch, router) = (
            Netns::new(&format!("{tag}-n")),
            Netns::new(&format!("{tag}-w")),
            Netns::new(&format!("{tag}-r")),
        );
        let (_, node_port) = veth_pair(&node, &["10.0.0.1/24"], &switch, &[]);
        let (router_port, _) = veth_pair(&switch, &[], &router, &["10.0.0.2/24"]);
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        for port in [&node_port, &router_port] {
            switch.ip(&["link", "set", port, "master", "br0"]);
        }
        switch.ip(&["link", "set", "br0", "up"]);
        Topo {
            node,
            switch,
            router,
            node_port,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn speaker(&self) -> Daemon {
        let dir = self.dir.path();
        std::fs::write(dir.join("lb.yaml"), CONFIG).unwrap();
        let bin = workspace_binary("herald-speaker");
        let mut cmd = self.node.command(bin.to_str().unwrap());
        cmd.args(["standalone", "--node-name", "n1"])
            .arg("--config")
            .arg(dir.join("lb.yaml"))
            .arg("--state-dir")
            .arg(dir.join("state"));
        Daemon::spawn("herald-speaker", &mut cmd)
    }

    fn herald_bfd_state(&self) -> String {
        status(&self.node)["bfd"][0]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Takes the node's port down; returns how long until `count` says 0 (polled as fast
    /// as the router's CLI answers).
    fn time_until_gone(&self, count: impl Fn() -> usize) -> Duration {
        let start = Instant::now();
        self.switch.ip(&["link", "set", &self.node_port, "down"]);
        while count() != 0 {
            assert!(start.elapsed() < DEADLINE, "routes never went");
        }
        start.elapsed()
    }

    fn link_up(&self) {
        self.switch.ip(&["link", "set", &self.node_port, "up"]);
    }

    fn wait_herald_bfd_down(&self) {
        wait_until("herald's BFD to see it too", DEADLINE, || {
            match self.herald_bfd_state().as_str() {
                "Up" | "" => Err(format!("{}", status(&self.node))),
                _ => Ok(()),
            }
        });
    }
}

fn assert_within_detect(took: Duration) {
    eprintln!("routes gone {took:?} after the link went down");
    assert!(
        took <= DETECT + SLACK,
        "routes went after {took:?}, more than {:?}",
        DETECT + SLACK
    );
}

#[test]
fn a_bfd_profile_on_the_peer_makes_bird_drop_routes_within_detect_time_on_a_silent_link_failure() {
    require_privileged!();
    let t = Topo::new("sbfd");
    let bird = Bird::start(&t.router, BIRD);
    let _speaker = t.speaker();

    let count = || bird.route_count("node").unwrap_or(usize::MAX);
    wait_until("the route at bird", DEADLINE, || match count() {
        1 => Ok(()),
        n => Err(format!("{n}: {}", bird.protocol("node"))),
    });
    wait_until("BFD Up at both ends", DEADLINE, || {
        let herald = t.herald_bfd_state();
        let at_bird = bird.birdc(&["show", "bfd", "sessions"]);
        if herald == "Up" && at_bird.contains("Up") {
            Ok(())
        } else {
            Err(format!("herald {herald:?}, bird: {at_bird}"))
        }
    });

    assert_within_detect(t.time_until_gone(count));
    t.wait_herald_bfd_down();

    t.link_up();
    wait_until("the route back at bird", DEADLINE, || match count() {
        1 => Ok(()),
        n => Err(format!("{n}: {}", bird.protocol("node"))),
    });
}

const FRR: &str = "router bgp 64513
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 neighbor 10.0.0.1 remote-as 64512
 neighbor 10.0.0.1 passive
 neighbor 10.0.0.1 bfd profile fast
";

#[test]
fn a_bfd_profile_on_the_peer_makes_frr_drop_routes_within_detect_time_on_a_silent_link_failure() {
    require_privileged!();
    let t = Topo::new("sbff");
    let frr = Frr::start(&t.router, FRR, true);
    // bfdd's profile lives in its own daemon; configure it through vtysh.
    let out = frr.vtysh(
        "configure terminal\nbfd\nprofile fast\nreceive-interval 100\ntransmit-interval 100\ndetect-multiplier 3",
    );
    assert!(!out.contains("Unknown command"), "{out}");
    let _speaker = t.speaker();

    let count = || {
        frr.json("show bgp ipv4 unicast 198.51.100.1/32 json")
            .ok()
            .and_then(|v| {
                v.get("paths")
                    .and_then(serde_json::Value::as_array)
                    .map(Vec::len)
            })
            .unwrap_or(0)
    };
    wait_until("the route at frr", DEADLINE, || match count() {
        0 => Err(frr.vtysh("show bgp ipv4 unicast")),
        _ => Ok(()),
    });
    wait_until("BFD Up at both ends with 100 ms timers", DEADLINE, || {
        let herald = t.herald_bfd_state();
        let at_frr = frr.vtysh("show bfd peers");
        if herald == "Up"
            && at_frr.contains("Status: up")
            && at_frr.contains("Transmission interval: 100ms")
        {
            Ok(())
        } else {
            Err(format!("herald {herald:?}, frr: {at_frr}"))
        }
    });

    assert_within_detect(t.time_until_gone(count));
    t.wait_herald_bfd_down();

    t.link_up();
    wait_until("the route back at frr", DEADLINE, || match count() {
        0 => Err(frr.vtysh("show bgp ipv4 unicast")),
        _ => Ok(()),
    });
}
