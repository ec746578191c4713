//! `herald-speaker standalone` against ExaBGP 4, which decodes every attribute it is sent and
//! says what it saw: the VIPs arrive with the advertisement's communities and large
//! communities, origin IGP and the AS path of one AS; a dual-stack Service's IPv6 address
//! goes over the IPv4 session with the node's IPv6 next hop; removing the Service withdraws
//! both.
//!
//! Topology: node (10.0.0.1, fd00:4::1) ── veth ── peer (10.0.0.2, fd00:4::2, ExaBGP AS 64513).

use std::path::Path;
use std::time::Duration;

use herald_tests::exabgp::{ExaBgp, Neighbor, Route};
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

const BASE: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.70/32, "2001:db8:70::1/128"]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: exabgp}
spec: {peerAddress: 10.0.0.2, peerASN: 64513, myASN: 64512}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: tagged}
spec: {communities: ["64512:70", "no-export"], largeCommunities: ["64512:7:70"]}
"#;

const SERVICE: &str = r#"---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{port: 80}]
"#;

fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn exabgp_decodes_the_vips_attributes_and_sees_them_withdrawn() {
    require_privileged!();
    let node = Netns::new("sxn");
    let peer = Netns::new("sxp");
    veth_pair(
        &node,
        &["10.0.0.1/24", "fd00:4::1/64"],
        &peer,
        &["10.0.0.2/24", "fd00:4::2/64"],
    );
    let exa = ExaBgp::start(
        &peer,
        "10.0.0.2",
        &Neighbor {
            address: "10.0.0.1",
            local: "10.0.0.2",
            local_as: 64513,
            peer_as: 64512,
            extra: "family { ipv4 unicast; ipv6 unicast; }",
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lb.yaml");
    write_config(&config, &format!("{BASE}{SERVICE}"));
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args(["standalone", "--node-name", "n1"])
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let _speaker = Daemon::spawn("herald-speaker", &mut cmd);

    let routes = wait_until("both VIPs at ExaBGP", DEADLINE, || {
        let r = exa.routes();
        if r.contains_key("198.51.100.70/32") && r.contains_key("2001:db8:70::1/128") {
            Ok(r)
        } else {
            Err(format!("up={} routes={r:?}", exa.up()))
        }
    });
    let v4: &Route = &routes["198.51.100.70/32"];
    assert_eq!(v4.family, "ipv4 unicast");
    assert_eq!(v4.next_hop, "10.0.0.1");
    let a = &v4.attributes;
    assert_eq!(a["origin"], "igp", "{a}");
    assert_eq!(a["as-path"], json!([64512]), "{a}");
    let communities = a["community"].as_array().cloned().unwrap_or_default();
    assert!(communities.contains(&json!([64512, 70])), "{a}");
    // no-export is 65535:65281.
    assert!(communities.contains(&json!([65535, 65281])), "{a}");
    assert_eq!(a["large-community"], json!([[64512, 7, 70]]), "{a}");
    let v6 = &routes["2001:db8:70::1/128"];
    assert_eq!(v6.family, "ipv6 unicast");
    assert_eq!(v6.next_hop, "fd00:4::1", "{v6:?}");

    // The Service removed: both withdrawn, the session stays up.
    write_config(&config, BASE);
    wait_until("both VIPs withdrawn at ExaBGP", DEADLINE, || {
        let r = exa.routes();
        if r.is_empty() {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert!(
        exa.up(),
        "the session went down: {:?}",
        exa.messages().last()
    );
}
