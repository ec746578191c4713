//! `herald-speaker standalone` in layer-2 mode: two nodes on one segment gossip, exactly one
//! answers ARP for a VIP from the configuration, and the other takes over when it is killed.

use std::path::Path;
use std::time::Duration;

use herald_tests::http;
use herald_tests::segment::{Segment, arping};
use herald_tests::{Daemon, require_command, require_privileged, wait_until, workspace_binary};

const CONFIG: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: lan}
spec: {addresses: [10.77.0.200-10.77.0.209]}
---
apiVersion: herald.dev/v1alpha1
kind: L2Advertisement
metadata: {name: lan}
spec: {ipPools: [lan]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;

fn speaker(seg: &Segment, i: usize, dir: &Path) -> Daemon {
    let me = &seg.gossip[i];
    let other = &seg.gossip[1 - i];
    let bin = workspace_binary("herald-speaker");
    let mut cmd = seg.nodes[i].ns.command(bin.to_str().unwrap());
    cmd.args([
        "standalone",
        "--node-name",
        &format!("node{i}"),
        "--admin-addr",
        "127.0.0.1:9471",
    ])
    .arg("--config")
    .arg(dir.join("lb.yaml"))
    .arg("--state-dir")
    .arg(dir.join(format!("state{i}")))
    .args(["--gossip-bind", &format!("{}:7946", me.ipv4)])
    .args(["--gossip-peer", &format!("{}:7946", other.ipv4)])
    .arg("--gossip-key-file")
    .arg(dir.join("key"));
    Daemon::spawn(&format!("herald-speaker node{i}"), &mut cmd)
}

#[test]
fn exactly_one_node_answers_arp_for_a_configured_vip_and_the_other_takes_over() {
    require_privileged!();
    require_command("arping", "iputils-arping");
    let seg = Segment::new("sal2", 2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.yaml"), CONFIG).unwrap();
    std::fs::write(dir.path().join("key"), "11".repeat(32)).unwrap();
    let mut nodes = vec![
        Some(speaker(&seg, 0, dir.path())),
        Some(speaker(&seg, 1, dir.path())),
    ];

    // Both nodes compute the same placement from the same config.
    let vip = herald_tests::placement::standalone_address(CONFIG, "demo/web");
    let unassigned = if vip == "10.77.0.200" {
        "10.77.0.201"
    } else {
        "10.77.0.200"
    };
    // Until the two have seen each other (gossip), each may think it owns the address; under
    // load that can outlast the first answer. The owner is the node that answers alone
    // three probes in a row.
    let mut last: Option<String> = None;
    let mut streak = 0;
    let owner_mac = wait_until(
        &format!("one stable ARP answer for {vip}"),
        Duration::from_secs(30),
        || {
            let replies = arping(&seg.client, &vip, 1);
            match replies.as_slice() {
                [one] if last.as_deref() == Some(one.as_str()) => streak += 1,
                [one] => {
                    last = Some(one.clone());
                    streak = 1;
                }
                _ => {
                    last = None;
                    streak = 0;
                }
            }
            if streak >= 3 {
                Ok(last.clone().unwrap_or_default())
            } else {
                Err(format!("replies {replies:?}, {streak} in a row"))
            }
        },
    );
    let owner = seg
        .node_with_mac(&owner_mac)
        .expect("the answer comes from a node");
    assert!(
        arping(&seg.client, unassigned, 1).is_empty(),
        "an unassigned address is not answered"
    );

    // Kill the owner: the other node answers.
    nodes[owner].take().unwrap().kill();
    let survivor = 1 - owner;
    wait_until("the survivor to answer", Duration::from_secs(10), || {
        let replies = arping(&seg.client, &vip, 1);
        if replies == [seg.nodes[survivor].mac.clone()] {
            Ok(())
        } else {
            Err(format!("{replies:?}"))
        }
    });

    // Its metrics count the takeover's gratuitous ARPs and the replies, on its interface.
    let interface = &seg.nodes[survivor].ifname;
    let admin = "127.0.0.1:9471".parse().unwrap();
    wait_until(
        "the survivor's layer-2 counters",
        Duration::from_secs(10),
        || {
            let text = http::get(&seg.nodes[survivor].ns, admin, "/metrics")?;
            let sent = |name: &str| {
                http::metric(&text, &format!("{name}{{interface=\"{interface}\"}}")).unwrap_or(0.0)
            };
            if sent("herald_l2_announcements_sent") >= 1.0 && sent("herald_l2_replies_sent") >= 1.0
            {
                Ok(())
            } else {
                Err(text)
            }
        },
    );
    drop(nodes);
}
