//! `herald-speaker standalone` against GoBGP 3: the YAML configuration's VIPs arrive with the
//! advertisement's attributes (communities, large communities, origin, AS path, next hop),
//! and an edit that removes a Service withdraws its route.
//!
//! Topology: node namespace (10.0.0.1) -- veth -- peer namespace (10.0.0.2, gobgpd, AS 64513).

use std::time::Duration;

use herald_tests::gobgp::{GoBgp, path_attr as attr};
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

const GOBGP: &str = r#"
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
"#;

fn config(services: &[&str]) -> String {
    let mut text = String::from(
        r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [203.0.113.0/29]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: gobgp}
spec: {peerAddress: 10.0.0.2, peerASN: 64513, myASN: 64512}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: tagged}
spec:
  communities: ["64512:300", "65535:65281"]
  largeCommunities: ["64512:7:9"]
"#,
    );
    for name in services {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 443}}]}}\n"
        ));
    }
    text
}

/// Prefix -> its (single) path in GoBGP's IPv4 RIB.
fn rib(g: &GoBgp) -> Result<serde_json::Map<String, Value>, String> {
    match g.json(&["global", "rib", "-a", "ipv4"])? {
        Value::Object(m) => Ok(m),
        other => Err(other.to_string()),
    }
}

#[test]
fn gobgp_receives_the_configured_vips_with_the_advertisements_attributes_and_edits_withdraw() {
    require_privileged!();
    let node = Netns::new("sag-n");
    let peer = Netns::new("sag-p");
    veth_pair(&node, &["10.0.0.1/24"], &peer, &["10.0.0.2/24"]);
    let g = GoBgp::start(&peer, GOBGP);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, config(&["web", "api"])).unwrap();
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args(["standalone", "--node-name", "n1"])
        .arg("--config")
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let _speaker = Daemon::spawn("herald-speaker", &mut cmd);

    let routes = wait_until("both VIPs at GoBGP", DEADLINE, || {
        let r = rib(&g)?;
        if r.len() == 2 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    });
    let prefixes: Vec<&str> = routes.keys().map(String::as_str).collect();
    let mut want: Vec<String> =
        herald_tests::placement::standalone_addresses(&config(&["web", "api"]))
            .values()
            .map(|a| format!("{}/32", a[0]))
            .collect();
    want.sort();
    assert_eq!(prefixes, want);
    // Which one is api's, from the speaker's own status (admin on the namespace's loopback).
    let status = node
        .command(bin.to_str().unwrap())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| {
        panic!(
            "status JSON: {e}: {}",
            String::from_utf8_lossy(&status.stderr)
        )
    });
    let api = status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == "demo/api"))
        .and_then(|s| s["addresses"][0].as_str())
        .map(|a| format!("{a}/32"))
        .unwrap_or_else(|| panic!("api's address in {status}"));
    for (prefix, paths) in &routes {
        let path = &paths[0];
        let origin = attr(path, 1).and_then(|a| a["value"].as_u64());
        assert_eq!(origin, Some(0), "{prefix}: origin IGP: {path}");
        let as_path = attr(path, 2).map(ToString::to_string).unwrap_or_default();
        assert!(as_path.contains("64512"), "{prefix}: AS path {as_path}");
        let next_hop = attr(path, 3).and_then(|a| a["nexthop"].as_str());
        assert_eq!(next_hop, Some("10.0.0.1"), "{prefix}: {path}");
        // Communities as GoBGP stores them: 64512:300 = 0xFC00012C, 65535:65281 (NO_EXPORT).
        let mut communities: Vec<u64> = attr(path, 8)
            .and_then(|a| a["communities"].as_array())
            .map(|c| c.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        communities.sort_unstable();
        assert_eq!(
            communities,
            [(64512 << 16) | 300, (65535 << 16) | 65281],
            "{prefix}: {path}"
        );
        let large = attr(path, 32).and_then(|a| a["value"].as_array());
        let large: Vec<[u64; 3]> = large
            .into_iter()
            .flatten()
            .map(|c| ["ASN", "LocalData1", "LocalData2"].map(|k| c[k].as_u64().unwrap_or(u64::MAX)))
            .collect();
        assert_eq!(large, [[64512, 7, 9]], "{prefix}: {path}");
    }

    // An edit that drops `web` withdraws exactly its route.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, config(&["api"])).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_until("web's route withdrawn at GoBGP", DEADLINE, || {
        let r = rib(&g)?;
        let keys: Vec<String> = r.keys().cloned().collect();
        if keys == [api.clone()] {
            Ok(())
        } else {
            Err(format!("{keys:?} (api is {api})"))
        }
    });
}

/// An IPv4 VIP over an IPv6 session: its next hop is the node's IPv4 address on the session's
/// link (it used to be silently not sent).
#[test]
fn over_an_ipv6_session_gobgp_receives_the_ipv4_vip_with_the_nodes_ipv4_next_hop() {
    require_privileged!();
    let node = Netns::new("sag6-n");
    let peer = Netns::new("sag6-p");
    veth_pair(
        &node,
        &["10.0.0.1/24", "fd00:2::1/64"],
        &peer,
        &["10.0.0.2/24", "fd00:2::2/64"],
    );
    let g = GoBgp::start(
        &peer,
        r#"
[global.config]
  as = 64513
  router-id = "10.0.0.2"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00:2::1"
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
    let path = dir.path().join("lb.yaml");
    std::fs::write(
        &path,
        r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [203.0.113.9/32]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: gobgp}
spec: {peerAddress: "fd00:2::2", peerASN: 64513, myASN: 64512}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 443}]}
"#,
    )
    .unwrap();
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args(["standalone", "--node-name", "n1"])
        .arg("--config")
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let _speaker = Daemon::spawn("herald-speaker", &mut cmd);
    let routes = wait_until("the IPv4 VIP at GoBGP", DEADLINE, || {
        let r = rib(&g)?;
        if r.contains_key("203.0.113.9/32") {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    });
    let path = &routes["203.0.113.9/32"][0];
    let next_hop = attr(path, 3)
        .and_then(|a| a["nexthop"].as_str())
        .or_else(|| path["nexthop"].as_str());
    assert_eq!(next_hop, Some("10.0.0.1"), "{path}");
}
