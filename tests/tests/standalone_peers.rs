//! `BGPPeer` fields that shape the connection, tried through `herald-speaker standalone` with
//! a YAML file against BIRD: `ebgpMultiHop` with `sourceAddress` and a multihop `bfdProfile`
//! across a router, `passive` with a `password` on the listening socket, and `password` with
//! `ttlSecurityHops` (GTSM) on the connecting side.
//!
//! Each field is shown to matter: the same configuration without it gets no session.

use std::path::Path;
use std::time::{Duration, Instant};

use herald_tests::bird::Bird;
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};

const DEADLINE: Duration = Duration::from_secs(30);
/// How long a session that must not come up is watched for.
const NEVER: Duration = Duration::from_secs(4);

fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn speaker(node: &Netns, dir: &Path) -> Daemon {
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args(["standalone", "--node-name", "n1"])
        .arg("--config")
        .arg(dir.join("lb.yaml"))
        .arg("--state-dir")
        .arg(dir.join("state"));
    Daemon::spawn("herald-speaker", &mut cmd)
}

fn wait_established(bird: &Bird, proto: &str) {
    wait_until(&format!("bird {proto} Established"), DEADLINE, || {
        if bird.established(proto) {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                bird.protocol(proto),
                bird.birdc(&["show", "bfd", "sessions"])
            ))
        }
    });
}

/// Watches for `NEVER` that BIRD's `proto` stays down (a bounded loop, not a sleep: it fails
/// the moment the session comes up).
fn assert_never_established(bird: &Bird, proto: &str, why: &str) {
    let deadline = Instant::now() + NEVER;
    while Instant::now() < deadline {
        assert!(!bird.established(proto), "{why}: {}", bird.protocol(proto));
        std::thread::sleep(Duration::from_millis(200));
    }
}

const POOL_AND_SERVICE: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.9/32]}
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

/// node (10.0.1.1 primary, 10.0.1.9 secondary) ─ router ─ peer (10.0.2.2, BIRD). BIRD peers
/// with 10.0.1.9 only and two hops away, with multihop BFD (UDP 4784).
#[test]
fn ebgp_multihop_and_source_address_reach_bird_across_a_router_with_multihop_bfd() {
    require_privileged!();
    let node = Netns::new("spmh-n");
    let router = Netns::new("spmh-r");
    let peer = Netns::new("spmh-p");
    veth_pair(&node, &["10.0.1.1/24"], &router, &["10.0.1.2/24"]);
    veth_pair(&router, &["10.0.2.1/24"], &peer, &["10.0.2.2/24"]);
    router.enable_forwarding();
    let node_if = node.ip(&["-o", "link", "show", "type", "veth"]);
    let node_if = node_if
        .split(':')
        .nth(1)
        .map(|s| s.trim().split('@').next().unwrap_or("").to_owned())
        .expect("the node's veth");
    node.ip(&["addr", "add", "10.0.1.9/24", "dev", &node_if]);
    node.ip(&["route", "add", "10.0.2.0/24", "via", "10.0.1.2"]);
    peer.ip(&["route", "add", "10.0.1.0/24", "via", "10.0.2.1"]);
    let bird = Bird::start(
        &peer,
        "router id 10.0.2.2;
protocol device { }
protocol static { ipv4; route 10.0.1.0/24 via 10.0.2.1; }
protocol bfd { multihop { interval 100 ms; multiplier 3; }; }
protocol bgp node {
  local 10.0.2.2 as 64513;
  neighbor 10.0.1.9 as 64512;
  multihop 2;
  passive on;
  bfd on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lb.yaml");
    // BIRD sends multihop BFD with TTL 64, so the profile accepts down to 60 (the default,
    // 254, is for peers that send 255).
    let peer_yaml = |fields: &str| {
        format!(
            "{POOL_AND_SERVICE}---
apiVersion: herald.dev/v1alpha1
kind: BFDProfile
metadata: {{name: multi}}
spec: {{receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3, minimumTtl: 60}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: router}}
spec: {{peerAddress: 10.0.2.2, peerASN: 64513, myASN: 64512, bfdProfile: multi{fields}}}
"
        )
    };

    // The source address alone: TTL 1 dies at the router.
    write_config(&config, &peer_yaml(", sourceAddress: 10.0.1.9"));
    let _speaker = speaker(&node, dir.path());
    assert_never_established(&bird, "node", "a TTL-1 session crossed a router");

    // Multihop without the source address: the kernel picks 10.0.1.1, which BIRD refuses.
    write_config(&config, &peer_yaml(", ebgpMultiHop: true"));
    assert_never_established(&bird, "node", "BIRD accepted a session from 10.0.1.1");

    // Both: the session comes up over multihop BFD, with the source address as next hop.
    write_config(
        &config,
        &peer_yaml(", ebgpMultiHop: true, sourceAddress: 10.0.1.9"),
    );
    wait_established(&bird, "node");
    let route = wait_until("the VIP at bird", DEADLINE, || {
        let r = bird.routes("node");
        if r.contains("198.51.100.9/32") {
            Ok(r)
        } else {
            Err(r)
        }
    });
    assert!(route.contains("BGP.next_hop: 10.0.1.9"), "{route}");
    // Herald's BGP waited for its own BFD Up; BIRD goes Up once it hears that (BIRD sends
    // at 1 s until Up, so this can trail by about a second).
    wait_until("bird's multihop BFD session Up", DEADLINE, || {
        let bfd = bird.birdc(&["show", "bfd", "sessions"]);
        if bfd
            .lines()
            .any(|l| l.contains("10.0.1.9") && l.contains("Up"))
        {
            Ok(())
        } else {
            Err(bfd)
        }
    });
}

/// node (10.0.0.1) ─ veth ─ peer (10.0.0.2, BIRD, connects with MD5). Herald only listens.
#[test]
fn a_passive_peer_connects_to_the_speakers_listener_with_md5_on_it() {
    require_privileged!();
    let node = Netns::new("sppa-n");
    let peer = Netns::new("sppa-p");
    veth_pair(&node, &["10.0.0.1/24"], &peer, &["10.0.0.2/24"]);
    let bird = Bird::start(
        &peer,
        "router id 10.0.0.2;
protocol device { }
protocol bgp node {
  local 10.0.0.2 as 64513; neighbor 10.0.0.1 as 64512; password \"s3cret\";
  connect retry time 1; error wait time 1, 5;
  ipv4 { import all; export none; };
}
",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lb.yaml");
    let peer_yaml = |password: &str| {
        format!(
            "{POOL_AND_SERVICE}---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: router}}
spec: {{peerAddress: 10.0.0.2, peerASN: 64513, myASN: 64512, passive: true, password: {password}}}
"
        )
    };
    // A wrong key on the listener: the kernel drops BIRD's SYNs.
    write_config(&config, &peer_yaml("wrong"));
    let _speaker = speaker(&node, dir.path());
    assert_never_established(&bird, "node", "a wrong MD5 key let BIRD in");

    write_config(&config, &peer_yaml("s3cret"));
    wait_established(&bird, "node");
    wait_until("the VIP at bird", DEADLINE, || {
        let r = bird.routes("node");
        if r.contains("198.51.100.9/32") {
            Ok(())
        } else {
            Err(r)
        }
    });
    // Passive: Herald never opened a connection of its own (BIRD's side is the one that
    // connected to port 179).
    let sockets = node.exec("ss", &["-tnH", "state", "established"]);
    assert!(
        sockets.lines().any(|l| {
            // Recv-Q Send-Q Local Peer; the dual-stack listener shows [::ffff:10.0.0.1]:179.
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 4
                && (f[2].ends_with("10.0.0.1]:179") || f[2].ends_with("10.0.0.1:179"))
                && f[3].contains("10.0.0.2")
        }),
        "no accepted connection on the listener: {sockets}"
    );
}

/// node (10.0.0.1) ─ veth ─ peer (10.0.0.2, BIRD with a password and `ttl security on`).
#[test]
fn a_password_and_ttl_security_hops_are_both_needed_by_a_bird_asking_for_both() {
    require_privileged!();
    let node = Netns::new("spgt-n");
    let peer = Netns::new("spgt-p");
    veth_pair(&node, &["10.0.0.1/24"], &peer, &["10.0.0.2/24"]);
    let bird = Bird::start(
        &peer,
        "router id 10.0.0.2;
protocol device { }
protocol bgp node {
  local 10.0.0.2 as 64513; neighbor 10.0.0.1 as 64512; passive on;
  password \"s3cret\"; ttl security on;
  # A TTL-1 attempt can slip past IP_MINTTL (docs/reference/bgp.md, § Peer behaviour worth
  # knowing) and leave BIRD on a connection that is dead from then on: in OpenSent if only
  # the handshake got through, in OpenConfirm if our OPEN did too. BIRD refuses every other
  # connection meanwhile, so let both hold timers expire in 3 s, not 240 and 90.
  startup hold time 3;
  hold time 3;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lb.yaml");
    let peer_yaml = |fields: &str| {
        format!(
            "{POOL_AND_SERVICE}---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: router}}
spec: {{peerAddress: 10.0.0.2, peerASN: 64513, myASN: 64512, connectTime: 1s{fields}}}
"
        )
    };
    // GTSM with a wrong key: the kernel drops the segments without a valid signature.
    write_config(&config, &peer_yaml(", ttlSecurityHops: 1, password: wrong"));
    let _speaker = speaker(&node, dir.path());
    assert_never_established(&bird, "node", "a wrong MD5 key was accepted");

    // The right key without GTSM: our TTL of 1 is below the 255 BIRD requires.
    write_config(&config, &peer_yaml(", password: s3cret"));
    assert_never_established(&bird, "node", "TTL 1 was accepted by a GTSM peer");

    write_config(
        &config,
        &peer_yaml(", ttlSecurityHops: 1, password: s3cret"),
    );
    wait_established(&bird, "node");
    wait_until("the VIP at bird", DEADLINE, || {
        let r = bird.routes("node");
        if r.contains("198.51.100.9/32") {
            Ok(())
        } else {
            Err(r)
        }
    });
}
