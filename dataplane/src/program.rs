//! Plans the map writes that turn the XDP program's tables into the desired VIPs: stable ids
//! for VIPs and backends, a Maglev table per VIP, and an order of writes that never shows the
//! program a half-made state. Pure: no maps, no I/O; [`super::driver`] carries the plan out.
//!
//! Ids are handed out round-robin rather than lowest-free, so a freed id is reused as late as
//! possible: flows pinned to a removed backend's id then fall back to their VIP's table
//! instead of following the id to an unrelated host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use thiserror::Error;

use super::maglev::{self, TableError, TableSize};
use crate::Vip;
use herald_ipam::Protocol;

/// A VIP as the program keys it: address, port, IP protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipAddr {
    /// Address.
    pub address: IpAddr,
    /// Port; 0 is every port.
    pub port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
}

impl VipAddr {
    /// The key of a desired VIP.
    pub fn of(vip: &Vip) -> Self {
        Self {
            address: vip.address,
            port: vip.port,
            proto: protocol_number(vip.protocol),
        }
    }
}

/// IANA protocol number of a Service protocol.
pub fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// One write to the program's maps, in the order a plan lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets backend slot `id` to `address` (`local`: this host, passed up the stack).
    SetBackend {
        /// Slot.
        id: u32,
        /// Backend host.
        address: IpAddr,
        /// Whether the address is this host's.
        local: bool,
    },
    /// Installs VIP `vip_id`'s Maglev table (backend ids, one per slot).
    SetTable {
        /// VIP id.
        vip_id: u32,
        /// The table.
        table: Arc<Vec<u32>>,
    },
    /// Makes `vip` known to the program under `id` (after its table is in place).
    SetVip {
        /// The VIP.
        vip: VipAddr,
        /// Its id.
        id: u32,
    },
    /// Forgets `vip`: its packets pass up untouched.
    RemoveVip {
        /// The VIP.
        vip: VipAddr,
    },
    /// Clears backend slot `id` (no VIP uses it any more).
    RemoveBackend {
        /// Slot.
        id: u32,
    },
}

/// Why a VIP could not be programmed (the others still are).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// Every VIP id is in use.
    #[error("VIP {vip:?}: no free VIP id (limit {limit})")]
    VipIds {
        /// The VIP left out.
        vip: VipAddr,
        /// How many VIPs the program holds.
        limit: u32,
    },
    /// Every backend slot is in use.
    #[error("VIP {vip:?}: no free backend slot for {backend} (limit {limit})")]
    BackendIds {
        /// The VIP left out.
        vip: VipAddr,
        /// The backend that found no slot.
        backend: IpAddr,
        /// How many backends the program holds.
        limit: u32,
    },
    /// The Maglev table could not be built.
    #[error("VIP {vip:?}: {source}")]
    Table {
        /// The VIP left out.
        vip: VipAddr,
        /// Why.
        source: TableError,
    },
}

/// Round-robin id allocator over `0..limit`.
#[derive(Debug, Clone)]
struct Ids<K: Ord> {
    by_key: BTreeMap<K, u32>,
    used: BTreeSet<u32>,
    next: u32,
    limit: u32,
}

impl<K: Ord + Clone> Ids<K> {
    fn new(limit: u32) -> Self {
        Self {
            by_key: BTreeMap::new(),
            used: BTreeSet::new(),
            next: 0,
            limit,
        }
    }

    fn get(&self, key: &K) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    fn insert(&mut self, key: K, id: u32) {
        self.by_key.insert(key, id);
        self.used.insert(id);
        self.next = self.next.max(id.wrapping_add(1) % self.limit.max(1));
    }

    fn assign(&mut self, key: &K) -> Option<u32> {
        if let Some(id) = self.get(key) {
            return Some(id);
        }
        if self.used.len() as u64 >= u64::from(self.limit) {
            return None;
        }
        let mut id = self.next;
        while self.used.contains(&id) {
            id = (id + 1) % self.limit;
        }
        self.next = (id + 1) % self.limit;
        self.by_key.insert(key.clone(), id);
        self.used.insert(id);
        Some(id)
    }

    fn release(&mut self, key: &K) -> Option<u32> {
        let id = self.by_key.remove(key)?;
        self.used.remove(&id);
        Some(id)
    }
}

/// What the program holds, as far as this planner knows, and the ids it handed out.
#[derive(Debug, Clone)]
pub struct Programmer {
    size: TableSize,
    vip_ids: Ids<VipAddr>,
    backend_ids: Ids<IpAddr>,
    /// Backends as written: address -> local flag.
    backends: BTreeMap<IpAddr, bool>,
    /// Per installed VIP, the weighted backend set its table was built from (`None`: the
    /// table's origin is unknown, e.g. recovered from pinned maps; rebuilt on next plan).
    tables: BTreeMap<VipAddr, Option<Vec<(IpAddr, u32)>>>,
}

impl Programmer {
    /// An empty program with room for `max_vips` VIPs and `max_backends` backends.
    pub fn new(size: TableSize, max_vips: u32, max_backends: u32) -> Self {
        Self {
            size,
            vip_ids: Ids::new(max_vips),
            backend_ids: Ids::new(max_backends),
            backends: BTreeMap::new(),
            tables: BTreeMap::new(),
        }
    }

    /// Adopts what pinned maps hold after a restart: the VIPs with their ids and the backend
    /// slots with their addresses, so the same hosts keep the same ids (and flows keep
    /// pointing at the right host). Tables are rebuilt by the next plan.
    pub fn recover(
        &mut self,
        vips: impl IntoIterator<Item = (VipAddr, u32)>,
        backends: impl IntoIterator<Item = (u32, IpAddr, bool)>,
    ) {
        for (vip, id) in vips {
            self.vip_ids.insert(vip, id);
            self.tables.insert(vip, None);
        }
        for (id, address, local) in backends {
            self.backend_ids.insert(address, id);
            self.backends.insert(address, local);
        }
    }

    /// The id of an installed VIP.
    pub fn vip_id(&self, vip: &VipAddr) -> Option<u32> {
        self.tables
            .contains_key(vip)
            .then(|| self.vip_ids.get(vip))
            .flatten()
    }

    /// The id of a backend host.
    pub fn backend_id(&self, address: &IpAddr) -> Option<u32> {
        self.backend_ids.get(address)
    }

    /// Installed VIPs and their ids.
    pub fn vips(&self) -> impl Iterator<Item = (VipAddr, u32)> + '_ {
        self.tables
            .keys()
            .filter_map(|v| Some((*v, self.vip_ids.get(v)?)))
    }

    /// The writes that make the program serve `desired` (VIPs without a backend of
    /// non-zero weight are not served: their packets pass up the stack), and the VIPs that
    /// could not be programmed. The planner's view is updated as if every write succeeded.
    pub fn plan(
        &mut self,
        desired: &[Vip],
        is_local: impl Fn(IpAddr) -> bool,
    ) -> (Vec<Op>, Vec<PlanError>) {
        let mut wanted: BTreeMap<VipAddr, Vec<(IpAddr, u32)>> = BTreeMap::new();
        for vip in desired {
            let live: Vec<(IpAddr, u32)> = vip
                .backends
                .iter()
                .copied()
                .filter(|(_, w)| *w > 0)
                .collect();
            if !live.is_empty() {
                let entry = wanted.entry(VipAddr::of(vip)).or_default();
                entry.extend(live);
                entry.sort_unstable();
                entry.dedup_by_key(|(a, _)| *a);
            }
        }

        let mut set_backends = Vec::new();
        let mut tables = Vec::new();
        let mut set_vips = Vec::new();
        let mut errors = Vec::new();
        let mut served: BTreeSet<VipAddr> = BTreeSet::new();
        for (vip, backends) in &wanted {
            match self.program_vip(*vip, backends, &is_local, &mut set_backends) {
                Ok(Some((vip_id, table, new))) => {
                    tables.push(Op::SetTable { vip_id, table });
                    if new {
                        set_vips.push(Op::SetVip {
                            vip: *vip,
                            id: vip_id,
                        });
                    }
                    served.insert(*vip);
                }
                Ok(None) => {
                    served.insert(*vip);
                }
                Err(e) => {
                    // An installed VIP keeps its previous table rather than vanishing.
                    if self.tables.contains_key(vip) {
                        served.insert(*vip);
                    }
                    errors.push(e);
                }
            }
        }

        let mut removals = Vec::new();
        let gone: Vec<VipAddr> = self
            .tables
            .keys()
            .filter(|v| !served.contains(v))
            .copied()
            .collect();
        for vip in gone {
            self.tables.remove(&vip);
            self.vip_ids.release(&vip);
            removals.push(Op::RemoveVip { vip });
        }
        let in_use: BTreeSet<IpAddr> = self
            .tables
            .values()
            .flatten()
            .flat_map(|b| b.iter().map(|(a, _)| *a))
            .collect();
        let unused: Vec<IpAddr> = self
            .backends
            .keys()
            .filter(|a| !in_use.contains(a))
            .copied()
            .collect();
        for address in unused {
            self.backends.remove(&address);
            if let Some(id) = self.backend_ids.release(&address) {
                removals.push(Op::RemoveBackend { id });
            }
        }

        let mut ops = set_backends;
        ops.extend(tables);
        ops.extend(set_vips);
        ops.extend(removals);
        (ops, errors)
    }

    /// Ids, backend writes and, if the backend set changed, the new table for one VIP:
    /// `Some((vip_id, table, newly installed))`, or `None` when nothing changed.
    #[allow(clippy::type_complexity)]
    fn program_vip(
        &mut self,
        vip: VipAddr,
        backends: &[(IpAddr, u32)],
        is_local: &impl Fn(IpAddr) -> bool,
        set_backends: &mut Vec<Op>,
    ) -> Result<Option<(u32, Arc<Vec<u32>>, bool)>, PlanError> {
        if self.tables.get(&vip).and_then(Option::as_ref) == Some(&backends.to_vec())
            && backends
                .iter()
                .all(|(a, _)| self.backends.get(a) == Some(&is_local(*a)))
        {
            return Ok(None);
        }
        let new = !self.tables.contains_key(&vip);
        let vip_id = match self.vip_ids.assign(&vip) {
            Some(id) => id,
            None => {
                return Err(PlanError::VipIds {
                    vip,
                    limit: self.vip_ids.limit,
                });
            }
        };
        let mut members = Vec::with_capacity(backends.len());
        let mut fresh = Vec::new();
        for (address, weight) in backends {
            let known = self.backend_ids.get(address).is_some();
            let Some(id) = self.backend_ids.assign(address) else {
                for a in fresh {
                    self.backend_ids.release(&a);
                }
                if new {
                    self.vip_ids.release(&vip);
                }
                return Err(PlanError::BackendIds {
                    vip,
                    backend: *address,
                    limit: self.backend_ids.limit,
                });
            };
            if !known {
                fresh.push(*address);
            }
            members.push(maglev::Backend {
                id,
                key: *address,
                weight: *weight,
            });
        }
        let table = match maglev::build_table(&members, self.size) {
            Ok(t) => t,
            Err(source) => {
                for a in fresh {
                    self.backend_ids.release(&a);
                }
                if new {
                    self.vip_ids.release(&vip);
                }
                return Err(PlanError::Table { vip, source });
            }
        };
        for m in &members {
            let local = is_local(m.key);
            if self.backends.get(&m.key) != Some(&local) {
                self.backends.insert(m.key, local);
                set_backends.push(Op::SetBackend {
                    id: m.id,
                    address: m.key,
                    local,
                });
            }
        }
        self.tables.insert(vip, Some(backends.to_vec()));
        Ok(Some((vip_id, Arc::new(table), new)))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn vip(last: u8, port: u16, backends: &[(u8, u32)]) -> Vip {
        Vip {
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            port,
            protocol: Protocol::Tcp,
            backends: backends.iter().map(|(b, w)| (ip(*b), *w)).collect(),
            service: format!("demo/s{last}"),
        }
    }

    fn programmer() -> Programmer {
        Programmer::new(TableSize::new(251).unwrap(), 4, 8)
    }

    fn kinds(ops: &[Op]) -> Vec<&'static str> {
        ops.iter()
            .map(|o| match o {
                Op::SetBackend { .. } => "backend",
                Op::SetTable { .. } => "table",
                Op::SetVip { .. } => "vip",
                Op::RemoveVip { .. } => "-vip",
                Op::RemoveBackend { .. } => "-backend",
            })
            .collect()
    }

    #[test]
    fn a_new_vip_writes_backends_then_its_table_then_the_vip() {
        let mut p = programmer();
        let (ops, errors) = p.plan(&[vip(1, 80, &[(1, 1), (2, 1)])], |_| false);
        assert!(errors.is_empty());
        assert_eq!(kinds(&ops), ["backend", "backend", "table", "vip"]);
        let Op::SetTable { table, .. } = &ops[2] else {
            unreachable!()
        };
        let ids: BTreeSet<u32> = table.iter().copied().collect();
        assert_eq!(ids, [0, 1].into_iter().collect());
    }

    #[test]
    fn the_same_desired_state_twice_writes_nothing() {
        let mut p = programmer();
        let desired = [vip(1, 80, &[(1, 1), (2, 1)]), vip(2, 443, &[(2, 1)])];
        p.plan(&desired, |_| false);
        let (ops, errors) = p.plan(&desired, |_| false);
        assert!(ops.is_empty() && errors.is_empty(), "{ops:?}");
    }

    #[test]
    fn adding_a_backend_rebuilds_only_that_vips_table_and_keeps_ids() {
        let mut p = programmer();
        p.plan(&[vip(1, 80, &[(1, 1)]), vip(2, 80, &[(1, 1)])], |_| false);
        let before = (
            p.vip_id(&VipAddr::of(&vip(1, 80, &[]))),
            p.backend_id(&ip(1)),
        );
        let (ops, _) = p.plan(
            &[vip(1, 80, &[(1, 1), (3, 1)]), vip(2, 80, &[(1, 1)])],
            |_| false,
        );
        assert_eq!(kinds(&ops), ["backend", "table"]);
        assert_eq!(
            before,
            (
                p.vip_id(&VipAddr::of(&vip(1, 80, &[]))),
                p.backend_id(&ip(1))
            )
        );
    }

    #[test]
    fn a_removed_vip_goes_before_its_backends_and_shared_backends_stay() {
        let mut p = programmer();
        p.plan(
            &[vip(1, 80, &[(1, 1), (2, 1)]), vip(2, 80, &[(2, 1)])],
            |_| false,
        );
        let id1 = p.backend_id(&ip(1)).unwrap();
        let (ops, _) = p.plan(&[vip(2, 80, &[(2, 1)])], |_| false);
        assert_eq!(
            ops,
            [
                Op::RemoveVip {
                    vip: VipAddr::of(&vip(1, 80, &[]))
                },
                Op::RemoveBackend { id: id1 }
            ]
        );
        assert!(p.backend_id(&ip(2)).is_some());
    }

    #[test]
    fn a_vip_whose_backends_all_leave_is_removed_not_left_with_a_stale_table() {
        let mut p = programmer();
        p.plan(&[vip(1, 80, &[(1, 1)])], |_| false);
        let (ops, _) = p.plan(&[vip(1, 80, &[(1, 0)])], |_| false);
        assert_eq!(kinds(&ops), ["-vip", "-backend"]);
        let (ops, _) = p.plan(&[vip(1, 80, &[])], |_| false);
        assert!(ops.is_empty());
    }

    #[test]
    fn freed_ids_are_reused_as_late_as_possible() {
        let mut p = programmer();
        p.plan(&[vip(1, 80, &[(1, 1)])], |_| false);
        let first = p.backend_id(&ip(1)).unwrap();
        p.plan(&[vip(1, 80, &[(2, 1)])], |_| false);
        let second = p.backend_id(&ip(2)).unwrap();
        assert_ne!(first, second, "a fresh slot while others are free");
    }

    #[test]
    fn running_out_of_vip_ids_leaves_the_extra_vip_out_with_an_error_naming_it() {
        let mut p = programmer();
        let desired: Vec<Vip> = (1..=5).map(|i| vip(i, 80, &[(1, 1)])).collect();
        let (ops, errors) = p.plan(&desired, |_| false);
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::SetVip { .. }))
                .count(),
            4
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("192.0.2.5"), "{}", errors[0]);
    }

    #[test]
    fn running_out_of_backend_slots_frees_what_the_failed_vip_took() {
        let mut p = programmer();
        let many: Vec<(u8, u32)> = (1..=9).map(|b| (b, 1)).collect();
        let (ops, errors) = p.plan(&[vip(1, 80, &many)], |_| false);
        assert!(ops.is_empty());
        assert!(matches!(errors[..], [PlanError::BackendIds { .. }]));
        let (ops, errors) = p.plan(&[vip(2, 80, &[(1, 1)])], |_| false);
        assert!(errors.is_empty());
        assert_eq!(kinds(&ops), ["backend", "table", "vip"]);
    }

    #[test]
    fn a_backend_becoming_local_is_rewritten_with_the_flag() {
        let mut p = programmer();
        p.plan(&[vip(1, 80, &[(1, 1)])], |_| false);
        let (ops, _) = p.plan(&[vip(1, 80, &[(1, 1)])], |a| a == ip(1));
        assert!(
            ops.contains(&Op::SetBackend {
                id: p.backend_id(&ip(1)).unwrap(),
                address: ip(1),
                local: true
            }),
            "{ops:?}"
        );
    }

    #[test]
    fn after_recovery_the_same_hosts_keep_their_ids_and_tables_are_rebuilt_once() {
        let mut p = programmer();
        let desired = [vip(1, 80, &[(1, 1), (2, 1)])];
        p.plan(&desired, |_| false);
        let vips: Vec<(VipAddr, u32)> = p.vips().collect();
        let backends: Vec<(u32, IpAddr, bool)> = [ip(1), ip(2)]
            .iter()
            .map(|a| (p.backend_id(a).unwrap(), *a, false))
            .collect();
        let mut restarted = programmer();
        restarted.recover(vips.clone(), backends.clone());
        let (ops, _) = restarted.plan(&desired, |_| false);
        assert_eq!(kinds(&ops), ["table"], "only the table, no id changes");
        assert_eq!(restarted.vips().collect::<Vec<_>>(), vips);
        for (id, a, _) in backends {
            assert_eq!(restarted.backend_id(&a), Some(id));
        }
        assert!(restarted.plan(&desired, |_| false).0.is_empty());
    }

    #[test]
    fn a_recovered_vip_no_longer_wanted_is_removed() {
        let mut p = programmer();
        p.recover([(VipAddr::of(&vip(9, 80, &[])), 3)], [(5, ip(7), false)]);
        let (ops, _) = p.plan(&[], |_| false);
        assert_eq!(kinds(&ops), ["-vip", "-backend"]);
    }
}
