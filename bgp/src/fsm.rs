//! The BGP session state machine (RFC 4271 §8), sans-IO.
//!
//! [`Session::handle`] takes one [`Event`] and returns the [`Action`]s the driver must carry
//! out: connect, send a message, close, arm or disarm a timer. The session owns the
//! Adj-RIB-Out and the desired set, so converging the peer (diff, packing, End-of-RIB) is
//! decided here too; the driver only moves bytes and keeps clocks.
//!
//! Simplifications, stated once: the optional session attributes of §8.1.1 (DelayOpen,
//! IdleHoldTimer, damping) are not implemented; after any session end the session goes to
//! Idle and restarts itself when the connect-retry timer (with exponential backoff) expires,
//! which is the "automatic start" of §8.1.1. Connection collisions (§6.8) are resolved by
//! the driver with [`collision_keeps_existing`] on the BGP identifiers; when the other
//! connection wins, [`Event::CollisionSwitch`] restarts the OPEN exchange on it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::notification::{
    BgpNotificationMessage, CeaseError, FiniteStateMachineError, HoldTimerExpiredError,
};

use super::codec::{Decoded, describe_notification, shutdown_notification};
use super::pack::UpdateParams;
use super::rib_out::{AdjRibOut, Families};
use super::route::DesiredRoutes;

pub use super::config::SessionConfig;

/// Hold time used until the OPEN exchange ends (RFC 4271 §8.2.2 suggests 4 minutes).
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

/// Longest connect-retry backoff.
pub const MAX_CONNECT_RETRY: Duration = Duration::from_secs(60);

/// Session states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not trying; waits for start or the connect-retry timer.
    Idle,
    /// Connecting out.
    Connect,
    /// Waiting for the peer to connect (or for the next connect attempt).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for KEEPALIVE.
    OpenConfirm,
    /// Routes flow.
    Established,
}

impl State {
    /// Lowercase name for status and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "opensent",
            State::OpenConfirm => "openconfirm",
            State::Established => "established",
        }
    }
}

/// Session timers (RFC 4271 §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer.
    ConnectRetry,
    /// HoldTimer.
    Hold,
    /// KeepaliveTimer.
    Keepalive,
}

/// Inputs to the session (RFC 4271 §8.1 events, named after them).
#[derive(Debug, Clone)]
pub enum Event {
    /// Event 1, ManualStart (or Event 4, ManualStart_with_PassiveTcpEstablishment).
    ManualStart,
    /// Event 2, ManualStop, with the shutdown communication to send (RFC 8203).
    ManualStop {
        /// Text for the peer's operator.
        reason: String,
    },
    /// A planned restart of this speaker: with graceful restart negotiated the connection is
    /// closed without a NOTIFICATION, so the peer keeps our routes as stale until we are back
    /// and have sent End-of-RIB (RFC 4724 §4.2); otherwise as [`Event::ManualStop`].
    PlannedRestart {
        /// Text for the peer's operator when a Cease is sent after all.
        reason: String,
    },
    /// A timer armed by an [`Action::Arm`] expired (Events 9, 10, 11).
    TimerExpired(Timer),
    /// Events 16/17: a TCP connection (outbound or accepted) is up; `local` is our address
    /// on it, the default next hop.
    TcpEstablished {
        /// Our address of the connection.
        local: IpAddr,
    },
    /// Event 18: the connection failed or closed.
    TcpFailed,
    /// RFC 4271 §6.8: a collision was resolved in favour of the other connection (the driver
    /// has closed the current one with Cease "connection collision resolution"); the session
    /// restarts its OPEN exchange on the surviving connection, whose local address is `local`.
    CollisionSwitch {
        /// Our address of the surviving connection.
        local: IpAddr,
    },
    /// Events 19–28: a received frame, decoded.
    Received(Decoded),
    /// The caller set a new desired route set (level-triggered).
    RoutesChanged(Arc<DesiredRoutes>),
    /// The BFD session went Down: tear the session down at once.
    BfdDown,
    /// The BFD session is Up: the session may connect.
    BfdUp,
}

/// Outputs for the driver, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Send this message on the current connection.
    Send(BgpMessage),
    /// Close the current connection (after sending what was queued).
    Close,
    /// (Re)start a timer.
    Arm(Timer, Duration),
    /// Stop a timer.
    Disarm(Timer),
}

/// What the OPEN exchange decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Hold time in seconds (0: no hold timer).
    pub hold_time: u16,
    /// Keepalive interval in seconds (0: none).
    pub keepalive: u16,
    /// 4-octet AS numbers in AS_PATH (RFC 6793).
    pub asn4: bool,
    /// Families both sides advertised (RFC 4760 §8; IPv4 alone when the peer sent no
    /// multiprotocol capability).
    pub families: Families,
    /// The peer supports ROUTE-REFRESH (RFC 2918).
    pub route_refresh: bool,
    /// The peer's BGP identifier.
    pub peer_id: Ipv4Addr,
    /// Both sides sent the graceful restart capability (RFC 4724 §3): the peer keeps our
    /// routes when the connection drops without a NOTIFICATION.
    pub graceful_restart: bool,
}

/// Counters and facts for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Prefixes in the Adj-RIB-Out.
    pub prefixes_sent: usize,
    /// Prefixes the peer currently announces to us (counted, not installed).
    pub prefixes_received: usize,
    /// UPDATEs received with an RFC 7606 error handled as treat-as-withdraw.
    pub treat_as_withdraw: u64,
    /// Times the session reached Established.
    pub established_count: u64,
    /// Why the last session ended.
    pub last_error: Option<String>,
}

/// One BGP session with one peer.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    retry: Duration,
    stopped: bool,
    bfd_up: bool,
    first_session: bool,
    local: Option<IpAddr>,
    negotiated: Option<Negotiated>,
    params: Option<UpdateParams>,
    desired: Option<Arc<DesiredRoutes>>,
    rib_out: AdjRibOut,
    eor_sent: bool,
    received: HashSet<IpNet>,
    counters: Counters,
}

/// RFC 4271 §6.8: when two connections exist, the one initiated by the speaker with the
/// higher BGP identifier survives. `existing_is_ours` says whether the older connection was
/// opened by us. Returns true when the existing connection is kept.
pub fn collision_keeps_existing(
    local_id: Ipv4Addr,
    remote_id: Ipv4Addr,
    existing_is_ours: bool,
) -> bool {
    let ours_wins = u32::from(local_id) > u32::from(remote_id);
    ours_wins == existing_is_ours
}

fn fsm_error(state: State) -> BgpNotificationMessage {
    let value = Box::new([]);
    BgpNotificationMessage::FiniteStateMachineError(match state {
        State::OpenSent => {
            FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState { value }
        }
        State::OpenConfirm => {
            FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState { value }
        }
        State::Established => {
            FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState { value }
        }
        _ => FiniteStateMachineError::Unspecific { value },
    })
}

impl Session {
    /// A session in Idle; send [`Event::ManualStart`] to begin.
    pub fn new(config: SessionConfig) -> Self {
        let retry = config.connect_retry;
        let bfd_up = !config.bfd;
        Self {
            config,
            state: State::Idle,
            retry,
            stopped: true,
            bfd_up,
            first_session: true,
            local: None,
            negotiated: None,
            params: None,
            desired: None,
            rib_out: AdjRibOut::default(),
            eor_sent: false,
            received: HashSet::new(),
            counters: Counters::default(),
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// What the OPEN exchange decided, once in OpenConfirm or Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Counters for status and metrics.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.prefixes_sent = self.rib_out.len();
        c.prefixes_received = self.received.len();
        c
    }

    /// The Adj-RIB-Out.
    pub fn rib_out(&self) -> &AdjRibOut {
        &self.rib_out
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.on_event(event, &mut out);
        out
    }

    fn on_event(&mut self, event: Event, out: &mut Vec<Action>) {
        use State::*;
        match (self.state, event) {
            // The desired set is kept in every state; sent only when Established.
            (state, Event::RoutesChanged(desired)) => {
                self.desired = Some(desired);
                if state == Established {
                    self.converge(out);
                }
            }
            // §8.2.2 Idle, Event 1/4: start; ignored in other states.
            (Idle, Event::ManualStart) => {
                self.stopped = false;
                self.start(out);
            }
            (_, Event::ManualStart) => {}
            // §8.2.2, Event 2 in any state: Cease with the shutdown communication (RFC 8203)
            // when a connection exists, then Idle and no automatic restart.
            (Established, Event::PlannedRestart { .. })
                if self.negotiated.is_some_and(|n| n.graceful_restart) =>
            {
                // RFC 4724 §4.2: the peer treats a connection closed without a NOTIFICATION as
                // our restart, keeps the routes (marked stale) and waits for our End-of-RIB.
                self.stopped = true;
                self.counters.last_error = Some(
                    "closed for a restart (graceful restart: the peer keeps the routes)".into(),
                );
                self.enter_idle(true, out);
            }
            (state, Event::PlannedRestart { reason } | Event::ManualStop { reason }) => {
                self.stopped = true;
                if matches!(state, OpenSent | OpenConfirm | Established) {
                    out.push(Action::Send(BgpMessage::Notification(
                        shutdown_notification(&reason),
                    )));
                }
                self.counters.last_error = Some(format!("administrative shutdown: {reason}"));
                self.enter_idle(
                    matches!(state, Connect | OpenSent | OpenConfirm | Established),
                    out,
                );
            }
            // BFD Down: tear down at once (Cease subcode 10, RFC 9384) and stay down until
            // BFD is Up again.
            (state, Event::BfdDown) => {
                self.bfd_up = false;
                if matches!(state, OpenSent | OpenConfirm | Established) {
                    out.push(Action::Send(BgpMessage::Notification(
                        BgpNotificationMessage::CeaseError(CeaseError::BfdDown {
                            value: Box::new([]),
                        }),
                    )));
                }
                if state != Idle {
                    self.counters.last_error = Some("bfd down".into());
                    self.enter_idle(state != Active, out);
                }
                out.push(Action::Disarm(Timer::ConnectRetry));
            }
            (state, Event::BfdUp) => {
                let was_down = !self.bfd_up;
                self.bfd_up = true;
                if was_down && state == Idle && !self.stopped {
                    out.push(Action::Arm(Timer::ConnectRetry, Duration::ZERO));
                }
            }
            // Idle, ConnectRetry expiry: the automatic restart after a session ended.
            (Idle, Event::TimerExpired(Timer::ConnectRetry)) => {
                if !self.stopped {
                    self.start(out);
                }
            }
            // §8.2.2 Connect/Active, Event 9: retry the connection with backoff.
            (Connect | Active, Event::TimerExpired(Timer::ConnectRetry)) => {
                if self.config.passive {
                    self.state = Active;
                } else {
                    self.state = Connect;
                    out.push(Action::Close);
                    out.push(Action::Connect);
                    self.arm_retry(out);
                }
            }
            // §8.2.2 Connect/Active, Events 16/17: send OPEN, large hold timer, OpenSent.
            (Connect | Active, Event::TcpEstablished { local }) => {
                out.push(Action::Disarm(Timer::ConnectRetry));
                self.local = Some(local);
                out.push(Action::Send(BgpMessage::Open(self.open())));
                out.push(Action::Arm(Timer::Hold, LARGE_HOLD_TIME));
                self.state = OpenSent;
            }
            // §8.2.2 Connect, Event 18: keep the retry timer running, go to Active.
            (Connect, Event::TcpFailed) => {
                self.state = Active;
            }
            (Active | Idle, Event::TcpFailed) => {}
            // §8.2.2 OpenSent, Event 18: close, Active (we go through Idle and retry).
            (OpenSent | OpenConfirm | Established, Event::TcpFailed) => {
                self.counters.last_error = Some("connection closed by peer".into());
                self.enter_idle(true, out);
            }
            // §8.2.2 OpenSent/OpenConfirm/Established, Event 10: NOTIFICATION Hold Timer Expired.
            (OpenSent | OpenConfirm | Established, Event::TimerExpired(Timer::Hold)) => {
                out.push(Action::Send(BgpMessage::Notification(
                    BgpNotificationMessage::HoldTimerExpiredError(
                        HoldTimerExpiredError::Unspecific {
                            sub_code: 0,
                            value: Box::new([]),
                        },
                    ),
                )));
                self.counters.last_error = Some("hold timer expired".into());
                self.enter_idle(true, out);
            }
            // §8.2.2 OpenConfirm/Established, Event 11: send KEEPALIVE, restart the timer.
            (OpenConfirm | Established, Event::TimerExpired(Timer::Keepalive)) => {
                out.push(Action::Send(BgpMessage::KeepAlive));
                self.arm_keepalive(out);
            }
            (_, Event::TimerExpired(_)) => {}
            // §8.2.2 OpenSent, Event 19: check the OPEN (§6.2), negotiate, KEEPALIVE.
            (OpenSent, Event::Received(Decoded::Message(BgpMessage::Open(open)))) => {
                self.on_open(&open, out);
            }
            // §8.2.2 OpenConfirm, Event 26: Established.
            (OpenConfirm, Event::Received(Decoded::Message(BgpMessage::KeepAlive))) => {
                self.state = Established;
                self.retry = self.config.connect_retry;
                self.counters.established_count += 1;
                self.counters.last_error = None;
                self.first_session = false;
                self.arm_hold(out);
                self.rib_out.clear();
                self.eor_sent = false;
                self.converge(out);
            }
            // §8.2.2 Established, Events 26/27: restart the hold timer; count routes.
            (Established, Event::Received(Decoded::Message(BgpMessage::KeepAlive))) => {
                self.arm_hold(out);
            }
            (Established, Event::Received(Decoded::Message(BgpMessage::Update(update)))) => {
                self.arm_hold(out);
                self.count_update(&update, false, out);
            }
            // RFC 7606 §2: treat-as-withdraw, the session stays up.
            (Established, Event::Received(Decoded::TreatAsWithdraw(update))) => {
                self.arm_hold(out);
                self.counters.treat_as_withdraw += 1;
                self.count_update(&update, true, out);
            }
            // RFC 2918 §4: re-advertise the Adj-RIB-Out of the requested family.
            (Established, Event::Received(Decoded::Message(BgpMessage::RouteRefresh(rr)))) => {
                self.arm_hold(out);
                self.on_route_refresh(rr.address_type(), out);
            }
            // §8.2.2, Events 24/25 in any connected state: the peer closes.
            (
                OpenSent | OpenConfirm | Established,
                Event::Received(Decoded::Message(BgpMessage::Notification(n))),
            ) => {
                self.counters.last_error = Some(format!("received {}", describe_notification(&n)));
                self.enter_idle(true, out);
            }
            // §6: a frame that cannot be accepted: NOTIFICATION, close.
            (OpenSent | OpenConfirm | Established, Event::Received(Decoded::Error(n))) => {
                self.counters.last_error = Some(format!("sent {}", describe_notification(&n)));
                out.push(Action::Send(BgpMessage::Notification(n)));
                self.enter_idle(true, out);
            }
            // §8.2.2: any other message is an FSM error (RFC 6608 subcodes).
            (state @ (OpenSent | OpenConfirm | Established), Event::Received(_)) => {
                let n = fsm_error(state);
                self.counters.last_error = Some(format!("sent {}", describe_notification(&n)));
                out.push(Action::Send(BgpMessage::Notification(n)));
                self.enter_idle(true, out);
            }
            (Idle | Connect | Active, Event::Received(_)) => {}
            // §6.8: the surviving connection starts over from OpenSent with our OPEN.
            (OpenSent | OpenConfirm, Event::CollisionSwitch { local }) => {
                self.local = Some(local);
                self.negotiated = None;
                self.params = None;
                out.push(Action::Disarm(Timer::Keepalive));
                out.push(Action::Send(BgpMessage::Open(self.open())));
                out.push(Action::Arm(Timer::Hold, LARGE_HOLD_TIME));
                self.state = OpenSent;
            }
            (_, Event::CollisionSwitch { .. }) => {}
            (Idle, Event::TcpEstablished { .. }) => out.push(Action::Close),
            // A second connection while one is past Active: the driver resolves collisions
            // (§6.8, [`collision_keeps_existing`]) and reports a switch as CollisionSwitch.
            (OpenSent | OpenConfirm | Established, Event::TcpEstablished { .. }) => {}
        }
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        if !self.bfd_up {
            self.state = State::Idle;
            return;
        }
        if self.config.passive {
            // §8.2.2 Idle, Event 4/5: passive, wait in Active.
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            out.push(Action::Connect);
            self.arm_retry(out);
        }
    }

    fn arm_retry(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Arm(Timer::ConnectRetry, self.retry));
        self.retry = (self.retry * 2).min(MAX_CONNECT_RETRY);
    }

    fn arm_hold(&self, out: &mut Vec<Action>) {
        match self.negotiated.map(|n| n.hold_time) {
            Some(0) => out.push(Action::Disarm(Timer::Hold)),
            Some(h) => out.push(Action::Arm(Timer::Hold, Duration::from_secs(h.into()))),
            None => out.push(Action::Arm(Timer::Hold, LARGE_HOLD_TIME)),
        }
    }

    fn arm_keepalive(&self, out: &mut Vec<Action>) {
        match self.negotiated.map(|n| n.keepalive) {
            Some(k) if k > 0 => {
                out.push(Action::Arm(Timer::Keepalive, Duration::from_secs(k.into())))
            }
            _ => out.push(Action::Disarm(Timer::Keepalive)),
        }
    }

    /// Closes the connection (if `close`), clears per-connection state and goes to Idle; the
    /// connect-retry timer restarts the session unless stopped.
    fn enter_idle(&mut self, close: bool, out: &mut Vec<Action>) {
        if close {
            out.push(Action::Close);
        }
        out.push(Action::Disarm(Timer::Hold));
        out.push(Action::Disarm(Timer::Keepalive));
        self.state = State::Idle;
        self.negotiated = None;
        self.params = None;
        self.local = None;
        self.rib_out.clear();
        self.eor_sent = false;
        self.received.clear();
        self.received.shrink_to_fit();
        if self.stopped || !self.bfd_up {
            out.push(Action::Disarm(Timer::ConnectRetry));
        } else {
            self.arm_retry(out);
        }
    }
}

mod open;
mod routes;

#[cfg(test)]
mod tests;
