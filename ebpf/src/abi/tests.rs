//! The Rust mirrors against the header, as clang lays it out (build/layout.c, run by build.rs).

use std::collections::HashMap;
use std::mem::{offset_of, size_of};

use super::*;

fn layout() -> HashMap<String, String> {
    include_str!(concat!(env!("OUT_DIR"), "/layout.txt"))
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default();
            (format!("{kind} {name}"), value.to_owned())
        })
        .collect()
}

fn num(l: &HashMap<String, String>, key: &str) -> u64 {
    l.get(key)
        .unwrap_or_else(|| panic!("{key} missing from the layout dump"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

macro_rules! check_struct {
    ($l:expr, $c:literal, $t:ty, [$($f:ident),*]) => {
        assert_eq!(size_of::<$t>() as u64, num(&$l, concat!("size ", $c)), "size of {}", $c);
        $(assert_eq!(
            offset_of!($t, $f) as u64,
            num(&$l, concat!("offset ", $c, ".", stringify!($f))),
            "offset of {}.{}", $c, stringify!($f)
        );)*
    };
}

#[test]
fn abi_matches_header() {
    let l = layout();
    check_struct!(l, "herald_vip_key", VipKey, [addr, port, proto, family]);
    check_struct!(l, "herald_vip", Vip, [id, generation]);
    check_struct!(
        l,
        "herald_backend",
        Backend,
        [addr, family, flags, generation]
    );
    check_struct!(
        l,
        "herald_flow_key",
        FlowKey,
        [src, dst, sport, dport, proto, family, pad]
    );
    check_struct!(l, "herald_flow", Flow, [backend, vip, hash, vip_gen]);
    check_struct!(
        l,
        "herald_flow_cached",
        FlowCached,
        [key, flow, pending, pad]
    );
    check_struct!(
        l,
        "herald_vip_stats",
        VipStats,
        [packets, bytes, lru_hit, lru_miss]
    );
    check_struct!(
        l,
        "herald_backend_stats",
        BackendStats,
        [
            packets,
            bytes,
            nh_expires,
            nh_ifindex,
            nh_iif,
            nh_ok_len,
            nh_dmac,
            nh_smac,
            nh_generation,
            pad
        ]
    );
    check_struct!(l, "herald_counter", Counter, [packets, bytes]);
    check_struct!(
        l,
        "herald_config",
        Config,
        [encap_src4, encap_src6, max_new_flows, flags]
    );
    check_struct!(l, "herald_flood", Flood, [window_start_ns, count]);
}

#[test]
fn constants_match_header() {
    let l = layout();
    let consts: [(&str, u64); 16] = [
        ("HERALD_VIP_FILTER_WORDS", VIP_FILTER_WORDS.into()),
        ("HERALD_MAX_VIPS", MAX_VIPS.into()),
        ("HERALD_MAX_BACKENDS", MAX_BACKENDS.into()),
        ("HERALD_MAX_FLOWS", MAX_FLOWS.into()),
        ("HERALD_MAX_CPUS", MAX_CPUS.into()),
        ("HERALD_FLOW_CACHE_SLOTS", FLOW_CACHE_SLOTS.into()),
        ("HERALD_MAGLEV_DEFAULT_SIZE", MAGLEV_DEFAULT_SIZE.into()),
        ("HERALD_MAGLEV_MAX_SIZE", MAGLEV_MAX_SIZE.into()),
        ("HERALD_HASH_SEED", HASH_SEED.into()),
        ("HERALD_FAMILY_V4", FAMILY_V4.into()),
        ("HERALD_FAMILY_V6", FAMILY_V6.into()),
        ("HERALD_BACKEND_LOCAL", BACKEND_LOCAL.into()),
        ("HERALD_DROP_MAX", DROP_MAX.into()),
        ("HERALD_EV_MAX", EV_MAX.into()),
        ("HERALD_DROP_TOO_BIG", DropReason::TooBig as u64),
        ("HERALD_EV_LOCAL", Event::Local as u64),
    ];
    for (name, value) in consts {
        assert_eq!(num(&l, &format!("const {name}")), value, "{name}");
    }
    let drops = [
        "NO_BACKEND",
        "FAMILY",
        "FIB",
        "NO_NEIGH",
        "HEADROOM",
        "TOO_BIG",
    ];
    for (reason, name) in DropReason::ALL.iter().zip(drops) {
        assert_eq!(
            num(&l, &format!("const HERALD_DROP_{name}")),
            *reason as u64,
            "{name}"
        );
    }
    let events = [
        ("FLOW_SKIPPED", Event::FlowSkipped),
        ("ICMP_TOO_BIG", Event::IcmpTooBig),
        ("ICMP_FOLLOWED", Event::IcmpFollowed),
    ];
    for (name, ev) in events {
        assert_eq!(
            num(&l, &format!("const HERALD_EV_{name}")),
            ev as u64,
            "{name}"
        );
    }
}

#[test]
fn map_names_match_header() {
    let l = layout();
    let names = [
        ("HERALD_MAP_VIPS", map_name::VIPS),
        ("HERALD_MAP_BACKENDS", map_name::BACKENDS),
        ("HERALD_MAP_MAGLEV", map_name::MAGLEV),
        ("HERALD_MAP_FLOWS", map_name::FLOWS),
        ("HERALD_MAP_CONFIG", map_name::CONFIG),
        ("HERALD_MAP_VIP_STATS", map_name::VIP_STATS),
        ("HERALD_MAP_BE_STATS", map_name::BE_STATS),
        ("HERALD_MAP_DROPS", map_name::DROPS),
        ("HERALD_MAP_EVENTS", map_name::EVENTS),
        ("HERALD_MAP_FLOOD", map_name::FLOOD),
        ("HERALD_MAP_DECAP_STATS", map_name::DECAP_STATS),
        ("HERALD_MAP_VIP_BITS", map_name::VIP_BITS),
        ("HERALD_MAP_FLOW_CACHE", map_name::FLOW_CACHE),
    ];
    for (c, rust) in names {
        assert_eq!(
            l.get(&format!("name {c}")).map(String::as_str),
            Some(rust),
            "{c}"
        );
        // The kernel keeps 15 bytes of a map name (BPF_OBJ_NAME_LEN - 1).
        assert!(rust.len() <= 15, "{rust} is longer than the kernel keeps");
    }
}
