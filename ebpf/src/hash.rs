//! The flow hash, as the XDP program computes it (`herald_flow_hash` in `herald.h`): Bob
//! Jenkins' lookup3 `hashword` over the ten 32-bit words of a [`FlowKey`] read in host byte
//! order, seeded with [`HASH_SEED`]. A new flow's backend is `table[hash % M]`, so with this
//! mirror and the Maglev table user space can predict where the program sends a flow.

use crate::abi::{FlowKey, HASH_SEED};

/// The words the program hashes: the key's 40 bytes as ten native-endian `u32`.
fn words(key: &FlowKey) -> [u32; 10] {
    let mut bytes = [0u8; 40];
    bytes[..16].copy_from_slice(&key.src);
    bytes[16..32].copy_from_slice(&key.dst);
    bytes[32..34].copy_from_slice(&key.sport.to_ne_bytes());
    bytes[34..36].copy_from_slice(&key.dport.to_ne_bytes());
    bytes[36] = key.proto;
    bytes[37] = key.family;
    bytes[38..40].copy_from_slice(&key.pad);
    let mut w = [0u32; 10];
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        w[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    w
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn finalize(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// The flow hash of `key`, equal to what the XDP program computes for the same packet.
pub fn flow_hash(key: &FlowKey) -> u32 {
    let w = words(key);
    let init = 0xdead_beef_u32
        .wrapping_add(10 << 2)
        .wrapping_add(HASH_SEED);
    let (mut a, mut b, mut c) = (init, init, init);
    for chunk in [&w[0..3], &w[3..6], &w[6..9]] {
        a = a.wrapping_add(chunk[0]);
        b = b.wrapping_add(chunk[1]);
        c = c.wrapping_add(chunk[2]);
        mix(&mut a, &mut b, &mut c);
    }
    a = a.wrapping_add(w[9]);
    finalize(&mut a, &mut b, &mut c);
    c
}

/// The bit of the VIP address filter for an address field (`herald_vip_filter_bit`).
pub fn vip_filter_bit(addr: &[u8; 16]) -> u32 {
    let x = addr
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .fold(0, |acc, w| acc ^ w);
    (x ^ (x >> 16)) & 0xffff
}

/// The slot of each CPU's flow cache a flow falls in (`herald_flow_cache_slot`).
pub fn flow_cache_slot(key: &FlowKey) -> u32 {
    let w = words(key);
    let s = w[0] ^ w[1] ^ w[2] ^ w[3];
    let d = w[4] ^ w[5] ^ w[6] ^ w[7];
    let x = s.wrapping_mul(0x9e37_79b1) ^ d ^ w[8].wrapping_mul(0x85eb_ca6b) ^ w[9];
    let x = x.wrapping_mul(0xc2b2_ae35);
    (x ^ (x >> 16)) & (crate::abi::FLOW_CACHE_SLOTS - 1)
}

/// The Maglev slot a flow falls in: `hash % size`, as the program indexes the table.
pub fn slot(key: &FlowKey, size: u32) -> usize {
    (flow_hash(key) % size) as usize
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;

    /// A figure the C header computed (`what which N` in build.rs's layout dump).
    fn from_c(what: &str, which: &str) -> u32 {
        include_str!(concat!(env!("OUT_DIR"), "/layout.txt"))
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{what} {which} ")))
            .unwrap_or_else(|| panic!("{what} {which} missing from the layout dump"))
            .parse()
            .expect("a number")
    }

    fn c_hash(which: &str) -> u32 {
        from_c("hash", which)
    }

    #[test]
    fn ipv4_key_hashes_like_the_c_header() {
        let key = FlowKey::new(
            IpAddr::from([10, 0, 0, 1]),
            12345,
            IpAddr::from([192, 0, 2, 10]),
            80,
            6,
        );
        assert_eq!(flow_hash(&key), c_hash("v4"));
    }

    #[test]
    fn ipv6_key_hashes_like_the_c_header() {
        let key = FlowKey::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            0xffff,
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x0102)),
            443,
            17,
        );
        assert_eq!(flow_hash(&key), c_hash("v6"));
    }

    #[test]
    fn flow_cache_slots_match_the_c_header() {
        let c_slot = |which: &str| from_c("slot", which);
        let v4 = FlowKey::new(
            IpAddr::from([10, 0, 0, 1]),
            12345,
            IpAddr::from([192, 0, 2, 10]),
            80,
            6,
        );
        let v6 = FlowKey::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            0xffff,
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x0102)),
            443,
            17,
        );
        assert_eq!(flow_cache_slot(&v4), c_slot("v4"));
        assert_eq!(flow_cache_slot(&v6), c_slot("v6"));
        // Neighbouring client ports spread over the slots.
        let slots: std::collections::BTreeSet<u32> = (0..64u16)
            .map(|p| {
                let k = FlowKey::new(
                    IpAddr::from([10, 0, 0, 1]),
                    40000 + p,
                    IpAddr::from([192, 0, 2, 10]),
                    80,
                    6,
                );
                flow_cache_slot(&k)
            })
            .collect();
        assert!(slots.len() >= 60, "{} distinct slots of 64", slots.len());
    }

    #[test]
    fn vip_filter_bits_match_the_c_header() {
        let bit = |which: &str| from_c("bit", which);
        let v4 = crate::abi::addr_bytes(IpAddr::from([192, 0, 2, 10])).1;
        let v6 = crate::abi::addr_bytes(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x0102,
        )))
        .1;
        assert_eq!(vip_filter_bit(&v4), bit("v4"));
        assert_eq!(vip_filter_bit(&v6), bit("v6"));
    }

    #[test]
    fn changing_any_tuple_field_changes_the_hash() {
        let base = FlowKey::new(
            IpAddr::from([10, 0, 0, 1]),
            1000,
            IpAddr::from([192, 0, 2, 10]),
            80,
            6,
        );
        let h = flow_hash(&base);
        let mut variants = [base; 5];
        variants[0].src[3] = 2;
        variants[1].dst[3] = 11;
        variants[2].sport = 1001u16.to_be();
        variants[3].dport = 81u16.to_be();
        variants[4].proto = 17;
        for v in variants {
            assert_ne!(flow_hash(&v), h, "{v:?}");
        }
    }
}
