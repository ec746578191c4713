//! Owner election for layer-2 addresses: which one node answers ARP/NDP for each address.
//!
//! Every speaker runs [`elect`] on the same inputs and gets the same answer, so no
//! coordination is needed beyond agreeing on the inputs: the configuration ([`AddressPolicy`]),
//! the facts about each node ([`NodeFacts`]: labels, readiness, which interfaces have carrier)
//! and which nodes are alive (from SWIM gossip, [`super::gossip`]).
//!
//! The owner of an address is the eligible live node with the highest rendezvous weight
//! `hash(address, node)` (highest-random-weight hashing, Thaler and Ravishankar 1998). Each
//! address is decided on its own, so a node joining or leaving moves only the addresses whose
//! owner it is or becomes: removing a node that owns nothing moves nothing.
//!
//! Pure: no sockets, timers or Kubernetes types. Callers translate `Node` objects, EndpointSlices
//! and rtnetlink link state into these plain types.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

use super::interfaces;

/// The label that removes a node from load-balancer duty (Kubernetes well-known label
/// `node.kubernetes.io/exclude-from-external-load-balancers`), whatever its value.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Fixed SipHash key of the rendezvous weights. It must be the same on every speaker (and across
/// versions), or speakers would disagree on owners.
const WEIGHT_KEY: (u64, u64) = (0x6865_7261_6c64_2d6c, 0x322d_656c_6563_7421);

/// What the user asked for one address: where it may be announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPolicy {
    /// The address announced.
    pub addr: IpAddr,
    /// Interface name patterns to answer on (`L2Advertisement.interfaces`, see
    /// [`super::interfaces`]). Empty: every interface the node reports as suitable in
    /// [`NodeFacts::links_up`] except those excluded by default (pod veths, CNI bridges).
    pub interfaces: Vec<String>,
    /// Nodes that may answer (`L2Advertisement.nodeSelectors`): a node is allowed when it
    /// matches any selector. Empty: every node.
    pub node_selectors: Vec<NodeSelector>,
    /// For `externalTrafficPolicy: Local`, the nodes with a ready local endpoint; only they may
    /// answer. `None` for `Cluster`.
    pub local_endpoint_nodes: Option<BTreeSet<String>>,
}

/// A Kubernetes label selector as plain data: all `match_labels` and all `match_expressions`
/// must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSelector {
    /// Labels that must be present with exactly these values.
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements.
    pub match_expressions: Vec<LabelRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    /// The label is present with one of the values.
    In(String, BTreeSet<String>),
    /// The label is absent or has none of the values.
    NotIn(String, BTreeSet<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
}

impl NodeSelector {
    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| match req {
                LabelRequirement::In(k, values) => {
                    labels.get(k).is_some_and(|v| values.contains(v))
                }
                LabelRequirement::NotIn(k, values) => {
                    labels.get(k).is_none_or(|v| !values.contains(v))
                }
                LabelRequirement::Exists(k) => labels.contains_key(k),
                LabelRequirement::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

/// What is known about one node: from its `Node` object (labels, conditions) and from the node
/// itself (which interfaces have carrier, via rtnetlink, spread by gossip).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFacts {
    /// Node name; also its identity in gossip.
    pub name: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// The `NetworkUnavailable` condition is `True`.
    pub network_unavailable: bool,
    /// Interfaces that are up with carrier and suitable for answering (have a MAC address, are
    /// not loopback).
    pub links_up: BTreeSet<String>,
}

impl NodeFacts {
    /// Whether the node may announce anything at all: ready, network available, not excluded.
    pub fn is_serviceable(&self) -> bool {
        self.ready && !self.network_unavailable && !self.labels.contains_key(EXCLUDE_LABEL)
    }
}

/// The elected owner of one address and where it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Node name.
    pub node: String,
    /// Interfaces on that node to answer on: its up interfaces that the policy's patterns
    /// select (those not excluded by default when it names none). Never empty.
    pub interfaces: BTreeSet<String>,
}

/// The rendezvous weight of `node` for `addr`: the same on every speaker.
pub fn weight(addr: IpAddr, node: &str) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(WEIGHT_KEY.0, WEIGHT_KEY.1);
    match addr {
        IpAddr::V4(a) => hasher.write(&a.to_ipv6_mapped().octets()),
        IpAddr::V6(a) => hasher.write(&a.octets()),
    }
    // Length-prefixed so that (addr, node) pairs cannot collide by concatenation.
    hasher.write_usize(node.len());
    hasher.write(node.as_bytes());
    hasher.finish()
}

/// The interfaces on which `node` could announce under `policies` (all for the same address),
/// or empty when it is not eligible.
pub fn eligible_interfaces(policies: &[&AddressPolicy], node: &NodeFacts) -> BTreeSet<String> {
    if !node.is_serviceable() {
        return BTreeSet::new();
    }
    let mut out = BTreeSet::new();
    for policy in policies {
        let selected = policy.node_selectors.is_empty()
            || policy
                .node_selectors
                .iter()
                .any(|s| s.matches(&node.labels));
        let has_endpoint = policy
            .local_endpoint_nodes
            .as_ref()
            .is_none_or(|nodes| nodes.contains(&node.name));
        if !(selected && has_endpoint) {
            continue;
        }
        out.extend(
            node.links_up
                .iter()
                .filter(|l| interfaces::selects(&policy.interfaces, l))
                .cloned(),
        );
    }
    out
}

/// Elects the owner of every address in `policies` among the `nodes` whose name is in `live`.
///
/// Several policies for one address (several `L2Advertisement`s selecting its pool) combine:
/// a node is eligible when any of them allows it, and answers on the union of their interfaces.
/// Addresses no live node is eligible for are absent from the result. Ties in weight (64-bit
/// hash collisions) go to the smaller node name, so the result never depends on input order.
pub fn elect(
    policies: &[AddressPolicy],
    nodes: &[NodeFacts],
    live: &BTreeSet<String>,
) -> BTreeMap<IpAddr, Owner> {
    let mut by_addr: BTreeMap<IpAddr, Vec<&AddressPolicy>> = BTreeMap::new();
    for policy in policies {
        by_addr.entry(policy.addr).or_default().push(policy);
    }
    let mut owners = BTreeMap::new();
    for (addr, policies) in by_addr {
        let best = nodes
            .iter()
            .filter(|n| live.contains(&n.name))
            .filter_map(|n| {
                let interfaces = eligible_interfaces(&policies, n);
                (!interfaces.is_empty()).then(|| (weight(addr, &n.name), n, interfaces))
            })
            .max_by(|(wa, a, _), (wb, b, _)| wa.cmp(wb).then_with(|| b.name.cmp(&a.name)));
        if let Some((_, node, interfaces)) = best {
            owners.insert(
                addr,
                Owner {
                    node: node.name.clone(),
                    interfaces,
                },
            );
        }
    }
    owners
}

/// What `this_node` must announce given an election result: (address, interface) pairs, the
/// input of the responder's level-triggered `set`.
pub fn announcements(
    owners: &BTreeMap<IpAddr, Owner>,
    this_node: &str,
) -> BTreeSet<(IpAddr, String)> {
    owners
        .iter()
        .filter(|(_, o)| o.node == this_node)
        .flat_map(|(addr, o)| o.interfaces.iter().map(move |i| (*addr, i.clone())))
        .collect()
}

#[cfg(test)]
mod tests;
