//! Table tests: one per rule in the module docs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use herald_ipam::{Protocol, Selector, TrafficPolicy};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ready: true,
        network_unavailable: false,
        addresses: vec![ip(&format!("10.0.0.{}", name.len())), ip("fd00::1")],
    }
}

fn svc(key: &str, addrs: &[(&str, &str)]) -> Service {
    Service {
        key: key.into(),
        addresses: addrs.iter().map(|(a, p)| (ip(a), p.to_string())).collect(),
        ports: vec![(Protocol::Tcp, 80)],
        traffic_policy: TrafficPolicy::Cluster,
        endpoints: vec![],
    }
}

fn ep(addr: &str, node: &str, ready: bool) -> Endpoint {
    Endpoint {
        address: ip(addr),
        node: Some(node.into()),
        ready,
    }
}

fn peer(name: &str) -> Peer {
    Peer {
        name: name.into(),
        node_selectors: vec![],
    }
}

fn bgp_adv(name: &str) -> BgpAdvertisement {
    BgpAdvertisement {
        name: name.into(),
        ..Default::default()
    }
}

fn iface(name: &str, up: bool) -> Interface {
    Interface {
        name: name.into(),
        up,
        loopback: name == "lo",
    }
}

struct World {
    config: Config,
    services: Vec<Service>,
    nodes: Vec<Node>,
    interfaces: Vec<Interface>,
}

impl World {
    fn new() -> Self {
        World {
            config: Config {
                pools: vec![
                    Pool {
                        name: "blue".into(),
                        labels: BTreeMap::from([("tier".into(), "web".into())]),
                    },
                    Pool {
                        name: "red".into(),
                        labels: BTreeMap::new(),
                    },
                ],
                peers: vec![peer("tor1"), peer("tor2")],
                ..Default::default()
            },
            services: vec![svc("ns/a", &[("192.0.2.10", "blue")])],
            nodes: vec![node("n1", &[("rack", "1")]), node("n2", &[("rack", "2")])],
            interfaces: vec![iface("lo", true), iface("eth0", true), iface("eth1", false)],
        }
    }

    fn compute(&self, me: &str) -> Desired {
        compute(Inputs {
            config: &self.config,
            services: &self.services,
            nodes: &self.nodes,
            node_name: me,
            interfaces: &self.interfaces,
            backend_mode: Some(BackendMode::EndpointHosts),
        })
    }
}

fn routes(d: &Desired, peer: &str) -> Vec<IpNet> {
    d.bgp
        .get(peer)
        .map(|r| r.keys().copied().collect())
        .unwrap_or_default()
}

#[test]
fn advertisement_without_scope_announces_every_pool_to_every_peer() {
    let mut w = World::new();
    w.config.bgp_advertisements = vec![bgp_adv("all")];
    let d = w.compute("n1");
    assert_eq!(routes(&d, "tor1"), vec![net("192.0.2.10/32")]);
    assert_eq!(routes(&d, "tor2"), vec![net("192.0.2.10/32")]);
    assert_eq!(d.excluded, None);
}

#[test]
fn advertisement_selects_pools_by_name_or_label() {
    let mut w = World::new();
    w.services.push(svc("ns/b", &[("198.51.100.1", "red")]));
    let cases: [(Vec<&str>, Vec<Selector>, Vec<&str>); 4] = [
        (vec!["red"], vec![], vec!["198.51.100.1/32"]),
        (
            vec![],
            vec![Selector::labels([("tier", "web")])],
            vec!["192.0.2.10/32"],
        ),
        (
            vec!["red"],
            vec![Selector::labels([("tier", "web")])],
            vec!["192.0.2.10/32", "198.51.100.1/32"],
        ),
        (vec!["green"], vec![], vec![]),
    ];
    for (pools, selectors, want) in cases {
        let mut adv = bgp_adv("x");
        adv.scope.ip_pools = pools.iter().map(|p| p.to_string()).collect();
        adv.scope.ip_pool_selectors = selectors;
        w.config.bgp_advertisements = vec![adv];
        let want: Vec<IpNet> = want.iter().map(|n| net(n)).collect();
        assert_eq!(routes(&w.compute("n1"), "tor1"), want, "pools {pools:?}");
    }
}

#[test]
fn node_and_peer_selectors_limit_who_announces_to_whom() {
    let mut w = World::new();
    let mut adv = bgp_adv("rack1-only");
    adv.scope.node_selectors = vec![Selector::labels([("rack", "1")])];
    adv.peers = vec!["tor1".into(), "tor2".into()];
    w.config.bgp_advertisements = vec![adv];
    w.config.peers[1].node_selectors = vec![Selector::labels([("rack", "2")])];
    let d1 = w.compute("n1");
    assert_eq!(routes(&d1, "tor1"), vec![net("192.0.2.10/32")]);
    assert!(
        routes(&d1, "tor2").is_empty(),
        "tor2 peers only with rack 2"
    );
    assert!(
        w.compute("n2").bgp.is_empty(),
        "n2 is outside the advertisement's nodes"
    );
}

#[test]
fn named_peers_only_get_routes() {
    let mut w = World::new();
    let mut adv = bgp_adv("one");
    adv.peers = vec!["tor2".into()];
    w.config.bgp_advertisements = vec![adv];
    let d = w.compute("n1");
    assert!(routes(&d, "tor1").is_empty());
    assert_eq!(routes(&d, "tor2"), vec![net("192.0.2.10/32")]);
}

#[test]
fn aggregation_length_gives_the_covering_prefix_per_family() {
    let mut w = World::new();
    w.services = vec![svc(
        "ns/a",
        &[("192.0.2.10", "blue"), ("2001:db8::5:1", "blue")],
    )];
    let mut adv = bgp_adv("agg");
    adv.aggregation_length = Some(24);
    adv.aggregation_length_v6 = Some(64);
    w.config.bgp_advertisements = vec![adv];
    assert_eq!(
        routes(&w.compute("n1"), "tor1"),
        vec![net("192.0.2.0/24"), net("2001:db8::/64")]
    );
}

#[test]
fn local_policy_announces_only_with_a_ready_local_endpoint_and_never_aggregated() {
    let mut w = World::new();
    let mut adv = bgp_adv("agg");
    adv.aggregation_length = Some(24);
    w.config.bgp_advertisements = vec![adv];
    w.config.l2_advertisements = vec![L2Advertisement::default()];
    w.services[0].traffic_policy = TrafficPolicy::Local;
    w.services[0].endpoints = vec![ep("10.1.0.1", "n1", true), ep("10.1.0.2", "n2", false)];
    let d1 = w.compute("n1");
    assert_eq!(routes(&d1, "tor1"), vec![net("192.0.2.10/32")]);
    assert_eq!(d1.l2[0].eligible_nodes, BTreeSet::from(["n1".to_owned()]));
    let d2 = w.compute("n2");
    assert!(d2.bgp.is_empty(), "n2's only endpoint is not ready");
    assert!(d2.l2.is_empty());
}

#[test]
fn excluded_nodes_announce_nothing_but_keep_dataplane() {
    let mut w = World::new();
    w.config.bgp_advertisements = vec![bgp_adv("all")];
    w.config.l2_advertisements = vec![L2Advertisement::default()];
    w.services[0].endpoints = vec![ep("10.1.0.1", "n2", true)];
    type Case = (&'static str, fn(&mut Node), Option<Exclusion>);
    let cases: [Case; 4] = [
        ("not ready", |n| n.ready = false, Some(Exclusion::NotReady)),
        (
            "network unavailable",
            |n| n.network_unavailable = true,
            Some(Exclusion::NetworkUnavailable),
        ),
        (
            "labelled",
            |n| {
                n.labels.insert(EXCLUDE_LABEL.into(), String::new());
            },
            Some(Exclusion::Labelled),
        ),
        ("healthy", |_| {}, None),
    ];
    for (what, edit, want) in cases {
        let mut w2 = World {
            nodes: w.nodes.clone(),
            ..World::new()
        };
        w2.config = w.config.clone();
        w2.services = w.services.clone();
        edit(&mut w2.nodes[0]);
        let d = w2.compute("n1");
        assert_eq!(d.excluded, want, "{what}");
        assert_eq!(d.bgp.is_empty(), want.is_some(), "{what}");
        assert_eq!(d.l2.is_empty(), want.is_some(), "{what}");
        assert_eq!(d.dataplane.len(), 1, "{what}: dataplane kept");
        // n2 sees n1 as ineligible for layer 2 exactly when n1 is excluded.
        let d2 = w2.compute("n2");
        assert_eq!(
            d2.l2[0].eligible_nodes.contains("n1"),
            want.is_none(),
            "{what}"
        );
    }
    assert_eq!(w.compute("n9").excluded, Some(Exclusion::UnknownNode));
}

#[test]
fn communities_unite_and_highest_local_pref_wins_whatever_the_order() {
    let mut w = World::new();
    let mut a = bgp_adv("a");
    a.communities = vec![65000 << 16 | 2, 65000 << 16 | 1];
    a.large_communities = vec![[1, 2, 3]];
    a.local_pref = Some(100);
    let mut b = bgp_adv("b");
    b.communities = vec![65000 << 16 | 1, 65000 << 16 | 3];
    b.local_pref = Some(200);
    for order in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
        w.config.bgp_advertisements = order;
        let d = w.compute("n1");
        let attrs = &d.bgp["tor1"][&net("192.0.2.10/32")];
        assert_eq!(
            attrs.communities,
            vec![65000 << 16 | 1, 65000 << 16 | 2, 65000 << 16 | 3]
        );
        assert_eq!(attrs.large_communities, vec![[1, 2, 3]]);
        assert_eq!(attrs.local_pref, Some(200));
    }
}

#[test]
fn layer2_offers_named_up_interfaces_or_all_up_non_loopback() {
    let mut w = World::new();
    w.interfaces.push(iface("eth2", true));
    w.interfaces.push(iface("veth9a8b", true));
    w.interfaces.push(iface("cni0", true));
    let cases: [(Vec<&str>, Vec<&str>); 6] = [
        // Pod veths and CNI bridges are left out by default.
        (vec![], vec!["eth0", "eth2"]),
        (vec!["eth1", "eth2"], vec!["eth2"]),
        (vec!["eth1"], vec![]),
        (vec!["eth*"], vec!["eth0", "eth2"]),
        // Named explicitly, they are offered.
        (vec!["veth*", "cni0"], vec!["cni0", "veth9a8b"]),
        (vec!["*"], vec!["cni0", "eth0", "eth2", "veth9a8b"]),
    ];
    for (named, want) in cases {
        w.config.l2_advertisements = vec![L2Advertisement {
            interfaces: named.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }];
        let d = w.compute("n1");
        let got: Vec<String> =
            d.l2.iter()
                .flat_map(|a| a.interfaces.iter().cloned())
                .collect();
        assert_eq!(got, want, "interfaces {named:?}");
        if !want.is_empty() {
            assert_eq!(
                d.l2[0].eligible_nodes,
                BTreeSet::from(["n1".to_owned(), "n2".to_owned()])
            );
        }
    }
}

#[test]
fn layer2_scope_limits_pools_and_eligible_nodes() {
    let mut w = World::new();
    w.config.l2_advertisements = vec![L2Advertisement {
        scope: Scope {
            ip_pools: vec!["blue".into()],
            node_selectors: vec![Selector::labels([("rack", "2")])],
            ..Default::default()
        },
        ..Default::default()
    }];
    w.services.push(svc("ns/b", &[("198.51.100.1", "red")]));
    assert!(w.compute("n1").l2.is_empty(), "n1 is not in rack 2");
    let d = w.compute("n2");
    assert_eq!(d.l2.len(), 1, "only the blue address");
    assert_eq!(d.l2[0].address, ip("192.0.2.10"));
    assert_eq!(d.l2[0].eligible_nodes, BTreeSet::from(["n2".to_owned()]));
}

#[test]
fn a_shared_address_is_one_layer2_candidacy() {
    let mut w = World::new();
    w.services.push(Service {
        ports: vec![(Protocol::Udp, 53)],
        ..svc("ns/b", &[("192.0.2.10", "blue")])
    });
    w.config.l2_advertisements = vec![L2Advertisement::default()];
    let d = w.compute("n1");
    assert_eq!(d.l2.len(), 1);
    assert_eq!(d.dataplane.len(), 2, "one VIP per port and protocol");
}

#[test]
fn dataplane_backends_are_ready_endpoint_hosts_of_the_family() {
    let mut w = World::new();
    w.services = vec![Service {
        ports: vec![(Protocol::Tcp, 80), (Protocol::Udp, 53)],
        endpoints: vec![
            ep("10.1.0.2", "n1", true),
            ep("10.1.0.1", "n2", true),
            ep("10.1.0.3", "n2", false),
            ep("fd01::1", "n2", true),
        ],
        ..svc("ns/a", &[("192.0.2.10", "blue")])
    }];
    let d = w.compute("n1");
    assert_eq!(d.dataplane.len(), 2);
    for vip in &d.dataplane {
        assert_eq!(vip.backends, vec![(ip("10.1.0.1"), 1), (ip("10.1.0.2"), 1)]);
    }
    // Sorted by address, then port.
    assert_eq!(
        (d.dataplane[0].protocol, d.dataplane[0].port),
        (Protocol::Udp, 53)
    );
}

#[test]
fn cluster_backends_are_nodes_weighted_by_ready_endpoints() {
    let mut w = World::new();
    w.services[0].endpoints = vec![
        ep("10.1.0.1", "n1", true),
        ep("10.1.0.2", "n2", true),
        ep("10.1.0.3", "n2", true),
        ep("10.1.0.4", "n2", false),
        ep("10.1.0.5", "gone", true),
    ];
    let d = compute(Inputs {
        config: &w.config,
        services: &w.services,
        nodes: &w.nodes,
        node_name: "n1",
        interfaces: &w.interfaces,
        backend_mode: Some(BackendMode::Nodes),
    });
    // node() gives nN the address 10.0.0.<len of name> = 10.0.0.2 for both: one backend.
    assert_eq!(d.dataplane[0].backends, vec![(ip("10.0.0.2"), 3)]);
}

#[test]
fn layer2_policies_carry_scope_and_local_endpoints_for_every_node_alike() {
    let mut w = World::new();
    w.config.l2_advertisements = vec![L2Advertisement {
        scope: Scope {
            ip_pools: vec!["blue".into()],
            node_selectors: vec![Selector::labels([("rack", "2")])],
            ..Default::default()
        },
        interfaces: vec!["eth0".into()],
        ..Default::default()
    }];
    w.services[0].traffic_policy = TrafficPolicy::Local;
    w.services[0].endpoints = vec![ep("10.1.0.1", "n1", true), ep("10.1.0.2", "n2", false)];
    w.services.push(svc("ns/b", &[("198.51.100.1", "red")]));
    let p = l2_policies(&w.config, &w.services);
    assert_eq!(
        p,
        vec![L2Policy {
            address: ip("192.0.2.10"),
            interfaces: vec!["eth0".into()],
            node_selectors: vec![Selector::labels([("rack", "2")])],
            local_endpoint_nodes: Some(BTreeSet::from(["n1".to_owned()])),
        }],
        "red is not covered; only n1 has a ready endpoint"
    );
}

#[test]
fn same_inputs_same_output() {
    let mut w = World::new();
    w.config.bgp_advertisements = vec![bgp_adv("all")];
    w.config.l2_advertisements = vec![L2Advertisement::default()];
    assert_eq!(w.compute("n1"), w.compute("n1"));
}

mod from_api_tests {
    use serde_json::json;

    use super::super::from_api;
    use super::*;

    #[test]
    fn advertisements_parse_communities_and_selectors() {
        let adv: herald_api::BGPAdvertisement = serde_json::from_value(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement", "metadata": {"name": "a"},
            "spec": {"communities": ["65000:1", "no-export"], "largeCommunities": ["1:2:3"],
                     "nodeSelectors": [{"matchLabels": {"rack": "1"}}], "localPref": 50}
        }))
        .unwrap();
        let c = from_api::config(&[], &[], &[adv], &[]).unwrap();
        let a = &c.bgp_advertisements[0];
        assert_eq!(a.communities, vec![65000 << 16 | 1, 0xFFFF_FF01]);
        assert_eq!(a.large_communities, vec![[1, 2, 3]]);
        assert_eq!(
            a.scope.node_selectors,
            vec![Selector::labels([("rack", "1")])]
        );
        assert_eq!(a.local_pref, Some(50));
    }

    #[test]
    fn bad_community_names_object_and_field() {
        let adv: herald_api::BGPAdvertisement = serde_json::from_value(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement", "metadata": {"name": "a"},
            "spec": {"communities": ["65000:1", "70000:1"]}
        }))
        .unwrap();
        let err = from_api::config(&[], &[], &[adv], &[]).unwrap_err();
        assert_eq!((err.kind, err.name.as_str()), ("BGPAdvertisement", "a"));
        assert_eq!(err.error.field, "spec.communities[1]");
    }

    #[test]
    fn node_conditions_and_addresses_are_read() {
        let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"rack": "1"}},
            "status": {"conditions": [{"type": "Ready", "status": "False"},
                                      {"type": "NetworkUnavailable", "status": "True"}],
                       "addresses": [{"type": "ExternalIP", "address": "203.0.113.1"},
                                     {"type": "Hostname", "address": "n1"},
                                     {"type": "InternalIP", "address": "10.0.0.1"}]}
        }))
        .unwrap();
        let node = from_api::node(&n);
        assert!(!node.ready && node.network_unavailable);
        assert_eq!(node.addresses, vec![ip("10.0.0.1"), ip("203.0.113.1")]);
        let bare: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(json!({"metadata": {"name": "n2"}})).unwrap();
        assert!(
            from_api::node(&bare).ready,
            "a listed node without status counts as ready"
        );
    }

    #[test]
    fn endpoints_come_from_the_services_slices_only() {
        let slices: Vec<k8s_openapi::api::discovery::v1::EndpointSlice> = serde_json::from_value(json!([
            {"metadata": {"name": "s1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": ["10.1.0.1"], "nodeName": "n1"},
                           {"addresses": ["10.1.0.2"], "conditions": {"ready": false}}]},
            {"metadata": {"name": "s2", "namespace": "other", "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4", "endpoints": [{"addresses": ["10.9.9.9"]}]}
        ]))
        .unwrap();
        let eps = from_api::endpoints("shop", "web", &slices);
        assert_eq!(
            eps,
            vec![
                Endpoint {
                    address: ip("10.1.0.1"),
                    node: Some("n1".into()),
                    ready: true
                },
                Endpoint {
                    address: ip("10.1.0.2"),
                    node: None,
                    ready: false
                },
            ]
        );
    }
}
