//! The reflectors: one watch per kind, each filling a store and signalling every change.
//! Services and EndpointSlices are kept as [`facts`](super::facts), not as objects.

use std::fmt::Debug;
use std::sync::{Arc, PoisonError, RwLock};

use futures_util::StreamExt;
use herald_api::standalone::StandaloneConfig;
use herald_api::{BFDProfile, BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use herald_ipam::convert::LbClass;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch as signal};
use tokio::task::JoinHandle;
use tracing::warn;

use super::facts::{ServiceTable, SliceTable};
use crate::announce;
use crate::engine::Assigned;

/// The caches, and the watch tasks that fill them (aborted on drop).
pub(super) struct Stores {
    services: Table<ServiceTable>,
    slices: Table<SliceTable>,
    nodes: Store<Node>,
    pools: Store<IPPool>,
    peers: Store<BGPPeer>,
    bgp_advertisements: Store<BGPAdvertisement>,
    l2_advertisements: Store<L2Advertisement>,
    bfd_profiles: Store<BFDProfile>,
    secrets: Store<Secret>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Stores {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a reflector on `api`; every change after the initial list (and the end of that
/// list) sends `()` on `changed` (coalesced: the channel holds one).
fn reflect<K>(api: Api<K>, changed: mpsc::Sender<()>, tasks: &mut Vec<JoinHandle<()>>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(slim::<K>),
    )
    .default_backoff();
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => {
                    let _ = changed.try_send(());
                }
                Err(e) => warn!(kind = %K::kind(&()), error = %e, "watch"),
            }
        }
    }));
    store
}

/// A table a watch keeps up to date, and whether it has its initial list.
struct Table<T> {
    live: Arc<RwLock<T>>,
    ready: signal::Receiver<bool>,
}

impl<T> Table<T> {
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        // A writer that panicked left a table that is still whole: each change is one call.
        f(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }

    async fn wait_until_ready(&self) {
        let _ = self.ready.clone().wait_for(|r| *r).await;
    }
}

/// Starts a watch on `api` keeping a `T` with `apply` and `delete`, signalling changes as
/// [`reflect`] does. The initial list (and each relist, after a `410 Gone`) fills a new
/// table that replaces the live one when the list is complete, so objects deleted while the
/// watch was down are gone and a half-read list is never in force.
fn keep<K, T>(
    api: Api<K>,
    apply: impl Fn(&mut T, &K) + Send + 'static,
    delete: impl Fn(&mut T, &K) + Send + 'static,
    changed: mpsc::Sender<()>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Table<T>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Default + Send + Sync + 'static,
{
    let live = Arc::new(RwLock::new(T::default()));
    let (ready_tx, ready) = signal::channel(false);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let table = live.clone();
    tasks.push(tokio::spawn(async move {
        let write = || table.write().unwrap_or_else(PoisonError::into_inner);
        let mut stream = std::pin::pin!(stream);
        let mut listing: Option<T> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listing = Some(T::default()),
                Ok(watcher::Event::InitApply(obj)) => {
                    apply(listing.get_or_insert_with(T::default), &obj);
                }
                Ok(watcher::Event::InitDone) => {
                    *write() = listing.take().unwrap_or_default();
                    ready_tx.send_replace(true);
                    let _ = changed.try_send(());
                }
                Ok(watcher::Event::Apply(obj)) => {
                    apply(&mut write(), &obj);
                    let _ = changed.try_send(());
                }
                Ok(watcher::Event::Delete(obj)) => {
                    delete(&mut write(), &obj);
                    let _ = changed.try_send(());
                }
                Err(e) => warn!(kind = %K::kind(&()), error = %e, "watch"),
            }
        }
    }));
    Table { live, ready }
}

/// Drops what the speaker never reads and a real API server sends with every object:
/// `managedFields` and kubectl's last-applied copy of the whole object. With 10 000
/// Services and as many EndpointSlices they are most of the cache.
fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn all<K>(store: &Store<K>) -> Vec<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

impl Stores {
    /// Watches every kind the speaker reads; Secrets only in `secrets_namespace`.
    pub(super) fn watch(
        client: &Client,
        secrets_namespace: &str,
        lb_class: &LbClass,
        changed: mpsc::Sender<()>,
    ) -> Self {
        let mut tasks = Vec::new();
        let c = || client.clone();
        let tx = || changed.clone();
        let class = lb_class.clone();
        Stores {
            services: keep(
                Api::<Service>::all(c()),
                move |t: &mut ServiceTable, svc| t.apply(svc, &class),
                ServiceTable::delete,
                tx(),
                &mut tasks,
            ),
            slices: keep(
                Api::<EndpointSlice>::all(c()),
                SliceTable::apply,
                SliceTable::delete,
                tx(),
                &mut tasks,
            ),
            nodes: reflect(Api::all(c()), tx(), &mut tasks),
            pools: reflect(Api::all(c()), tx(), &mut tasks),
            peers: reflect(Api::all(c()), tx(), &mut tasks),
            bgp_advertisements: reflect(Api::all(c()), tx(), &mut tasks),
            l2_advertisements: reflect(Api::all(c()), tx(), &mut tasks),
            bfd_profiles: reflect(Api::all(c()), tx(), &mut tasks),
            secrets: reflect(Api::namespaced(c(), secrets_namespace), tx(), &mut tasks),
            tasks,
        }
    }

    /// Resolves once every store has its initial list.
    pub(super) async fn ready(&self) {
        // Sequential is as fast as joined: each wait ends when its own list has arrived.
        self.services.wait_until_ready().await;
        self.slices.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.pools.wait_until_ready().await;
        let _ = self.peers.wait_until_ready().await;
        let _ = self.bgp_advertisements.wait_until_ready().await;
        let _ = self.l2_advertisements.wait_until_ready().await;
        let _ = self.bfd_profiles.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
    }

    /// The granted addresses per Service and announce's input, from the managed Services
    /// and the EndpointSlices as they are now; `pools` from the snapshot's translation.
    pub(super) fn services(
        &self,
        pools: &[(String, Vec<(std::net::IpAddr, std::net::IpAddr)>)],
    ) -> (Assigned, Vec<announce::Service>) {
        self.services.read(|services| {
            let assigned = services.assigned(pools);
            let announce = self
                .slices
                .read(|slices| super::facts::announce_services(services, slices, &assigned));
            (assigned, announce)
        })
    }

    /// The reference of a managed Service (`namespace/name`), for an Event on it.
    pub(super) fn service_ref(&self, key: &str) -> Option<ObjectReference> {
        self.services.read(|t| t.object_ref(key))
    }

    /// The cached objects but Services and EndpointSlices (see [`Stores::services`]).
    pub(super) fn objects(&self) -> StandaloneConfig {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let mut c = StandaloneConfig {
            ip_pools: all(&self.pools),
            bgp_peers: all(&self.peers),
            bgp_advertisements: all(&self.bgp_advertisements),
            l2_advertisements: all(&self.l2_advertisements),
            bfd_profiles: all(&self.bfd_profiles),
            services: Vec::new(),
            endpoint_slices: Vec::new(),
            nodes: all(&self.nodes),
        };
        // Stores iterate in hash order; sorted input gives the same snapshot every time.
        // Compared in place: a sort key would copy two strings per comparison.
        fn cmp(a: &ObjectMeta, b: &ObjectMeta) -> std::cmp::Ordering {
            (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
        }
        c.ip_pools.sort_by(|a, b| cmp(&a.metadata, &b.metadata));
        c.bgp_peers.sort_by(|a, b| cmp(&a.metadata, &b.metadata));
        c.bgp_advertisements
            .sort_by(|a, b| cmp(&a.metadata, &b.metadata));
        c.l2_advertisements
            .sort_by(|a, b| cmp(&a.metadata, &b.metadata));
        c.bfd_profiles.sort_by(|a, b| cmp(&a.metadata, &b.metadata));
        c.nodes.sort_by(|a, b| cmp(&a.metadata, &b.metadata));
        c
    }

    /// The cached Secrets.
    pub(super) fn secrets(&self) -> Vec<Secret> {
        all(&self.secrets)
    }

    /// The reference of a cached herald.dev object by kind and name, for an Event on it.
    pub(super) fn object_ref(&self, kind: &str, name: &str) -> Option<ObjectReference> {
        fn find<K>(store: &Store<K>, name: &str) -> Option<ObjectReference>
        where
            K: Resource<DynamicType = ()> + Clone + 'static,
        {
            store.get(&ObjectRef::new(name)).map(|o| o.object_ref(&()))
        }
        match kind {
            "BGPPeer" => find(&self.peers, name),
            "BGPAdvertisement" => find(&self.bgp_advertisements, name),
            "L2Advertisement" => find(&self.l2_advertisements, name),
            "BFDProfile" => find(&self.bfd_profiles, name),
            "IPPool" => find(&self.pools, name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod slim_tests {
    use super::*;

    #[test]
    fn slim_drops_managed_fields_and_the_last_applied_copy_and_keeps_other_annotations() {
        let mut svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop",
                "annotations": {
                    "herald.dev/allocated-from": "a",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            }
        }))
        .unwrap();
        slim(&mut svc);
        assert!(svc.metadata.managed_fields.is_none());
        let annotations = svc.metadata.annotations.unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["herald.dev/allocated-from"]
        );
    }
}
