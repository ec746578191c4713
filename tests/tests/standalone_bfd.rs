//! `herald-speaker standalone` with a `BFDProfile` on its `BGPPeer`: BFD with BIRD comes Up,
//! a link failure that only BFD can see removes the routes at BIRD within the detection time
//! plus 200 ms, and everything returns when the link does.
//!
//! Topology: node ─ veth ─ [bridge in a switch namespace] ─ veth ─ router (BIRD). The failure
//! is the node's port on the switch going down, so the router keeps carrier.

use std::time::{Duration, Instant};

use herald_tests::bird::Bird;
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};

const DEADLINE: Duration = Duration::from_secs(30);
const DETECT: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(200);

const CONFIG: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.0/29], avoidBuggyIPs: true}
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

#[test]
fn a_bfd_profile_on_the_peer_makes_bird_drop_routes_within_detect_time_on_a_silent_link_failure() {
    require_privileged!();
    let (node, switch, router) = (
        Netns::new("sbfd-n"),
        Netns::new("sbfd-w"),
        Netns::new("sbfd-r"),
    );
    let (_, node_port) = veth_pair(&node, &["10.0.0.1/24"], &switch, &[]);
    let (router_port, _) = veth_pair(&switch, &[], &router, &["10.0.0.2/24"]);
    switch.ip(&["link", "add", "br0", "type", "bridge"]);
    for port in [&node_port, &router_port] {
        switch.ip(&["link", "set", port, "master", "br0"]);
    }
    switch.ip(&["link", "set", "br0", "up"]);
    let bird = Bird::start(&router, BIRD);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.yaml"), CONFIG).unwrap();
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args(["standalone", "--node-name", "n1"])
        .arg("--config")
        .arg(dir.path().join("lb.yaml"))
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let _speaker = Daemon::spawn("herald-speaker", &mut cmd);

    let count = || bird.route_count("node").unwrap_or(usize::MAX);
    wait_until("the route at bird", DEADLINE, || match count() {
        1 => Ok(()),
        n => Err(format!("{n}: {}", bird.protocol("node"))),
    });
    wait_until("BFD Up at both ends", DEADLINE, || {
        let s = status(&node);
        let herald = s["bfd"][0]["state"].as_str().unwrap_or("").to_owned();
        let at_bird = bird.birdc(&["show", "bfd", "sessions"]);
        if herald == "Up" && at_bird.contains("Up") {
            Ok(())
        } else {
            Err(format!("herald {herald:?}, bird: {at_bird}"))
        }
    });

    let start = Instant::now();
    switch.ip(&["link", "set", &node_port, "down"]);
    while count() != 0 {
        assert!(start.elapsed() < DEADLINE, "routes never went");
    }
    let took = start.elapsed();
    eprintln!("routes gone {took:?} after the link went down");
    assert!(
        took <= DETECT + SLACK,
        "routes went after {took:?}, more than {:?}",
        DETECT + SLACK
    );
    wait_until("herald's BFD to see it too", DEADLINE, || {
        let s = status(&node);
        match s["bfd"][0]["state"].as_str() {
            Some("Up") | None => Err(format!("{s}")),
            Some(_) => Ok(()),
        }
    });

    switch.ip(&["link", "set", &node_port, "up"]);
    wait_until("the route back at bird", DEADLINE, || match count() {
        1 => Ok(()),
        n => Err(format!("{n}: {}", bird.protocol("node"))),
    });
}
