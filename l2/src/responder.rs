//! The ARP/NDP responder driver: raw `AF_PACKET` sockets per interface that answer for the
//! addresses this node owns and announce them on takeover.
//!
//! ```text
//!  set(desired) ──watch──> manager task ──watch (owned addrs)──> link task per interface
//!                           opens/closes                           ├─ ARP socket  (ETH_P_ARP)
//!                           link tasks                             ├─ IPv6 socket (ETH_P_IPV6)
//!                                                                  └─ solicited-node groups
//! ```
//!
//! Level-triggered: [`Responder::set`] hands over the whole set of (address, interface) pairs
//! this node announces; the manager converges to it. A link task answers only for addresses in
//! its current set, only on its own interface and with that interface's MAC address; it reads
//! the set before every answer, so an address given up is not answered once the change is
//! processed (changes are handled before queued frames). Nothing is changed in the kernel: the
//! addresses are not added to the interface. IPv6 groups are joined with `IPV6_ADD_MEMBERSHIP`
//! so that interfaces with multicast filters (and snooping bridges) deliver the solicitations.
//!
//! On takeover of an address (it enters an interface's set) the link task sends a gratuitous
//! ARP (RFC 5227 §3) or an unsolicited neighbour advertisement with the override flag
//! (RFC 4861 §7.2.6) at once, then [`AnnounceConfig::repeats`] more, one per
//! [`AnnounceConfig::interval`]. The first one ends the address's takeover timing, if the
//! agent started one ([`super::takeover`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv6Addr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use super::error::L2Error;
use super::packet::{self, MacAddr, Request};
use super::raw as sys;
use super::takeover::TakeoverTimer;

/// Largest frame read; longer frames are truncated (and then fail to parse or validate).
const FRAME_BUF: usize = 2048;

/// Frames handled per wake-up before the task yields to its other inputs.
const DRAIN_BATCH: usize = 64;

/// How often the manager retries interfaces it could not open.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How takeovers are announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Announcements after the immediate one.
    pub repeats: u32,
    /// Time between announcements.
    pub interval: Duration,
}

impl Default for AnnounceConfig {
    /// One at once, then 5 more over 5 s.
    fn default() -> Self {
        AnnounceConfig {
            repeats: 5,
            interval: Duration::from_secs(1),
        }
    }
}

/// What the responder has done, for the admin endpoint and tests.
#[derive(Debug, Default)]
pub struct ResponderStats {
    /// ARP replies and solicited neighbour advertisements sent.
    pub replies: AtomicU64,
    /// Gratuitous ARPs and unsolicited neighbour advertisements sent.
    pub announcements: AtomicU64,
    /// Frames read that were not a valid request for an owned address.
    pub ignored: AtomicU64,
    /// Frames that could not be sent.
    pub send_errors: AtomicU64,
    /// Per interface: (replies, announcements) sent.
    per_interface: std::sync::Mutex<BTreeMap<String, (u64, u64)>>,
}

impl ResponderStats {
    /// Per interface: (replies, announcements) sent since start.
    pub fn per_interface(&self) -> BTreeMap<String, (u64, u64)> {
        self.per_interface
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    fn count(&self, interface: &str, reply: bool) {
        let counter = if reply {
            &self.replies
        } else {
            &self.announcements
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.per_interface.lock() {
            let entry = m.entry(interface.to_owned()).or_default();
            if reply {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
}

/// The set the responder converges to: (address, interface) pairs this node answers for.
pub type Desired = BTreeSet<(IpAddr, String)>;

/// Handle of the responder tasks; dropping it stops them.
#[derive(Debug)]
pub struct Responder {
    desired: watch::Sender<Desired>,
    stats: Arc<ResponderStats>,
    task: JoinHandle<()>,
}

impl Responder {
    /// Starts the manager task on the current tokio runtime, answering for nothing yet.
    pub fn spawn(config: AnnounceConfig) -> Self {
        Self::spawn_timed(config, Arc::default())
    }

    /// As [`spawn`](Self::spawn); the first announcement of each address ends its takeover
    /// in `takeovers`.
    pub fn spawn_timed(config: AnnounceConfig, takeovers: Arc<TakeoverTimer>) -> Self {
        let (desired, rx) = watch::channel(Desired::new());
        let stats = Arc::new(ResponderStats::default());
        let task = tokio::spawn(manage(rx, config, stats.clone(), takeovers));
        Responder {
            desired,
            stats,
            task,
        }
    }

    /// Replaces the whole set of (address, interface) pairs to answer for.
    pub fn set(&self, desired: Desired) {
        self.desired.send_if_modified(|current| {
            let changed = *current != desired;
            *current = desired;
            changed
        });
    }

    /// Counters of what the responder has done.
    pub fn stats(&self) -> &ResponderStats {
        &self.stats
    }

    /// A shared handle on the counters (they outlive moves of the responder).
    pub fn stats_handle(&self) -> Arc<ResponderStats> {
        self.stats.clone()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A link task and the sender of its owned set; dropping it aborts the task.
struct LinkHandle {
    owned: watch::Sender<BTreeSet<IpAddr>>,
    task: JoinHandle<()>,
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn manage(
    mut desired: watch::Receiver<Desired>,
    config: AnnounceConfig,
    stats: Arc<ResponderStats>,
    takeovers: Arc<TakeoverTimer>,
) {
    let mut links: BTreeMap<String, LinkHandle> = BTreeMap::new();
    loop {
        let mut by_link: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for (addr, link) in desired.borrow_and_update().iter() {
            by_link.entry(link.clone()).or_default().insert(*addr);
        }
        links.retain(|name, _| by_link.contains_key(name));
        let mut failed = false;
        for (name, addrs) in by_link {
            if let Some(handle) = links.get(&name) {
                handle.owned.send_if_modified(|current| {
                    let changed = *current != addrs;
                    *current = addrs;
                    changed
                });
                continue;
            }
            match Link::open(&name) {
                Ok(link) => {
                    let (owned, rx) = watch::channel(addrs);
                    let task = tokio::spawn(link.run(rx, config, stats.clone(), takeovers.clone()));
                    links.insert(name, LinkHandle { owned, task });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot answer on interface yet");
                    failed = true;
                }
            }
        }
        tokio::select! {
            changed = desired.changed() => if changed.is_err() { return },
            () = sleep(RETRY_INTERVAL), if failed => {}
        }
    }
}

/// One interface: its sockets and the solicited-node groups joined on it.
struct Link {
    name: String,
    ifindex: u32,
    mac: MacAddr,
    arp: AsyncFd<OwnedFd>,
    ipv6: AsyncFd<OwnedFd>,
    /// Holds the IPv6 multicast memberships; `None` when IPv6 is off on this host.
    mcast: Option<UdpSocket>,
    groups: BTreeSet<Ipv6Addr>,
}

/// Takeover announcements still to send for one address.
struct Pending {
    remaining: u32,
    next: Instant,
}

impl Link {
    fn open(name: &str) -> Result<Self, L2Error> {
        let (ifindex, mac) = interface_mac(name)?;
        let socket = |ethertype| {
            sys::async_packet_socket(ifindex, ethertype).map_err(|source| L2Error::Socket {
                interface: name.to_owned(),
                source,
            })
        };
        Ok(Link {
            name: name.to_owned(),
            ifindex,
            mac,
            arp: socket(sys::ETH_P_ARP)?,
            ipv6: socket(sys::ETH_P_IPV6)?,
            mcast: UdpSocket::bind("[::]:0").ok(),
            groups: BTreeSet::new(),
        })
    }

    async fn run(
        mut self,
        mut owned_rx: watch::Receiver<BTreeSet<IpAddr>>,
        config: AnnounceConfig,
        stats: Arc<ResponderStats>,
        takeovers: Arc<TakeoverTimer>,
    ) {
        let mut owned = BTreeSet::new();
        let mut pending: BTreeMap<IpAddr, Pending> = BTreeMap::new();
        let mut buf = vec![0u8; FRAME_BUF];
        let mut changed = true;
        loop {
            if changed {
                let next = owned_rx.borrow_and_update().clone();
                let now = Instant::now();
                for addr in next.difference(&owned) {
                    if self.announce(*addr, &stats) {
                        takeovers.on_announced(*addr);
                    }
                    if config.repeats > 0 {
                        pending.insert(
                            *addr,
                            Pending {
                                remaining: config.repeats,
                                next: now + config.interval,
                            },
                        );
                    }
                }
                pending.retain(|addr, _| next.contains(addr));
                owned = next;
                self.update_groups(&owned);
                changed = false;
            }
            let next_due = pending.values().map(|p| p.next).min();
            tokio::select! {
                biased;
                r = owned_rx.changed() => {
                    if r.is_err() { return }
                    changed = true;
                }
                () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    let now = Instant::now();
                    let due: Vec<IpAddr> = pending
                        .iter()
                        .filter(|(_, p)| p.next <= now)
                        .map(|(a, _)| *a)
                        .collect();
                    for addr in due {
                        self.announce(addr, &stats);
                        if let Some(p) = pending.get_mut(&addr) {
                            p.remaining -= 1;
                            p.next = now + config.interval;
                            if p.remaining == 0 {
                                pending.remove(&addr);
                            }
                        }
                    }
                }
                r = self.arp.readable() => {
                    if let Ok(mut guard) = r {
                        drain(&mut guard, &mut buf, |frame| self.answer(frame, &owned, &stats));
                    }
                }
                r = self.ipv6.readable() => {
                    if let Ok(mut guard) = r {
                        drain(&mut guard, &mut buf, |frame| self.answer(frame, &owned, &stats));
                    }
                }
            }
        }
    }

    /// Answers `frame` if it is a valid request for an owned address from someone else.
    fn answer(&self, frame: &[u8], owned: &BTreeSet<IpAddr>, stats: &ResponderStats) {
        let reply = match packet::parse(frame) {
            Some(request) if owned.contains(&request.target()) => match request {
                // Announcements from others (sender == target) are not questions.
                Request::Arp(r) if r.sender_mac != self.mac && r.sender_ip != r.target_ip => {
                    Some(packet::arp_reply(&r, self.mac))
                }
                Request::NeighborSolicit(r) if r.src_mac != self.mac => {
                    Some(packet::neighbor_advert(&r, self.mac))
                }
                _ => None,
            },
            _ => None,
        };
        match reply {
            Some(reply) => {
                self.send(&reply, true, stats);
            }
            None => {
                stats.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends a gratuitous ARP or unsolicited NA for `addr`; whether it was sent.
    fn announce(&self, addr: IpAddr, stats: &ResponderStats) -> bool {
        let frame = match addr {
            IpAddr::V4(a) => packet::gratuitous_arp(a, self.mac, None),
            IpAddr::V6(a) => packet::unsolicited_neighbor_advert(a, self.mac, None),
        };
        self.send(&frame, false, stats)
    }

    fn send(&self, frame: &[u8], reply: bool, stats: &ResponderStats) -> bool {
        let fd = match frame.get(12..14) {
            Some([0x08, 0x06]) => &self.arp,
            _ => &self.ipv6,
        };
        match nix::unistd::write(fd.get_ref(), frame) {
            Ok(_) => {
                stats.count(&self.name, reply);
                true
            }
            Err(e) => {
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(interface = %self.name, error = %e, "sending frame failed");
                false
            }
        }
    }

    /// Joins the solicited-node groups of the owned IPv6 addresses and leaves the others.
    fn update_groups(&mut self, owned: &BTreeSet<IpAddr>) {
        let Some(socket) = &self.mcast else { return };
        let wanted: BTreeSet<Ipv6Addr> = owned
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(packet::solicited_node(*a)),
                IpAddr::V4(_) => None,
            })
            .collect();
        for group in self.groups.difference(&wanted) {
            let _ = socket.leave_multicast_v6(group, self.ifindex);
        }
        for group in wanted.difference(&self.groups) {
            if let Err(e) = socket.join_multicast_v6(group, self.ifindex) {
                tracing::warn!(interface = %self.name, %group, error = %e, "joining group failed");
            }
        }
        self.groups = wanted;
    }
}

/// Reads up to [`DRAIN_BATCH`] frames from a ready socket and hands each to `handle`.
fn drain(
    guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>,
    buf: &mut [u8],
    mut handle: impl FnMut(&[u8]),
) {
    for _ in 0..DRAIN_BATCH {
        match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
            Ok(Ok(n)) => handle(&buf[..n]),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading packet socket failed");
                return;
            }
            Err(_would_block) => return,
        }
    }
}

/// The index and Ethernet address of interface `name`.
pub fn interface_mac(name: &str) -> Result<(u32, MacAddr), L2Error> {
    let err = |reason: &str| L2Error::Interface {
        interface: name.to_owned(),
        reason: reason.to_owned(),
    };
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| err(&e.to_string()))?;
    for ifa in addrs.filter(|a| a.interface_name == name) {
        if let Some(link) = ifa.address.as_ref().and_then(|a| a.as_link_addr()) {
            let mac = link.addr().unwrap_or_default();
            if mac == [0; 6] {
                return Err(err("no ethernet address"));
            }
            let index = u32::try_from(link.ifindex()).map_err(|_| err("bad index"))?;
            return Ok((index, mac));
        }
    }
    Err(err("no such interface"))
}
