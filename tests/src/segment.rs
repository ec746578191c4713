//! A shared layer-2 segment: a Linux bridge in its own namespace with node and client
//! namespaces attached by veth pairs, for the ARP/NDP tests.

use crate::{Netns, veth_pair};

/// One namespace attached to the segment.
#[derive(Debug)]
pub struct Port {
    /// The namespace (a speaker node or the client).
    pub ns: Netns,
    /// Interface name inside `ns`.
    pub ifname: String,
    /// Its MAC address, lower case `aa:bb:..`.
    pub mac: String,
    /// The veth end in the bridge namespace.
    pub bridge_port: String,
    /// IPv4 address of the interface (no prefix).
    pub ipv4: String,
}

/// A node's second interface, on the separate gossip bridge.
#[derive(Debug)]
pub struct GossipPort {
    /// Interface name inside the node namespace.
    pub ifname: String,
    /// The veth end in the bridge namespace (set it down to cut the node off the gossip).
    pub bridge_port: String,
    /// IPv4 address of the interface (no prefix), `10.78.0.i`.
    pub ipv4: String,
}

/// A bridge namespace with `nodes` node namespaces and one client namespace on it. Each node
/// also has a second interface on a separate gossip bridge (`br1`, `10.78.0.0/24`), so the
/// segment's links can go down without cutting the gossip. Everything is removed on drop (the
/// namespaces take their interfaces with them).
#[derive(Debug)]
pub struct Segment {
    /// Speaker nodes, `10.77.0.1`..`10.77.0.N`, `fd00:77::1`..
    pub nodes: Vec<Port>,
    /// Their gossip interfaces, in the same order.
    pub gossip: Vec<GossipPort>,
    /// The client, `10.77.0.100` / `fd00:77::100`.
    pub client: Port,
    /// The namespace holding bridge `br0`; declared last so it is deleted after the ports.
    pub bridge: Netns,
}

/// Name of the bridge inside the bridge namespace.
pub const BRIDGE: &str = "br0";
/// Name of the gossip bridge inside the bridge namespace.
pub const GOSSIP_BRIDGE: &str = "br1";

impl Segment {
    /// Builds the segment with `nodes` node namespaces named after `tag`.
    pub fn new(tag: &str, nodes: usize) -> Self {
        let bridge = Netns::new(&format!("{tag}-br"));
        bridge.ip(&["link", "add", BRIDGE, "type", "bridge"]);
        bridge.ip(&["link", "set", BRIDGE, "up"]);
        let attach = |name: String, host: u32| {
            let ns = Netns::new(&name);
            let (v4, v6) = (format!("10.77.0.{host}"), format!("fd00:77::{host:x}"));
            let (bridge_port, ifname) = veth_pair(
                &bridge,
                &[],
                &ns,
                &[&format!("{v4}/24"), &format!("{v6}/64")],
            );
            bridge.ip(&["link", "set", &bridge_port, "master", BRIDGE]);
            let mac = link_mac(&ns, &ifname);
            Port {
                ns,
                ifname,
                mac,
                bridge_port,
                ipv4: v4,
            }
        };
        let nodes: Vec<Port> = (1..=nodes)
            .map(|i| attach(format!("{tag}-n{i}"), u32::try_from(i).expect("few nodes")))
            .collect();
        let client = attach(format!("{tag}-cl"), 100);
        bridge.ip(&["link", "add", GOSSIP_BRIDGE, "type", "bridge"]);
        bridge.ip(&["link", "set", GOSSIP_BRIDGE, "up"]);
        let gossip = nodes
            .iter()
            .enumerate()
            .map(|(i, node): (usize, &Port)| {
                let ipv4 = format!("10.78.0.{}", i + 1);
                let (bridge_port, ifname) =
                    veth_pair(&bridge, &[], &node.ns, &[&format!("{ipv4}/24")]);
                bridge.ip(&["link", "set", &bridge_port, "master", GOSSIP_BRIDGE]);
                GossipPort {
                    ifname,
                    bridge_port,
                    ipv4,
                }
            })
            .collect();
        Segment {
            nodes,
            gossip,
            client,
            bridge,
        }
    }

    /// The node whose interface has `mac`, by index.
    pub fn node_with_mac(&self, mac: &str) -> Option<usize> {
        let mac = mac.to_ascii_lowercase();
        self.nodes.iter().position(|n| n.mac == mac)
    }
}

/// The MAC address of `ifname` in `ns`, lower case.
pub fn link_mac(ns: &Netns, ifname: &str) -> String {
    let out = ns.ip(&["-o", "link", "show", "dev", ifname]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in `{out}`"))
        .to_ascii_lowercase()
}

/// Sends one ARP request with `arping` from the client for `target` and returns the MACs that
/// replied (one entry per reply), collected for `wait_secs`: with `-w`, `-c` counts replies,
/// and the 10 s interval keeps it to one request, so two answers mean two responders.
pub fn arping(client: &Port, target: &str, wait_secs: u32) -> Vec<String> {
    let out = client.ns.try_exec(
        "arping",
        &[
            "-i",
            "10",
            "-c",
            "3",
            "-w",
            &wait_secs.to_string(),
            "-I",
            &client.ifname,
            target,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l.find(']')?;
            Some(l[start..end].to_ascii_lowercase())
        })
        .collect()
}

/// Runs `ndisc6` from the client for `target`, listing every advertisement (`-m`), and
/// returns the target link-layer addresses seen.
pub fn ndisc6(client: &Port, target: &str, wait_ms: u32) -> Vec<String> {
    let out = client.ns.try_exec(
        "ndisc6",
        &[
            "-m",
            "-n",
            "-r",
            "1",
            "-w",
            &wait_ms.to_string(),
            target,
            &client.ifname,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("Target link-layer address"))
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_ascii_lowercase)
        .collect()
}
