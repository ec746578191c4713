//! Pools: the operator's address ranges and who may use them.

use std::net::IpAddr;

use super::error::{ConfigError, Denial};
use super::range::Span;
use super::selector::Selector;
use super::service::{Family, Spec, split};

/// An `IPPool` as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The pool's name (unique).
    pub name: String,
    /// Inclusive `(first, last)` ranges, IPv4 and IPv6 mixed; the caller has parsed CIDRs
    /// and `a-b` ranges. Overlapping ranges are merged.
    pub ranges: Vec<(IpAddr, IpAddr)>,
    /// Whether Services that name no address and no pool may get addresses from it.
    pub auto_assign: bool,
    /// Never hand out IPv4 addresses ending in `.0` or `.255`.
    pub avoid_buggy_ips: bool,
    /// Hand out nothing at all.
    pub disabled: bool,
    /// Which Services may use the pool, and its priority.
    pub allocate_to: AllocateTo,
}

impl Pool {
    /// An enabled auto-assign pool with no restrictions.
    pub fn new(name: impl Into<String>, ranges: Vec<(IpAddr, IpAddr)>) -> Self {
        Pool {
            name: name.into(),
            ranges,
            auto_assign: true,
            avoid_buggy_ips: false,
            disabled: false,
            allocate_to: AllocateTo::default(),
        }
    }
}

/// `allocateTo`: restricts which Services may use a pool, and orders auto-assignment.
///
/// Empty lists do not restrict. `namespaces` and `namespace_selectors` are alternatives
/// (either may admit the namespace); `service_selectors` must additionally admit the
/// Service (any one of them matching is enough).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocateTo {
    /// Lower is tried first; pools without a priority come after all those with one.
    pub priority: Option<i32>,
    /// Namespaces admitted by name.
    pub namespaces: Vec<String>,
    /// Namespaces admitted by their labels.
    pub namespace_selectors: Vec<Selector>,
    /// Services admitted by their labels.
    pub service_selectors: Vec<Selector>,
}

impl AllocateTo {
    /// Why `svc` may not use the pool, if it may not.
    pub(crate) fn denial(&self, svc: &Spec) -> Option<Denial> {
        if !(self.namespaces.is_empty() && self.namespace_selectors.is_empty()) {
            let ns = svc.key.namespace();
            let admitted = self.namespaces.iter().any(|n| n == ns)
                || self
                    .namespace_selectors
                    .iter()
                    .any(|s| s.matches(svc.namespace_labels()));
            if !admitted {
                return Some(Denial::Namespace);
            }
        }
        if !self.service_selectors.is_empty()
            && !self
                .service_selectors
                .iter()
                .any(|s| s.matches(svc.labels()))
        {
            return Some(Denial::ServiceSelector);
        }
        None
    }
}

/// Assigned and available addresses of one family in one pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilyCounts {
    /// Addresses the pool could hand out that some Service holds (a shared address counts
    /// once).
    pub assigned: u128,
    /// Addresses the pool can still hand out (0 when the pool is disabled; avoided `.0` and
    /// `.255` addresses are never counted).
    pub available: u128,
}

/// Per-family counts of one pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// IPv4.
    pub v4: FamilyCounts,
    /// IPv6.
    pub v6: FamilyCounts,
}

impl PoolCounts {
    /// The counts of `family`.
    pub fn family(&self, family: Family) -> FamilyCounts {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

/// A pool with its spans and free sets.
#[derive(Debug)]
pub(crate) struct PoolState {
    pub spec: Pool,
    /// Per family, disjoint and ascending.
    pub spans: [Vec<Span>; 2],
}

impl PoolState {
    /// Validates `spec` and builds its spans, all free.
    pub fn build(spec: Pool) -> Result<Self, ConfigError> {
        let mut per_family: [Vec<(u128, u128)>; 2] = [Vec::new(), Vec::new()];
        for &(start, end) in &spec.ranges {
            let (fs, s) = split(start);
            let (fe, e) = split(end);
            if fs != fe {
                return Err(ConfigError::MixedFamilies {
                    pool: spec.name.clone(),
                    start,
                    end,
                });
            }
            if s > e {
                return Err(ConfigError::Reversed {
                    pool: spec.name.clone(),
                    start,
                    end,
                });
            }
            per_family[fs.index()].push((s, e));
        }
        let spans = per_family.map(|mut ranges| {
            ranges.sort_unstable();
            let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
            for (s, e) in ranges {
                match merged.last_mut() {
                    Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            merged
        });
        let avoid = spec.avoid_buggy_ips;
        let [v4, v6] = spans;
        Ok(PoolState {
            spans: [
                v4.into_iter()
                    .map(|(s, e)| Span::new(s, e, avoid))
                    .collect(),
                v6.into_iter()
                    .map(|(s, e)| Span::new(s, e, false))
                    .collect(),
            ],
            spec,
        })
    }

    /// Why `svc` may not use this pool at all, if it may not.
    pub fn denial(&self, svc: &Spec) -> Option<Denial> {
        if self.spec.disabled {
            return Some(Denial::Disabled);
        }
        self.spec.allocate_to.denial(svc)
    }

    /// Whether the pool has any range of `family`.
    pub fn has(&self, family: Family) -> bool {
        !self.spans[family.index()].is_empty()
    }

    /// The span containing `bits`, if any.
    pub fn span_of(&self, family: Family, bits: u128) -> Option<&Span> {
        let spans = &self.spans[family.index()];
        // Spans are disjoint and ascending: the candidate is the last one starting <= bits.
        let i = spans.partition_point(|s| s.lo <= bits);
        spans[..i].last().filter(|s| s.contains(bits))
    }

    /// Mutable [`PoolState::span_of`].
    pub fn span_of_mut(&mut self, family: Family, bits: u128) -> Option<&mut Span> {
        let spans = &mut self.spans[family.index()];
        let i = spans.partition_point(|s| s.lo <= bits);
        spans[..i].last_mut().filter(|s| s.contains(bits))
    }

    /// Exact counts, from the spans' sizes and free counts (no enumeration).
    pub fn counts(&self) -> PoolCounts {
        let count = |family: Family| {
            let (usable, free) =
                self.spans[family.index()]
                    .iter()
                    .fold((0u128, 0u128), |(u, f), s| {
                        (
                            u.saturating_add(s.usable()),
                            f.saturating_add(s.free.count()),
                        )
                    });
            FamilyCounts {
                assigned: usable - free,
                available: if self.spec.disabled { 0 } else { free },
            }
        };
        PoolCounts {
            v4: count(Family::V4),
            v6: count(Family::V6),
        }
    }
}
