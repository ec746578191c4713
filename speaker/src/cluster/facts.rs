//! Pure: what cluster mode keeps of Services and EndpointSlices, read once per object when
//! the object changes, instead of the objects themselves.
//!
//! A cached `k8s-openapi` Service costs about 1.9 KiB even when it holds almost nothing (an
//! 840-byte struct, a 544-byte B-tree node for one annotation, ports, strings), an
//! EndpointSlice about 1.75 KiB; at 10 000 of each that was over half of the speaker's memory
//! (issue 12, docs/benchmarks.md). The speaker reads a handful of fields of each, so the
//! watches keep only those ([`ServiceFacts`], [`SliceFacts`], a few hundred bytes), and
//! only for the Services this Herald manages: an unmanaged Service is not kept at all.
//!
//! Each snapshot reads the tables: [`ServiceTable::assigned`] gives the granted addresses,
//! [`announce_services`] announce's input, both in `namespace/name` order.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use herald_api::annotations::ALLOCATED_FROM;
use herald_ipam::convert::{self, LbClass};
use herald_ipam::{Protocol, TrafficPolicy};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::announce::from_api;
use crate::announce::{self, Endpoint};
use crate::engine::Assigned;

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, name)`; its order is the snapshot's order.
pub type Key = (String, String);

/// What the speaker reads of one managed Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    /// `metadata.uid`, for Events on the Service (`kubectl describe` finds them by it).
    pub uid: Option<String>,
    /// `status.loadBalancer.ingress[].ip`, as the controller wrote them (unparsable ones
    /// and hostnames left out).
    pub ingress: Vec<IpAddr>,
    /// The pools named by the `herald.dev/allocated-from` annotation.
    pub allocated_from: Vec<String>,
    /// Ports and traffic policy; `None` when the spec does not convert (an unknown
    /// protocol, a bad policy): the Service keeps its addresses in `/status` but is not
    /// announced, as the allocator refuses it too.
    pub spec: Option<(Vec<(Protocol, u16)>, TrafficPolicy)>,
}

impl ServiceFacts {
    /// The facts of `svc`, or `None` when this Herald does not manage it (not
    /// `type: LoadBalancer`, or another `loadBalancerClass` than `lb_class`).
    pub fn read(svc: &Service, lb_class: &LbClass) -> Option<(Key, Self)> {
        if !convert::is_managed(svc, lb_class) {
            return None;
        }
        let meta = &svc.metadata;
        let key = (
            meta.namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            meta.name.clone().unwrap_or_default(),
        );
        let ingress = convert::ingress_ips(svc);
        let allocated_from = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(ALLOCATED_FROM))
            .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect())
            .unwrap_or_default();
        let spec = convert::service(svc, &BTreeMap::new())
            .ok()
            .map(|plain| (plain.ports, plain.traffic_policy));
        let facts = ServiceFacts {
            uid: meta.uid.clone(),
            ingress,
            allocated_from,
            spec,
        };
        Some((key, facts))
    }

    /// The reference an Event on this Service names.
    pub fn object_ref(&self, key: &Key) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Service".to_owned()),
            namespace: Some(key.0.clone()),
            name: Some(key.1.clone()),
            uid: self.uid.clone(),
            // Which version an Event is about does not matter; not kept.
            resource_version: None,
            field_path: None,
        }
    }
}

/// What the speaker reads of one EndpointSlice: its Service and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceFacts {
    /// The Service it belongs to (its namespace, label `kubernetes.io/service-name`).
    pub service: Key,
    /// Its endpoints, one per address. `ready` unset counts as ready, as Kubernetes
    /// specifies.
    pub endpoints: Vec<Endpoint>,
}

impl SliceFacts {
    /// The slice's `(namespace, name)` and facts; `None` for a slice of no Service.
    pub fn read(slice: &EndpointSlice) -> Option<(Key, Self)> {
        let meta = &slice.metadata;
        let namespace = meta
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let service = meta.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.clone();
        let endpoints = from_api::endpoints_of([slice]);
        let key = (namespace.clone(), meta.name.clone().unwrap_or_default());
        Some((
            key,
            SliceFacts {
                service: (namespace, service),
                endpoints,
            },
        ))
    }
}

/// The managed Services, by key.
#[derive(Debug, Default, Clone)]
pub struct ServiceTable {
    services: BTreeMap<Key, ServiceFacts>,
}

impl ServiceTable {
    /// Takes in a changed Service: kept if managed, forgotten if it no longer is.
    pub fn apply(&mut self, svc: &Service, lb_class: &LbClass) {
        match ServiceFacts::read(svc, lb_class) {
            Some((key, facts)) => {
                self.services.insert(key, facts);
            }
            None => {
                self.services.remove(&key_of(&svc.metadata));
            }
        }
    }

    /// Forgets a deleted Service.
    pub fn delete(&mut self, svc: &Service) {
        self.services.remove(&key_of(&svc.metadata));
    }

    /// How many managed Services there are.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// No managed Service.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// One Service's facts.
    pub fn get(&self, key: &Key) -> Option<&ServiceFacts> {
        self.services.get(key)
    }

    /// The reference an Event on the Service `namespace/name` names.
    pub fn object_ref(&self, key: &str) -> Option<ObjectReference> {
        let (ns, name) = key.split_once('/')?;
        let key = (ns.to_owned(), name.to_owned());
        self.services.get(&key).map(|f| f.object_ref(&key))
    }

    /// The granted addresses per `namespace/name`, each with its pool: the pool named by
    /// `herald.dev/allocated-from` that contains it, else the first pool whose ranges contain
    /// it. An address in no pool is left out; Services left with none are not listed.
    pub fn assigned(&self, pools: &[(String, Vec<(IpAddr, IpAddr)>)]) -> Assigned {
        self.services
            .iter()
            .map(|((ns, name), f)| (format!("{ns}/{name}"), granted(f, pools)))
            .filter(|(_, a)| !a.is_empty())
            .collect()
    }
}

/// A Service's ingress addresses with the pool of each; addresses in no pool left out.
pub fn granted(
    facts: &ServiceFacts,
    pools: &[(String, Vec<(IpAddr, IpAddr)>)],
) -> Vec<(IpAddr, String)> {
    let mut out: Vec<(IpAddr, String)> = Vec::new();
    for &ip in &facts.ingress {
        let holds = |name: &str| {
            pools
                .iter()
                .any(|(p, ranges)| p == name && super::translate::contains(ranges, ip))
        };
        let pool = facts
            .allocated_from
            .iter()
            .find(|n| holds(n))
            .cloned()
            .or_else(|| {
                pools
                    .iter()
                    .find(|(_, ranges)| super::translate::contains(ranges, ip))
                    .map(|(n, _)| n.clone())
            });
        if let Some(pool) = pool
            && !out.iter().any(|(a, _)| *a == ip)
        {
            out.push((ip, pool));
        }
    }
    out
}

/// The EndpointSlices' endpoints by Service, and the Service of each slice.
#[derive(Debug, Default, Clone)]
pub struct SliceTable {
    /// Slice `(namespace, name)` → the name of its Service (same namespace).
    owner: HashMap<Key, String>,
    /// Service key → its slices' names and endpoints, in slice name order.
    by_service: HashMap<Key, Vec<(String, Vec<Endpoint>)>>,
}

impl SliceTable {
    /// Takes in a changed EndpointSlice (also one that moved to another Service).
    pub fn apply(&mut self, slice: &EndpointSlice) {
        self.remove(&key_of(&slice.metadata));
        if let Some(((namespace, name), facts)) = SliceFacts::read(slice) {
            let slices = self.by_service.entry(facts.service.clone()).or_default();
            let at = slices.partition_point(|(n, _)| *n < name);
            slices.insert(at, (name.clone(), facts.endpoints));
            self.owner.insert((namespace, name), facts.service.1);
        }
    }

    /// Forgets a deleted EndpointSlice.
    pub fn delete(&mut self, slice: &EndpointSlice) {
        self.remove(&key_of(&slice.metadata));
    }

    fn remove(&mut self, key: &Key) {
        let Some(service) = self.owner.remove(key) else {
            return;
        };
        let service = (key.0.clone(), service);
        if let Some(slices) = self.by_service.get_mut(&service) {
            slices.retain(|(n, _)| *n != key.1);
            if slices.is_empty() {
                self.by_service.remove(&service);
            }
        }
    }

    /// The endpoints of the Service `key`, from all its slices in name order.
    pub fn endpoints(&self, key: &Key) -> Vec<Endpoint> {
        self.by_service
            .get(key)
            .into_iter()
            .flatten()
            .flat_map(|(_, endpoints)| endpoints.iter().cloned())
            .collect()
    }
}

/// Announce's input: each managed Service whose spec converts, with its granted addresses
/// (from `assigned`) and its endpoints, in `namespace/name` order.
pub fn announce_services(
    services: &ServiceTable,
    slices: &SliceTable,
    assigned: &Assigned,
) -> Vec<announce::Service> {
    services
        .services
        .iter()
        .filter_map(|(key, f)| {
            let (ports, traffic_policy) = f.spec.clone()?;
            let name = format!("{}/{}", key.0, key.1);
            let addresses = assigned.get(&name).cloned().unwrap_or_default();
            Some(announce::Service {
                key: name,
                addresses,
                ports,
                traffic_policy,
                endpoints: slices.endpoints(key),
            })
        })
        .collect()
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        meta.name.clone().unwrap_or_default(),
    )
}
