//! The per-node machinery every mode drives: from a [`Snapshot`] of objects and the addresses
//! granted to Services, compute this node's desired state ([`announce`]) and carry it out
//! (BGP sessions, the layer-2 agent), publishing what it did in `/status` and the metrics.
//!
//! ```text
//!   standalone: YAML -> embedded allocator ─┐
//!                                           ├─> Snapshot + Assigned ─> Engine::apply
//!   cluster:    API objects + Service status┘        announce::compute ─> peers / L2
//! ```
//!
//! The source decides where objects and addresses come from; the engine does not know.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_api::standalone::StandaloneConfig;
use herald_ipam::convert::{self, LbClass};
use herald_l2::agent::{Agent, AgentConfig, NodeStatus};
use herald_l2::election::{AddressPolicy, LabelRequirement, NodeSelector};
use herald_l2::gossip::seal::GossipKey;
use herald_l2::gossip::{GossipConfig, SwimTiming};
use ipnet::IpNet;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use thiserror::Error;
use tracing::{error, info, warn};

use crate::admin::Shared;
use crate::announce::{self, BackendMode, Desired, Inputs, Interface, from_api};
use crate::dataplane::driver::{Dataplane, DataplaneError, DataplaneOptions};
use crate::drain::{self, Drain, Phase};
use crate::metrics::{InterfaceLabel, NotificationLabels, PeerLabel, ReasonLabel, VipLabels};
use crate::peers::{self, HostFacts, Peers, WantedPeer};
use crate::status::{
    BgpStatus, DataplaneStatus, DataplaneVip, DesiredStatus, L2Status, RouteStatus, VipStatus,
};

/// Per Service key (`namespace/name`): the addresses granted to it and the pool of each.
/// Addresses held without a granting pool (a conflict after a pool edit) are left out: they
/// are not announced.
pub type Assigned = BTreeMap<String, Vec<(IpAddr, String)>>;

/// What the engine needs at start.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// This node's name.
    pub node_name: String,
    /// Where passive BGP peers are accepted (bound only if one exists).
    pub bgp_listen_addr: SocketAddr,
    /// Layer-2 mode's gossip among speakers; `None`: layer 2 is off.
    pub gossip: Option<GossipOptions>,
    /// How dataplane backends are derived from endpoints.
    pub backend_mode: BackendMode,
    /// The XDP balancer and decapsulation on this host.
    pub dataplane: DataplaneOptions,
    /// Standalone: when no Node object names this node, it counts as Ready and unlabelled
    /// (hosts need not list themselves). In a cluster an unknown node announces nothing.
    pub unlisted_node_ready: bool,
    /// What stopping (SIGTERM) does to the routes and the dataplane.
    pub on_exit: ExitMode,
}

/// `--on-exit`: what a stop (SIGTERM) means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExitMode {
    /// A planned restart (rollouts, upgrades): BGP sessions with graceful restart close
    /// without a Cease, so routers keep the routes as stale until the next start re-announces
    /// them; BFD says AdminDown; the XDP balancer and decapsulation stay attached with their
    /// maps pinned for the next start to adopt. Layer-2 addresses move to other nodes.
    #[default]
    Restart,
    /// Leaving for good: a Cease to every peer (routers withdraw at once), the dataplane
    /// detached and its pins removed.
    Withdraw,
}

/// `--gossip-*`: how this speaker finds and authenticates the others (layer-2 mode).
#[derive(Debug, Clone)]
pub struct GossipOptions {
    /// `--gossip-bind`: local UDP address (other speakers reach this node here).
    pub bind: SocketAddr,
    /// `--gossip-peer`: speakers to join through.
    pub peers: Vec<SocketAddr>,
    /// `--gossip-key-file`: the shared key (32 bytes raw, or 64 hex digits).
    pub key_file: PathBuf,
    /// `--l2-probe-interval`, `--l2-suspect-timeout`: failure detection.
    pub timing: SwimTiming,
}

/// Why the engine could not start.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Layer-2 mode could not start (gossip key, socket, netlink).
    #[error("layer 2: {0}")]
    L2(String),
    /// The dataplane could not start (loading, attaching the programs).
    #[error("dataplane: {0}")]
    Dataplane(#[from] DataplaneError),
}

/// The objects this node acts on, converted and checked: a snapshot is applied whole or not
/// at all.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The objects as read (standalone file or API server).
    pub objects: StandaloneConfig,
    /// Pools and advertisements in announce's terms.
    pub announce: announce::Config,
    /// The BGP sessions this node should run.
    pub peers: BTreeMap<String, WantedPeer>,
    /// This node's labels (from its Node object; none if it is not listed).
    pub node_labels: BTreeMap<String, String>,
}

impl Snapshot {
    /// Converts `objects` for `node_name`; errors name the object and the field.
    ///
    /// `BGPPeer.passwordSecret` must have been resolved into `password` by the caller.
    pub fn new(objects: StandaloneConfig, node_name: &str) -> Result<Self, String> {
        let announce = from_api::config(
            &objects.ip_pools,
            &objects.bgp_peers,
            &objects.bgp_advertisements,
            &objects.l2_advertisements,
        )
        .map_err(|e| e.to_string())?;
        let node = objects
            .nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node_name));
        let labels = node
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        let peers = peers::wanted(
            &objects.bgp_peers,
            &objects.bfd_profiles,
            &labels,
            &HostFacts::read(node),
        )
        .map_err(|(peer, e)| format!("BGPPeer {peer:?}: {e}"))?;
        Ok(Self {
            objects,
            announce,
            peers,
            node_labels: labels,
        })
    }
}

/// This host's interfaces: up means administratively up with carrier (`IFF_RUNNING`).
pub fn interfaces() -> Vec<Interface> {
    use nix::net::if_::InterfaceFlags as F;
    let mut out: BTreeMap<String, Interface> = BTreeMap::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            out.entry(a.interface_name.clone()).or_insert(Interface {
                name: a.interface_name,
                up: a.flags.contains(F::IFF_UP) && a.flags.contains(F::IFF_RUNNING),
                loopback: a.flags.contains(F::IFF_LOOPBACK),
            });
        }
    }
    out.into_values().collect()
}

/// The announce input of each Service from the last snapshot, reused while the Service
/// and its EndpointSlices keep their `resourceVersion` and its addresses stay the same: a
/// change to one of 10 000 Services converts one, not 10 000. Objects without a
/// `resourceVersion` (standalone files) are converted every time.
#[derive(Default)]
pub struct AnnounceCache {
    entries: HashMap<String, Cached>,
}

struct Cached {
    /// The Service's `resourceVersion`.
    version: String,
    /// Each EndpointSlice's name and `resourceVersion`, in snapshot order.
    slices: Vec<(String, String)>,
    addrs: Vec<(IpAddr, String)>,
    service: announce::Service,
}

impl Cached {
    /// Whether this entry was made from these objects (compared in place, no copies).
    fn matches(
        &self,
        version: &str,
        slices: &[&EndpointSlice],
        addrs: &[(IpAddr, String)],
    ) -> bool {
        self.version == version
            && self.addrs == addrs
            && self.slices.len() == slices.len()
            && self.slices.iter().zip(slices).all(|((name, rv), s)| {
                s.metadata.name.as_deref() == Some(name)
                    && s.metadata.resource_version.as_deref() == Some(rv)
            })
    }
}

/// The managed Services with their granted addresses, as announce reads them, reusing what
/// `cache` holds and leaving it holding this snapshot.
pub fn announce_services_cached(
    objects: &StandaloneConfig,
    assigned: &Assigned,
    cache: &mut AnnounceCache,
) -> Vec<announce::Service> {
    let mut services = Vec::new();
    let mut next = HashMap::with_capacity(cache.entries.len());
    let slices = from_api::slices_by_service(&objects.endpoint_slices);
    for svc in objects
        .services
        .iter()
        .filter(|s| convert::is_managed(s, &LbClass::default()))
    {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let key = format!("{ns}/{name}");
        let addrs = assigned.get(&key).cloned().unwrap_or_default();
        let mine: &[&EndpointSlice] = slices.get(&(ns, name)).map_or(&[], Vec::as_slice);
        let version = svc.metadata.resource_version.as_deref();
        let reused = cache
            .entries
            .remove(&key)
            .filter(|c| version.is_some_and(|v| c.matches(v, mine, &addrs)));
        if let Some(c) = reused {
            services.push(c.service.clone());
            next.insert(key, c);
            continue;
        }
        let Ok(service) = from_api::service(svc, addrs.clone(), &slices) else {
            continue;
        };
        services.push(service.clone());
        let versions: Option<Vec<(String, String)>> = mine
            .iter()
            .map(|s| {
                Some((
                    s.metadata.name.clone()?,
                    s.metadata.resource_version.clone()?,
                ))
            })
            .collect();
        if let (Some(version), Some(slices)) = (version, versions) {
            next.insert(
                key,
                Cached {
                    version: version.to_owned(),
                    slices,
                    addrs,
                    service,
                },
            );
        }
    }
    cache.entries = next;
    services
}

/// This node's desired state for `snapshot`, from its managed Services as
/// [`announce_services_cached`] read them.
fn desired_for(
    snapshot: &Snapshot,
    services: &[announce::Service],
    opts: &EngineOptions,
) -> Desired {
    let node_name = opts.node_name.as_str();
    let objects = &snapshot.objects;
    let mut nodes: Vec<announce::Node> = objects.nodes.iter().map(from_api::node).collect();
    if opts.unlisted_node_ready && !nodes.iter().any(|n| n.name == node_name) {
        nodes.push(announce::Node {
            name: node_name.to_owned(),
            ready: true,
            ..Default::default()
        });
    }
    announce::compute(Inputs {
        config: &snapshot.announce,
        services,
        nodes: &nodes,
        node_name,
        interfaces: &interfaces(),
        backend_mode: opts.dataplane.enabled().then_some(opts.backend_mode),
    })
}

/// The desired routes a peer's session cannot carry: a family without a next hop (IPv6 on an
/// IPv4 session when the node has no IPv6 address on that interface nor an IPv6 InternalIP,
/// and the other way round), one line per peer and family.
fn unsendable(desired: &Desired, peers: &BTreeMap<String, WantedPeer>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, routes) in &desired.bgp {
        let Some(peer) = peers.get(name) else {
            continue;
        };
        let s = &peer.config.session;
        let (v4_ok, v6_ok) = match peer.config.peer_addr {
            IpAddr::V4(_) => (true, s.next_hop_v6.is_some()),
            IpAddr::V6(_) => (s.next_hop_v4.is_some(), true),
        };
        for (family, ok, v6) in [("IPv4", v4_ok, false), ("IPv6", v6_ok, true)] {
            let prefixes: Vec<String> = routes
                .keys()
                .filter(|n| matches!(n, IpNet::V6(_)) == v6)
                .map(|n| n.to_string())
                .collect();
            if ok || prefixes.is_empty() {
                continue;
            }
            let shown = prefixes
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = prefixes.len().saturating_sub(5);
            out.push(format!(
                "{shown}{} to peer {name} ({}): no {family} next hop on this session; give \
                 the node an {family} address on the session's interface or an {family} \
                 InternalIP",
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                peer.config.peer_addr,
            ));
        }
    }
    out
}

fn community(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

/// `/status`'s view of a desired state.
fn desired_status(desired: &Desired) -> DesiredStatus {
    let mut routes = Vec::new();
    for (peer, prefixes) in &desired.bgp {
        for (prefix, attrs) in prefixes {
            let mut communities: Vec<String> =
                attrs.communities.iter().map(|c| community(*c)).collect();
            communities.extend(
                attrs
                    .large_communities
                    .iter()
                    .map(|[a, b, c]| format!("{a}:{b}:{c}")),
            );
            routes.push(RouteStatus {
                peer: peer.clone(),
                prefix: prefix.to_string(),
                communities,
                local_pref: attrs.local_pref,
            });
        }
    }
    DesiredStatus {
        unsendable: Vec::new(),
        excluded: desired.excluded.map(|e| format!("{e:?}")),
        routes,
        l2: desired
            .l2
            .iter()
            .map(|l| L2Status {
                address: l.address.to_string(),
                interfaces: l.interfaces.iter().cloned().collect(),
                eligible_nodes: l.eligible_nodes.iter().cloned().collect(),
            })
            .collect(),
        vips: desired
            .dataplane
            .iter()
            .map(|v| VipStatus {
                vip: match v.address {
                    IpAddr::V4(a) => format!("{a}:{}/{}", v.port, v.protocol),
                    IpAddr::V6(a) => format!("[{a}]:{}/{}", v.port, v.protocol),
                },
                backends: v.backends.iter().map(|(b, w)| format!("{b}*{w}")).collect(),
            })
            .collect(),
    }
}

/// The allocator's selector type (what the configuration converts to) as the election's.
fn node_selector(s: &herald_ipam::Selector) -> NodeSelector {
    use herald_ipam::Operator;
    let match_expressions = s
        .match_expressions
        .iter()
        .map(|r| {
            let values = || r.values.iter().cloned().collect();
            match r.operator {
                Operator::In => LabelRequirement::In(r.key.clone(), values()),
                Operator::NotIn => LabelRequirement::NotIn(r.key.clone(), values()),
                Operator::Exists => LabelRequirement::Exists(r.key.clone()),
                Operator::DoesNotExist => LabelRequirement::DoesNotExist(r.key.clone()),
            }
        })
        .collect();
    NodeSelector {
        match_labels: s.match_labels.clone(),
        match_expressions,
    }
}

/// The layer-2 election's inputs: one policy per (address, advertisement), and the nodes'
/// status (`None` when the snapshot lists no Node objects: every live speaker counts as
/// Ready and unlabelled).
fn l2_inputs(
    snapshot: &Snapshot,
    services: &[announce::Service],
) -> (Vec<AddressPolicy>, Option<BTreeMap<String, NodeStatus>>) {
    let policies = announce::l2_policies(&snapshot.announce, services)
        .into_iter()
        .map(|p| AddressPolicy {
            addr: p.address,
            interfaces: p.interfaces,
            node_selectors: p.node_selectors.iter().map(node_selector).collect(),
            local_endpoint_nodes: p.local_endpoint_nodes,
        })
        .collect();
    let nodes = &snapshot.objects.nodes;
    let status = (!nodes.is_empty()).then(|| {
        nodes
            .iter()
            .map(from_api::node)
            .map(|n| {
                let status = NodeStatus {
                    labels: n.labels,
                    ready: n.ready,
                    network_unavailable: n.network_unavailable,
                };
                (n.name, status)
            })
            .collect()
    });
    (policies, status)
}

/// Starts the layer-2 agent (link watcher, gossip, responder) if gossip is configured.
async fn start_l2(opts: &EngineOptions, shared: &Shared) -> Result<Option<Agent>, EngineError> {
    let Some(g) = &opts.gossip else {
        return Ok(None);
    };
    let key = GossipKey::from_file(&g.key_file).map_err(|e| EngineError::L2(e.to_string()))?;
    let config = AgentConfig {
        node: opts.node_name.clone(),
        interfaces: Vec::new(),
        gossip: GossipConfig {
            name: opts.node_name.clone(),
            bind: g.bind,
            advertise: g.bind,
            seeds: g.peers.clone(),
            key,
            timing: g.timing,
            facts_interval: Duration::from_millis(500),
            realtime: true,
        },
        announce: Default::default(),
    };
    let agent = Agent::spawn_observed(config, shared.metrics.l2_takeover_seconds.clone())
        .await
        .map_err(|e| EngineError::L2(e.to_string()))?;
    info!(bind = %g.bind, peers = g.peers.len(), "layer-2 gossip started");
    Ok(Some(agent))
}

/// This node's sessions and agents, driven by snapshots.
pub struct Engine {
    opts: EngineOptions,
    shared: Arc<Shared>,
    peers: Peers,
    l2: Option<Agent>,
    dataplane: Option<Dataplane>,
    dataplane_errors: Vec<String>,
    cache: AnnounceCache,
    /// Each peer's routes as announce computed them, before the drain phase is applied.
    routes: BTreeMap<String, BTreeMap<IpNet, announce::RouteAttrs>>,
    drain: Drain,
    /// The last snapshot's routes that no session can carry (logged when this changes).
    unsendable: Vec<String>,
    /// (peer, IPv6?) of the last snapshot's sessions without a next hop of that family.
    unsendable_families: std::collections::BTreeSet<(String, bool)>,
}

impl Engine {
    /// Starts the dataplane and the layer-2 agent if configured; BGP sessions start with
    /// the first snapshot.
    pub async fn start(opts: EngineOptions, shared: Arc<Shared>) -> Result<Self, EngineError> {
        let dataplane = if opts.dataplane.enabled() {
            let host = interfaces()
                .into_iter()
                .filter(|i| !i.loopback)
                .map(|i| i.name)
                .collect();
            Some(Dataplane::start(opts.dataplane.clone(), host).await?)
        } else {
            None
        };
        Ok(Self {
            peers: Peers::new(
                opts.bgp_listen_addr,
                shared.metrics.bgp_announce_seconds.clone(),
            ),
            l2: start_l2(&opts, &shared).await?,
            dataplane,
            dataplane_errors: Vec::new(),
            cache: AnnounceCache::default(),
            routes: BTreeMap::new(),
            drain: Drain::default(),
            unsendable: Vec::new(),
            unsendable_families: Default::default(),
            opts,
            shared,
        })
    }

    /// Whether the layer-2 agent (gossip) runs.
    pub fn has_l2(&self) -> bool {
        self.l2.is_some()
    }

    /// Refuses a snapshot this engine cannot carry out (before anything is changed).
    pub fn check(&self, snapshot: &Snapshot) -> Result<(), String> {
        // Only an advertisement that could elect this node needs the gossip here: backend
        // hosts and BGP-only nodes outside its nodeSelectors run without it.
        let selecting = snapshot.announce.l2_advertisements.iter().find(|adv| {
            let selectors = &adv.scope.node_selectors;
            selectors.is_empty() || selectors.iter().any(|s| s.matches(&snapshot.node_labels))
        });
        if let (None, Some(adv)) = (&self.l2, selecting) {
            let name = &adv.name;
            return Err(format!(
                "L2Advertisement {name:?}: layer-2 mode needs the gossip among speakers: start \
                 herald-speaker with --gossip-bind and --gossip-key-file (and --gossip-peer for each other node)"
            ));
        }
        Ok(())
    }

    /// Computes the desired state and hands it to the sessions and agents; returns it, with
    /// the Services as announce read them. The routes go out first; the metrics and
    /// `/status` (thousands of lines with many Services) are written after.
    pub async fn apply(
        &mut self,
        snapshot: &Snapshot,
        assigned: &Assigned,
    ) -> (Desired, Vec<announce::Service>) {
        let services = announce_services_cached(&snapshot.objects, assigned, &mut self.cache);
        self.apply_services(snapshot, services).await
    }

    /// [`Engine::apply`] with announce's input already read (cluster mode reads it from its
    /// watches' [`facts`](crate::cluster::facts); `snapshot.objects` then has no Services).
    pub async fn apply_services(
        &mut self,
        snapshot: &Snapshot,
        services: Vec<announce::Service>,
    ) -> (Desired, Vec<announce::Service>) {
        let desired = desired_for(snapshot, &services, &self.opts);
        for (peer, e) in self.peers.reconcile(snapshot.peers.clone()).await {
            error!(%peer, error = %e, "bgp session not started");
        }
        if let Some(dataplane) = &mut self.dataplane {
            // Before the routes: traffic the new routes attract finds its VIP programmed.
            self.dataplane_errors = dataplane.apply(&desired.dataplane).await;
            for e in &self.dataplane_errors {
                error!(error = %e, "dataplane");
            }
        }
        let annotated = drain::annotated(
            snapshot
                .objects
                .nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(self.opts.node_name.as_str()))
                .and_then(|n| n.metadata.annotations.as_ref()),
        );
        // The old copy goes before the new is made: both at once was part of the peak.
        self.routes = BTreeMap::new();
        self.routes = desired.bgp.clone();
        if self.drain.set_annotation(annotated, Instant::now()) {
            self.drain_changed(if annotated {
                "Node annotation herald.dev/drain"
            } else {
                "Node annotation herald.dev/drain removed"
            });
        } else {
            self.push_routes();
        }
        if let Some(agent) = &self.l2 {
            let (policies, status) = l2_inputs(snapshot, &services);
            agent.set_policies(policies);
            agent.set_node_status(status);
        }
        let m = &self.shared.metrics;
        m.desired_routes.clear();
        for (peer, prefixes) in &desired.bgp {
            m.desired_routes
                .get_or_create(&PeerLabel { peer: peer.clone() })
                .set(prefixes.len() as i64);
        }
        let unsendable_now = unsendable(&desired, &snapshot.peers);
        self.unsendable_families = snapshot
            .peers
            .iter()
            .filter_map(|(name, p)| match p.config.peer_addr {
                IpAddr::V4(_) if p.config.session.next_hop_v6.is_none() => {
                    Some((name.clone(), true))
                }
                IpAddr::V6(_) if p.config.session.next_hop_v4.is_none() => {
                    Some((name.clone(), false))
                }
                _ => None,
            })
            .collect();
        if unsendable_now != self.unsendable {
            for u in &unsendable_now {
                warn!("route not sent: {u}");
            }
            self.unsendable = unsendable_now.clone();
        }
        self.shared.update_status(|s| {
            // Built under the lock, the old rows freed first: with 10 000 routes, both at
            // once was part of the peak. Readers see the old rows or the new, never none.
            s.desired = DesiredStatus::default();
            s.desired = desired_status(&desired);
            s.desired.unsendable = unsendable_now;
        });
        self.refresh();
        (desired, services)
    }

    /// The BGP sessions' state, by peer name.
    pub fn bgp_statuses(&self) -> Vec<BgpStatus> {
        self.peers
            .statuses()
            .iter()
            .map(|(name, s)| BgpStatus {
                peer: name.clone(),
                address: s.peer.to_string(),
                state: s.state.as_str().to_owned(),
                uptime_seconds: s.uptime().map(|d| d.as_secs()),
                prefixes_sent: s.prefixes_sent as u64,
                prefixes_received: s.prefixes_received as u64,
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// The addresses this node answers ARP/NDP for, with the interface.
    pub fn l2_owned(&self) -> Vec<(IpAddr, String)> {
        self.l2
            .as_ref()
            .map(|a| {
                a.owned()
                    .borrow()
                    .iter()
                    .map(|(a, i)| (*a, i.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Copies the sessions' state into `/status` and the metrics.
    pub fn refresh(&self) {
        let m = &self.shared.metrics;
        let rows = self.bgp_statuses();
        m.bgp_session_up.clear();
        m.bgp_prefixes_sent.clear();
        m.bgp_prefixes_received.clear();
        for row in &rows {
            let label = PeerLabel {
                peer: row.peer.clone(),
            };
            let up = row.state == crate::bgp::fsm::State::Established.as_str();
            m.bgp_session_up.get_or_create(&label).set(i64::from(up));
            m.bgp_prefixes_sent
                .get_or_create(&label)
                .set(row.prefixes_sent as i64);
            m.bgp_prefixes_received
                .get_or_create(&label)
                .set(row.prefixes_received as i64);
        }
        for (peer, s) in self.peers.statuses() {
            let sent = s.notifications_sent.iter().map(|(c, n)| ("sent", c, n));
            let received = s
                .notifications_received
                .iter()
                .map(|(c, n)| ("received", c, n));
            for (direction, &(code, subcode), &n) in sent.chain(received) {
                let (code, subcode) = crate::bgp::codec::notification_names(code, subcode);
                let counter = m.bgp_notifications.get_or_create(&NotificationLabels {
                    peer: peer.clone(),
                    direction,
                    code,
                    subcode,
                });
                // The session task counts since it started; the counter only moves forward.
                if n > counter.get() {
                    counter.inc_by(n - counter.get());
                }
            }
        }
        m.bfd_session_up.clear();
        let mut bfd_rows = Vec::new();
        for (name, b) in self.peers.bfd_statuses() {
            let up = b.state == crate::bfd::packet::State::Up;
            m.bfd_session_up
                .get_or_create(&PeerLabel { peer: name.clone() })
                .set(i64::from(up));
            bfd_rows.push(crate::status::BfdStatusRow {
                peer: name,
                state: format!("{:?}", b.state),
                down_count: b.down_count,
                sent: b.sent,
                received: b.received,
            });
        }
        let owned = self.l2_owned();
        m.l2_owned.clear();
        let mut per_if: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, i) in &owned {
            *per_if.entry(i.as_str()).or_default() += 1;
        }
        for (i, n) in per_if {
            m.l2_owned
                .get_or_create(&InterfaceLabel {
                    interface: i.to_owned(),
                })
                .set(n);
        }
        if let Some(agent) = &self.l2 {
            for (interface, (replies, announcements)) in agent.sent_per_interface() {
                let label = InterfaceLabel { interface };
                m.l2_replies.get_or_create(&label).set(replies as i64);
                m.l2_announcements
                    .get_or_create(&label)
                    .set(announcements as i64);
            }
        }
        let l2_owned = owned.iter().map(|(a, i)| format!("{a}@{i}")).collect();
        let dataplane = self.refresh_dataplane();
        self.shared.update_status(|st| {
            st.bgp = rows;
            st.bfd = bfd_rows;
            st.l2_owned = l2_owned;
            st.dataplane = dataplane;
        });
    }

    fn refresh_dataplane(&self) -> DataplaneStatus {
        let Some(dataplane) = &self.dataplane else {
            return DataplaneStatus::default();
        };
        let snap = dataplane.snapshot();
        let m = &self.shared.metrics;
        m.dataplane_attached.clear();
        for (interface, _) in &snap.attached {
            m.dataplane_attached
                .get_or_create(&InterfaceLabel {
                    interface: interface.clone(),
                })
                .set(1);
        }
        m.dataplane_packets.clear();
        m.dataplane_bytes.clear();
        let mut vips = Vec::new();
        for v in &snap.vips {
            let vip = match v.vip.address {
                IpAddr::V4(a) => format!("{a}:{}/{}", v.vip.port, v.vip.proto),
                IpAddr::V6(a) => format!("[{a}]:{}/{}", v.vip.port, v.vip.proto),
            };
            let labels = VipLabels {
                service: v.service.clone(),
                vip: vip.clone(),
            };
            m.dataplane_packets
                .get_or_create(&labels)
                .set(v.packets as i64);
            m.dataplane_bytes.get_or_create(&labels).set(v.bytes as i64);
            vips.push(DataplaneVip {
                vip,
                service: v.service.clone(),
                packets: v.packets,
                bytes: v.bytes,
            });
        }
        for (reason, n) in &snap.drops {
            m.dataplane_drops
                .get_or_create(&ReasonLabel { reason })
                .set(*n as i64);
        }
        m.dataplane_decapsulated.set(snap.decapsulated as i64);
        m.dataplane_next_hops.set(snap.next_hops.len() as i64);
        DataplaneStatus {
            attached: snap
                .attached
                .iter()
                .map(|(i, mode)| format!("{i} ({mode})"))
                .collect(),
            decap: snap.decap.clone(),
            bound: snap.bound.iter().map(ToString::to_string).collect(),
            vips,
            drops: snap
                .drops
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| ((*r).to_owned(), *n))
                .collect(),
            decapsulated: snap.decapsulated,
            errors: self.dataplane_errors.clone(),
            next_hops: snap.next_hops.clone(),
            next_hop_errors: snap.next_hop_errors.clone(),
        }
    }

    /// Hands each session its routes as the drain phase announces them.
    fn push_routes(&self) {
        if self.drain.phase() == Phase::Serving {
            self.peers.set_routes(&self.routes);
            return;
        }
        let routes = self
            .routes
            .iter()
            .map(|(peer, r)| (peer.clone(), self.drain.routes(r)))
            .collect();
        self.peers.set_routes(&routes);
    }

    /// `herald-speaker drain` (`Some(wait)`) or its undoing (`None`).
    pub fn set_drain_command(&mut self, wait: Option<Duration>) {
        if self.drain.set_command(wait, Instant::now()) {
            self.drain_changed(if wait.is_some() {
                "drain command"
            } else {
                "undrain command"
            });
        }
    }

    /// (peer, IPv6?) pairs whose session cannot carry routes of that family (no next hop).
    pub fn unsendable_families(&self) -> std::collections::BTreeSet<(String, bool)> {
        self.unsendable_families.clone()
    }

    /// The drain phase now.
    pub fn drain_phase(&self) -> Phase {
        self.drain.phase()
    }

    /// When the drain's wait ends: call [`Self::drain_tick`] then.
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.drain.deadline()
    }

    /// Withdraws the routes once the drain's wait is over.
    pub fn drain_tick(&mut self) {
        if self.drain.tick(Instant::now()) {
            self.drain_changed("drain wait over");
        }
    }

    fn drain_changed(&mut self, why: &str) {
        let phase = self.drain.phase();
        info!(phase = phase.as_str(), cause = why, "drain");
        self.push_routes();
        if let Some(agent) = &self.l2 {
            agent.set_drained(phase != Phase::Serving);
        }
        self.shared.update_status(|s| s.drain = phase);
    }

    /// Stops as `--on-exit` says ([`ExitMode`]). The layer-2 agent leaves either way (the
    /// others take over at once); `reason` is the Cease text (RFC 8203) where one is sent.
    pub async fn shutdown(mut self, reason: &str) {
        if let Some(agent) = &self.l2 {
            agent.leave();
        }
        match self.opts.on_exit {
            ExitMode::Restart => self.peers.stop_for_restart(reason).await,
            ExitMode::Withdraw => self.peers.shutdown(reason).await,
        }
        if let Some(dataplane) = self.dataplane.take() {
            dataplane
                .shutdown(self.opts.on_exit == ExitMode::Restart)
                .await;
        }
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use serde_json::json;

    fn svc(rv: &str) -> Arc<k8s_openapi::api::core::v1::Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
            }))
            .unwrap(),
        )
    }

    fn slice(rv: Option<&str>, ready: bool) -> Arc<k8s_openapi::api::discovery::v1::EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": rv,
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": ready},
                               "nodeName": "n1"}],
            }))
            .unwrap(),
        )
    }

    fn objects(
        svc_rv: &str,
        slice: Arc<k8s_openapi::api::discovery::v1::EndpointSlice>,
    ) -> StandaloneConfig {
        StandaloneConfig {
            services: vec![svc(svc_rv)],
            endpoint_slices: vec![slice],
            ..Default::default()
        }
    }

    fn assigned(ip: &str) -> Assigned {
        [(
            "shop/web".to_owned(),
            vec![(ip.parse().unwrap(), "a".to_owned())],
        )]
        .into()
    }

    #[test]
    fn a_cached_service_follows_every_change_of_its_slices_and_addresses() {
        let mut cache = AnnounceCache::default();
        let first = announce_services_cached(
            &objects("1", slice(Some("5"), true)),
            &assigned("10.0.0.1"),
            &mut cache,
        );
        assert!(first[0].endpoints[0].ready);
        // The same versions give the same result.
        let again = announce_services_cached(
            &objects("1", slice(Some("5"), true)),
            &assigned("10.0.0.1"),
            &mut cache,
        );
        assert_eq!(again, first);
        // A new slice version is read again.
        let not_ready = announce_services_cached(
            &objects("1", slice(Some("6"), false)),
            &assigned("10.0.0.1"),
            &mut cache,
        );
        assert!(!not_ready[0].endpoints[0].ready);
        // New addresses with the same versions.
        let moved = announce_services_cached(
            &objects("1", slice(Some("6"), false)),
            &assigned("10.0.0.2"),
            &mut cache,
        );
        assert_eq!(moved[0].addresses[0].0.to_string(), "10.0.0.2");
    }

    #[test]
    fn objects_without_a_resource_version_are_read_every_time() {
        let mut cache = AnnounceCache::default();
        let a = announce_services_cached(
            &objects("1", slice(None, true)),
            &assigned("10.0.0.1"),
            &mut cache,
        );
        assert!(a[0].endpoints[0].ready);
        // Standalone files: same (absent) version, different content.
        let b = announce_services_cached(
            &objects("1", slice(None, false)),
            &assigned("10.0.0.1"),
            &mut cache,
        );
        assert!(!b[0].endpoints[0].ready);
    }
}
