//! `herald-speaker standalone`: the long-running loop.
//!
//! ```text
//!   config file/dir ──inotify──┐
//!   SIGHUP ────────────────────┼─> changes (mpsc) ─> reload: load -> convert -> allocate
//!                              │                      -> persist -> announce -> publish
//!   SIGTERM / SIGINT ──────────┴─> shutdown                    │
//!                                                   Shared (status, metrics) <─ admin HTTP
//! ```
//!
//! A configuration is applied whole or not at all: a file that does not load, or objects
//! that do not convert, leave the previous configuration running; the refusal is logged
//! with file, document, object and field, counted, and shown in `/status`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_api::standalone::{self, StandaloneConfig};
use herald_controller::convert::{self, DEFAULT_LB_CLASS};
use notify::{RecursiveMode, Watcher};
use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::allocate::{Embedded, Outcome};
use super::state;
use crate::admin::{self, Shared};
use crate::announce::{self, BackendMode, Desired, Inputs, Interface, from_api};
use crate::l2::agent::{Agent, AgentConfig, NodeStatus};
use crate::l2::election::{AddressPolicy, NodeSelector};
use crate::l2::gossip::GossipConfig;
use crate::l2::gossip::seal::GossipKey;
use crate::metrics::{PeerLabel, PoolLabels, ResultLabel};
use crate::peers::{self, HostFacts, Peers, WantedPeer};
use crate::status::{
    BgpStatus, ConfigStatus, DesiredStatus, L2Status, PoolStatus, RouteStatus, ServiceStatus,
    StatusReport, VipStatus,
};

/// How long to wait for more file events before reloading: editors write a file in
/// several steps (truncate, write, rename); one reload after the burst is enough.
const SETTLE: Duration = Duration::from_millis(15);

/// What `herald-speaker standalone` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--config`: a YAML file or a directory of them.
    pub config: PathBuf,
    /// `--node-name`.
    pub node_name: String,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// `--admin-addr`.
    pub admin_addr: SocketAddr,
    /// `--bgp-listen-addr`: where passive peers are accepted (bound only if one exists).
    pub bgp_listen_addr: SocketAddr,
    /// Layer-2 mode's gossip among speakers; `None`: layer 2 is off.
    pub gossip: Option<GossipOptions>,
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
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration at start-up is invalid (there is no previous one to keep).
    #[error("configuration refused:\n{0}")]
    Config(String),
    /// Layer-2 mode could not start (gossip key, socket, netlink).
    #[error("layer 2: {0}")]
    L2(String),
    /// The state directory cannot be used.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Binding the admin address, watching files, installing signal handlers.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A configuration that loaded and converted, ready to apply.
struct Candidate {
    config: StandaloneConfig,
    announce: announce::Config,
    peers: BTreeMap<String, WantedPeer>,
}

fn load(path: &Path, node_name: &str) -> Result<Candidate, String> {
    let config = standalone::load(path).map_err(|e| e.to_string())?;
    let announce = from_api::config(
        &config.ip_pools,
        &config.bgp_peers,
        &config.bgp_advertisements,
        &config.l2_advertisements,
    )
    .map_err(|e| e.to_string())?;
    let labels = config
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    let peers = peers::wanted(
        &config.bgp_peers,
        &config.bfd_profiles,
        &labels,
        &HostFacts::read(),
    )
    .map_err(|(peer, e)| format!("BGPPeer {peer:?}: {e}"))?;
    Ok(Candidate {
        config,
        announce,
        peers,
    })
}

/// This host's interfaces: up means administratively up with carrier (`IFF_RUNNING`).
fn interfaces() -> Vec<Interface> {
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

/// The managed Services with their granted addresses, as announce reads them.
fn announce_services(config: &StandaloneConfig, outcome: &Outcome) -> Vec<announce::Service> {
    let mut services = Vec::new();
    for svc in config
        .services
        .iter()
        .filter(|s| convert::is_managed(s, DEFAULT_LB_CLASS))
    {
        let key = format!(
            "{}/{}",
            svc.metadata.namespace.as_deref().unwrap_or("default"),
            svc.metadata.name.as_deref().unwrap_or_default()
        );
        // Addresses kept under a conflict (no granting pool) are not announced.
        let addrs: Vec<(IpAddr, String)> = outcome
            .assigned
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|(a, p)| Some((*a, p.clone()?)))
            .collect();
        if let Ok(s) = from_api::service(svc, addrs, &config.endpoint_slices) {
            services.push(s);
        }
    }
    services
}

/// Announce's inputs from a config and the allocation outcome.
fn desired(candidate: &Candidate, outcome: &Outcome, node_name: &str) -> Desired {
    let config = &candidate.config;
    let services = announce_services(config, outcome);
    let mut nodes: Vec<announce::Node> = config.nodes.iter().map(from_api::node).collect();
    if !nodes.iter().any(|n| n.name == node_name) {
        // Standalone hosts need not list themselves: an unlisted node is Ready, unlabelled.
        nodes.push(announce::Node {
            name: node_name.to_owned(),
            ready: true,
            ..Default::default()
        });
    }
    announce::compute(Inputs {
        config: &candidate.announce,
        services: &services,
        nodes: &nodes,
        node_name,
        interfaces: &interfaces(),
        backend_mode: BackendMode::EndpointHosts,
    })
}

fn community(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

fn publish(shared: &Shared, outcome: &Outcome, desired: &Desired) {
    let m = &shared.metrics;
    let errors: BTreeMap<String, String> = outcome
        .errors
        .iter()
        .map(|e| (e.service.to_string(), e.reason.to_string()))
        .collect();
    let mut services: Vec<ServiceStatus> = outcome
        .assigned
        .iter()
        .map(|(k, addrs)| ServiceStatus {
            service: k.clone(),
            addresses: addrs.iter().map(|(a, _)| a.to_string()).collect(),
            pools: addrs
                .iter()
                .map(|(_, p)| p.clone().unwrap_or_else(|| "-".into()))
                .collect(),
            error: errors.get(k).cloned(),
        })
        .collect();
    for (k, e) in &errors {
        if !outcome.assigned.contains_key(k) {
            services.push(ServiceStatus {
                service: k.clone(),
                error: Some(e.clone()),
                ..Default::default()
            });
        }
    }
    services.sort_by(|a, b| a.service.cmp(&b.service));
    m.services_assigned
        .set(outcome.assigned.values().filter(|a| !a.is_empty()).count() as i64);
    m.services_failed.set(errors.len() as i64);
    m.pool_assigned.clear();
    m.pool_available.clear();
    let mut pools = Vec::new();
    for (name, c) in &outcome.counts {
        for (family, f) in [("ipv4", c.v4), ("ipv6", c.v6)] {
            let labels = PoolLabels {
                pool: name.clone(),
                family,
            };
            m.pool_assigned
                .get_or_create(&labels)
                .set(f.assigned as f64);
            m.pool_available
                .get_or_create(&labels)
                .set(f.available as f64);
        }
        pools.push(PoolStatus {
            pool: name.clone(),
            assigned_ipv4: c.v4.assigned.to_string(),
            available_ipv4: c.v4.available.to_string(),
            assigned_ipv6: c.v6.assigned.to_string(),
            available_ipv6: c.v6.available.to_string(),
        });
    }
    m.desired_routes.clear();
    let mut routes = Vec::new();
    for (peer, prefixes) in &desired.bgp {
        m.desired_routes
            .get_or_create(&PeerLabel { peer: peer.clone() })
            .set(prefixes.len() as i64);
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
    let desired_status = DesiredStatus {
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
    };
    shared.update_status(|s| {
        s.services = services;
        s.pools = pools;
        s.desired = desired_status;
    });
}

/// The layer-2 election's inputs: one policy per (address, advertisement), and the nodes'
/// status (`None` when the configuration lists no Node objects: every live speaker counts as
/// Ready and unlabelled).
fn l2_inputs(
    candidate: &Candidate,
    outcome: &Outcome,
) -> (Vec<AddressPolicy>, Option<BTreeMap<String, NodeStatus>>) {
    let services = announce_services(&candidate.config, outcome);
    let policies = announce::l2_policies(&candidate.announce, &services)
        .into_iter()
        .map(|p| AddressPolicy {
            addr: p.address,
            interfaces: p.interfaces,
            node_selectors: p.node_selectors.iter().map(NodeSelector::from).collect(),
            local_endpoint_nodes: p.local_endpoint_nodes,
        })
        .collect();
    let status = (!candidate.config.nodes.is_empty()).then(|| {
        candidate
            .config
            .nodes
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
async fn start_l2(opts: &Options) -> Result<Option<Agent>, DaemonError> {
    let Some(g) = &opts.gossip else {
        return Ok(None);
    };
    let key = GossipKey::from_file(&g.key_file).map_err(|e| DaemonError::L2(e.to_string()))?;
    let agent = Agent::spawn(AgentConfig {
        node: opts.node_name.clone(),
        interfaces: Vec::new(),
        gossip: GossipConfig {
            name: opts.node_name.clone(),
            bind: g.bind,
            advertise: g.bind,
            seeds: g.peers.clone(),
            key,
            timing: Default::default(),
            facts_interval: Duration::from_millis(500),
        },
        announce: Default::default(),
    })
    .await
    .map_err(|e| DaemonError::L2(e.to_string()))?;
    info!(bind = %g.bind, peers = g.peers.len(), "layer-2 gossip started");
    Ok(Some(agent))
}

/// The reload half of the loop: owns the allocator and applies candidates.
struct Engine {
    opts: Options,
    embedded: Embedded,
    shared: Arc<Shared>,
    generation: u64,
    peers: Peers,
    l2: Option<Agent>,
}

impl Engine {
    /// Applies `candidate`; `Err` leaves everything as it was.
    async fn apply(&mut self, candidate: Candidate) -> Result<Desired, String> {
        if self.l2.is_none() && !candidate.config.l2_advertisements.is_empty() {
            let name = candidate.config.l2_advertisements[0]
                .metadata
                .name
                .clone()
                .unwrap_or_default();
            return Err(format!(
                "L2Advertisement {name:?}: layer-2 mode needs the gossip among speakers: start \
                 herald-speaker with --gossip-bind and --gossip-key-file (and --gossip-peer for each other node)"
            ));
        }
        let outcome = self.embedded.apply(&candidate.config).map_err(|errs| {
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        if let Err(e) = state::save(&self.opts.state_dir, &outcome.state) {
            // The allocation stands (it is deterministic from the config and the previous
            // state), but a restart now could lose new addresses: say so loudly.
            error!(error = %e, "could not persist assignments");
        }
        for e in &outcome.errors {
            warn!(service = %e.service, reason = %e.reason, "service not fully assigned");
        }
        let desired = desired(&candidate, &outcome, &self.opts.node_name);
        publish(&self.shared, &outcome, &desired);
        for (peer, e) in self.peers.reconcile(candidate.peers.clone()).await {
            error!(%peer, error = %e, "bgp session not started");
        }
        self.peers.set_routes(&desired.bgp);
        if let Some(agent) = &self.l2 {
            let (policies, status) = l2_inputs(&candidate, &outcome);
            agent.set_policies(policies);
            agent.set_node_status(status);
        }
        self.refresh_sessions();
        self.generation += 1;
        let generation = self.generation;
        self.shared.update_status(|s| {
            s.config.generation = generation;
            s.config.last_error = None;
        });
        Ok(desired)
    }

    /// Copies the sessions' state into `/status` and the metrics.
    fn refresh_sessions(&self) {
        let statuses = self.peers.statuses();
        let m = &self.shared.metrics;
        m.bgp_session_up.clear();
        m.bgp_prefixes_sent.clear();
        m.bgp_prefixes_received.clear();
        let mut rows = Vec::new();
        for (name, s) in &statuses {
            let label = PeerLabel { peer: name.clone() };
            let up = s.state == crate::bgp::fsm::State::Established;
            m.bgp_session_up.get_or_create(&label).set(i64::from(up));
            m.bgp_prefixes_sent
                .get_or_create(&label)
                .set(s.prefixes_sent as i64);
            m.bgp_prefixes_received
                .get_or_create(&label)
                .set(s.prefixes_received as i64);
            rows.push(BgpStatus {
                peer: name.clone(),
                address: s.peer.to_string(),
                state: s.state.as_str().to_owned(),
                uptime_seconds: s.uptime().map(|d| d.as_secs()),
                prefixes_sent: s.prefixes_sent as u64,
                prefixes_received: s.prefixes_received as u64,
                last_error: s.last_error.clone(),
            });
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
        let owned: Vec<(String, String)> = self
            .l2
            .as_ref()
            .map(|a| {
                a.owned()
                    .borrow()
                    .iter()
                    .map(|(addr, i)| (addr.to_string(), i.clone()))
                    .collect()
            })
            .unwrap_or_default();
        m.l2_owned.clear();
        let mut per_if: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, i) in &owned {
            *per_if.entry(i.as_str()).or_default() += 1;
        }
        for (i, n) in per_if {
            m.l2_owned
                .get_or_create(&crate::metrics::InterfaceLabel {
                    interface: i.to_owned(),
                })
                .set(n);
        }
        let l2_owned = owned.iter().map(|(a, i)| format!("{a}@{i}")).collect();
        self.shared.update_status(|st| {
            st.bgp = rows;
            st.bfd = bfd_rows;
            st.l2_owned = l2_owned;
        });
    }

    async fn reload(&mut self, noticed: Instant) {
        let result = match load(&self.opts.config, &self.opts.node_name) {
            Ok(c) => self.apply(c).await,
            Err(e) => Err(e),
        };
        let m = &self.shared.metrics;
        match result {
            Ok(desired) => {
                m.config_reloads
                    .get_or_create(&ResultLabel { result: "success" })
                    .inc();
                m.change_to_announce_seconds
                    .observe(noticed.elapsed().as_secs_f64());
                info!(
                    generation = self.generation,
                    routes = desired.bgp.values().map(|r| r.len()).sum::<usize>(),
                    "configuration applied"
                );
            }
            Err(message) => {
                m.config_reloads
                    .get_or_create(&ResultLabel { result: "failure" })
                    .inc();
                error!("configuration refused, the previous one keeps running:\n{message}");
                self.shared
                    .update_status(|s| s.config.last_error = Some(message));
            }
        }
    }
}

/// Watches the config path; each relevant event sends `()` (coalesced: capacity 1).
fn watch(path: &Path, tx: mpsc::Sender<()>) -> Result<notify::RecommendedWatcher, DaemonError> {
    let io = |what: &str, e: notify::Error| DaemonError::Io {
        what: format!("{what} {}", path.display()),
        source: std::io::Error::other(e.to_string()),
    };
    let target = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let (dir, file) = if target.is_dir() {
        (target.clone(), None)
    } else {
        // Watch the directory: editors replace files by rename, which a watch on the file
        // itself would miss.
        (
            target
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
            Some(target.clone()),
        )
    };
    let mode = if file.is_some() {
        RecursiveMode::NonRecursive
    } else {
        RecursiveMode::Recursive
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let relevant = match &file {
            Some(f) => event.paths.iter().any(|p| p == f),
            None => true,
        };
        if relevant {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| io("watching", e))?;
    watcher.watch(&dir, mode).map_err(|e| io("watching", e))?;
    Ok(watcher)
}

/// Runs standalone mode until SIGTERM or SIGINT.
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| DaemonError::Io { what, source }
    };
    // Handlers first: SIGHUP's default action would end the process.
    let mut hup = signal(SignalKind::hangup()).map_err(io("installing the SIGHUP handler"))?;
    let mut term = signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("installing the SIGINT handler"))?;
    let (persisted, report) = state::load(&opts.state_dir)?;
    let mut warnings = Vec::new();
    if let Some((aside, err)) = &report.moved_aside {
        warnings.push(format!("{err}; moved aside to {}", aside.display()));
    }
    if report.used_previous {
        warnings.push("restored from the previous generation (assignments.json.prev)".into());
    }
    for w in &warnings {
        error!("state: {w}");
    }
    let shared = Arc::new(Shared::default());
    shared.set_status(StatusReport {
        node: opts.node_name.clone(),
        config: ConfigStatus {
            path: opts.config.display().to_string(),
            state_warnings: warnings,
            ..Default::default()
        },
        ..Default::default()
    });
    let (admin_addr, serve) = admin::bind(opts.admin_addr, shared.clone())
        .await
        .map_err(io(&format!(
            "binding the admin address {}",
            opts.admin_addr
        )))?;
    let server = tokio::spawn(serve);
    info!(%admin_addr, "admin HTTP listening");

    let mut engine = Engine {
        opts: opts.clone(),
        embedded: Embedded::new(persisted),
        shared: shared.clone(),
        generation: 0,
        peers: Peers::new(opts.bgp_listen_addr),
        l2: start_l2(&opts).await?,
    };
    // Watch before the first load, so an edit made meanwhile is not missed.
    let (tx, mut changes) = mpsc::channel(1);
    let _watcher = watch(&opts.config, tx.clone())?;
    let first = load(&opts.config, &opts.node_name).map_err(DaemonError::Config)?;
    engine.apply(first).await.map_err(DaemonError::Config)?;
    shared.ready.store(true, Ordering::Release);
    shared
        .metrics
        .config_reloads
        .get_or_create(&ResultLabel { result: "success" })
        .inc();
    info!(config = %opts.config.display(), node = %opts.node_name, "standalone speaker running");

    let mut refresh = tokio::time::interval(Duration::from_millis(500));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(()) = changes.recv() => {
                let noticed = Instant::now();
                while tokio::time::timeout(SETTLE, changes.recv()).await.is_ok_and(|m| m.is_some()) {}
                engine.reload(noticed).await;
            }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration");
                engine.reload(Instant::now()).await;
            }
            _ = refresh.tick() => engine.refresh_sessions(),
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }
    // Cease to every peer (RFC 8203 text), so routers withdraw at once rather than after
    // the hold time.
    if let Some(agent) = &engine.l2 {
        // Stop answering and tell the others at once, so they take over without waiting
        // for failure detection.
        agent.leave();
    }
    engine.peers.shutdown("herald-speaker shutting down").await;
    server.abort();
    Ok(())
}
