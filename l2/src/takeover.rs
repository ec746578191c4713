//! Takeover timing behind `herald_l2_takeover_seconds`: from this node learning that the owner
//! of an address is lost to its first gratuitous ARP or unsolicited neighbour advertisement
//! for it.
//!
//! ```text
//!  agent task: elect ── on_election(before, after) ──> TakeoverTimer ──┐
//!  responder link task: first announcement ── on_announced(addr) ──────┴─> histogram
//! ```
//!
//! [`Takeovers`] is the pure bookkeeping (instants passed in); [`TakeoverTimer`] shares it
//! between the agent, which starts a takeover when an election moves an address to this node
//! from an owner that is no longer a candidate (it died, left, lost its links, was drained or
//! became unready, or lost its local endpoint), and the responder, which ends it. Addresses
//! that merely rebalance (this node becoming eligible, a first election with no owner before)
//! are not takeovers and are not timed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::election::Owner;

/// The `family` label of `herald_l2_takeover_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabel {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
}

impl FamilyLabel {
    /// The label of `addr`'s family.
    pub fn of(addr: IpAddr) -> Self {
        let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
        FamilyLabel { family }
    }
}

/// Takeover times by family, each histogram with [`TAKEOVER_BUCKETS`].
pub type TakeoverHistograms = Family<FamilyLabel, Histogram, fn() -> Histogram>;

/// Buckets of `herald_l2_takeover_seconds`: 10 ms (an election and one frame: the usual case)
/// to 5 s (an interface the responder could not open yet is retried each second). Failure
/// detection is before the start of the measure and not in it.
pub const TAKEOVER_BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

fn takeover_histogram() -> Histogram {
    Histogram::new(TAKEOVER_BUCKETS)
}

/// An empty [`TakeoverHistograms`], to register under the caller's metric name.
pub fn takeover_histograms() -> TakeoverHistograms {
    Family::new_with_constructor(takeover_histogram)
}

/// Takeovers started and not yet announced, by address.
#[derive(Debug, Default)]
pub struct Takeovers {
    began: BTreeMap<IpAddr, Instant>,
}

impl Takeovers {
    /// An election at `now` turned owners `before` into `after`. Each address `this_node` now
    /// owns whose previous owner was another node for which `candidate(addr, node)` no longer
    /// holds starts a takeover at `now`; takeovers of addresses this node no longer owns end
    /// unobserved.
    pub fn on_election(
        &mut self,
        before: &BTreeMap<IpAddr, Owner>,
        after: &BTreeMap<IpAddr, Owner>,
        this_node: &str,
        candidate: impl Fn(IpAddr, &str) -> bool,
        now: Instant,
    ) {
        self.began
            .retain(|addr, _| after.get(addr).is_some_and(|o| o.node == this_node));
        for (addr, owner) in after {
            if owner.node != this_node {
                continue;
            }
            let Some(previous) = before.get(addr) else {
                continue;
            };
            if previous.node != this_node && !candidate(*addr, &previous.node) {
                self.began.entry(*addr).or_insert(now);
            }
        }
    }

    /// This node announced `addr` at `now`: the takeover time if one was under way (once,
    /// whatever the number of interfaces announcing it).
    pub fn on_announced(&mut self, addr: IpAddr, now: Instant) -> Option<Duration> {
        self.began
            .remove(&addr)
            .map(|at| now.saturating_duration_since(at))
    }

    /// Takeovers under way.
    pub fn len(&self) -> usize {
        self.began.len()
    }

    /// Whether no takeover is under way.
    pub fn is_empty(&self) -> bool {
        self.began.is_empty()
    }
}

/// [`Takeovers`] shared by the agent and the responder, observing into the histogram.
#[derive(Debug, Default)]
pub struct TakeoverTimer {
    takeovers: Mutex<Takeovers>,
    seconds: Option<TakeoverHistograms>,
}

impl TakeoverTimer {
    /// A timer observing into `seconds` by family (`None`: keeps no state at all).
    pub fn new(seconds: Option<TakeoverHistograms>) -> Self {
        TakeoverTimer {
            takeovers: Mutex::default(),
            seconds,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Takeovers> {
        // The map stays consistent whatever panicked while holding it.
        self.takeovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`Takeovers::on_election`]; the takeover starts now.
    pub fn on_election(
        &self,
        before: &BTreeMap<IpAddr, Owner>,
        after: &BTreeMap<IpAddr, Owner>,
        this_node: &str,
        candidate: impl Fn(IpAddr, &str) -> bool,
    ) {
        if self.seconds.is_some() {
            self.lock()
                .on_election(before, after, this_node, candidate, Instant::now());
        }
    }

    /// The first announcement of `addr` on some interface was sent: observes the takeover
    /// time if one was under way.
    pub fn on_announced(&self, addr: IpAddr) {
        let Some(seconds) = &self.seconds else {
            return;
        };
        let took = self.lock().on_announced(addr, Instant::now());
        if let Some(took) = took {
            seconds
                .get_or_create(&FamilyLabel::of(addr))
                .observe(took.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(rows: &[(&str, &str)]) -> BTreeMap<IpAddr, Owner> {
        rows.iter()
            .map(|(addr, node)| {
                let owner = Owner {
                    node: node.to_string(),
                    interfaces: ["eth0".to_string()].into(),
                };
                (addr.parse().unwrap(), owner)
            })
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_address_whose_owner_is_lost_is_timed_from_the_election_to_the_first_announcement() {
        let t0 = Instant::now();
        let mut t = Takeovers::default();
        let before = owners(&[("192.0.2.1", "b"), ("2001:db8::1", "b"), ("192.0.2.3", "a")]);
        let after = owners(&[("192.0.2.1", "a"), ("2001:db8::1", "a"), ("192.0.2.3", "a")]);
        t.on_election(&before, &after, "a", |_, _| false, t0);
        assert_eq!(t.len(), 2, "only the addresses b held");
        assert_eq!(t.on_announced(ip("192.0.2.1"), t0 + 40 * MS), Some(40 * MS));
        assert_eq!(
            t.on_announced(ip("192.0.2.1"), t0 + 41 * MS),
            None,
            "a second interface announcing it observes nothing"
        );
        assert_eq!(t.on_announced(ip("192.0.2.3"), t0 + 41 * MS), None);
        assert_eq!(
            t.on_announced(ip("2001:db8::1"), t0 + 50 * MS),
            Some(50 * MS)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn addresses_that_move_while_their_owner_is_still_a_candidate_are_not_takeovers() {
        let t0 = Instant::now();
        let mut t = Takeovers::default();
        // a just became eligible and outweighs b, which is alive and eligible.
        let before = owners(&[("192.0.2.1", "b")]);
        let after = owners(&[("192.0.2.1", "a")]);
        t.on_election(&before, &after, "a", |_, node| node == "b", t0);
        assert!(t.is_empty());
    }

    #[test]
    fn a_first_election_with_nobody_owning_the_address_before_is_not_a_takeover() {
        let t0 = Instant::now();
        let mut t = Takeovers::default();
        t.on_election(
            &BTreeMap::new(),
            &owners(&[("192.0.2.1", "a")]),
            "a",
            |_, _| false,
            t0,
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_takeover_given_up_before_it_was_announced_is_forgotten() {
        let t0 = Instant::now();
        let mut t = Takeovers::default();
        let b = owners(&[("192.0.2.1", "b")]);
        let a = owners(&[("192.0.2.1", "a")]);
        t.on_election(&b, &a, "a", |_, _| false, t0);
        // Re-elected with the same result later: the takeover keeps its start.
        t.on_election(&a, &a, "a", |_, _| false, t0 + 5 * MS);
        assert_eq!(t.len(), 1);
        t.on_election(
            &a,
            &owners(&[("192.0.2.1", "c")]),
            "a",
            |_, _| true,
            t0 + 6 * MS,
        );
        assert!(t.is_empty());
        assert_eq!(t.on_announced(ip("192.0.2.1"), t0 + 7 * MS), None);
    }
}
