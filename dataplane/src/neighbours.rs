//! Keeps the next hops of the balancer's backends resolved in the kernel's neighbour table
//! (why and which entries: [`super::nexthop`]), over rtnetlink.
//!
//! ```text
//!   Dataplane::apply ─── Input::Backends(set) ──┐
//!   Dataplane::snapshot ─ Input::Kick ──────────┼──> keeper task ── RTM_GETROUTE per backend
//!   (no_neighbour drops rose)                   │      │  every RECHECK  RTM_GETNEIGH dump
//!   Dataplane::shutdown ─ Input::Stop ──────────┘      │                 RTM_NEWNEIGH / DELNEIGH
//!                                                      └──> watch<Status> ──> Dataplane::snapshot
//! ```
//!
//! The task does nothing until it has been told the backends once, so a restarted speaker
//! does not remove the entries a still-forwarding balancer uses before it knows what is
//! needed. Routes change without telling anyone, so every [`RECHECK`] it looks again; a rising
//! `no_neighbour` counter (an entry flushed by hand, say) makes it look at once, at most once
//! per [`KICK_INTERVAL`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags, NeighbourMessage,
    NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::nexthop::{self, Entry, NextHop, Op, Origin, Route};

/// How often the routes and the neighbour table are looked at again without a reason.
pub const RECHECK: Duration = Duration::from_secs(5);
/// The shortest time between two looks caused by `no_neighbour` drops.
pub const KICK_INTERVAL: Duration = Duration::from_secs(1);

const NUD_STATIC: u16 = 0x40 | 0x80; // NUD_NOARP | NUD_PERMANENT

/// What the keeper did at its last look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Next hops with an entry Herald keeps, `address dev interface`.
    pub next_hops: Vec<String>,
    /// Backends without a route, and changes the kernel refused.
    pub errors: Vec<String>,
}

enum Input {
    Backends(BTreeSet<IpAddr>),
    Kick,
    Stop {
        release: bool,
        done: oneshot::Sender<()>,
    },
}

/// The keeper task; aborted on drop.
pub struct Keeper {
    tx: mpsc::UnboundedSender<Input>,
    status: watch::Receiver<Status>,
    task: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Starts the task on `handle`'s rtnetlink connection.
    pub fn start(handle: Handle) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Status::default());
        let task = tokio::spawn(run(handle, rx, status_tx));
        Self {
            tx,
            status,
            task: Some(task),
        }
    }

    /// The backend hosts the balancer encapsulates to (this host's own addresses left out):
    /// their next hops are the ones kept.
    pub fn set_backends(&self, backends: BTreeSet<IpAddr>) {
        let _ = self.tx.send(Input::Backends(backends));
    }

    /// Asks for a look now (the program counted `no_neighbour` drops).
    pub fn kick(&self) {
        let _ = self.tx.send(Input::Kick);
    }

    /// What the last look found.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Stops the task; with `release`, first removes every entry Herald added.
    pub async fn stop(mut self, release: bool) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Input::Stop { release, done }).is_ok() {
            let _ = wait.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    handle: Handle,
    mut rx: mpsc::UnboundedReceiver<Input>,
    status: watch::Sender<Status>,
) {
    let mut backends: Option<BTreeSet<IpAddr>> = None;
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_look: Option<Instant> = None;
    let mut last_errors: Vec<String> = Vec::new();
    loop {
        let due = tokio::select! {
            input = rx.recv() => match input {
                None => return,
                Some(Input::Backends(set)) => {
                    let changed = backends.as_ref() != Some(&set);
                    backends = Some(set);
                    changed
                }
                Some(Input::Kick) => last_look.is_none_or(|t| t.elapsed() >= KICK_INTERVAL),
                Some(Input::Stop { release, done }) => {
                    if release {
                        let s = reconcile(&handle, &BTreeSet::new()).await;
                        for e in &s.errors {
                            warn!(error = %e, "dataplane: removing neighbour entries");
                        }
                    }
                    let _ = done.send(());
                    return;
                }
            },
            _ = recheck.tick() => true,
        };
        let Some(set) = &backends else { continue };
        if !due {
            continue;
        }
        let s = reconcile(&handle, set).await;
        last_look = Some(Instant::now());
        if s.errors != last_errors {
            for e in &s.errors {
                warn!(error = %e, "dataplane: next hop");
            }
            last_errors.clone_from(&s.errors);
        }
        status.send_replace(s);
    }
}

/// One look: the next hops of `backends`, the table, the changes.
async fn reconcile(handle: &Handle, backends: &BTreeSet<IpAddr>) -> Status {
    let mut errors = Vec::new();
    let mut wanted = BTreeSet::new();
    for backend in backends {
        match route(handle, *backend).await {
            Ok(r) => wanted.extend(r.next_hops(*backend)),
            Err(e) => errors.push(format!("backend {backend}: route lookup: {e}")),
        }
    }
    let table = match table(handle).await {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("reading the neighbour table: {e}"));
            return Status {
                next_hops: Vec::new(),
                errors,
            };
        }
    };
    for op in nexthop::plan(&wanted, &table) {
        match op {
            Op::Manage(hop) => match manage(handle, hop).await {
                Ok(()) => info!(next_hop = %describe(hop), "dataplane: neighbour entry managed"),
                Err(e) => errors.push(format!("neighbour {}: adding: {e}", describe(hop))),
            },
            Op::Release(hop) => match release(handle, hop).await {
                Ok(()) => info!(next_hop = %describe(hop), "dataplane: neighbour entry removed"),
                Err(e) => errors.push(format!("neighbour {}: removing: {e}", describe(hop))),
            },
        }
    }
    Status {
        next_hops: nexthop::kept(&wanted, &table)
            .into_iter()
            .map(describe)
            .collect(),
        errors,
    }
}

fn describe(hop: NextHop) -> String {
    let name = nix::net::if_::if_indextoname(hop.ifindex)
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_else(|| format!("if{}", hop.ifindex));
    format!("{} dev {name}", hop.address)
}

/// The kernel's route towards `backend` (as `ip route get` shows it) and, when the matching
/// route is multipath, all of its legs (as `ip route get fibmatch` shows them).
async fn route(handle: &Handle, backend: IpAddr) -> Result<Route, rtnetlink::Error> {
    let full = if backend.is_ipv4() { 32 } else { 128 };
    let request = |fib_match: bool| {
        let mut msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(backend, full)
            .expect("a host prefix of the address's own family")
            .build();
        if fib_match {
            msg.header.flags |= RouteFlags::FibMatch;
        }
        msg
    };
    let chosen = handle
        .route()
        .get(request(false))
        .execute()
        .try_next()
        .await?;
    let mut out = chosen.as_ref().map(route_of).unwrap_or_default();
    // Best effort: a route through a nexthop object has no legs listed here.
    if let Ok(Some(matched)) = handle.route().get(request(true)).execute().try_next().await {
        out.multipath = route_of(&matched).multipath;
    }
    Ok(out)
}

/// The next-hop facts of an `RTM_NEWROUTE` answer.
fn route_of(msg: &RouteMessage) -> Route {
    let mut oif = None;
    let mut gateway = None;
    let mut multipath = Vec::new();
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => {
                gateway = gateway.or(gateway_of(attr));
            }
            RouteAttribute::MultiPath(legs) => {
                multipath = legs
                    .iter()
                    .map(|leg| {
                        let gw = leg.attributes.iter().find_map(gateway_of);
                        (leg.interface_index, gw)
                    })
                    .collect();
            }
            _ => {}
        }
    }
    Route {
        unicast: msg.header.kind == RouteType::Unicast,
        path: oif.map(|i| (i, gateway)),
        multipath,
    }
}

fn gateway_of(attr: &RouteAttribute) -> Option<IpAddr> {
    match attr {
        RouteAttribute::Gateway(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Gateway(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        RouteAttribute::Via(RouteVia::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Via(RouteVia::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The IPv4 and IPv6 neighbour tables.
async fn table(handle: &Handle) -> Result<Vec<Entry>, rtnetlink::Error> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut dump = handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        while let Some(msg) = dump.try_next().await? {
            out.extend(entry_of(&msg));
        }
    }
    Ok(out)
}

/// An `RTM_NEWNEIGH` answer as an [`Entry`].
fn entry_of(msg: &NeighbourMessage) -> Option<Entry> {
    let mut address = None;
    let mut protocol = 0u8;
    let mut managed = false;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                address = Some(IpAddr::V4(*a));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                address = Some(IpAddr::V6(*a));
            }
            NeighbourAttribute::Protocol(p) => protocol = u8::from(*p),
            NeighbourAttribute::ExtFlags(f) => managed = f.contains(NeighbourExtFlags::Managed),
            _ => {}
        }
    }
    let state = u16::from(msg.header.state);
    Some(Entry {
        hop: NextHop {
            ifindex: msg.header.ifindex,
            address: address?,
        },
        origin: Origin::classify(
            protocol,
            state & NUD_STATIC != 0,
            msg.header.flags.contains(NeighbourFlags::ExtLearned),
            managed,
        ),
    })
}

/// `ip neigh replace ADDR dev IF managed extern_learn proto 72`: the kernel resolves the
/// entry now (state none: an existing address and state are kept) and keeps it resolved.
async fn manage(handle: &Handle, hop: NextHop) -> Result<(), rtnetlink::Error> {
    let mut req = handle
        .neighbours()
        .add(hop.ifindex, hop.address)
        .replace()
        .state(NeighbourState::None)
        .flags(NeighbourFlags::ExtLearned);
    let attrs = &mut req.message_mut().attributes;
    attrs.push(NeighbourAttribute::Protocol(RouteProtocol::from(
        nexthop::PROTOCOL,
    )));
    attrs.push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
    req.execute().await
}

/// `ip neigh del ADDR dev IF`; an entry already gone is fine.
async fn release(handle: &Handle, hop: NextHop) -> Result<(), rtnetlink::Error> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match hop.address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.ifindex = hop.ifindex;
    msg.attributes
        .push(NeighbourAttribute::Destination(match hop.address {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    match handle.neighbours().del(msg).execute().await {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rtnetlink::packet_route::route::RouteNextHop;

    use super::*;

    fn answer(kind: RouteType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.kind = kind;
        msg.attributes = attributes;
        msg
    }

    #[test]
    fn a_route_answer_gives_interface_gateway_and_multipath_legs() {
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let gw6 = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let mut leg = RouteNextHop::default();
        leg.interface_index = 4;
        leg.attributes = vec![RouteAttribute::Via(RouteVia::Inet6(gw6))];
        let msg = answer(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(3),
                RouteAttribute::Gateway(RouteAddress::Inet(gw)),
                RouteAttribute::MultiPath(vec![leg]),
            ],
        );
        assert_eq!(
            route_of(&msg),
            Route {
                unicast: true,
                path: Some((3, Some(IpAddr::V4(gw)))),
                multipath: vec![(4, Some(IpAddr::V6(gw6)))],
            }
        );
        let connected = answer(RouteType::Unicast, vec![RouteAttribute::Oif(2)]);
        assert_eq!(route_of(&connected).path, Some((2, None)));
        assert!(!route_of(&answer(RouteType::Local, vec![RouteAttribute::Oif(1)])).unicast);
    }

    #[test]
    fn a_neighbour_answer_is_classified_by_marker_state_and_flags() {
        let mut msg = NeighbourMessage::default();
        msg.header.ifindex = 2;
        msg.header.state = NeighbourState::Reachable;
        msg.header.flags = NeighbourFlags::ExtLearned;
        msg.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 2))),
            NeighbourAttribute::Protocol(RouteProtocol::from(nexthop::PROTOCOL)),
            NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed),
        ];
        let e = entry_of(&msg).unwrap();
        assert_eq!(e.origin, Origin::Herald { managed: true });
        assert_eq!(e.hop.ifindex, 2);
        msg.header.state = NeighbourState::Permanent;
        assert_eq!(entry_of(&msg).unwrap().origin, Origin::Foreign);
        msg.header.state = NeighbourState::Stale;
        msg.header.flags = NeighbourFlags::empty();
        msg.attributes.truncate(1);
        assert_eq!(entry_of(&msg).unwrap().origin, Origin::Learned);
        msg.attributes.clear();
        assert_eq!(entry_of(&msg), None, "no address: not an entry");
    }
}
