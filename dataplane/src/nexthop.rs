//! Which neighbour entries the balancer needs, and what to change in the kernel's neighbour
//! table to have them: pure, no netlink. [`super::neighbours`] reads the table and the routes
//! and carries the plan out.
//!
//! The XDP program asks `bpf_fib_lookup` for the next hop of each encapsulated packet. That
//! helper only reads the neighbour table: when the next hop has no entry (a host the balancer
//! never talked to, or an entry the kernel garbage-collected) it answers `NO_NEIGH`, the
//! packet is dropped (`no_neighbour`), and nothing ever asks the kernel to resolve it. So user
//! space keeps one entry per next hop of the current backends, flagged *managed*
//! (`NTF_EXT_MANAGED`, Linux 5.16+: the kernel resolves it at once and keeps re-probing it so
//! it stays usable) and *extern_learn* (exempt from garbage collection), and marked with
//! [`PROTOCOL`] so Herald knows which entries are its own, also after a restart.
//!
//! Herald never changes or removes an entry it did not add: static ones (`permanent`,
//! `noarp`), entries another agent manages or marks, and entries of another protocol are left
//! as they are (a static entry resolves the next hop already). An entry the kernel learned on
//! its own is taken over (made managed and marked), since the kernel may collect it at any
//! time; when no backend needs it any more it is removed and the kernel learns it again on
//! demand, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// `NDA_PROTOCOL` of the neighbour entries Herald adds (`ip neigh` shows `proto 72`). The
/// value is one that iproute2's `rt_protos` and the kernel's `RTPROT_*` leave unassigned.
pub const PROTOCOL: u8 = 72;

/// A next hop: the neighbour address a packet to a backend is sent to, on the interface it
/// leaves by (the backend itself on a connected network, else the route's gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHop {
    /// Outgoing interface index.
    pub ifindex: u32,
    /// Neighbour address (IPv4 or IPv6; an IPv4 route may have an IPv6 gateway, RFC 5549).
    pub address: IpAddr,
}

/// What a route lookup for one backend said, in the terms that decide its next hops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// A unicast route (not local, blackhole, unreachable, ...): only those have next hops.
    pub unicast: bool,
    /// The path the kernel chose for this lookup: outgoing interface and gateway, if any.
    pub path: Option<(u32, Option<IpAddr>)>,
    /// Every path of the matching route when it is a multipath (ECMP) route: the XDP
    /// program's lookups may pick any of them, flow by flow.
    pub multipath: Vec<(u32, Option<IpAddr>)>,
}

impl Route {
    /// The next hops towards `backend` over this route: each path's gateway, or the backend
    /// itself where a path has none (the backend is on that link).
    pub fn next_hops(&self, backend: IpAddr) -> Vec<NextHop> {
        if !self.unicast {
            return Vec::new();
        }
        let mut out: Vec<NextHop> = self
            .path
            .iter()
            .chain(&self.multipath)
            .map(|(ifindex, gateway)| NextHop {
                ifindex: *ifindex,
                address: gateway.unwrap_or(backend),
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Who an existing neighbour entry belongs to, which decides what Herald may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Carries Herald's [`PROTOCOL`] marker; `managed` says whether it still has the managed
    /// flag (someone may have replaced it without).
    Herald {
        /// `NTF_EXT_MANAGED` is set.
        managed: bool,
    },
    /// Learned by the kernel on demand (no marker, not static, not managed): it may be
    /// garbage-collected, so Herald takes it over.
    Learned,
    /// Someone else's: static (`permanent`, `noarp`), managed or extern-learned by another
    /// agent, or marked with another protocol. Never changed or removed.
    Foreign,
}

impl Origin {
    /// Classifies an entry from its `NDA_PROTOCOL` (0 when absent), whether its state is
    /// static (`NUD_PERMANENT` or `NUD_NOARP`), and its `NTF_EXT_LEARNED` and
    /// `NTF_EXT_MANAGED` flags. A static entry is the administrator's even if it carries
    /// Herald's marker (`ip neigh replace ... nud permanent` keeps the protocol).
    pub fn classify(protocol: u8, is_static: bool, ext_learned: bool, managed: bool) -> Self {
        if is_static {
            Self::Foreign
        } else if protocol == PROTOCOL {
            Self::Herald { managed }
        } else if protocol != 0 || ext_learned || managed {
            Self::Foreign
        } else {
            Self::Learned
        }
    }
}

/// One entry of the kernel's neighbour table (system facts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Interface and address.
    pub hop: NextHop,
    /// Whose it is.
    pub origin: Origin,
}

/// One change to the neighbour table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// Add (or replace a kernel-learned entry with) a managed, extern-learned entry marked
    /// with [`PROTOCOL`].
    Manage(NextHop),
    /// Remove an entry Herald added that no backend needs any more.
    Release(NextHop),
}

/// The changes that give every `wanted` next hop a usable entry and remove Herald's entries
/// that are not wanted, given the current `table`. Foreign entries are never touched.
/// Releases come first, then additions, each in address order.
pub fn plan(wanted: &BTreeSet<NextHop>, table: &[Entry]) -> Vec<Op> {
    let current: BTreeMap<NextHop, Origin> = table.iter().map(|e| (e.hop, e.origin)).collect();
    let mut ops: Vec<Op> = current
        .iter()
        .filter(|(hop, origin)| matches!(origin, Origin::Herald { .. }) && !wanted.contains(hop))
        .map(|(hop, _)| Op::Release(*hop))
        .collect();
    ops.extend(
        wanted
            .iter()
            .filter(|hop| {
                matches!(
                    current.get(hop),
                    None | Some(Origin::Learned) | Some(Origin::Herald { managed: false })
                )
            })
            .map(|hop| Op::Manage(*hop)),
    );
    ops
}

/// The next hops Herald keeps an entry for after `plan` ran: the wanted ones not covered by
/// someone else's entry.
pub fn kept(wanted: &BTreeSet<NextHop>, table: &[Entry]) -> BTreeSet<NextHop> {
    let foreign: BTreeSet<NextHop> = table
        .iter()
        .filter(|e| e.origin == Origin::Foreign)
        .map(|e| e.hop)
        .collect();
    wanted.difference(&foreign).copied().collect()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn hop(ifindex: u32, last: u8) -> NextHop {
        NextHop {
            ifindex,
            address: v4(last),
        }
    }

    fn entry(ifindex: u32, last: u8, origin: Origin) -> Entry {
        Entry {
            hop: hop(ifindex, last),
            origin,
        }
    }

    const OURS: Origin = Origin::Herald { managed: true };

    #[test]
    fn an_empty_table_gets_a_managed_entry_for_every_wanted_next_hop() {
        let wanted = [hop(2, 1), hop(3, 9)].into_iter().collect();
        assert_eq!(
            plan(&wanted, &[]),
            [Op::Manage(hop(2, 1)), Op::Manage(hop(3, 9))]
        );
    }

    #[test]
    fn entries_already_managed_by_herald_are_left_alone() {
        let wanted = [hop(2, 1)].into_iter().collect();
        assert!(plan(&wanted, &[entry(2, 1, OURS)]).is_empty());
    }

    #[test]
    fn a_kernel_learned_entry_or_one_that_lost_the_managed_flag_is_taken_over() {
        let wanted = [hop(2, 1), hop(2, 2)].into_iter().collect();
        let table = [
            entry(2, 1, Origin::Learned),
            entry(2, 2, Origin::Herald { managed: false }),
        ];
        assert_eq!(
            plan(&wanted, &table),
            [Op::Manage(hop(2, 1)), Op::Manage(hop(2, 2))]
        );
    }

    #[test]
    fn foreign_entries_are_never_replaced_or_removed() {
        let wanted = [hop(2, 1)].into_iter().collect();
        let table = [entry(2, 1, Origin::Foreign), entry(2, 7, Origin::Foreign)];
        assert!(plan(&wanted, &table).is_empty());
        assert!(plan(&BTreeSet::new(), &table).is_empty());
        assert!(kept(&wanted, &table).is_empty(), "the admin's entry serves");
    }

    #[test]
    fn herald_entries_no_backend_needs_are_released_and_learned_ones_stay() {
        let wanted = [hop(2, 1)].into_iter().collect();
        let table = [
            entry(2, 1, OURS),
            entry(2, 5, OURS),
            entry(3, 1, Origin::Herald { managed: false }),
            entry(2, 6, Origin::Learned),
        ];
        assert_eq!(
            plan(&wanted, &table),
            [Op::Release(hop(2, 5)), Op::Release(hop(3, 1))]
        );
    }

    #[test]
    fn the_same_address_on_another_interface_is_another_next_hop() {
        let wanted = [hop(3, 1)].into_iter().collect();
        assert_eq!(
            plan(&wanted, &[entry(2, 1, OURS)]),
            [Op::Release(hop(2, 1)), Op::Manage(hop(3, 1))]
        );
    }

    #[test]
    fn a_plan_carried_out_plans_nothing_more() {
        let wanted: BTreeSet<NextHop> = [hop(2, 1), hop(2, 3)].into_iter().collect();
        let table = [
            entry(2, 1, Origin::Learned),
            entry(2, 2, OURS),
            entry(2, 4, Origin::Foreign),
        ];
        let mut after: BTreeMap<NextHop, Origin> =
            table.iter().map(|e| (e.hop, e.origin)).collect();
        for op in plan(&wanted, &table) {
            match op {
                Op::Manage(h) => after.insert(h, OURS),
                Op::Release(h) => after.remove(&h),
            };
        }
        let table: Vec<Entry> = after
            .into_iter()
            .map(|(hop, origin)| Entry { hop, origin })
            .collect();
        assert!(plan(&wanted, &table).is_empty());
        assert_eq!(kept(&wanted, &table), wanted);
    }

    #[test]
    fn classification_respects_static_entries_and_other_agents() {
        use Origin::*;
        for (protocol, is_static, ext, managed, want) in [
            (0, false, false, false, Learned),
            (PROTOCOL, false, true, true, Herald { managed: true }),
            (PROTOCOL, false, true, false, Herald { managed: false }),
            // `ip neigh replace ... nud permanent` over Herald's entry: now the admin's.
            (PROTOCOL, true, true, false, Foreign),
            (0, true, false, false, Foreign),
            (0, false, true, false, Foreign),
            (0, false, false, true, Foreign),
            (186, false, false, false, Foreign),
        ] {
            assert_eq!(
                Origin::classify(protocol, is_static, ext, managed),
                want,
                "protocol {protocol} static {is_static} ext {ext} managed {managed}"
            );
        }
    }

    #[test]
    fn a_connected_backend_is_its_own_next_hop_and_a_routed_one_uses_the_gateway() {
        let connected = Route {
            unicast: true,
            path: Some((2, None)),
            multipath: Vec::new(),
        };
        assert_eq!(connected.next_hops(v4(7)), [hop(2, 7)]);
        let routed = Route {
            unicast: true,
            path: Some((3, Some(v4(1)))),
            multipath: Vec::new(),
        };
        assert_eq!(routed.next_hops(v4(7)), [hop(3, 1)]);
    }

    #[test]
    fn every_leg_of_a_multipath_route_is_a_next_hop() {
        let gw6 = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        let route = Route {
            unicast: true,
            path: Some((3, Some(v4(1)))),
            multipath: vec![(3, Some(v4(1))), (4, Some(v4(2))), (5, Some(gw6))],
        };
        assert_eq!(
            route.next_hops(v4(7)),
            [
                hop(3, 1),
                hop(4, 2),
                NextHop {
                    ifindex: 5,
                    address: gw6
                }
            ]
        );
    }

    #[test]
    fn local_blackhole_and_unreachable_routes_have_no_next_hop() {
        let route = Route {
            unicast: false,
            path: Some((1, None)),
            multipath: Vec::new(),
        };
        assert!(route.next_hops(v4(7)).is_empty());
    }
}
