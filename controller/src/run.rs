//! Wiring: reflectors, the Service controller, pool changes, leader election.
//!
//! ```text
//!  watch Services ──reflector──> store ──touched──> Controller ──> reconcile ──> writes
//!        │                                              ^   │ ObjectNotFound (deleted)
//!        │                                              │   └──> on_deleted (release)
//!  watch IPPools ──reflector──> store ──any change──> on_pools_changed ──re-queue──┘
//!  watch Namespaces ──reflector──> store (labels for allocateTo)
//!  watch BGPPeers, BGPAdvertisements, L2Advertisements, BFDProfiles ──> stores
//!        └─ any change (and pool changes) ──> objects::status_writer ──> Valid conditions
//!  reconcile ──pools touched──> status writer ──every 200 ms at most──> IPPool status
//!  watch HeraldNodes ──> store ──> announced::writer ──> Services' herald.dev/Announced,
//!        BGPPeers' sessions (leader only, on change or every second)
//!  Elector (Lease) ──leading: watch<bool>──> leadership task:
//!        gain: restore_all, then lead, then reconcile every Service
//!        loss: stop writing, forget every assignment
//! ```
//!
//! Every replica watches and keeps caches; only the leader's reconciles write. All tasks
//! are owned by [`run`] and end with it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herald_api::pool::IPPool;
use herald_api::{BFDProfile, BGPAdvertisement, BGPPeer, L2Advertisement};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::context::{ConfigStores, Context, Settings, Stores};
use crate::election::{Elector, Timing};
use crate::metrics::Metrics;
use crate::pools::{on_pools_changed, status_writer};
use crate::reconcile::{error_policy, on_deleted, reconcile, sweep};
use crate::restore::restore_all;
use herald_ipam::ServiceKey;

/// Where the Lease lives.
#[derive(Debug, Clone)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// Timing.
    pub timing: Timing,
}

/// How often Services gone from the cache are swept out of the allocator.
const SWEEP_PERIOD: Duration = Duration::from_secs(60);

/// Runs the controller until `shutdown` is set. `ready` is set once this replica's caches
/// are filled when it runs an election, and once it allocates (restored, leading) without.
pub async fn run(
    client: Client,
    settings: Settings,
    election: Option<Election>,
    metrics: Arc<Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (pools, pool_writer) = reflector::store::<IPPool>();
    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let (services, svc_writer) = reflector::store::<Service>();
    let (peers, peer_writer) = reflector::store::<BGPPeer>();
    let (bgp_advs, bgp_writer) = reflector::store::<BGPAdvertisement>();
    let (l2_advs, l2_writer) = reflector::store::<L2Advertisement>();
    let (profiles, profile_writer) = reflector::store::<BFDProfile>();
    let stores = Stores {
        pools: pools.clone(),
        namespaces: namespaces.clone(),
        services: services.clone(),
        config: ConfigStores {
            peers,
            bgp_advertisements: bgp_advs,
            l2_advertisements: l2_advs,
            bfd_profiles: profiles,
        },
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings.clone(),
        stores,
        metrics,
    ));

    // Whether each cache has been filled once. Not `Store::wait_until_ready`: kube-runtime's
    // readiness is a oneshot that wakes only the last task to poll it, and the Controller
    // polls the Service store's on every event, so a second waiter (the leadership task)
    // could wait forever: the controller never led and /readyz stayed 503 (issue 12).
    let (pools_synced_tx, pools_synced) = watch::channel(false);
    let (ns_synced_tx, ns_synced) = watch::channel(false);
    let (svc_synced_tx, svc_synced) = watch::channel(false);

    let (requeue_tx, requeue_rx) = mpsc::unbounded_channel::<ObjectRef<Service>>();
    let (all_tx, all_rx) = mpsc::unbounded_channel::<()>();

    // Pools: every change goes to the allocator and re-queues the Services it affects.
    let pool_task = {
        let ctx = ctx.clone();
        let requeue = requeue_tx.clone();
        let stream = reflector::reflector(
            pool_writer,
            watcher(
                Api::<IPPool>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .inspect(mark_synced(pools_synced_tx));
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "ippool watch");
                        continue;
                    }
                }
                // Advertisements name pools: their conditions may change too.
                ctx.mark_config_dirty();
                for r in on_pools_changed(&ctx).await {
                    let _ = requeue.send(r);
                }
            }
        })
    };
    // Namespaces: a label change may change which pools a namespace's Services may use.
    let ns_task = {
        let services = services.clone();
        let requeue = requeue_tx.clone();
        let stream = reflector::reflector(
            ns_writer,
            watcher(
                Api::<Namespace>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .inspect(mark_synced(ns_synced_tx))
        .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ns) = stream.next().await {
                let Ok(ns) = ns else { continue };
                let name = ns.metadata.name.unwrap_or_default();
                for svc in services.state() {
                    if svc.metadata.namespace.as_deref() == Some(name.as_str()) {
                        let _ = requeue.send(ObjectRef::from_obj(&*svc));
                    }
                }
            }
        })
    };

    // Leadership: restore before lead; reconcile everything after.
    let (leading_tx, mut leading_rx) = watch::channel(election.is_none());
    let with_election = election.is_some();
    let elector_task = election.map(|e| {
        let elector = Elector::new(
            Api::namespaced(client.clone(), &e.namespace),
            &e.name,
            &settings.instance,
            e.timing,
        );
        tokio::spawn(elector.run(leading_tx.clone(), shutdown.clone()))
    });
    let leader_task = {
        let ctx = ctx.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            // Namespace labels decide pool admission: restore only with them known.
            for (what, mut synced) in [
                ("namespaces", ns_synced),
                ("pools", pools_synced),
                ("services", svc_synced),
            ] {
                let _ = synced.wait_for(|s| *s).await;
                debug!(cache = what, "filled");
            }
            // With election, a follower with filled caches is a hot standby and ready (a
            // rollout must not wait for leadership); without, ready means allocating.
            if with_election {
                ready.store(true, std::sync::atomic::Ordering::Release);
            }
            loop {
                if *leading_rx.borrow_and_update() {
                    loop {
                        match restore_all(&ctx).await {
                            Ok(r) => {
                                info!(services = r.services, conflicts = r.conflicts, "leading");
                                break;
                            }
                            Err(e) => {
                                warn!(error = %e, "restore failed; retrying");
                                tokio::time::sleep(Duration::from_secs(2)).await;
                                if !*leading_rx.borrow() {
                                    break;
                                }
                            }
                        }
                    }
                    if *leading_rx.borrow() {
                        ctx.set_leader(true);
                        // The conditions a previous leader wrote are checked again, and
                        // every pool's status (one invalid or overlapping at start would
                        // otherwise show nothing until a Service touched it).
                        ctx.mark_config_dirty();
                        let pools: Vec<String> = ctx
                            .stores
                            .pools
                            .state()
                            .iter()
                            .map(|p| kube::ResourceExt::name_any(p.as_ref()))
                            .collect();
                        ctx.mark_pools_dirty(&pools);
                        ready.store(true, std::sync::atomic::Ordering::Release);
                        let _ = all_tx.send(());
                    }
                } else {
                    ctx.set_leader(false);
                }
                if leading_rx.changed().await.is_err() {
                    return;
                }
            }
        })
    };
    let status_task = tokio::spawn(status_writer(ctx.clone()));
    let nodes_changed = Arc::new(tokio::sync::Notify::new());
    let (herald_nodes, nodes_task) = crate::announced::watch_nodes(&client, nodes_changed.clone());
    let announced_task = tokio::spawn(crate::announced::writer(
        ctx.clone(),
        herald_nodes,
        nodes_changed,
    ));
    let config_tasks = [
        watch_config(&client, peer_writer, ctx.clone()),
        watch_config(&client, bgp_writer, ctx.clone()),
        watch_config(&client, l2_writer, ctx.clone()),
        watch_config(&client, profile_writer, ctx.clone()),
        tokio::spawn(crate::objects::status_writer(ctx.clone())),
    ];
    let sweep_task = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_PERIOD);
            loop {
                tick.tick().await;
                if ctx.is_leader() {
                    let n = sweep(&ctx).await;
                    if n > 0 {
                        info!(released = n, "released services deleted while unwatched");
                    }
                }
            }
        })
    };

    let svc_stream = reflector::reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .inspect(mark_synced(svc_synced_tx))
    .touched_objects();
    let mut shutdown_signal = shutdown.clone();
    let controller = Controller::for_stream(svc_stream, services.clone())
        .reconcile_on(tokio_stream_of(requeue_rx))
        .reconcile_all_on(tokio_stream_of(all_rx))
        .graceful_shutdown_on(async move {
            let _ = shutdown_signal.wait_for(|s| *s).await;
        })
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                match result {
                    Ok(_) => {}
                    Err(controller::Error::ObjectNotFound(r)) => {
                        let key = ServiceKey::new(
                            r.namespace.clone().unwrap_or_default(),
                            r.name.clone(),
                        );
                        on_deleted(key, &ctx).await;
                    }
                    Err(e) => warn!(error = %e, "controller"),
                }
            }
        });
    controller.await;
    info!("controller stopped");
    for task in [
        pool_task,
        ns_task,
        leader_task,
        sweep_task,
        status_task,
        nodes_task,
        announced_task,
    ]
    .into_iter()
    .chain(config_tasks)
    {
        task.abort();
    }
    if let Some(task) = elector_task {
        // It releases the Lease once shutdown is set.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
}

/// Watches one configuration kind into its store; every change (and the end of the initial
/// list) marks the conditions for a check. What the controller never reads is dropped from
/// the cache, as the speaker does: `managedFields` and kubectl's last-applied copy.
fn watch_config<K>(
    client: &Client,
    writer: reflector::store::Writer<K>,
    ctx: Arc<Context>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let stream = reflector::reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()).modify(|o: &mut K| {
            let meta = o.meta_mut();
            meta.managed_fields = None;
            if let Some(a) = meta.annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        }),
    )
    .default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => ctx.mark_config_dirty(),
                Err(e) => warn!(kind = %K::kind(&()), error = %e, "watch"),
            }
        }
    })
}

/// A stream inspector that sets `synced` once the watcher has delivered its first complete
/// list (the reflector has applied it to the store by then).
fn mark_synced<K>(
    synced: watch::Sender<bool>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            synced.send_if_modified(|s| !std::mem::replace(s, true));
        }
    }
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
