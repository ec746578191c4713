//! API objects to allocator inputs: every field mapped, every bad field named.

use std::collections::BTreeMap;
use std::net::IpAddr;

use herald_api::IPPool;
use herald_ipam::convert::{self, ConvertError, DEFAULT_LB_CLASS, LbClass};
use herald_ipam::{Family, FamilyPolicy, Operator, Protocol, TrafficPolicy};
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn k8s_service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn ip_pool(v: serde_json::Value) -> IPPool {
    serde_json::from_value(v).unwrap()
}

#[test]
fn pool_maps_ranges_flags_and_allocate_to() {
    let p = ip_pool(json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPPool", "metadata": {"name": "web"},
        "spec": {
            "addresses": ["192.0.2.0/30", "2001:db8::1-2001:db8::2"],
            "autoAssign": false, "avoidBuggyIPs": true,
            "allocateTo": {
                "priority": 5, "namespaces": ["shop"],
                "serviceSelectors": [{"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}]
            }
        }
    }));
    let pool = convert::pool(&p).unwrap();
    assert_eq!(pool.name, "web");
    assert_eq!(
        pool.ranges,
        vec![
            (ip("192.0.2.0"), ip("192.0.2.3")),
            (ip("2001:db8::1"), ip("2001:db8::2"))
        ]
    );
    assert!(!pool.auto_assign && pool.avoid_buggy_ips && !pool.disabled);
    assert_eq!(pool.allocate_to.priority, Some(5));
    assert_eq!(pool.allocate_to.namespaces, vec!["shop".to_owned()]);
    let req = &pool.allocate_to.service_selectors[0].match_expressions[0];
    assert_eq!(
        (req.key.as_str(), req.operator, &req.values[..]),
        ("tier", Operator::NotIn, &["db".to_owned()][..])
    );
}

#[test]
fn pool_with_unknown_selector_operator_names_pool_and_field() {
    let p = ip_pool(json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPPool", "metadata": {"name": "web"},
        "spec": {"addresses": ["192.0.2.0/30"], "allocateTo": {"namespaceSelectors": [
            {"matchExpressions": [{"key": "a", "operator": "Near"}]}]}}
    }));
    let err = convert::pool(&p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "IPPool \"web\": spec.allocateTo.namespaceSelectors[0].matchExpressions[0].operator: \
         unknown operator \"Near\" (In, NotIn, Exists, DoesNotExist)"
    );
}

#[test]
fn pool_with_bad_address_names_the_entry() {
    let p = ip_pool(json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPPool", "metadata": {"name": "web"},
        "spec": {"addresses": ["192.0.2.1/24"]}
    }));
    match convert::pool(&p).unwrap_err() {
        ConvertError::Pool { pool, error } => {
            assert_eq!(pool, "web");
            assert_eq!(error.field, "spec.addresses[0]");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn service_maps_ports_policies_requests_and_status() {
    let svc = k8s_service(json!({
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
            "annotations": {"herald.dev/pool": "blue", "herald.dev/sharing-key": "k1",
                            "herald.dev/load-balancer-ips": "192.0.2.7,2001:db8::7"}},
        "spec": {"type": "LoadBalancer", "selector": {"tier": "fe", "app": "web"},
            "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
            "externalTrafficPolicy": "Local", "ipFamilies": ["IPv6", "IPv4"],
            "ipFamilyPolicy": "RequireDualStack"},
        "status": {"loadBalancer": {"ingress": [{"ip": "2001:db8::7"}, {"hostname": "x"}]}}
    }));
    let ns_labels = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
    let s = convert::service(&svc, &ns_labels).unwrap();
    assert_eq!((s.key.namespace(), s.key.name()), ("shop", "web"));
    assert_eq!(s.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(s.namespace_labels, ns_labels);
    assert_eq!(s.requested_pools, vec!["blue".to_owned()]);
    assert_eq!(s.requested_ips, vec![ip("192.0.2.7"), ip("2001:db8::7")]);
    assert_eq!(s.sharing_key.as_deref(), Some("k1"));
    assert_eq!(s.ports, vec![(Protocol::Tcp, 80), (Protocol::Udp, 53)]);
    assert_eq!(s.traffic_policy, TrafficPolicy::Local);
    assert_eq!(s.backend_key, "app=web,tier=fe");
    assert_eq!(s.ip_families, vec![Family::V6, Family::V4]);
    assert_eq!(s.family_policy, FamilyPolicy::RequireDualStack);
    assert_eq!(s.current, vec![ip("2001:db8::7")]);
}

#[test]
fn service_without_families_takes_the_requested_address_family() {
    let svc = k8s_service(json!({
        "metadata": {"name": "a", "namespace": "n"},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": "2001:db8::9"}
    }));
    let s = convert::service(&svc, &BTreeMap::new()).unwrap();
    assert_eq!(s.ip_families, vec![Family::V6]);
    let plain = k8s_service(json!({"metadata": {"name": "b"}, "spec": {"type": "LoadBalancer"}}));
    let s = convert::service(&plain, &BTreeMap::new()).unwrap();
    assert_eq!(s.key.namespace(), "default");
    assert_eq!(s.ip_families, vec![Family::V4]);
}

#[test]
fn service_errors_name_the_service_and_field() {
    let cases = [
        (
            json!({"ports": [{"port": 80}, {"port": 1, "protocol": "ICMP"}]}),
            "spec.ports[1].protocol",
        ),
        (json!({"ports": [{"port": 70000}]}), "spec.ports[0].port"),
        (
            json!({"externalTrafficPolicy": "Nearest"}),
            "spec.externalTrafficPolicy",
        ),
        (json!({"ipFamilies": ["IPv5"]}), "spec.ipFamilies[0]"),
        (json!({"ipFamilyPolicy": "Both"}), "spec.ipFamilyPolicy"),
        (
            json!({"loadBalancerIP": "not-an-ip"}),
            "spec.loadBalancerIP",
        ),
    ];
    for (spec, field) in cases {
        let mut spec = spec;
        spec["type"] = json!("LoadBalancer");
        let svc =
            k8s_service(json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": spec}));
        match convert::service(&svc, &BTreeMap::new()) {
            Err(ConvertError::Service { service, error }) => {
                assert_eq!(service, "shop/web");
                assert_eq!(error.field, field, "{error}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn only_load_balancer_services_of_our_class_are_managed() {
    let with =
        |spec: serde_json::Value| k8s_service(json!({"metadata": {"name": "a"}, "spec": spec}));
    let shared = LbClass::default();
    let exclusive = LbClass::exclusive(DEFAULT_LB_CLASS);
    // (spec, managed with the default shared class, managed with it exclusive)
    let table = [
        (json!({"type": "LoadBalancer"}), true, false),
        (
            json!({"type": "LoadBalancer", "loadBalancerClass": "herald.dev/lb"}),
            true,
            true,
        ),
        (
            json!({"type": "LoadBalancer", "loadBalancerClass": "other.io/lb"}),
            false,
            false,
        ),
        (json!({"type": "ClusterIP"}), false, false),
        (
            json!({"type": "ClusterIP", "loadBalancerClass": "herald.dev/lb"}),
            false,
            false,
        ),
    ];
    for (spec, in_shared, in_exclusive) in table {
        let svc = with(spec.clone());
        assert_eq!(convert::is_managed(&svc, &shared), in_shared, "{spec}");
        assert_eq!(
            convert::is_managed(&svc, &exclusive),
            in_exclusive,
            "{spec}"
        );
    }
    for lb in [&shared, &exclusive] {
        assert!(!convert::is_managed(
            &k8s_service(json!({"metadata": {"name": "a"}})),
            lb
        ));
    }
}
