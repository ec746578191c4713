//! Tables of (state, input) -> (state, outputs), and two sessions wired back to back on a
//! simulated clock. No sleeps: every Instant is `t0 + offset`.

use std::collections::VecDeque;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn discr(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Jitter at the bottom of the range (75 %).
fn low() -> impl FnMut() -> u32 {
    || 0
}

/// Jitter at the top of the range (just under 100 % or 90 %).
fn high() -> impl FnMut() -> u32 {
    || u32::MAX
}

/// Deterministic pseudo-random jitter for the back-to-back runs.
fn lcg(seed: u32) -> impl FnMut() -> u32 {
    let mut x = seed;
    move || {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        x
    }
}

/// A packet from peer discriminator 7 with the peer's timers.
fn from_peer(state: State, your_discr: u32, tx_ms: u32, rx_ms: u32) -> ControlPacket {
    ControlPacket {
        diag: Diag::None,
        state,
        flags: Flags::default(),
        detect_mult: 3,
        my_discr: 7,
        your_discr,
        desired_min_tx_us: tx_ms * 1000,
        required_min_rx_us: rx_ms * 1000,
        required_min_echo_rx_us: 0,
    }
}

fn sent(out: &Output) -> Vec<ControlPacket> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn changes(out: &Output) -> Vec<(State, State, Diag)> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChanged { from, to, diag } => Some((*from, *to, *diag)),
            _ => None,
        })
        .collect()
}

/// Session 1 brought to Up against peer 7 by packets, poll sequence completed, both sides at
/// `tx_ms`/`rx_ms` of the peer. Returns the session and the time of the last packet.
fn up_session(profile: Profile, peer_tx_ms: u32, peer_rx_ms: u32) -> (Session, Instant) {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), profile, t0);
    s.step(
        t0,
        Input::Packet(from_peer(State::Init, 1, 1000, peer_rx_ms)),
        &mut low(),
    );
    assert_eq!(s.state(), State::Up);
    let mut fin = from_peer(State::Up, 1, peer_tx_ms, peer_rx_ms);
    fin.flags.final_ = true;
    let t = t0 + 10 * MS;
    s.step(t, Input::Packet(fin), &mut low());
    assert!(!s.poll_active());
    (s, t)
}

/// Expected outcome of one row of the state table.
type Transition = Option<(State, Diag)>;

#[test]
fn state_table_covers_every_state_and_event() {
    use Diag as D;
    use Event::*;
    use State::{AdminDown as AD, Down, Init, Up};
    #[rustfmt::skip]
    let table: &[(State, Event, Transition)] = &[
        (AD,   AdminUp,              Some((Down, D::None))),
        (AD,   AdminDown,            None),
        (AD,   Received(Down),       None),
        (AD,   Received(Init),       None),
        (AD,   Received(Up),         None),
        (AD,   Received(AD),         None),
        (AD,   DetectionTimeExpired, None),
        (Down, AdminDown,            Some((AD, D::AdministrativelyDown))),
        (Down, AdminUp,              None),
        (Down, Received(AD),         None),
        (Down, Received(Down),       Some((Init, D::None))),
        (Down, Received(Init),       Some((Up, D::None))),
        (Down, Received(Up),         None),
        (Down, DetectionTimeExpired, None),
        (Init, AdminDown,            Some((AD, D::AdministrativelyDown))),
        (Init, AdminUp,              None),
        (Init, Received(AD),         Some((Down, D::NeighborSignaledSessionDown))),
        (Init, Received(Down),       None),
        (Init, Received(Init),       Some((Up, D::None))),
        (Init, Received(Up),         Some((Up, D::None))),
        (Init, DetectionTimeExpired, Some((Down, D::ControlDetectionTimeExpired))),
        (Up,   AdminDown,            Some((AD, D::AdministrativelyDown))),
        (Up,   AdminUp,              None),
        (Up,   Received(AD),         Some((Down, D::NeighborSignaledSessionDown))),
        (Up,   Received(Down),       Some((Down, D::NeighborSignaledSessionDown))),
        (Up,   Received(Init),       None),
        (Up,   Received(Up),         None),
        (Up,   DetectionTimeExpired, Some((Down, D::ControlDetectionTimeExpired))),
    ];
    for &(state, event, want) in table {
        assert_eq!(transition(state, event), want, "{state:?} + {event:?}");
    }
}

#[test]
fn new_session_is_down_and_sends_a_slow_down_packet_at_once() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.timers().transmit, Some(t0));
    let out = s.step(t0, Input::TimerFired, &mut low());
    let p = sent(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].state, State::Down);
    assert_eq!(p[0].my_discr, 1);
    assert_eq!(p[0].your_discr, 0);
    assert_eq!(p[0].detect_mult, 3);
    assert_eq!(
        p[0].desired_min_tx_us, 1_000_000,
        "§6.8.3: 1 s while not Up"
    );
    assert_eq!(p[0].required_min_rx_us, 300_000);
    assert_eq!(p[0].flags, Flags::default());
}

#[test]
fn sends_no_faster_than_once_a_second_while_not_up() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    let out = s.step(t0, Input::TimerFired, &mut low());
    assert_eq!(
        out.timers.transmit,
        Some(t0 + 750 * MS),
        "1 s less 25 % jitter"
    );
    let out = s.step(t0 + 750 * MS, Input::TimerFired, &mut high());
    let next = out.timers.transmit.unwrap() - (t0 + 750 * MS);
    assert!(next > 999 * MS && next <= 1000 * MS, "{next:?}");
}

#[test]
fn timer_fired_before_a_deadline_does_nothing() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    s.step(t0, Input::TimerFired, &mut low());
    let out = s.step(t0 + 749 * MS, Input::TimerFired, &mut low());
    assert!(out.actions.is_empty());
    assert_eq!(out.timers.transmit, Some(t0 + 750 * MS));
}

#[test]
fn down_session_goes_init_when_peer_is_down_then_up_when_peer_is_init() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    let out = s.step(
        t0,
        Input::Packet(from_peer(State::Down, 0, 1000, 300)),
        &mut low(),
    );
    assert_eq!(changes(&out), [(State::Down, State::Init, Diag::None)]);
    assert_eq!(s.remote_discr(), 7);
    let out = s.step(
        t0 + MS,
        Input::Packet(from_peer(State::Up, 1, 1000, 300)),
        &mut low(),
    );
    assert_eq!(changes(&out), [(State::Init, State::Up, Diag::None)]);
}

#[test]
fn down_session_goes_straight_up_when_peer_is_init() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    let out = s.step(
        t0,
        Input::Packet(from_peer(State::Init, 1, 1000, 300)),
        &mut low(),
    );
    assert_eq!(changes(&out), [(State::Down, State::Up, Diag::None)]);
}

#[test]
fn up_session_goes_down_with_diag_3_when_peer_signals_down() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let out = s.step(
        t,
        Input::Packet(from_peer(State::Down, 1, 1000, 300)),
        &mut low(),
    );
    assert_eq!(
        changes(&out),
        [(State::Up, State::Down, Diag::NeighborSignaledSessionDown)]
    );
}

#[test]
fn admin_down_from_peer_takes_an_up_session_down_with_diag_3() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let mut p = from_peer(State::AdminDown, 1, 1000, 300);
    p.diag = Diag::AdministrativelyDown;
    let out = s.step(t, Input::Packet(p), &mut low());
    assert_eq!(
        changes(&out),
        [(State::Up, State::Down, Diag::NeighborSignaledSessionDown)]
    );
    let next = s.step(out.timers.transmit.unwrap(), Input::TimerFired, &mut low());
    assert_eq!(sent(&next)[0].diag, Diag::NeighborSignaledSessionDown);
}

#[test]
fn admin_down_from_peer_leaves_a_down_session_down() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    let out = s.step(
        t0,
        Input::Packet(from_peer(State::AdminDown, 0, 1000, 300)),
        &mut low(),
    );
    assert!(changes(&out).is_empty());
    assert_eq!(s.state(), State::Down);
}

#[test]
fn demultiplexes_by_your_discriminator_or_else_by_addresses() {
    assert_eq!(
        demux(&from_peer(State::Up, 9, 300, 300)),
        Demux::Discriminator(discr(9))
    );
    assert_eq!(
        demux(&from_peer(State::Down, 0, 300, 300)),
        Demux::Addresses
    );
}

#[test]
fn discards_a_packet_addressed_to_another_discriminator() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    let out = s.step(
        t0,
        Input::Packet(from_peer(State::Init, 2, 1000, 300)),
        &mut low(),
    );
    assert_eq!(
        out.actions,
        [Action::Discarded(Discard::YourDiscriminatorMismatch {
            your_discr: 2
        })]
    );
    assert_eq!(s.remote_discr(), 0);
}

#[test]
fn discards_a_packet_without_your_discriminator_unless_the_peer_is_down() {
    for state in [State::Init, State::Up] {
        let t0 = Instant::now();
        let mut s = Session::new(discr(1), Profile::default(), t0);
        let out = s.step(
            t0,
            Input::Packet(from_peer(state, 0, 1000, 300)),
            &mut low(),
        );
        assert_eq!(
            out.actions,
            [Action::Discarded(Discard::ZeroYourDiscriminator { state })]
        );
        assert_eq!(s.state(), State::Down);
    }
}

#[test]
fn admin_down_signals_diag_7_for_one_detection_time_then_falls_silent() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let out = s.step(t, Input::AdminDown, &mut low());
    assert_eq!(
        changes(&out),
        [(State::Up, State::AdminDown, Diag::AdministrativelyDown)]
    );
    assert_eq!(out.timers.detect, None);
    let mut now = out.timers.transmit.unwrap();
    let mut admin_down_packets = 0;
    while let Some(next) = s.timers().transmit {
        now = next.max(now);
        for p in sent(&s.step(now, Input::TimerFired, &mut low())) {
            assert_eq!(
                (p.state, p.diag),
                (State::AdminDown, Diag::AdministrativelyDown)
            );
            admin_down_packets += 1;
        }
    }
    // 3 × 1 s (slow timers once not Up), packets every 750 ms after the first.
    assert!(admin_down_packets >= 3, "{admin_down_packets}");
    assert!(now - t <= 3000 * MS + 750 * MS, "{:?}", now - t);
}

#[test]
fn admin_down_session_discards_packets() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    s.step(t0, Input::AdminDown, &mut low());
    let out = s.step(
        t0,
        Input::Packet(from_peer(State::Down, 0, 1000, 300)),
        &mut low(),
    );
    assert_eq!(out.actions, [Action::Discarded(Discard::AdminDown)]);
    assert_eq!(s.state(), State::AdminDown);
}

#[test]
fn admin_up_restarts_the_session_from_down_and_sends_at_once() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    s.step(t0, Input::AdminDown, &mut low());
    let t = t0 + 10_000 * MS;
    s.step(t, Input::TimerFired, &mut low());
    assert_eq!(s.timers().transmit, None);
    let out = s.step(t, Input::AdminUp, &mut low());
    assert_eq!(changes(&out), [(State::AdminDown, State::Down, Diag::None)]);
    assert_eq!(out.timers.transmit, Some(t));
}

#[test]
fn detection_timeout_takes_the_session_down_after_exactly_detect_mult_times_interval() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    assert_eq!(s.detection_time(), Some(900 * MS));
    assert_eq!(s.timers().detect, Some(t + 900 * MS));
    let early = s.step(
        t + 900 * MS - Duration::from_nanos(1),
        Input::TimerFired,
        &mut low(),
    );
    assert!(changes(&early).is_empty());
    let out = s.step(t + 900 * MS, Input::TimerFired, &mut low());
    assert_eq!(
        changes(&out),
        [(State::Up, State::Down, Diag::ControlDetectionTimeExpired)]
    );
    assert_eq!(s.remote_discr(), 0, "§6.8.1");
    assert_eq!(out.timers.detect, None);
}

#[test]
fn each_packet_restarts_the_detection_timer() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let later = t + 800 * MS;
    s.step(
        later,
        Input::Packet(from_peer(State::Up, 1, 300, 300)),
        &mut low(),
    );
    assert_eq!(s.timers().detect, Some(later + 900 * MS));
}

#[test]
fn detection_time_uses_the_slower_of_local_rx_and_remote_tx() {
    let (s, _) = up_session(Profile::default(), 500, 300);
    assert_eq!(s.detection_time(), Some(1500 * MS), "3 × max(300, 500)");
    let slow_rx = Profile {
        receive_interval: 700,
        ..Profile::default()
    };
    let (s, _) = up_session(slow_rx, 500, 300);
    assert_eq!(s.detection_time(), Some(2100 * MS), "3 × max(700, 500)");
}

#[test]
fn timer_negotiation_picks_the_slower_side() {
    let (s, _) = up_session(Profile::default(), 300, 500);
    assert_eq!(
        s.transmit_interval(),
        500 * MS,
        "peer can only receive every 500 ms"
    );
    let slow_tx = Profile {
        transmit_interval: 800,
        ..Profile::default()
    };
    let (s, _) = up_session(slow_tx, 300, 100);
    assert_eq!(
        s.transmit_interval(),
        800 * MS,
        "we only want to send every 800 ms"
    );
}

#[test]
fn transmit_jitter_is_75_to_100_percent_of_the_interval() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let fire = s.timers().transmit.unwrap().max(t);
    let out = s.step(fire, Input::TimerFired, &mut low());
    assert_eq!(out.timers.transmit, Some(fire + 225 * MS));
    let out = s.step(fire + 225 * MS, Input::TimerFired, &mut high());
    let gap = out.timers.transmit.unwrap() - (fire + 225 * MS);
    assert!(gap > 299 * MS && gap < 300 * MS, "{gap:?}");
}

#[test]
fn transmit_jitter_is_75_to_90_percent_when_detect_mult_is_1() {
    let one = Profile {
        detect_multiplier: 1,
        ..Profile::default()
    };
    let (mut s, t) = up_session(one, 300, 300);
    let fire = s.timers().transmit.unwrap().max(t);
    let out = s.step(fire, Input::TimerFired, &mut high());
    let gap = out.timers.transmit.unwrap() - fire;
    assert!(gap > 269 * MS && gap < 270 * MS, "{gap:?}");
    let out = s.step(fire + gap, Input::TimerFired, &mut low());
    assert_eq!(out.timers.transmit.unwrap() - (fire + gap), 225 * MS);
}

#[test]
fn going_up_polls_for_the_fast_timers_until_final() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    s.step(
        t0,
        Input::Packet(from_peer(State::Init, 1, 1000, 300)),
        &mut low(),
    );
    assert!(s.poll_active(), "§6.8.3: DesiredMinTx changed from 1 s");
    let out = s.step(t0, Input::TimerFired, &mut low());
    let p = sent(&out)[0];
    assert!(p.flags.poll && !p.flags.final_);
    assert_eq!(p.desired_min_tx_us, 300_000);
    assert_eq!(
        s.transmit_interval(),
        300 * MS,
        "a faster TX applies at once"
    );
    let mut fin = from_peer(State::Up, 1, 300, 300);
    fin.flags.final_ = true;
    s.step(t0 + MS, Input::Packet(fin), &mut low());
    assert!(!s.poll_active());
    let out = s.step(s.timers().transmit.unwrap(), Input::TimerFired, &mut low());
    assert!(!sent(&out)[0].flags.poll);
}

#[test]
fn slower_tx_while_up_is_advertised_at_once_but_used_only_after_final() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let slower = Profile {
        transmit_interval: 1000,
        ..Profile::default()
    };
    s.step(t, Input::ProfileChanged(slower), &mut low());
    assert!(s.poll_active());
    let fire = s.timers().transmit.unwrap();
    let p = sent(&s.step(fire, Input::TimerFired, &mut low()))[0];
    assert!(p.flags.poll);
    assert_eq!(p.desired_min_tx_us, 1_000_000);
    assert_eq!(
        s.transmit_interval(),
        300 * MS,
        "§6.8.3: old interval until Final"
    );
    let mut fin = from_peer(State::Up, 1, 300, 300);
    fin.flags.final_ = true;
    s.step(fire + MS, Input::Packet(fin), &mut low());
    assert_eq!(s.transmit_interval(), 1000 * MS);
}

#[test]
fn faster_rx_while_up_keeps_the_old_detection_time_until_final() {
    let (mut s, t) = up_session(Profile::default(), 100, 300);
    assert_eq!(s.detection_time(), Some(900 * MS));
    let faster = Profile {
        receive_interval: 100,
        ..Profile::default()
    };
    s.step(t, Input::ProfileChanged(faster), &mut low());
    let p = sent(&s.step(s.timers().transmit.unwrap(), Input::TimerFired, &mut low()))[0];
    assert_eq!(p.required_min_rx_us, 100_000);
    assert_eq!(
        s.detection_time(),
        Some(900 * MS),
        "§6.8.3: old RX until Final"
    );
    let mut fin = from_peer(State::Up, 1, 100, 300);
    fin.flags.final_ = true;
    s.step(t + 100 * MS, Input::Packet(fin), &mut low());
    assert_eq!(s.detection_time(), Some(300 * MS));
}

#[test]
fn slower_rx_while_up_lengthens_detection_at_once() {
    let (mut s, t) = up_session(Profile::default(), 100, 300);
    let slower = Profile {
        receive_interval: 500,
        ..Profile::default()
    };
    s.step(t, Input::ProfileChanged(slower), &mut low());
    assert!(s.poll_active());
    assert_eq!(s.detection_time(), Some(1500 * MS));
}

#[test]
fn a_change_during_a_poll_is_polled_again_after_final() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let p1 = Profile {
        transmit_interval: 500,
        ..Profile::default()
    };
    let p2 = Profile {
        transmit_interval: 900,
        ..Profile::default()
    };
    s.step(t, Input::ProfileChanged(p1), &mut low());
    s.step(t + MS, Input::ProfileChanged(p2), &mut low());
    let mut fin = from_peer(State::Up, 1, 300, 300);
    fin.flags.final_ = true;
    s.step(t + 2 * MS, Input::Packet(fin), &mut low());
    assert_eq!(
        s.transmit_interval(),
        500 * MS,
        "only what the peer acknowledged"
    );
    assert!(s.poll_active(), "900 ms not yet acknowledged");
    s.step(t + 3 * MS, Input::Packet(fin), &mut low());
    assert_eq!(s.transmit_interval(), 900 * MS);
    assert!(!s.poll_active());
}

#[test]
fn a_final_without_a_poll_in_flight_changes_nothing() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let mut fin = from_peer(State::Up, 1, 300, 300);
    fin.flags.final_ = true;
    let out = s.step(t + MS, Input::Packet(fin), &mut low());
    assert!(out.actions.is_empty());
    assert_eq!(s.transmit_interval(), 300 * MS);
}

#[test]
fn answers_a_poll_at_once_with_final_and_without_poll() {
    let (mut s, t) = up_session(Profile::default(), 300, 300);
    let mut poll = from_peer(State::Up, 1, 300, 300);
    poll.flags.poll = true;
    let out = s.step(t + MS, Input::Packet(poll), &mut low());
    let p = sent(&out);
    assert_eq!(p.len(), 1);
    assert!(p[0].flags.final_ && !p[0].flags.poll);
    assert_eq!(p[0].state, State::Up);
}

#[test]
fn leaving_up_cancels_the_poll_and_returns_to_slow_timers() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    s.step(
        t0,
        Input::Packet(from_peer(State::Init, 1, 1000, 300)),
        &mut low(),
    );
    assert!(s.poll_active());
    s.step(
        t0 + MS,
        Input::Packet(from_peer(State::Down, 1, 1000, 300)),
        &mut low(),
    );
    assert_eq!(s.state(), State::Down);
    assert!(!s.poll_active());
    assert_eq!(s.transmit_interval(), 1000 * MS);
}

#[test]
fn passive_session_waits_for_a_packet_before_sending() {
    let t0 = Instant::now();
    let passive = Profile {
        passive_mode: true,
        ..Profile::default()
    };
    let mut s = Session::new(discr(1), passive, t0);
    assert_eq!(s.timers().transmit, None);
    assert!(
        s.step(t0 + 5000 * MS, Input::TimerFired, &mut low())
            .actions
            .is_empty()
    );
    let t = t0 + 6000 * MS;
    let out = s.step(
        t,
        Input::Packet(from_peer(State::Down, 0, 1000, 300)),
        &mut low(),
    );
    assert_eq!(out.timers.transmit, Some(t));
    let p = sent(&s.step(t, Input::TimerFired, &mut low()))[0];
    assert_eq!((p.state, p.your_discr), (State::Init, 7));
}

#[test]
fn passive_session_falls_silent_again_after_a_detection_timeout() {
    let passive = Profile {
        passive_mode: true,
        ..Profile::default()
    };
    let (mut s, _) = up_session(passive, 300, 300);
    let deadline = s.timers().detect.unwrap();
    s.step(deadline, Input::TimerFired, &mut low());
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.timers().transmit, None);
}

#[test]
fn turning_passive_mode_off_starts_sending_at_once() {
    let t0 = Instant::now();
    let passive = Profile {
        passive_mode: true,
        ..Profile::default()
    };
    let mut s = Session::new(discr(1), passive, t0);
    let t = t0 + 100 * MS;
    let out = s.step(t, Input::ProfileChanged(Profile::default()), &mut low());
    assert_eq!(out.timers.transmit, Some(t));
}

#[test]
fn stops_periodic_transmission_when_the_peer_requires_zero_rx() {
    let t0 = Instant::now();
    let mut s = Session::new(discr(1), Profile::default(), t0);
    let out = s.step(
        t0,
        Input::Packet(from_peer(State::Down, 0, 1000, 0)),
        &mut low(),
    );
    assert_eq!(out.timers.transmit, None);
}

/// Two sessions on a zero-latency link, driven by a simulated clock.
struct Link {
    now: Instant,
    sessions: [Session; 2],
    rngs: [Box<dyn FnMut() -> u32>; 2],
    /// Deliver packets from side i to the other side.
    deliver: [bool; 2],
    changes: Vec<(usize, Instant, State, State, Diag)>,
    sent: Vec<(usize, Instant, ControlPacket)>,
    discards: Vec<(usize, Discard)>,
}

impl Link {
    fn new(a: Profile, b: Profile) -> Link {
        let now = Instant::now();
        Link {
            now,
            sessions: [
                Session::new(discr(1), a, now),
                Session::new(discr(2), b, now),
            ],
            rngs: [Box::new(lcg(1)), Box::new(lcg(2))],
            deliver: [true, true],
            changes: Vec::new(),
            sent: Vec::new(),
            discards: Vec::new(),
        }
    }

    fn step(&mut self, side: usize, input: Input, queue: &mut VecDeque<(usize, ControlPacket)>) {
        let out = self.sessions[side].step(self.now, input, &mut self.rngs[side]);
        for action in out.actions {
            match action {
                Action::Send(p) => {
                    self.sent.push((side, self.now, p));
                    if self.deliver[side] {
                        queue.push_back((1 - side, p));
                    }
                }
                Action::StateChanged { from, to, diag } => {
                    self.changes.push((side, self.now, from, to, diag))
                }
                Action::Discarded(d) => self.discards.push((side, d)),
            }
        }
    }

    /// Advances the clock deadline by deadline until `until`.
    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let next = self.sessions.iter().filter_map(|s| s.timers().next()).min();
            let Some(next) = next.filter(|&n| n <= until) else {
                break;
            };
            self.now = self.now.max(next);
            let mut queue = VecDeque::new();
            for side in 0..2 {
                if self.sessions[side]
                    .timers()
                    .next()
                    .is_some_and(|t| t <= self.now)
                {
                    self.step(side, Input::TimerFired, &mut queue);
                }
            }
            while let Some((side, p)) = queue.pop_front() {
                self.step(side, Input::Packet(p), &mut queue);
            }
        }
        self.now = until;
    }

    fn states(&self) -> [State; 2] {
        [self.sessions[0].state(), self.sessions[1].state()]
    }
}

#[test]
fn back_to_back_sessions_complete_the_three_way_handshake_and_settle_on_fast_timers() {
    let mut link = Link::new(Profile::default(), Profile::default());
    link.run_for(3000 * MS);
    assert_eq!(link.states(), [State::Up, State::Up]);
    let ups: Vec<_> = link
        .changes
        .iter()
        .map(|&(side, _, from, to, _)| (side, from, to))
        .collect();
    // Both start at t0, so both send Down at once: each goes Init, then Up.
    assert_eq!(
        ups,
        [
            (1, State::Down, State::Init),
            (0, State::Down, State::Init),
            (1, State::Init, State::Up),
            (0, State::Init, State::Up),
        ]
    );
    assert_eq!(link.discards, []);
    for s in &link.sessions {
        assert!(!s.poll_active());
        assert_eq!(s.transmit_interval(), 300 * MS);
        assert_eq!(s.detection_time(), Some(900 * MS));
    }
    // Steady state: gaps between one side's periodic packets are 225..300 ms.
    let start = link.now;
    link.run_for(3000 * MS);
    let times: Vec<_> = link
        .sent
        .iter()
        .filter(|&&(side, t, p)| side == 0 && t >= start && !p.flags.final_)
        .map(|&(_, t, _)| t)
        .collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= 225 * MS && gap <= 300 * MS, "{gap:?}");
    }
    assert_eq!(link.states(), [State::Up, State::Up]);
}

#[test]
fn back_to_back_sessions_detect_a_silent_peer_and_recover() {
    let mut link = Link::new(Profile::default(), Profile::default());
    link.run_for(3000 * MS);
    link.deliver[1] = false;
    let cut = link.now;
    link.run_for(2000 * MS);
    let down = link
        .changes
        .iter()
        .find(|c| c.0 == 0 && c.3 == State::Down)
        .copied()
        .unwrap();
    assert_eq!(down.4, Diag::ControlDetectionTimeExpired);
    assert!(down.1 - cut <= 900 * MS, "{:?}", down.1 - cut);
    // The side still heard is told Down and follows with diag 3.
    assert!(link.changes.iter().any(|c| c.0 == 1
        && c.2 == State::Up
        && c.3 == State::Down
        && c.4 == Diag::NeighborSignaledSessionDown));
    link.deliver[1] = true;
    link.run_for(5000 * MS);
    assert_eq!(link.states(), [State::Up, State::Up]);
}

#[test]
fn back_to_back_passive_side_answers_and_both_come_up() {
    let passive = Profile {
        passive_mode: true,
        ..Profile::default()
    };
    let mut link = Link::new(Profile::default(), passive);
    link.run_for(3000 * MS);
    assert_eq!(link.states(), [State::Up, State::Up]);
    assert_eq!(link.discards, []);
    let first_from_passive = link.sent.iter().find(|s| s.0 == 1).unwrap();
    let first_from_active = link.sent.iter().find(|s| s.0 == 0).unwrap();
    assert!(first_from_passive.1 >= first_from_active.1);
    assert_eq!(first_from_passive.2.your_discr, 1);
}

#[test]
fn back_to_back_admin_down_on_one_side_takes_the_other_down_with_diag_3() {
    let mut link = Link::new(Profile::default(), Profile::default());
    link.run_for(3000 * MS);
    let mut queue = VecDeque::new();
    link.step(0, Input::AdminDown, &mut queue);
    assert!(
        queue.is_empty(),
        "AdminDown goes out with the next periodic packet"
    );
    link.run_for(2000 * MS);
    assert_eq!(link.states(), [State::AdminDown, State::Down]);
    assert_eq!(
        link.sessions[1].local_diag(),
        Diag::NeighborSignaledSessionDown
    );
    // The other side never goes Up again while we are AdminDown.
    link.run_for(10_000 * MS);
    assert_eq!(link.states(), [State::AdminDown, State::Down]);
    link.step(0, Input::AdminUp, &mut queue);
    link.run_for(5000 * MS);
    assert_eq!(link.states(), [State::Up, State::Up]);
}
