//! Who holds which address, and keeping the pools' free sets in step with it.
//!
//! `commit` is the only way slots change: it releases what a Service no longer holds (the
//! last holder returns an address to every free set containing it) and holds what it newly
//! holds (the first holder takes it out of them).

use std::collections::BTreeSet;
use std::collections::hash_map::Entry;

use super::{Allocator, Slot};
use crate::ipam::error::Clash;
use crate::ipam::pool::PoolState;
use crate::ipam::service::{Family, Spec};
use crate::ipam::sharing::clash;

/// Ids of the Services holding one address; almost always one. Kept to 16 bytes: it is
/// stored once per address in use, and sharing is rare enough to pay a re-allocation.
#[derive(Debug)]
pub(super) enum Holders {
    One(u32),
    Many(Box<[u32]>),
}

impl Holders {
    pub(super) fn ids(&self) -> &[u32] {
        match self {
            Holders::One(id) => std::slice::from_ref(id),
            Holders::Many(ids) => ids,
        }
    }

    fn push(&mut self, id: u32) {
        let mut ids = self.ids().to_vec();
        ids.push(id);
        *self = Holders::Many(ids.into_boxed_slice());
    }

    /// Removes `id`; returns whether no holder is left.
    fn remove(&mut self, id: u32) -> bool {
        let ids: Vec<u32> = self.ids().iter().copied().filter(|h| *h != id).collect();
        match ids[..] {
            [] => true,
            [only] => {
                *self = Holders::One(only);
                false
            }
            _ => {
                *self = Holders::Many(ids.into_boxed_slice());
                false
            }
        }
    }
}

impl Allocator {
    /// Moves a Service from its current slots to `slots`, replacing its Service data if given
    /// (after releasing under the old sharing key, before holding under the new one).
    pub(super) fn commit(&mut self, id: u32, svc: Option<Spec>, slots: [Option<Slot>; 2]) {
        let old = self.record(id).slots;
        let held = |s: Option<Slot>| s.map(|s| s.bits);
        for family in Family::ALL {
            let (o, n) = (held(old[family.index()]), held(slots[family.index()]));
            if let Some(bits) = o
                && o != n
            {
                self.unhold(id, family, bits, old[family.index()].and_then(|s| s.pool));
            }
        }
        if let Some(svc) = svc {
            self.record_mut(id).svc = svc;
        }
        for family in Family::ALL {
            let (o, n) = (held(old[family.index()]), held(slots[family.index()]));
            if let Some(bits) = n
                && o != n
            {
                let pool = slots[family.index()].and_then(|s| s.pool);
                // Planned slots were checked against the holders already.
                let _ = self.hold(id, family, bits, pool, false);
            }
        }
        self.record_mut(id).slots = slots;
    }

    /// Makes `id` a holder of `bits`; the first holder takes it out of every free set
    /// (only out of `pool`'s, if given and pools do not overlap). With `check`, refuses (one
    /// hash lookup in all) if a holder cannot share it.
    pub(super) fn hold(
        &mut self,
        id: u32,
        family: Family,
        bits: u128,
        pool: Option<u32>,
        check: bool,
    ) -> Result<(), Clash> {
        let Self {
            holders,
            pools,
            shared,
            records,
            overlapping,
            ..
        } = self;
        match holders[family.index()].entry(bits) {
            Entry::Occupied(mut o) => {
                if check {
                    let svc = &records.get(id).expect("live record").svc;
                    for &h in o.get().ids().iter().filter(|&&h| h != id) {
                        let holder = &records.get(h).expect("live record").svc;
                        if let Some(c) = clash(svc, holder) {
                            return Err(c);
                        }
                    }
                }
                o.get_mut().push(id);
            }
            Entry::Vacant(v) => {
                v.insert(Holders::One(id));
                for p in pools_containing(pools, *overlapping, pool) {
                    if let Some(span) = p.span_of_mut(family, bits) {
                        span.take(bits);
                    }
                }
                let rec = records.get(id).expect("live record");
                if let Some(key) = rec.svc.sharing_key() {
                    if !shared.contains_key(key) {
                        shared.insert(key.into(), Default::default());
                    }
                    if let Some(sets) = shared.get_mut(key) {
                        sets[family.index()].insert(bits);
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes `id` from the holders of `bits`; the last one returns it to the free sets.
    fn unhold(&mut self, id: u32, family: Family, bits: u128, pool: Option<u32>) {
        let Self {
            holders,
            pools,
            shared,
            records,
            overlapping,
            ..
        } = self;
        let Entry::Occupied(mut o) = holders[family.index()].entry(bits) else {
            return;
        };
        if !o.get_mut().remove(id) {
            return;
        }
        o.remove();
        for p in pools_containing(pools, *overlapping, pool) {
            if let Some(span) = p.span_of_mut(family, bits) {
                span.put(bits);
            }
        }
        let rec = records.get(id).expect("live record");
        if let Some(key) = rec.svc.sharing_key()
            && let Some(sets) = shared.get_mut(key)
        {
            sets[family.index()].remove(&bits);
            if sets.iter().all(BTreeSet::is_empty) {
                shared.remove(key);
            }
        }
    }
}

/// The pools whose free sets may contain an address found in `hint`: just that one when no
/// two pools overlap, else all.
fn pools_containing(
    pools: &mut [PoolState],
    overlapping: bool,
    hint: Option<u32>,
) -> impl Iterator<Item = &mut PoolState> {
    let only = hint.filter(|_| !overlapping).map(|p| p as usize);
    pools
        .iter_mut()
        .enumerate()
        .filter(move |(i, _)| only.is_none_or(|p| p == *i))
        .map(|(_, p)| p)
}
