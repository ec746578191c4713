//! Choosing addresses without changing anything: the read-only half of the allocator.
//!
//! `plan` decides a Service's slots for every family it wants; `commit` (in the parent)
//! applies them. Planning both families before touching any state is what makes
//! `RequireDualStack` all-or-nothing.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

use super::{Allocator, Placement, Slot};
use crate::error::{Clash, Denial, Reason};
use crate::pool::PoolState;
use crate::service::{Family, FamilyPolicy, Spec, join, split};
use crate::sharing::clash;

impl Allocator {
    /// The slots `svc` should hold: `keep` where still valid, else the requested address,
    /// else a shared or the lowest free address of the first pool that has one.
    pub(super) fn plan(
        &self,
        svc: &Spec,
        me: Option<u32>,
        keep: [Option<Slot>; 2],
    ) -> Result<[Option<Slot>; 2], Reason> {
        let wanted = svc.wanted();
        let mut requested: [Option<u128>; 2] = [None; 2];
        for &addr in svc.requested_ips() {
            let (family, bits) = split(addr);
            if !wanted.contains(family) {
                return Err(Reason::FamilyNotUsed { addr, family });
            }
            if requested[family.index()].replace(bits).is_some() {
                return Err(Reason::TwoRequested { family });
            }
        }
        let explicit = !svc.requested_ips().is_empty();
        let mut slots = [None; 2];
        let mut first_err = None;
        let mut serious_err = None;
        for family in wanted.iter() {
            let i = family.index();
            match self.plan_family(svc, me, family, keep[i], requested[i], explicit) {
                Ok(slot) => slots[i] = Some(slot),
                Err(reason) => {
                    // A refused explicit request is an error even when the policy would
                    // accept fewer families.
                    if explicit
                        && !matches!(reason, Reason::NoneRequested { .. })
                        && serious_err.is_none()
                    {
                        serious_err = Some(reason.clone());
                    }
                    first_err.get_or_insert((family, reason));
                }
            }
        }
        let Some((family, reason)) = first_err else {
            return Ok(slots);
        };
        match svc.family_policy {
            FamilyPolicy::RequireDualStack => Err(Reason::FamilyMissing {
                family,
                cause: Box::new(reason),
            }),
            FamilyPolicy::PreferDualStack => match serious_err {
                Some(serious) => Err(serious),
                None if slots.iter().any(Option::is_some) => Ok(slots),
                None => Err(reason),
            },
            FamilyPolicy::SingleStack => Err(reason),
        }
    }

    fn plan_family(
        &self,
        svc: &Spec,
        me: Option<u32>,
        family: Family,
        keep: Option<Slot>,
        requested: Option<u128>,
        explicit: bool,
    ) -> Result<Slot, Reason> {
        if let Some(slot) = keep
            && let Ok(pool) = self.valid_slot(svc, family, slot.bits, me)
        {
            return Ok(Slot {
                pool: Some(pool),
                ..slot
            });
        }
        if explicit {
            let bits = requested.ok_or(Reason::NoneRequested { family })?;
            let pool = self.valid_slot(svc, family, bits, me)?;
            return Ok(Slot {
                bits,
                pool: Some(pool),
            });
        }
        self.auto(svc, me, family)
    }

    /// Whether `svc` may hold `bits`: it is the requested address (if any), some pool grants
    /// it, and its holders (other than `me`) can share it. Returns the granting pool.
    pub(super) fn valid_slot(
        &self,
        svc: &Spec,
        family: Family,
        bits: u128,
        me: Option<u32>,
    ) -> Result<u32, Reason> {
        let pool = self.entitled(svc, family, bits)?;
        if let Some(clash) = self.clash_at(svc, family, bits, me) {
            return Err(Reason::InUse {
                addr: join(family, bits),
                clash,
            });
        }
        Ok(pool)
    }

    /// [`Allocator::valid_slot`] without the holders: the requested address (if any) and a
    /// granting pool.
    pub(super) fn entitled(&self, svc: &Spec, family: Family, bits: u128) -> Result<u32, Reason> {
        let addr = join(family, bits);
        if let Some(&requested) = svc
            .requested_ips()
            .iter()
            .find(|a| Family::of(**a) == family)
            && requested != addr
        {
            return Err(Reason::NotRequested { addr, requested });
        }
        self.granting_pool(svc, family, bits)
    }

    /// The first pool (requested order, else auto-assignment order) that contains `bits` and
    /// grants it to `svc`. `auto_assign` does not matter here: it only limits automatic
    /// choice.
    fn granting_pool(&self, svc: &Spec, family: Family, bits: u128) -> Result<u32, Reason> {
        let addr = join(family, bits);
        let mut denied: Option<(u32, Denial)> = None;
        let mut consider = |p: u32| match self.pool_grants(svc, p, family, bits) {
            Some(Ok(())) => Some(p),
            Some(Err(denial)) => {
                denied.get_or_insert((p, denial));
                None
            }
            None => None,
        };
        let found = if svc.requested_pools().is_empty() {
            self.order.iter().find_map(|&p| consider(p))
        } else {
            svc.requested_pools()
                .iter()
                .filter_map(|name| self.by_name.get(name.as_str()).copied())
                .find_map(&mut consider)
        };
        if let Some(p) = found {
            return Ok(p);
        }
        if denied.is_none() && !svc.requested_pools().is_empty() {
            // In some pool, just not a requested one?
            denied = self
                .order
                .iter()
                .find(|&&p| self.pool(p).span_of(family, bits).is_some())
                .map(|&p| (p, Denial::NotRequested));
        }
        match denied {
            Some((p, denial)) => Err(Reason::Denied {
                addr,
                pool: self.pool(p).spec.name.clone(),
                denial,
            }),
            None => Err(Reason::NotInAnyPool { addr }),
        }
    }

    /// Whether pool `p` grants `bits` to `svc`; `None` if the pool does not contain it.
    fn pool_grants(
        &self,
        svc: &Spec,
        p: u32,
        family: Family,
        bits: u128,
    ) -> Option<Result<(), Denial>> {
        let pool = self.pool(p);
        let span = pool.span_of(family, bits)?;
        if let Some(denial) = pool.denial(svc) {
            return Some(Err(denial));
        }
        if span.index(bits).is_none() {
            return Some(Err(Denial::Buggy));
        }
        Some(Ok(()))
    }

    /// The first holder of `bits` (other than `me`) that `svc` cannot share it with.
    pub(super) fn clash_at(
        &self,
        svc: &Spec,
        family: Family,
        bits: u128,
        me: Option<u32>,
    ) -> Option<Clash> {
        self.holders
            .get(family, bits)?
            .iter()
            .filter(|&&id| Some(id) != me)
            .find_map(|&id| clash(svc, &self.record(id).svc))
    }

    /// Automatic choice for one family: among the pools `svc` may use, in order, first an
    /// address its sharing partners hold and it can share, else the lowest free address.
    fn auto(&self, svc: &Spec, me: Option<u32>, family: Family) -> Result<Slot, Reason> {
        let by_request = !svc.requested_pools().is_empty();
        let n = if by_request {
            svc.requested_pools().len()
        } else {
            self.order.len()
        };
        let pool_at = |i: usize| -> Option<u32> {
            if by_request {
                self.by_name.get(svc.requested_pools()[i].as_str()).copied()
            } else {
                Some(self.order[i])
            }
        };
        // None: not a candidate, and not worth an explanation (no auto-assign).
        let usable = |pool: &PoolState| -> Option<Result<(), Denial>> {
            if !by_request && !pool.spec.auto_assign {
                return None;
            }
            Some(pool.denial(svc).map_or(Ok(()), Err))
        };
        let candidates = (0..n)
            .filter_map(pool_at)
            .filter(|&p| matches!(usable(self.pool(p)), Some(Ok(()))) && self.pool(p).has(family));

        if let Some(key) = svc.sharing_key()
            && let Some(sets) = self.shared.get(key)
            && !sets[family.index()].is_empty()
        {
            for p in candidates.clone() {
                let pool = self.pool(p);
                for &bits in &sets[family.index()] {
                    if pool
                        .span_of(family, bits)
                        .is_some_and(|s| s.index(bits).is_some())
                        && self.clash_at(svc, family, bits, me).is_none()
                    {
                        return Ok(self.found(svc, family, bits, p));
                    }
                }
            }
        }
        for p in candidates.clone() {
            let pool = self.pool(p);
            let free = match self.placement {
                Placement::LowestFree => pool.spans[family.index()]
                    .iter()
                    .find_map(|s| s.lowest_free()),
                Placement::Hashed => hashed_free(pool, family, svc),
            };
            if let Some(bits) = free {
                return Ok(self.found(svc, family, bits, p));
            }
        }

        // Nothing: explain why.
        let tried: Vec<String> = candidates.map(|p| self.pool(p).spec.name.clone()).collect();
        if !tried.is_empty() {
            return Err(Reason::Exhausted {
                family,
                pools: tried,
            });
        }
        if by_request {
            let mut known = false;
            for i in 0..n {
                if let Some(p) = pool_at(i) {
                    known = true;
                    if let Some(Err(denial)) = usable(self.pool(p)) {
                        return Err(Reason::PoolRefuses {
                            pool: self.pool(p).spec.name.clone(),
                            denial,
                        });
                    }
                }
            }
            if !known {
                return Err(Reason::UnknownPool {
                    pool: svc.requested_pools()[0].clone(),
                });
            }
        }
        Err(Reason::NoPool { family })
    }

    /// The slot for `bits`, found in pool `p`. Where pools overlap, the pool reported is the
    /// one [`Allocator::granting_pool`] names, so that it does not depend on how the address
    /// was found (restoring must give the same answer).
    fn found(&self, svc: &Spec, family: Family, bits: u128, p: u32) -> Slot {
        let pool = if self.overlapping {
            self.granting_pool(svc, family, bits).unwrap_or(p)
        } else {
            p
        };
        Slot {
            bits,
            pool: Some(pool),
        }
    }
}

/// Hashed attempts before the fallback scan.
pub const HASH_CANDIDATES: u32 = 16;

/// Fixed SipHash key of [`placement_hash`]. Every host (and every version) must use the same,
/// or hosts reading the same file would place Services differently.
const PLACEMENT_KEY: (u64, u64) = (0x6865_7261_6c64_2d70, 0x6c61_6365_6d65_6e74);

/// The 128-bit keyed hash of length-prefixed `parts` and `attempt`, the same on every host:
/// [`Placement::Hashed`] candidates and the standalone assignment order derive from it.
pub fn placement_hash(parts: &[&str], attempt: u32) -> u128 {
    let mut h = SipHasher13::new_with_keys(PLACEMENT_KEY.0, PLACEMENT_KEY.1);
    for part in parts {
        // Length-prefixed: ("ab", "c") and ("a", "bc") must differ.
        h.write_u64(part.len() as u64);
        h.write(part.as_bytes());
    }
    h.write_u32(attempt);
    h.finish128().as_u128()
}

/// [`Placement::Hashed`]: the first free of the Service's hashed candidates in `pool`, else
/// the first free address at or after the first candidate, wrapping around.
fn hashed_free(pool: &PoolState, family: Family, svc: &Spec) -> Option<u128> {
    let spans = &pool.spans[family.index()];
    let total = spans
        .iter()
        .fold(0u128, |acc, s| acc.saturating_add(s.usable()));
    if total == 0 || spans.iter().all(|s| s.free.count() == 0) {
        return None;
    }
    let key = svc.key.to_string();
    let subject = svc.sharing_key().unwrap_or(&key);
    let fam = match family {
        Family::V4 => "4",
        Family::V6 => "6",
    };
    let position = |attempt: u32| placement_hash(&[&pool.spec.name, fam, subject], attempt) % total;
    // Position -> (span, offset within the span's usable addresses).
    let locate = |mut pos: u128| -> (usize, u128) {
        for (i, s) in spans.iter().enumerate() {
            if pos < s.usable() {
                return (i, pos);
            }
            pos -= s.usable();
        }
        unreachable!("positions are below the total")
    };
    for attempt in 0..HASH_CANDIDATES {
        let (i, offset) = locate(position(attempt));
        if let Some(bits) = spans[i].free_at(offset) {
            return Some(bits);
        }
    }
    let (start, offset) = locate(position(0));
    spans[start]
        .free_from(offset)
        .or_else(|| spans[start + 1..].iter().find_map(|s| s.free_from(0)))
        .or_else(|| spans[..=start].iter().find_map(|s| s.free_from(0)))
}
