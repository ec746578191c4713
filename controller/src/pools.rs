//! `IPPool` status and pool changes.
//!
//! A pool's status (assigned/available per family, `Ready`, `Conflicting`) is derived from
//! the allocator and written by server-side apply when it differs from what the pool shows.
//! A pool change (added, edited, deleted) goes to the allocator at once
//! ([`on_pools_changed`]); the Services it affects are re-queued: those holding addresses
//! of a changed pool, those in conflict, and those whose last allocation failed.
//!
//! Reconcilers only mark the pools they touched; [`status_writer`] writes each marked pool
//! once per [`STATUS_DELAY`], so a burst of N allocations costs a handful of status writes,
//! not N.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use herald_api::pool::IPPool;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::warn;

use crate::context::Context;
use crate::metrics::PoolLabels;
use crate::status::{
    FIELD_MANAGER, Readiness, annotation_of, pool_status, pool_status_patch, same_pool_status,
};
use herald_ipam::{Error as IpamError, ServiceKey};

/// How long the status writer gathers pool changes before it writes: a burst of allocations
/// from one pool becomes one status write, not one per Service.
pub const STATUS_DELAY: Duration = Duration::from_millis(200);

/// Writes the status of pools marked dirty ([`Context::mark_pools_dirty`]), at most once per
/// [`STATUS_DELAY`] each. Runs as long as the controller does.
pub async fn status_writer(ctx: Arc<Context>) {
    loop {
        ctx.pools_dirtied().await;
        tokio::time::sleep(STATUS_DELAY).await;
        write_dirty_pools(&ctx).await;
    }
}

/// Writes the status of every pool marked dirty, now. Nothing unless this replica leads.
pub async fn write_dirty_pools(ctx: &Context) {
    let names = ctx.take_dirty_pools();
    if ctx.is_leader() {
        write_pool_statuses(ctx, &names).await;
    }
}

/// Writes the status of each named pool that still exists, where it differs. Failures are
/// logged: the next change writes the status again.
pub async fn write_pool_statuses(ctx: &Context, names: &[String]) {
    for name in names {
        if let Err(e) = write_pool_status(ctx, name).await {
            warn!(error = %e, "pool status not written");
        }
    }
}

/// Writes one pool's status if it differs from what the pool shows.
pub async fn write_pool_status(ctx: &Context, name: &str) -> Result<bool, crate::Error> {
    let Some(pool) = ctx.stores.pools.get(&ObjectRef::new(name)) else {
        return Ok(false);
    };
    let readiness = ctx.pool_readiness(name).unwrap_or(Readiness::Ready);
    let (counts, conflicts) = {
        let allocator = ctx.allocator();
        let counts = allocator.counts(name).unwrap_or_default();
        (counts, allocator.conflicts())
    };
    let conflicts = conflicts_of_pool(ctx, name, &conflicts);
    for (family, c) in [("ipv4", counts.v4), ("ipv6", counts.v6)] {
        let labels = PoolLabels {
            pool: name.to_owned(),
            family,
        };
        ctx.metrics
            .pool_assigned
            .get_or_create(&labels)
            .set(c.assigned as f64);
        ctx.metrics
            .pool_available
            .get_or_create(&labels)
            .set(c.available as f64);
    }
    let previous = pool.status.as_ref();
    let status = pool_status(
        counts,
        &readiness,
        &conflicts,
        pool.metadata.generation,
        previous,
        Timestamp::now(),
    );
    if previous.is_some_and(|p| same_pool_status(p, &status)) {
        return Ok(false);
    }
    let api: Api<IPPool> = Api::all(ctx.client.clone());
    let before = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&pool_status_patch(name, &status)),
    )
    .await
    .map_err(crate::error::api_err(
        format!("IPPool {name}"),
        "write status",
    ))?;
    // Invalid or overlapping: one Warning when it turns so (or its reason changes), one
    // Normal when it is ready again; not one per status write.
    if let Some(t) = crate::checks::transition("Ready", &before, &status.conditions) {
        let type_ = if t.warning {
            warn!(pool = name, reason = %t.reason, note = %t.note, "pool not ready");
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(&*pool, type_, &t.reason, t.note).await;
    }
    Ok(true)
}

/// Conflicts attributed to a pool: Services whose `herald.dev/allocated-from` names it.
fn conflicts_of_pool(ctx: &Context, pool: &str, conflicts: &[IpamError]) -> Vec<String> {
    conflicts
        .iter()
        .filter(|c| {
            ctx.stores
                .services
                .get(&ObjectRef::new(c.service.name()).within(c.service.namespace()))
                .as_deref()
                .and_then(annotation_of)
                .is_some_and(|from| from.split(',').any(|p| p == pool))
        })
        .map(|c| c.to_string())
        .collect()
}

/// Gives the allocator the pools in the cache, writes the status of every pool, raises an
/// Event on each Service newly in conflict, and returns the Services to re-queue (sorted).
pub async fn on_pools_changed(ctx: &Context) -> Vec<ObjectRef<Service>> {
    if !ctx.is_leader() {
        return Vec::new();
    }
    let failed_before = ctx.failed();
    let Some((changed, conflicts)) = ctx.sync_pools() else {
        return Vec::new();
    };
    let changed_set: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
    let mut requeue: BTreeSet<ServiceKey> = failed_before.into_iter().collect();
    for (key, held) in ctx.allocator().assignments() {
        if held
            .iter()
            .any(|a| a.pool.is_none_or(|p| changed_set.contains(p)))
        {
            requeue.insert(key);
        }
    }
    for c in &conflicts {
        requeue.insert(c.service.clone());
        ctx.set_failed(&c.service, true);
        if ctx.note_conflict(&c.service, true) {
            let svc = ctx
                .stores
                .services
                .get(&ObjectRef::new(c.service.name()).within(c.service.namespace()));
            if let Some(svc) = svc {
                warn!(service = %c.service, error = %c.reason, "address conflict");
                ctx.publish(
                    &*svc,
                    EventType::Warning,
                    "AddressConflict",
                    c.reason.to_string(),
                )
                .await;
            }
        }
    }
    let all: Vec<String> = ctx
        .stores
        .pools
        .state()
        .iter()
        .map(|p| p.name_any())
        .collect();
    write_pool_statuses(ctx, &all).await;
    requeue
        .into_iter()
        .map(|k| ObjectRef::new(k.name()).within(k.namespace()))
        .collect()
}
