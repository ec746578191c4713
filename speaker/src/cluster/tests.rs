//! Table tests of cluster mode's pure parts: translation of API objects into the engine's
//! inputs, and the per-Service announcement report with its Events.

// Table rows are tuples spelled out where they are used.
#![allow(clippy::type_complexity)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_api::standalone::StandaloneConfig;
use herald_api::{BGPPeer, IPPool};
use herald_ipam::TrafficPolicy;
use herald_ipam::convert::LbClass;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::facts::{ServiceFacts, ServiceTable, SliceTable, announce_services, granted};
use super::report::{Announcement, Reason, announcements, changes, event_for};
use super::translate::{PasswordProblem, resolve_password, translate};
use crate::announce::{self, Desired, Endpoint, Exclusion, L2Address, RouteAttrs};
use crate::engine::Assigned;
use crate::status::BgpStatus;

const NS: &str = "herald-system";

fn service(
    name: &str,
    class: Option<&str>,
    type_: &str,
    ips: &[&str],
    from: Option<&str>,
) -> std::sync::Arc<Service> {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "annotations": {}},
        "spec": {"type": type_, "ports": [{"port": 80, "protocol": "TCP"}]},
        "status": {"loadBalancer": {"ingress": ips.iter().map(|ip| {
            if ip.parse::<IpAddr>().is_ok() { json!({"ip": ip}) } else { json!({"hostname": ip}) }
        }).collect::<Vec<_>>()}},
    });
    if let Some(c) = class {
        v["spec"]["loadBalancerClass"] = json!(c);
    }
    if let Some(f) = from {
        v["metadata"]["annotations"]["herald.dev/allocated-from"] = json!(f);
    }
    std::sync::Arc::new(serde_json::from_value(v).unwrap())
}

fn pool(name: &str, addresses: &[&str]) -> IPPool {
    serde_json::from_value(json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"addresses": addresses},
    }))
    .unwrap()
}

fn peer(name: &str, secret: Option<Value>) -> BGPPeer {
    let mut v = json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"peerAddress": "192.0.2.1", "peerASN": 65001, "myASN": 65000},
    });
    if let Some(s) = secret {
        v["spec"]["passwordSecret"] = s;
    }
    serde_json::from_value(v).unwrap()
}

fn secret(name: &str, data: &[(&str, &[u8])]) -> Secret {
    let mut s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS},
    }))
    .unwrap();
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
            .collect(),
    );
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The pools' ranges as the translation gives them.
fn ranges(pools: &[IPPool]) -> Vec<(String, Vec<(IpAddr, IpAddr)>)> {
    let objects = StandaloneConfig {
        ip_pools: pools.to_vec(),
        ..Default::default()
    };
    translate(objects, &[], NS).pools
}

#[test]
fn only_load_balancer_services_of_no_class_or_our_class_are_kept() {
    // (type, class, kept shared, kept exclusive)
    let table = [
        ("LoadBalancer", None, true, false),
        ("LoadBalancer", Some("herald.dev/lb"), true, true),
        ("LoadBalancer", Some("other.example/lb"), false, false),
        ("ClusterIP", None, false, false),
        ("NodePort", None, false, false),
        ("ClusterIP", Some("herald.dev/lb"), false, false),
    ];
    let pools = ranges(&[pool("a", &["10.0.0.0/24"])]);
    for (type_, class, shared, exclusive) in table {
        for (lb, kept) in [
            (LbClass::shared("herald.dev/lb"), shared),
            (LbClass::exclusive("herald.dev/lb"), exclusive),
        ] {
            let mut services = ServiceTable::default();
            services.apply(&service("s", class, type_, &["10.0.0.1"], Some("a")), &lb);
            assert_eq!(
                services.len(),
                usize::from(kept),
                "{type_} {class:?} {lb:?}"
            );
            let assigned = services.assigned(&pools);
            assert_eq!(
                assigned.contains_key("default/s"),
                kept,
                "{type_} {class:?} {lb:?}"
            );
            let announce = announce_services(&services, &SliceTable::default(), &assigned);
            assert_eq!(
                announce.len(),
                usize::from(kept),
                "{type_} {class:?} {lb:?}"
            );
        }
    }
}

#[test]
fn a_custom_lb_class_selects_its_services_and_not_the_default_class() {
    let lb = LbClass::shared("example.com/lb");
    let mut services = ServiceTable::default();
    for (name, class, ip) in [
        ("mine", "example.com/lb", "10.0.0.1"),
        ("default-class", "herald.dev/lb", "10.0.0.2"),
    ] {
        services.apply(
            &service(name, Some(class), "LoadBalancer", &[ip], None),
            &lb,
        );
    }
    let assigned = services.assigned(&ranges(&[pool("a", &["10.0.0.0/24"])]));
    assert_eq!(assigned.keys().collect::<Vec<_>>(), ["default/mine"]);
}

#[test]
fn a_service_that_stops_being_managed_or_is_deleted_is_forgotten() {
    let lb = LbClass::default();
    let mut services = ServiceTable::default();
    services.apply(
        &service("s", None, "LoadBalancer", &["10.0.0.1"], None),
        &lb,
    );
    services.apply(
        &service("t", None, "LoadBalancer", &["10.0.0.2"], None),
        &lb,
    );
    assert_eq!(services.len(), 2);
    services.apply(&service("s", None, "ClusterIP", &[], None), &lb);
    services.delete(&service("t", None, "LoadBalancer", &[], None));
    assert!(services.is_empty());
}

#[test]
fn a_service_whose_ports_do_not_convert_keeps_its_address_but_is_not_announced() {
    let mut svc = (*service("s", None, "LoadBalancer", &["10.0.0.1"], None)).clone();
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("QUIC".into());
    let mut services = ServiceTable::default();
    services.apply(&svc, &LbClass::default());
    let assigned = services.assigned(&ranges(&[pool("a", &["10.0.0.0/24"])]));
    assert!(assigned.contains_key("default/s"));
    assert!(announce_services(&services, &SliceTable::default(), &assigned).is_empty());
}

fn slice(name: &str, service: &str, endpoints: &[(&str, &str, Option<bool>)]) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints.iter().map(|(addr, node, ready)| {
            let mut e = json!({"addresses": [addr], "nodeName": node});
            if let Some(r) = ready { e["conditions"] = json!({"ready": r}); }
            e
        }).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn endpoint(address: &str, node: &str, ready: bool) -> Endpoint {
    Endpoint {
        address: ip(address),
        node: Some(node.to_owned()),
        ready,
    }
}

#[test]
fn a_services_endpoints_come_from_all_its_slices_and_follow_their_changes() {
    let lb = LbClass::default();
    let mut services = ServiceTable::default();
    for name in ["web", "db"] {
        services.apply(
            &service(name, None, "LoadBalancer", &["10.0.0.1"], None),
            &lb,
        );
    }
    let mut slices = SliceTable::default();
    slices.apply(&slice("web-b", "web", &[("10.244.0.2", "n2", Some(false))]));
    slices.apply(&slice("web-a", "web", &[("10.244.0.1", "n1", None)]));
    slices.apply(&slice("db-a", "db", &[("10.244.1.1", "n1", Some(true))]));
    let key = |n: &str| ("default".to_owned(), n.to_owned());
    // Slices in name order; `ready` unset counts as ready.
    assert_eq!(
        slices.endpoints(&key("web")),
        [
            endpoint("10.244.0.1", "n1", true),
            endpoint("10.244.0.2", "n2", false)
        ]
    );
    // A slice relabelled to another Service moves with it; a deleted one is gone.
    slices.apply(&slice("web-b", "db", &[("10.244.0.2", "n2", Some(true))]));
    slices.delete(&slice("web-a", "web", &[]));
    assert!(slices.endpoints(&key("web")).is_empty());
    assert_eq!(
        slices.endpoints(&key("db")),
        [
            endpoint("10.244.1.1", "n1", true),
            endpoint("10.244.0.2", "n2", true)
        ]
    );
    // Announce's input: Services in key order, each with its endpoints and addresses.
    let assigned = services.assigned(&ranges(&[pool("a", &["10.0.0.0/24"])]));
    let announce = announce_services(&services, &slices, &assigned);
    let keys: Vec<&str> = announce.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["default/db", "default/web"]);
    assert_eq!(announce[0].endpoints.len(), 2);
    assert_eq!(announce[0].addresses, [(ip("10.0.0.1"), "a".to_owned())]);
    assert_eq!(announce[0].traffic_policy, TrafficPolicy::Cluster);
}

#[test]
fn an_event_on_a_service_names_it_by_its_uid_and_version() {
    let mut svc = (*service("web", None, "LoadBalancer", &[], None)).clone();
    svc.metadata.uid = Some("u-1".into());
    svc.metadata.resource_version = Some("42".into());
    let mut services = ServiceTable::default();
    services.apply(&svc, &LbClass::default());
    let r = services.object_ref("default/web").unwrap();
    assert_eq!(
        (r.kind.as_deref(), r.api_version.as_deref()),
        (Some("Service"), Some("v1"))
    );
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref()),
        (Some("default"), Some("web"))
    );
    assert_eq!(
        (r.uid.as_deref(), r.resource_version.as_deref()),
        (Some("u-1"), Some("42"))
    );
    assert!(services.object_ref("default/other").is_none());
}

#[test]
fn each_ingress_address_gets_the_pool_that_holds_it() {
    let pools = [
        pool("a", &["10.0.0.0/24"]),
        pool("b", &["10.0.1.0/24", "2001:db8::/64"]),
        pool("overlap", &["10.0.0.0/16"]),
    ];
    let ranges: Vec<(String, Vec<(IpAddr, IpAddr)>)> = pools
        .iter()
        .map(|p| {
            let plain = herald_ipam::convert::pool(p).unwrap();
            (plain.name, plain.ranges)
        })
        .collect();
    // (case, ingress, allocated-from, expected)
    let table: &[(&str, &[&str], Option<&str>, &[(&str, &str)])] = &[
        (
            "annotation names the pool",
            &["10.0.0.5"],
            Some("a"),
            &[("10.0.0.5", "a")],
        ),
        (
            "annotation picks among overlapping pools",
            &["10.0.0.5"],
            Some("overlap"),
            &[("10.0.0.5", "overlap")],
        ),
        (
            "no annotation: first pool holding it",
            &["10.0.1.5"],
            None,
            &[("10.0.1.5", "b")],
        ),
        (
            "annotation names a pool that does not hold it",
            &["10.0.1.5"],
            Some("a"),
            &[("10.0.1.5", "b")],
        ),
        (
            "dual stack: comma-separated pools",
            &["10.0.0.5", "2001:db8::5"],
            Some("a,b"),
            &[("10.0.0.5", "a"), ("2001:db8::5", "b")],
        ),
        (
            "an address in no pool is not announced",
            &["192.0.2.1"],
            Some("a"),
            &[],
        ),
        (
            "a hostname ingress is ignored",
            &["lb.example.com"],
            None,
            &[],
        ),
        (
            "a repeated address counts once",
            &["10.0.0.5", "10.0.0.5"],
            Some("a"),
            &[("10.0.0.5", "a")],
        ),
        ("no ingress", &[], Some("a"), &[]),
    ];
    for (case, ingress, from, expected) in table {
        let svc = service("s", None, "LoadBalancer", ingress, *from);
        let (_, facts) = ServiceFacts::read(&svc, &LbClass::default()).unwrap();
        let want: Vec<(IpAddr, String)> = expected
            .iter()
            .map(|(a, p)| (ip(a), p.to_string()))
            .collect();
        assert_eq!(granted(&facts, &ranges), want, "{case}");
    }
}

#[test]
fn password_secrets_resolve_or_fail_naming_the_peer_and_the_secret() {
    let secrets = [
        secret(
            "bgp-auth",
            &[("password", b"s3cret"), ("other", b"x"), ("empty", b"")],
        ),
        secret("binary", &[("password", &[0xff, 0xfe])]),
    ];
    // (case, passwordSecret, expected password or problem)
    let table: Vec<(&str, Option<Value>, Result<Option<&str>, PasswordProblem>)> = vec![
        ("no passwordSecret", None, Ok(None)),
        (
            "default key",
            Some(json!({"name": "bgp-auth"})),
            Ok(Some("s3cret")),
        ),
        (
            "named key",
            Some(json!({"name": "bgp-auth", "key": "other"})),
            Ok(Some("x")),
        ),
        (
            "our namespace named explicitly",
            Some(json!({"name": "bgp-auth", "namespace": NS})),
            Ok(Some("s3cret")),
        ),
        (
            "missing Secret",
            Some(json!({"name": "nope"})),
            Err(PasswordProblem::SecretMissing),
        ),
        (
            "missing key",
            Some(json!({"name": "bgp-auth", "key": "pw"})),
            Err(PasswordProblem::KeyMissing("pw".into())),
        ),
        (
            "empty value",
            Some(json!({"name": "bgp-auth", "key": "empty"})),
            Err(PasswordProblem::Unusable("empty".into())),
        ),
        (
            "not UTF-8",
            Some(json!({"name": "binary"})),
            Err(PasswordProblem::Unusable("password".into())),
        ),
        (
            "another namespace",
            Some(json!({"name": "bgp-auth", "namespace": "kube-system"})),
            Err(PasswordProblem::OtherNamespace(NS.into())),
        ),
    ];
    for (case, reference, expected) in table {
        let got = resolve_password(peer("router-a", reference), &secrets, NS);
        match (got, expected) {
            (Ok(p), Ok(want)) => {
                assert_eq!(p.spec.password.as_deref(), want, "{case}");
                assert!(
                    p.spec.password_secret.is_none(),
                    "{case}: reference consumed"
                );
            }
            (Err(e), Err(want)) => {
                assert_eq!(e.reason, want, "{case}");
                assert_eq!(e.peer, "router-a", "{case}");
            }
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_missing_password_secret_leaves_out_only_that_peer_with_an_error_naming_both() {
    let objects = StandaloneConfig {
        bgp_peers: vec![
            peer("router-a", Some(json!({"name": "bgp-auth"}))),
            peer("router-b", None),
        ],
        ..Default::default()
    };
    let t = translate(objects, &[], NS);
    let names: Vec<_> = t
        .objects
        .bgp_peers
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["router-b"]);
    assert_eq!(t.peer_errors.len(), 1);
    assert_eq!(
        t.peer_errors[0].to_string(),
        "BGPPeer \"router-a\": passwordSecret herald-system/bgp-auth: Secret not found"
    );
}

// ---- report ----

const NODE: &str = "n1";

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn desired(routes: &[(&str, &str)]) -> Desired {
    let mut d = Desired::default();
    for (peer, prefix) in routes {
        d.bgp
            .entry(peer.to_string())
            .or_default()
            .insert(net(prefix), RouteAttrs::default());
    }
    d
}

fn session(peer: &str, state: &str) -> BgpStatus {
    BgpStatus {
        peer: peer.to_owned(),
        state: state.to_owned(),
        ..Default::default()
    }
}

fn assigned(addrs: &[&str]) -> Assigned {
    BTreeMap::from([(
        "default/web".to_owned(),
        addrs.iter().map(|a| (ip(a), "a".to_owned())).collect(),
    )])
}

fn announced(bgp_peers: usize, l2: &[&str]) -> Announcement {
    Announcement::Announced {
        bgp_peers,
        l2_interfaces: l2.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn a_services_announcement_reads_from_routes_sessions_and_l2_ownership() {
    let est = "established";
    let local_no_endpoint = announce::Service {
        key: "default/web".into(),
        addresses: vec![(ip("10.0.0.5"), "a".into())],
        ports: vec![],
        traffic_policy: TrafficPolicy::Local,
        endpoints: vec![Endpoint {
            address: ip("10.244.1.5"),
            node: Some("n2".into()),
            ready: true,
        }],
    };
    let l2_candidate = Desired {
        l2: vec![L2Address {
            address: ip("10.0.0.5"),
            interfaces: BTreeSet::from(["eth0".to_owned()]),
            eligible_nodes: BTreeSet::from([NODE.to_owned(), "n2".to_owned()]),
        }],
        ..Default::default()
    };
    let excluded = Desired {
        excluded: Some(Exclusion::NotReady),
        ..Default::default()
    };
    // (case, desired, sessions, l2 owned, services, expected, sentence)
    let table: Vec<(
        &str,
        Desired,
        Vec<BgpStatus>,
        Vec<(IpAddr, String)>,
        Vec<announce::Service>,
        Announcement,
        &str,
    )> = vec![
        (
            "routes to two established peers",
            desired(&[("r1", "10.0.0.5/32"), ("r2", "10.0.0.5/32")]),
            vec![session("r1", est), session("r2", est)],
            vec![],
            vec![],
            announced(2, &[]),
            "announced by node n1 via BGP to 2 peers",
        ),
        (
            "only established sessions count",
            desired(&[("r1", "10.0.0.5/32"), ("r2", "10.0.0.5/32")]),
            vec![session("r1", est), session("r2", "active")],
            vec![],
            vec![],
            announced(1, &[]),
            "announced by node n1 via BGP to 1 peer",
        ),
        (
            "an aggregate covering the address counts",
            desired(&[("r1", "10.0.0.0/24")]),
            vec![session("r1", est)],
            vec![],
            vec![],
            announced(1, &[]),
            "announced by node n1 via BGP to 1 peer",
        ),
        (
            "routes for other addresses do not count",
            desired(&[("r1", "10.0.9.0/32")]),
            vec![session("r1", est)],
            vec![],
            vec![],
            Announcement::NotAnnounced(Reason::NoAdvertisement),
            "not announced by node n1: no advertisement selects this node",
        ),
        (
            "routes wanted but no session up",
            desired(&[("r1", "10.0.0.5/32"), ("r2", "10.0.0.5/32")]),
            vec![session("r1", "connect")],
            vec![],
            vec![],
            Announcement::NotAnnounced(Reason::SessionsDown { peers: 2 }),
            "not announced by node n1: no BGP session established with the 2 peers it would be sent to",
        ),
        (
            "layer-2 owner",
            l2_candidate.clone(),
            vec![],
            vec![(ip("10.0.0.5"), "eth0".into())],
            vec![],
            announced(0, &["eth0"]),
            "announced by node n1 via L2 on eth0",
        ),
        (
            "layer-2 candidate, another node owns",
            l2_candidate,
            vec![],
            vec![],
            vec![],
            Announcement::NotAnnounced(Reason::L2Standby),
            "not announced by node n1: another node answers ARP/NDP for it",
        ),
        (
            "BGP and layer 2 together",
            desired(&[("r1", "10.0.0.5/32")]),
            vec![session("r1", est)],
            vec![(ip("10.0.0.5"), "eth1".into())],
            vec![],
            announced(1, &["eth1"]),
            "announced by node n1 via BGP to 1 peer and via L2 on eth1",
        ),
        (
            "excluded node",
            excluded,
            vec![],
            vec![],
            vec![],
            Announcement::NotAnnounced(Reason::Excluded(Exclusion::NotReady)),
            "not announced by node n1: node excluded (NotReady)",
        ),
        (
            "externalTrafficPolicy Local, endpoint elsewhere",
            Desired::default(),
            vec![],
            vec![],
            vec![local_no_endpoint],
            Announcement::NotAnnounced(Reason::NoLocalEndpoint),
            "not announced by node n1: externalTrafficPolicy Local and no ready endpoint on this node",
        ),
    ];
    for (case, d, sessions, owned, services, want, sentence) in table {
        let got = announcements(
            NODE,
            &assigned(&["10.0.0.5"]),
            &services,
            &d,
            false,
            &BTreeSet::new(),
            &sessions,
            &owned,
        );
        assert_eq!(got.get("default/web"), Some(&want), "{case}");
        assert_eq!(want.describe(NODE), sentence, "{case}");
    }
    // Drained: nothing is announced whatever the routes and sessions say.
    let got = announcements(
        NODE,
        &assigned(&["10.0.0.5"]),
        &[],
        &desired(&[("r1", "10.0.0.5/32")]),
        true,
        &BTreeSet::new(),
        &[session("r1", est)],
        &[],
    );
    let want = Announcement::NotAnnounced(Reason::Drained);
    assert_eq!(got.get("default/web"), Some(&want));
    // An IPv6 address wanted on an IPv4 session without an IPv6 next hop: not sent, said so.
    let v6 = BTreeMap::from([(
        "default/web".to_owned(),
        vec![(ip("2001:db8::5"), "a".to_owned())],
    )]);
    let blocked = BTreeSet::from([("r1".to_owned(), true)]);
    let got = announcements(
        NODE,
        &v6,
        &[],
        &desired(&[("r1", "2001:db8::5/128")]),
        false,
        &blocked,
        &[session("r1", est)],
        &[],
    );
    let stuck = Announcement::NotAnnounced(Reason::NoNextHop {
        family: "IPv6",
        peers: 1,
    });
    assert_eq!(got.get("default/web"), Some(&stuck));
    assert!(stuck.describe(NODE).starts_with(
        "not announced by node n1: no IPv6 next hop on the sessions to the 1 peer it would be sent to"
    ));
    let notice = event_for(NODE, None, Some(&stuck)).expect("an Event");
    assert_eq!((notice.reason, notice.warning), ("NotSent", true));
    // The same address over a session that has the next hop is announced.
    let got = announcements(
        NODE,
        &v6,
        &[],
        &desired(&[("r1", "2001:db8::5/128")]),
        false,
        &BTreeSet::new(),
        &[session("r1", est)],
        &[],
    );
    assert!(got["default/web"].is_announced());
    assert_eq!(
        want.describe(NODE),
        "not announced by node n1: the node is drained"
    );
}

#[test]
fn services_without_an_address_are_not_reported() {
    let got = announcements(
        NODE,
        &assigned(&[]),
        &[],
        &Desired::default(),
        false,
        &BTreeSet::new(),
        &[],
        &[],
    );
    assert!(got.is_empty());
}

#[test]
fn events_are_published_on_announcement_changes_only() {
    let bgp2 = announced(2, &[]);
    let bgp3 = announced(3, &[]);
    let down = Announcement::NotAnnounced(Reason::SessionsDown { peers: 2 });
    let none = Announcement::NotAnnounced(Reason::NoAdvertisement);
    let standby = Announcement::NotAnnounced(Reason::L2Standby);
    // (case, before, after, expected (reason, warning))
    let table: Vec<(
        &str,
        Option<&Announcement>,
        Option<&Announcement>,
        Option<(&str, bool)>,
    )> = vec![
        (
            "first announced",
            None,
            Some(&bgp2),
            Some(("Announced", false)),
        ),
        (
            "from not announced",
            Some(&none),
            Some(&bgp2),
            Some(("Announced", false)),
        ),
        ("unchanged", Some(&bgp2), Some(&bgp2), None),
        (
            "more peers",
            Some(&bgp2),
            Some(&bgp3),
            Some(("Announced", false)),
        ),
        (
            "sessions lost",
            Some(&bgp2),
            Some(&down),
            Some(("Withdrawn", true)),
        ),
        (
            "advertisement removed",
            Some(&bgp2),
            Some(&none),
            Some(("Withdrawn", false)),
        ),
        (
            "address gone",
            Some(&bgp2),
            None,
            Some(("Withdrawn", false)),
        ),
        (
            "never announced, reason changes",
            Some(&none),
            Some(&standby),
            None,
        ),
        ("never announced, first seen", None, Some(&none), None),
        ("never announced, gone", Some(&none), None, None),
    ];
    for (case, before, after, want) in table {
        let got = event_for(NODE, before, after);
        assert_eq!(got.as_ref().map(|n| (n.reason, n.warning)), want, "{case}");
        if let (Some(n), Some(a)) = (&got, after) {
            assert_eq!(n.note, a.describe(NODE), "{case}");
        }
    }
}

#[test]
fn changes_name_each_service_whose_announcement_changed() {
    let before = BTreeMap::from([
        ("default/a".to_owned(), announced(1, &[])),
        ("default/b".to_owned(), announced(1, &[])),
        ("default/gone".to_owned(), announced(1, &[])),
    ]);
    let after = BTreeMap::from([
        ("default/a".to_owned(), announced(1, &[])),
        ("default/b".to_owned(), announced(2, &[])),
        ("default/new".to_owned(), announced(0, &["eth0"])),
    ]);
    let got: Vec<(String, &str)> = changes(NODE, &before, &after)
        .into_iter()
        .map(|(k, n)| (k, n.reason))
        .collect();
    assert_eq!(
        got,
        [
            ("default/b".to_owned(), "Announced"),
            ("default/gone".to_owned(), "Withdrawn"),
            ("default/new".to_owned(), "Announced"),
        ]
    );
}

#[test]
fn the_status_table_shows_announcements_and_peers_left_out() {
    use crate::status::{AnnouncementStatus, StatusReport};
    let mut report = StatusReport::default();
    report.config.left_out =
        vec!["BGPPeer \"tor\": passwordSecret herald-system/bgp-auth: Secret not found".into()];
    report.announcements = vec![AnnouncementStatus {
        service: "default/web".into(),
        announcement: "announced by node n1 via BGP to 2 peers".into(),
    }];
    let text = report.render();
    assert!(
        text.contains("left out: BGPPeer \"tor\": passwordSecret herald-system/bgp-auth"),
        "{text}"
    );
    assert!(text.contains("ANNOUNCEMENTS"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("default/web")
                && l.contains("announced by node n1 via BGP to 2 peers")),
        "{text}"
    );
    // Standalone reports have neither: no empty table.
    assert!(!StatusReport::default().render().contains("ANNOUNCEMENTS"));
}

#[test]
fn gossip_seeds_are_the_other_nodes_internal_ips_of_the_bind_family_at_the_bind_port() {
    use k8s_openapi::api::core::v1::Node;
    let node = |name: &str, addrs: &[(&str, &str)]| -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"addresses": addrs.iter().map(|(t, a)| json!({"type": t, "address": a})).collect::<Vec<_>>()},
        }))
        .unwrap()
    };
    let nodes = [
        node("n1", &[("InternalIP", "10.1.0.1")]),
        node(
            "n3",
            &[
                ("InternalIP", "10.1.0.3"),
                ("InternalIP", "fd00::3"),
                ("ExternalIP", "203.0.113.3"),
            ],
        ),
        node("n2", &[("InternalIP", "10.1.0.2"), ("Hostname", "n2")]),
        node("n4", &[]),
        node("n5", &[("InternalIP", "10.1.0.2")]),
    ];
    // (bind, expected)
    let table: &[(&str, &[&str])] = &[
        ("10.1.0.1:7946", &["10.1.0.2:7946", "10.1.0.3:7946"]),
        ("10.1.0.1:8000", &["10.1.0.2:8000", "10.1.0.3:8000"]),
        ("[fd00::1]:7946", &["[fd00::3]:7946"]),
    ];
    for (bind, want) in table {
        let got = super::translate::gossip_seeds(&nodes, "n1", bind.parse().unwrap());
        let want: Vec<std::net::SocketAddr> = want.iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(got, want, "{bind}");
    }
}
