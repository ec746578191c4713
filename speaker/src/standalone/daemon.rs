//! `herald-speaker standalone`: the long-running loop. The per-node machinery it drives is
//! [`crate::engine`]; this module adds the file source, the embedded allocator and its state.
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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_api::standalone;
use notify::{RecursiveMode, Watcher};
use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::allocate::{Embedded, Outcome};
use super::state;
use crate::admin::{self, Shared};
use crate::announce::{BackendMode, Desired};
use crate::dataplane::driver::DataplaneOptions;
pub use crate::engine::GossipOptions;
use crate::engine::{Assigned, Engine, EngineOptions, ExitMode, Snapshot};
use crate::metrics::{PoolLabels, ResultLabel};
use crate::status::{ConfigStatus, PoolStatus, ServiceStatus, StatusReport};

/// How long to wait for more file events before reloading: a file written in place comes
/// in several events (truncate, writes); one reload after the burst is enough. A file that
/// is known complete ([`file_event`]) is read at once.
const SETTLE: Duration = Duration::from_millis(15);

/// What a file event says of the configuration: `None`, nothing (a read); `Some(true)`, the
/// file is complete now: renamed into place (rename is atomic: editors and config management
/// write a temporary file and rename it) or closed after writing; `Some(false)`, a change
/// that more events may follow (created, truncated, written to, removed, renamed away).
///
/// A rename's `Both` event is `None`: inotify reports each rename as `From` and `To` first,
/// so a `Both` would reload the file a second time (and count a second generation).
fn file_event(kind: &notify::EventKind) -> Option<bool> {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(true),
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => None,
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(true),
        _ => Some(false),
    }
}

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
    /// `--xdp-*`, `--decap*`, `--bpf-pin-dir`.
    pub dataplane: DataplaneOptions,
    /// `--on-exit`: what SIGTERM does to routes and forwarding.
    pub on_exit: ExitMode,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration at start-up is invalid (there is no previous one to keep).
    #[error("configuration refused:\n{0}")]
    Config(String),
    /// Layer 2 or the dataplane could not start.
    #[error(transparent)]
    Engine(crate::engine::EngineError),
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

fn load(path: &Path, node_name: &str) -> Result<Snapshot, String> {
    let config = standalone::load(path).map_err(|e| e.to_string())?;
    Snapshot::new(config, node_name)
}

/// The granted addresses of an allocation outcome, as the engine takes them.
fn granted(outcome: &Outcome) -> Assigned {
    outcome
        .assigned
        .iter()
        .map(|(k, addrs)| {
            let granted = addrs
                .iter()
                .filter_map(|(a, p)| Some((*a, p.clone()?)))
                .collect();
            (k.clone(), granted)
        })
        .collect()
}

/// Writes the outcome's rows to `/status` with `generation`, in one update: a reader that
/// sees the new Services also sees the generation that brought them.
fn publish(shared: &Shared, outcome: &Outcome, generation: u64) {
    let m = &shared.metrics;
    let errors: BTreeMap<String, String> = outcome
        .errors
        .iter()
        .map(|e| (e.service.to_string(), e.reason.to_string()))
        .collect();
    let moved: BTreeMap<&str, Vec<String>> = outcome
        .moved
        .iter()
        .map(|m| {
            let from = m.from.iter().map(ToString::to_string).collect();
            (m.service.as_str(), from)
        })
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
            moved_from: moved.get(k.as_str()).cloned().unwrap_or_default(),
        })
        .collect();
    for (k, e) in &errors {
        if !outcome.assigned.contains_key(k) {
            services.push(ServiceStatus {
                service: k.clone(),
                error: Some(e.clone()),
                moved_from: moved.get(k.as_str()).cloned().unwrap_or_default(),
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
    shared.update_status(|s| {
        s.services = services;
        s.pools = pools;
        s.config.generation = generation;
        s.config.last_error = None;
    });
}

/// The reload half of the loop: owns the allocator and applies snapshots to the engine.
struct Reloader {
    opts: Options,
    embedded: Embedded,
    shared: Arc<Shared>,
    generation: u64,
    engine: Engine,
}

impl Reloader {
    /// Applies `snapshot`; `Err` leaves everything as it was.
    async fn apply(&mut self, snapshot: Snapshot) -> Result<Desired, String> {
        self.engine.check(&snapshot)?;
        let outcome = self.embedded.apply(&snapshot.objects).map_err(|errs| {
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        if let Err(e) = state::save(&self.opts.state_dir, &outcome.state) {
            // The allocation stands (it is a function of the config); only the report of
            // moves after the next restart compares against an older file.
            error!(error = %e, "could not persist assignments");
        }
        for m in &outcome.moved {
            let show = |a: &[std::net::IpAddr]| {
                a.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            warn!(
                service = %m.service,
                from = %show(&m.from),
                to = %show(&m.to),
                "service address moved (placement follows the configuration)"
            );
        }
        for e in &outcome.errors {
            warn!(service = %e.service, reason = %e.reason, "service not fully assigned");
        }
        let (desired, _) = self.engine.apply(&snapshot, &granted(&outcome)).await;
        self.generation += 1;
        publish(&self.shared, &outcome, self.generation);
        Ok(desired)
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

/// Watches the config path; each relevant event sends whether it left the file complete
/// ([`file_event`]; a full channel drops it: the events queued already cause a reload).
fn watch(path: &Path, tx: mpsc::Sender<bool>) -> Result<notify::RecommendedWatcher, DaemonError> {
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
        let Some(complete) = file_event(&event.kind) else {
            return;
        };
        let relevant = match &file {
            Some(f) => event.paths.iter().any(|p| p == f),
            None => true,
        };
        if relevant {
            let _ = tx.try_send(complete);
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

    let engine = Engine::start(
        EngineOptions {
            node_name: opts.node_name.clone(),
            bgp_listen_addr: opts.bgp_listen_addr,
            gossip: opts.gossip.clone(),
            backend_mode: BackendMode::EndpointHosts,
            dataplane: opts.dataplane.clone(),
            unlisted_node_ready: true,
            on_exit: opts.on_exit,
        },
        shared.clone(),
    )
    .await
    .map_err(DaemonError::Engine)?;
    let mut engine = Reloader {
        opts: opts.clone(),
        embedded: Embedded::new(persisted),
        shared: shared.clone(),
        generation: 0,
        engine,
    };
    // Watch before the first load, so an edit made meanwhile is not missed.
    let (tx, mut changes) = mpsc::channel(16);
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
    let mut drain = shared.drain.subscribe();
    loop {
        tokio::select! {
            Ok(()) = drain.changed() => {
                let wait = *drain.borrow_and_update();
                engine.engine.set_drain_command(wait);
            }
            () = crate::drain::until(engine.engine.drain_deadline()) => engine.engine.drain_tick(),
            Some(mut complete) = changes.recv() => {
                let noticed = Instant::now();
                // Until the file is complete, or quiet for SETTLE.
                while !complete {
                    match tokio::time::timeout(SETTLE, changes.recv()).await {
                        Ok(Some(c)) => complete = c,
                        _ => break,
                    }
                }
                while changes.try_recv().is_ok() {}
                engine.reload(noticed).await;
            }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration");
                engine.reload(Instant::now()).await;
            }
            _ = refresh.tick() => engine.engine.refresh(),
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }
    // As --on-exit says: a restart keeps the routes (graceful restart) and forwarding, a
    // withdraw sends a Cease; the layer-2 agent leaves so the others take over at once.
    engine.engine.shutdown("herald-speaker shutting down").await;
    server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RemoveKind,
        RenameMode,
    };

    use super::file_event;

    #[test]
    fn a_rename_into_place_or_a_close_after_writing_completes_the_file_other_changes_settle() {
        let table = [
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                Some(true),
            ),
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), None),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                Some(true),
            ),
            (EventKind::Access(AccessKind::Close(AccessMode::Read)), None),
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), None),
            (EventKind::Create(CreateKind::File), Some(false)),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                Some(false),
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                Some(false),
            ),
            (EventKind::Remove(RemoveKind::File), Some(false)),
        ];
        for (kind, want) in table {
            assert_eq!(file_event(&kind), want, "{kind:?}");
        }
    }
}
