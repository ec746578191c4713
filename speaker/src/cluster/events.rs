//! Events (`events.k8s.io/v1`) about Services and BGPPeers, published by a task so that a
//! slow API server never delays an announcement.
//!
//! Not kube's `Recorder`: it folds events with the same reason into a series and keeps the
//! first note, so "announced via BGP to 2 peers" followed by "... to 3 peers" would show
//! the old sentence. Events here are only published on a change, so each is created anew.
//!
//! A restart announces every Service again, one Event each: the task publishes a burst of
//! [`BURST`], then one per [`PACE`]; beyond [`QUEUE_LIMIT`] waiting Events new ones are
//! dropped, with one warning per spell of a full queue (the state is in `/status`
//! regardless).

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Events published at once before pacing starts.
pub const BURST: u32 = 50;
/// Pace after the burst (the allowance refills at this rate up to [`BURST`]).
pub const PACE: Duration = Duration::from_millis(100);
/// Events waiting beyond this are dropped.
pub const QUEUE_LIMIT: usize = 1000;

/// `reportingController` of every Event.
pub const REPORTING_CONTROLLER: &str = "herald.dev/speaker";

/// One Event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The object it is about.
    pub regarding: ObjectReference,
    /// Short CamelCase reason (`Announced`, `Withdrawn`, `PeerNotStarted`).
    pub reason: String,
    /// Warning rather than Normal.
    pub warning: bool,
    /// The sentence.
    pub note: String,
}

/// The Event object for `p`, reported by `node` at `now`.
pub fn event(p: &Pending, node: &str, now: Timestamp) -> Event {
    let namespace = p
        .regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let name = p.regarding.name.clone().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(p.reason.clone()),
        reason: Some(p.reason.clone()),
        // The API server refuses notes over 1 kB.
        note: Some(p.note.chars().take(1000).collect()),
        regarding: Some(p.regarding.clone()),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(node.to_owned()),
        type_: Some(if p.warning { "Warning" } else { "Normal" }.to_owned()),
        ..Default::default()
    }
}

/// The publishing task's handle.
pub struct Publisher {
    tx: Option<mpsc::Sender<Pending>>,
    task: JoinHandle<()>,
    /// Events dropped since the queue last had room (one warning per full spell, not one
    /// line per Event: a restart with 10 000 Services would log 9 000).
    dropped: std::cell::Cell<u64>,
}

impl Publisher {
    /// Starts the task; Events name `node` as the reporting instance.
    pub fn spawn(client: Client, node: &str) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(QUEUE_LIMIT);
        let node = node.to_owned();
        let task = tokio::spawn(async move {
            let mut allowance = BURST;
            let mut refilled = tokio::time::Instant::now();
            while let Some(p) = rx.recv().await {
                let earned = (refilled.elapsed().as_millis() / PACE.as_millis()) as u32;
                if earned > 0 {
                    allowance = (allowance + earned).min(BURST);
                    refilled = tokio::time::Instant::now();
                }
                if allowance == 0 {
                    tokio::time::sleep_until(refilled + PACE).await;
                    refilled += PACE;
                } else {
                    allowance -= 1;
                }
                let ev = event(&p, &node, Timestamp::now());
                let api: Api<Event> = Api::namespaced(
                    client.clone(),
                    ev.metadata.namespace.as_deref().unwrap_or("default"),
                );
                if let Err(e) = api.create(&PostParams::default(), &ev).await {
                    // The same state is in /status and the logs; an Event is a courtesy.
                    warn!(error = %e, reason = %p.reason, "event not published");
                }
            }
        });
        Publisher {
            tx: Some(tx),
            task,
            dropped: std::cell::Cell::new(0),
        }
    }

    /// Queues an Event; `false` when it was dropped (the queue is full).
    pub fn publish(
        &self,
        regarding: ObjectReference,
        reason: &str,
        warning: bool,
        note: String,
    ) -> bool {
        let Some(tx) = &self.tx else { return false };
        let pending = Pending {
            regarding,
            reason: reason.to_owned(),
            warning,
            note,
        };
        match tx.try_send(pending) {
            Ok(()) => {
                let dropped = self.dropped.replace(0);
                if dropped > 0 {
                    info!(dropped, "event queue has room again");
                }
                true
            }
            Err(e) => {
                let p = e.into_inner();
                let dropped = self.dropped.get() + 1;
                self.dropped.set(dropped);
                if dropped == 1 {
                    warn!(reason = %p.reason, note = %p.note,
                        "event queue full ({QUEUE_LIMIT} waiting): new Events are dropped until it drains; /status has the state");
                }
                false
            }
        }
    }

    /// Publishes what is queued (for at most two seconds), then stops.
    pub async fn close(mut self) {
        self.tx = None;
        let deadline = std::time::Duration::from_secs(2);
        if tokio::time::timeout(deadline, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
