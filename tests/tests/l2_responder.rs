//! The ARP/NDP responder on a real bridge: three node namespaces and a client (issue tests 1
//! and 5). The responders run in-process, one thread per node namespace, fed by the pure
//! election with every node alive; gossip and failover are tested with the lab binary in
//! `l2_failover.rs`.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use herald_l2::election::{AddressPolicy, NodeFacts, announcements, elect};
use herald_l2::raw::{ETH_P_ARP, ETH_P_IPV6, PacketSocket};
use herald_l2::responder::{AnnounceConfig, Desired, Responder, ResponderStats};
use herald_tests::segment::{Segment, arping, ndisc6};
use herald_tests::{Netns, require_command, require_privileged, wait_until};
use tokio::sync::mpsc;

const VIP4: &str = "10.77.0.200";
const VIP6: &str = "fd00:77::200";

/// A responder running on its own thread inside a node namespace.
struct NodeResponder {
    tx: Option<mpsc::UnboundedSender<Desired>>,
    stats: Arc<std::sync::Mutex<Option<StatsView>>>,
    thread: Option<JoinHandle<()>>,
}

/// Counters read back from the responder thread.
#[derive(Debug, Clone, Copy, Default)]
struct StatsView {
    replies: u64,
    announcements: u64,
    ignored: u64,
}

fn view(s: &ResponderStats) -> StatsView {
    StatsView {
        replies: s.replies.load(Ordering::Relaxed),
        announcements: s.announcements.load(Ordering::Relaxed),
        ignored: s.ignored.load(Ordering::Relaxed),
    }
}

impl NodeResponder {
    fn start(ns: &Netns, config: AnnounceConfig) -> Self {
        let path = format!("/run/netns/{}", ns.name());
        let (tx, mut rx) = mpsc::unbounded_channel::<Desired>();
        let stats = Arc::new(std::sync::Mutex::new(None));
        let shared = stats.clone();
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).expect("netns file");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let responder = Responder::spawn(config);
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tokio::select! {
                        msg = rx.recv() => match msg {
                            Some(desired) => responder.set(desired),
                            None => break,
                        },
                        _ = tick.tick() => {}
                    }
                    *shared.lock().expect("stats lock") = Some(view(responder.stats()));
                }
            });
        });
        NodeResponder {
            tx: Some(tx),
            stats,
            thread: Some(thread),
        }
    }

    fn set(&self, desired: Desired) {
        self.tx
            .as_ref()
            .expect("running")
            .send(desired)
            .expect("responder thread alive");
    }

    fn stats(&self) -> StatsView {
        self.stats.lock().expect("stats lock").unwrap_or_default()
    }
}

impl Drop for NodeResponder {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn facts(seg: &Segment) -> Vec<NodeFacts> {
    seg.nodes
        .iter()
        .map(|n| NodeFacts {
            name: n.ns.name().to_owned(),
            ready: true,
            links_up: [n.ifname.clone()].into(),
            ..Default::default()
        })
        .collect()
}

fn policies(addrs: &[&str]) -> Vec<AddressPolicy> {
    addrs
        .iter()
        .map(|a| AddressPolicy {
            addr: a.parse().expect("address"),
            interfaces: vec![],
            node_selectors: vec![],
            local_endpoint_nodes: None,
        })
        .collect()
}

/// Starts a responder per node and feeds each what the election gives it. Returns the
/// responders and, per address, the index of the owning node.
fn start_elected(
    seg: &Segment,
    addrs: &[&str],
    config: AnnounceConfig,
) -> (Vec<NodeResponder>, Vec<usize>) {
    let nodes = facts(seg);
    let live: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let owners = elect(&policies(addrs), &nodes, &live);
    let responders: Vec<NodeResponder> = seg
        .nodes
        .iter()
        .map(|n| {
            let r = NodeResponder::start(&n.ns, config);
            r.set(announcements(&owners, n.ns.name()));
            r
        })
        .collect();
    let owner_idx = addrs
        .iter()
        .map(|a| {
            let addr: IpAddr = a.parse().expect("address");
            let name = &owners[&addr].node;
            seg.nodes
                .iter()
                .position(|n| n.ns.name() == name)
                .expect("owner is a node")
        })
        .collect();
    (responders, owner_idx)
}

#[test]
fn exactly_the_elected_owner_answers_arp_and_ndp_with_its_own_mac() {
    require_privileged!();
    require_command("arping", "iputils-arping");
    require_command("ndisc6", "ndisc6");
    let seg = Segment::new("l2own", 3);
    // No repeated announcements: `ndisc6 -m` would count them as answers.
    let quiet = AnnounceConfig {
        repeats: 0,
        ..AnnounceConfig::default()
    };
    let (_responders, owners) = start_elected(&seg, &[VIP4, VIP6], quiet);

    let owner4 = &seg.nodes[owners[0]].mac;
    let replies = wait_until("an ARP reply for the VIP", Duration::from_secs(10), || {
        let r = arping(&seg.client, VIP4, 1);
        if r.is_empty() {
            Err("no reply".into())
        } else {
            Ok(r)
        }
    });
    assert_eq!(replies, vec![owner4.clone()], "one reply, from the owner");
    // Steady state: still exactly one answer.
    assert_eq!(arping(&seg.client, VIP4, 1), vec![owner4.clone()]);

    let owner6 = &seg.nodes[owners[1]].mac;
    let adverts = wait_until("a neighbour advertisement", Duration::from_secs(10), || {
        let r = ndisc6(&seg.client, VIP6, 1000);
        if r.is_empty() {
            Err("no advertisement".into())
        } else {
            Ok(r)
        }
    });
    assert_eq!(
        adverts,
        vec![owner6.clone()],
        "one advertisement, from the owner"
    );

    // Only the owner joined the solicited-node group of the IPv6 address.
    for (i, node) in seg.nodes.iter().enumerate() {
        let groups = node.ns.ip(&["-6", "maddr", "show", "dev", &node.ifname]);
        assert_eq!(
            groups.contains("ff02::1:ff00:200"),
            i == owners[1],
            "node{} groups: {groups}",
            i + 1
        );
    }

    // Addresses nobody owns get no answer.
    assert!(arping(&seg.client, "10.77.0.201", 1).is_empty());
    assert!(ndisc6(&seg.client, "fd00:77::201", 500).is_empty());
}

#[test]
fn giving_an_address_up_stops_answering_and_taking_it_over_announces_it() {
    require_privileged!();
    require_command("arping", "iputils-arping");
    let seg = Segment::new("l2give", 2);
    let (responders, owners) = start_elected(&seg, &[VIP4], AnnounceConfig::default());
    let (old, new) = (owners[0], 1 - owners[0]);
    wait_until("the owner to answer", Duration::from_secs(10), || {
        let r = arping(&seg.client, VIP4, 1);
        if r == vec![seg.nodes[old].mac.clone()] {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });

    let capture = seg
        .client
        .ns
        .run_in(|| PacketSocket::open(&seg.client.ifname, ETH_P_ARP))
        .expect("capture socket");
    responders[old].set(Desired::new());
    // Nobody answers any more; the caller moved nothing yet.
    wait_until(
        "the old owner to stop answering",
        Duration::from_secs(5),
        || {
            let r = arping(&seg.client, VIP4, 1);
            if r.is_empty() {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        },
    );

    responders[new].set([(VIP4.parse().expect("vip"), seg.nodes[new].ifname.clone())].into());
    let new_mac = mac_bytes(&seg.nodes[new].mac);
    let mut buf = [0u8; 2048];
    wait_until(
        "a gratuitous ARP from the new owner",
        Duration::from_secs(5),
        || match capture.recv_timeout(&mut buf, Duration::from_millis(200)) {
            Ok(Some(n)) if is_gratuitous_arp(&buf[..n], new_mac, VIP4) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(
        arping(&seg.client, VIP4, 1),
        vec![seg.nodes[new].mac.clone()]
    );
    // Takeover announcements repeat (default: 5 more, one per second).
    wait_until("repeated announcements", Duration::from_secs(10), || {
        let s = responders[new].stats();
        if s.announcements >= 3 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
}

#[test]
fn malformed_frames_and_foreign_requests_are_ignored_without_harm() {
    require_privileged!();
    require_command("arping", "iputils-arping");
    let seg = Segment::new("l2bad", 1);
    let quiet = AnnounceConfig {
        repeats: 0,
        ..AnnounceConfig::default()
    };
    let (responders, _) = start_elected(&seg, &[VIP4, VIP6], quiet);
    let node_mac = mac_bytes(&seg.nodes[0].mac);
    let client_mac = mac_bytes(&seg.client.mac);
    wait_until("the owner to answer", Duration::from_secs(10), || {
        if arping(&seg.client, VIP4, 1).len() == 1 {
            Ok(())
        } else {
            Err("no reply".into())
        }
    });
    // The counters are published every 20 ms: wait until they include that reply.
    let before = wait_until("the reply to be counted", Duration::from_secs(5), || {
        let s = responders[0].stats();
        if s.replies >= 1 {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    });

    let arp = seg
        .client
        .ns
        .run_in(|| PacketSocket::open(&seg.client.ifname, ETH_P_ARP))
        .expect("arp socket");
    let ip6 = seg
        .client
        .ns
        .run_in(|| PacketSocket::open(&seg.client.ifname, ETH_P_IPV6))
        .expect("ipv6 socket");
    let good_arp = arp_request(client_mac, "10.77.0.100", VIP4);
    let good_ns = neighbor_solicit(client_mac, VIP6);
    let mut bad: Vec<(&PacketSocket, Vec<u8>)> = Vec::new();
    // Truncated at every length short of a full ARP payload (the kernel pads to 60 bytes on
    // the wire, so cut inside the header and the payload).
    for len in [14, 15, 20, 27, 41] {
        bad.push((&arp, good_arp[..len].to_vec()));
    }
    // Wrong hardware type, wrong protocol length, ARP reply instead of request.
    for (offset, value) in [(15, 9u8), (19, 5), (21, 2)] {
        let mut f = good_arp.clone();
        f[offset] = value;
        bad.push((&arp, f));
    }
    // A well-formed request for an address nobody here owns.
    bad.push((&arp, arp_request(client_mac, "10.77.0.100", "10.77.0.250")));
    // NDP: truncated, hop limit 254, bad checksum, code 1, solicitation for a foreign address.
    for len in [20, 54, 70, 77] {
        bad.push((&ip6, good_ns[..len].to_vec()));
    }
    for (offset, value) in [(21, 254u8), (57, 0x55), (55, 1)] {
        let mut f = good_ns.clone();
        f[offset] ^= value;
        bad.push((&ip6, f));
    }
    bad.push((&ip6, neighbor_solicit(client_mac, "fd00:77::250")));
    // Garbage with ARP and IPv6 EtherTypes.
    for (sock, et) in [(&arp, [0x08, 0x06]), (&ip6, [0x86, 0xdd])] {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&client_mac);
        f.extend_from_slice(&et);
        f.extend((0..200u8).map(|i| i.wrapping_mul(37)));
        bad.push((sock, f));
    }
    for (sock, frame) in &bad {
        // The kernel may refuse the shortest ones; whatever goes out must be ignored.
        let _ = sock.send(frame);
    }
    // Then valid requests: sockets deliver in order, so once these are answered every bad
    // frame before them has been read.
    arp.send(&good_arp).expect("send");
    ip6.send(&good_ns).expect("send");
    let mut buf = [0u8; 2048];
    wait_until(
        "a reply to the valid ARP request",
        Duration::from_secs(5),
        || match arp.recv_timeout(&mut buf, Duration::from_millis(200)) {
            Ok(Some(n)) if buf[..n].get(6..12) == Some(&node_mac[..]) && buf[21] == 2 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    wait_until(
        "a solicited advertisement for the valid solicitation",
        Duration::from_secs(5),
        || match ip6.recv_timeout(&mut buf, Duration::from_millis(200)) {
            // ICMPv6 type 136 with the solicited flag.
            Ok(Some(n))
                if buf[..n].get(6..12) == Some(&node_mac[..])
                    && buf.get(54) == Some(&136)
                    && buf[58] & 0x40 != 0 =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    );
    // A unicast solicitation (neighbour unreachability detection, RFC 4861 §7.3.3): to the
    // address itself and the owner's MAC.
    let mut nud = good_ns.clone();
    nud[0..6].copy_from_slice(&node_mac);
    let vip6: std::net::Ipv6Addr = VIP6.parse().expect("v6");
    nud[38..54].copy_from_slice(&vip6.octets());
    let source: std::net::Ipv6Addr = "fd00:77::100".parse().expect("v6");
    nud[56..58].copy_from_slice(&[0, 0]);
    let checksum = icmpv6_checksum(source, vip6, &nud[54..]);
    nud[56..58].copy_from_slice(&checksum.to_be_bytes());
    ip6.send(&nud).expect("send");
    wait_until(
        "a solicited advertisement for the unicast solicitation",
        Duration::from_secs(5),
        || match ip6.recv_timeout(&mut buf, Duration::from_millis(200)) {
            Ok(Some(n))
                if buf[..n].get(6..12) == Some(&node_mac[..])
                    && buf.get(54) == Some(&136)
                    && buf[58] & 0x40 != 0 =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    );
    let after = wait_until(
        "the three replies to be counted",
        Duration::from_secs(5),
        || {
            let s = responders[0].stats();
            if s.replies >= before.replies + 3 {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        },
    );
    assert_eq!(
        after.replies,
        before.replies + 3,
        "answers only to the three valid requests, none to the {} bad ones",
        bad.len()
    );
    assert!(
        // Not all: the bridge drops some (runts, solicited-node groups nobody joined).
        after.ignored >= before.ignored + 8,
        "the bad frames reached the responder and were ignored: {before:?} -> {after:?}"
    );
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let v: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    v.try_into().expect("6 bytes")
}

fn is_gratuitous_arp(frame: &[u8], mac: [u8; 6], vip: &str) -> bool {
    let ip: std::net::Ipv4Addr = vip.parse().expect("v4");
    frame.len() >= 42
        && frame[0..6] == [0xff; 6]
        && frame[6..12] == mac
        && frame[12..14] == [0x08, 0x06]
        && frame[28..32] == ip.octets()
        && frame[38..42] == ip.octets()
}

fn arp_request(src: [u8; 6], sender: &str, target: &str) -> Vec<u8> {
    let (s, t): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
        (sender.parse().expect("v4"), target.parse().expect("v4"));
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&t.octets());
    f
}

/// A valid multicast neighbour solicitation from the client (fd00:77::100) for `target`,
/// with a source link-layer address option.
fn neighbor_solicit(src: [u8; 6], target: &str) -> Vec<u8> {
    let target: std::net::Ipv6Addr = target.parse().expect("v6");
    let source: std::net::Ipv6Addr = "fd00:77::100".parse().expect("v6");
    let group = herald_l2::packet::solicited_node(target);
    let mut body = Vec::new();
    body.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src);
    let checksum = icmpv6_checksum(source, group, &body);
    body[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut f = herald_l2::packet::multicast_mac(group).to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&u16::try_from(body.len()).expect("short").to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&source.octets());
    f.extend_from_slice(&group.octets());
    f.extend_from_slice(&body);
    f
}

fn icmpv6_checksum(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, body: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for chunk in bytes.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&u32::try_from(body.len()).expect("short").to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(body);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
