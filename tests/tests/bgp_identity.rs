//! One `BGPPeer` for every node: each node's speaker presents its own BGP identifier (its
//! source address towards the router, not an address every node has, such as docker0's)
//! and the AS number of its rack from the Node label `herald.dev/asn`; the Node annotation
//! `herald.dev/router-id` overrides the identifier.
//!
//! An IPv6 VIP goes over the same IPv4 sessions with the node's IPv6 address on the session's
//! link as next hop, and lands in the router's kernel.
//!
//! Topology: n1 (10.77.0.1), n2 (10.77.0.2) and the router (10.77.0.100, BIRD) on one bridge;
//! both nodes also carry a `docker0` with the same 10.1.0.1, lower than their own addresses
//! in the old "lowest IPv4 of any interface" rule.

use std::time::Duration;

use herald_tests::bird::Bird;
use herald_tests::segment::Segment;
use herald_tests::{Daemon, require_privileged, wait_until, workspace_binary};

const DEADLINE: Duration = Duration::from_secs(30);

const BIRD: &str = "
router id 10.77.0.100;
protocol device { }
protocol kernel { ipv6 { export all; }; merge paths on; }
protocol bgp n1 {
  local 10.77.0.100 as 64513; neighbor 10.77.0.1 as 64601; passive on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
  ipv6 { import all; export none; };
}
protocol bgp n2 {
  local 10.77.0.100 as 64513; neighbor 10.77.0.2 as 64602; passive on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
  ipv6 { import all; export none; };
}
";

fn config(n2_annotation: &str) -> String {
    format!(
        r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: public}}
spec: {{addresses: [198.51.100.30/32, "2001:db8:30::1/128"]}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: router}}
spec: {{peerAddress: 10.77.0.100, peerASN: 64513, myASN: 64512}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {{name: all}}
---
apiVersion: v1
kind: Node
metadata: {{name: n1, labels: {{herald.dev/asn: "64601"}}}}
---
apiVersion: v1
kind: Node
metadata: {{name: n2, labels: {{herald.dev/asn: "64602"}}{n2_annotation}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: demo}}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{{port: 80}}]
"#
    )
}

/// BIRD's "Neighbor ID" for `proto` once it is Established with the route imported.
fn neighbor_id(bird: &Bird, proto: &str) -> String {
    wait_until(
        &format!("{proto} established with the VIP"),
        DEADLINE,
        || {
            let p = bird.protocol(proto);
            let id = p
                .lines()
                .find_map(|l| l.trim().strip_prefix("Neighbor ID:"))
                .map(|s| s.trim().to_owned());
            match (bird.established(proto), bird.route_count(proto), id) {
                (true, Ok(2), Some(id)) => Ok(id),
                _ => Err(p),
            }
        },
    )
}

#[test]
fn one_bgp_peer_gives_each_node_its_own_router_id_and_its_racks_asn() {
    require_privileged!();
    let seg = Segment::new("bid", 2);
    for n in &seg.nodes {
        n.ns.ip(&["link", "add", "docker0", "type", "bridge"]);
        n.ns.ip(&["address", "add", "10.1.0.1/16", "dev", "docker0"]);
        n.ns.ip(&["link", "set", "docker0", "up"]);
    }
    let bird = Bird::start(&seg.client.ns, BIRD);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, config("")).unwrap();
    let _speakers: Vec<Daemon> = seg
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = format!("n{}", i + 1);
            let bin = workspace_binary("herald-speaker");
            let mut cmd = n.ns.command(bin.to_str().unwrap());
            cmd.args(["standalone", "--node-name", &name])
                .arg("--config")
                .arg(&path)
                .arg("--state-dir")
                .arg(dir.path().join(format!("state-{name}")));
            Daemon::spawn(&format!("herald-speaker {name}"), &mut cmd)
        })
        .collect();

    // BIRD accepted each session only with the rack's AS (64601, 64602: the label, not
    // myASN), and each node is known by its own address.
    assert_eq!(neighbor_id(&bird, "n1"), "10.77.0.1");
    assert_eq!(neighbor_id(&bird, "n2"), "10.77.0.2");

    // The IPv6 VIP over the IPv4 sessions, with each node's IPv6 address on that link as the
    // next hop (not ::ffff:10.77.0.x), usable: both paths in the router's kernel table.
    let routes = bird.routes("n1");
    assert!(
        routes.contains("2001:db8:30::1/128") && routes.contains("fd00:77::1"),
        "{routes}"
    );
    assert!(!routes.contains("::ffff:"), "{routes}");
    wait_until(
        "the IPv6 VIP in the router's kernel via both nodes",
        DEADLINE,
        || {
            let r = seg.client.ns.ip(&["-6", "route", "show", "2001:db8:30::1"]);
            if r.contains("fd00:77::1") && r.contains("fd00:77::2") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );

    // The annotation overrides the identifier of that node only.
    std::fs::write(
        &path,
        config(", annotations: {herald.dev/router-id: 10.255.0.2}"),
    )
    .unwrap();
    wait_until("n2's new identifier at BIRD", DEADLINE, || {
        let id = neighbor_id(&bird, "n2");
        if id == "10.255.0.2" { Ok(()) } else { Err(id) }
    });
    assert_eq!(neighbor_id(&bird, "n1"), "10.77.0.1");
}
