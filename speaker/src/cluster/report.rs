//! Pure: how this node announces each Service, and which changes are worth an Event.
//!
//! "Announced" means really announced: over BGP, to peers whose session is Established and
//! whose desired routes cover one of the Service's addresses; on layer 2, for addresses this
//! node owns (answers ARP/NDP for). The report is recomputed after every snapshot and every
//! session refresh; an Event is published only when it changes (see [`event_for`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use herald_ipam::TrafficPolicy;
use ipnet::IpNet;

use crate::announce::{self, Desired, Exclusion};
use crate::bgp::fsm::State;
use crate::engine::Assigned;
use crate::status::BgpStatus;

/// How this node announces one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// Reachable through this node.
    Announced {
        /// Peers with an Established session that are sent a route for the Service.
        bgp_peers: usize,
        /// Interfaces this node answers ARP/NDP on for the Service's addresses.
        l2_interfaces: BTreeSet<String>,
    },
    /// Not announced by this node, and why.
    NotAnnounced(Reason),
}

/// Why a node does not announce a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The node announces nothing (DESIGN §5 exclusions).
    Excluded(Exclusion),
    /// `externalTrafficPolicy: Local` and no ready endpoint on this node.
    NoLocalEndpoint,
    /// Routes are wanted, but no session to those peers is Established.
    SessionsDown {
        /// Peers that would be sent a route.
        peers: usize,
    },
    /// This node is a layer-2 candidate, and another node owns the addresses.
    L2Standby,
    /// No advertisement covers the Service's pools for this node.
    NoAdvertisement,
    /// The node is drained (`herald-speaker drain`, or the `herald.dev/drain` annotation).
    Drained,
    /// Routes are wanted, but no session to those peers has a next hop of the address's
    /// family (an IPv6 address on IPv4 sessions, say).
    NoNextHop {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// Peers that would be sent a route.
        peers: usize,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Excluded(e) => {
                let why = match e {
                    Exclusion::UnknownNode => "no Node object with this name",
                    Exclusion::NotReady => "NotReady",
                    Exclusion::NetworkUnavailable => "NetworkUnavailable",
                    Exclusion::Labelled => {
                        "labelled node.kubernetes.io/exclude-from-external-load-balancers"
                    }
                };
                write!(f, "node excluded ({why})")
            }
            Reason::NoLocalEndpoint => write!(
                f,
                "externalTrafficPolicy Local and no ready endpoint on this node"
            ),
            Reason::SessionsDown { peers } => write!(
                f,
                "no BGP session established with the {peers} {} it would be sent to",
                plural(*peers, "peer", "peers")
            ),
            Reason::L2Standby => write!(f, "another node answers ARP/NDP for it"),
            Reason::NoAdvertisement => write!(f, "no advertisement selects this node"),
            Reason::Drained => write!(f, "the node is drained"),
            Reason::NoNextHop { family, peers } => write!(
                f,
                "no {family} next hop on the sessions to the {peers} {} it would be sent to \
                 (give the node an {family} address on the session's interface or an {family} \
                 InternalIP)",
                plural(*peers, "peer", "peers")
            ),
        }
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

impl Announcement {
    /// Whether the Service is reachable through this node.
    pub fn is_announced(&self) -> bool {
        matches!(self, Announcement::Announced { .. })
    }

    /// The sentence for Events and `/status`: "announced by node X via BGP to 2 peers".
    pub fn describe(&self, node: &str) -> String {
        match self {
            Announcement::Announced {
                bgp_peers,
                l2_interfaces,
            } => {
                let mut parts = Vec::new();
                if *bgp_peers > 0 {
                    parts.push(format!(
                        "via BGP to {bgp_peers} {}",
                        plural(*bgp_peers, "peer", "peers")
                    ));
                }
                if !l2_interfaces.is_empty() {
                    let list: Vec<&str> = l2_interfaces.iter().map(String::as_str).collect();
                    parts.push(format!("via L2 on {}", list.join(", ")));
                }
                format!("announced by node {node} {}", parts.join(" and "))
            }
            Announcement::NotAnnounced(reason) => {
                format!("not announced by node {node}: {reason}")
            }
        }
    }
}

/// Whether `prefix` (a desired route) covers `addr`.
fn covers(prefix: &IpNet, addr: IpAddr) -> bool {
    prefix.contains(&addr)
}

/// How this node announces each Service of `assigned` (every Service with an address);
/// a `drained` node announces none.
#[allow(clippy::too_many_arguments)] // the node's independent facts, each read once
pub fn announcements(
    node: &str,
    assigned: &Assigned,
    services: &[announce::Service],
    desired: &Desired,
    drained: bool,
    unsendable: &BTreeSet<(String, bool)>,
    sessions: &[BgpStatus],
    l2_owned: &[(IpAddr, String)],
) -> BTreeMap<String, Announcement> {
    let established: BTreeSet<&str> = sessions
        .iter()
        .filter(|s| s.state == State::Established.as_str())
        .map(|s| s.peer.as_str())
        .collect();
    let routes: Vec<PeerRoutes<'_>> = desired
        .bgp
        .iter()
        .map(|(peer, hosts)| PeerRoutes {
            peer,
            hosts,
            aggregates: hosts
                .keys()
                .filter(|p| p.prefix_len() < p.max_prefix_len())
                .copied()
                .collect(),
        })
        .collect();
    let by_key: BTreeMap<&str, &announce::Service> =
        services.iter().map(|s| (s.key.as_str(), s)).collect();
    let mut out = BTreeMap::new();
    for (key, addrs) in assigned {
        if addrs.is_empty() {
            continue;
        }
        let announcement = if let Some(e) = desired.excluded {
            Announcement::NotAnnounced(Reason::Excluded(e))
        } else if drained {
            Announcement::NotAnnounced(Reason::Drained)
        } else {
            one(
                node,
                addrs,
                by_key.get(key.as_str()).copied(),
                &routes,
                desired,
                &established,
                unsendable,
                l2_owned,
            )
        };
        out.insert(key.clone(), announcement);
    }
    out
}

/// One peer's desired routes: host routes are looked up, only aggregates need a scan.
struct PeerRoutes<'a> {
    peer: &'a str,
    hosts: &'a BTreeMap<IpNet, announce::RouteAttrs>,
    aggregates: Vec<IpNet>,
}

#[allow(clippy::too_many_arguments)] // as announcements, per Service
fn one(
    node: &str,
    addrs: &[(IpAddr, String)],
    service: Option<&announce::Service>,
    routes: &[PeerRoutes<'_>],
    desired: &Desired,
    established: &BTreeSet<&str>,
    unsendable: &BTreeSet<(String, bool)>,
    l2_owned: &[(IpAddr, String)],
) -> Announcement {
    let mine = |a: &IpAddr| addrs.iter().any(|(x, _)| x == a);
    let covered = |r: &PeerRoutes<'_>, a: &IpAddr| {
        r.hosts.contains_key(&IpNet::from(*a)) || r.aggregates.iter().any(|p| covers(p, *a))
    };
    let blocked =
        |r: &PeerRoutes<'_>, a: &IpAddr| unsendable.contains(&(r.peer.to_owned(), a.is_ipv6()));
    let wanted: BTreeSet<&str> = routes
        .iter()
        .filter(|r| addrs.iter().any(|(a, _)| covered(r, a) && !blocked(r, a)))
        .map(|r| r.peer)
        .collect();
    let stuck: Vec<(&str, bool)> = routes
        .iter()
        .flat_map(|r| {
            addrs
                .iter()
                .filter(move |(a, _)| covered(r, a) && blocked(r, a))
                .map(move |(a, _)| (r.peer, a.is_ipv6()))
        })
        .collect();
    let bgp_peers = wanted.iter().filter(|p| established.contains(*p)).count();
    let l2_interfaces: BTreeSet<String> = l2_owned
        .iter()
        .filter(|(a, _)| mine(a))
        .map(|(_, i)| i.clone())
        .collect();
    if bgp_peers > 0 || !l2_interfaces.is_empty() {
        return Announcement::Announced {
            bgp_peers,
            l2_interfaces,
        };
    }
    let reason = if !wanted.is_empty() {
        Reason::SessionsDown {
            peers: wanted.len(),
        }
    } else if let Some((_, v6)) = stuck.first() {
        let peers: BTreeSet<&str> = stuck.iter().map(|(p, _)| *p).collect();
        Reason::NoNextHop {
            family: if *v6 { "IPv6" } else { "IPv4" },
            peers: peers.len(),
        }
    } else if desired.l2.iter().any(|l| mine(&l.address)) {
        Reason::L2Standby
    } else if service.is_some_and(|s| {
        s.traffic_policy == TrafficPolicy::Local
            && !s
                .endpoints
                .iter()
                .any(|e| e.ready && e.node.as_deref() == Some(node))
    }) {
        Reason::NoLocalEndpoint
    } else {
        Reason::NoAdvertisement
    };
    Announcement::NotAnnounced(reason)
}

/// An Event to publish about a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `Announced` or `Withdrawn`.
    pub reason: &'static str,
    /// Warning (a withdrawal for a fault) or Normal.
    pub warning: bool,
    /// The sentence.
    pub note: String,
}

/// The Event for a change from `before` to `after`, if any: becoming announced or a
/// change of how (`Announced`), ceasing to be (`Withdrawn`, with the reason). Changes among
/// not-announced states make no Event: every node that never announced a Service would
/// otherwise report on it.
pub fn event_for(
    node: &str,
    before: Option<&Announcement>,
    after: Option<&Announcement>,
) -> Option<Notice> {
    match (before, after) {
        (b, Some(a)) if a.is_announced() && b != Some(a) => Some(Notice {
            reason: "Announced",
            warning: false,
            note: a.describe(node),
        }),
        (Some(b), Some(a @ Announcement::NotAnnounced(r))) if b.is_announced() => Some(Notice {
            reason: "Withdrawn",
            warning: matches!(
                r,
                Reason::SessionsDown { .. }
                    | Reason::NoNextHop { .. }
                    | Reason::Excluded(Exclusion::NotReady | Exclusion::NetworkUnavailable)
            ),
            note: a.describe(node),
        }),
        // Never announced because no session can carry the address's family: said once, not
        // left to /status alone.
        (b, Some(a @ Announcement::NotAnnounced(Reason::NoNextHop { .. }))) if b != Some(a) => {
            Some(Notice {
                reason: "NotSent",
                warning: true,
                note: a.describe(node),
            })
        }
        (Some(b), None) if b.is_announced() => Some(Notice {
            reason: "Withdrawn",
            warning: false,
            note: format!("not announced by node {node}: the Service has no address"),
        }),
        _ => None,
    }
}

/// The Events for every Service whose announcement changed, by Service key.
pub fn changes(
    node: &str,
    before: &BTreeMap<String, Announcement>,
    after: &BTreeMap<String, Announcement>,
) -> Vec<(String, Notice)> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|k| event_for(node, before.get(k), after.get(k)).map(|n| (k.clone(), n)))
        .collect()
}
