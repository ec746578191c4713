//! Rules 1-3: pool flags, pool choice, requested addresses.

mod common;

use common::*;
use herald_ipam::{AllocateTo, Family, FamilyPolicy, Operator, Requirement, Selector};

#[test]
fn lowest_free_address_is_handed_out_first_and_reused_after_release() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30"])]);
    assert_eq!(show(&a.assign(svc("a"))), got(&["10.0.0.0"]));
    assert_eq!(show(&a.assign(svc("b"))), got(&["10.0.0.1"]));
    a.release(&key("a"));
    assert_eq!(show(&a.assign(svc("c"))), got(&["10.0.0.0"]));
    assert_eq!(show(&a.assign(svc("d"))), got(&["10.0.0.2"]));
}

#[test]
fn one_pool_with_ipv4_and_ipv6_ranges_serves_both_families() {
    let mut a = allocator(vec![pool("p", &["fd00::10-fd00::11", "10.0.0.8/31"])]);
    let s = dual(
        "a",
        &[Family::V6, Family::V4],
        FamilyPolicy::RequireDualStack,
    );
    assert_eq!(show(&a.assign(s)), got(&["fd00::10", "10.0.0.8"]));
    let mut v6 = svc("b");
    v6.ip_families = vec![Family::V6];
    assert_eq!(show(&a.assign(v6)), got(&["fd00::11"]));
}

#[test]
fn exhausted_pool_error_names_service_family_and_pools() {
    let mut a = allocator(vec![pool("p", &["10.0.0.1"]), pool("q", &["10.0.0.2"])]);
    a.assign(svc("a")).unwrap();
    a.assign(svc("b")).unwrap();
    assert_eq!(
        show(&a.assign(svc("c"))),
        failed("service default/c: no free IPv4 address in pool p, q")
    );
}

#[test]
fn pool_without_auto_assign_serves_only_explicit_requests() {
    let mut manual = pool("manual", &["10.0.0.0/29"]);
    manual.auto_assign = false;
    let mut a = allocator(vec![manual]);
    assert_eq!(
        show(&a.assign(svc("auto"))),
        failed("service default/auto: no pool serves IPv4 to it")
    );
    let mut by_name = svc("by-name");
    by_name.requested_pools = vec!["manual".into()];
    assert_eq!(show(&a.assign(by_name)), got(&["10.0.0.0"]));
    let mut by_ip = svc("by-ip");
    by_ip.requested_ips = vec![ip("10.0.0.5")];
    assert_eq!(show(&a.assign(by_ip)), got(&["10.0.0.5"]));
}

#[test]
fn avoid_buggy_ips_never_hands_out_dot_zero_or_dot_255() {
    let mut p = pool("p", &["10.0.0.254-10.0.1.1"]);
    p.avoid_buggy_ips = true;
    let mut a = allocator(vec![p]);
    assert_eq!(show(&a.assign(svc("a"))), got(&["10.0.0.254"]));
    assert_eq!(show(&a.assign(svc("b"))), got(&["10.0.1.1"]));
    for addr in ["10.0.0.255", "10.0.1.0"] {
        let mut s = svc("c");
        s.requested_ips = vec![ip(addr)];
        assert_eq!(
            show(&a.assign(s)),
            Err(format!(
                "service default/c: {addr}: pool p avoids addresses ending in .0 and .255"
            ))
        );
    }
    assert_eq!(
        show(&a.assign(svc("d"))),
        failed("service default/d: no free IPv4 address in pool p")
    );
}

#[test]
fn avoid_buggy_ips_does_not_touch_ipv6() {
    let mut p = pool("p", &["fd00::ff-fd00::100"]);
    p.avoid_buggy_ips = true;
    let mut a = allocator(vec![p]);
    let mut s = svc("a");
    s.ip_families = vec![Family::V6];
    assert_eq!(show(&a.assign(s)), got(&["fd00::ff"]));
}

#[test]
fn disabled_pool_hands_out_nothing_even_on_request() {
    let mut p = pool("off", &["10.0.0.0/29"]);
    p.disabled = true;
    let mut a = allocator(vec![p]);
    let mut by_ip = svc("ip");
    by_ip.requested_ips = vec![ip("10.0.0.3")];
    let mut by_name = svc("name");
    by_name.requested_pools = vec!["off".into()];
    let cases = [
        (
            svc("auto"),
            "service default/auto: no pool serves IPv4 to it",
        ),
        (by_ip, "service default/ip: 10.0.0.3: pool off is disabled"),
        (by_name, "service default/name: pool off is disabled"),
    ];
    for (s, want) in cases {
        assert_eq!(show(&a.assign(s)), failed(want));
    }
}

#[test]
fn requested_pools_are_used_only_and_in_the_given_order() {
    let mut a = allocator(vec![
        pool("a", &["10.0.1.0"]),
        pool("b", &["10.0.2.0"]),
        pool("c", &["10.0.3.0"]),
    ]);
    let ask = |name: &str| {
        let mut s = svc(name);
        s.requested_pools = vec!["c".into(), "b".into()];
        s
    };
    assert_eq!(show(&a.assign(ask("x"))), got(&["10.0.3.0"]));
    assert_eq!(show(&a.assign(ask("y"))), got(&["10.0.2.0"]));
    assert_eq!(
        show(&a.assign(ask("z"))),
        failed("service default/z: no free IPv4 address in pool c, b")
    );
}

#[test]
fn unknown_requested_pool_is_an_error() {
    let mut a = allocator(vec![pool("a", &["10.0.1.0/24"])]);
    let mut s = svc("x");
    s.requested_pools = vec!["nope".into()];
    assert_eq!(
        show(&a.assign(s)),
        failed("service default/x: pool nope does not exist")
    );
}

#[test]
fn auto_assignment_orders_pools_by_priority_then_unprioritised_then_name() {
    let prio = |name: &str, r: &str, p: Option<i32>| {
        let mut pool = pool(name, &[r]);
        pool.allocate_to.priority = p;
        pool
    };
    // Listed in a scrambled order; the order of the list must not matter.
    let mut a = allocator(vec![
        prio("z-none", "10.0.5.0", None),
        prio("b-10", "10.0.3.0", Some(10)),
        prio("a-none", "10.0.4.0", None),
        prio("c-minus", "10.0.1.0", Some(-5)),
        prio("a-10", "10.0.2.0", Some(10)),
    ]);
    let got_in_order: Vec<String> = (0..5)
        .map(|i| a.assign(svc(&format!("s{i}"))).unwrap().addresses()[0].to_string())
        .collect();
    assert_eq!(
        got_in_order,
        ["10.0.1.0", "10.0.2.0", "10.0.3.0", "10.0.4.0", "10.0.5.0"]
    );
}

fn restricted(to: AllocateTo) -> herald_ipam::Pool {
    let mut p = pool("team", &["10.0.9.0/30"]);
    p.allocate_to = to;
    p
}

#[test]
fn allocate_to_admits_by_namespace_name_or_labels_and_by_service_labels() {
    let ns_sel = Selector::labels([("team", "a")]);
    let svc_sel = Selector {
        match_expressions: vec![Requirement {
            key: "tier".into(),
            operator: Operator::In,
            values: vec!["front".into()],
        }],
        ..Selector::default()
    };
    let mut ns_a = svc_in("a", "s");
    ns_a.namespace_labels.insert("team".into(), "a".into());
    let mut front = svc_in("b", "s");
    front.labels.insert("tier".into(), "front".into());
    let to_ns = AllocateTo {
        namespaces: vec!["a".into()],
        ..AllocateTo::default()
    };
    let to_ns_labels = AllocateTo {
        namespace_selectors: vec![ns_sel],
        ..AllocateTo::default()
    };
    let to_front = AllocateTo {
        service_selectors: vec![svc_sel],
        ..AllocateTo::default()
    };
    let cases = [
        ("namespace listed", to_ns.clone(), svc_in("a", "s"), true),
        (
            "namespace not listed",
            to_ns.clone(),
            svc_in("b", "s"),
            false,
        ),
        (
            "namespace labels match",
            to_ns_labels.clone(),
            ns_a.clone(),
            true,
        ),
        (
            "namespace labels differ",
            to_ns_labels,
            svc_in("a", "s"),
            false,
        ),
        ("service selected", to_front.clone(), front.clone(), true),
        ("service not selected", to_front, svc_in("b", "s"), false),
        (
            "no restriction",
            AllocateTo::default(),
            svc_in("q", "s"),
            true,
        ),
    ];
    for (name, to, s, admitted) in cases {
        let mut a = allocator(vec![restricted(to)]);
        assert_eq!(a.assign(s).is_ok(), admitted, "{name}");
    }
}

#[test]
fn pool_reserved_for_one_namespace_refuses_explicit_requests_from_another() {
    let to_a = AllocateTo {
        namespaces: vec!["a".into()],
        ..AllocateTo::default()
    };
    let mut a = allocator(vec![restricted(to_a)]);
    let mut by_ip = svc_in("b", "x");
    by_ip.requested_ips = vec![ip("10.0.9.1")];
    let mut by_name = svc_in("b", "y");
    by_name.requested_pools = vec!["team".into()];
    assert_eq!(
        show(&a.assign(by_ip)),
        failed("service b/x: 10.0.9.1: pool team is not allocated to this namespace")
    );
    assert_eq!(
        show(&a.assign(by_name)),
        failed("service b/y: pool team is not allocated to this namespace")
    );
}

#[test]
fn requested_address_outside_every_pool_is_refused() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    let mut s = svc("x");
    s.requested_ips = vec![ip("192.0.2.1")];
    assert_eq!(
        show(&a.assign(s)),
        failed("service default/x: 192.0.2.1 is not in any pool")
    );
}

#[test]
fn requested_address_must_lie_in_a_requested_pool() {
    let mut a = allocator(vec![
        pool("p", &["10.0.0.0/24"]),
        pool("q", &["10.0.1.0/24"]),
    ]);
    let mut s = svc("x");
    s.requested_pools = vec!["q".into()];
    s.requested_ips = vec![ip("10.0.0.7")];
    assert_eq!(
        show(&a.assign(s)),
        failed("service default/x: 10.0.0.7: pool p is not among the requested pools")
    );
}

#[test]
fn requested_address_in_use_by_incompatible_service_is_refused() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    let mut first = svc("first");
    first.requested_ips = vec![ip("10.0.0.9")];
    a.assign(first).unwrap();
    let mut second = svc("second");
    second.requested_ips = vec![ip("10.0.0.9")];
    assert_eq!(
        show(&a.assign(second)),
        failed("service default/second: 10.0.0.9 is in use by default/first and not shared")
    );
}

#[test]
fn one_requested_address_per_family() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24", "fd00::/120"])]);
    let mut two = svc("two");
    two.requested_ips = vec![ip("10.0.0.1"), ip("10.0.0.2")];
    let mut v6_for_v4 = svc("v6");
    v6_for_v4.requested_ips = vec![ip("fd00::1")];
    let mut both = dual(
        "both",
        &[Family::V4, Family::V6],
        FamilyPolicy::RequireDualStack,
    );
    both.requested_ips = vec![ip("fd00::1"), ip("10.0.0.1")];
    assert_eq!(
        show(&a.assign(two)),
        failed("service default/two: more than one IPv4 address requested")
    );
    assert_eq!(
        show(&a.assign(v6_for_v4)),
        failed("service default/v6: fd00::1 requested, but the service does not use IPv6")
    );
    assert_eq!(show(&a.assign(both)), got(&["10.0.0.1", "fd00::1"]));
}

#[test]
fn invalid_pool_configuration_is_refused_and_the_old_one_stays() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/30"])]);
    let cases = [
        (
            vec![pool("p", &["10.0.0.5-10.0.0.1"])],
            "pool p: range 10.0.0.5-10.0.0.1 ends before it starts",
        ),
        (
            vec![pool("p", &["10.0.0.1-fd00::1"])],
            "pool p: range 10.0.0.1-fd00::1 mixes address families",
        ),
        (
            vec![pool("p", &["10.0.0.1"]), pool("p", &["10.0.0.2"])],
            "pool p is defined twice",
        ),
    ];
    for (pools, want) in cases {
        assert_eq!(a.set_pools(pools).unwrap_err().to_string(), want);
    }
    assert_eq!(show(&a.assign(svc("a"))), got(&["10.0.0.0"]));
}
