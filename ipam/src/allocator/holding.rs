//! Who holds which address, and keeping the pools' free sets in step with it.
//!
//! `commit` is the only way slots change: it releases what a Service no longer holds (the
//! last holder returns an address to every free set containing it) and holds what it newly
//! holds (the first holder takes it out of them).

use std::collections::BTreeSet;
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};

use super::{Allocator, Slab, Slot};
use crate::error::Clash;
use crate::hash::FastMap;
use crate::pool::PoolState;
use crate::service::{Family, Spec};
use crate::sharing::clash;

/// Who holds which address: per family, address -> holder ids.
///
/// Stored once per address in use, so kept small: an IPv4 entry is 8 bytes (the address as
/// `u32`, one `u32` value), an IPv6 entry 24. The value is the holder's id, or, for the rare
/// shared address, [`SHARED`] plus the index of its holder list in `lists`.
#[derive(Debug, Default)]
pub(super) struct HolderMap {
    v4: FastMap<u32, u32>,
    v6: FastMap<V6Bits, u32>,
    lists: Slab<Vec<u32>>,
}

/// Marks a [`HolderMap`] value as an index into its holder lists. Record ids stay below it
/// (the slab would need 2^31 live Services to reach it).
const SHARED: u32 = 1 << 31;

/// IPv6 address bits with 8-byte alignment (a `u128` key would pad each entry to 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V6Bits([u64; 2]);

impl V6Bits {
    fn new(bits: u128) -> Self {
        V6Bits([(bits >> 64) as u64, bits as u64])
    }

    fn get(self) -> u128 {
        u128::from(self.0[0]) << 64 | u128::from(self.0[1])
    }
}

impl Hash for V6Bits {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.get());
    }
}

/// The ids a [`HolderMap`] value stands for.
fn ids_of<'a>(lists: &'a Slab<Vec<u32>>, value: &'a u32) -> &'a [u32] {
    if *value & SHARED == 0 {
        std::slice::from_ref(value)
    } else {
        lists.get(*value & !SHARED).expect("shared holder list")
    }
}

impl HolderMap {
    /// The ids holding `bits`, if any.
    pub(super) fn get(&self, family: Family, bits: u128) -> Option<&[u32]> {
        let value = match family {
            // IPv4 bits never exceed u32 (they come from `split`).
            Family::V4 => self.v4.get(&(bits as u32)),
            Family::V6 => self.v6.get(&V6Bits::new(bits)),
        }?;
        Some(ids_of(&self.lists, value))
    }

    /// Every held address of `family`, in no particular order.
    pub(super) fn addresses(&self, family: Family) -> Vec<u128> {
        match family {
            Family::V4 => self.v4.keys().map(|&b| u128::from(b)).collect(),
            Family::V6 => self.v6.keys().map(|b| b.get()).collect(),
        }
    }

    /// Adds `id` as a holder of `bits` unless `check` refuses the current holders; returns
    /// whether it is the first holder.
    fn add(
        &mut self,
        family: Family,
        bits: u128,
        id: u32,
        check: impl FnOnce(&[u32]) -> Result<(), Clash>,
    ) -> Result<bool, Clash> {
        debug_assert!(id < SHARED, "record ids stay below the shared-list marker");
        match family {
            Family::V4 => add_in(&mut self.v4, &mut self.lists, bits as u32, id, check),
            Family::V6 => add_in(&mut self.v6, &mut self.lists, V6Bits::new(bits), id, check),
        }
    }

    /// Removes `id` from the holders of `bits`; returns whether no holder is left (`false`
    /// if it held nothing there).
    fn remove(&mut self, family: Family, bits: u128, id: u32) -> bool {
        match family {
            Family::V4 => remove_in(&mut self.v4, &mut self.lists, bits as u32, id),
            Family::V6 => remove_in(&mut self.v6, &mut self.lists, V6Bits::new(bits), id),
        }
    }
}

fn add_in<K: Hash + Eq>(
    map: &mut FastMap<K, u32>,
    lists: &mut Slab<Vec<u32>>,
    key: K,
    id: u32,
    check: impl FnOnce(&[u32]) -> Result<(), Clash>,
) -> Result<bool, Clash> {
    match map.entry(key) {
        Entry::Vacant(v) => {
            v.insert(id);
            Ok(true)
        }
        Entry::Occupied(mut o) => {
            check(ids_of(lists, o.get()))?;
            let value = *o.get();
            if value & SHARED == 0 {
                *o.get_mut() = SHARED | lists.insert(vec![value, id]);
            } else if let Some(list) = lists.get_mut(value & !SHARED) {
                list.push(id);
            }
            Ok(false)
        }
    }
}

fn remove_in<K: Hash + Eq>(
    map: &mut FastMap<K, u32>,
    lists: &mut Slab<Vec<u32>>,
    key: K,
    id: u32,
) -> bool {
    let Entry::Occupied(mut o) = map.entry(key) else {
        return false;
    };
    let value = *o.get();
    if value & SHARED == 0 {
        if value != id {
            return false;
        }
        o.remove();
        return true;
    }
    let Some(list) = lists.get_mut(value & !SHARED) else {
        return false;
    };
    list.retain(|&h| h != id);
    match list[..] {
        [] => {
            lists.remove(value & !SHARED);
            o.remove();
            true
        }
        [only] => {
            lists.remove(value & !SHARED);
            *o.get_mut() = only;
            false
        }
        _ => false,
    }
}

impl Allocator {
    /// Moves a Service from its current slots to `slots`, replacing its Service data if given
    /// (after releasing under the old sharing key, before holding under the new one).
    pub(super) fn commit(&mut self, id: u32, svc: Option<Spec>, slots: [Option<Slot>; 2]) {
        let old = self.record(id).slots.get();
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
        self.record_mut(id).slots = super::Slots::new(slots);
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
        let first = holders.add(family, bits, id, |ids| {
            if !check {
                return Ok(());
            }
            let svc = &records.get(id).expect("live record").svc;
            for &h in ids.iter().filter(|&&h| h != id) {
                let holder = &records.get(h).expect("live record").svc;
                if let Some(c) = clash(svc, holder) {
                    return Err(c);
                }
            }
            Ok(())
        })?;
        if first {
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
        if !holders.remove(family, bits, id) {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_address_keeps_its_other_holders_until_the_last_one_leaves() {
        let ok = |_: &[u32]| Ok(());
        for (family, bits) in [
            (Family::V4, 0x0a00_0001u128),
            (Family::V6, 0xfd00u128 << 112),
        ] {
            let mut h = HolderMap::default();
            assert_eq!(h.add(family, bits, 1, ok), Ok(true));
            assert_eq!(h.add(family, bits, 2, ok), Ok(false));
            assert_eq!(h.add(family, bits, 3, ok), Ok(false));
            assert_eq!(h.get(family, bits), Some(&[1, 2, 3][..]));
            assert!(!h.remove(family, bits, 7), "not a holder");
            assert!(!h.remove(family, bits, 2));
            assert_eq!(h.get(family, bits), Some(&[1, 3][..]));
            assert!(!h.remove(family, bits, 1));
            assert_eq!(h.get(family, bits), Some(&[3][..]));
            assert!(h.remove(family, bits, 3));
            assert_eq!(h.get(family, bits), None);
            assert_eq!(h.lists.iter().count(), 0, "no list left behind");
            assert_eq!(h.addresses(family), Vec::<u128>::new());
        }
    }

    #[test]
    fn a_refused_holder_is_not_added() {
        let mut h = HolderMap::default();
        let clash = Clash::NotShared {
            other: crate::ServiceKey::new("ns", "a"),
        };
        assert_eq!(h.add(Family::V4, 5, 1, |_| Ok(())), Ok(true));
        assert_eq!(h.add(Family::V4, 5, 2, |_| Err(clash.clone())), Err(clash));
        assert_eq!(h.get(Family::V4, 5), Some(&[1][..]));
    }
}
