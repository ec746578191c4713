//! Rule 5: families and family policies.

mod common;

use common::*;
use herald_ipam::{Family, FamilyPolicy};

use Family::{V4, V6};
use FamilyPolicy::{PreferDualStack, RequireDualStack, SingleStack};

#[test]
fn family_policies_on_pools_with_and_without_each_family() {
    let both = || pool("both", &["10.0.0.1", "fd00::1"]);
    let v4_only = || pool("v4", &["10.0.0.1"]);
    let cases = [
        (
            "single v4 gets v4 only",
            both(),
            &[V4, V6][..],
            SingleStack,
            got(&["10.0.0.1"]),
        ),
        (
            "single v6 gets v6 only",
            both(),
            &[V6, V4][..],
            SingleStack,
            got(&["fd00::1"]),
        ),
        (
            "prefer gets both",
            both(),
            &[V4, V6][..],
            PreferDualStack,
            got(&["10.0.0.1", "fd00::1"]),
        ),
        (
            "prefer primary v6 first",
            both(),
            &[V6, V4][..],
            PreferDualStack,
            got(&["fd00::1", "10.0.0.1"]),
        ),
        (
            "prefer degrades to v4",
            v4_only(),
            &[V6, V4][..],
            PreferDualStack,
            got(&["10.0.0.1"]),
        ),
        (
            "prefer single-stack cluster",
            both(),
            &[V6][..],
            PreferDualStack,
            got(&["fd00::1"]),
        ),
        (
            "require gets both",
            both(),
            &[V4, V6][..],
            RequireDualStack,
            got(&["10.0.0.1", "fd00::1"]),
        ),
        (
            "require without v6 fails",
            v4_only(),
            &[V4, V6][..],
            RequireDualStack,
            failed("service default/s: family missing: IPv6: no pool serves IPv6 to it"),
        ),
        (
            "single v6 without v6 fails",
            v4_only(),
            &[V6][..],
            SingleStack,
            failed("service default/s: no pool serves IPv6 to it"),
        ),
    ];
    for (name, p, families, policy, want) in cases {
        let mut a = allocator(vec![p]);
        assert_eq!(show(&a.assign(dual("s", families, policy))), want, "{name}");
    }
}

#[test]
fn require_dual_stack_without_both_families_allocates_nothing() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30", "fd00::1"])]);
    a.assign(dual("v6", &[V6], SingleStack)).unwrap();
    let before = a.counts("p").unwrap();
    assert_eq!(
        show(&a.assign(dual("s", &[V4, V6], RequireDualStack))),
        failed("service default/s: family missing: IPv6: no free IPv6 address in pool p")
    );
    assert_eq!(a.counts("p").unwrap(), before);
    assert_eq!(a.assignment(&key("s")), None);
}

#[test]
fn pool_missing_a_family_is_skipped_for_that_family() {
    let mut first = pool("first", &["10.0.0.1"]);
    first.allocate_to.priority = Some(1);
    let mut a = allocator(vec![first, pool("second", &["10.0.1.1", "fd00::1"])]);
    let got_pools: Vec<(String, String)> = a
        .assign(dual("s", &[V4, V6], RequireDualStack))
        .unwrap()
        .iter()
        .map(|x| (x.addr.to_string(), x.pool.unwrap().to_string()))
        .collect();
    assert_eq!(
        got_pools,
        [
            ("10.0.0.1".to_string(), "first".to_string()),
            ("fd00::1".to_string(), "second".to_string())
        ]
    );
}

#[test]
fn prefer_dual_stack_with_one_requested_family_gets_only_that() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30", "fd00::/126"])]);
    let mut s = dual("s", &[V4, V6], PreferDualStack);
    s.requested_ips = vec![ip("fd00::2")];
    assert_eq!(show(&a.assign(s)), got(&["fd00::2"]));
    let mut r = dual("r", &[V4, V6], RequireDualStack);
    r.requested_ips = vec![ip("fd00::3")];
    assert_eq!(
        show(&a.assign(r)),
        failed("service default/r: family missing: IPv4: no IPv4 address requested")
    );
}

#[test]
fn prefer_dual_stack_refuses_an_unavailable_requested_address_instead_of_dropping_it() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30", "fd00::/126"])]);
    let mut taken = dual("taken", &[V6], SingleStack);
    taken.requested_ips = vec![ip("fd00::1")];
    a.assign(taken).unwrap();
    let mut s = dual("s", &[V4, V6], PreferDualStack);
    s.requested_ips = vec![ip("10.0.0.1"), ip("fd00::1")];
    assert_eq!(
        show(&a.assign(s)),
        failed("service default/s: fd00::1 is in use by default/taken and not shared")
    );
}

#[test]
fn switching_from_dual_to_single_stack_releases_the_second_family() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30", "fd00::/126"])]);
    a.assign(dual("s", &[V4, V6], RequireDualStack)).unwrap();
    assert_eq!(
        show(&a.assign(dual("s", &[V4, V6], SingleStack))),
        got(&["10.0.0.0"])
    );
    assert_eq!(a.counts("p").unwrap().v6.assigned, 0);
}

#[test]
fn switching_from_single_to_dual_stack_keeps_the_first_address() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30", "fd00::/126"])]);
    a.assign(svc("x")).unwrap();
    a.assign(dual("s", &[V4], SingleStack)).unwrap();
    a.release(&key("x"));
    assert_eq!(
        show(&a.assign(dual("s", &[V4, V6], PreferDualStack))),
        got(&["10.0.0.1", "fd00::"])
    );
}
