//! What the controller writes, as plain values: Service status and annotation apply
//! patches, and `IPPool` status. Pure; the reconcilers send them.
//!
//! Every write is a server-side apply under one field manager ([`FIELD_MANAGER`]) that names
//! only the fields Herald owns. In particular `ingress[].ipMode` (Kubernetes 1.29+) is never
//! sent: an API server older than a field rejects an apply that names it, and the server
//! defaults it where it knows it. The `ingress` list is atomic, so applying it replaces the
//! whole list, and applying an empty `loadBalancer` gives the list up (it is removed, as
//! nobody else owns it).

use std::net::IpAddr;

use herald_api::annotations::ALLOCATED_FROM;
use herald_api::pool::IPPoolStatus;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use herald_ipam::{Family, PoolCounts};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "herald-controller";

/// The addresses and pools a Service holds, primary family first; an owned copy of an
/// [`herald_ipam::Assignment`] (which borrows the allocator).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Address and pool (`None` under a conflict).
    pub addrs: Vec<(IpAddr, Option<String>)>,
}

impl Held {
    /// Copies an assignment out of the allocator.
    pub fn of(a: &herald_ipam::Assignment<'_>) -> Self {
        Held {
            addrs: a
                .iter()
                .map(|x| (x.addr, x.pool.map(str::to_owned)))
                .collect(),
        }
    }

    /// The addresses, primary family first.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.addrs.iter().map(|(a, _)| *a).collect()
    }

    /// The `herald.dev/allocated-from` value: the pools in address order, without repeats,
    /// comma-separated; `None` when no address has a pool.
    pub fn allocated_from(&self) -> Option<String> {
        let mut pools: Vec<&str> = Vec::new();
        for pool in self.addrs.iter().filter_map(|(_, p)| p.as_deref()) {
            if !pools.contains(&pool) {
                pools.push(pool);
            }
        }
        (!pools.is_empty()).then(|| pools.join(","))
    }

    /// The pools involved, sorted, without repeats.
    pub fn pools(&self) -> Vec<String> {
        let mut pools: Vec<String> = self.addrs.iter().filter_map(|(_, p)| p.clone()).collect();
        pools.sort();
        pools.dedup();
        pools
    }
}

/// `status.loadBalancer.ingress[]` as the Service carries it: `(ip, has_hostname)` pairs.
/// Entries that are not addresses (hostnames, unparsable) make the list differ from any
/// list Herald writes.
pub fn ingress_of(svc: &Service) -> Vec<Option<IpAddr>> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| match (&i.ip, &i.hostname) {
            (Some(ip), None) => ip.parse().ok(),
            _ => None,
        })
        .collect()
}

/// Whether the Service's status shows exactly `addrs`, in order.
pub fn status_shows(svc: &Service, addrs: &[IpAddr]) -> bool {
    let ingress = ingress_of(svc);
    ingress.len() == addrs.len() && ingress.iter().zip(addrs).all(|(a, b)| *a == Some(*b))
}

/// The `herald.dev/allocated-from` annotation as the Service carries it.
pub fn annotation_of(svc: &Service) -> Option<&str> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALLOCATED_FROM))
        .map(String::as_str)
}

/// The apply patch of a Service's status: `ingress` with one `ip` per address; an empty
/// `loadBalancer` when `addrs` is empty.
pub fn service_status_patch(namespace: &str, name: &str, addrs: &[IpAddr]) -> Value {
    let load_balancer = if addrs.is_empty() {
        json!({})
    } else {
        let ingress: Vec<Value> = addrs
            .iter()
            .map(|a| json!({ "ip": a.to_string() }))
            .collect();
        json!({ "ingress": ingress })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": namespace },
        "status": { "loadBalancer": load_balancer },
    })
}

/// The apply patch of a Service's `herald.dev/allocated-from` annotation; `None` removes it
/// (Herald stops owning it, and nobody else does).
pub fn annotation_patch(namespace: &str, name: &str, allocated_from: Option<&str>) -> Value {
    let mut metadata = json!({ "name": name, "namespace": namespace });
    if let Some(pools) = allocated_from {
        metadata["annotations"] = json!({ ALLOCATED_FROM: pools });
    }
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": metadata })
}

/// Why a pool is or is not usable, for its `Ready` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Valid and in the allocator.
    Ready,
    /// Refused; the message names the field.
    Invalid(String),
    /// Shares addresses with a pool that came earlier; out of the allocator. The message
    /// names the field and the other pool.
    Overlapping(String),
}

/// The status of a pool: counts (saturated to what the fields hold), a `Ready` condition
/// and a `Conflicting` condition listing (a bounded number of) Services that hold addresses
/// the pool no longer grants. A condition keeps its `lastTransitionTime` from `previous`
/// while its status is unchanged.
pub fn pool_status(
    counts: PoolCounts,
    readiness: &Readiness,
    conflicts: &[String],
    generation: Option<i64>,
    previous: Option<&IPPoolStatus>,
    now: Timestamp,
) -> IPPoolStatus {
    let sat = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
    let v4 = counts.family(Family::V4);
    let v6 = counts.family(Family::V6);
    let (ready, reason, message) = match readiness {
        Readiness::Ready => ("True", "Valid", "the pool hands out addresses".to_owned()),
        Readiness::Invalid(why) => ("False", "Invalid", why.clone()),
        Readiness::Overlapping(why) => ("False", "Overlapping", why.clone()),
    };
    let conflicting = if conflicts.is_empty() {
        (
            "False",
            "NoConflicts",
            "no Service holds an address the pool does not grant".to_owned(),
        )
    } else {
        const SHOWN: usize = 10;
        let mut listed = conflicts
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if conflicts.len() > SHOWN {
            listed.push_str(&format!("; and {} more", conflicts.len() - SHOWN));
        }
        ("True", "AddressesOutsidePool", listed)
    };
    let condition = |type_: &str, (status, reason, message): (&str, &str, String)| {
        let since = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map_or(Time(now), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: since,
        }
    };
    IPPoolStatus {
        assigned_ipv4: sat(v4.assigned),
        available_ipv4: sat(v4.available),
        assigned_ipv6: sat(v6.assigned),
        available_ipv6: v6.available.to_string(),
        conditions: vec![
            condition("Ready", (ready, reason, message)),
            condition("Conflicting", conflicting),
        ],
    }
}

/// Whether two pool statuses say the same, ignoring transition times.
pub fn same_pool_status(a: &IPPoolStatus, b: &IPPoolStatus) -> bool {
    let strip = |s: &IPPoolStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

/// The apply patch of a pool's status.
pub fn pool_status_patch(name: &str, status: &IPPoolStatus) -> Value {
    json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "IPPool",
        "metadata": { "name": name },
        "status": status,
    })
}
