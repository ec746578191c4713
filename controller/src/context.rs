//! What every reconciler shares: the client, the allocator, the caches, metrics.
//!
//! Only the [`Context`] owns the client and the metrics. The allocator sits behind a
//! `std::sync::Mutex` that is never held across an `.await`: reconcilers lock, compute,
//! copy the result out, unlock, then write.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use herald_api::pool::{IPPool, IPPoolSpec};
use herald_api::{BFDProfile, BGPAdvertisement, BGPPeer, L2Advertisement};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Notify;
use tracing::warn;

use crate::metrics::Metrics;
use crate::status::Readiness;
use herald_ipam::convert;
use herald_ipam::{Allocator, Error as IpamError, ServiceKey};

/// Settings of the reconcilers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `spec.loadBalancerClass` served (`--lb-class`), and whether class-less Services
    /// are too (`--lb-class-exclusive` unset).
    pub lb_class: convert::LbClass,
    /// This replica's name (Events' reporting instance, the Lease holder identity).
    pub instance: String,
}

/// Caches of the objects the reconcilers read, fed by reflectors.
#[derive(Clone)]
pub struct Stores {
    /// `IPPool`s.
    pub pools: Store<IPPool>,
    /// Namespaces (their labels, for `allocateTo.namespaceSelectors`).
    pub namespaces: Store<Namespace>,
    /// Services (for sweeping deletions missed while disconnected, and re-queues).
    pub services: Store<Service>,
    /// `BGPPeer`s, `BGPAdvertisement`s, `L2Advertisement`s, `BFDProfile`s: checked across
    /// objects for their `Valid` condition ([`crate::objects`]).
    pub config: ConfigStores,
}

/// Caches of the configuration kinds the controller only checks.
#[derive(Clone)]
pub struct ConfigStores {
    /// `BGPPeer`s.
    pub peers: Store<BGPPeer>,
    /// `BGPAdvertisement`s.
    pub bgp_advertisements: Store<BGPAdvertisement>,
    /// `L2Advertisement`s.
    pub l2_advertisements: Store<L2Advertisement>,
    /// `BFDProfile`s.
    pub bfd_profiles: Store<BFDProfile>,
}

/// Pools as last given to the allocator: name -> (spec, readiness). Keyed on the spec, not
/// the resourceVersion: every status write changes the resourceVersion, and treating that as
/// a pool change re-queued every Service of the pool after each allocation (issue 12).
type PoolsSeen = BTreeMap<String, (IPPoolSpec, Readiness)>;

/// Shared state of the reconcilers.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Settings.
    pub settings: Settings,
    /// The caches.
    pub stores: Stores,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    allocator: Mutex<Allocator>,
    /// Pools as last given to the allocator.
    pools_seen: Mutex<Option<PoolsSeen>>,
    /// Services whose last assignment failed, to re-queue when pools change.
    failed: Mutex<BTreeSet<ServiceKey>>,
    /// Services with a conflict already reported by an Event.
    conflicted: Mutex<BTreeSet<ServiceKey>>,
    /// The allocation failure last reported by an Event, per Service.
    failures: Mutex<BTreeMap<ServiceKey, String>>,
    /// Pools whose status may be stale, for the status writer ([`crate::pools`]).
    dirty_pools: Mutex<BTreeSet<String>>,
    /// Woken when a pool is marked dirty.
    pools_dirtied: Notify,
    /// Woken when a configuration object changed ([`crate::objects::status_writer`]).
    config_dirtied: Notify,
    /// Event recorders, one per shard of regarding objects; see [`EVENT_SHARDS`].
    recorders: Vec<Recorder>,
    leader: AtomicBool,
}

/// kube-runtime's `Recorder` keeps every Event it published for 6 minutes (to count
/// repeats as a series) and scans that whole cache under one write lock on every publish:
/// N Events cost N² and run one at a time. A burst of 10 000 allocations spent most of its
/// time there. Sharding by the object an Event is about keeps each series in one recorder
/// and divides both the scan and the lock by the shard count.
pub const EVENT_SHARDS: usize = 64;

impl Context {
    /// A context for `client`. Not leading until [`Context::set_leader`].
    pub fn new(client: Client, settings: Settings, stores: Stores, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: crate::status::FIELD_MANAGER.to_owned(),
            instance: Some(settings.instance.clone()),
        };
        Context {
            recorders: (0..EVENT_SHARDS)
                .map(|_| Recorder::new(client.clone(), reporter.clone()))
                .collect(),
            client,
            settings,
            stores,
            metrics,
            allocator: Mutex::new(Allocator::new()),
            pools_seen: Mutex::new(None),
            failed: Mutex::new(BTreeSet::new()),
            conflicted: Mutex::new(BTreeSet::new()),
            failures: Mutex::new(BTreeMap::new()),
            dirty_pools: Mutex::new(BTreeSet::new()),
            pools_dirtied: Notify::new(),
            config_dirtied: Notify::new(),
            leader: AtomicBool::new(false),
        }
    }

    /// Whether this replica may write.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Sets whether this replica leads. Losing leadership forgets every assignment: the
    /// next leader (maybe this replica again) restores them from the Services.
    pub fn set_leader(&self, leader: bool) {
        let was = self.leader.swap(leader, Ordering::AcqRel);
        if was != leader {
            self.metrics.leader.set(i64::from(leader));
            self.metrics.leader_transitions.inc();
        }
        if !leader {
            *self.allocator() = Allocator::new();
            *self.pools_seen.lock().expect("pools lock poisoned") = None;
            self.failed.lock().expect("failed lock poisoned").clear();
            self.conflicted
                .lock()
                .expect("conflicted lock poisoned")
                .clear();
            self.failures
                .lock()
                .expect("failures lock poisoned")
                .clear();
        }
    }

    /// Marks pools whose status may no longer match the allocator; the status writer
    /// writes them together a moment later.
    pub fn mark_pools_dirty<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        let mut dirty = self.dirty_pools.lock().expect("dirty pools lock poisoned");
        let before = dirty.len();
        dirty.extend(names.into_iter().cloned());
        if dirty.len() > before {
            self.pools_dirtied.notify_one();
        }
    }

    /// Takes the pools marked dirty, sorted.
    pub fn take_dirty_pools(&self) -> Vec<String> {
        std::mem::take(&mut *self.dirty_pools.lock().expect("dirty pools lock poisoned"))
            .into_iter()
            .collect()
    }

    /// Waits until a pool is marked dirty (at once if one was marked since the last wait).
    pub async fn pools_dirtied(&self) {
        self.pools_dirtied.notified().await;
    }

    /// Marks the configuration objects' conditions as possibly stale; the writer checks
    /// every object again a moment later.
    pub fn mark_config_dirty(&self) {
        self.config_dirtied.notify_one();
    }

    /// Waits until a configuration change was marked (at once if one was since the last).
    pub async fn config_dirtied(&self) {
        self.config_dirtied.notified().await;
    }

    /// The allocator. Never hold the guard across an `.await`.
    pub fn allocator(&self) -> MutexGuard<'_, Allocator> {
        self.allocator.lock().expect("allocator lock poisoned")
    }

    /// Hands the pools in the store to the allocator if they changed since the last call.
    /// Returns the names of pools that changed (added, edited, removed), sorted, and the
    /// conflicts that exist afterwards; `None` when nothing changed.
    pub fn sync_pools(&self) -> Option<(Vec<String>, Vec<IpamError>)> {
        let pools = self.stores.pools.state();
        self.sync_pools_from(pools.iter().map(|p| p.as_ref()))
    }

    /// [`Context::sync_pools`] from a given list (the restore path lists pools itself).
    pub fn sync_pools_from<'a>(
        &self,
        pools: impl Iterator<Item = &'a IPPool>,
    ) -> Option<(Vec<String>, Vec<IpamError>)> {
        let mut seen = BTreeMap::new();
        let mut valid = Vec::new();
        let pools: Vec<&IPPool> = pools.collect();
        // A pool sharing addresses with an earlier one is kept out of the allocator: it must
        // not grant the same address under other rules (checks.rs).
        let overlapping = crate::checks::overlapping_pools(&pools);
        for p in pools {
            let name = p.name_any();
            let readiness = match convert::pool(p) {
                Ok(_) if overlapping.contains_key(&name) => {
                    Readiness::Overlapping(overlapping[&name].clone())
                }
                Ok(pool) => {
                    valid.push(pool);
                    Readiness::Ready
                }
                Err(e) => Readiness::Invalid(e.to_string()),
            };
            seen.insert(name, (p.spec.clone(), readiness));
        }
        let mut last = self.pools_seen.lock().expect("pools lock poisoned");
        if last.as_ref() == Some(&seen) {
            return None;
        }
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let before = last.clone().unwrap_or_default();
        for (name, v) in &seen {
            if before.get(name) != Some(v) {
                changed.insert(name.clone());
            }
        }
        changed.extend(before.keys().filter(|n| !seen.contains_key(*n)).cloned());
        let result = self.allocator().set_pools(valid);
        let conflicts = match result {
            Ok(conflicts) => conflicts,
            Err(e) => {
                // Refused whole; the previous pools stay in force. Mark every changed pool.
                warn!(error = %e, "pool configuration refused");
                for name in &changed {
                    if let Some(entry) = seen.get_mut(name) {
                        entry.1 = Readiness::Invalid(e.to_string());
                    }
                }
                self.allocator().conflicts()
            }
        };
        self.metrics.conflicts.set(conflicts.len() as i64);
        *last = Some(seen);
        Some((changed.into_iter().collect(), conflicts))
    }

    /// The readiness of a pool as last synced.
    pub fn pool_readiness(&self, name: &str) -> Option<Readiness> {
        self.pools_seen
            .lock()
            .expect("pools lock poisoned")
            .as_ref()
            .and_then(|s| s.get(name).map(|(_, r)| r.clone()))
    }

    /// Labels of a namespace, from the cache.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.stores
            .namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default()
    }

    /// Remembers whether a Service's last assignment failed.
    pub fn set_failed(&self, key: &ServiceKey, failed: bool) {
        let mut set = self.failed.lock().expect("failed lock poisoned");
        if failed {
            set.insert(key.clone());
        } else {
            set.remove(key);
        }
    }

    /// Services whose last assignment failed.
    pub fn failed(&self) -> Vec<ServiceKey> {
        self.failed
            .lock()
            .expect("failed lock poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// Records the allocation failure of a Service (`None`: it no longer fails). `true` when
    /// it differs from the last one recorded, i.e. when it deserves a new Event: a Service
    /// retried on every pool change must not add an Event each time.
    pub fn note_failure(&self, key: &ServiceKey, reason: Option<String>) -> bool {
        let mut map = self.failures.lock().expect("failures lock poisoned");
        match reason {
            Some(r) => map.insert(key.clone(), r.clone()).as_ref() != Some(&r),
            None => {
                map.remove(key);
                false
            }
        }
    }

    /// Records that a conflict was reported; `true` the first time for this Service.
    pub fn note_conflict(&self, key: &ServiceKey, conflicted: bool) -> bool {
        let mut set = self.conflicted.lock().expect("conflicted lock poisoned");
        if conflicted {
            set.insert(key.clone())
        } else {
            set.remove(key);
            false
        }
    }

    /// Publishes an Event about `obj`. A failure is logged and counted, never fatal: the
    /// state it reports is also in status and metrics.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        let reference = obj.object_ref(&());
        let shard = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&reference.namespace, &reference.name, &reference.uid).hash(&mut h);
            (h.finish() % EVENT_SHARDS as u64) as usize
        };
        if let Err(e) = self.recorders[shard].publish(&event, &reference).await {
            self.metrics.event_errors.inc();
            warn!(error = %e, reason, "event not published");
        }
    }
}

/// The allocator's key of a Service.
pub fn key_of(svc: &Service) -> ServiceKey {
    ServiceKey::new(
        svc.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        svc.name_any(),
    )
}
