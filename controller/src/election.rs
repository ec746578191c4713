//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run
//! and exactly one writes.
//!
//! The decision is pure ([`decide`]): given the Lease as read, this replica's identity and
//! the time, renew, acquire or follow. [`Elector::step`] reads the Lease, decides, and
//! writes it with a `replace` that carries the `resourceVersion` it read, so two replicas
//! racing for an expired Lease cannot both win: the API server refuses the second write
//! (409 Conflict) and that replica follows.
//!
//! A leader that fails to renew (error or conflict) steps down at once rather than risk
//! two writers; a follower takes over once it has seen the Lease record unchanged for
//! `leaseDurationSeconds` on its own monotonic clock (as client-go does; node clocks may
//! disagree), so a new leader takes over within one lease duration (plus one retry period)
//! of the last renewal it saw, and a replica that starts next to a Lease left by a dead
//! instance waits one lease duration. A leader that shuts down clears the holder ([`Elector::release`]) and a
//! follower takes over at its next retry.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// What this replica does with the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// Someone else holds a live Lease.
    Follow {
        /// The holder's identity.
        holder: String,
    },
}

/// Decides from the Lease as read, which this replica has seen unchanged for
/// `unchanged_for`. `default_duration` applies when the Lease names none.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    match holder {
        None => Decision::Acquire,
        Some(h) if h == identity => Decision::Renew,
        Some(h) => {
            let duration = spec
                .lease_duration_seconds
                .map_or(default_duration, |s| Duration::from_secs(s.max(0) as u64));
            if unchanged_for >= duration {
                Decision::Acquire
            } else {
                Decision::Follow {
                    holder: h.to_owned(),
                }
            }
        }
    }
}

/// Timing of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How often the Lease is read and renewed (well under the lease duration).
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Runs the election for one identity on one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The Lease record as last read (holder, renew time, transitions) and when, on this
    /// replica's monotonic clock, it was first read so.
    observed: std::sync::Mutex<Option<(String, Instant)>>,
}

impl Elector {
    /// An elector on Lease `name` in the namespace of `api`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing) -> Self {
        Elector {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            observed: std::sync::Mutex::new(None),
        }
    }

    /// One round: read, decide, write. Returns whether this replica leads afterwards. Any
    /// failure means "not leading".
    pub async fn step(&self) -> bool {
        match self.try_step().await {
            Ok(leading) => leading,
            Err(e) => {
                warn!(lease = %self.name, error = %e, "lease round failed; not leading");
                false
            }
        }
    }

    async fn try_step(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let decision = decide(
            lease.spec.as_ref(),
            &self.identity,
            self.unchanged_for(lease.spec.as_ref()),
            self.timing.lease_duration,
        );
        if let Decision::Follow { .. } = decision {
            return Ok(false);
        }
        let renewing = decision == Decision::Renew;
        let mut next = lease.clone();
        next.spec = Some(self.held_spec(lease.spec.as_ref().filter(|_| renewing), now));
        if !renewing {
            let transitions = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0);
            if let Some(spec) = next.spec.as_mut() {
                spec.lease_transitions = Some(transitions + 1);
            }
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The spec with this replica holding: `previous` is kept (acquire time, transitions)
    /// when renewing.
    /// How long the Lease record has been seen unchanged by this replica. Expiry is judged
    /// on this replica's own clock, as client-go does, not by comparing the holder's
    /// `renewTime` with this replica's wall clock: clocks of two nodes may disagree by more
    /// than a lease duration.
    fn unchanged_for(&self, spec: Option<&LeaseSpec>) -> Duration {
        let record = spec.map_or_else(String::new, |s| {
            format!(
                "{:?}/{:?}/{:?}/{:?}",
                s.holder_identity,
                s.renew_time.as_ref().map(|t| t.0),
                s.acquire_time.as_ref().map(|t| t.0),
                s.lease_transitions
            )
        });
        let now = Instant::now();
        let mut observed = self.observed.lock().expect("observed lock poisoned");
        match observed.as_ref() {
            Some((r, since)) if *r == record => now.duration_since(*since),
            _ => {
                *observed = Some((record, now));
                Duration::ZERO
            }
        }
    }

    fn held_spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let secs = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(secs),
            acquire_time: Some(
                previous
                    .and_then(|p| p.acquire_time.clone())
                    .unwrap_or(MicroTime(now)),
            ),
            renew_time: Some(MicroTime(now)),
            lease_transitions: previous.and_then(|p| p.lease_transitions).or(Some(0)),
            ..LeaseSpec::default()
        }
    }

    /// Gives the Lease up if this replica holds it, so a follower takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            warn!(lease = %self.name, error = %e, "lease not released");
        }
    }

    /// Runs rounds every retry period, publishing whether this replica leads, until
    /// `shutdown` is set; then releases the Lease if held.
    pub async fn run(self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now_leading = self.step().await;
            leading.send_if_modified(|was| {
                if *was != now_leading {
                    info!(lease = %self.name, leading = now_leading, "leadership changed");
                    *was = now_leading;
                    true
                } else {
                    false
                }
            });
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry_period) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        leading.send_replace(false);
        self.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(1_800_000_000).unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decides_from_holder_and_expiry() {
        let d = Duration::from_secs(15);
        let s = Duration::from_secs;
        let follow = |h: &str| Decision::Follow {
            holder: h.to_owned(),
        };
        let table = [
            (None, s(0), Decision::Acquire),
            (Some(spec(None)), s(0), Decision::Acquire),
            (Some(spec(Some(""))), s(0), Decision::Acquire),
            (Some(spec(Some("me"))), s(100), Decision::Renew),
            (Some(spec(Some("other"))), s(0), follow("other")),
            (Some(spec(Some("other"))), s(14), follow("other")),
            (Some(spec(Some("other"))), s(15), Decision::Acquire),
        ];
        for (i, (lease, unchanged, want)) in table.into_iter().enumerate() {
            assert_eq!(decide(lease.as_ref(), "me", unchanged, d), want, "row {i}");
        }
    }
}
