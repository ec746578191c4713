//! foca's scheduled events, and what a stall of this node does to them.
//!
//! foca asks for timers (`to_schedule`) and judges members when they fire: a probe whose ack
//! has not arrived makes its target a suspect, a suspicion that was not refuted in time makes
//! it down. Both judgements assume this node was running all along. When it was not (the
//! machine was overloaded, the VM was descheduled), a timer fires late, and what it judges
//! is this node's own absence as much as the member's. Two rules keep such a stall from
//! turning into a takeover of a healthy node's addresses:
//!
//! - the gossip task reads every datagram that has arrived before it hands foca a due timer
//!   (so an ack or a refutation that came during the stall counts), and
//! - [`Timers::take_due`] reports how late the oldest due timer is; when that exceeds the
//!   stall threshold, every suspicion this node holds gets at least a full suspicion timeout
//!   from now ([`Timers::extend_suspicions`]): the suspect gets its refutation window of this
//!   node's attention, not of its absence.
//!
//! A node that was truly dead is still declared down by any node that was not stalled; only
//! when every observer keeps stalling does detection wait (slower failover, not a false one).
//!
//! Pure: instants are passed in.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use foca::Timer;
use tokio::time::Instant;

/// Pending timers, earliest first.
#[derive(Debug)]
pub struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, Timer<T>>,
    next: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            events: BTreeMap::new(),
            next: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Schedules `timer` at `at`.
    pub fn schedule(&mut self, at: Instant, timer: Timer<T>) {
        let id = self.next;
        self.next += 1;
        self.heap.push(Reverse((at, id)));
        self.events.insert(id, timer);
    }

    /// When the next timer is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The timers due at `now`, in order, and how late the oldest of them is (zero when none
    /// is due).
    pub fn take_due(&mut self, now: Instant) -> (Vec<Timer<T>>, Duration) {
        let mut due = Vec::new();
        let mut late = Duration::ZERO;
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if due.is_empty() {
                late = now.saturating_duration_since(at);
            }
            if let Some(timer) = self.events.remove(&id) {
                due.push(timer);
            }
        }
        (due, late)
    }

    /// Puts `due` timers back to fire again at `at` (in their order).
    pub fn reschedule(&mut self, due: impl IntoIterator<Item = Timer<T>>, at: Instant) {
        for timer in due {
            self.schedule(at, timer);
        }
    }

    /// Moves every pending suspicion (foca's `ChangeSuspectToDown`) due before `not_before`
    /// to `not_before`; returns how many moved.
    pub fn extend_suspicions(&mut self, not_before: Instant) -> usize {
        let mut moved = 0;
        let heap = std::mem::take(&mut self.heap);
        self.heap = heap
            .into_iter()
            .map(|Reverse((at, id))| {
                let suspicion = matches!(
                    self.events.get(&id),
                    Some(Timer::ChangeSuspectToDown { .. })
                );
                if suspicion && at < not_before {
                    moved += 1;
                    Reverse((not_before, id))
                } else {
                    Reverse((at, id))
                }
            })
            .collect();
        moved
    }

    /// Number of pending timers.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no timer is pending.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Whether a due timer `late` by this much means this node itself was stalled: later than
/// the probe round-trip timeout, the finest judgement foca makes.
pub fn is_stall(late: Duration, probe_rtt: Duration) -> bool {
    late > probe_rtt
}

/// Splits `due` into the suspicions (foca's `ChangeSuspectToDown`) and the rest, in order.
pub fn split_suspicions<T>(due: Vec<Timer<T>>) -> (Vec<Timer<T>>, Vec<Timer<T>>) {
    due.into_iter()
        .partition(|t| matches!(t, Timer::ChangeSuspectToDown { .. }))
}

#[cfg(test)]
mod tests {
    use foca::Incarnation;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn suspicion(member: u8) -> Timer<u8> {
        // Tokens and incarnations are foca's business; any value serves here.
        let incarnation: Incarnation = 0;
        Timer::ChangeSuspectToDown {
            member_id: member,
            incarnation,
            token: 0,
        }
    }

    fn is_suspicion_of(t: &Timer<u8>, m: u8) -> bool {
        matches!(t, Timer::ChangeSuspectToDown { member_id, .. } if *member_id == m)
    }

    #[test]
    fn due_timers_come_out_in_order_with_the_lateness_of_the_oldest() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(t0 + 20 * MS, Timer::PeriodicGossip(2));
        timers.schedule(t0 + 10 * MS, Timer::ProbeRandomMember(1));
        timers.schedule(t0 + 30 * MS, suspicion(3));
        assert_eq!(timers.next_deadline(), Some(t0 + 10 * MS));
        let (due, late) = timers.take_due(t0 + 5 * MS);
        assert!(due.is_empty());
        assert_eq!(late, Duration::ZERO);
        let (due, late) = timers.take_due(t0 + 25 * MS);
        assert!(matches!(
            due.as_slice(),
            [Timer::ProbeRandomMember(1), Timer::PeriodicGossip(2)]
        ));
        assert_eq!(late, 15 * MS, "from the oldest due timer");
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn after_a_stall_every_suspect_gets_a_full_timeout_from_now() {
        let t0 = Instant::now();
        let s = 60 * MS;
        let mut timers = Timers::default();
        timers.schedule(t0 + 10 * MS, Timer::ProbeRandomMember(1));
        timers.schedule(t0 + 40 * MS, suspicion(1)); // ran out during the stall
        timers.schedule(t0 + 130 * MS, suspicion(2)); // would run out soon after it
        timers.schedule(t0 + 500 * MS, suspicion(3)); // far enough already
        timers.schedule(t0 + 110 * MS, Timer::PeriodicGossip(2));
        // This node was not scheduled from t0 + 5 ms to t0 + 100 ms.
        let now = t0 + 100 * MS;
        let (due, late) = timers.take_due(now);
        assert_eq!(late, 90 * MS);
        assert!(is_stall(late, 8 * MS));
        let (suspicions, rest) = split_suspicions(due);
        assert!(matches!(rest.as_slice(), [Timer::ProbeRandomMember(1)]));
        assert!(is_suspicion_of(&suspicions[0], 1) && suspicions.len() == 1);
        timers.reschedule(suspicions, now + s);
        assert_eq!(timers.extend_suspicions(now + s), 1, "only member 2's");

        let (due, _) = timers.take_due(now + s - MS);
        assert!(
            matches!(due.as_slice(), [Timer::PeriodicGossip(2)]),
            "no suspect is declared down within a full timeout of the stall's end"
        );
        let (due, _) = timers.take_due(now + s);
        assert_eq!(due.len(), 2);
        assert!(due.iter().any(|t| is_suspicion_of(t, 1)));
        assert!(due.iter().any(|t| is_suspicion_of(t, 2)));
        let (due, _) = timers.take_due(t0 + 500 * MS);
        assert!(due.iter().all(|t| is_suspicion_of(t, 3)) && due.len() == 1);
        assert!(timers.is_empty());
    }

    #[test]
    fn ordinary_timer_jitter_is_not_a_stall() {
        assert!(!is_stall(2 * MS, 8 * MS));
        assert!(!is_stall(8 * MS, 8 * MS));
        assert!(is_stall(9 * MS, 8 * MS));
    }
}
