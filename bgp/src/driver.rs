//! The session driver: one tokio task per peer that moves bytes and keeps clocks for a
//! sans-IO [`Session`].
//!
//! ```text
//!   PeerHandle ──set_routes──> watch<Arc<DesiredRoutes>> ─┐
//!              ──Command────> mpsc ────────────────────────┤
//!   Listener ──accepted TcpStream──> mpsc ─────────────────┼──> peer task ──> TCP ──> peer
//!                                                           │    (Session FSM, timers)
//!   PeerHandle <──status─── watch<PeerStatus> <─────────────┘
//! ```
//!
//! The task owns the connection: it connects out (unless passive), or takes connections the
//! [`Listener`](super::listener::Listener) accepted for its peer address. It feeds the FSM events (connection up/down,
//! decoded frames, timer expiries, route changes, BFD state) and carries out its actions.
//! Route changes are coalesced: after a change the task waits [`PeerConfig::coalesce`] and
//! then converges to the latest set, so a burst of `set_routes` calls costs one diff.
//! Dropping the [`PeerHandle`] aborts the task; [`PeerHandle::shutdown`] closes gracefully
//! with a Cease and the given shutdown communication (RFC 8203).
//!
//! A handle spawned with [`PeerHandle::spawn_observed`] times each prefix newly desired on an
//! Established session from its `set_routes` to the write of the UPDATE carrying it
//! ([`pending`]), into the histogram it was given (`herald_bgp_announce_seconds`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use netgauze_bgp_pkt::BgpMessage;
use prometheus_client::metrics::histogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::codec::{self, Decoder};
use super::error::SessionError;
use super::fsm::{Action, Event, Session, State, Timer};
use super::route::DesiredRoutes;
use super::sockopt;
pub use super::transport::{BGP_PORT, PeerConfig};
use super::transport::{Connecting, connect_future};
use tracing::{debug, info};

mod collision;
pub mod pending;

use pending::Pending;

/// What the task reports about its session, for metrics and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Peer address.
    pub peer: IpAddr,
    /// FSM state.
    pub state: State,
    /// When the session became Established (wall clock), if it is.
    pub established_at: Option<SystemTime>,
    /// Prefixes in the Adj-RIB-Out.
    pub prefixes_sent: usize,
    /// Prefixes the peer announces (counted, not installed).
    pub prefixes_received: usize,
    /// Times the session reached Established.
    pub established_count: u64,
    /// UPDATE messages sent since the task started.
    pub updates_sent: u64,
    /// Why the last session ended, or why connecting fails.
    pub last_error: Option<String>,
    /// NOTIFICATIONs sent since the task started, by (code, subcode).
    pub notifications_sent: BTreeMap<(u8, u8), u64>,
    /// NOTIFICATIONs received since the task started, by (code, subcode).
    pub notifications_received: BTreeMap<(u8, u8), u64>,
}

impl PeerStatus {
    /// Time since Established, if it is.
    pub fn uptime(&self) -> Option<Duration> {
        self.established_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
    }
}

/// Commands to a peer task.
#[derive(Debug)]
enum Command {
    Stop { reason: String, restart: bool },
    Bfd { up: bool },
}

/// Tells one peer task the state of its BFD session.
#[derive(Debug, Clone)]
pub struct BfdLink {
    commands: mpsc::Sender<Command>,
}

impl BfdLink {
    /// BFD is Up (`true`) or not: not-Up tears the BGP session down at once and keeps it down.
    pub async fn set(&self, up: bool) {
        let _ = self.commands.send(Command::Bfd { up }).await;
    }
}

/// Owner of one peer task; dropping it aborts the task (and with it the TCP connection).
#[derive(Debug)]
pub struct PeerHandle {
    peer: IpAddr,
    routes: watch::Sender<Option<Arc<DesiredRoutes>>>,
    status: watch::Receiver<PeerStatus>,
    commands: mpsc::Sender<Command>,
    inbound: mpsc::Sender<TcpStream>,
    password: Option<String>,
    /// Prefixes waiting to be announced, shared with the task; `None`: not timed.
    announce_pending: Option<Arc<Mutex<Pending>>>,
    task: Option<JoinHandle<()>>,
}

/// The task's side of `herald_bgp_announce_seconds`.
#[derive(Debug)]
struct AnnounceTimer {
    pending: Arc<Mutex<Pending>>,
    seconds: Histogram,
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // The bookkeeping stays consistent whatever panicked while holding it.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for PeerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl PeerHandle {
    /// Starts the task for `config` on the current tokio runtime. The session sends no routes
    /// and no End-of-RIB until the first [`set_routes`](Self::set_routes).
    pub fn spawn(config: PeerConfig) -> Result<Self, SessionError> {
        Self::start(config, None)
    }

    /// As [`spawn`](Self::spawn), and observes into `announce_seconds` the time from a
    /// prefix entering the desired set on an Established session (the
    /// [`set_routes`](Self::set_routes) call) to the UPDATE carrying it being written to the
    /// socket. The whole table sent when a session comes up is not observed.
    pub fn spawn_observed(
        config: PeerConfig,
        announce_seconds: Histogram,
    ) -> Result<Self, SessionError> {
        Self::start(config, Some(announce_seconds))
    }

    fn start(
        config: PeerConfig,
        announce_seconds: Option<Histogram>,
    ) -> Result<Self, SessionError> {
        if config
            .password
            .as_ref()
            .is_some_and(|p| p.len() > sockopt::MD5_MAX_KEY_LEN)
        {
            return Err(SessionError::Config {
                peer: config.peer_addr,
                reason: "tcp md5 password longer than 80 bytes".into(),
            });
        }
        let (routes, routes_rx) = watch::channel(None);
        let initial = PeerStatus {
            peer: config.peer_addr,
            state: State::Idle,
            established_at: None,
            prefixes_sent: 0,
            prefixes_received: 0,
            established_count: 0,
            updates_sent: 0,
            last_error: None,
            notifications_sent: BTreeMap::new(),
            notifications_received: BTreeMap::new(),
        };
        let (status_tx, status) = watch::channel(initial);
        let (commands, commands_rx) = mpsc::channel(8);
        let (inbound, inbound_rx) = mpsc::channel(2);
        let peer = config.peer_addr;
        let password = config.password.clone();
        let announce = announce_seconds.map(|seconds| AnnounceTimer {
            pending: Arc::default(),
            seconds,
        });
        let announce_pending = announce.as_ref().map(|a| a.pending.clone());
        let task = Driver {
            announce,
            session: Session::new(config.session.clone()),
            config,
            conn: None,
            pending: None,
            connecting: None,
            timers: HashMap::new(),
            status: status_tx,
            established_at: None,
            updates_sent: 0,
            connect_error: None,
            notifications_sent: BTreeMap::new(),
            notifications_received: BTreeMap::new(),
        };
        let task = tokio::spawn(task.run(routes_rx, commands_rx, inbound_rx));
        Ok(Self {
            peer,
            routes,
            status,
            commands,
            inbound,
            password,
            announce_pending,
            task: Some(task),
        })
    }

    /// The peer's address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// The TCP MD5 password, for the listener's socket.
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Where the listener hands accepted connections from this peer.
    pub(crate) fn inbound(&self) -> mpsc::Sender<TcpStream> {
        self.inbound.clone()
    }

    /// Sets the whole desired route set for this peer (level-triggered). Prefixes are
    /// truncated to their network address.
    pub fn set_routes(&self, desired: DesiredRoutes) {
        // Rebuilding the map costs as much as the diff; only do it when a key needs it.
        let desired: DesiredRoutes = if desired.keys().all(|p| *p == p.trunc()) {
            desired
        } else {
            desired.into_iter().map(|(p, a)| (p.trunc(), a)).collect()
        };
        let desired = Arc::new(desired);
        if let Some(pending) = &self.announce_pending {
            let established = self.status.borrow().state == State::Established;
            let previous = self.routes.borrow().clone();
            lock(pending).desire(previous.as_deref(), &desired, established, Instant::now());
        }
        self.routes.send_replace(Some(desired));
    }

    /// The latest status.
    pub fn status(&self) -> PeerStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<PeerStatus> {
        self.status.clone()
    }

    /// Reports the BFD session state: Down tears the BGP session down at once and keeps it
    /// down until Up.
    pub async fn set_bfd(&self, up: bool) {
        let _ = self.commands.send(Command::Bfd { up }).await;
    }

    /// A cloneable link for the BFD session watching this peer (see
    /// `herald_speaker::coupling::couple`).
    pub fn bfd_link(&self) -> BfdLink {
        BfdLink {
            commands: self.commands.clone(),
        }
    }

    /// Closes the session with a Cease carrying `reason` (RFC 8203) and ends the task; waits
    /// at most two seconds for the NOTIFICATION to be written.
    pub async fn shutdown(self, reason: &str) {
        self.stop(reason, false).await;
    }

    /// Ends the task for a planned restart of this speaker: with graceful restart negotiated
    /// the connection closes without a NOTIFICATION, so the peer keeps the routes as stale
    /// until the next start re-announces them (RFC 4724); otherwise as [`Self::shutdown`].
    pub async fn stop_for_restart(self, reason: &str) {
        self.stop(reason, true).await;
    }

    async fn stop(mut self, reason: &str, restart: bool) {
        let _ = self
            .commands
            .send(Command::Stop {
                reason: reason.to_owned(),
                restart,
            })
            .await;
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    decoder: Decoder,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Self {
            reader,
            writer,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(4096),
            decoder: Decoder::new(),
        }
    }

    fn local_ip(&self) -> Option<IpAddr> {
        self.writer.local_addr().ok().map(|a| a.ip())
    }
}

struct Driver {
    config: PeerConfig,
    announce: Option<AnnounceTimer>,
    session: Session,
    conn: Option<Conn>,
    /// A connection the peer opened while ours was in OpenSent/OpenConfirm (RFC 4271 §6.8):
    /// held until its OPEN tells the peer's BGP identifier.
    pending: Option<Conn>,
    connecting: Option<Connecting>,
    timers: HashMap<Timer, tokio::time::Instant>,
    status: watch::Sender<PeerStatus>,
    established_at: Option<SystemTime>,
    updates_sent: u64,
    connect_error: Option<String>,
    notifications_sent: BTreeMap<(u8, u8), u64>,
    notifications_received: BTreeMap<(u8, u8), u64>,
}

/// Reads into `conn.rbuf` (at most one read of 64 KiB).
async fn read_some(conn: &mut Option<Conn>) -> std::io::Result<usize> {
    match conn {
        Some(c) => {
            let mut chunk = [0u8; 65536];
            let n = c.reader.read(&mut chunk).await?;
            c.rbuf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        None => std::future::pending().await,
    }
}

async fn connecting(fut: &mut Option<Connecting>) -> std::io::Result<TcpStream> {
    match fut {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(
        mut self,
        mut routes: watch::Receiver<Option<Arc<DesiredRoutes>>>,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<TcpStream>,
    ) {
        let initial = routes.borrow_and_update().clone();
        if let Some(d) = initial {
            self.handle(Event::RoutesChanged(d)).await;
        }
        self.handle(Event::ManualStart).await;
        let mut routes_open = true;
        loop {
            let next_timer = self
                .timers
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, at)| (*t, *at));
            tokio::select! {
                changed = routes.changed(), if routes_open => {
                    if changed.is_err() {
                        routes_open = false;
                        continue;
                    }
                    if !self.config.coalesce.is_zero() {
                        tokio::time::sleep(self.config.coalesce).await;
                    }
                    let latest = routes.borrow_and_update().clone();
                    if let Some(d) = latest {
                        self.handle(Event::RoutesChanged(d.clone())).await;
                        if let Some(a) = &self.announce {
                            lock(&a.pending).settle(&d);
                        }
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop { reason, restart }) => {
                        let event = if restart {
                            Event::PlannedRestart { reason }
                        } else {
                            Event::ManualStop { reason }
                        };
                        self.handle(event).await;
                        return;
                    }
                    Some(Command::Bfd { up: true }) => self.handle(Event::BfdUp).await,
                    Some(Command::Bfd { up: false }) => self.handle(Event::BfdDown).await,
                    None => return,
                },
                result = connecting(&mut self.connecting) => {
                    self.connecting = None;
                    match result {
                        Ok(stream) => self.attach(stream).await,
                        Err(e) => {
                            self.connect_error = Some(format!("connect: {e}"));
                            self.handle(Event::TcpFailed).await;
                        }
                    }
                }
                Some(stream) = inbound.recv() => {
                    let state = self.session.state();
                    if self.conn.is_none() && matches!(state, State::Connect | State::Active) {
                        self.connecting = None;
                        self.attach(stream).await;
                    } else if self.pending.is_none() && matches!(state, State::OpenSent | State::OpenConfirm) {
                        // §6.8: keep it until its OPEN arrives, then compare identifiers.
                        self.pending = Some(Conn::new(stream));
                    }
                    // Otherwise (Established, or a second pending one) the newer connection
                    // is closed (dropped): §6.8 lets an Established session win.
                }
                read = read_some(&mut self.pending) => match read {
                    Ok(0) | Err(_) => self.pending = None,
                    Ok(_) => self.resolve_collision().await,
                },
                read = read_some(&mut self.conn) => match read {
                    Ok(0) | Err(_) => {
                        self.conn = None;
                        self.handle(Event::TcpFailed).await;
                    }
                    Ok(_) => self.process_frames().await,
                },
                _ = async {
                    match next_timer {
                        Some((_, at)) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some((timer, _)) = next_timer {
                        self.timers.remove(&timer);
                        self.handle(Event::TimerExpired(timer)).await;
                    }
                }
            }
        }
    }

    async fn attach(&mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a.ip(),
            Err(_) => {
                self.handle(Event::TcpFailed).await;
                return;
            }
        };
        self.conn = Some(Conn::new(stream));
        self.connect_error = None;
        self.handle(Event::TcpEstablished { local }).await;
    }

    pub(super) async fn process_frames(&mut self) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            match codec::frame_len(&conn.rbuf) {
                Ok(Some(len)) => {
                    let decoded = conn.decoder.decode(&conn.rbuf[..len]);
                    conn.rbuf.drain(..len);
                    self.handle(Event::Received(decoded)).await;
                }
                Ok(None) => return,
                Err(notification) => {
                    conn.rbuf.clear();
                    self.handle(Event::Received(codec::Decoded::Error(notification)))
                        .await;
                    return;
                }
            }
        }
    }

    pub(super) async fn handle(&mut self, event: Event) {
        let before = self.session.state();
        if let Event::Received(codec::Decoded::Message(BgpMessage::Notification(n))) = &event {
            let (code, subcode) = codec::notification_code(n);
            *self
                .notifications_received
                .entry((code, subcode))
                .or_default() += 1;
            let (code_name, subcode_name) = codec::notification_names(code, subcode);
            info!(
                peer = %self.config.peer_addr,
                code, subcode, code_name, subcode_name,
                message = %codec::describe_notification(n),
                "bgp notification received"
            );
        }
        let actions = self.session.handle(event);
        for action in actions {
            if let Action::Send(BgpMessage::Notification(n)) = &action {
                let (code, subcode) = codec::notification_code(n);
                *self.notifications_sent.entry((code, subcode)).or_default() += 1;
                let (code_name, subcode_name) = codec::notification_names(code, subcode);
                info!(
                    peer = %self.config.peer_addr,
                    code, subcode, code_name, subcode_name,
                    message = %codec::describe_notification(n),
                    "bgp notification sent"
                );
            }
            match action {
                Action::Connect => {
                    self.conn = None;
                    self.connecting = Some(connect_future(&self.config));
                }
                Action::Send(msg) => {
                    if let BgpMessage::Update(_) = msg {
                        self.updates_sent += 1;
                    }
                    if let Some(conn) = self.conn.as_mut() {
                        match codec::encode(&msg, &mut conn.wbuf) {
                            Err(e) => {
                                tracing::warn!(peer = %self.config.peer_addr, error = %e, "dropping message that cannot be encoded");
                            }
                            Ok(_) => {
                                if let (BgpMessage::Update(u), Some(a)) = (&msg, &self.announce) {
                                    let mut waiting = lock(&a.pending);
                                    if waiting.waiting() > 0 {
                                        pending::for_each_announced(u, |p| waiting.encoded(&p));
                                    }
                                }
                            }
                        }
                        if conn.wbuf.len() >= 64 * 1024 {
                            self.flush().await;
                        }
                    }
                }
                Action::Close => {
                    self.flush().await;
                    if let Some(mut conn) = self.conn.take() {
                        let _ = conn.writer.shutdown().await;
                    }
                    self.connecting = None;
                }
                Action::Arm(timer, after) => {
                    self.timers
                        .insert(timer, tokio::time::Instant::now() + after);
                }
                Action::Disarm(timer) => {
                    self.timers.remove(&timer);
                }
            }
        }
        if let (Some(conn), Some(n)) = (self.conn.as_mut(), self.session.negotiated()) {
            conn.decoder.set_asn4(n.asn4);
        }
        self.log_transition(before);
        self.flush().await;
        if before == State::Established
            && self.session.state() != State::Established
            && let Some(a) = &self.announce
        {
            lock(&a.pending).clear();
        }
        self.publish();
    }

    /// Session transitions at info, as routers log them: up with what was negotiated, down
    /// with why; the steps in between at debug.
    fn log_transition(&self, before: State) {
        let after = self.session.state();
        if after == before {
            return;
        }
        let peer = self.config.peer_addr;
        if after == State::Established {
            let n = self.session.negotiated();
            info!(
                %peer,
                hold_time = n.map(|n| n.hold_time),
                ipv4 = n.is_some_and(|n| n.families.ipv4),
                ipv6 = n.is_some_and(|n| n.families.ipv6),
                graceful_restart = n.is_some_and(|n| n.graceful_restart),
                peer_id = ?n.map(|n| n.peer_id),
                "bgp session established"
            );
        } else if before == State::Established {
            info!(
                %peer,
                state = after.as_str(),
                reason = self.session.counters().last_error.as_deref().unwrap_or("connection closed"),
                "bgp session down"
            );
        } else {
            debug!(%peer, from = before.as_str(), to = after.as_str(), "bgp session state");
        }
    }

    async fn flush(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.wbuf.is_empty() {
            return;
        }
        let result = conn.writer.write_all(&conn.wbuf).await;
        conn.wbuf.clear();
        if conn.wbuf.capacity() > 256 * 1024 {
            conn.wbuf.shrink_to(4096);
        }
        if let Some(a) = &self.announce {
            let mut pending = lock(&a.pending);
            if result.is_ok() {
                let now = Instant::now();
                pending
                    .written(now)
                    .for_each(|d| a.seconds.observe(d.as_secs_f64()));
            } else {
                pending.clear();
            }
        }
        if let Err(e) = result {
            tracing::debug!(peer = %self.config.peer_addr, error = %e, "write failed");
            self.conn = None;
            // The read side sees the failure too; make sure the FSM learns it now.
            let actions = self.session.handle(Event::TcpFailed);
            for a in actions {
                match a {
                    Action::Arm(t, after) => {
                        self.timers.insert(t, tokio::time::Instant::now() + after);
                    }
                    Action::Disarm(t) => {
                        self.timers.remove(&t);
                    }
                    _ => {}
                }
            }
        }
    }

    fn publish(&mut self) {
        let state = self.session.state();
        if state == State::Established {
            self.established_at.get_or_insert_with(SystemTime::now);
        } else {
            self.established_at = None;
        }
        let c = self.session.counters();
        let status = PeerStatus {
            peer: self.config.peer_addr,
            state,
            established_at: self.established_at,
            prefixes_sent: c.prefixes_sent,
            prefixes_received: c.prefixes_received,
            established_count: c.established_count,
            updates_sent: self.updates_sent,
            last_error: c.last_error.or_else(|| self.connect_error.clone()),
            notifications_sent: self.notifications_sent.clone(),
            notifications_received: self.notifications_received.clone(),
        };
        self.status.send_if_modified(|old| {
            if *old == status {
                false
            } else {
                *old = status;
                true
            }
        });
    }
}

/// Polls `status` until `pred` holds or `timeout` passes; for callers and tests.
pub async fn wait_for_status(
    status: &mut watch::Receiver<PeerStatus>,
    timeout: Duration,
    pred: impl Fn(&PeerStatus) -> bool,
) -> Option<PeerStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let s = status.borrow_and_update();
            if pred(&s) {
                return Some(s.clone());
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        if tokio::time::timeout(left, status.changed()).await.is_err() {
            return None;
        }
    }
}
