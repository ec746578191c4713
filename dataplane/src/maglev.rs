//! Weighted Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software
//! Network Load Balancer", NSDI 2016, §3.4), built in user space for the XDP program.
//!
//! The XDP program indexes the table by `flow_hash % M` to pick a backend for a new flow, so
//! the table decides both how evenly load spreads and how many flows move when the backend
//! set changes.
//!
//! # Mechanism
//!
//! Each backend gets a permutation of the table slots from two hashes of its [`Backend::key`]:
//! `offset = h1(key) mod M` and `skip = h2(key) mod (M - 1) + 1`; slot `j` of its permutation
//! is `(offset + j * skip) mod M`. `M` is prime and `1 <= skip < M`, so every permutation
//! visits every slot exactly once. The table is then filled in rounds: in each round every
//! backend adds its weight to a credit and, when the credit reaches the largest weight, spends
//! it to claim the next free slot of its own permutation. A backend's share of turns, and so of
//! slots, is therefore proportional to its weight (the weighting Katran uses); with equal
//! weights this is exactly the paper's round-robin population and every backend ends up with
//! `floor(M/N)` or `ceil(M/N)` slots.
//!
//! Because each backend walks only its own permutation, removing a backend mostly hands its
//! slots to others and leaves the remaining slots where they were: the disruption the paper
//! measures in §5.3.
//!
//! # Limits
//!
//! * Work is bounded: every round the heaviest backend claims a slot, so there are at most `M`
//!   rounds, and each backend advances through its permutation at most `M` steps in total.
//!   Credits are `u64` and stay below twice the largest `u32` weight, so no weight overflows.
//! * A backend whose share is below one slot (e.g. weight 1 next to weight 10^6 with
//!   `M = 65537`) can end up with no slot at all.
//! * The hashes are SipHash-1-3 with fixed keys over the address octets (4 bytes for IPv4,
//!   16 for IPv6), so the table depends only on the inputs: the same on every run, host and
//!   architecture. An IPv4 address and its IPv4-mapped IPv6 form are different keys.
//! * Inputs are sorted by key before filling, so the caller's ordering does not matter.

use std::net::IpAddr;

use siphasher::sip::SipHasher13;

pub use crate::error::TableError;

/// Table size used when the configuration does not say otherwise: the prime the paper and
/// Katran use, large enough that 100 equal backends are balanced to within 0.2 %.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Largest accepted table size. Each slot costs 4 bytes in the BPF map and each build touches
/// every slot, so sizes beyond this are almost certainly a configuration mistake.
pub const MAX_TABLE_SIZE: u32 = 1 << 24;

/// Fixed SipHash keys for the `offset` hash. Changing them reshuffles every table in a
/// cluster at upgrade, so they are part of the on-the-wire behaviour.
const OFFSET_KEYS: (u64, u64) = (0x6865_7261_6c64_2d6f, 0x6666_7365_7421_0001);
/// Fixed SipHash keys for the `skip` hash, different from [`OFFSET_KEYS`] so the two hashes
/// are independent.
const SKIP_KEYS: (u64, u64) = (0x6865_7261_6c64_2d73, 0x6b69_7021_0000_0002);

/// A validated Maglev table size: a prime no larger than [`MAX_TABLE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableSize(u32);

impl TableSize {
    /// Validates `size`: it must be a prime and at most [`MAX_TABLE_SIZE`].
    pub fn new(size: u32) -> Result<Self, TableError> {
        if size > MAX_TABLE_SIZE {
            return Err(TableError::TooLarge {
                size,
                max: MAX_TABLE_SIZE,
            });
        }
        if !is_prime(size) {
            return Err(TableError::NotPrime { size });
        }
        Ok(Self(size))
    }

    /// The number of slots, `M`.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for TableSize {
    fn default() -> Self {
        Self(DEFAULT_TABLE_SIZE)
    }
}

/// One backend as the table builder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    /// What the table stores for this backend: its index in the dataplane's backend array.
    pub id: u32,
    /// Stable identity the permutation is derived from (the backend host's address), so a
    /// backend keeps its slots when its `id` or its neighbours change.
    pub key: IpAddr,
    /// Relative share of the table; 0 excludes the backend.
    pub weight: u32,
}

/// Builds the lookup table: `size` backend ids, one per slot.
///
/// Backends with weight 0 are left out. The result depends only on the set of backends and
/// the size, not on the order of `backends`.
///
/// # Errors
///
/// [`TableError::NoBackends`] if no backend has a non-zero weight;
/// [`TableError::DuplicateKey`] or [`TableError::DuplicateId`] if two backends (zero-weight
/// ones included) share a key or an id.
pub fn build_table(backends: &[Backend], size: TableSize) -> Result<Vec<u32>, TableError> {
    check_unique(backends)?;

    let mut live: Vec<&Backend> = backends.iter().filter(|b| b.weight > 0).collect();
    live.sort_unstable_by_key(|b| b.key);
    let max_weight = match live.iter().map(|b| u64::from(b.weight)).max() {
        Some(w) => w,
        None => return Err(TableError::NoBackends),
    };

    let m = u64::from(size.get());
    let mut cursors: Vec<Cursor> = live.iter().map(|b| Cursor::new(b, m)).collect();
    let slots = size.get() as usize;
    let mut table = vec![0u32; slots];
    let mut taken = vec![false; slots];
    let mut filled = 0usize;

    // Bounded by M rounds: the heaviest backend's credit reaches `max_weight` every round.
    'fill: loop {
        for cursor in &mut cursors {
            cursor.credit += cursor.weight;
            if cursor.credit < max_weight {
                continue;
            }
            cursor.credit -= max_weight;
            // Terminates within M steps: the permutation covers every slot and one is free.
            while taken[cursor.next as usize] {
                cursor.advance(m);
            }
            table[cursor.next as usize] = cursor.id;
            taken[cursor.next as usize] = true;
            cursor.advance(m);
            filled += 1;
            if filled == slots {
                break 'fill;
            }
        }
    }
    Ok(table)
}

/// A backend's position in its permutation and its unspent weight credit.
struct Cursor {
    id: u32,
    weight: u64,
    skip: u64,
    /// The next slot of the permutation to try.
    next: u64,
    /// Always below `max_weight` between turns, so below `2 * u32::MAX` within one.
    credit: u64,
}

impl Cursor {
    fn new(backend: &Backend, m: u64) -> Self {
        let key = key_bytes(backend.key);
        let offset = SipHasher13::new_with_keys(OFFSET_KEYS.0, OFFSET_KEYS.1).hash(&key) % m;
        // M is prime and 1 <= skip <= M - 1, so skip is coprime with M.
        let skip = SipHasher13::new_with_keys(SKIP_KEYS.0, SKIP_KEYS.1).hash(&key) % (m - 1) + 1;
        Self {
            id: backend.id,
            weight: u64::from(backend.weight),
            skip,
            next: offset,
            credit: 0,
        }
    }

    fn advance(&mut self, m: u64) {
        // Both terms are below M <= 2^24, so the sum cannot overflow.
        self.next = (self.next + self.skip) % m;
    }
}

/// The bytes hashed for a key: the address octets, whose length already tells the families
/// apart.
fn key_bytes(key: IpAddr) -> Vec<u8> {
    match key {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn check_unique(backends: &[Backend]) -> Result<(), TableError> {
    let mut keys: Vec<IpAddr> = backends.iter().map(|b| b.key).collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(TableError::DuplicateKey { key: w[0] });
    }
    let mut ids: Vec<u32> = backends.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(TableError::DuplicateId { id: w[0] });
    }
    Ok(())
}

/// Trial division; sizes are at most 2^24, so at most 4096 divisions.
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests;
