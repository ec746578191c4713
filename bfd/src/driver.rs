//! The BFD UDP driver: one tokio task per session, owning its sockets and clock.
//!
//! ```text
//!   UDP :3784/:4784 ──recvmsg + TTL──> ControlPacket::decode ─┐
//!   deadline (Timers::next) ──────────────────────────────────┼──> Session::step
//!                                                              │
//!   UDP src 49152-65535, TTL 255 <── Action::Send ─────────────┤
//!   BfdHandle::watch_state() <────── Action::StateChanged ─────┘
//! ```
//!
//! Each session binds its own receive socket to `(local address, control port)`, so a local
//! address carries at most one session per port; several peers need several local addresses
//! (or a shared receiver with discriminator demultiplexing, not written yet). The received TTL
//! is read from the IP_RECVTTL / IPV6_RECVHOPLIMIT control message and checked with
//! [`Hop::accepts_ttl`] before decoding (RFC 5881 §5, RFC 5883 §5).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::time::Instant;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::packet::{ControlPacket, Diag, State};
use super::profile::Profile;
use super::session::{Action, Input, Session};
use super::transport::{Hop, SOURCE_PORTS};

/// One BFD session's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdConfig {
    /// Peer address.
    pub peer: IpAddr,
    /// Our address (source of packets, bound for reception).
    pub local: IpAddr,
    /// Single-hop or multihop.
    pub hop: Hop,
    /// Timers.
    pub profile: Profile,
}

/// Counters of a BFD session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdStatus {
    /// bfd.SessionState.
    pub state: State,
    /// Packets sent.
    pub sent: u64,
    /// Packets accepted.
    pub received: u64,
    /// Packets dropped (wrong TTL, wrong source, undecodable).
    pub dropped: u64,
    /// Times the session went from Up to something else.
    pub down_count: u64,
    /// bfd.LocalDiag of the last state change: why the session left Up, for example
    /// (`None` until then).
    pub diag: Diag,
}

impl Default for BfdStatus {
    fn default() -> Self {
        Self {
            state: State::Down,
            sent: 0,
            received: 0,
            dropped: 0,
            down_count: 0,
            diag: Diag::None,
        }
    }
}

/// Owner of a BFD session task; dropping it aborts the task.
#[derive(Debug)]
pub struct BfdHandle {
    status: watch::Receiver<BfdStatus>,
    admin_down: mpsc::Sender<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for BfdHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bind_rx(config: &BfdConfig) -> std::io::Result<UdpSocket> {
    let addr = SocketAddr::new(config.local, config.hop.destination_port());
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if addr.is_ipv4() {
        setsockopt(&socket, sockopt::Ipv4RecvTtl, &true).map_err(std::io::Error::from)?;
    } else {
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true).map_err(std::io::Error::from)?;
    }
    UdpSocket::from_std(socket.into())
}

fn bind_tx(config: &BfdConfig, seed: u32) -> std::io::Result<UdpSocket> {
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let mut last = None;
    // RFC 5881 §4: a source port from 49152-65535, the same for the session's life.
    for i in 0..64u32 {
        let port = SOURCE_PORTS.start() + ((seed.wrapping_add(i * 7919)) % span) as u16;
        let addr = SocketAddr::new(config.local, port);
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_nonblocking(true)?;
        let ttl = u32::from(config.hop.send_ttl());
        if addr.is_ipv4() {
            socket.set_ttl_v4(ttl)?;
        } else {
            socket.set_unicast_hops_v6(ttl)?;
        }
        match socket.bind(&addr.into()) {
            Ok(()) => {
                let socket = UdpSocket::from_std(socket.into())?;
                return Ok(socket);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

/// Receives one datagram: payload length, source, TTL (if the kernel reported it).
fn recv_with_ttl(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<IpAddr>, Option<u8>)> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let mut ttl = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                    ttl = u8::try_from(t).ok();
                }
                _ => {}
            }
        }
    }
    let from = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
    });
    Ok((msg.bytes, from, ttl))
}

impl BfdHandle {
    /// Binds the sockets and starts the session task on the current tokio runtime.
    pub fn spawn(config: BfdConfig) -> std::io::Result<Self> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1)
            ^ std::process::id();
        let rx = bind_rx(&config)?;
        let tx = bind_tx(&config, seed)?;
        let discr = NonZeroU32::new(seed | 1).unwrap_or(NonZeroU32::MIN);
        let (status_tx, status) = watch::channel(BfdStatus::default());
        let (admin_down, admin_rx) = mpsc::channel(1);
        let task = tokio::spawn(run(config, rx, tx, discr, seed, status_tx, admin_rx));
        Ok(Self {
            status,
            admin_down,
            task,
        })
    }

    /// Ends the session for a planned stop: the peer is told AdminDown (RFC 5880 §6.8.16),
    /// which RFC 5882 §3.2 says it must not take as a path failure, so its BGP session is not
    /// torn down by BFD. Waits at most `limit` for the packet to be sent, then ends the task.
    pub async fn admin_down(self, limit: std::time::Duration) {
        let (done, sent) = oneshot::channel();
        if self.admin_down.send(done).await.is_ok() {
            let _ = tokio::time::timeout(limit, sent).await;
        }
    }

    /// The current status.
    pub fn status(&self) -> BfdStatus {
        *self.status.borrow()
    }

    /// A receiver that sees every status change (state changes are what BGP watches).
    pub fn watch_status(&self) -> watch::Receiver<BfdStatus> {
        self.status.clone()
    }
}

async fn run(
    config: BfdConfig,
    rx: UdpSocket,
    tx: UdpSocket,
    discr: NonZeroU32,
    seed: u32,
    status_tx: watch::Sender<BfdStatus>,
    mut admin_rx: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let dest = SocketAddr::new(config.peer, config.hop.destination_port());
    let mut state = seed | 1;
    let mut rng = move || {
        // xorshift32: jitter only, not security.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut session = Session::new(discr, config.profile, Instant::now());
    let mut status = BfdStatus::default();
    let mut buf = [0u8; 128];
    let mut stopping: Option<oneshot::Sender<()>> = None;
    loop {
        let input = {
            let deadline = session.timers().next();
            tokio::select! {
                ready = rx.ready(Interest::READABLE) => {
                    if ready.is_err() {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                    match rx.try_io(Interest::READABLE, || recv_with_ttl(&rx, &mut buf)) {
                        Ok((n, from, ttl)) => {
                            let ok_source = from == Some(config.peer);
                            let ok_ttl = ttl.is_some_and(|t| config.hop.accepts_ttl(t));
                            match ControlPacket::decode(&buf[..n]) {
                                Ok(p) if ok_source && ok_ttl => {
                                    status.received += 1;
                                    Some(Input::Packet(p))
                                }
                                _ => {
                                    status.dropped += 1;
                                    None
                                }
                            }
                        }
                        Err(_) => None,
                    }
                }
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                        None => std::future::pending().await,
                    }
                } => Some(Input::TimerFired),
                Some(done) = admin_rx.recv() => {
                    stopping = Some(done);
                    Some(Input::AdminDown)
                }
            }
        };
        let Some(input) = input else {
            status_tx.send_replace(status);
            continue;
        };
        let out = session.step(Instant::now(), input, &mut rng);
        carry_out(out.actions, &tx, dest, &config, &mut status).await;
        if let Some(done) = stopping.take_if(|_| session.state() == State::AdminDown) {
            // The AdminDown packet is due at once: send it before reporting the stop.
            let out = session.step(Instant::now(), Input::TimerFired, &mut rng);
            carry_out(out.actions, &tx, dest, &config, &mut status).await;
            let _ = done.send(());
        }
        status.state = session.state();
        status_tx.send_if_modified(|old| {
            // Counters alone do not wake watchers; state changes do.
            let changed = old.state != status.state;
            *old = status;
            changed
        });
    }
}

/// Sends the packets and counts what `actions` say.
async fn carry_out(
    actions: Vec<Action>,
    tx: &UdpSocket,
    dest: SocketAddr,
    config: &BfdConfig,
    status: &mut BfdStatus,
) {
    for action in actions {
        match action {
            Action::Send(p) => {
                if tx.send_to(&p.encode(), dest).await.is_ok() {
                    status.sent += 1;
                }
            }
            Action::StateChanged { from, to, diag } => {
                tracing::info!(peer = %config.peer, ?from, ?to, ?diag, "bfd state changed");
                if from == State::Up {
                    status.down_count += 1;
                }
                status.diag = diag;
            }
            Action::Discarded(_) => status.dropped += 1,
        }
    }
}
