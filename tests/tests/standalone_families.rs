//! The other address family over one session, through `herald-speaker standalone`, for the
//! combinations the other files do not try: an IPv4 VIP over an IPv6 session to BIRD and to
//! FRR (installed in the router's kernel via the node's IPv4 address), and an IPv6 VIP over an
//! IPv4 session to GoBGP (next hop the node's IPv6 address, never `::ffff:a.b.c.d`).
//! (IPv6 over IPv4 with BIRD and FRR: `bgp_identity.rs`, `standalone_frr.rs`; IPv4 over IPv6
//! with GoBGP: `standalone_gobgp.rs`.)
//!
//! Topology: node (10.0.0.1, fd00:3::1) ── veth ── router (10.0.0.2, fd00:3::2).

use std::path::Path;
use std::time::Duration;

use herald_tests::bird::Bird;
use herald_tests::frr::Frr;
use herald_tests::gobgp::{GoBgp, path_attr as attr};
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

fn topo(tag: &str) -> (Netns, Netns) {
    let node = Netns::new(&format!("{tag}-n"));
    let router = Netns::new(&format!("{tag}-r"));
    veth_pair(
        &node,
        &["10.0.0.1/24", "fd00:3::1/64"],
        &router,
        &["10.0.0.2/24", "fd00:3::2/64"],
    );
    (node, router)
}

/// The speaker with one Service, its address from a pool of just `vip`, and one peer.
fn speaker(node: &Netns, dir: &Path, peer: &str, vip: &str) -> Daemon {
    let family = if vip.contains(':') { "IPv6" } else { "IPv4" };
    let config = format!(
        r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: public}}
spec: {{addresses: ["{vip}"]}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: router}}
spec: {{peerAddress: "{peer}", peerASN: 64513, myASN: 64512}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {{name: all}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: demo}}
spec: {{type: LoadBalancer, ipFamilies: [{family}], ports: [{{port: 80}}]}}
"#
    );
    std::fs::write(dir.join("lb.yaml"), config).unwrap();
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args(["standalone", "--node-name", "n1"])
        .arg("--config")
        .arg(dir.join("lb.yaml"))
        .arg("--state-dir")
        .arg(dir.join("state"));
    Daemon::spawn("herald-speaker", &mut cmd)
}

fn wait_kernel_route(router: &Netns, family: &str, prefix: &str, via: &str) {
    wait_until(
        &format!("{prefix} via {via} in the router's kernel"),
        DEADLINE,
        || {
            let r = router.ip(&[family, "route", "show", prefix]);
            if r.contains(&format!("via {via}")) {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
}

#[test]
fn over_an_ipv6_session_bird_installs_the_ipv4_vip_via_the_nodes_ipv4_address() {
    require_privileged!();
    let (node, router) = topo("sfb");
    let _bird = Bird::start(
        &router,
        "router id 10.0.0.2;
protocol device { }
protocol kernel { ipv4 { export all; }; }
protocol bgp node {
  local fd00:3::2 as 64513; neighbor fd00:3::1 as 64512; passive on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
  ipv6 { import all; export none; };
}
",
    );
    let dir = tempfile::tempdir().unwrap();
    let _speaker = speaker(&node, dir.path(), "fd00:3::2", "198.51.100.60/32");
    wait_kernel_route(&router, "-4", "198.51.100.60", "10.0.0.1");
}

#[test]
fn over_an_ipv6_session_frr_installs_the_ipv4_vip_via_the_nodes_ipv4_address() {
    require_privileged!();
    let (node, router) = topo("sff");
    let frr = Frr::start(
        &router,
        "router bgp 64513
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 neighbor fd00:3::1 remote-as 64512
 neighbor fd00:3::1 passive
 address-family ipv4 unicast
  neighbor fd00:3::1 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor fd00:3::1 activate
 exit-address-family
",
        false,
    );
    let dir = tempfile::tempdir().unwrap();
    let _speaker = speaker(&node, dir.path(), "fd00:3::2", "198.51.100.61/32");
    let route = wait_until("the IPv4 VIP at FRR", DEADLINE, || {
        frr.json("show bgp ipv4 unicast 198.51.100.61/32 json")
            .ok()
            .filter(|v| {
                v.get("paths")
                    .and_then(Value::as_array)
                    .is_some_and(|p| !p.is_empty())
            })
            .ok_or_else(|| frr.vtysh("show bgp ipv4 unicast"))
    });
    assert!(route.to_string().contains("10.0.0.1"), "{route:#}");
    wait_kernel_route(&router, "-4", "198.51.100.61", "10.0.0.1");
}

#[test]
fn over_an_ipv4_session_gobgp_receives_the_ipv6_vip_with_the_nodes_ipv6_next_hop() {
    require_privileged!();
    let (node, router) = topo("sfg");
    let g = GoBgp::start(
        &router,
        r#"
[global.config]
  as = 64513
  router-id = "10.0.0.2"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.1"
    peer-as = 64512
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let _speaker = speaker(&node, dir.path(), "10.0.0.2", "2001:db8:61::1/128");
    let routes = wait_until("the IPv6 VIP at GoBGP", DEADLINE, || {
        match g.json(&["global", "rib", "-a", "ipv6"])? {
            Value::Object(m) if m.contains_key("2001:db8:61::1/128") => Ok(m),
            other => Err(other.to_string()),
        }
    });
    let path = &routes["2001:db8:61::1/128"][0];
    // MP_REACH_NLRI (14) carries the IPv6 next hop.
    let next_hop = attr(path, 14)
        .and_then(|a| a["nexthop"].as_str())
        .or_else(|| path["nexthop"].as_str());
    assert_eq!(next_hop, Some("fd00:3::1"), "{path}");
}
