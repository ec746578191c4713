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

    fn write_u128(&mut self, n: u128) {
        // Fold the halves, then one multiply: sequential addresses spread over the low bits
        // (bucket index) and the top bits (hashbrown's tag).
        let folded = (n as u64) ^ ((n >> 64) as u64).rotate_left(29);
        let h = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

/// A `HashMap` using [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
