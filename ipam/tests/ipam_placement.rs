//! `Placement::Hashed` (standalone): where a Service lands depends on its name and the pool,
//! not on who came first; the default placement is untouched.

mod common;

use std::collections::BTreeSet;

use common::*;
use herald_ipam::{Allocator, Placement, Pool};

fn hashed(pools: Vec<Pool>) -> Allocator {
    let mut a = Allocator::with_placement(Placement::Hashed);
    a.set_pools(pools).expect("valid pools");
    a
}

fn addr(a: &mut Allocator, s: herald_ipam::Service) -> String {
    show(&a.assign(s)).expect("assigned")[0].clone()
}

#[test]
fn the_default_placement_still_hands_out_the_lowest_free_address() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    assert_eq!(addr(&mut a, svc("zeta")), "10.0.0.0");
    assert_eq!(addr(&mut a, svc("alpha")), "10.0.0.1");
}

#[test]
fn a_hashed_address_depends_on_the_service_not_on_what_came_before() {
    let pools = || vec![pool("p", &["10.0.0.0/16"])];
    let mut alone = hashed(pools());
    let web = addr(&mut alone, svc("web"));
    let mut crowded = hashed(pools());
    for i in 0..50 {
        addr(&mut crowded, svc(&format!("other-{i}")));
    }
    // 50 of 65 536 taken: web's first candidate is (overwhelmingly likely) free, and it is
    // the same one.
    assert_eq!(addr(&mut crowded, svc("web")), web);
    // Spread, not dense: 50 Services do not fill the first 50 addresses.
    let firsts: BTreeSet<String> = (0..50)
        .map(|i| format!("10.0.0.{i}"))
        .filter(|a| crowded.holders(a.parse().unwrap()).is_empty())
        .collect();
    assert!(firsts.len() > 40, "{} of the first 50 free", firsts.len());
}

#[test]
fn a_pool_with_one_free_address_left_still_hands_it_out() {
    // 16 hashed attempts over 512 addresses almost surely miss the one free address: the
    // fallback scan (wrapping around, across ranges) finds it.
    for last in ["10.0.0.0", "10.0.0.77", "10.0.9.255"] {
        let mut a = hashed(vec![pool("p", &["10.0.0.0/24", "10.0.9.0/24"])]);
        let mut n = 0;
        for base in ["10.0.0", "10.0.9"] {
            for host in 0..=255 {
                let taken = format!("{base}.{host}");
                if taken != last {
                    let mut s = svc(&format!("pinned-{n}"));
                    n += 1;
                    s.requested_ips = vec![ip(&taken)];
                    a.assign(s).unwrap();
                }
            }
        }
        assert_eq!(addr(&mut a, svc("last")), last);
        assert_eq!(
            show(&a.assign(svc("one-too-many"))),
            failed("service default/one-too-many: no free IPv4 address in pool p")
        );
    }
}

#[test]
fn hashed_placement_never_hands_out_avoided_addresses() {
    let mut p = pool("p", &["10.0.0.0/30", "10.0.1.254/31"]);
    p.avoid_buggy_ips = true;
    // Usable: .1, .2, .3 and 10.0.1.254.
    let mut a = hashed(vec![p]);
    let got: BTreeSet<String> = (0..4)
        .map(|i| addr(&mut a, svc(&format!("s{i}"))))
        .collect();
    let want: BTreeSet<String> = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.254"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn services_with_one_sharing_key_meet_on_the_same_hashed_address() {
    let mut a = hashed(vec![pool("p", &["10.0.0.0/16"])]);
    let http = addr(&mut a, sharing("http", "k", &[80]));
    let https = addr(&mut a, sharing("https", "k", &[443]));
    assert_eq!(http, https);
    // Without the partner in place, the second still lands there: the key decides.
    let mut b = hashed(vec![pool("p", &["10.0.0.0/16"])]);
    assert_eq!(addr(&mut b, sharing("https", "k", &[443])), http);
}

#[test]
fn hashed_ipv6_placement_works_in_a_huge_range() {
    let mut a = hashed(vec![pool("p", &["2001:db8::/64"])]);
    let s = dual(
        "v6",
        &[herald_ipam::Family::V6],
        herald_ipam::FamilyPolicy::SingleStack,
    );
    let got = addr(&mut a, s.clone());
    let mut b = hashed(vec![pool("p", &["2001:db8::/64"])]);
    assert_eq!(addr(&mut b, s), got);
    assert_ne!(got, "2001:db8::", "not the lowest");
}
