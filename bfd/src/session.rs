//! Sans-IO BFD session state machine, asynchronous mode (RFC 5880 §6).
//!
//! The driver owns the socket and the clock. It feeds a [`Session`] with [`Input`]s, each with
//! the current [`Instant`] and a source of randomness for jitter, and gets back an [`Output`]:
//! packets to send now, state changes, and the deadlines at which it must feed
//! [`Input::TimerFired`] next.
//!
//! ```text
//!   decoded packet ─┐                         ┌─> Action::Send(packet)     -> UDP socket
//!   timer fired ────┤                         ├─> Action::StateChanged     -> BGP session
//!   admin up/down ──┼─> Session::step(now) ───┼─> Action::Discarded        -> counters
//!   profile change ─┘                         └─> Timers {transmit, detect}-> sleep until
//! ```
//!
//! State changes go through one function, [`transition`], a match on `(State, Event)` whose
//! arms cite RFC 5880. Everything else here is the bookkeeping around it: the §6.8.1 state
//! variables, timer negotiation (§6.8.2, §6.8.3), detection time (§6.8.4), reception (§6.8.6)
//! and transmission (§6.8.7) including the Poll Sequence (§6.5).
//!
//! Not implemented: Demand mode (we never set D and ignore the peer's), Echo (we advertise a
//! Required Min Echo RX of zero), authentication (rejected by the decoder).

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use super::packet::{ControlPacket, Diag, Flags, State};
use super::profile::Profile;

/// Initial bfd.DesiredMinTxInterval floor while the session is not Up (RFC 5880 §6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// Source of randomness for transmit jitter (RFC 5880 §6.8.7), injected so that tests are
/// deterministic. Any `FnMut() -> u32` is one.
pub trait Entropy {
    /// A uniformly distributed 32-bit value.
    fn next_u32(&mut self) -> u32;
}

impl<F: FnMut() -> u32> Entropy for F {
    fn next_u32(&mut self) -> u32 {
        self()
    }
}

/// What happened to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A Control packet for this session, already decoded by [`ControlPacket::decode`] and
    /// TTL-checked by the driver.
    Packet(ControlPacket),
    /// The clock reached (or passed) a deadline from [`Output::timers`].
    TimerFired,
    /// The operator enabled the session.
    AdminUp,
    /// The operator disabled the session.
    AdminDown,
    /// New timers or mode for the session.
    ProfileChanged(Profile),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this packet now.
    Send(ControlPacket),
    /// bfd.SessionState changed; `diag` is the new bfd.LocalDiag. The BGP session watching
    /// this peer must be torn down when `from` is Up.
    StateChanged {
        /// State before.
        from: State,
        /// State after.
        to: State,
        /// Reason.
        diag: Diag,
    },
    /// A packet was dropped by a session-level check of RFC 5880 §6.8.6.
    Discarded(Discard),
}

/// Why a decoded packet was discarded by the session (RFC 5880 §6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Discard {
    /// Your Discriminator is nonzero and not ours: the driver demultiplexed wrongly.
    YourDiscriminatorMismatch {
        /// Your Discriminator in the packet.
        your_discr: u32,
    },
    /// Your Discriminator is zero but the sender is neither Down nor AdminDown.
    ZeroYourDiscriminator {
        /// Sender's state.
        state: State,
    },
    /// The local session is AdminDown.
    AdminDown,
}

/// Deadlines the driver must wake the session at, by feeding [`Input::TimerFired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timers {
    /// Next periodic transmission, if any is due (RFC 5880 §6.8.7).
    pub transmit: Option<Instant>,
    /// Detection time expiry, if the remote has been heard (RFC 5880 §6.8.4).
    pub detect: Option<Instant>,
}

impl Timers {
    /// Earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        match (self.transmit, self.detect) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Result of one [`Session::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// In order.
    pub actions: Vec<Action>,
    /// Deadlines after this step; replaces any earlier ones.
    pub timers: Timers,
}

/// How the driver picks the session a received packet belongs to (RFC 5880 §6.8.6; RFC 5881
/// §3 and RFC 5883 §4 for the address fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Demux {
    /// Your Discriminator is set: the session whose local discriminator it is, or none (drop).
    Discriminator(NonZeroU32),
    /// Your Discriminator is zero (the peer has not heard us yet): the session of the source
    /// and destination addresses, plus the interface for single-hop. The session itself then
    /// discards the packet unless the peer says Down or AdminDown.
    Addresses,
}

/// Demultiplexing key of a received packet.
pub fn demux(p: &ControlPacket) -> Demux {
    NonZeroU32::new(p.your_discr).map_or(Demux::Addresses, Demux::Discriminator)
}

/// Events the state table reacts to; the inputs after bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A valid packet arrived with this State field.
    Received(State),
    /// The Detection Time passed without a valid packet.
    DetectionTimeExpired,
    /// Operator enabled the session.
    AdminUp,
    /// Operator disabled the session.
    AdminDown,
}

/// The session state table: the new state and bfd.LocalDiag, or `None` to stay.
pub fn transition(state: State, event: Event) -> Option<(State, Diag)> {
    use Event::*;
    use State::{AdminDown as AdmDown, Down, Init, Up};
    match (state, event) {
        // §6.8.16: only the operator leaves AdminDown; the session restarts from Down.
        (AdmDown, AdminUp) => Some((Down, Diag::None)),
        // §6.8.6: "If bfd.SessionState is AdminDown, discard the packet"; §6.8.4 timers stop.
        (AdmDown, _) => None,
        // §6.8.16: administrative disable from any other state, diag 7.
        (_, AdminDown) => Some((AdmDown, Diag::AdministrativelyDown)),
        (_, AdminUp) => None,
        // §6.8.6: received AdminDown: "if bfd.SessionState is not Down, set bfd.LocalDiag to 3
        // and bfd.SessionState to Down".
        (Down, Received(AdmDown)) => None,
        (Init | Up, Received(AdmDown)) => Some((Down, Diag::NeighborSignaledSessionDown)),
        // §6.8.6 state table, Down: Down -> Init, Init -> Up.
        (Down, Received(Down)) => Some((Init, Diag::None)),
        (Down, Received(Init)) => Some((Up, Diag::None)),
        (Down, Received(Up)) => None,
        // §6.8.6 state table, Init: Init or Up -> Up.
        (Init, Received(Init | Up)) => Some((Up, Diag::None)),
        (Init, Received(Down)) => None,
        // §6.8.6 state table, Up: Down -> Down with diag 3.
        (Up, Received(Down)) => Some((Down, Diag::NeighborSignaledSessionDown)),
        (Up, Received(Init | Up)) => None,
        // §6.8.4: detection time expired in Init or Up: Down with diag 1.
        (Init | Up, DetectionTimeExpired) => Some((Down, Diag::ControlDetectionTimeExpired)),
        (Down, DetectionTimeExpired) => None,
    }
}

/// Values carried by the Poll Sequence in flight (RFC 5880 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Poll {
    desired_min_tx: Duration,
    required_min_rx: Duration,
}

/// One BFD session: the RFC 5880 §6.8.1 state variables plus timers.
#[derive(Debug, Clone)]
pub struct Session {
    profile: Profile,
    // --- RFC 5880 §6.8.1 ---
    state: State,
    remote_state: State,
    local_discr: NonZeroU32,
    remote_discr: u32,
    local_diag: Diag,
    /// bfd.DesiredMinTxInterval: what we advertise.
    desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval: what we advertise.
    required_min_rx: Duration,
    /// bfd.RemoteMinRxInterval.
    remote_min_rx: Duration,
    remote_demand_mode: bool,
    // --- from the last packet received ---
    remote_desired_min_tx: Duration,
    remote_detect_mult: u8,
    // --- §6.8.3: values actually used while a Poll Sequence defers a change ---
    tx_in_effect: Duration,
    rx_in_effect: Duration,
    poll: Option<Poll>,
    // --- timers ---
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    /// §6.8.16: AdminDown packets are sent until then.
    admin_down_until: Option<Instant>,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Session {
    /// A session in Down (RFC 5880 §6.8.1 initial values). Unless passive, its first packet is
    /// due at `now`.
    pub fn new(local_discr: NonZeroU32, profile: Profile, now: Instant) -> Session {
        let desired_min_tx = profile.desired_min_tx().max(SLOW_TX);
        let required_min_rx = profile.required_min_rx();
        let mut session = Session {
            profile,
            state: State::Down,
            remote_state: State::Down,
            local_discr,
            remote_discr: 0,
            local_diag: Diag::None,
            desired_min_tx,
            required_min_rx,
            // §6.8.1: "initialized to 1".
            remote_min_rx: Duration::from_micros(1),
            remote_demand_mode: false,
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            tx_in_effect: desired_min_tx,
            rx_in_effect: required_min_rx,
            poll: None,
            next_tx: None,
            detect_at: None,
            admin_down_until: None,
        };
        if session.may_transmit(now) {
            session.next_tx = Some(now);
        }
        session
    }

    /// Processes one input at time `now`.
    pub fn step(&mut self, now: Instant, input: Input, rng: &mut impl Entropy) -> Output {
        let mut actions = Vec::new();
        match input {
            Input::Packet(p) => self.on_packet(now, p, rng, &mut actions),
            Input::TimerFired => self.on_timer(now, rng, &mut actions),
            Input::AdminUp => self.apply(now, Event::AdminUp, &mut actions),
            Input::AdminDown => self.apply(now, Event::AdminDown, &mut actions),
            Input::ProfileChanged(p) => self.on_profile(now, p, rng),
        }
        Output {
            actions,
            timers: self.timers(),
        }
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.RemoteSessionState.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// bfd.LocalDiag.
    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }

    /// bfd.LocalDiscr.
    pub fn local_discr(&self) -> NonZeroU32 {
        self.local_discr
    }

    /// bfd.RemoteDiscr; zero until the peer is heard and after a detection timeout.
    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// Whether the peer asked for Demand mode (not supported here; reported for status).
    pub fn remote_demand_mode(&self) -> bool {
        self.remote_demand_mode
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Current deadlines.
    pub fn timers(&self) -> Timers {
        Timers {
            transmit: self.next_tx,
            detect: self.detect_at,
        }
    }

    /// Whether a Poll Sequence is in flight (RFC 5880 §6.5).
    pub fn poll_active(&self) -> bool {
        self.poll.is_some()
    }

    /// Negotiated transmit interval before jitter (RFC 5880 §6.8.2, §6.8.7): the larger of the
    /// local desired minimum TX in effect and bfd.RemoteMinRxInterval.
    pub fn transmit_interval(&self) -> Duration {
        self.tx_in_effect.max(self.remote_min_rx)
    }

    /// Detection time (RFC 5880 §6.8.4): remote Detect Mult times the larger of the local
    /// required minimum RX in effect and the remote's last Desired Min TX. `None` until the
    /// peer is heard.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_detect_mult != 0).then(|| {
            self.rx_in_effect.max(self.remote_desired_min_tx) * u32::from(self.remote_detect_mult)
        })
    }

    /// The packet this session would send now (RFC 5880 §6.8.7).
    fn packet(&self, poll: bool, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            flags: Flags {
                poll,
                final_,
                ..Flags::default()
            },
            detect_mult: self.profile.detect_mult(),
            my_discr: self.local_discr.get(),
            your_discr: self.remote_discr,
            desired_min_tx_us: micros(self.desired_min_tx).max(1),
            required_min_rx_us: micros(self.required_min_rx),
            required_min_echo_rx_us: 0,
        }
    }

    /// RFC 5880 §6.8.7 (and §6.1, §6.8.16): whether periodic packets may be sent.
    fn may_transmit(&self, now: Instant) -> bool {
        // §6.8.7: "MUST NOT transmit ... if bfd.RemoteDiscr is zero and the system is taking
        // the Passive role".
        let passive_silent = self.profile.passive_mode && self.remote_discr == 0;
        // §6.8.7: "MUST NOT periodically transmit ... if bfd.RemoteMinRxInterval is zero".
        let peer_refuses = self.remote_min_rx.is_zero();
        // §6.8.16: AdminDown is signalled for one remote detection time, then we fall silent.
        let admin_silent =
            self.state == State::AdminDown && self.admin_down_until.is_none_or(|t| now >= t);
        !(passive_silent || peer_refuses || admin_silent)
    }

    /// RFC 5880 §6.8.7 jitter: 75–100 % of the interval, 75–90 % when bfd.DetectMult is 1.
    fn jittered_interval(&self, rng: &mut impl Entropy) -> Duration {
        let interval = self.transmit_interval().as_nanos();
        let r = u128::from(rng.next_u32());
        // fraction = 0.75 + span * r / 2^32, span 0.25 or 0.15
        let span_pct: u128 = if self.profile.detect_mult() == 1 {
            15
        } else {
            25
        };
        let nanos = interval * (75 << 32) / (100 << 32) + interval * span_pct * r / (100 << 32);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Re-arms the transmit timer after anything that may change whether or how fast we send.
    fn reschedule_tx(&mut self, now: Instant, rng: &mut impl Entropy) {
        if !self.may_transmit(now) {
            self.next_tx = None;
            return;
        }
        match self.next_tx {
            // Starting to send (first packet, passive peer heard, peer accepts packets again).
            None => self.next_tx = Some(now),
            // §6.8.7: a shorter interval takes effect at once rather than after the old one.
            Some(t) => {
                let soonest = now + self.jittered_interval(rng);
                if t > soonest {
                    self.next_tx = Some(soonest);
                }
            }
        }
    }

    /// RFC 5880 §6.8.6, reception of a Control packet that passed the decoder's checks.
    fn on_packet(
        &mut self,
        now: Instant,
        p: ControlPacket,
        rng: &mut impl Entropy,
        out: &mut Vec<Action>,
    ) {
        // §6.8.6: a nonzero Your Discriminator selects the session; not ours: discard.
        if p.your_discr != 0 && p.your_discr != self.local_discr.get() {
            let your_discr = p.your_discr;
            out.push(Action::Discarded(Discard::YourDiscriminatorMismatch {
                your_discr,
            }));
            return;
        }
        // §6.8.6: "If the Your Discriminator field is zero and the State field is not Down or
        // AdminDown, the packet MUST be discarded."
        if p.your_discr == 0 && !matches!(p.state, State::Down | State::AdminDown) {
            out.push(Action::Discarded(Discard::ZeroYourDiscriminator {
                state: p.state,
            }));
            return;
        }
        // §6.8.6: "If bfd.SessionState is AdminDown, discard the packet" (checked before the
        // variable updates, so an AdminDown session keeps no detection timer).
        if self.state == State::AdminDown {
            out.push(Action::Discarded(Discard::AdminDown));
            return;
        }
        // §6.8.6: update the remote variables.
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_demand_mode = p.flags.demand;
        self.remote_min_rx = Duration::from_micros(u64::from(p.required_min_rx_us));
        self.remote_desired_min_tx = Duration::from_micros(u64::from(p.desired_min_tx_us));
        self.remote_detect_mult = p.detect_mult;
        // §6.5, §6.8.6: a Final terminates our Poll Sequence; deferred timers apply now.
        if p.flags.final_
            && let Some(poll) = self.poll.take()
        {
            self.finish_poll(poll);
        }
        // §6.8.4: (re)start the detection timer with the updated detection time.
        self.detect_at = self.detection_time().map(|d| now + d);
        // §6.8.6: the state table.
        self.apply(now, Event::Received(p.state), out);
        // §6.8.7: a Poll is answered at once with a Final, P clear, regardless of timers.
        if p.flags.poll {
            out.push(Action::Send(self.packet(false, true)));
        }
        // §6.8.2/§6.8.7: the negotiated interval may have changed.
        self.reschedule_tx(now, rng);
    }

    /// RFC 5880 §6.8.4 detection and §6.8.7 periodic transmission.
    fn on_timer(&mut self, now: Instant, rng: &mut impl Entropy, out: &mut Vec<Action>) {
        if self.detect_at.is_some_and(|t| t <= now) {
            self.detect_at = None;
            // §6.8.1: bfd.RemoteDiscr "MUST be reset to zero if the Detection Time expires".
            self.remote_discr = 0;
            self.apply(now, Event::DetectionTimeExpired, out);
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            if self.may_transmit(now) {
                // §6.5: every periodic packet of a Poll Sequence carries P.
                out.push(Action::Send(self.packet(self.poll.is_some(), false)));
                self.next_tx = Some(now + self.jittered_interval(rng));
            } else {
                self.next_tx = None;
            }
        }
    }

    /// A new profile: re-advertise timers (§6.8.3) and re-evaluate the Passive role (§6.1).
    fn on_profile(&mut self, now: Instant, profile: Profile, rng: &mut impl Entropy) {
        self.profile = profile;
        self.advertise_timers();
        self.reschedule_tx(now, rng);
    }

    /// Runs the state table and the side effects of a state change.
    fn apply(&mut self, now: Instant, event: Event, out: &mut Vec<Action>) {
        let Some((to, diag)) = transition(self.state, event) else {
            return;
        };
        let from = self.state;
        self.state = to;
        self.local_diag = diag;
        if from == State::Up {
            // A Poll Sequence only makes sense while Up; leaving Up restores slow timers at
            // once below.
            self.poll = None;
        }
        self.advertise_timers();
        match to {
            State::AdminDown => {
                // §6.8.16: keep telling the peer for one of its detection times, then stop.
                self.detect_at = None;
                let remote_detection = self.desired_min_tx.max(self.remote_min_rx)
                    * u32::from(self.profile.detect_mult());
                self.admin_down_until = Some(now + remote_detection);
                // Tell the peer at once rather than at the next periodic packet: a planned
                // stop waits for this one before it ends the session.
                if self.may_transmit(now) {
                    self.next_tx = Some(now);
                }
            }
            State::Down if from == State::AdminDown => {
                self.admin_down_until = None;
                if self.may_transmit(now) {
                    self.next_tx = Some(now);
                }
            }
            _ => {}
        }
        out.push(Action::StateChanged { from, to, diag });
    }

    /// RFC 5880 §6.8.3: sets bfd.DesiredMinTxInterval (at least one second unless Up) and
    /// bfd.RequiredMinRxInterval from the profile, starting a Poll Sequence when they change
    /// while Up.
    fn advertise_timers(&mut self) {
        let desired_min_tx = if self.state == State::Up {
            self.profile.desired_min_tx()
        } else {
            self.profile.desired_min_tx().max(SLOW_TX)
        };
        let required_min_rx = self.profile.required_min_rx();
        if (desired_min_tx, required_min_rx) == (self.desired_min_tx, self.required_min_rx) {
            return;
        }
        self.desired_min_tx = desired_min_tx;
        self.required_min_rx = required_min_rx;
        if self.state != State::Up {
            // Nothing to protect: the peer is not detecting us on fast timers.
            self.tx_in_effect = desired_min_tx;
            self.rx_in_effect = required_min_rx;
            return;
        }
        // §6.8.3: a faster TX or a slower RX is safe at once; a slower TX or a faster RX waits
        // for the Final, so that neither side's detection time is briefly too short.
        self.tx_in_effect = self.tx_in_effect.min(desired_min_tx);
        self.rx_in_effect = self.rx_in_effect.max(required_min_rx);
        // §6.5: one Poll Sequence at a time; a change during one is polled after its Final.
        if self.poll.is_none() {
            self.poll = Some(Poll {
                desired_min_tx,
                required_min_rx,
            });
        }
    }

    /// RFC 5880 §6.5, §6.8.3: the peer acknowledged `poll`; apply what it carried and poll
    /// again if the advertised values moved on meanwhile.
    fn finish_poll(&mut self, poll: Poll) {
        self.tx_in_effect = self.desired_min_tx.min(poll.desired_min_tx);
        self.rx_in_effect = self.required_min_rx.max(poll.required_min_rx);
        let current = Poll {
            desired_min_tx: self.desired_min_tx,
            required_min_rx: self.required_min_rx,
        };
        if current != poll {
            self.poll = Some(current);
        }
    }
}

#[cfg(test)]
mod tests;
