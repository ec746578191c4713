//! One contiguous range of a pool and the set of its free addresses.
//!
//! # Index space
//! A [`Span`] numbers the addresses it may hand out 0, 1, 2, ... ("indices"). For IPv6, and
//! for IPv4 without `avoid_buggy_ips`, the index is the address itself. For IPv4 with
//! `avoid_buggy_ips`, each /24 contributes its 254 addresses `.1`..`.254`, so
//! `index(a) = (a >> 8) * 254 + (a & 0xff) - 1`: a monotone bijection between usable
//! addresses and a contiguous run of integers. Avoided `.0`/`.255` addresses have no index,
//! so they are never free, never handed out, and never counted, without enumerating them.
//!
//! # Free set
//! [`FreeSet`] holds disjoint free intervals of indices in a `BTreeMap` keyed by the
//! interval's **last** index, the value being its first. Taking the lowest free index then
//! edits the first entry's value in place (no re-keying), and taking or returning an index
//! costs O(log intervals): never proportional to the size of the range or to the number
//! of addresses in use.

use std::collections::BTreeMap;

/// Disjoint free intervals `[first, last]`, keyed by `last`.
#[derive(Debug, Clone)]
pub(crate) struct FreeSet {
    by_last: BTreeMap<u128, u128>,
    /// Number of free indices; saturates at `u128::MAX` (only the whole IPv6 space, `::/0`,
    /// has 2^128 addresses).
    count: u128,
}

impl FreeSet {
    /// All of `[first, last]` free.
    pub fn full(first: u128, last: u128) -> Self {
        let mut by_last = BTreeMap::new();
        by_last.insert(last, first);
        FreeSet {
            by_last,
            count: (last - first).saturating_add(1),
        }
    }

    /// Nothing free.
    pub fn empty() -> Self {
        FreeSet {
            by_last: BTreeMap::new(),
            count: 0,
        }
    }

    /// Number of free indices.
    pub fn count(&self) -> u128 {
        self.count
    }

    /// The lowest free index.
    pub fn lowest(&self) -> Option<u128> {
        self.by_last.first_key_value().map(|(_, first)| *first)
    }

    /// The lowest free index at or above `i`.
    pub fn at_or_after(&self, i: u128) -> Option<u128> {
        self.by_last
            .range(i..)
            .next()
            .map(|(_, first)| (*first).max(i))
    }

    /// Whether `i` is free.
    pub fn contains(&self, i: u128) -> bool {
        self.by_last
            .range(i..)
            .next()
            .is_some_and(|(_, first)| *first <= i)
    }

    /// Marks `i` used; returns whether it was free.
    pub fn take(&mut self, i: u128) -> bool {
        // Fast path: the lowest free index, which is what allocation hands out.
        if let Some(mut entry) = self.by_last.first_entry()
            && *entry.get() == i
        {
            self.count -= 1;
            if *entry.key() == i {
                entry.remove();
            } else {
                *entry.get_mut() = i + 1;
            }
            return true;
        }
        let Some((&last, first)) = self.by_last.range_mut(i..).next() else {
            return false;
        };
        let start = *first;
        if start > i {
            return false;
        }
        self.count -= 1;
        if last == i {
            self.by_last.remove(&last);
        } else {
            *first = i + 1;
        }
        if start < i {
            self.by_last.insert(i - 1, start);
        }
        true
    }

    /// Marks `i` free, merging with its neighbours; returns whether it was used.
    pub fn put(&mut self, i: u128) -> bool {
        if self.contains(i) {
            return false;
        }
        self.count = self.count.saturating_add(1);
        let start = match i.checked_sub(1).and_then(|p| self.by_last.remove(&p)) {
            Some(left_first) => left_first,
            None => i,
        };
        if let Some(next) = i.checked_add(1)
            && let Some((_, first)) = self.by_last.range_mut(next..).next()
            && *first == next
        {
            *first = start;
            return true;
        }
        self.by_last.insert(i, start);
        true
    }
}

/// A contiguous range of one family in one pool, with its free set.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    /// First address (bits).
    pub lo: u128,
    /// Last address (bits), inclusive.
    pub hi: u128,
    /// IPv4 with `avoid_buggy_ips`: indices skip `.0` and `.255`.
    avoid: bool,
    /// Usable addresses in the span.
    usable: u128,
    /// Index of the first usable address (meaningless when `usable` is 0).
    base: u128,
    /// Free indices.
    pub free: FreeSet,
}

impl Span {
    /// A span `[lo, hi]`, all free. `avoid` must only be set for IPv4.
    pub fn new(lo: u128, hi: u128, avoid: bool) -> Self {
        let bounds = if avoid {
            first_usable(lo, hi).zip(last_usable(lo, hi))
        } else {
            Some((lo, hi))
        };
        let (free, usable, base) = match bounds {
            Some((a, b)) if a <= b => {
                let (ia, ib) = if avoid {
                    (v4_index(a), v4_index(b))
                } else {
                    (a, b)
                };
                let free = FreeSet::full(ia, ib);
                let usable = free.count();
                (free, usable, ia)
            }
            _ => (FreeSet::empty(), 0, 0),
        };
        Span {
            lo,
            hi,
            avoid,
            usable,
            base,
            free,
        }
    }

    /// Whether `bits` lies in the span (usable or not).
    pub fn contains(&self, bits: u128) -> bool {
        self.lo <= bits && bits <= self.hi
    }

    /// The index of `bits`, if the span may hand it out.
    pub fn index(&self, bits: u128) -> Option<u128> {
        if !self.contains(bits) {
            return None;
        }
        if self.avoid {
            let last = bits & 0xff;
            (last != 0 && last != 255).then(|| v4_index(bits))
        } else {
            Some(bits)
        }
    }

    /// The address of index `i`.
    fn addr(&self, i: u128) -> u128 {
        if self.avoid {
            ((i / 254) << 8) | (i % 254 + 1)
        } else {
            i
        }
    }

    /// Addresses the span may hand out.
    pub fn usable(&self) -> u128 {
        self.usable
    }

    /// The lowest free address.
    pub fn lowest_free(&self) -> Option<u128> {
        self.free.lowest().map(|i| self.addr(i))
    }

    /// The address at position `offset` among the span's usable addresses, if it is free
    /// (`offset < usable()`).
    pub fn free_at(&self, offset: u128) -> Option<u128> {
        let i = self.base + offset;
        self.free.contains(i).then(|| self.addr(i))
    }

    /// The first free address at position `offset` or above among the span's usable
    /// addresses.
    pub fn free_from(&self, offset: u128) -> Option<u128> {
        self.free
            .at_or_after(self.base.saturating_add(offset))
            .map(|i| self.addr(i))
    }

    /// Marks `bits` used, if the span may hand it out.
    pub fn take(&mut self, bits: u128) {
        if let Some(i) = self.index(bits) {
            self.free.take(i);
        }
    }

    /// Marks `bits` free, if the span may hand it out.
    pub fn put(&mut self, bits: u128) {
        if let Some(i) = self.index(bits) {
            self.free.put(i);
        }
    }
}

fn v4_index(a: u128) -> u128 {
    (a >> 8) * 254 + (a & 0xff) - 1
}

/// First address in `[lo, hi]` not ending in .0 or .255.
fn first_usable(lo: u128, hi: u128) -> Option<u128> {
    let a = match lo & 0xff {
        0 => lo + 1,
        255 => lo + 2,
        _ => lo,
    };
    (a <= hi).then_some(a)
}

/// Last address in `[lo, hi]` not ending in .0 or .255.
fn last_usable(lo: u128, hi: u128) -> Option<u128> {
    let b = match hi & 0xff {
        255 => hi - 1,
        0 => hi.checked_sub(2)?,
        _ => hi,
    };
    (b >= lo).then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intervals(f: &FreeSet) -> Vec<(u128, u128)> {
        f.by_last.iter().map(|(l, s)| (*s, *l)).collect()
    }

    #[test]
    fn taking_and_returning_keeps_intervals_disjoint_and_merged() {
        let mut f = FreeSet::full(10, 20);
        assert!(f.take(10));
        assert!(f.take(15));
        assert!(f.take(20));
        assert!(!f.take(15));
        assert_eq!(intervals(&f), vec![(11, 14), (16, 19)]);
        assert_eq!(f.count(), 8);
        assert!(f.put(15));
        assert_eq!(intervals(&f), vec![(11, 19)]);
        assert!(f.put(10));
        assert!(f.put(20));
        assert!(!f.put(20));
        assert_eq!(intervals(&f), vec![(10, 20)]);
        assert_eq!(f.count(), 11);
    }

    #[test]
    fn lowest_free_index_is_handed_out_first() {
        let mut f = FreeSet::full(0, 3);
        f.take(0);
        f.take(2);
        assert_eq!(f.lowest(), Some(1));
        f.take(1);
        assert_eq!(f.lowest(), Some(3));
    }

    #[test]
    fn whole_ipv6_space_saturates_instead_of_overflowing() {
        let mut f = FreeSet::full(0, u128::MAX);
        assert_eq!(f.count(), u128::MAX);
        assert!(f.take(u128::MAX));
        assert!(f.take(0));
        assert!(f.put(u128::MAX));
        assert!(f.put(0));
        assert_eq!(intervals(&f), vec![(0, u128::MAX)]);
    }

    #[test]
    fn avoiding_buggy_addresses_skips_dot_zero_and_dot_255_arithmetically() {
        // 10.0.0.0 - 10.0.2.255: three /24s, 254 usable each.
        let lo = 0x0a00_0000;
        let s = Span::new(lo, lo + 0x2ff, true);
        assert_eq!(s.usable(), 3 * 254);
        assert_eq!(s.lowest_free(), Some(lo + 1));
        assert_eq!(s.index(lo), None);
        assert_eq!(s.index(lo + 255), None);
        for off in [1u128, 254, 257, 0x2fe] {
            let i = s.index(lo + off).unwrap();
            assert_eq!(s.addr(i), lo + off);
        }
        // A range of only .255 and .0 has nothing usable.
        let s = Span::new(lo + 255, lo + 256, true);
        assert_eq!(s.usable(), 0);
        assert_eq!(s.lowest_free(), None);
        // The very top and bottom of the IPv4 space.
        assert_eq!(Span::new(0, 0, true).usable(), 0);
        assert_eq!(Span::new(0xffff_ff00, 0xffff_ffff, true).usable(), 254);
    }
}
