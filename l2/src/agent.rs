//! The layer-2 agent: wires link watcher, gossip, election and responder together.
//!
//! ```text
//!  LinkWatcher ──usable links──┐                       ┌──> Gossip::set_links (own facts)
//!                              ├──> agent task: elect ─┤
//!  Gossip ──Membership─────────┘    (pure election)    └──> Responder::set (owned pairs)
//!  set_policies(..), set_node_status(..) ──watch──┘
//! ```
//!
//! An election that moves an address to this node from an owner that is no longer a
//! candidate starts a takeover in the [`TakeoverTimer`] the responder shares; its first
//! announcement of the address ends it (`herald_l2_takeover_seconds`).
//!
//! Every input change re-runs the whole election (level-triggered), so a lost event cannot
//! leave stale state. Liveness comes only from gossip. This node's own links are taken from
//! the watcher directly, so losing carrier withdraws its announcements at once, before the
//! others have even heard of it. `externalTrafficPolicy: Local` endpoints and node selectors
//! are in the [`AddressPolicy`] values; Node conditions and labels (Ready, NetworkUnavailable,
//! the exclusion label) come with [`Agent::set_node_status`]. Without a Kubernetes source
//! (standalone) every live node counts as ready.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::election::{AddressPolicy, NodeFacts, Owner, announcements, elect, eligible_interfaces};
use super::error::L2Error;
use super::gossip::{Gossip, GossipConfig, Membership};
use super::interfaces;
use super::link::LinkWatcher;
use super::responder::{AnnounceConfig, Desired, Responder};
use super::takeover::{TakeoverHistograms, TakeoverTimer};

/// Agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name (its gossip identity).
    pub node: String,
    /// Interface name patterns this node may answer on (see [`super::interfaces`]); empty:
    /// every usable interface. A pattern here also selects an interface excluded by default.
    pub interfaces: Vec<String>,
    /// Gossip settings.
    pub gossip: GossipConfig,
    /// Takeover announcements.
    pub announce: AnnounceConfig,
}

/// What the API server says about a node (its `Node` object): system facts the election needs
/// besides liveness and links.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// The `NetworkUnavailable` condition is `True`.
    pub network_unavailable: bool,
}

/// The caller's inputs: what to announce and, in a cluster, the nodes' status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Intent {
    policies: Vec<AddressPolicy>,
    /// `None` standalone (every live node ready, no labels); `Some` in a cluster, where a live
    /// node without an entry is not eligible.
    node_status: Option<BTreeMap<String, NodeStatus>>,
    /// The node is drained: it offers no links, so the others take its addresses.
    drained: bool,
}

/// Handle of the agent; dropping it stops every task (responder, gossip, link watcher).
#[derive(Debug)]
pub struct Agent {
    intent: watch::Sender<Intent>,
    owned: watch::Receiver<Desired>,
    gossip: std::sync::Arc<Gossip>,
    stats: std::sync::Arc<super::responder::ResponderStats>,
    task: JoinHandle<()>,
}

impl Agent {
    /// Starts link watcher, gossip and responder on the current tokio runtime.
    pub async fn spawn(config: AgentConfig) -> Result<Self, L2Error> {
        Self::start(config, TakeoverTimer::new(None)).await
    }

    /// As [`spawn`](Self::spawn), and observes into `takeover_seconds` (by family) the time
    /// from an election that moves an address here from a lost owner to this node's first
    /// announcement of it.
    pub async fn spawn_observed(
        config: AgentConfig,
        takeover_seconds: TakeoverHistograms,
    ) -> Result<Self, L2Error> {
        Self::start(config, TakeoverTimer::new(Some(takeover_seconds))).await
    }

    async fn start(config: AgentConfig, takeovers: TakeoverTimer) -> Result<Self, L2Error> {
        let takeovers = Arc::new(takeovers);
        let watcher = LinkWatcher::spawn().await?;
        let gossip = std::sync::Arc::new(Gossip::spawn(config.gossip.clone()).await?);
        let responder = Responder::spawn_timed(config.announce, takeovers.clone());
        let stats = responder.stats_handle();
        let (intent, intent_rx) = watch::channel(Intent::default());
        let (owned_tx, owned) = watch::channel(Desired::new());
        let task = tokio::spawn(run(
            config,
            watcher,
            gossip.clone(),
            responder,
            takeovers,
            intent_rx,
            owned_tx,
        ));
        Ok(Agent {
            intent,
            owned,
            gossip,
            stats,
            task,
        })
    }

    /// Replaces the whole set of addresses and where they may be announced.
    pub fn set_policies(&self, policies: Vec<AddressPolicy>) {
        self.intent.send_modify(|i| i.policies = policies);
    }

    /// Replaces the status of every node as the API server reports it (`None`: standalone,
    /// every live node counts as ready).
    pub fn set_node_status(&self, status: Option<BTreeMap<String, NodeStatus>>) {
        self.intent.send_modify(|i| i.node_status = status);
    }

    /// Drains this node (`true`): it gossips no usable links, so every other node counts it
    /// out of every election and takes over its addresses, and it stops answering; `false`
    /// offers its links again.
    pub fn set_drained(&self, drained: bool) {
        self.intent.send_if_modified(|i| {
            let changed = i.drained != drained;
            i.drained = drained;
            changed
        });
    }

    /// The (address, interface) pairs this node announces, updated on every change.
    pub fn owned(&self) -> watch::Receiver<Desired> {
        self.owned.clone()
    }

    /// Per interface: (ARP replies and solicited NAs, gratuitous ARPs and unsolicited NAs)
    /// sent since start.
    pub fn sent_per_interface(&self) -> BTreeMap<String, (u64, u64)> {
        self.stats.per_interface()
    }

    /// Leaves the gossip gracefully, so the others take over without waiting for failure
    /// detection; stops answering first.
    pub fn leave(&self) {
        self.task.abort();
        self.gossip.leave();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    config: AgentConfig,
    watcher: LinkWatcher,
    gossip: std::sync::Arc<Gossip>,
    responder: Responder,
    takeovers: Arc<TakeoverTimer>,
    mut intent: watch::Receiver<Intent>,
    owned: watch::Sender<Desired>,
) {
    let mut links = watcher.links();
    let mut membership = gossip.membership();
    let mut owners = BTreeMap::new();
    loop {
        let members = membership.borrow_and_update().clone();
        let desired = {
            let intent = intent.borrow_and_update();
            // A drained node offers no links, so every other node counts it out.
            let mine = if intent.drained {
                links.borrow_and_update();
                BTreeSet::new()
            } else {
                my_links(
                    &config.interfaces,
                    &links.borrow_and_update(),
                    &intent.policies,
                )
            };
            gossip.set_links(mine.clone());
            let election = Election::run(
                &config.node,
                &mine,
                &members,
                &intent.policies,
                intent.node_status.as_ref(),
            );
            // Before the responder hears of the new owners, so that it finds the takeovers.
            takeovers.on_election(&owners, &election.owners, &config.node, |addr, node| {
                election.candidate(&intent.policies, addr, node)
            });
            owners = election.owners;
            announcements(&owners, &config.node)
        };
        responder.set(desired.clone());
        owned.send_if_modified(|current| {
            let changed = *current != desired;
            *current = desired;
            changed
        });
        tokio::select! {
            r = links.changed() => if r.is_err() { return },
            r = membership.changed() => if r.is_err() { return },
            r = intent.changed() => if r.is_err() { return },
        }
    }
}

/// This node's links worth announcing and gossiping: those `allowed` (the node's own
/// patterns, empty: all) that some policy could answer on. Links excluded by default (pod
/// veths, CNI bridges) count only when a pattern names them, so a node with hundreds of
/// pods does not gossip hundreds of names.
pub fn my_links(
    allowed: &[String],
    up: &BTreeSet<String>,
    policies: &[AddressPolicy],
) -> BTreeSet<String> {
    up.iter()
        .filter(|l| allowed.is_empty() || allowed.iter().any(|p| interfaces::matches(p, l)))
        .filter(|l| {
            !interfaces::excluded_by_default(l)
                || allowed.iter().any(|p| interfaces::matches(p, l))
                || policies
                    .iter()
                    .any(|p| p.interfaces.iter().any(|i| interfaces::matches(i, l)))
        })
        .cloned()
        .collect()
}

/// The election as this node sees it: live members with their gossiped links, this node with
/// its own current links, and the nodes' status from the API server (`None`: standalone,
/// every live node ready; `Some`: a node without an entry is not eligible).
pub fn decide(
    node: &str,
    my_links: &BTreeSet<String>,
    members: &Membership,
    policies: &[AddressPolicy],
    node_status: Option<&BTreeMap<String, NodeStatus>>,
) -> Desired {
    let election = Election::run(node, my_links, members, policies, node_status);
    announcements(&election.owners, node)
}

/// One election as this node sees it (see [`decide`]): the candidates and the owners.
#[derive(Debug)]
pub struct Election {
    /// Live nodes with their facts.
    pub nodes: Vec<NodeFacts>,
    /// The owner of each address some node is eligible for.
    pub owners: BTreeMap<IpAddr, Owner>,
}

impl Election {
    /// Runs the election on the inputs of [`decide`].
    pub fn run(
        node: &str,
        my_links: &BTreeSet<String>,
        members: &Membership,
        policies: &[AddressPolicy],
        node_status: Option<&BTreeMap<String, NodeStatus>>,
    ) -> Self {
        let mut live: BTreeMap<String, BTreeSet<String>> = members.live.clone();
        live.insert(node.to_owned(), my_links.clone());
        let standalone = NodeStatus {
            ready: true,
            ..NodeStatus::default()
        };
        let nodes: Vec<NodeFacts> = live
            .iter()
            .filter_map(|(name, links)| {
                let status = match node_status {
                    None => &standalone,
                    Some(map) => map.get(name)?,
                };
                Some(NodeFacts {
                    name: name.clone(),
                    labels: status.labels.clone(),
                    ready: status.ready,
                    network_unavailable: status.network_unavailable,
                    links_up: links.clone(),
                })
            })
            .collect();
        let names: BTreeSet<String> = live.into_keys().collect();
        let owners = elect(policies, &nodes, &names);
        Election { nodes, owners }
    }

    /// Whether `node` is live and eligible for `addr` under `policies` in this election.
    pub fn candidate(&self, policies: &[AddressPolicy], addr: IpAddr, node: &str) -> bool {
        let Some(facts) = self.nodes.iter().find(|n| n.name == node) else {
            return false;
        };
        let for_addr: Vec<&AddressPolicy> = policies.iter().filter(|p| p.addr == addr).collect();
        !eligible_interfaces(&for_addr, facts).is_empty()
    }
}

/// Policies for `addresses` on `interfaces` (empty: any usable one), no node selectors, no
/// `externalTrafficPolicy: Local`: the standalone case.
pub fn simple_policies(addresses: &[IpAddr], interfaces: &[String]) -> Vec<AddressPolicy> {
    addresses
        .iter()
        .map(|addr| AddressPolicy {
            addr: *addr,
            interfaces: interfaces.to_vec(),
            node_selectors: Vec::new(),
            local_endpoint_nodes: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::EXCLUDE_LABEL;

    #[test]
    fn pod_interfaces_are_neither_announced_nor_gossiped_unless_a_pattern_names_them() {
        let up = links(&["eth0", "cni0", "veth1a2b", "veth3c4d", "lo"]);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        let any = simple_policies(&[addr], &[]);
        assert_eq!(my_links(&[], &up, &any), links(&["eth0"]));
        let members = membership(&[]);
        assert_eq!(
            decide("a", &my_links(&[], &up, &any), &members, &any, None),
            [(addr, "eth0".to_string())].into()
        );
        // A policy naming veth* explicitly: it answers there (and on nothing else).
        let veths = simple_policies(&[addr], &["veth*".to_string()]);
        let mine = my_links(&[], &up, &veths);
        assert_eq!(mine, links(&["eth0", "veth1a2b", "veth3c4d"]));
        assert_eq!(
            decide("a", &mine, &members, &veths, None),
            [
                (addr, "veth1a2b".to_string()),
                (addr, "veth3c4d".to_string())
            ]
            .into()
        );
        // The node's own patterns restrict, and also name excluded ones.
        assert_eq!(my_links(&["cni*".to_string()], &up, &any), links(&["cni0"]));
        assert_eq!(
            decide("a", &links(&["cni0"]), &members, &any, None),
            Desired::new(),
            "an empty policy still leaves cni0 out"
        );
    }

    fn membership(nodes: &[(&str, &[&str])]) -> Membership {
        Membership {
            live: nodes
                .iter()
                .map(|(n, links)| (n.to_string(), links.iter().map(|l| l.to_string()).collect()))
                .collect(),
        }
    }

    fn links(l: &[&str]) -> BTreeSet<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn own_links_override_what_gossip_last_said_about_this_node() {
        let addrs: Vec<IpAddr> = (1..=16)
            .map(|i| format!("192.0.2.{i}").parse().unwrap())
            .collect();
        let policies = simple_policies(&addrs, &[]);
        let members = membership(&[("a", &["eth0"]), ("b", &["eth1"])]);
        let with_link = decide("a", &links(&["eth0"]), &members, &policies, None);
        assert!(
            !with_link.is_empty(),
            "16 addresses over 2 nodes: a owns some"
        );
        // Carrier lost: a withdraws everything at once, before gossip catches up.
        assert!(decide("a", &links(&[]), &members, &policies, None).is_empty());
        // b, seeing a's gossiped facts without links, takes everything.
        let members_without_a_links = membership(&[("a", &[]), ("b", &["eth1"])]);
        let b = decide(
            "b",
            &links(&["eth1"]),
            &members_without_a_links,
            &policies,
            None,
        );
        assert_eq!(b.len(), 16);
        assert!(b.iter().all(|(_, i)| i == "eth1"));
    }

    /// `herald_l2_takeover_seconds_count` by family, as a registry exposes it.
    fn takeover_count(m: &TakeoverHistograms, family: &str) -> u64 {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("herald_l2_takeover_seconds", "takeover time", m.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let prefix = format!("herald_l2_takeover_seconds_count{{family=\"{family}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    #[test]
    fn taking_over_the_addresses_of_a_node_that_died_is_observed_once_each_by_family() {
        let mut addrs: Vec<IpAddr> = (1..=16)
            .map(|i| format!("192.0.2.{i}").parse().unwrap())
            .collect();
        addrs.extend((1..=16).map(|i| format!("2001:db8::{i}").parse::<IpAddr>().unwrap()));
        let policies = simple_policies(&addrs, &[]);
        let m = crate::takeover::takeover_histograms();
        let timer = TakeoverTimer::new(Some(m.clone()));
        let mine = links(&["eth0"]);
        let elect = |members: &Membership| Election::run("a", &mine, members, &policies, None);

        // First election: nobody owned anything before, so nothing is a takeover.
        let both = elect(&membership(&[("a", &["eth0"]), ("b", &["eth1"])]));
        timer.on_election(&BTreeMap::new(), &both.owners, "a", |addr, node| {
            both.candidate(&policies, addr, node)
        });
        for (addr, _) in announcements(&both.owners, "a") {
            timer.on_announced(addr);
        }
        assert_eq!(takeover_count(&m, "ipv4") + takeover_count(&m, "ipv6"), 0);

        // b dies: a takes over what b held.
        let alone = elect(&membership(&[("a", &["eth0"])]));
        timer.on_election(&both.owners, &alone.owners, "a", |addr, node| {
            alone.candidate(&policies, addr, node)
        });
        let from_b: Vec<IpAddr> = both
            .owners
            .iter()
            .filter(|(_, o)| o.node == "b")
            .map(|(a, _)| *a)
            .collect();
        assert!(
            !from_b.is_empty(),
            "32 addresses over 2 nodes: b owned some"
        );
        for addr in &from_b {
            timer.on_announced(*addr);
            timer.on_announced(*addr); // a second interface: not a second takeover
        }
        let v4 = from_b.iter().filter(|a| a.is_ipv4()).count() as u64;
        assert_eq!(takeover_count(&m, "ipv4"), v4);
        assert_eq!(takeover_count(&m, "ipv6"), from_b.len() as u64 - v4);

        // b comes back and takes its addresses back: a gives them up, nothing is observed.
        let back = elect(&membership(&[("a", &["eth0"]), ("b", &["eth1"])]));
        timer.on_election(&alone.owners, &back.owners, "a", |addr, node| {
            back.candidate(&policies, addr, node)
        });
        // b's carrier drops: its candidacy ends while it stays alive, also a takeover.
        let no_links = elect(&membership(&[("a", &["eth0"]), ("b", &[])]));
        timer.on_election(&back.owners, &no_links.owners, "a", |addr, node| {
            no_links.candidate(&policies, addr, node)
        });
        for addr in &from_b {
            timer.on_announced(*addr);
        }
        assert_eq!(
            takeover_count(&m, "ipv4") + takeover_count(&m, "ipv6"),
            2 * from_b.len() as u64
        );
    }

    #[test]
    fn addresses_this_node_gets_by_becoming_eligible_are_not_takeovers() {
        let addrs: Vec<IpAddr> = (1..=16)
            .map(|i| format!("192.0.2.{i}").parse().unwrap())
            .collect();
        let policies = simple_policies(&addrs, &[]);
        let m = crate::takeover::takeover_histograms();
        let timer = TakeoverTimer::new(Some(m.clone()));
        let members = membership(&[("a", &[]), ("b", &["eth1"])]);
        // a without carrier: b owns everything; then a's link comes up and a wins some.
        let before = Election::run("a", &links(&[]), &members, &policies, None);
        let after = Election::run("a", &links(&["eth0"]), &members, &policies, None);
        timer.on_election(&before.owners, &after.owners, "a", |addr, node| {
            after.candidate(&policies, addr, node)
        });
        let mine = announcements(&after.owners, "a");
        assert!(!mine.is_empty());
        for (addr, _) in mine {
            timer.on_announced(addr);
        }
        assert_eq!(takeover_count(&m, "ipv4"), 0);
    }

    #[test]
    fn members_whose_facts_have_not_arrived_are_not_eligible() {
        let addrs: Vec<IpAddr> = (1..=16)
            .map(|i| format!("192.0.2.{i}").parse().unwrap())
            .collect();
        let policies = simple_policies(&addrs, &[]);
        let members = membership(&[("a", &["eth0"]), ("b", &[])]);
        assert_eq!(
            decide("a", &links(&["eth0"]), &members, &policies, None).len(),
            16
        );
    }

    #[test]
    fn node_status_from_the_api_server_gates_eligibility() {
        let addrs: Vec<IpAddr> = (1..=16)
            .map(|i| format!("192.0.2.{i}").parse().unwrap())
            .collect();
        let policies = simple_policies(&addrs, &[]);
        let members = membership(&[("a", &["eth0"]), ("b", &["eth1"])]);
        let ready = NodeStatus {
            ready: true,
            ..NodeStatus::default()
        };
        let b_takes_all = |status: BTreeMap<String, NodeStatus>| {
            decide("b", &links(&["eth1"]), &members, &policies, Some(&status)).len() == 16
        };
        let unavailable = NodeStatus {
            network_unavailable: true,
            ..ready.clone()
        };
        let excluded = NodeStatus {
            labels: [(EXCLUDE_LABEL.to_string(), "true".to_string())].into(),
            ..ready.clone()
        };
        for (what, a_status) in [
            ("not ready", Some(NodeStatus::default())),
            ("network unavailable", Some(unavailable)),
            ("excluded", Some(excluded)),
            ("unknown to the API server", None),
        ] {
            let mut status: BTreeMap<String, NodeStatus> =
                [("b".to_string(), ready.clone())].into();
            if let Some(s) = a_status {
                status.insert("a".into(), s);
            }
            assert!(b_takes_all(status), "a {what}: b owns everything");
        }
        let both: BTreeMap<String, NodeStatus> =
            [("a".to_string(), ready.clone()), ("b".to_string(), ready)].into();
        assert!(!b_takes_all(both), "both ready: a owns some");
    }
}
