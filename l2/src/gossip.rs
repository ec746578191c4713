//! Liveness of the speakers by SWIM gossip (foca) over UDP, and each node's link facts.
//!
//! ```text
//!  set_links(links) ──mpsc──> gossip task ──watch──> Membership (live nodes + their links)
//!  (caller's runtime)          │ own thread "herald-gossip", own current-thread runtime,
//!                              │ SCHED_FIFO when allowed (sched.rs)
//!                              │   foca (SWIM: ping, ping-req, suspicion, dissemination)
//!                              │   timers (timers.rs: foca's scheduled events, stall rule)
//!                              └── UDP socket: sealed datagrams (seal.rs), SWIM or facts
//! ```
//!
//! Failover must not depend on the API server, so liveness comes only from here. SWIM
//! (Das, Gupta, Motivala 2002) probes one member per period, asks others to probe it
//! indirectly when it does not answer within the round-trip time, suspects it at the end of
//! the period and declares it down when the suspicion is not refuted in time. The defaults of
//! [`SwimTiming`] are tuned for a LAN: a dead node is declared down in about 75–130 ms.
//!
//! Fast detection is only safe when a node that is merely slow is not taken for dead. Three
//! things keep it so: the task runs on its own thread, at real-time priority when the process
//! may ask for it ([`GossipConfig::realtime`]), so other work on the node (the election, the
//! responder, whatever else the machine runs) does not delay its acks and refutations; it reads
//! every datagram that has arrived before it lets foca judge anything by a timer; and a timer
//! that fires late shows this node was itself stalled, after which every suspicion it holds
//! gets a full timeout again (timers.rs).
//!
//! Each node also sends its own facts (the interfaces with carrier) to every live member,
//! at once when they change and every [`GossipConfig::facts_interval`]; the election needs
//! them to agree on who is eligible. Identities carry a start-time incarnation and renew
//! themselves when declared down (after a partition), so nodes rejoin without help.

pub mod seal;
mod timers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foca::{
    AccumulatingRuntime, Config, Foca, Identity, OwnedNotification, PeriodicParams, PostcardCodec,
};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, interval, sleep_until};

use self::seal::{GossipKey, Kind};
use self::timers::{Timers, is_stall, split_suspicions};
use super::error::L2Error;

/// Default UDP port of the gossip.
pub const DEFAULT_PORT: u16 = 7946;

/// Largest datagram sent or accepted (below a 1500-byte MTU with IPv6 and UDP headers).
const MAX_DATAGRAM: usize = 1400;
/// Room the seal adds: kind, nonce, tag.
const SEAL_OVERHEAD: usize = 1 + 24 + 16;

/// A member's identity in the gossip.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    /// Node name.
    pub name: String,
    /// Where it receives gossip.
    pub addr: SocketAddr,
    /// Start time in nanoseconds since the epoch, bumped on renewal: a restarted or renewed
    /// node wins over its older self.
    pub incarnation: u64,
}

impl Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(MemberId {
            incarnation: self.incarnation.wrapping_add(1).max(now_nanos()),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// SWIM timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwimTiming {
    /// How often a member is probed.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe.
    pub probe_rtt: Duration,
    /// How long a suspect has to refute before it is declared down.
    pub suspect_to_down: Duration,
    /// How often membership updates are pushed to a few members besides probes.
    pub gossip_interval: Duration,
}

impl Default for SwimTiming {
    /// LAN tuning: 15 ms probes, 6 ms round trip, 60 ms suspicion, 7.5 ms gossip. In steady
    /// state that is one ping and one ack per node every 15 ms (foca gossips only when it has
    /// updates), about 130 small datagrams a second per node, whatever the cluster size.
    fn default() -> Self {
        SwimTiming {
            probe_period: Duration::from_millis(15),
            probe_rtt: Duration::from_millis(6),
            suspect_to_down: Duration::from_millis(60),
            gossip_interval: Duration::from_micros(7500),
        }
    }
}

/// Bounds of the user-settable failure-detection timers (`--l2-probe-interval`,
/// `--l2-suspect-timeout`).
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Upper bound of both timers.
pub const MAX_DETECTION_TIMER: Duration = Duration::from_secs(60);

/// Failure-detection timers that make no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// The probe interval is below [`MIN_PROBE_INTERVAL`] or above [`MAX_DETECTION_TIMER`].
    #[error("probe interval {0:?} is outside 10ms..=60s")]
    Probe(Duration),
    /// The suspicion timeout is shorter than the probe interval or above
    /// [`MAX_DETECTION_TIMER`].
    #[error(
        "suspect timeout {suspect:?} must be at least the probe interval ({probe:?}) and at most 60s"
    )]
    Suspect {
        /// The suspicion timeout given.
        suspect: Duration,
        /// The probe interval given.
        probe: Duration,
    },
}

impl SwimTiming {
    /// Timing from the two user-facing settings: probe every `probe_period`, declare a
    /// suspect down after `suspect_to_down`. The others follow the defaults' ratios: the
    /// direct-ack timeout is 2/5 of the probe period, updates are pushed twice per period.
    /// Bounds: 10 ms <= probe <= 60 s, probe <= suspicion <= 60 s.
    pub fn from_settings(
        probe_period: Duration,
        suspect_to_down: Duration,
    ) -> Result<Self, TimingError> {
        if !(MIN_PROBE_INTERVAL..=MAX_DETECTION_TIMER).contains(&probe_period) {
            return Err(TimingError::Probe(probe_period));
        }
        if !(probe_period..=MAX_DETECTION_TIMER).contains(&suspect_to_down) {
            return Err(TimingError::Suspect {
                suspect: suspect_to_down,
                probe: probe_period,
            });
        }
        Ok(SwimTiming {
            probe_period,
            probe_rtt: probe_period * 2 / 5,
            suspect_to_down,
            gossip_interval: probe_period / 2,
        })
    }

    /// The timing of hashicorp/memberlist's `DefaultLANConfig` (probe every 1 s, 500 ms
    /// timeout, suspicion multiplier 4, which is 4 s for clusters of up to 10 nodes; gossip
    /// every 200 ms): what MetalLB's layer-2 mode uses. The anchor of the failover benchmark.
    pub fn memberlist_lan() -> Self {
        SwimTiming {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspect_to_down: Duration::from_secs(4),
            gossip_interval: Duration::from_millis(200),
        }
    }
}

/// Gossip configuration.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// This node's name.
    pub name: String,
    /// Local address to bind (port [`DEFAULT_PORT`] by default).
    pub bind: SocketAddr,
    /// Address other members reach this node at (often `bind`).
    pub advertise: SocketAddr,
    /// Members to join through; retried every second while this node knows no live member.
    pub seeds: Vec<SocketAddr>,
    /// Shared key authenticating every datagram.
    pub key: GossipKey,
    /// SWIM timing.
    pub timing: SwimTiming,
    /// How often this node's facts are re-sent to every live member.
    pub facts_interval: Duration,
    /// Run the gossip thread under `SCHED_FIFO` (priority [`REALTIME_PRIORITY`]) when the
    /// process may (root or `CAP_SYS_NICE`); without the permission it runs at normal priority
    /// and says so once in the log. `false`: normal priority.
    pub realtime: bool,
}

/// `SCHED_FIFO` priority of the gossip thread: low among real-time priorities (1..=99), so
/// kernel threads and anything an operator raised on purpose still come first, and above
/// every normal task.
pub const REALTIME_PRIORITY: i32 = 10;

/// The live members and the interfaces each reports with carrier (this node included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Node name to its interfaces with carrier; empty until its facts arrive.
    pub live: BTreeMap<String, BTreeSet<String>>,
}

/// A node's own facts as sent to others.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Facts {
    name: String,
    /// (incarnation, counter): newer facts replace older ones, also across restarts.
    seq: (u64, u64),
    links_up: BTreeSet<String>,
}

/// Handle of the gossip task; dropping it stops the task (without a graceful leave).
#[derive(Debug)]
pub struct Gossip {
    /// Closing it (on drop) ends the task and its thread.
    links: mpsc::UnboundedSender<Input>,
    membership: watch::Receiver<Membership>,
    local: SocketAddr,
}

#[derive(Debug)]
enum Input {
    Links(BTreeSet<String>),
    Leave,
}

impl Gossip {
    /// Binds the socket and starts the gossip task on a thread of its own (with its own
    /// tokio runtime, so that the caller's tasks cannot delay it). An `advertise` address with
    /// port 0 is replaced by the bound address.
    pub async fn spawn(mut config: GossipConfig) -> Result<Self, L2Error> {
        let bind = config.bind;
        let err = |source| L2Error::GossipSocket { addr: bind, source };
        let socket = std::net::UdpSocket::bind(bind).map_err(err)?;
        socket.set_nonblocking(true).map_err(err)?;
        let local = socket.local_addr().map_err(err)?;
        if config.advertise.port() == 0 {
            config.advertise = local;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut initial = Membership::default();
        initial.live.insert(config.name.clone(), BTreeSet::new());
        let (out, membership) = watch::channel(initial);
        std::thread::Builder::new()
            .name("herald-gossip".into())
            .spawn(move || {
                if config.realtime {
                    match super::sched::realtime(REALTIME_PRIORITY) {
                        Ok(()) => tracing::debug!("gossip thread runs under SCHED_FIFO"),
                        Err(e) => tracing::info!(
                            error = %e,
                            "gossip thread stays at normal priority (SCHED_FIFO needs root or \
                             CAP_SYS_NICE); failure detection is more exposed to CPU load"
                        ),
                    }
                }
                runtime.block_on(async move {
                    match UdpSocket::from_std(socket) {
                        Ok(socket) => Task::new(config, socket, out).run(rx).await,
                        Err(e) => tracing::error!(error = %e, "gossip socket"),
                    }
                });
            })
            .map_err(err)?;
        Ok(Gossip {
            links: tx,
            membership,
            local,
        })
    }

    /// The address the gossip socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sets this node's interfaces with carrier (level-triggered: the whole set).
    pub fn set_links(&self, links: BTreeSet<String>) {
        let _ = self.links.send(Input::Links(links));
    }

    /// Leaves the cluster gracefully (others stop counting this node at once).
    pub fn leave(&self) {
        let _ = self.links.send(Input::Leave);
    }

    /// The membership, updated on every change.
    pub fn membership(&self) -> watch::Receiver<Membership> {
        self.membership.clone()
    }
}

struct Task {
    config: GossipConfig,
    socket: UdpSocket,
    foca: Foca<MemberId, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    runtime: AccumulatingRuntime<MemberId>,
    rng: StdRng,
    timers: Timers<MemberId>,
    my_facts: Facts,
    facts: BTreeMap<String, Facts>,
    /// Set by [`Gossip::leave`]: stop joining and sending facts.
    left: bool,
    out: watch::Sender<Membership>,
}

impl Task {
    fn new(config: GossipConfig, socket: UdpSocket, out: watch::Sender<Membership>) -> Self {
        let incarnation = now_nanos();
        let id = MemberId {
            name: config.name.clone(),
            addr: config.advertise,
            incarnation,
        };
        let foca = Foca::new(
            id,
            swim_config(&config.timing),
            rand::make_rng(),
            PostcardCodec,
        );
        Task {
            my_facts: Facts {
                name: config.name.clone(),
                seq: (incarnation, 0),
                links_up: BTreeSet::new(),
            },
            config,
            socket,
            foca,
            runtime: AccumulatingRuntime::new(),
            rng: rand::make_rng(),
            timers: Timers::default(),
            facts: BTreeMap::new(),
            left: false,
            out,
        }
    }

    async fn run(mut self, mut input: mpsc::UnboundedReceiver<Input>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + SEAL_OVERHEAD + 64];
        let mut facts_tick = interval(self.config.facts_interval);
        let mut join_tick = interval(Duration::from_secs(1));
        loop {
            let next_timer = self.timers.next_deadline();
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.on_datagram(&buf[..n], from);
                    }
                }
                () = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                    // Acks and refutations that arrived meanwhile count before any judgement.
                    self.drain(&mut buf);
                    self.on_timers();
                }
                msg = input.recv() => match msg {
                    Some(Input::Links(links)) => {
                        if links != self.my_facts.links_up {
                            self.my_facts.links_up = links;
                            self.my_facts.seq.1 += 1;
                            self.send_facts().await;
                        }
                    }
                    Some(Input::Leave) => {
                        // Identities renew themselves when declared down by others, so the
                        // only way to be left down (foca's `Defunct`) is this leave; from now
                        // on nothing is sent but what foca queued for the leave itself.
                        self.left = true;
                        let _ = self.foca.leave_cluster(&mut self.runtime);
                    }
                    None => return,
                },
                _ = facts_tick.tick(), if !self.left => self.send_facts().await,
                _ = join_tick.tick(), if !self.left => {
                    if self.foca.num_members() == 0 {
                        for seed in self.config.seeds.clone() {
                            if seed == self.config.advertise {
                                continue;
                            }
                            let placeholder = MemberId { name: String::new(), addr: seed, incarnation: 0 };
                            if let Err(e) = self.foca.announce(placeholder, &mut self.runtime) {
                                tracing::debug!(%seed, error = %e, "announce failed");
                            }
                        }
                    }
                }
            }
            self.flush().await;
        }
    }

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some((kind, plaintext)) = self.config.key.open(datagram) else {
            tracing::debug!(%from, "dropped unauthenticated gossip datagram");
            return;
        };
        match kind {
            Kind::Swim => {
                if let Err(e) = self.foca.handle_data(&plaintext, &mut self.runtime) {
                    tracing::debug!(%from, error = %e, "swim message rejected");
                }
            }
            Kind::Facts => {
                let Ok(facts) = postcard::from_bytes::<Facts>(&plaintext) else {
                    return;
                };
                if facts.name == self.config.name {
                    return;
                }
                let newer = self
                    .facts
                    .get(&facts.name)
                    .is_none_or(|old| facts.seq > old.seq);
                if newer {
                    self.facts.insert(facts.name.clone(), facts);
                }
            }
        }
    }

    /// Reads the datagrams waiting on the socket (at most a bounded number, so that a flood
    /// cannot hold the timers back for ever).
    fn drain(&mut self, buf: &mut [u8]) {
        for _ in 0..256 {
            match self.socket.try_recv_from(buf) {
                Ok((n, from)) => self.on_datagram(&buf[..n], from),
                Err(_) => return,
            }
        }
    }

    /// Hands foca its due timers; after a stall of this node (a timer due longer ago than the
    /// probe round trip), suspicions first get a full timeout from now (timers.rs).
    fn on_timers(&mut self) {
        let now = Instant::now();
        let (mut due, late) = self.timers.take_due(now);
        if is_stall(late, self.config.timing.probe_rtt) {
            let not_before = now + self.config.timing.suspect_to_down;
            let (suspicions, rest) = split_suspicions(due);
            let held = suspicions.len() + self.timers.extend_suspicions(not_before);
            self.timers.reschedule(suspicions, not_before);
            tracing::debug!(?late, suspicions = held, "gossip thread was stalled");
            due = rest;
        }
        for timer in due {
            if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(error = %e, "swim timer failed");
            }
        }
    }

    async fn send_facts(&mut self) {
        if self.left {
            return;
        }
        let Ok(plain) = postcard::to_allocvec(&self.my_facts) else {
            return;
        };
        let targets: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for addr in targets {
            let sealed = self.config.key.seal(Kind::Facts, &plain, &mut self.rng);
            let _ = self.socket.send_to(&sealed, addr).await;
        }
    }

    /// Sends what foca queued, schedules its timers, and publishes the membership.
    async fn flush(&mut self) {
        while let Some((dst, data)) = self.runtime.to_send() {
            let sealed = self.config.key.seal(Kind::Swim, &data, &mut self.rng);
            if let Err(e) = self.socket.send_to(&sealed, dst.addr).await {
                tracing::debug!(peer = %dst.addr, error = %e, "gossip send failed");
            }
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.schedule(Instant::now() + after, timer);
        }
        let mut new_member = false;
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(_) | OwnedNotification::Rename(..) => new_member = true,
                _ => {}
            }
        }
        if new_member && !self.left {
            // A new member needs our facts before it can count us as eligible.
            self.send_facts().await;
        }
        self.publish();
    }

    fn publish(&mut self) {
        let mut live = BTreeMap::new();
        live.insert(self.config.name.clone(), self.my_facts.links_up.clone());
        for member in self.foca.iter_members() {
            let name = &member.id().name;
            let links = self
                .facts
                .get(name)
                .map(|f| f.links_up.clone())
                .unwrap_or_default();
            live.insert(name.clone(), links);
        }
        let membership = Membership { live };
        self.out.send_if_modified(|current| {
            let changed = *current != membership;
            *current = membership;
            changed
        });
    }
}

fn swim_config(timing: &SwimTiming) -> Config {
    let mut config = Config::new_lan(NonZeroU32::new(8).expect("non-zero"));
    config.probe_period = timing.probe_period;
    config.probe_rtt = timing.probe_rtt;
    config.suspect_to_down_after = timing.suspect_to_down;
    config.max_packet_size = NonZeroUsize::new(MAX_DATAGRAM - SEAL_OVERHEAD).expect("non-zero");
    config.periodic_gossip = Some(PeriodicParams {
        frequency: timing.gossip_interval,
        num_members: NonZeroUsize::new(3).expect("non-zero"),
    });
    // Find the other side of a healed partition quickly.
    config.periodic_announce_to_down_members = Some(PeriodicParams {
        frequency: Duration::from_secs(1),
        num_members: NonZeroUsize::new(3).expect("non-zero"),
    });
    config.periodic_announce = Some(PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(1).expect("non-zero"),
    });
    config
}

#[cfg(test)]
mod tests;
