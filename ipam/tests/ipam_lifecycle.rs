//! Rules 6-8: restore, release, pool edits and conflicts.

mod common;

use common::*;
use herald_ipam::{AllocateTo, Selector, Service};

fn with_current(mut s: Service, addrs: &[&str]) -> Service {
    s.current = addrs.iter().map(|a| ip(a)).collect();
    s
}

#[test]
fn restored_addresses_are_never_handed_out_again() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30"])]);
    let conflicts = a.restore([
        with_current(svc("old1"), &["10.0.0.0"]),
        with_current(svc("old2"), &["10.0.0.2"]),
        svc("new-without-status"),
    ]);
    assert!(conflicts.is_empty());
    assert_eq!(show(&a.assign(svc("n1"))), got(&["10.0.0.1"]));
    assert_eq!(show(&a.assign(svc("n2"))), got(&["10.0.0.3"]));
    assert_eq!(
        show(&a.assign(svc("new-without-status"))),
        failed("service default/new-without-status: no free IPv4 address in pool p")
    );
}

#[test]
fn restore_then_assign_again_is_a_fixed_point() {
    let pools = || vec![pool("p", &["10.0.0.0/29", "fd00::/125"])];
    let mut a = allocator(pools());
    let services = vec![
        svc("a"),
        sharing("b", "k", &[80]),
        sharing("c", "k", &[443]),
        dual("d", &[herald_ipam::Family::V6], Default::default()),
    ];
    for s in &services {
        a.assign(s.clone()).unwrap();
    }
    a.release(&key("a"));
    let before = a.assignments();

    let mut b = allocator(pools());
    let restored: Vec<Service> = services
        .iter()
        .filter_map(|s| {
            let held = a.assignment(&s.key)?;
            Some(with_current(s.clone(), &[]).clone()).map(|mut s| {
                s.current = held.addresses();
                s
            })
        })
        .collect();
    assert!(b.restore(restored.clone()).is_empty());
    for s in restored {
        b.assign(s).unwrap();
    }
    assert_eq!(b.assignments(), before);
}

#[test]
fn assign_never_moves_a_still_valid_address() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    a.restore([with_current(svc("s"), &["10.0.0.77"])]);
    let mut relabelled = svc("s");
    relabelled.labels.insert("x".into(), "y".into());
    relabelled.current = vec![ip("10.0.0.1")]; // stale status is ignored
    assert_eq!(show(&a.assign(relabelled)), got(&["10.0.0.77"]));
    assert_eq!(show(&a.assign(svc("s"))), got(&["10.0.0.77"]));
}

#[test]
fn unknown_service_with_status_is_restored_on_assign() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    assert_eq!(
        show(&a.assign(with_current(svc("s"), &["10.0.0.9"]))),
        got(&["10.0.0.9"])
    );
}

#[test]
fn restoring_an_address_taken_by_an_incompatible_service_reports_it_and_gives_a_fresh_one() {
    let mut a = allocator(vec![pool("p", &["10.0.0.4/30"])]);
    let conflicts = a.restore([
        with_current(svc("older"), &["10.0.0.5"]),
        with_current(svc("newer"), &["10.0.0.5"]),
    ]);
    let msgs: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        ["service default/newer: 10.0.0.5 is in use by default/older and not shared"]
    );
    assert_eq!(a.holders(ip("10.0.0.5")), vec![key("older")]);
    assert_eq!(show(&a.assign(svc("newer"))), got(&["10.0.0.4"]));
}

#[test]
fn restoring_an_address_outside_the_pools_is_a_conflict_and_stays_reserved() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    let conflicts = a.restore([with_current(svc("s"), &["192.0.2.1"])]);
    assert_eq!(
        conflicts[0].to_string(),
        "service default/s: conflict on 192.0.2.1: 192.0.2.1 is not in any pool"
    );
    assert_eq!(
        a.assignment(&key("s")).unwrap().addresses(),
        vec![ip("192.0.2.1")]
    );
}

#[test]
fn release_frees_the_addresses_and_forgets_the_service() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/31"])]);
    a.assign(svc("s")).unwrap();
    assert_eq!(a.release(&key("s")).unwrap(), vec![ip("10.0.0.0")]);
    assert_eq!(a.release(&key("s")), None);
    assert_eq!(a.assignment(&key("s")), None);
    assert_eq!(a.counts("p").unwrap().v4.assigned, 0);
}

#[test]
fn removing_the_pool_of_a_held_address_reports_a_conflict_and_moves_nothing() {
    let mut a = allocator(vec![
        pool("a-old", &["10.0.0.0/30"]),
        pool("new", &["10.0.1.0/30"]),
    ]);
    a.assign(svc("s")).unwrap();
    let conflicts = a.set_pools(vec![pool("new", &["10.0.1.0/30"])]).unwrap();
    let msgs: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        ["service default/s: conflict on 10.0.0.0: 10.0.0.0 is not in any pool"]
    );
    assert_eq!(
        show(&a.assign(svc("s"))),
        failed("service default/s: conflict on 10.0.0.0: 10.0.0.0 is not in any pool")
    );
    assert_eq!(
        a.assignment(&key("s")).unwrap().addresses(),
        vec![ip("10.0.0.0")]
    );
    // Putting the range back resolves it, keeping the address.
    assert!(
        a.set_pools(vec![pool("back", &["10.0.0.0/24"])])
            .unwrap()
            .is_empty()
    );
    assert_eq!(show(&a.assign(svc("s"))), got(&["10.0.0.0"]));
}

#[test]
fn restricting_a_pool_reports_services_it_no_longer_admits() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30"])]);
    a.assign(svc_in("a", "s")).unwrap();
    a.assign(svc_in("b", "s")).unwrap();
    let mut p = pool("p", &["10.0.0.0/30"]);
    p.allocate_to = AllocateTo {
        namespaces: vec!["a".into()],
        ..AllocateTo::default()
    };
    let conflicts = a.set_pools(vec![p]).unwrap();
    let msgs: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        ["service b/s: conflict on 10.0.0.1: 10.0.0.1: pool p is not allocated to this namespace"]
    );
    // The address stays reserved: nobody else gets it.
    assert_eq!(show(&a.assign(svc_in("a", "t"))), got(&["10.0.0.2"]));
}

#[test]
fn disabling_a_pool_reports_its_holders_as_conflicts() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30"])]);
    a.assign(svc("s")).unwrap();
    let mut p = pool("p", &["10.0.0.0/30"]);
    p.disabled = true;
    let conflicts = a.set_pools(vec![p]).unwrap();
    assert_eq!(
        conflicts[0].to_string(),
        "service default/s: conflict on 10.0.0.0: 10.0.0.0: pool p is disabled"
    );
}

#[test]
fn label_change_that_loses_the_pool_is_a_conflict_not_a_move() {
    let mut p = pool("front", &["10.0.0.0/30"]);
    p.allocate_to.service_selectors = vec![Selector::labels([("tier", "front")])];
    let mut a = allocator(vec![p, pool("other", &["10.0.1.0/30"])]);
    let mut s = svc("s");
    s.labels.insert("tier".into(), "front".into());
    assert_eq!(show(&a.assign(s)), got(&["10.0.0.0"]));
    assert_eq!(
        show(&a.assign(svc("s"))),
        failed(
            "service default/s: conflict on 10.0.0.0: 10.0.0.0: pool front does not select this service"
        )
    );
}

#[test]
fn changing_the_request_resolves_a_conflict_by_moving() {
    let mut a = allocator(vec![pool("old", &["10.0.0.0/30"])]);
    a.assign(svc("s")).unwrap();
    a.set_pools(vec![pool("new", &["10.0.1.0/30"])]).unwrap();
    let mut s = svc("s");
    s.requested_pools = vec!["new".into()];
    assert_eq!(show(&a.assign(s)), got(&["10.0.1.0"]));
    assert!(a.conflicts().is_empty());
    assert_eq!(a.holders(ip("10.0.0.0")), vec![]);
}

#[test]
fn changing_the_requested_address_moves_the_service() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    let mut s = svc("s");
    s.requested_ips = vec![ip("10.0.0.1")];
    a.assign(s.clone()).unwrap();
    s.requested_ips = vec![ip("10.0.0.2")];
    assert_eq!(show(&a.assign(s)), got(&["10.0.0.2"]));
    assert_eq!(a.counts("p").unwrap().v4.assigned, 1);
}

#[test]
fn failed_request_change_keeps_addresses_that_still_fit() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30"])]);
    a.assign(svc("s")).unwrap();
    let mut s = svc("s");
    s.requested_ips = vec![ip("192.0.2.1")];
    assert_eq!(
        show(&a.assign(s)),
        failed("service default/s: 192.0.2.1 is not in any pool")
    );
    assert!(a.assignment(&key("s")).unwrap().is_empty());
    a.release(&key("s"));

    let mut p = svc("p");
    p.ip_families = vec![herald_ipam::Family::V4, herald_ipam::Family::V6];
    p.family_policy = herald_ipam::FamilyPolicy::PreferDualStack;
    a.assign(p.clone()).unwrap();
    p.requested_ips = vec![ip("10.0.0.0"), ip("fd00::1")];
    assert_eq!(
        show(&a.assign(p)),
        failed("service default/p: fd00::1 is not in any pool")
    );
    assert_eq!(
        a.assignment(&key("p")).unwrap().addresses(),
        vec![ip("10.0.0.0")]
    );
}

#[test]
fn failed_change_to_require_dual_stack_leaves_no_partial_state() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30"])]);
    a.assign(svc("s")).unwrap();
    let mut s = svc("s");
    s.ip_families = vec![herald_ipam::Family::V4, herald_ipam::Family::V6];
    s.family_policy = herald_ipam::FamilyPolicy::RequireDualStack;
    assert_eq!(
        show(&a.assign(s)),
        failed("service default/s: family missing: IPv6: no pool serves IPv6 to it")
    );
    assert!(a.assignment(&key("s")).unwrap().is_empty());
    assert_eq!(a.counts("p").unwrap().v4.assigned, 0);
}
