//! Rule 4: sharing an address (DESIGN §3).

mod common;

use common::*;
use herald_ipam::{Protocol, TrafficPolicy};

fn at(mut s: herald_ipam::Service, addr: &str) -> herald_ipam::Service {
    s.requested_ips = vec![ip(addr)];
    s
}

#[test]
fn requested_shared_address_is_granted_or_refused_by_the_sharing_rule() {
    let local = |name: &str, pods: &str| {
        let mut s = sharing(name, "k", &[443]);
        s.traffic_policy = TrafficPolicy::Local;
        s.backend_key = pods.into();
        s
    };
    let udp80 = {
        let mut s = sharing("udp", "k", &[]);
        s.ports = vec![(Protocol::Udp, 80)];
        s
    };
    let cases = [
        (
            "disjoint ports, both cluster",
            sharing("b", "k", &[443]),
            Ok(()),
        ),
        ("same number, other protocol", udp80, Ok(())),
        (
            "overlapping port",
            sharing("b", "k", &[443, 80]),
            Err("service default/b: 10.0.0.5 conflicts with default/web on TCP/80"),
        ),
        (
            "other sharing key",
            sharing("b", "j", &[443]),
            Err("service default/b: 10.0.0.5 is in use by default/web under another sharing key"),
        ),
        (
            "no sharing key",
            svc("b"),
            Err("service default/b: 10.0.0.5 is in use by default/web and not shared"),
        ),
        (
            "local policy, other pods",
            local("b", "app=db"),
            Err(
                "service default/b: 10.0.0.5 is in use by default/web, which selects other pods \
                 and a local traffic policy is involved",
            ),
        ),
        ("local policy, same pods", local("b", "app=web"), Ok(())),
    ];
    for (name, s, want) in cases {
        let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
        let mut web = sharing("web", "k", &[80]);
        web.backend_key = "app=web".into();
        a.assign(at(web, "10.0.0.5")).unwrap();
        let r = a.assign(at(s, "10.0.0.5"));
        match want {
            Ok(()) => assert_eq!(show(&r), got(&["10.0.0.5"]), "{name}"),
            Err(msg) => assert_eq!(show(&r), failed(msg), "{name}"),
        }
    }
}

#[test]
fn auto_assignment_prefers_an_address_a_compatible_partner_holds() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    assert_eq!(show(&a.assign(svc("plain"))), got(&["10.0.0.0"]));
    assert_eq!(
        show(&a.assign(sharing("http", "k", &[80]))),
        got(&["10.0.0.1"])
    );
    assert_eq!(
        show(&a.assign(sharing("https", "k", &[443]))),
        got(&["10.0.0.1"])
    );
    assert_eq!(a.holders(ip("10.0.0.1")), vec![key("http"), key("https")]);
}

#[test]
fn auto_assignment_skips_partner_addresses_it_cannot_share() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    a.assign(sharing("http", "k", &[80])).unwrap();
    assert_eq!(
        show(&a.assign(sharing("http2", "k", &[80]))),
        got(&["10.0.0.1"])
    );
    assert_eq!(
        show(&a.assign(sharing("other-key", "j", &[443]))),
        got(&["10.0.0.2"])
    );
}

#[test]
fn shared_address_is_freed_only_when_its_last_holder_is_released() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/31"])]);
    a.assign(sharing("a", "k", &[80])).unwrap();
    a.assign(sharing("b", "k", &[443])).unwrap();
    assert_eq!(a.counts("p").unwrap().v4.assigned, 1);
    a.release(&key("a"));
    assert_eq!(show(&a.assign(svc("c"))), got(&["10.0.0.1"]));
    a.release(&key("b"));
    assert_eq!(show(&a.assign(svc("d"))), got(&["10.0.0.0"]));
}

#[test]
fn changing_ports_to_overlap_moves_the_service_that_changed() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    a.assign(sharing("a", "k", &[80])).unwrap();
    assert_eq!(
        show(&a.assign(sharing("b", "k", &[443]))),
        got(&["10.0.0.0"])
    );
    // b now also wants port 80: it may no longer share with a, so b (not a) moves.
    assert_eq!(
        show(&a.assign(sharing("b", "k", &[443, 80]))),
        got(&["10.0.0.1"])
    );
    assert_eq!(
        show(&a.assign(sharing("a", "k", &[80]))),
        got(&["10.0.0.0"])
    );
}

#[test]
fn changing_ports_of_a_requested_shared_address_to_overlap_is_refused_and_releases_it() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    a.assign(at(sharing("a", "k", &[80]), "10.0.0.5")).unwrap();
    a.assign(at(sharing("b", "k", &[443]), "10.0.0.5")).unwrap();
    assert_eq!(
        show(&a.assign(at(sharing("b", "k", &[80]), "10.0.0.5"))),
        failed("service default/b: 10.0.0.5 conflicts with default/a on TCP/80")
    );
    assert_eq!(a.holders(ip("10.0.0.5")), vec![key("a")]);
    assert!(a.assignment(&key("b")).unwrap().is_empty());
}

#[test]
fn dropping_the_sharing_key_moves_the_service_off_a_shared_address() {
    let mut a = allocator(vec![pool("p", &["10.0.0.0/24"])]);
    a.assign(sharing("a", "k", &[80])).unwrap();
    assert_eq!(
        show(&a.assign(sharing("b", "k", &[443]))),
        got(&["10.0.0.0"])
    );
    let mut b = sharing("b", "k", &[443]);
    b.sharing_key = None;
    assert_eq!(show(&a.assign(b)), got(&["10.0.0.1"]));
    assert_eq!(a.holders(ip("10.0.0.0")), vec![key("a")]);
}
