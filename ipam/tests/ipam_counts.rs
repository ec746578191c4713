//! Rules 9-11: counts, cost, determinism.

mod common;

use std::time::Instant;

use common::*;
use herald_ipam::{Family, FamilyCounts, Service};

fn v6(name: &str) -> Service {
    let mut s = svc(name);
    s.ip_families = vec![Family::V6];
    s
}

#[test]
fn counts_are_exact_per_pool_and_family() {
    let mut buggy = pool("buggy", &["10.0.0.0/23", "fd00::/126"]);
    buggy.avoid_buggy_ips = true;
    let mut off = pool("off", &["10.1.0.0/24"]);
    off.disabled = true;
    let cases = [
        (pool("v4", &["10.0.0.0/24"]), 1, 0, (1, 255), (0, 0)),
        (buggy, 1, 1, (1, 2 * 254 - 1), (1, 3)),
        (
            pool("v6-48", &["fd00::/48"]),
            0,
            2,
            (0, 0),
            (2, (1u128 << 80) - 2),
        ),
        (
            pool("v6-64", &["fd00::/64", "fd00:0:0:1::/64"]),
            0,
            1,
            (0, 0),
            (1, (1u128 << 65) - 1),
        ),
        (off, 0, 0, (0, 0), (0, 0)),
    ];
    for (p, n4, n6, want4, want6) in cases {
        let name = p.name.clone();
        let mut a = allocator(vec![p]);
        for i in 0..n4 {
            a.assign(svc(&format!("v4-{i}"))).unwrap();
        }
        for i in 0..n6 {
            a.assign(v6(&format!("v6-{i}"))).unwrap();
        }
        let c = a.counts(&name).unwrap();
        let fc = |(assigned, available)| FamilyCounts {
            assigned,
            available,
        };
        assert_eq!(c.v4, fc(want4), "{name} v4");
        assert_eq!(c.v6, fc(want6), "{name} v6");
    }
}

#[test]
fn whole_ipv4_space_with_avoided_addresses_counts_without_enumeration() {
    let mut p = pool("all", &["0.0.0.0/0"]);
    p.avoid_buggy_ips = true;
    let a = allocator(vec![p]);
    let c = a.counts("all").unwrap().v4;
    assert_eq!(c.available, (1u128 << 24) * 254);
}

#[test]
fn shared_address_counts_once() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30"])]);
    a.assign(sharing("a", "k", &[80])).unwrap();
    a.assign(sharing("b", "k", &[443])).unwrap();
    let c = a.counts("p").unwrap().v4;
    assert_eq!((c.assigned, c.available), (1, 3));
}

#[test]
fn overlapping_ranges_in_one_pool_count_once_and_overlapping_pools_agree() {
    let mut a = allocator(vec![
        pool("p", &["10.0.0.0/30", "10.0.0.2-10.0.0.5"]),
        pool("q", &["10.0.0.4/30"]),
    ]);
    assert_eq!(a.counts("p").unwrap().v4.available, 6);
    let mut s = svc("s");
    s.requested_ips = vec![ip("10.0.0.5")];
    a.assign(s).unwrap();
    assert_eq!(a.counts("p").unwrap().v4.assigned, 1);
    assert_eq!(a.counts("q").unwrap().v4.assigned, 1);
    assert_eq!(a.counts("q").unwrap().v4.available, 3);
}

#[test]
fn a_slash_64_pool_costs_what_a_slash_24_costs() {
    // Not a benchmark (see benches/ipam.rs): a guard against accidental enumeration, which
    // would take ages on 2^64 addresses.
    let mut a = allocator(vec![pool("p", &["fd00::/64"]), pool("q", &["0.0.0.0/0"])]);
    let start = Instant::now();
    for i in 0..2000 {
        a.assign(v6(&format!("s{i}"))).unwrap();
    }
    a.set_pools(vec![pool("p", &["fd00::/64"]), pool("r", &["0.0.0.0/1"])])
        .unwrap();
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn same_calls_give_same_results_whatever_the_pool_list_order() {
    let run = |reverse: bool| {
        let mut pools = vec![
            pool("a", &["10.0.0.0/29"]),
            pool("b", &["10.0.1.0/29", "fd00::/125"]),
            pool("c", &["fd01::/125"]),
        ];
        if reverse {
            pools.reverse();
        }
        let mut a = allocator(pools);
        let mut out = Vec::new();
        for i in 0..20 {
            let s = if i % 3 == 0 {
                sharing(&format!("s{i}"), "k", &[i])
            } else {
                v6(&format!("s{i}"))
            };
            out.push(show(&a.assign(s)));
            if i % 4 == 0 {
                a.release(&key(&format!("s{}", i / 2)));
            }
        }
        (out, owned_all(&a))
    };
    assert_eq!(run(false), run(true));
}
