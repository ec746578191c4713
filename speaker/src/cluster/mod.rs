//! Cluster mode (`herald-speaker --node-name NAME`): the API server is the source. The
//! controller allocates; this node reads the addresses from the Services' status and drives
//! the same [`crate::engine`] as standalone mode.
//!
//! ```text
//!  watch Services, EndpointSlices, Nodes, IPPools, BGPPeers, BGPAdvertisements,
//!        L2Advertisements, BFDProfiles, Secrets (--secrets-namespace)
//!     │ reflectors ──> stores (Services, EndpointSlices: their facts, read once per
//!     │   change) ──all listed──> Engine::start (gossip seeds from the Nodes)
//!     └─ any change ──> changed (mpsc, capacity 1) ──settle 20 ms──> translate (pure)
//!           + facts tables -> granted addresses, announce input
//!           -> Snapshot::new -> Engine::check -> Engine::apply_services ──> BGP / L2 / /status
//!  refresh tick (500 ms) ──> Engine::refresh
//!  after each apply and tick: report (pure) ──changed?──> Events (publisher task)
//!  every second: /status ──node_status (pure)──changed?──> this node's HeraldNode
//!  shutdown (watch<bool>) ──> Engine::shutdown (Cease to every peer, L2 leave)
//! ```
//!
//! An object this node cannot use (an invalid field, a missing `BFDProfile`, no router ID
//! to derive) does not stop the snapshot: it is left out, or its last valid version stays
//! in force ([`isolate`]); it is logged, listed under `config.leftOut` in `/status`, counted
//! in `herald_config_objects_left_out`, and reported once by a Warning Event on the object
//! (again only when its error changes). `/readyz` turns true once every store has its
//! initial list and a snapshot has been applied.
//!
//! Per Service, the node reports how it announces it with Events on the Service (reason
//! `Announced` / `Withdrawn`, note "announced by node X via BGP to 2 peers"), only when that
//! changes. The speaker writes no Service status (each of N speakers would own a piece of
//! the same Service); it writes its own `HeraldNode` ([`node_object`]), at most once a
//! second and only on change, and the controller turns those into the Services'
//! `herald.dev/Announced` condition.

pub mod events;
pub mod facts;
pub mod isolate;
pub mod node_object;
pub mod report;
pub mod translate;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kube::Client;
use thiserror::Error;
use tokio::sync::{mpsc, watch as signal};
use tracing::{error, info};

use self::events::Publisher;
use self::report::{Announcement, announcements, changes};
use self::translate::{gossip_seeds, translate};
use self::watch::Stores;
use crate::admin::Shared;
use crate::announce::{self, BackendMode, Desired};
use crate::dataplane::driver::DataplaneOptions;
use crate::engine::{Assigned, Engine, EngineError, EngineOptions, ExitMode, GossipOptions};
use crate::metrics::ResultLabel;
use crate::peers::HostFacts;
use crate::status::{AnnouncementStatus, ConfigStatus, ServiceStatus, StatusReport};

/// How long the API must be quiet before a snapshot is taken: one rollout changes many
/// EndpointSlices in a burst; one snapshot after it is enough. A burst's events arrive a
/// few milliseconds apart (the API server sends them as it stores them); 20 ms covers them
/// and is what a lone change waits (it was 50: a third of the 10 000-Service latency).
pub const SETTLE: Duration = Duration::from_millis(20);
/// The longest a stream of changes delays a snapshot.
pub const SETTLE_MAX: Duration = Duration::from_millis(500);
/// How often session state is copied to `/status` and the announcement report refreshed.
const REFRESH: Duration = Duration::from_millis(500);

/// What cluster mode was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--node-name`: this node's Node object.
    pub node_name: String,
    /// `--lb-class`, `--lb-class-exclusive`: the Services announced (the controller's).
    pub lb_class: herald_ipam::convert::LbClass,
    /// `--secrets-namespace`: where `BGPPeer.passwordSecret` Secrets are read.
    pub secrets_namespace: String,
    /// `--bgp-listen-addr`.
    pub bgp_listen_addr: SocketAddr,
    /// Layer-2 mode's gossip among speakers; `None`: layer 2 is off. Without `peers`, the
    /// other Nodes' InternalIPs at the bind port ([`translate::gossip_seeds`]).
    pub gossip: Option<GossipOptions>,
    /// `--xdp-*`, `--decap*`, `--bpf-pin-dir`.
    pub dataplane: DataplaneOptions,
    /// `--on-exit`: what SIGTERM does to routes and forwarding.
    pub on_exit: ExitMode,
}

/// Why cluster mode could not start.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The engine (layer-2 agent) could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The snapshot in force.
struct Current {
    assigned: Assigned,
    desired: Desired,
    /// The managed Services as announce reads them (kept for the report on each tick).
    services: Vec<announce::Service>,
}

/// The loop's state: owns the engine.
struct Speaker {
    opts: Options,
    shared: Arc<Shared>,
    engine: Engine,
    stores: Stores,
    events: Publisher,
    current: Option<Current>,
    announced: BTreeMap<String, Announcement>,
    /// Objects left out of the last snapshot (their error texts), already reported.
    left_out: BTreeSet<String>,
    /// The last valid version of each object.
    last_good: isolate::LastGood,
    generation: u64,
    /// The owner of this node's `HeraldNode` (its Node's UID), for [`node_object`].
    owner: signal::Sender<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
}

impl Speaker {
    /// Takes a snapshot of the stores and applies it, without the objects that cannot be
    /// used (each reported once, see [`isolate`]).
    async fn apply(&mut self, noticed: Instant) {
        // The snapshot in force is freed before the next is built, not after: with 10 000
        // Services, holding both doubled the peak (and glibc keeps a peak's pages).
        // Nothing below reads it; `report` on the next tick reads the new one.
        if let Some(previous) = self.current.take() {
            tokio::task::spawn_blocking(move || drop(previous));
        }
        let t = translate(
            self.stores.objects(),
            &self.stores.secrets(),
            &self.opts.secrets_namespace,
        );
        let (assigned, services) = self.stores.services(&t.pools);
        // This node's identity (router ID annotation, ASN label, InternalIPs) from its Node.
        let this_node = t
            .objects
            .nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.opts.node_name.as_str()));
        let host = HostFacts::read(this_node);
        let owner = this_node
            .and_then(|n| n.metadata.uid.as_deref())
            .map(|uid| node_object::owner(&self.opts.node_name, uid));
        self.owner.send_if_modified(|o| {
            let changed = *o != owner;
            *o = owner;
            changed
        });
        let (snapshot, object_errors) = isolate::snapshot(
            t.objects,
            &self.opts.node_name,
            self.engine.has_l2(),
            &host,
            &mut self.last_good,
        );
        let left: Vec<(&'static str, String, String)> = t
            .peer_errors
            .iter()
            .map(|e| ("BGPPeer", e.peer.clone(), e.to_string()))
            .chain(
                object_errors
                    .iter()
                    .map(|e| (e.error.kind, e.error.name.clone(), e.to_string())),
            )
            .collect();
        self.report_left_out(&left);
        let left_out: Vec<String> = left.into_iter().map(|(_, _, text)| text).collect();
        let m = &self.shared.metrics;
        m.config_left_out.set(left_out.len() as i64);
        let (desired, services) = self.engine.apply_services(&snapshot, services).await;
        self.generation += 1;
        m.config_reloads
            .get_or_create(&ResultLabel { result: "success" })
            .inc();
        m.change_to_announce_seconds
            .observe(noticed.elapsed().as_secs_f64());
        m.services_assigned.set(assigned.len() as i64);
        let generation = self.generation;
        self.shared.update_status(|s| {
            s.config.generation = generation;
            s.config.last_error = None;
            s.config.left_out = left_out;
            s.services = Vec::new(); // freed before the new rows are built
            s.services = services_status(&assigned);
        });
        info!(
            generation,
            services = assigned.len(),
            routes = desired.bgp.values().map(|r| r.len()).sum::<usize>(),
            "snapshot applied"
        );
        self.current = Some(Current {
            services,
            assigned,
            desired,
        });
        self.shared.ready.store(true, Ordering::Release);
        self.report();
        // What building it freed (the last snapshot, the initial lists' pages) goes back.
        tokio::task::spawn_blocking(crate::memory::release_free_pages);
    }

    /// Logs and publishes a Warning Event for each object newly left out. An object left out
    /// for the same reason as in the last snapshot is not reported again: every change of
    /// any object makes a snapshot, and each of N nodes would otherwise add an Event per
    /// change for as long as the object stays broken. Fixed, then broken again: reported
    /// again. The Events go through the paced [`Publisher`].
    fn report_left_out(&mut self, left: &[(&'static str, String, String)]) {
        let mut now = BTreeSet::new();
        for (kind, name, text) in left {
            if !self.left_out.contains(text) {
                error!(kind, name = %name, error = %text, "object left out of the snapshot");
                if let Some(regarding) = self.stores.object_ref(kind, name) {
                    let reason = if *kind == "BGPPeer" {
                        "PeerNotStarted"
                    } else {
                        "NotApplied"
                    };
                    self.events.publish(regarding, reason, true, text.clone());
                }
            }
            now.insert(text.clone());
        }
        for gone in self.left_out.difference(&now) {
            info!(error = %gone, "no longer left out");
        }
        self.left_out = now;
    }

    /// Recomputes how each Service is announced; publishes Events for the changes.
    fn report(&mut self) {
        let Some(cur) = &self.current else { return };
        let node = &self.opts.node_name;
        let now = announcements(
            node,
            &cur.assigned,
            &cur.services,
            &cur.desired,
            self.engine.drain_phase() == crate::drain::Phase::Drained,
            &self.engine.unsendable_families(),
            &self.engine.bgp_statuses(),
            &self.engine.l2_owned(),
        );
        if now == self.announced {
            return;
        }
        let changed = changes(node, &self.announced, &now);
        for (key, notice) in changed {
            // A Service deleted meanwhile gets no Event.
            let Some(regarding) = self.stores.service_ref(&key) else {
                continue;
            };
            info!(service = %key, reason = notice.reason, "{}", notice.note);
            self.events
                .publish(regarding, notice.reason, notice.warning, notice.note);
        }
        let rows = now
            .iter()
            .map(|(k, a)| AnnouncementStatus {
                service: k.clone(),
                announcement: a.describe(node),
            })
            .collect();
        self.shared.update_status(|s| s.announcements = rows);
        self.announced = now;
    }
}

/// `/status`'s Service rows: each Service with an address, and the pool of each.
fn services_status(assigned: &Assigned) -> Vec<ServiceStatus> {
    assigned
        .iter()
        .map(|(k, addrs)| ServiceStatus {
            service: k.clone(),
            addresses: addrs.iter().map(|(a, _)| a.to_string()).collect(),
            pools: addrs.iter().map(|(_, p)| p.clone()).collect(),
            error: None,
            moved_from: Vec::new(),
        })
        .collect()
}

/// Waits until no change arrived for [`SETTLE`], at most [`SETTLE_MAX`].
async fn settle(changed: &mut mpsc::Receiver<()>) {
    let deadline = tokio::time::Instant::now() + SETTLE_MAX;
    loop {
        let quiet = tokio::time::timeout(SETTLE, changed.recv());
        match tokio::time::timeout_at(deadline, quiet).await {
            Ok(Ok(Some(()))) => continue,
            _ => return,
        }
    }
}

/// Runs cluster mode until `shutdown` turns true. `shared` is what the admin server reads;
/// its `ready` flag is set once the caches are filled and the first snapshot applied.
pub async fn run(
    client: Client,
    opts: Options,
    shared: Arc<Shared>,
    mut shutdown: signal::Receiver<bool>,
) -> Result<(), ClusterError> {
    shared.set_status(StatusReport {
        node: opts.node_name.clone(),
        config: ConfigStatus {
            path: "kubernetes".to_owned(),
            ..Default::default()
        },
        ..Default::default()
    });
    let (changed_tx, mut changed) = mpsc::channel(1);
    let stores = Stores::watch(&client, &opts.secrets_namespace, &opts.lb_class, changed_tx);
    tokio::select! {
        () = stores.ready() => {}
        () = stopping(&mut shutdown) => return Ok(()),
    }
    let mut gossip = opts.gossip.clone();
    if let Some(g) = gossip.as_mut().filter(|g| g.peers.is_empty()) {
        // The Nodes known at start; a node that starts later joins through these, and the
        // gossip itself spreads membership from then on.
        g.peers = gossip_seeds(&stores.objects().nodes, &opts.node_name, g.bind);
        info!(
            seeds = g.peers.len(),
            "layer-2 gossip seeds from the Nodes' InternalIPs"
        );
    }
    let engine = Engine::start(
        EngineOptions {
            node_name: opts.node_name.clone(),
            bgp_listen_addr: opts.bgp_listen_addr,
            gossip,
            // DESIGN §6: in a cluster the backends are the nodes with ready endpoints.
            backend_mode: BackendMode::Nodes,
            unlisted_node_ready: false,
            dataplane: opts.dataplane.clone(),
            on_exit: opts.on_exit,
        },
        shared.clone(),
    )
    .await?;
    let (owner, owner_rx) = signal::channel(None);
    let _node_writer =
        node_object::NodeWriter::spawn(client.clone(), &opts.node_name, shared.clone(), owner_rx);
    let mut speaker = Speaker {
        owner,
        events: Publisher::spawn(client, &opts.node_name),
        opts,
        shared: shared.clone(),
        engine,
        stores,
        current: None,
        announced: BTreeMap::new(),
        left_out: BTreeSet::new(),
        last_good: Default::default(),
        generation: 0,
    };
    // The initial lists' changes are all in the first snapshot.
    while changed.try_recv().is_ok() {}
    speaker.apply(Instant::now()).await;
    info!(node = %speaker.opts.node_name, "cluster speaker running");

    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain = shared.drain.subscribe();
    loop {
        tokio::select! {
            Ok(()) = drain.changed() => {
                let wait = *drain.borrow_and_update();
                speaker.engine.set_drain_command(wait);
            }
            () = crate::drain::until(speaker.engine.drain_deadline()) => speaker.engine.drain_tick(),
            Some(()) = changed.recv() => {
                let noticed = Instant::now();
                settle(&mut changed).await;
                speaker.apply(noticed).await;
            }
            _ = refresh.tick() => {
                speaker.engine.refresh();
                speaker.report();
            }
            () = stopping(&mut shutdown) => break,
        }
    }
    info!("shutting down");
    // As --on-exit says: a restart keeps the routes (graceful restart) and forwarding, a
    // withdraw sends a Cease; the layer-2 agent leaves so the others take over at once.
    speaker
        .engine
        .shutdown("herald-speaker shutting down")
        .await;
    speaker.events.close().await;
    Ok(())
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopping(shutdown: &mut signal::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
#[cfg(test)]
mod tests;
