//! The Service reconciler: one [`reconcile`] per Service change, level-triggered and
//! idempotent. It converts, asks the allocator, and writes only what differs:
//!
//! ```text
//!  Service ──convert──> ipam::Service ──assign──> Held ──> status (apply, ingress[].ip)
//!                                                     ├──> herald.dev/allocated-from (apply)
//!                                                     ├──> Event (AddressAllocated, AllocationFailed,
//!                                                     │          AddressConflict, AddressReleased)
//!                                                     └──> pools touched marked for the
//!                                                          status writer (crate::pools)
//! ```
//!
//! Deleted Services never reach [`reconcile`] (the runtime finds them gone from its cache);
//! [`on_deleted`] releases them, and [`sweep`] catches deletions missed while disconnected.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info, instrument, warn};

use crate::context::{Context, key_of};
use crate::error::{Error, api_err};
use crate::metrics::{KindLabel, ResultLabel};
use crate::status::{
    FIELD_MANAGER, Held, annotation_of, annotation_patch, service_status_patch, status_shows,
};
use herald_ipam::convert::{self, is_managed};
use herald_ipam::{Reason, ServiceKey};

/// How long a failed allocation waits before it is retried even without a pool change.
pub const RETRY_FAILED: Duration = Duration::from_secs(300);

/// Reconciles one Service. Writes nothing unless this replica leads.
#[instrument(skip_all, fields(service = %key_of(&svc)))]
pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.is_leader() {
        return Ok(Action::await_change());
    }
    // Pools changed since the last sync have their status written with this reconcile's.
    let changed = ctx
        .sync_pools()
        .map(|(changed, _)| changed)
        .unwrap_or_default();
    let key = key_of(&svc);
    if svc.metadata.deletion_timestamp.is_some() || !is_managed(&svc, &ctx.settings.lb_class) {
        let action = release(&svc, &key, &ctx).await;
        ctx.mark_pools_dirty(&changed);
        return action;
    }
    let input = match convert::service(&svc, &ctx.namespace_labels(key.namespace())) {
        Ok(input) => input,
        Err(e) => {
            // The user must fix the Service; its next change wakes us. What it holds stays.
            count(&ctx, "failed");
            ctx.publish(&*svc, EventType::Warning, "InvalidService", e.to_string())
                .await;
            return Ok(Action::await_change());
        }
    };
    let before = ctx.allocator().assignment(&key).map(|a| Held::of(&a));
    let outcome = {
        let mut allocator = ctx.allocator();
        match allocator.assign(input) {
            Ok(a) => Ok(Held::of(&a)),
            Err(e) => Err((
                e,
                allocator
                    .assignment(&key)
                    .map(|a| Held::of(&a))
                    .unwrap_or_default(),
            )),
        }
    };
    let mut touched = before.as_ref().map(Held::pools).unwrap_or_default();
    touched.extend(changed);
    let action = match outcome {
        Ok(held) => {
            ctx.set_failed(&key, false);
            ctx.note_failure(&key, None);
            ctx.note_conflict(&key, false);
            touched.extend(held.pools());
            let wrote = write_service(&svc, &held, &ctx).await?;
            count(&ctx, "assigned");
            if wrote || before.as_ref() != Some(&held) {
                let note = describe(&held);
                info!(%note, "address allocated");
                ctx.publish(&*svc, EventType::Normal, "AddressAllocated", note)
                    .await;
            }
            Action::await_change()
        }
        Err((e, held)) if matches!(e.reason, Reason::Conflict { .. }) => {
            // Never moved, never cleared: the address stays in status and reserved until the
            // pools allow it again or the user changes the request.
            ctx.set_failed(&key, true);
            count(&ctx, "conflict");
            if ctx.note_conflict(&key, true) {
                warn!(error = %e.reason, "address conflict");
                ctx.publish(
                    &*svc,
                    EventType::Warning,
                    "AddressConflict",
                    e.reason.to_string(),
                )
                .await;
            }
            drop(held);
            Action::await_change()
        }
        Err((e, held)) => {
            ctx.set_failed(&key, true);
            ctx.note_conflict(&key, false);
            touched.extend(held.pools());
            write_service(&svc, &held, &ctx).await?;
            count(&ctx, "failed");
            let reason = e.reason.to_string();
            if ctx.note_failure(&key, Some(reason.clone())) {
                warn!(error = %reason, "allocation failed");
                ctx.publish(&*svc, EventType::Warning, "AllocationFailed", reason)
                    .await;
            }
            Action::requeue(RETRY_FAILED)
        }
    };
    touched.sort();
    touched.dedup();
    ctx.mark_pools_dirty(&touched);
    Ok(action)
}

/// Logs, counts and requeues a failed reconcile.
pub fn error_policy(svc: Arc<Service>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(service = %key_of(&svc), %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&KindLabel {
            kind: error.metric_label(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}

/// Releases a Service that is gone from the API (deleted). Its addresses are free again.
#[instrument(skip_all, fields(service = %key))]
pub async fn on_deleted(key: ServiceKey, ctx: &Context) {
    if !ctx.is_leader() {
        return;
    }
    ctx.set_failed(&key, false);
    ctx.note_failure(&key, None);
    ctx.note_conflict(&key, false);
    let pools = ctx
        .allocator()
        .assignment(&key)
        .map(|a| Held::of(&a).pools());
    let Some(freed) = ctx.allocator().release(&key) else {
        return;
    };
    count(ctx, "released");
    info!(addresses = ?freed, "released: service deleted");
    ctx.mark_pools_dirty(&pools.unwrap_or_default());
}

/// Releases every Service the allocator knows that is no longer in the cache: deletions
/// missed while the watch was down. Returns how many were released.
pub async fn sweep(ctx: &Context) -> usize {
    let gone: Vec<ServiceKey> = ctx
        .allocator()
        .assignments()
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| {
            ctx.stores
                .services
                .get(&ObjectRef::new(key.name()).within(key.namespace()))
                .is_none()
        })
        .collect();
    for key in &gone {
        on_deleted(key.clone(), ctx).await;
    }
    gone.len()
}

/// A Service that Herald no longer handles (type or class changed, being deleted): frees its
/// addresses and removes what Herald wrote.
async fn release(svc: &Service, key: &ServiceKey, ctx: &Context) -> Result<Action, Error> {
    ctx.set_failed(key, false);
    ctx.note_failure(key, None);
    ctx.note_conflict(key, false);
    let pools = ctx
        .allocator()
        .assignment(key)
        .map(|a| Held::of(&a).pools());
    let freed = ctx.allocator().release(key);
    // Herald's annotation marks a status Herald wrote; clear both even if this replica never
    // held the Service (it was released before a restart).
    if annotation_of(svc).is_some() && svc.metadata.deletion_timestamp.is_none() {
        write_service(svc, &Held::default(), ctx).await?;
    }
    if let Some(freed) = freed {
        count(ctx, "released");
        let list: Vec<String> = freed.iter().map(ToString::to_string).collect();
        let note = format!("released {}", list.join(", "));
        info!(%note, "address released");
        ctx.publish(svc, EventType::Normal, "AddressReleased", note)
            .await;
        ctx.mark_pools_dirty(&pools.unwrap_or_default());
    } else {
        count(ctx, "ignored");
        debug!("not handled by herald");
    }
    Ok(Action::await_change())
}

/// Writes the status and the annotation where they differ from `held`. Returns whether it
/// wrote anything.
async fn write_service(svc: &Service, held: &Held, ctx: &Context) -> Result<bool, Error> {
    let namespace = svc.namespace().unwrap_or_else(|| "default".to_owned());
    let name = svc.name_any();
    let object = format!("Service {namespace}/{name}");
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let addrs = held.addresses();
    let mut wrote = false;
    let from = held.allocated_from();
    if annotation_of(svc) != from.as_deref() {
        let patch = annotation_patch(&namespace, &name, from.as_deref());
        api.patch(&name, &params, &Patch::Apply(&patch))
            .await
            .map_err(api_err(object.clone(), "write annotation"))?;
        wrote = true;
    }
    if !status_shows(svc, &addrs) {
        let patch = service_status_patch(&namespace, &name, &addrs);
        api.patch_status(&name, &params, &Patch::Apply(&patch))
            .await
            .map_err(api_err(object, "write status"))?;
        wrote = true;
    }
    Ok(wrote)
}

fn describe(held: &Held) -> String {
    let parts: Vec<String> = held
        .addrs
        .iter()
        .map(|(addr, pool)| match pool {
            Some(pool) => format!("{addr} from pool {pool}"),
            None => addr.to_string(),
        })
        .collect();
    format!("allocated {}", parts.join(", "))
}

fn count(ctx: &Context, result: &'static str) {
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabel { result })
        .inc();
}
