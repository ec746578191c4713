//! Fixture objects, written as the API server would return them.

#![allow(dead_code)]

use herald_api::{BGPAdvertisement, BGPPeer, HeraldNode, IPPool};
use herald_cli::inputs::{Inputs, Listed};
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture parses")
}

/// A condition as the controller writes one.
pub fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

/// A LoadBalancer Service with `ips` in its ingress, allocated from `pool`.
pub fn service(namespace: &str, name: &str, ips: &[&str], pool: Option<&str>) -> Service {
    let mut annotations = json!({});
    if let Some(pool) = pool {
        annotations["herald.dev/allocated-from"] = json!(pool);
    }
    let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    from(json!({
        "metadata": {"namespace": namespace, "name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": ingress}},
    }))
}

/// `service` with the `herald.dev/Announced` condition.
pub fn with_announced(mut s: Service, status: &str, reason: &str, message: &str) -> Service {
    let c = from(condition("herald.dev/Announced", status, reason, message));
    s.status.as_mut().unwrap().conditions = Some(vec![c]);
    s
}

/// A Service of another type.
pub fn cluster_ip(namespace: &str, name: &str) -> Service {
    from(json!({"metadata": {"namespace": namespace, "name": name}, "spec": {"type": "ClusterIP"}}))
}

/// A `HeraldNode` with this status (camelCase, as the speaker writes it).
pub fn node(name: &str, status: Value) -> HeraldNode {
    from(
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "HeraldNode",
                "metadata": {"name": name}, "spec": {}, "status": status}),
    )
}

/// A BGP announcement entry of a `HeraldNode`.
pub fn bgp(peers: &[&str], addresses: &[&str]) -> Value {
    json!({"via": "BGP", "peers": peers, "addresses": addresses})
}

/// A layer-2 announcement entry of a `HeraldNode`.
pub fn l2(interfaces: &[&str], addresses: &[&str]) -> Value {
    json!({"via": "L2", "interfaces": interfaces, "addresses": addresses})
}

/// A BGP session entry of a `HeraldNode`.
pub fn session(peer: &str, address: &str, state: &str, last_error: Option<&str>) -> Value {
    let mut s = json!({"peer": peer, "address": address, "state": state});
    if let Some(e) = last_error {
        s["lastError"] = json!(e);
    }
    s
}

/// An `IPPool` of `addresses` with this status (`None`: not yet written).
pub fn pool(name: &str, addresses: &[&str], status: Option<Value>) -> IPPool {
    let mut p = json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPPool",
                       "metadata": {"name": name}, "spec": {"addresses": addresses}});
    if let Some(s) = status {
        p["status"] = s;
    }
    from(p)
}

/// An `IPPool` status with these counts and a `Ready` condition.
pub fn pool_status(v4: (u64, u64), v6: (u64, &str), ready: (&str, &str, &str)) -> Value {
    json!({"assignedIPv4": v4.0, "availableIPv4": v4.1,
           "assignedIPv6": v6.0, "availableIPv6": v6.1,
           "conditions": [condition("Ready", ready.0, ready.1, ready.2),
                          condition("Conflicting", "False", "NoConflicts", "")]})
}

/// A `BGPPeer` with a `Valid` condition and these node sessions (`[{node, state}]`).
pub fn peer(name: &str, address: &str, valid: (&str, &str, &str), sessions: Value) -> BGPPeer {
    from(
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
                "metadata": {"name": name},
                "spec": {"peerAddress": address, "peerASN": 64512, "myASN": 64513},
                "status": {"conditions": [condition("Valid", valid.0, valid.1, valid.2)],
                           "sessions": sessions}}),
    )
}

/// A `BGPAdvertisement` with a `Valid` condition.
pub fn bgp_advertisement(name: &str, valid: (&str, &str, &str)) -> BGPAdvertisement {
    from(
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
                "metadata": {"name": name}, "spec": {},
                "status": {"conditions": [condition("Valid", valid.0, valid.1, valid.2)]}}),
    )
}

/// A cluster with a bit of everything: healthy and unannounced Services, a Service with no
/// address, a session down, an excluded node, an exhausted and an invalid pool, an invalid
/// peer and advertisement.
pub fn cluster() -> Inputs {
    Inputs {
        services: Listed::Items(vec![
            service("shop", "checkout", &["192.0.2.12"], Some("public")),
            service("default", "web", &["192.0.2.10"], Some("public")),
            service(
                "default",
                "dual",
                &["192.0.2.11", "2001:db8::11"],
                Some("public"),
            ),
            service("shop", "pending", &[], None),
            cluster_ip("default", "kubernetes"),
            service("lab", "full", &["198.51.100.1"], Some("small")),
        ]),
        nodes: Listed::Items(vec![
            node(
                "n2",
                json!({
                    "sessions": "1/2", "announcedCount": 2,
                    "bgp": [session("tor1", "10.0.0.1", "established", None),
                            session("tor2", "10.0.0.2", "active", Some("connect: connection refused"))],
                    "announcements": [bgp(&["tor1"], &["192.0.2.10", "192.0.2.11"])],
                }),
            ),
            node(
                "n1",
                json!({
                    "sessions": "2/2", "announcedCount": 3,
                    "bgp": [session("tor1", "10.0.0.1", "established", None),
                            session("tor2", "10.0.0.2", "established", None)],
                    "announcements": [bgp(&["tor1", "tor2"], &["192.0.2.10", "192.0.2.11", "2001:db8::11"])],
                }),
            ),
            node(
                "n3",
                json!({
                    "sessions": "0/0", "announcedCount": 2,
                    "announcements": [l2(&["eth0"], &["192.0.2.10", "198.51.100.1"])],
                }),
            ),
            node(
                "n4",
                json!({"sessions": "0/2", "announcedCount": 0, "excluded": "draining"}),
            ),
        ]),
        pools: Listed::Items(vec![
            pool(
                "public",
                &["192.0.2.0/24", "2001:db8::/64"],
                Some(pool_status(
                    (3, 251),
                    (1, "18446744073709551615"),
                    ("True", "Valid", "the pool hands out addresses"),
                )),
            ),
            pool(
                "small",
                &["198.51.100.1/32"],
                Some(pool_status(
                    (1, 0),
                    (0, "0"),
                    ("True", "Valid", "the pool hands out addresses"),
                )),
            ),
            pool(
                "lab",
                &["192.0.2.0/28"],
                Some(pool_status(
                    (0, 0),
                    (0, "0"),
                    (
                        "False",
                        "Overlapping",
                        "overlaps IPPool public: 192.0.2.0/28",
                    ),
                )),
            ),
            pool("new", &["203.0.113.0/24"], None),
        ]),
        peers: Listed::Items(vec![
            peer("tor1", "10.0.0.1", ("True", "Valid", ""), json!([])),
            peer(
                "tor2",
                "10.0.0.2",
                ("True", "Valid", ""),
                json!([
                {"node": "n2", "state": "active"}, {"node": "n5", "state": "connect"}]),
            ),
            peer(
                "tor3",
                "10.0.0.3",
                (
                    "False",
                    "MissingReference",
                    "bfdProfile fast: no BFDProfile fast",
                ),
                json!([]),
            ),
        ]),
        bgp_advertisements: Listed::Items(vec![
            bgp_advertisement("public", ("True", "Valid", "")),
            bgp_advertisement(
                "old",
                ("False", "MissingReference", "ipPools: no IPPool legacy"),
            ),
        ]),
        ..Inputs::default()
    }
}
