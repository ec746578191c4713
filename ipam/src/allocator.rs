//! The allocator: pools and Services in, assignments, errors and conflicts out.
//!
//! State, and the invariants every public method keeps:
//! - `records`: one record per known Service (a slab indexed by a small id; `index` maps
//!   keys to ids with 8-byte entries, the key itself kept only in the record). A record
//!   holds the Service as last seen, its address per family (`Slots`, 28 bytes), and its
//!   conflict, if any.
//! - `holders`: per family, address bits -> ids of the Services holding it (`HolderMap`:
//!   8-byte entries for IPv4, 24 for IPv6). Holders of one address are pairwise compatible
//!   (see `sharing`). Hash maps whose hash keeps the address's low bits as the bucket index
//!   (`hash.rs`): the allocator hands addresses out in ascending order, so inserts touch
//!   consecutive buckets and stay in cache.
//! - every pool span's free set is exactly its usable addresses minus `holders` keys.
//! - `shared`: sharing key -> addresses held under that key, per family, so a Service
//!   with a key finds its partners' addresses without scanning.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::error::{ConfigError, Error, Reason};
use super::pool::{Pool, PoolCounts, PoolState};
use super::service::{Family, FamilyPolicy, Service, ServiceKey, Spec, join, split};

/// How automatic assignment picks an address inside a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The lowest free address (the cluster controller: the API server keeps the history,
    /// and addresses are handed out densely).
    #[default]
    LowestFree,
    /// A free address derived from a hash of the Service (or its sharing key) within the
    /// pool, so that hosts that apply the same Services in the same order agree without
    /// sharing history (standalone). See the [module docs](super), *Placement*.
    Hashed,
}

/// The address allocator. See the [module docs](super) for the rules.
#[derive(Debug, Default)]
pub struct Allocator {
    placement: Placement,
    pools: Vec<PoolState>,
    /// Pool ids in auto-assignment order.
    order: Vec<u32>,
    by_name: BTreeMap<String, u32>,
    /// Whether two pools share an address: then the pool reported for an address must be
    /// looked up, not taken from where the address was found.
    overlapping: bool,
    index: Index,
    records: Slab<Record>,
    holders: HolderMap,
    shared: BTreeMap<Box<str>, [BTreeSet<u128>; 2]>,
}

#[derive(Debug)]
struct Record {
    svc: Spec,
    /// Per family index.
    slots: Slots,
    conflict: Option<Box<Reason>>,
}

/// A Service's address of one family (records store it as [`Slots`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    bits: u128,
    /// The pool granting it; `None` under a conflict.
    pool: Option<u32>,
}

impl Allocator {
    /// An allocator with no pools and no Services, handing out the lowest free address.
    pub fn new() -> Self {
        Self::default()
    }

    /// An allocator with no pools and no Services, choosing automatic addresses by
    /// `placement`.
    pub fn with_placement(placement: Placement) -> Self {
        Allocator {
            placement,
            ..Self::default()
        }
    }

    /// Replaces the pool configuration.
    ///
    /// Held addresses stay held. Every Service is re-checked against the new pools; the
    /// returned list is every conflict that exists afterwards (sorted by Service), each naming
    /// the Service, the address and why it is no longer valid. Conflicted Services keep their
    /// address reserved, and [`Allocator::assign`] returns [`Reason::Conflict`] for them until
    /// the pools allow the address again, the Service's request changes, or it is released.
    ///
    /// An invalid configuration is refused whole and the previous one stays in force.
    pub fn set_pools(&mut self, pools: Vec<Pool>) -> Result<Vec<Error>, ConfigError> {
        let mut by_name = BTreeMap::new();
        let mut states = Vec::with_capacity(pools.len());
        for (i, pool) in pools.into_iter().enumerate() {
            if by_name.insert(pool.name.clone(), i as u32).is_some() {
                return Err(ConfigError::Duplicate { pool: pool.name });
            }
            states.push(PoolState::build(pool)?);
        }
        for family in Family::ALL {
            for bits in self.holders.addresses(family) {
                for pool in &mut states {
                    if let Some(span) = pool.span_of_mut(family, bits) {
                        span.take(bits);
                    }
                }
            }
        }
        let mut order: Vec<u32> = (0..states.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&states[a as usize].spec, &states[b as usize].spec);
            let rank = |p: &Pool| (p.allocate_to.priority.is_none(), p.allocate_to.priority);
            rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name))
        });
        self.overlapping = Family::ALL.into_iter().any(|family| {
            let mut spans: Vec<(u128, u128)> = states
                .iter()
                .flat_map(|p| p.spans[family.index()].iter().map(|s| (s.lo, s.hi)))
                .collect();
            spans.sort_unstable();
            spans.windows(2).any(|w| w[1].0 <= w[0].1)
        });
        self.pools = states;
        self.by_name = by_name;
        self.order = order;
        for id in self.records.ids() {
            if self.records.get(id).is_some() {
                self.revalidate(id);
            }
        }
        Ok(self.conflicts())
    }

    /// Restores the assignments recorded in the Services' status (`current`), before anything
    /// new is allocated.
    ///
    /// Each current address of a family the Service uses (the first per family) is held
    /// again. An address that is not valid (outside the pools the Service may use, disabled,
    /// avoided) is held anyway and becomes a conflict: nothing is moved. The one exception is
    /// an address a Service restored earlier holds and cannot share: two Services cannot both
    /// keep it, so it is not restored; the error is returned and the next `assign` gives the
    /// later Service a fresh address. Pass Services oldest first. A state the allocator wrote
    /// itself never has such clashes, so restoring it is a fixed point.
    ///
    /// Returns the conflicts and clashes, in input order. Services without current
    /// addresses are skipped.
    pub fn restore(&mut self, services: impl IntoIterator<Item = Service>) -> Vec<Error> {
        let mut conflicts = Vec::new();
        for svc in services {
            if svc.current.is_empty() {
                continue;
            }
            let (id, clashes) = self.restore_one(svc);
            conflicts.extend(clashes);
            let rec = self.record(id);
            if let Some(reason) = &rec.conflict {
                conflicts.push(Error {
                    service: rec.svc.key.clone(),
                    reason: (**reason).clone(),
                });
            }
        }
        conflicts
    }

    /// Gives `svc` its addresses, keeping every address it already holds that is still valid.
    ///
    /// - A Service seen for the first time with addresses in `current` is restored first.
    /// - Same request, same context: the held addresses are returned as they are.
    /// - Context (labels) changed: held addresses are re-checked; a no longer valid one is a
    ///   [`Reason::Conflict`], not a move.
    /// - Request changed: addresses the new request no longer fits are released and
    ///   replaced; on error the Service keeps the addresses that still fit it (none under
    ///   `RequireDualStack`, which is all or nothing).
    ///
    /// On `Err`, [`Allocator::assignment`] tells what the Service still holds.
    pub fn assign(&mut self, svc: Service) -> Result<Assignment<'_>, Error> {
        let Some(id) = self.index.get(&self.records, &svc.key) else {
            if !svc.current.is_empty() {
                let (id, _clashes) = self.restore_one(svc);
                return self.settle(id);
            }
            return self.assign_new(svc.into());
        };
        let svc = Spec::from(svc);
        let rec = self.record(id);
        if rec.svc.same_request(&svc) {
            let context_changed = !rec.svc.same_context(&svc);
            let conflicted = rec.conflict.is_some();
            if context_changed {
                self.record_mut(id).svc = svc;
            }
            if context_changed || conflicted {
                self.revalidate(id);
            }
            return self.settle(id);
        }
        let keep = rec.slots.get();
        match self.plan(&svc, Some(id), keep) {
            Ok(slots) => {
                self.commit(id, Some(svc), slots);
                self.record_mut(id).conflict = None;
                Ok(self.assignment_of(id))
            }
            Err(reason) => {
                // Keep what still fits, except under RequireDualStack: one family of two
                // would be the partial state that policy rules out.
                let wanted = svc.wanted();
                let all_or_nothing = svc.family_policy == FamilyPolicy::RequireDualStack;
                let mut slots = [None; 2];
                for family in Family::ALL.into_iter().filter(|_| !all_or_nothing) {
                    if let Some(slot) = keep[family.index()]
                        && wanted.contains(family)
                        && let Ok(pool) = self.valid_slot(&svc, family, slot.bits, Some(id))
                    {
                        slots[family.index()] = Some(Slot {
                            pool: Some(pool),
                            ..slot
                        });
                    }
                }
                let service = svc.key.clone();
                self.commit(id, Some(svc), slots);
                self.record_mut(id).conflict = None;
                Err(Error { service, reason })
            }
        }
    }

    /// Forgets a Service (deleted, or no longer `type: LoadBalancer`) and frees its addresses.
    /// Returns the addresses it held (primary family first); `None` if it was unknown.
    pub fn release(&mut self, key: &ServiceKey) -> Option<Vec<IpAddr>> {
        let id = self.index.remove(&self.records, key)?;
        let held = self.assignment_of(id).addresses();
        self.commit(id, None, [None; 2]);
        self.records.remove(id);
        Some(held)
    }

    /// What a Service holds now (including an address kept under a conflict).
    pub fn assignment(&self, key: &ServiceKey) -> Option<Assignment<'_>> {
        self.index
            .get(&self.records, key)
            .map(|id| self.assignment_of(id))
    }

    /// Every Service's holdings, sorted by Service.
    pub fn assignments(&self) -> Vec<(ServiceKey, Assignment<'_>)> {
        let mut all: Vec<_> = self
            .records
            .iter()
            .map(|(id, r)| (r.svc.key.clone(), self.assignment_of(id)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Every current conflict, sorted by Service.
    pub fn conflicts(&self) -> Vec<Error> {
        let mut all: Vec<Error> = self
            .records
            .values()
            .filter_map(|r| {
                r.conflict.as_ref().map(|reason| Error {
                    service: r.svc.key.clone(),
                    reason: (**reason).clone(),
                })
            })
            .collect();
        all.sort_by(|a, b| a.service.cmp(&b.service));
        all
    }

    /// Assigned and available addresses of a pool, per family.
    pub fn counts(&self, pool: &str) -> Option<PoolCounts> {
        self.by_name
            .get(pool)
            .map(|&p| self.pools[p as usize].counts())
    }

    /// The Services holding `addr`, sorted.
    pub fn holders(&self, addr: IpAddr) -> Vec<ServiceKey> {
        let (family, bits) = split(addr);
        let mut keys: Vec<ServiceKey> = self
            .holders
            .get(family, bits)
            .map(|ids| {
                ids.iter()
                    .map(|&id| self.record(id).svc.key.clone())
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn pool(&self, id: u32) -> &PoolState {
        &self.pools[id as usize]
    }

    fn record(&self, id: u32) -> &Record {
        self.records
            .get(id)
            .expect("ids in index and holders point at live records")
    }

    fn record_mut(&mut self, id: u32) -> &mut Record {
        self.records
            .get_mut(id)
            .expect("ids in index and holders point at live records")
    }

    fn assignment_of(&self, id: u32) -> Assignment<'_> {
        let rec = self.record(id);
        self.assignment_from(rec.svc.wanted().primary, &rec.slots.get())
    }

    /// The assignment of `slots`, `primary` family first.
    fn assignment_from(&self, primary: Family, slots: &[Option<Slot>; 2]) -> Assignment<'_> {
        let slot = |family: Family| {
            slots[family.index()].map(|s| Allocated {
                addr: join(family, s.bits),
                pool: s.pool.map(|p| self.pools[p as usize].spec.name.as_str()),
            })
        };
        Assignment {
            addrs: [slot(primary), slot(primary.other())],
        }
    }

    /// Stores and indexes a record for a Service whose key was just looked up and not found.
    fn insert_new_record(&mut self, rec: Record) -> u32 {
        let id = self.records.insert(rec);
        let key = &self.records.get(id).expect("just inserted").svc.key;
        self.index.insert_unique(key, id);
        id
    }

    /// Stores and indexes a record for a Service not known yet.
    fn insert_record(&mut self, rec: Record) -> u32 {
        self.index
            .insert(&mut self.records, rec)
            .unwrap_or_else(|_| unreachable!("the Service is not indexed yet"))
    }

    fn assign_new(&mut self, svc: Spec) -> Result<Assignment<'_>, Error> {
        match self.plan(&svc, None, [None; 2]) {
            Err(reason) => Err(Error {
                service: svc.key,
                reason,
            }),
            Ok(slots) => {
                // Built from the plan rather than read back from the record just written.
                let primary = svc.wanted().primary;
                // A new record holds nothing yet, so `commit` reduces to holding each slot;
                // the slots go into the record as it is written.
                let id = self.insert_new_record(Record {
                    svc,
                    slots: Slots::new(slots),
                    conflict: None,
                });
                for family in Family::ALL {
                    if let Some(slot) = slots[family.index()] {
                        // Planned slots were checked against the holders already.
                        let _ = self.hold(id, family, slot.bits, slot.pool, false);
                    }
                }
                Ok(self.assignment_from(primary, &slots))
            }
        }
    }

    fn restore_one(&mut self, mut svc: Service) -> (u32, Vec<Error>) {
        let current = std::mem::take(&mut svc.current);
        let svc = Spec::from(svc);
        let wanted = svc.wanted();
        let mut claims: [Option<u128>; 2] = [None; 2];
        for &addr in &current {
            let (family, bits) = split(addr);
            if wanted.contains(family) && claims[family.index()].is_none() {
                claims[family.index()] = Some(bits);
            }
        }
        let rec = Record {
            svc,
            slots: Slots::EMPTY,
            conflict: None,
        };
        // One index probe for the usual case, a Service not seen before.
        let id = match self.index.insert(&mut self.records, rec) {
            Ok(id) => id,
            Err(rec) => {
                let key = rec.svc.key.clone();
                self.release(&key);
                self.insert_record(rec)
            }
        };
        // Hold each claim, then check it against the pools as `revalidate` would, writing
        // the slots and the first conflict to the record once at the end.
        let mut clashes = Vec::new();
        let mut slots = [None; 2];
        let mut conflict = None;
        for family in Family::ALL {
            let Some(bits) = claims[family.index()] else {
                continue;
            };
            if let Err(clash) = self.hold(id, family, bits, None, true) {
                clashes.push(Error {
                    service: self.record(id).svc.key.clone(),
                    reason: Reason::InUse {
                        addr: join(family, bits),
                        clash,
                    },
                });
                continue;
            }
            let pool = match self.entitled(&self.record(id).svc, family, bits) {
                Ok(pool) => Some(pool),
                Err(cause) => {
                    conflict.get_or_insert(Reason::Conflict {
                        addr: join(family, bits),
                        cause: Box::new(cause),
                    });
                    None
                }
            };
            slots[family.index()] = Some(Slot { bits, pool });
        }
        let rec = self.record_mut(id);
        rec.slots = Slots::new(slots);
        rec.conflict = conflict.map(Box::new);
        (id, clashes)
    }

    /// The answer for a Service whose request did not change.
    fn settle(&mut self, id: u32) -> Result<Assignment<'_>, Error> {
        let rec = self.record(id);
        if let Some(reason) = &rec.conflict {
            return Err(Error {
                service: rec.svc.key.clone(),
                reason: (**reason).clone(),
            });
        }
        let wanted = rec.svc.wanted();
        let slots = rec.slots.get();
        let held = |f: Family| slots[f.index()].is_some();
        let complete = match rec.svc.family_policy {
            // Satisfied by one family: adding the second later would make restoring not a
            // fixed point (see module docs, *Dual stack*).
            FamilyPolicy::PreferDualStack => wanted.iter().any(held),
            _ => wanted.iter().all(held),
        };
        if complete {
            return Ok(self.assignment_of(id));
        }
        match self.plan(&rec.svc, Some(id), slots) {
            Ok(slots) => {
                self.commit(id, None, slots);
                Ok(self.assignment_of(id))
            }
            Err(reason) => Err(Error {
                service: self.record(id).svc.key.clone(),
                reason,
            }),
        }
    }

    /// Re-checks a Service's held addresses against the pools and its (unchanged) request,
    /// recording the pool granting each, and the first conflict.
    fn revalidate(&mut self, id: u32) {
        let mut conflict = None;
        for family in Family::ALL {
            let Some(mut slot) = self.record(id).slots.get()[family.index()] else {
                continue;
            };
            // Holders are pairwise compatible (an invariant), so only the pools are checked.
            match self.entitled(&self.record(id).svc, family, slot.bits) {
                Ok(pool) => slot.pool = Some(pool),
                Err(cause) => {
                    slot.pool = None;
                    conflict.get_or_insert(Reason::Conflict {
                        addr: join(family, slot.bits),
                        cause: Box::new(cause),
                    });
                }
            }
            self.record_mut(id).slots.set(family, Some(slot));
        }
        self.record_mut(id).conflict = conflict.map(Box::new);
    }
}

mod assignment;
mod holding;
mod index;
mod plan;
mod slab;

pub use assignment::{Allocated, Assignment};
use holding::HolderMap;
use index::Index;
pub use plan::{HASH_CANDIDATES, placement_hash};
use slab::Slab;

/// A record's [`Slot`]s, stored in 28 bytes instead of 48: the IPv4 address as `u32`, the
/// IPv6 one as four `u32`, and per family the pool id or a marker for "no slot" and "held
/// without a granting pool".
#[derive(Debug, Clone, Copy)]
struct Slots {
    v4: u32,
    v6: [u32; 4],
    pools: [u32; 2],
}

/// [`Slots::pools`]: no slot of that family.
const ABSENT: u32 = u32::MAX;
/// [`Slots::pools`]: a slot held under a conflict (`pool: None`). Pool ids stay below.
const NO_POOL: u32 = u32::MAX - 1;

impl Slots {
    const EMPTY: Slots = Slots {
        v4: 0,
        v6: [0; 4],
        pools: [ABSENT; 2],
    };

    fn new(slots: [Option<Slot>; 2]) -> Self {
        let mut s = Slots::EMPTY;
        for family in Family::ALL {
            s.set(family, slots[family.index()]);
        }
        s
    }

    fn get(&self) -> [Option<Slot>; 2] {
        Family::ALL.map(|family| {
            let pool = match self.pools[family.index()] {
                ABSENT => return None,
                NO_POOL => None,
                p => Some(p),
            };
            let bits = match family {
                Family::V4 => u128::from(self.v4),
                Family::V6 => self
                    .v6
                    .iter()
                    .fold(0u128, |acc, &w| acc << 32 | u128::from(w)),
            };
            Some(Slot { bits, pool })
        })
    }

    fn set(&mut self, family: Family, slot: Option<Slot>) {
        let Some(slot) = slot else {
            self.pools[family.index()] = ABSENT;
            return;
        };
        let bits = slot.bits;
        match family {
            // IPv4 bits never exceed u32 (they come from `split`).
            Family::V4 => self.v4 = bits as u32,
            Family::V6 => {
                for (i, w) in self.v6.iter_mut().enumerate() {
                    *w = (bits >> (96 - 32 * i)) as u32;
                }
            }
        }
        let pool = slot.pool;
        debug_assert!(
            pool.is_none_or(|p| p < NO_POOL),
            "pool ids stay below the markers"
        );
        self.pools[family.index()] = pool.unwrap_or(NO_POOL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_and_its_slots_stay_small() {
        // Written to fresh memory once per Service: every byte counts in benches/ipam.rs.
        assert_eq!(size_of::<Slots>(), 28);
        assert!(size_of::<Record>() <= 120, "{}", size_of::<Record>());
    }

    #[test]
    fn slots_read_back_what_was_stored() {
        let v6 = 0xfd00_0001_0002_0003_0004_0005_0006_0007u128;
        let cases = [
            [None, None],
            [
                Some(Slot {
                    bits: 0x0a00_0001,
                    pool: Some(3),
                }),
                None,
            ],
            [
                None,
                Some(Slot {
                    bits: v6,
                    pool: None,
                }),
            ],
            [
                Some(Slot {
                    bits: 0xffff_ffff,
                    pool: None,
                }),
                Some(Slot {
                    bits: u128::MAX,
                    pool: Some(0),
                }),
            ],
        ];
        for slots in cases {
            assert_eq!(Slots::new(slots).get(), slots);
        }
    }
}
