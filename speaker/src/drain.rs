//! Taking a node out of service on purpose, without dropping traffic (RFC 8326).
//!
//! ```text
//!   Serving ──drain──> Draining (routes carry GRACEFUL_SHUTDOWN, LOCAL_PREF 0) ──wait──> Drained (withdrawn)
//!      ^                   │                                                               │
//!      └───────undrain─────┴───────────────────────────────────────────────────────────────┘
//! ```
//!
//! A drain is asked for by `herald-speaker drain` (the admin server's `POST /drain`) or by
//! the annotation `herald.dev/drain: "true"` on this node's `Node` object; either keeps the
//! node drained. While draining, routers that honour the GRACEFUL_SHUTDOWN community (or the
//! zero LOCAL_PREF on iBGP) move traffic to the other nodes while this one still forwards;
//! after the wait the routes are withdrawn. Layer-2 addresses are handed to other nodes at
//! once (their takeover is hitless already). A planned restart (SIGTERM) is not a drain: it
//! keeps the routes (graceful restart).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::announce::RouteAttrs;

/// The well-known GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326 §5).
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;

/// The `Node` annotation that drains the node while it is `"true"`.
pub const ANNOTATION: &str = "herald.dev/drain";

/// How long routes carry GRACEFUL_SHUTDOWN before they are withdrawn, unless the request
/// says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Longest wait accepted.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Where the node is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Announcing normally.
    #[default]
    Serving,
    /// Announcing with GRACEFUL_SHUTDOWN until the wait ends.
    Draining,
    /// Announcing nothing.
    Drained,
}

impl Phase {
    /// Lower-case name, as in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Serving => "serving",
            Phase::Draining => "draining",
            Phase::Drained => "drained",
        }
    }
}

/// The drain state machine (pure: the caller passes the clock).
#[derive(Debug, Clone, Default)]
pub struct Drain {
    /// `POST /drain` with its wait; `None` after `DELETE /drain` or at start.
    command: Option<Duration>,
    /// The Node annotation is `"true"`.
    annotation: bool,
    phase: Phase,
    until: Option<Instant>,
}

impl Drain {
    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the current wait ends (the caller ticks then).
    pub fn deadline(&self) -> Option<Instant> {
        self.until
    }

    /// The drain command: `Some(wait)` drains, `None` undoes a command drain (an annotation
    /// keeps the node drained). Returns whether the phase changed.
    pub fn set_command(&mut self, wait: Option<Duration>, now: Instant) -> bool {
        self.command = wait.map(|w| w.min(MAX_WAIT));
        self.update(now)
    }

    /// The Node annotation. Returns whether the phase changed.
    pub fn set_annotation(&mut self, on: bool, now: Instant) -> bool {
        self.annotation = on;
        self.update(now)
    }

    /// Ends the wait once it is over. Returns whether the phase changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.phase == Phase::Draining && self.until.is_some_and(|t| now >= t) {
            self.phase = Phase::Drained;
            self.until = None;
            return true;
        }
        false
    }

    fn update(&mut self, now: Instant) -> bool {
        let wanted = self.command.is_some() || self.annotation;
        let before = self.phase;
        match (wanted, self.phase) {
            (true, Phase::Serving) => {
                let wait = self.command.unwrap_or(DEFAULT_WAIT);
                self.phase = Phase::Draining;
                self.until = Some(now + wait);
                self.tick(now);
            }
            (false, Phase::Draining | Phase::Drained) => {
                self.phase = Phase::Serving;
                self.until = None;
            }
            _ => {}
        }
        self.phase != before
    }

    /// One peer's routes as this phase announces them.
    pub fn routes(&self, routes: &BTreeMap<IpNet, RouteAttrs>) -> BTreeMap<IpNet, RouteAttrs> {
        match self.phase {
            Phase::Serving => routes.clone(),
            Phase::Draining => routes
                .iter()
                .map(|(net, attrs)| {
                    let mut attrs = attrs.clone();
                    if let Err(at) = attrs.communities.binary_search(&GRACEFUL_SHUTDOWN) {
                        attrs.communities.insert(at, GRACEFUL_SHUTDOWN);
                    }
                    // RFC 8326 §4: the lowest LOCAL_PREF (sent to iBGP peers only).
                    attrs.local_pref = Some(0);
                    (*net, attrs)
                })
                .collect(),
            Phase::Drained => BTreeMap::new(),
        }
    }
}

/// Resolves at `deadline`, never without one (for a `select!` branch).
pub async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Whether `annotations` ask for a drain: the value `"true"` (any case).
pub fn annotated(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> BTreeMap<IpNet, RouteAttrs> {
        let attrs = RouteAttrs {
            communities: vec![64512 << 16 | 7],
            local_pref: Some(200),
            ..Default::default()
        };
        BTreeMap::from([("198.51.100.1/32".parse().unwrap(), attrs)])
    }

    #[test]
    fn a_drain_marks_the_routes_for_the_wait_then_withdraws_them() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        assert_eq!(d.routes(&routes()), routes());
        assert!(d.set_command(Some(Duration::from_secs(10)), t0));
        assert_eq!(d.phase(), Phase::Draining);
        let marked = d.routes(&routes());
        let attrs = &marked[&"198.51.100.1/32".parse::<IpNet>().unwrap()];
        assert_eq!(attrs.communities, vec![64512 << 16 | 7, GRACEFUL_SHUTDOWN]);
        assert_eq!(attrs.local_pref, Some(0));
        assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(!d.tick(t0 + Duration::from_secs(9)));
        assert_eq!(d.phase(), Phase::Draining);
        assert!(d.tick(t0 + Duration::from_secs(10)));
        assert_eq!(d.phase(), Phase::Drained);
        assert!(d.routes(&routes()).is_empty());
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn a_zero_wait_withdraws_at_once_and_undrain_serves_again() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        assert!(d.set_command(Some(Duration::ZERO), t0));
        assert_eq!(d.phase(), Phase::Drained);
        assert!(d.set_command(None, t0));
        assert_eq!(d.phase(), Phase::Serving);
        assert_eq!(d.routes(&routes()), routes());
    }

    #[test]
    fn the_annotation_keeps_the_node_drained_after_the_command_is_undone() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        assert!(d.set_annotation(true, t0));
        assert_eq!(d.deadline(), Some(t0 + DEFAULT_WAIT));
        // A second request while draining does not restart the wait.
        assert!(!d.set_command(Some(Duration::from_secs(1)), t0 + Duration::from_secs(5)));
        assert_eq!(d.deadline(), Some(t0 + DEFAULT_WAIT));
        assert!(!d.set_command(None, t0 + Duration::from_secs(6)));
        assert_eq!(d.phase(), Phase::Draining);
        assert!(d.set_annotation(false, t0 + Duration::from_secs(7)));
        assert_eq!(d.phase(), Phase::Serving);
    }

    #[test]
    fn only_true_annotates_and_waits_are_bounded() {
        let with = |v: &str| BTreeMap::from([(ANNOTATION.to_owned(), v.to_owned())]);
        assert!(annotated(Some(&with("true"))));
        assert!(annotated(Some(&with(" True "))));
        assert!(!annotated(Some(&with("false"))));
        assert!(!annotated(Some(&with("yes please"))));
        assert!(!annotated(None));
        let t0 = Instant::now();
        let mut d = Drain::default();
        d.set_command(Some(Duration::from_secs(86_400)), t0);
        assert_eq!(d.deadline(), Some(t0 + MAX_WAIT));
    }
}
