//! `herald-speaker standalone` in layer-2 mode on a host that looks like a Kubernetes node
//! (issue 13): with `interfaces` empty it answers and announces on the uplink only, never on
//! a pod veth or a CNI bridge; a pattern naming `veth*` explicitly selects the veths.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use herald_tests::l2lab::{Capture, mac_bytes};
use herald_tests::placement::standalone_address;
use herald_tests::segment::{Port, Segment, arping, link_mac};
use herald_tests::{
    Daemon, Netns, http, require_command, require_privileged, unique_ifname, wait_until,
    workspace_binary,
};

fn config(interfaces: &str) -> String {
    format!(
        r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: lan}}
spec: {{addresses: [10.77.0.200-10.77.0.209]}}
---
apiVersion: herald.dev/v1alpha1
kind: L2Advertisement
metadata: {{name: lan}}
spec: {{ipPools: [lan]{interfaces}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: demo}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
"#
    )
}

/// A pod: its own namespace, attached to the node by a veth whose node end is `node_if`,
/// with an address on the segment's subnet so that it ARPs for the VIP directly.
fn pod(node: &Netns, node_if: &str, tag: &str, host: u8) -> Port {
    let ns = Netns::new(tag);
    let pod_if = unique_ifname("eth");
    node.ip(&[
        "link",
        "add",
        node_if,
        "type",
        "veth",
        "peer",
        "name",
        &pod_if,
        "netns",
        ns.name(),
    ]);
    node.ip(&["link", "set", node_if, "up"]);
    let ipv4 = format!("10.77.0.{host}");
    ns.ip(&["addr", "add", &format!("{ipv4}/24"), "dev", &pod_if]);
    ns.ip(&["link", "set", &pod_if, "up"]);
    let mac = link_mac(&ns, &pod_if);
    Port {
        ns,
        ifname: pod_if,
        mac,
        bridge_port: node_if.to_owned(),
        ipv4,
    }
}

/// Whether `frame` is an ARP frame that says anything about `vip` (a reply or a
/// gratuitous ARP: sender protocol address = the VIP).
fn speaks_for(frame: &[u8], vip: Ipv4Addr) -> bool {
    frame.len() >= 42 && frame[12..14] == [0x08, 0x06] && frame[28..32] == vip.octets()
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn an_empty_interface_list_answers_on_the_uplink_and_never_on_pod_interfaces() {
    require_privileged!();
    require_command("arping", "iputils-arping");
    let seg = Segment::new("sal2if", 1);
    let node = &seg.nodes[0];
    // A CNI bridge with one pod behind a veth port, and a pod on a point-to-point veth (as
    // Calico or Cilium attach them), both named veth*.
    node.ns.ip(&["link", "add", "cni0", "type", "bridge"]);
    node.ns.ip(&["link", "set", "cni0", "up"]);
    let bridged = pod(&node.ns, &unique_ifname("veth"), "sal2if-p1", 150);
    node.ns
        .ip(&["link", "set", &bridged.bridge_port, "master", "cni0"]);
    let p2p = pod(&node.ns, &unique_ifname("veth"), "sal2if-p2", 151);
    wait_until("cni0 to have carrier", Duration::from_secs(5), || {
        let l = node.ns.ip(&["-o", "link", "show", "dev", "cni0"]);
        if l.contains("LOWER_UP") {
            Ok(())
        } else {
            Err(l)
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.yaml");
    write(&path, &config(""));
    std::fs::write(dir.path().join("key"), "22".repeat(32)).unwrap();
    let vip_text = standalone_address(&config(""), "demo/web");
    let vip: Ipv4Addr = vip_text.parse().unwrap();

    let (uplink, pod1, pod2) = (
        Capture::start(&seg.client),
        Capture::start(&bridged),
        Capture::start(&p2p),
    );
    let start = Instant::now();
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.ns.command(bin.to_str().unwrap());
    cmd.args([
        "standalone",
        "--node-name",
        "node0",
        "--admin-addr",
        "127.0.0.1:9471",
    ])
    .arg("--config")
    .arg(&path)
    .arg("--state-dir")
    .arg(dir.path().join("state"))
    .args(["--gossip-bind", &format!("{}:7946", seg.gossip[0].ipv4)])
    .arg("--gossip-key-file")
    .arg(dir.path().join("key"));
    let _speaker = Daemon::spawn("herald-speaker node0", &mut cmd);

    // The uplink: a gratuitous ARP on takeover, and answers.
    let node_mac = mac_bytes(&node.mac);
    wait_until(
        "the gratuitous ARP on the uplink",
        Duration::from_secs(20),
        || {
            uplink
                .first_after(start, |f| {
                    herald_tests::l2lab::is_gratuitous_arp(f, node_mac, vip)
                })
                .map(|_| ())
                .ok_or_else(|| "none yet".to_string())
        },
    );
    wait_until(
        "an ARP answer on the uplink",
        Duration::from_secs(10),
        || {
            let replies = arping(&seg.client, &vip_text, 1);
            if replies == [node.mac.clone()] {
                Ok(())
            } else {
                Err(format!("{replies:?}"))
            }
        },
    );
    // The pods ask too; nobody answers them.
    for (pod, what) in [
        (&bridged, "the pod behind cni0"),
        (&p2p, "the pod on a point-to-point veth"),
    ] {
        let replies = arping(pod, &vip_text, 1);
        assert!(replies.is_empty(), "{what} got answers {replies:?}");
    }
    for (capture, what) in [(&pod1, "behind cni0"), (&pod2, "on a point-to-point veth")] {
        assert!(
            capture.first_after(start, |f| speaks_for(f, vip)).is_none(),
            "the pod {what} heard about {vip}"
        );
    }
    // And the speaker says so itself: the VIP is offered on the node's own links (the uplink
    // and the lab's gossip link), none of the pod ones.
    let admin = "127.0.0.1:9471".parse().unwrap();
    let status = http::get(&node.ns, admin, "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let l2 = &status["desired"]["l2"];
    let mut offered: Vec<&str> = l2[0]["interfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i.as_str()).collect())
        .unwrap_or_default();
    offered.sort_unstable();
    let mut want = [node.ifname.as_str(), seg.gossip[0].ifname.as_str()];
    want.sort_unstable();
    assert_eq!(offered, want, "{l2}");

    // Naming veth* explicitly (with the uplink): the point-to-point veth answers and
    // announces. (The bridge's veth port is named too, but it never sees the bridged pod's
    // requests: the bridge takes frames from its ports first; naming cni0 answers them.)
    let since = Instant::now();
    let explicit = format!(", interfaces: [{}, \"veth*\"]", node.ifname);
    write(&path, &config(&explicit));
    let veth_mac = link_mac(&node.ns, &p2p.bridge_port);
    wait_until(
        "the veth to answer once named",
        Duration::from_secs(10),
        || {
            let replies = arping(&p2p, &vip_text, 1);
            if replies == [veth_mac.clone()] {
                Ok(())
            } else {
                Err(format!("{replies:?}"))
            }
        },
    );
    assert!(
        pod2.first_after(since, |f| herald_tests::l2lab::is_gratuitous_arp(
            f,
            mac_bytes(&veth_mac),
            vip
        ))
        .is_some(),
        "takeover on the veth is announced"
    );
}
