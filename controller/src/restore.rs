//! Restore before allocate: at start and on every leadership gain, every address already in
//! a Service's status is held again before anything new is handed out, so an address in use
//! is never given to a second Service and never moved.
//!
//! Takes the pools from the `IPPool` cache (the caller waits until it is filled) and lists
//! Services straight from the API (the authoritative statuses) in pages of [`LIST_PAGE`],
//! gives the pools to the allocator, then restores the managed Services oldest first
//! (`creationTimestamp`, then namespace/name): when two Services claim one address that they
//! cannot share, the older keeps it.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use tracing::{info, warn};

use crate::context::{Context, key_of};
use crate::error::{Error, api_err};
use herald_ipam::convert::{self, is_managed};

/// What a restore found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Services whose status addresses were restored.
    pub services: usize,
    /// Conflicts and clashes reported (each also as an Event on its Service).
    pub conflicts: usize,
}

/// Services listed per page, as the watches list them: one response with 10 000 Services
/// is tens of megabytes the API server builds in one go.
pub const LIST_PAGE: u32 = 500;

/// Every Service, listed in pages of [`LIST_PAGE`].
async fn list_services(ctx: &Context) -> Result<Vec<Service>, Error> {
    let api = Api::<Service>::all(ctx.client.clone());
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(LIST_PAGE);
        if let Some(t) = token.take() {
            params = params.continue_token(&t);
        }
        let page = api
            .list(&params)
            .await
            .map_err(api_err("Services", "list"))?;
        all.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(all),
        }
    }
}

/// Rebuilds the allocator from the API: pools, then every managed Service's status.
pub async fn restore_all(ctx: &Context) -> Result<Restored, Error> {
    let services = list_services(ctx).await?;
    // Pools from the cache the reconcilers read (the caller waits for it to fill), so the
    // first reconcile sees the same pools the restore did.
    ctx.sync_pools();

    let mut managed: Vec<&Service> = services
        .iter()
        .filter(|s| is_managed(s, &ctx.settings.lb_class))
        .collect();
    managed.sort_by(|a, b| {
        let created = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| key_of(a).cmp(&key_of(b)))
    });
    let mut inputs = Vec::with_capacity(managed.len());
    for svc in &managed {
        match convert::service(svc, &ctx.namespace_labels(key_of(svc).namespace())) {
            Ok(input) if !input.current.is_empty() => inputs.push(input),
            Ok(_) => {}
            // Reported by the reconciler when it gets to the Service.
            Err(e) => warn!(error = %e, "not restored"),
        }
    }
    let count = inputs.len();
    let conflicts = ctx.allocator().restore(inputs);
    for c in &conflicts {
        ctx.set_failed(&c.service, true);
        ctx.note_conflict(&c.service, true);
        if let Some(svc) = managed.iter().find(|s| key_of(s) == c.service) {
            warn!(service = %c.service, error = %c.reason, "restored with a conflict");
            ctx.publish(
                *svc,
                EventType::Warning,
                "AddressConflict",
                c.reason.to_string(),
            )
            .await;
        }
    }
    ctx.metrics.restored.set(count as i64);
    ctx.metrics
        .conflicts
        .set(ctx.allocator().conflicts().len() as i64);
    info!(
        services = count,
        conflicts = conflicts.len(),
        "assignments restored"
    );
    Ok(Restored {
        services: count,
        conflicts: conflicts.len(),
    })
}
