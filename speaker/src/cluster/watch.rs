//! The reflectors: one watch per kind, each filling a store and signalling every change.

use std::fmt::Debug;

use futures_util::StreamExt;
use herald_api::standalone::StandaloneConfig;
use herald_api::{BFDProfile, BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// The caches, and the watch tasks that fill them (aborted on drop).
pub(super) struct Stores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
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
        changed: mpsc::Sender<()>,
    ) -> Self {
        let mut tasks = Vec::new();
        let c = || client.clone();
        let tx = || changed.clone();
        Stores {
            services: reflect(Api::all(c()), tx(), &mut tasks),
            slices: reflect(Api::all(c()), tx(), &mut tasks),
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
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.pools.wait_until_ready().await;
        let _ = self.peers.wait_until_ready().await;
        let _ = self.bgp_advertisements.wait_until_ready().await;
        let _ = self.l2_advertisements.wait_until_ready().await;
        let _ = self.bfd_profiles.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
    }

    /// The cached objects (every Service; the translation picks the managed ones).
    pub(super) fn objects(&self) -> StandaloneConfig {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let mut c = StandaloneConfig {
            ip_pools: all(&self.pools),
            bgp_peers: all(&self.peers),
            bgp_advertisements: all(&self.bgp_advertisements),
            l2_advertisements: all(&self.l2_advertisements),
            bfd_profiles: all(&self.bfd_profiles),
            services: self.services.state(),
            endpoint_slices: self.slices.state(),
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
        c.services.sort_by(|a, b| cmp(&a.metadata, &b.metadata));
        c.endpoint_slices
            .sort_by(|a, b| cmp(&a.metadata, &b.metadata));
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
