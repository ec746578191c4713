//! `herald-speaker standalone` against FRR, configured from a YAML file as a user would:
//! TCP MD5 password, GTSM on both sides (`ttlSecurityHops`, FRR's `ttl-security hops`), hold
//! and keepalive times, graceful restart, and a dual-stack Service whose
//! IPv6 address goes over the IPv4 session with the node's IPv6 address as next hop (usable in
//! FRR's kernel table, not `::ffff:a.b.c.d`).
//!
//! Topology: node (10.0.0.1, fd00:1::1) ── veth ── router (10.0.0.2, fd00:1::2, FRR AS 64513).

use std::time::Duration;

use herald_tests::frr::Frr;
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(40);

const FRR: &str = "router bgp 64513
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 bgp graceful-restart
 neighbor 10.0.0.1 remote-as 64512
 neighbor 10.0.0.1 password s3cret
 neighbor 10.0.0.1 ttl-security hops 1
 neighbor 10.0.0.1 passive
 address-family ipv6 unicast
  neighbor 10.0.0.1 activate
 exit-address-family
";

const CONFIG: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.40/32, "2001:db8:40::1/128"]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: frr}
spec:
  peerAddress: 10.0.0.2
  peerASN: 64513
  myASN: 64512
  password: s3cret
  holdTime: 9s
  keepaliveTime: 3s
  gracefulRestart: true
  ttlSecurityHops: 1
  # FRR 8.4 with ttl-security on a passive neighbour closes the first accepted session itself
  # just after Established (its log: TCP_fatal_error); the retry then holds.
  connectTime: 2s
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
spec: {communities: ["64512:40"]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{port: 80}]
"#;

fn neighbor(frr: &Frr) -> Value {
    frr.json("show bgp neighbors 10.0.0.1 json")
        .ok()
        .and_then(|v| v.get("10.0.0.1").cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn a_yaml_bgp_peer_with_password_timers_and_a_dual_stack_vip_meets_frr() {
    require_privileged!();
    let node = Netns::new("sfn");
    let router = Netns::new("sfr");
    veth_pair(
        &node,
        &["10.0.0.1/24", "fd00:1::1/64"],
        &router,
        &["10.0.0.2/24", "fd00:1::2/64"],
    );
    let frr = Frr::start(&router, FRR, false);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.yaml"), CONFIG).unwrap();
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args([
        "standalone",
        "--node-name",
        "n1",
        "--admin-addr",
        "127.0.0.1:0",
    ])
    .arg("--config")
    .arg(dir.path().join("lb.yaml"))
    .arg("--state-dir")
    .arg(dir.path().join("state"));
    let _speaker = Daemon::spawn("herald-speaker", &mut cmd);

    // Established through the MD5 password, with the hold time from the YAML.
    let n = wait_until("the session at FRR", DEADLINE, || {
        let n = neighbor(&frr);
        if n["bgpState"] == "Established" {
            Ok(n)
        } else {
            Err(frr.vtysh("show bgp summary"))
        }
    });
    assert_eq!(n["bgpTimerHoldTimeMsecs"], 9000, "{n:#}");
    assert_eq!(n["bgpTimerKeepAliveIntervalMsecs"], 3000, "{n:#}");

    // The IPv4 route with the advertisement's community.
    let v4 = wait_until("the IPv4 VIP at FRR", DEADLINE, || {
        frr.json("show bgp ipv4 unicast 198.51.100.40/32 json")
            .ok()
            .filter(|v| {
                v.get("paths")
                    .and_then(Value::as_array)
                    .is_some_and(|p| !p.is_empty())
            })
            .ok_or_else(|| frr.vtysh("show bgp ipv4 unicast"))
    });
    let text = v4.to_string();
    assert!(text.contains("64512:40"), "{v4:#}");

    // The IPv6 route over the IPv4 session, next hop the node's IPv6 address on the link,
    // installed in the router's kernel.
    let v6 = wait_until("the IPv6 VIP at FRR", DEADLINE, || {
        frr.json("show bgp ipv6 unicast 2001:db8:40::1/128 json")
            .ok()
            .filter(|v| {
                v.get("paths")
                    .and_then(Value::as_array)
                    .is_some_and(|p| !p.is_empty())
            })
            .ok_or_else(|| frr.vtysh("show bgp ipv6 unicast"))
    });
    let text = v6.to_string();
    assert!(text.contains("fd00:1::1"), "{v6:#}");
    assert!(!text.contains("::ffff:"), "{v6:#}");
    wait_until("the IPv6 VIP in the router's kernel", DEADLINE, || {
        let r = router.ip(&["-6", "route", "show", "2001:db8:40::1"]);
        if r.contains("via fd00:1::1") {
            Ok(())
        } else {
            Err(r)
        }
    });
}
