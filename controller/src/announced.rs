//! From the nodes' `HeraldNode`s to where each Service is announced: the Service condition
//! `herald.dev/Announced`, and each `BGPPeer`'s sessions per node.
//!
//! ```text
//!  watch HeraldNodes ──> store ──any change──┐
//!  every second ─────────────────────────────┴─> (leader) pass: index the nodes once,
//!        each managed Service with addresses ──announced_condition (pure)──differs?──> apply
//!        each BGPPeer ──peer_sessions (pure)──differs?──> apply
//! ```
//!
//! Both are written by server-side apply under their own field managers, so they never
//! disturb `status.loadBalancer` or the `Valid` condition. A pass writes only what changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herald_api::node::{HeraldNode, VIA_BGP, VIA_L2};
use herald_api::{BGPPeer, PeerSession};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::context::Context;
use crate::status::ingress_of;
use herald_ipam::convert;

/// The condition type on Services.
pub const ANNOUNCED: &str = "herald.dev/Announced";
/// Field manager of the Services' condition.
pub const CONDITION_MANAGER: &str = "herald-controller-announced";
/// Field manager of the BGPPeers' sessions.
pub const SESSIONS_MANAGER: &str = "herald-controller-sessions";
/// The longest a pass waits when nothing wakes it (Service address changes are seen then).
pub const PERIOD: Duration = Duration::from_secs(1);
/// How long a pass waits after a node's change for the others of a burst.
const SETTLE: Duration = Duration::from_millis(200);
/// Writes in flight at once during a pass.
const CONCURRENCY: usize = 16;
/// Of the Service writes that change only the message (which nodes, which ways: every
/// Service's message changes when one node of many flaps), at most this many per pass. A
/// change of status or reason is always written at once.
pub const DETAIL_BUDGET: usize = 50;
/// More nodes than this in one way are counted, not named.
const NAMED_NODES: usize = 5;

/// One node announcing an address: (node, via, peers or interfaces).
type Way<'a> = (&'a str, &'a str, &'a [String]);

/// Every node's ways of announcing, each with the set of its addresses: built once per pass,
/// borrowing from the nodes (100 nodes announcing 10 000 addresses each are a million set
/// entries of one pointer and length, not a million copied strings).
pub struct Index<'a> {
    groups: Vec<(Way<'a>, HashSet<&'a str>)>,
}

/// Indexes `nodes`' announcements.
pub fn index<'a>(nodes: impl IntoIterator<Item = &'a HeraldNode>) -> Index<'a> {
    let mut groups = Vec::new();
    for n in nodes {
        let (Some(name), Some(status)) = (n.metadata.name.as_deref(), n.status.as_ref()) else {
            continue;
        };
        for a in &status.announcements {
            let through = if a.via == VIA_L2 {
                a.interfaces.as_slice()
            } else {
                a.peers.as_slice()
            };
            let addresses = a.addresses.iter().map(String::as_str).collect();
            groups.push(((name, a.via.as_str(), through), addresses));
        }
    }
    Index { groups }
}

impl<'a> Index<'a> {
    /// The ways any of `addresses` is announced, sorted and without repeats.
    fn ways(&self, addresses: &[String]) -> BTreeSet<Way<'a>> {
        self.groups
            .iter()
            .filter(|(_, set)| addresses.iter().any(|a| set.contains(a.as_str())))
            .map(|(way, _)| *way)
            .collect()
    }
}

/// What the nodes say in general, for the reason of a Service nobody announces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nodes {
    /// Nodes reporting.
    pub reporting: usize,
    /// Of those, excluded (NotReady, labelled, drained).
    pub excluded: usize,
    /// Of those, with BGP sessions configured and none Established.
    pub sessions_down: usize,
}

impl Nodes {
    /// Counts `nodes`.
    pub fn of<'a>(nodes: impl IntoIterator<Item = &'a HeraldNode>) -> Self {
        let mut out = Nodes::default();
        for s in nodes.into_iter().filter_map(|n| n.status.as_ref()) {
            out.reporting += 1;
            if s.excluded.is_some() {
                out.excluded += 1;
            } else if !s.bgp.is_empty() && s.bgp.iter().all(|b| b.state != "established") {
                out.sessions_down += 1;
            }
        }
        out
    }
}

/// The `herald.dev/Announced` condition of a Service with `addresses`: True naming the nodes
/// and ways, False with why nobody announces it. `previous` keeps the time of the last change
/// when nothing did; `None` for a Service without addresses.
pub fn announced_condition(
    addresses: &[String],
    local_policy: bool,
    index: &Index<'_>,
    nodes: &Nodes,
    generation: Option<i64>,
    previous: Option<&Condition>,
    now: Timestamp,
) -> Option<Condition> {
    if addresses.is_empty() {
        return None;
    }
    let ways = index.ways(addresses);
    let (status, reason, message) = if ways.is_empty() {
        let (reason, message) = if nodes.reporting == 0 {
            (
                "NoSpeaker",
                "no node's speaker reports (no HeraldNode)".to_owned(),
            )
        } else if nodes.excluded == nodes.reporting {
            (
                "NodesExcluded",
                format!(
                    "every node is excluded ({} of {})",
                    nodes.excluded, nodes.reporting
                ),
            )
        } else if local_policy {
            (
                "NoLocalEndpoint",
                "externalTrafficPolicy Local: no node with a ready endpoint announces it"
                    .to_owned(),
            )
        } else if nodes.sessions_down + nodes.excluded == nodes.reporting {
            (
                "NoSessionUp",
                format!(
                    "no BGP session is Established on any node ({} of {} nodes have sessions \
                     down)",
                    nodes.sessions_down, nodes.reporting
                ),
            )
        } else {
            (
                "NotAnnounced",
                "no node announces it (no advertisement selects its pool for a node, or no \
                 session to the peers it is for is up)"
                    .to_owned(),
            )
        };
        ("False", reason, message)
    } else {
        ("True", "Announced", describe(&ways))
    };
    let unchanged =
        previous.filter(|p| p.status == status && p.reason == reason && p.message == message);
    Some(Condition {
        type_: ANNOUNCED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: unchanged.map_or(Time(now), |p| p.last_transition_time.clone()),
    })
}

/// "announced by n1, n2 via BGP (tor1, tor2); by n3 via L2 (eth0)": nodes grouped by the
/// same way, BGP first.
fn describe(ways: &BTreeSet<Way<'_>>) -> String {
    let mut groups: BTreeMap<(u8, &str, &[String]), Vec<&str>> = BTreeMap::new();
    for (node, via, through) in ways {
        let order = if *via == VIA_BGP { 0 } else { 1 };
        let nodes = groups.entry((order, via, through)).or_default();
        if !nodes.contains(node) {
            nodes.push(node);
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|((_, via, through), nodes)| {
            let who = if nodes.len() > NAMED_NODES {
                format!("{} nodes ({}, ...)", nodes.len(), nodes[..3].join(", "))
            } else {
                nodes.join(", ")
            };
            format!("by {who} via {via} ({})", through.join(", "))
        })
        .collect();
    format!("announced {}", parts.join("; "))
}

/// One peer's sessions as the nodes report them, and "established/total".
pub fn peer_sessions<'a>(
    peer: &str,
    nodes: impl IntoIterator<Item = &'a HeraldNode>,
) -> (String, Vec<PeerSession>) {
    let mut sessions: Vec<PeerSession> = nodes
        .into_iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n.status.as_ref()?)))
        .flat_map(|(node, s)| {
            s.bgp
                .iter()
                .filter(|b| b.peer == peer)
                .map(move |b| PeerSession {
                    node: node.to_owned(),
                    state: b.state.clone(),
                    since: b.since.clone(),
                })
        })
        .collect();
    sessions.sort_by(|a, b| a.node.cmp(&b.node));
    let up = sessions.iter().filter(|s| s.state == "established").count();
    (format!("{up}/{}", sessions.len()), sessions)
}

/// Watches `HeraldNode`s into a store; every change wakes `changed`.
pub fn watch_nodes(
    client: &Client,
    changed: Arc<Notify>,
) -> (Store<HeraldNode>, tokio::task::JoinHandle<()>) {
    let (store, writer) = reflector::store::<HeraldNode>();
    let stream = reflector::reflector(
        writer,
        watcher(
            Api::<HeraldNode>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(|n: &mut HeraldNode| n.metadata.managed_fields = None),
    )
    .default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changed.notify_one(),
                Err(e) => warn!(error = %e, "heraldnode watch"),
            }
        }
    });
    (store, task)
}

/// Runs passes while the controller runs: on a node's change (after [`SETTLE`]) or every
/// [`PERIOD`]; only the leader writes.
pub async fn writer(ctx: Arc<Context>, nodes: Store<HeraldNode>, changed: Arc<Notify>) {
    // What the last pass saw of the Services and peers; at rest a tick costs one walk of
    // the caches and no pass.
    let mut seen: Option<u64> = None;
    let mut wrote = Wrote::default();
    // Message-only changes are waiting (over the budget).
    let mut behind = false;
    loop {
        let woken = tokio::select! {
            () = changed.notified() => {
                tokio::time::sleep(SETTLE).await;
                true
            }
            () = tokio::time::sleep(PERIOD) => false,
        };
        if !ctx.is_leader() {
            seen = None;
            wrote = Wrote::default();
            continue;
        }
        let now = fingerprint(&ctx);
        if !woken && !behind && seen == Some(now) {
            continue;
        }
        seen = Some(now);
        let (written, left) = pass(&ctx, &nodes.state(), &mut wrote).await;
        behind = left;
        if written > 0 {
            debug!(written, "announced conditions and peer sessions written");
        }
    }
}

/// A hash of the Services' and BGPPeers' identities and resource versions.
fn fingerprint(ctx: &Context) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for svc in ctx.stores.services.state() {
        (
            &svc.metadata.namespace,
            &svc.metadata.name,
            &svc.metadata.resource_version,
        )
            .hash(&mut h);
    }
    for p in ctx.stores.config.peers.state() {
        (&p.metadata.name, &p.metadata.resource_version).hash(&mut h);
    }
    h.finish()
}

/// One pass over every managed Service and every BGPPeer; returns the writes made and
/// whether message-only changes were left for later (over [`DETAIL_BUDGET`]).
async fn pass(ctx: &Context, nodes: &[Arc<HeraldNode>], wrote: &mut Wrote) -> (usize, bool) {
    let now = Timestamp::now();
    let node_refs: Vec<&HeraldNode> = nodes.iter().map(Arc::as_ref).collect();
    let idx = index(node_refs.iter().copied());
    let summary = Nodes::of(node_refs.iter().copied());
    let mut patches = Vec::new();
    let (mut details, mut deferred) = (0, 0);
    for svc in ctx.stores.services.state() {
        if !convert::is_managed(&svc, &ctx.settings.lb_class) {
            continue;
        }
        let addresses: Vec<String> = ingress_of(&svc)
            .into_iter()
            .flatten()
            .map(|a| a.to_string())
            .collect();
        let local = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.as_deref())
            == Some("Local");
        let key = (svc.namespace().unwrap_or_default(), svc.name_any());
        let shown = svc
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == ANNOUNCED));
        // What this leader wrote last comes first: the cache trails the writes (by seconds,
        // with thousands of them), and comparing with it alone would write them again.
        let last = wrote.services.get(&key);
        let base = last.or(shown);
        let Some(condition) = announced_condition(
            &addresses,
            local,
            &idx,
            &summary,
            svc.metadata.generation,
            base,
            now,
        ) else {
            continue;
        };
        if shown == Some(&condition) || last == Some(&condition) {
            continue;
        }
        let detail_only =
            base.is_some_and(|p| p.status == condition.status && p.reason == condition.reason);
        if detail_only {
            if details == DETAIL_BUDGET {
                deferred += 1;
                continue;
            }
            details += 1;
        }
        let (ns, name) = key;
        patches.push(Write::Service {
            ns,
            name,
            condition,
        });
    }
    if deferred > 0 {
        debug!(
            deferred,
            "message-only condition changes left for the next passes"
        );
    }
    for peer in ctx.stores.config.peers.state() {
        let (established, sessions) = peer_sessions(&peer.name_any(), node_refs.iter().copied());
        let current = peer.status.as_ref();
        let same = current.is_some_and(|s| {
            s.sessions == sessions && s.established.as_deref() == Some(established.as_str())
        }) || wrote.peers.get(&peer.name_any())
            == Some(&(established.clone(), sessions.clone()));
        if same {
            continue;
        }
        patches.push(Write::Peer {
            name: peer.name_any(),
            established,
            sessions,
        });
    }
    let client = ctx.client.clone();
    let results: Vec<(Write, bool)> = futures::stream::iter(patches)
        .map(|w| async {
            let ok = w.apply(client.clone()).await;
            (w, ok)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut written = 0;
    for (w, ok) in results {
        if !ok {
            continue;
        }
        written += 1;
        match w {
            Write::Service {
                ns,
                name,
                condition,
            } => {
                wrote.services.insert((ns, name), condition);
            }
            Write::Peer {
                name,
                established,
                sessions,
            } => {
                wrote.peers.insert(name, (established, sessions));
            }
        }
    }
    (written, deferred > 0)
}

/// What this leader wrote last, by Service (namespace, name) and by peer: compared as well
/// as the cache, which trails the writes.
#[derive(Default)]
struct Wrote {
    services: HashMap<(String, String), Condition>,
    peers: HashMap<String, (String, Vec<PeerSession>)>,
}

enum Write {
    Service {
        ns: String,
        name: String,
        condition: Condition,
    },
    Peer {
        name: String,
        established: String,
        sessions: Vec<PeerSession>,
    },
}

impl Write {
    async fn apply(&self, client: Client) -> bool {
        let result = match self {
            Write::Service {
                ns,
                name,
                condition,
            } => {
                let patch = json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": ns},
                    "status": {"conditions": [condition]},
                });
                Api::<Service>::namespaced(client, ns)
                    .patch_status(
                        name,
                        &PatchParams::apply(CONDITION_MANAGER).force(),
                        &Patch::Apply(&patch),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| (format!("Service {ns}/{name}"), e))
            }
            Write::Peer {
                name,
                established,
                sessions,
            } => {
                let patch = json!({
                    "apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
                    "metadata": {"name": name},
                    "status": {"established": established, "sessions": sessions},
                });
                Api::<BGPPeer>::all(client)
                    .patch_status(
                        name,
                        &PatchParams::apply(SESSIONS_MANAGER).force(),
                        &Patch::Apply(&patch),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| (format!("BGPPeer {name}"), e))
            }
        };
        match result {
            Ok(()) => true,
            Err((what, e)) => {
                // The next pass tries again (the object still differs).
                warn!(object = %what, error = %e, "announcement status not written");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Table rows are tuples spelled out where they are used.
    #![allow(clippy::type_complexity)]

    use super::*;
    use herald_api::node::{Announcement, BgpSessionState, HeraldNodeSpec, HeraldNodeStatus};

    fn node(name: &str, status: HeraldNodeStatus) -> HeraldNode {
        let mut n = HeraldNode::new(name, HeraldNodeSpec {});
        n.status = Some(status);
        n
    }

    fn bgp_node(name: &str, peers: &[&str], addresses: &[&str], up: bool) -> HeraldNode {
        node(
            name,
            HeraldNodeStatus {
                bgp: peers
                    .iter()
                    .map(|p| BgpSessionState {
                        peer: (*p).into(),
                        state: if up { "established" } else { "active" }.into(),
                        ..Default::default()
                    })
                    .collect(),
                announcements: if up {
                    vec![Announcement {
                        via: VIA_BGP.into(),
                        peers: peers.iter().map(|p| p.to_string()).collect(),
                        interfaces: vec![],
                        addresses: addresses.iter().map(|a| a.to_string()).collect(),
                    }]
                } else {
                    vec![]
                },
                ..Default::default()
            },
        )
    }

    fn l2_node(name: &str, interface: &str, addresses: &[&str]) -> HeraldNode {
        node(
            name,
            HeraldNodeStatus {
                announcements: vec![Announcement {
                    via: VIA_L2.into(),
                    peers: vec![],
                    interfaces: vec![interface.into()],
                    addresses: addresses.iter().map(|a| a.to_string()).collect(),
                }],
                ..Default::default()
            },
        )
    }

    fn condition(
        nodes: &[HeraldNode],
        addresses: &[&str],
        local: bool,
    ) -> Option<(String, String, String)> {
        let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        announced_condition(
            &addresses,
            local,
            &index(nodes),
            &Nodes::of(nodes),
            Some(1),
            None,
            Timestamp::UNIX_EPOCH,
        )
        .map(|c| (c.status, c.reason, c.message))
    }

    fn row(s: &str, r: &str, m: &str) -> Option<(String, String, String)> {
        Some((s.into(), r.into(), m.into()))
    }

    #[test]
    fn the_condition_names_the_nodes_and_ways_or_says_why_nobody_announces() {
        const A: &str = "198.51.100.1";
        let a = A;
        let just_a: &[&str] = &[A];
        let everyone = [
            bgp_node("n1", &["tor1", "tor2"], &[a], true),
            bgp_node("n2", &["tor1", "tor2"], &[a], true),
            l2_node("n3", "eth0", &[a]),
            bgp_node("n4", &["tor1"], &["198.51.100.2"], true),
        ];
        let down = [
            bgp_node("n1", &["tor1"], &[a], false),
            bgp_node("n2", &["tor1"], &[a], false),
        ];
        let mut excluded = bgp_node("n1", &["tor1"], &[], true);
        excluded.status.as_mut().unwrap().excluded = Some("node excluded (NotReady)".into());
        let rows: Vec<(
            &str,
            &[HeraldNode],
            &[&str],
            bool,
            Option<(String, String, String)>,
        )> = vec![
            (
                "BGP from two nodes, L2 from one",
                &everyone,
                just_a,
                false,
                row(
                    "True",
                    "Announced",
                    "announced by n1, n2 via BGP (tor1, tor2); by n3 via L2 (eth0)",
                ),
            ),
            (
                "a dual-stack Service: any of its addresses",
                &everyone,
                &["2001:db8::1", "198.51.100.2"],
                false,
                row("True", "Announced", "announced by n4 via BGP (tor1)"),
            ),
            ("no address: no condition", &everyone, &[], false, None),
            (
                "no speaker at all",
                &[],
                just_a,
                false,
                row(
                    "False",
                    "NoSpeaker",
                    "no node's speaker reports (no HeraldNode)",
                ),
            ),
            (
                "sessions down everywhere",
                &down,
                just_a,
                false,
                row(
                    "False",
                    "NoSessionUp",
                    "no BGP session is Established on any node (2 of 2 nodes have sessions down)",
                ),
            ),
            (
                "every node excluded",
                std::slice::from_ref(&excluded),
                just_a,
                false,
                row("False", "NodesExcluded", "every node is excluded (1 of 1)"),
            ),
            (
                "Local policy and nobody announces",
                &everyone,
                &["203.0.113.1"],
                true,
                row(
                    "False",
                    "NoLocalEndpoint",
                    "externalTrafficPolicy Local: no node with a ready endpoint announces it",
                ),
            ),
            (
                "nobody announces, sessions up somewhere",
                &everyone,
                &["203.0.113.1"],
                false,
                row(
                    "False",
                    "NotAnnounced",
                    "no node announces it (no advertisement selects its pool for a node, or no \
                     session to the peers it is for is up)",
                ),
            ),
        ];
        for (what, nodes, addresses, local, want) in rows {
            assert_eq!(condition(nodes, addresses, local), want, "{what}");
        }
    }

    #[test]
    fn many_nodes_in_one_way_are_counted_not_named() {
        let nodes: Vec<HeraldNode> = (0..7)
            .map(|i| bgp_node(&format!("n{i}"), &["tor1"], &["198.51.100.1"], true))
            .collect();
        assert_eq!(
            condition(&nodes, &["198.51.100.1"], false),
            row(
                "True",
                "Announced",
                "announced by 7 nodes (n0, n1, n2, ...) via BGP (tor1)"
            )
        );
    }

    #[test]
    fn the_time_of_the_last_change_stays_until_something_changes() {
        let a = vec!["198.51.100.1".to_owned()];
        let nodes = [bgp_node("n1", &["tor1"], &["198.51.100.1"], true)];
        let t0 = Timestamp::UNIX_EPOCH;
        let t1: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let first = announced_condition(
            &a,
            false,
            &index(&nodes),
            &Nodes::of(&nodes),
            None,
            None,
            t0,
        )
        .unwrap();
        let again = announced_condition(
            &a,
            false,
            &index(&nodes),
            &Nodes::of(&nodes),
            None,
            Some(&first),
            t1,
        )
        .unwrap();
        assert_eq!(again, first);
        let more = [
            bgp_node("n1", &["tor1"], &["198.51.100.1"], true),
            bgp_node("n2", &["tor1"], &["198.51.100.1"], true),
        ];
        let changed = announced_condition(
            &a,
            false,
            &index(&more),
            &Nodes::of(&more),
            None,
            Some(&first),
            t1,
        )
        .unwrap();
        assert_eq!(changed.last_transition_time, Time(t1));
        assert_eq!(changed.message, "announced by n1, n2 via BGP (tor1)");
    }

    #[test]
    fn a_peer_lists_each_nodes_session_and_counts_the_established_ones() {
        let nodes = [
            bgp_node("n2", &["tor1", "tor2"], &[], true),
            bgp_node("n1", &["tor1"], &[], false),
            bgp_node("n3", &["tor2"], &[], true),
        ];
        let (established, sessions) = peer_sessions("tor1", &nodes);
        assert_eq!(established, "1/2");
        let got: Vec<(&str, &str)> = sessions
            .iter()
            .map(|s| (s.node.as_str(), s.state.as_str()))
            .collect();
        assert_eq!(got, [("n1", "active"), ("n2", "established")]);
        assert_eq!(peer_sessions("tor9", &nodes).0, "0/0");
    }
}
