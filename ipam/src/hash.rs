//! Fast, deterministic hashing for the allocator's lookup tables.
//!
//! The tables are only ever looked up, never iterated into results, so the hash function
//! cannot leak into outputs; it only has to be fast. Keys are either a [`ServiceKey`] (which
//! carries its hash, computed once) or address bits.
//!
//! [`ServiceKey`]: super::ServiceKey

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The 64-bit finaliser of MurmurHash3: every input bit affects every output bit.
pub(crate) fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A hasher for keys that write one `u64` (pre-hashed keys) or one `u128` (addresses).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by the allocator's key types; kept correct for completeness.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Pre-hashed (ServiceKey): pass through.
        self.0 = n;
    }

    fn write_u32(&mut self, n: u32) {
        // IPv4 addresses: hashed as the same address in a `u128`.
        self.write_u128(u128::from(n));
    }

    fn write_u128(&mut self, n: u128) {
        // Addresses. The low bits (hashbrown's bucket index) follow the address, so that
        // the ascending addresses the allocator hands out fill neighbouring buckets
        // (cache-friendly, like appending to a B-tree); XOR-ing in the higher 16-bit groups
        // only permutes buckets within aligned blocks, keeping that locality, while
        // addresses spaced 2^16, 2^32 or 2^48 apart (requested ones can be anything) still
        // spread instead of piling into one bucket. The top 7 bits (hashbrown's tag) come
        // from a full mix so that tags tell keys apart.
        let f = (n as u64) ^ ((n >> 64) as u64).rotate_left(32);
        let spread = f ^ (f >> 16) ^ (f >> 32) ^ (f >> 48);
        self.0 = (spread & !TAG_BITS) | (mix64(f) & TAG_BITS);
    }
}

/// The bits hashbrown uses as a tag.
const TAG_BITS: u64 = 0xfe00_0000_0000_0000;

/// A `HashMap` using [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::*;

    fn bucket(n: u128, buckets: u64) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(n) & (buckets - 1)
    }

    #[test]
    fn ascending_addresses_stay_in_neighbouring_buckets_and_spaced_ones_spread() {
        let base = 0x0a00_0000u128;
        for i in 0..64u128 {
            // Same aligned group of 16 buckets for 16 consecutive addresses.
            assert_eq!(
                bucket(base + i, 1 << 17) / 16,
                bucket(base + (i & !15), 1 << 17) / 16
            );
        }
        for shift in [16u32, 32, 48, 64, 96] {
            let distinct: std::collections::BTreeSet<u64> = (0..256u128)
                .map(|k| bucket(0xfd00u128 << 112 | k << shift, 1 << 17))
                .collect();
            assert!(
                distinct.len() > 200,
                "spacing 2^{shift}: {} buckets",
                distinct.len()
            );
        }
    }
}
