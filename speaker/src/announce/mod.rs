//! What this node should announce: pure, from plain inputs to the desired state.
//!
//! Every speaker runs the same computation over the same facts and gets its own share:
//!
//! ```text
//!   Config (advertisements, peers, pools)  ┐
//!   Services with their addresses + ports  ├─> compute(this node) ─> Desired { bgp, l2, dataplane }
//!   Endpoints, Nodes, this node's links    ┘
//! ```
//!
//! Rules (DESIGN §5, as MetalLB users expect them):
//! - **Node exclusion.** A node that is not Ready, has `NetworkUnavailable`, or carries the
//!   label `node.kubernetes.io/exclude-from-external-load-balancers` announces nothing
//!   (no routes, no layer-2 candidacy). Its dataplane tables are still computed: traffic
//!   that already arrives is forwarded while routers converge.
//! - **`externalTrafficPolicy: Local`.** A node without a ready endpoint of the Service
//!   does not announce its addresses, and is not a layer-2 candidate for them. Routes of a
//!   `Local` Service are never aggregated: a covering prefix would draw traffic for
//!   addresses this node has no endpoint for.
//! - **BGP.** An advertisement applies to an address when it selects the address's pool
//!   (`ipPools` by name or `ipPoolSelectors` by label; both empty = every pool) and its
//!   `nodeSelectors` match this node (empty = every node). It announces to the peers it
//!   names (empty = every peer) whose own `nodeSelectors` match this node. The prefix is
//!   the address aggregated to `aggregationLength(V6)` (default /32, /128). When several
//!   advertisements give one prefix to one peer, communities and large communities are
//!   united and the highest `localPref` wins, so the result never depends on object order.
//! - **Layer 2.** An advertisement applies as for BGP; the node offers the address on the
//!   up interfaces its name patterns select (empty = every up, non-loopback interface not
//!   excluded by default, see `l2::interfaces`). The election (in `l2`) picks one owner
//!   among `eligible_nodes`.
//! - **Dataplane.** One VIP per (address, port, protocol) with its backends: the ready
//!   endpoints' addresses (standalone: they are the backend hosts), or in a cluster the
//!   nodes hosting ready endpoints weighted by their endpoint count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use herald_ipam::{Protocol, Selector, TrafficPolicy};
use ipnet::IpNet;

/// The label that takes a node out of load-balancer duty (Kubernetes well-known label).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// An `IPPool` as announce needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// The pool object's labels (matched by `ipPoolSelectors`).
    pub labels: BTreeMap<String, String>,
}

/// A `BGPPeer` as announce needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// Peer object name.
    pub name: String,
    /// Nodes that peer with it; empty = all.
    pub node_selectors: Vec<Selector>,
}

/// Which pools and nodes an advertisement covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Pools by name.
    pub ip_pools: Vec<String>,
    /// Pools by label.
    pub ip_pool_selectors: Vec<Selector>,
    /// Nodes that announce; empty = all.
    pub node_selectors: Vec<Selector>,
}

/// A `BGPAdvertisement` with its communities already parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpAdvertisement {
    /// Object name.
    pub name: String,
    /// Pools and nodes covered.
    pub scope: Scope,
    /// Peer names; empty = all.
    pub peers: Vec<String>,
    /// RFC 1997 communities.
    pub communities: Vec<u32>,
    /// RFC 8092 large communities.
    pub large_communities: Vec<[u32; 3]>,
    /// LOCAL_PREF (applied by the session to iBGP peers only).
    pub local_pref: Option<u32>,
    /// IPv4 prefix length (default 32).
    pub aggregation_length: Option<u8>,
    /// IPv6 prefix length (default 128).
    pub aggregation_length_v6: Option<u8>,
}

/// An `L2Advertisement`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Advertisement {
    /// Object name.
    pub name: String,
    /// Pools and nodes covered.
    pub scope: Scope,
    /// Interface name patterns; empty = every up, non-loopback interface not excluded by
    /// default (`l2::interfaces`).
    pub interfaces: Vec<String>,
}

/// The user's configuration, as announce reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Pools.
    pub pools: Vec<Pool>,
    /// BGP peers.
    pub peers: Vec<Peer>,
    /// BGP advertisements.
    pub bgp_advertisements: Vec<BgpAdvertisement>,
    /// Layer-2 advertisements.
    pub l2_advertisements: Vec<L2Advertisement>,
}

/// A node, as the API (or the standalone config) describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// The `Ready` condition is true.
    pub ready: bool,
    /// The `NetworkUnavailable` condition is true.
    pub network_unavailable: bool,
    /// Its address as a dataplane backend in cluster mode (InternalIP of the family).
    pub addresses: Vec<IpAddr>,
}

/// An endpoint of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's address.
    pub address: IpAddr,
    /// The node hosting it, if known.
    pub node: Option<String>,
    /// Ready (`conditions.ready`, unset counts as ready as in EndpointSlice semantics).
    pub ready: bool,
}

/// A Service with the addresses the allocator gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `namespace/name`.
    pub key: String,
    /// Assigned addresses with the pool each came from.
    pub addresses: Vec<(IpAddr, String)>,
    /// Exposed ports.
    pub ports: Vec<(Protocol, u16)>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// Endpoints from the Service's EndpointSlices.
    pub endpoints: Vec<Endpoint>,
}

/// One of this node's interfaces (system facts, from rtnetlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Administratively up with carrier.
    pub up: bool,
    /// A loopback interface (never used for layer 2).
    pub loopback: bool,
}

/// How dataplane backends are derived from endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendMode {
    /// Standalone: each ready endpoint address is a backend host, weight 1.
    EndpointHosts,
    /// Cluster: each node hosting ready endpoints is a backend, weighted by their count,
    /// addressed by its first node address of the VIP's family.
    Nodes,
}

/// What announce is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// Services with assigned addresses.
    pub services: &'a [Service],
    /// All nodes (for layer-2 eligibility and cluster backends).
    pub nodes: &'a [Node],
    /// This node's name.
    pub node_name: &'a str,
    /// This node's interfaces.
    pub interfaces: &'a [Interface],
    /// Backend derivation; `None` when this node has no dataplane: no VIPs are computed
    /// (with 10 000 Services they were megabytes nobody read).
    pub backend_mode: Option<BackendMode>,
}

/// Path attributes of an announced route (what the advertisement asks for).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttrs {
    /// Communities, sorted and unique.
    pub communities: Vec<u32>,
    /// Large communities, sorted and unique.
    pub large_communities: Vec<[u32; 3]>,
    /// LOCAL_PREF (iBGP only).
    pub local_pref: Option<u32>,
}

/// An address this node may answer for on layer 2, and who else may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Address {
    /// The address.
    pub address: IpAddr,
    /// This node's interfaces to answer on.
    pub interfaces: BTreeSet<String>,
    /// Every node the configuration makes eligible (this one included), before link state
    /// and liveness, which the election adds.
    pub eligible_nodes: BTreeSet<String>,
}

/// One VIP of the dataplane (the `herald-dataplane` type).
pub use herald_dataplane::Vip;

/// Why this node announces nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// The node is not in the node list.
    UnknownNode,
    /// `Ready` is not true.
    NotReady,
    /// `NetworkUnavailable` is true.
    NetworkUnavailable,
    /// Labelled [`EXCLUDE_LABEL`].
    Labelled,
}

/// This node's desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Per peer name: the routes to announce.
    pub bgp: BTreeMap<String, BTreeMap<IpNet, RouteAttrs>>,
    /// Layer-2 candidates, by address.
    pub l2: Vec<L2Address>,
    /// Dataplane VIPs, sorted.
    pub dataplane: Vec<Vip>,
    /// Set when the node announces nothing, and why.
    pub excluded: Option<Exclusion>,
}

/// Why a node may not announce at all.
pub fn exclusion(node: Option<&Node>) -> Option<Exclusion> {
    let Some(node) = node else {
        return Some(Exclusion::UnknownNode);
    };
    if !node.ready {
        Some(Exclusion::NotReady)
    } else if node.network_unavailable {
        Some(Exclusion::NetworkUnavailable)
    } else if node.labels.contains_key(EXCLUDE_LABEL) {
        Some(Exclusion::Labelled)
    } else {
        None
    }
}

impl Scope {
    fn covers_pool(&self, pool: Option<&Pool>) -> bool {
        if self.ip_pools.is_empty() && self.ip_pool_selectors.is_empty() {
            return true;
        }
        pool.is_some_and(|p| {
            self.ip_pools.contains(&p.name)
                || self.ip_pool_selectors.iter().any(|s| s.matches(&p.labels))
        })
    }

    fn covers_node(&self, node: &Node) -> bool {
        selected(&self.node_selectors, node)
    }
}

fn selected(selectors: &[Selector], node: &Node) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(&node.labels))
}

/// Whether `node` may announce `svc`'s addresses at all.
fn may_announce(svc: &Service, node: &Node) -> bool {
    exclusion(Some(node)).is_none()
        && (svc.traffic_policy == TrafficPolicy::Cluster
            || svc
                .endpoints
                .iter()
                .any(|e| e.ready && e.node.as_deref() == Some(node.name.as_str())))
}

/// The address aggregated to `len` bits (clamped to the family's width).
fn prefix(address: IpAddr, len: Option<u8>) -> IpNet {
    let max = if address.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max).min(max);
    IpNet::new(address, len)
        .expect("length clamped to the family's width")
        .trunc()
}

/// Computes this node's desired state.
pub fn compute(inputs: Inputs<'_>) -> Desired {
    let Inputs {
        config,
        services,
        nodes,
        node_name,
        interfaces,
        backend_mode,
    } = inputs;
    let me = nodes.iter().find(|n| n.name == node_name);
    let pools: BTreeMap<&str, &Pool> = config.pools.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut desired = Desired {
        excluded: exclusion(me),
        dataplane: backend_mode
            .map(|mode| dataplane(services, nodes, mode))
            .unwrap_or_default(),
        ..Desired::default()
    };
    let Some(me) = me.filter(|_| desired.excluded.is_none()) else {
        return desired;
    };
    let up: Vec<&Interface> = interfaces.iter().filter(|i| i.up).collect();
    for svc in services.iter().filter(|s| may_announce(s, me)) {
        for (address, pool_name) in &svc.addresses {
            let pool = pools.get(pool_name.as_str()).copied();
            announce_bgp(&mut desired, config, svc, me, *address, pool);
            let mut on = BTreeSet::new();
            let mut eligible = BTreeSet::new();
            for adv in config
                .l2_advertisements
                .iter()
                .filter(|a| a.scope.covers_pool(pool))
            {
                if adv.scope.covers_node(me) {
                    on.extend(
                        up.iter()
                            .filter(|i| {
                                // A loopback has no segment to answer on, whatever the pattern.
                                !i.loopback
                                    && herald_l2::interfaces::selects(&adv.interfaces, &i.name)
                            })
                            .map(|i| i.name.clone()),
                    );
                }
                eligible.extend(
                    nodes
                        .iter()
                        .filter(|n| adv.scope.covers_node(n) && may_announce(svc, n))
                        .map(|n| n.name.clone()),
                );
            }
            if !on.is_empty() {
                desired.l2.push(L2Address {
                    address: *address,
                    interfaces: on,
                    eligible_nodes: eligible,
                });
            }
        }
    }
    desired.l2.sort_by_key(|a| a.address);
    desired.l2.dedup_by(|b, a| {
        // The same address held by two sharing Services: one candidacy, united.
        if a.address == b.address {
            a.interfaces.append(&mut b.interfaces);
            a.eligible_nodes.append(&mut b.eligible_nodes);
            true
        } else {
            false
        }
    });
    desired
}

/// What the layer-2 election needs about one address under one advertisement: where it may
/// be answered and by which nodes. Every speaker gets the same list (it does not depend on
/// the node computing it), so every speaker elects the same owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Policy {
    /// The address.
    pub address: IpAddr,
    /// `L2Advertisement.interfaces` (patterns); empty = any usable interface not excluded
    /// by default.
    pub interfaces: Vec<String>,
    /// `L2Advertisement.nodeSelectors`; empty = every node.
    pub node_selectors: Vec<Selector>,
    /// For `externalTrafficPolicy: Local`: the nodes with a ready endpoint of the Service.
    pub local_endpoint_nodes: Option<BTreeSet<String>>,
}

/// One policy per (address, covering layer-2 advertisement), sorted by address.
pub fn l2_policies(config: &Config, services: &[Service]) -> Vec<L2Policy> {
    let pools: BTreeMap<&str, &Pool> = config.pools.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut out = Vec::new();
    for svc in services {
        let local = (svc.traffic_policy == TrafficPolicy::Local).then(|| {
            svc.endpoints
                .iter()
                .filter(|e| e.ready)
                .filter_map(|e| e.node.clone())
                .collect()
        });
        for (address, pool) in &svc.addresses {
            let pool = pools.get(pool.as_str()).copied();
            for adv in config
                .l2_advertisements
                .iter()
                .filter(|a| a.scope.covers_pool(pool))
            {
                out.push(L2Policy {
                    address: *address,
                    interfaces: adv.interfaces.clone(),
                    node_selectors: adv.scope.node_selectors.clone(),
                    local_endpoint_nodes: local.clone(),
                });
            }
        }
    }
    out.sort_by_key(|p| p.address);
    out.dedup();
    out
}

fn announce_bgp(
    desired: &mut Desired,
    config: &Config,
    svc: &Service,
    me: &Node,
    address: IpAddr,
    pool: Option<&Pool>,
) {
    for adv in &config.bgp_advertisements {
        if !adv.scope.covers_pool(pool) || !adv.scope.covers_node(me) {
            continue;
        }
        let len = match (svc.traffic_policy, address.is_ipv4()) {
            (TrafficPolicy::Local, _) => None,
            (TrafficPolicy::Cluster, true) => adv.aggregation_length,
            (TrafficPolicy::Cluster, false) => adv.aggregation_length_v6,
        };
        let net = prefix(address, len);
        let peers = config.peers.iter().filter(|p| {
            (adv.peers.is_empty() || adv.peers.contains(&p.name)) && selected(&p.node_selectors, me)
        });
        for peer in peers {
            let attrs = desired
                .bgp
                .entry(peer.name.clone())
                .or_default()
                .entry(net)
                .or_default();
            attrs.communities.extend(&adv.communities);
            attrs.communities.sort_unstable();
            attrs.communities.dedup();
            attrs.large_communities.extend(&adv.large_communities);
            attrs.large_communities.sort_unstable();
            attrs.large_communities.dedup();
            attrs.local_pref = attrs.local_pref.max(adv.local_pref);
        }
    }
}

fn dataplane(services: &[Service], nodes: &[Node], mode: BackendMode) -> Vec<Vip> {
    let mut vips = Vec::new();
    // Looked up per endpoint: a scan of all nodes each time is endpoints × nodes.
    let by_name: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    for svc in services {
        for (address, _) in &svc.addresses {
            let mut weights: BTreeMap<IpAddr, u32> = BTreeMap::new();
            for e in svc.endpoints.iter().filter(|e| e.ready) {
                let backend = match mode {
                    BackendMode::EndpointHosts => Some(e.address),
                    BackendMode::Nodes => {
                        e.node
                            .as_deref()
                            .and_then(|n| by_name.get(n))
                            .and_then(|node| {
                                node.addresses
                                    .iter()
                                    .copied()
                                    .find(|a| a.is_ipv4() == address.is_ipv4())
                            })
                    }
                };
                if let Some(backend) = backend.filter(|b| b.is_ipv4() == address.is_ipv4()) {
                    let w = weights.entry(backend).or_default();
                    *w = match mode {
                        BackendMode::EndpointHosts => 1,
                        BackendMode::Nodes => *w + 1,
                    };
                }
            }
            for &(protocol, port) in &svc.ports {
                vips.push(Vip {
                    address: *address,
                    port,
                    protocol,
                    backends: weights.iter().map(|(a, w)| (*a, *w)).collect(),
                    service: svc.key.clone(),
                });
            }
        }
    }
    vips.sort();
    vips
}

pub mod from_api;

#[cfg(test)]
mod tests;
