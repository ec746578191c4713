//! The `Valid` condition of `BGPPeer`, `BGPAdvertisement`, `L2Advertisement` and
//! `BFDProfile`, written from the pure checks in [`crate::checks`].
//!
//! ```text
//!  watch BGPPeers, BGPAdvertisements, L2Advertisements, BFDProfiles, IPPools
//!     └─ any change ──> Context::mark_config_dirty ──> status_writer
//!           (waits STATUS_DELAY, then checks every object once)
//!           ──differs?──> status apply (field manager herald-controller)
//!           ──turned False / new message / True again?──> Event on the object
//! ```
//!
//! Like the pool status writer, a burst of changes (a `kubectl apply -f` of many objects)
//! becomes one pass 200 ms later, an object whose status already says the same is not
//! written, and only the leader writes. Events follow the condition's transitions, not the
//! passes: an object that stays invalid gets one Warning, not one per change elsewhere.

use std::fmt::Debug;
use std::sync::Arc;

use herald_api::status::{ObjectStatus, VALID};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, warn};

use crate::checks::{self, Objects, Verdict, object_status, same_status, transition};
use crate::context::Context;
use crate::pools::STATUS_DELAY;
use crate::status::FIELD_MANAGER;

/// Checks and writes the configuration objects' conditions after each marked change, at most
/// once per [`STATUS_DELAY`]. Runs as long as the controller does.
pub async fn status_writer(ctx: Arc<Context>) {
    loop {
        ctx.config_dirtied().await;
        tokio::time::sleep(STATUS_DELAY).await;
        let written = write_conditions(&ctx).await;
        if written > 0 {
            info!(written, "configuration conditions written");
        }
    }
}

/// Checks every configuration object now and writes each condition that differs from what
/// the object shows; returns how many were written. Nothing unless this replica leads.
pub async fn write_conditions(ctx: &Context) -> usize {
    if !ctx.is_leader() {
        return 0;
    }
    let c = &ctx.stores.config;
    let (pools, peers, bgp, l2, profiles) = (
        ctx.stores.pools.state(),
        c.peers.state(),
        c.bgp_advertisements.state(),
        c.l2_advertisements.state(),
        c.bfd_profiles.state(),
    );
    let (pool_refs, peer_refs, bgp_refs, l2_refs, profile_refs) = (
        refs(&pools),
        refs(&peers),
        refs(&bgp),
        refs(&l2),
        refs(&profiles),
    );
    let verdicts = checks::verdicts(&Objects {
        pools: &pool_refs,
        peers: &peer_refs,
        bgp_advertisements: &bgp_refs,
        l2_advertisements: &l2_refs,
        bfd_profiles: &profile_refs,
    });
    let mut written = 0;
    let now = Timestamp::now();
    for (kind, name) in verdicts.keys() {
        let verdict = &verdicts[&(*kind, name.clone())];
        let result = match *kind {
            "BGPPeer" => {
                write_one(ctx, &peer_refs, name, verdict, now, |o| {
                    o.status.as_ref().map(|s| &s.valid)
                })
                .await
            }
            "BGPAdvertisement" => {
                write_one(ctx, &bgp_refs, name, verdict, now, |o| o.status.as_ref()).await
            }
            "L2Advertisement" => {
                write_one(ctx, &l2_refs, name, verdict, now, |o| o.status.as_ref()).await
            }
            "BFDProfile" => {
                write_one(ctx, &profile_refs, name, verdict, now, |o| {
                    o.status.as_ref()
                })
                .await
            }
            _ => Ok(false),
        };
        match result {
            Ok(true) => written += 1,
            Ok(false) => {}
            // The next change writes it again.
            Err(e) => warn!(error = %e, "condition not written"),
        }
    }
    written
}

fn refs<K>(v: &[Arc<K>]) -> Vec<&K> {
    v.iter().map(Arc::as_ref).collect()
}

/// Writes one object's `Valid` condition if it differs; publishes the transition's Event.
async fn write_one<K>(
    ctx: &Context,
    objects: &[&K],
    name: &str,
    verdict: &Verdict,
    now: Timestamp,
    status_of: impl Fn(&K) -> Option<&ObjectStatus>,
) -> Result<bool, crate::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync,
{
    let Some(obj) = objects.iter().find(|o| o.name_any() == name) else {
        return Ok(false);
    };
    let previous = status_of(obj);
    let status = object_status(verdict, obj.meta().generation, previous, now);
    if previous.is_some_and(|p| same_status(p, &status)) {
        return Ok(false);
    }
    let kind = K::kind(&());
    let api: Api<K> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": kind,
        "metadata": { "name": name },
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(crate::error::api_err(
        format!("{kind} {name}"),
        "write status",
    ))?;
    let before = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    if let Some(t) = transition(VALID, before, &status.conditions) {
        if t.warning {
            warn!(%kind, name, reason = %t.reason, note = %t.note, "configuration object not valid");
        } else {
            info!(%kind, name, "configuration object valid again");
        }
        let type_ = if t.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(*obj, type_, &t.reason, t.note).await;
    }
    Ok(true)
}
