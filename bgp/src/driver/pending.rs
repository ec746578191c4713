//! Time-to-announce bookkeeping behind `herald_bgp_announce_seconds`: when each prefix newly
//! desired on an Established session entered the desired set, until the UPDATE carrying it is
//! written to the socket.
//!
//! Pure (instants are passed in): [`PeerHandle::set_routes`](super::PeerHandle::set_routes)
//! calls [`Pending::desire`] with the time of the call, the peer task calls
//! [`Pending::encoded`] for each NLRI of an UPDATE it encodes and [`Pending::written`] once the
//! bytes are on the socket. Only prefixes still waiting are held, so the cost is one map entry
//! per prefix between `set_routes` and the write, and nothing per UPDATE beyond the lookups.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netgauze_bgp_pkt::path_attribute::{MpReach, PathAttributeValue};
use netgauze_bgp_pkt::update::BgpUpdateMessage;

use crate::route::DesiredRoutes;

/// Prefixes desired and not yet written, with when they became desired.
#[derive(Debug, Default)]
pub struct Pending {
    since: HashMap<IpNet, Instant>,
    /// Desire times of prefixes encoded into the write buffer and not yet written; reused
    /// (cleared, not freed) between writes.
    encoded: Vec<Instant>,
}

impl Pending {
    /// `desired` replaces `previous` at `now`. While the session is `established`, prefixes
    /// not in `previous` start waiting (a prefix already waiting keeps its first time);
    /// waiting prefixes no longer desired are forgotten (withdrawn before being sent). A
    /// session coming up sends its whole table: that is not counted, so `established` is
    /// false until then.
    pub fn desire(
        &mut self,
        previous: Option<&DesiredRoutes>,
        desired: &DesiredRoutes,
        established: bool,
        now: Instant,
    ) {
        self.since.retain(|p, _| desired.contains_key(p));
        if !established {
            return;
        }
        for prefix in desired.keys() {
            if !previous.is_some_and(|d| d.contains_key(prefix)) {
                self.since.entry(*prefix).or_insert(now);
            }
        }
    }

    /// An UPDATE announcing `prefix` was encoded into the write buffer.
    pub fn encoded(&mut self, prefix: &IpNet) {
        if let Some(at) = self.since.remove(prefix) {
            self.encoded.push(at);
        }
    }

    /// The session converged to `desired`: its waiting prefixes that were not encoded will not
    /// be (their family is not carried, or the peer already has them), so they are forgotten.
    /// Prefixes of a newer set are kept.
    pub fn settle(&mut self, desired: &DesiredRoutes) {
        if !self.since.is_empty() {
            self.since.retain(|p, _| !desired.contains_key(p));
        }
    }

    /// The write buffer reached the socket at `now`: the time-to-announce of each prefix it
    /// carried.
    pub fn written(&mut self, now: Instant) -> impl Iterator<Item = Duration> + '_ {
        self.encoded
            .drain(..)
            .map(move |at| now.saturating_duration_since(at))
    }

    /// The session went down or the write failed: nothing waiting will be sent on it.
    pub fn clear(&mut self) {
        self.since.clear();
        self.encoded.clear();
        if self.since.capacity() > 1024 {
            self.since.shrink_to_fit();
        }
    }

    /// Prefixes waiting to be encoded.
    pub fn waiting(&self) -> usize {
        self.since.len()
    }
}

/// Calls `f` with each prefix `update` announces (IPv4 NLRI and MP_REACH_NLRI, RFC 4760 §3),
/// without collecting them.
pub fn for_each_announced(update: &BgpUpdateMessage, mut f: impl FnMut(IpNet)) {
    for a in update.nlri() {
        f(IpNet::V4(a.network().address()));
    }
    for attr in update.path_attributes() {
        match attr.value() {
            PathAttributeValue::MpReach(MpReach::Ipv4Unicast { nlri, .. }) => {
                nlri.iter()
                    .for_each(|a| f(IpNet::V4(a.network().address())));
            }
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) => {
                nlri.iter()
                    .for_each(|a| f(IpNet::V6(a.network().address())));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RouteAttrs;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn set(prefixes: &[&str]) -> DesiredRoutes {
        prefixes
            .iter()
            .map(|s| (p(s), RouteAttrs::default()))
            .collect()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_prefix_newly_desired_on_an_established_session_is_timed_from_desire_to_write() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let before = set(&["10.0.0.1/32"]);
        let after = set(&["10.0.0.1/32", "10.0.0.2/32"]);
        pending.desire(Some(&before), &after, true, t0);
        assert_eq!(pending.waiting(), 1, "only the new prefix waits");
        pending.encoded(&p("10.0.0.1/32"));
        pending.encoded(&p("10.0.0.2/32"));
        pending.settle(&after);
        assert_eq!(pending.waiting(), 0);
        let observed: Vec<Duration> = pending.written(t0 + 7 * MS).collect();
        assert_eq!(observed, vec![7 * MS]);
        assert_eq!(
            pending.written(t0 + 9 * MS).count(),
            0,
            "observed once: the buffer is drained"
        );
    }

    #[test]
    fn a_prefix_desired_again_before_it_was_sent_keeps_its_first_time() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let one = set(&["10.0.0.1/32"]);
        pending.desire(None, &one, true, t0);
        // A second set_routes within the coalescing window, with one more prefix.
        let two = set(&["10.0.0.1/32", "2001:db8::1/128"]);
        pending.desire(Some(&one), &two, true, t0 + 3 * MS);
        pending.desire(Some(&two), &two, true, t0 + 4 * MS);
        pending.encoded(&p("10.0.0.1/32"));
        pending.encoded(&p("2001:db8::1/128"));
        let mut observed: Vec<Duration> = pending.written(t0 + 10 * MS).collect();
        observed.sort();
        assert_eq!(observed, vec![7 * MS, 10 * MS]);
    }

    #[test]
    fn a_prefix_withdrawn_before_it_was_sent_is_forgotten() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let one = set(&["10.0.0.1/32"]);
        pending.desire(None, &one, true, t0);
        pending.desire(Some(&one), &set(&[]), true, t0 + MS);
        assert_eq!(pending.waiting(), 0);
        pending.encoded(&p("10.0.0.1/32"));
        assert_eq!(pending.written(t0 + 2 * MS).count(), 0);
    }

    #[test]
    fn prefixes_desired_before_the_session_is_established_are_not_timed() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let table = set(&["10.0.0.1/32", "10.0.0.2/32"]);
        pending.desire(None, &table, false, t0);
        pending.encoded(&p("10.0.0.1/32"));
        assert_eq!(pending.waiting(), 0);
        assert_eq!(pending.written(t0 + MS).count(), 0);
    }

    #[test]
    fn prefixes_the_session_does_not_send_are_dropped_when_it_has_converged() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let converged = set(&["2001:db8::1/128"]);
        pending.desire(None, &converged, true, t0);
        // An IPv4-only session: the IPv6 prefix is never encoded.
        let newer = set(&["2001:db8::1/128", "10.0.0.9/32"]);
        pending.desire(Some(&converged), &newer, true, t0 + MS);
        pending.settle(&converged);
        assert_eq!(pending.waiting(), 1, "the newer set's prefix still waits");
        pending.clear();
        assert_eq!(pending.waiting(), 0);
    }
}
