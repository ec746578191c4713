use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn node(name: &str, links: &[&str]) -> NodeFacts {
    NodeFacts {
        name: name.to_owned(),
        labels: BTreeMap::new(),
        ready: true,
        network_unavailable: false,
        links_up: links.iter().map(|s| s.to_string()).collect(),
    }
}

fn policy(addr: &str, interfaces: &[&str]) -> AddressPolicy {
    AddressPolicy {
        addr: addr.parse().unwrap(),
        interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
        node_selectors: vec![],
        local_endpoint_nodes: None,
    }
}

fn names(nodes: &[NodeFacts]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.name.clone()).collect()
}

fn owner_of(policies: &[AddressPolicy], nodes: &[NodeFacts]) -> Option<String> {
    elect(policies, nodes, &names(nodes))
        .into_values()
        .next()
        .map(|o| o.node)
}

#[test]
fn owner_is_the_live_node_with_the_highest_weight() {
    let addr: IpAddr = "192.0.2.10".parse().unwrap();
    let nodes = vec![
        node("a", &["eth0"]),
        node("b", &["eth0"]),
        node("c", &["eth0"]),
    ];
    let expected = ["a", "b", "c"]
        .into_iter()
        .max_by_key(|n| weight(addr, n))
        .unwrap();
    assert_eq!(
        owner_of(&[policy("192.0.2.10", &[])], &nodes).as_deref(),
        Some(expected)
    );
}

#[test]
fn weights_differ_between_addresses_and_families() {
    let v4: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
    let v6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into();
    assert_ne!(weight(v4, "a"), weight(v6, "a"));
    assert_ne!(weight(v4, "a"), weight(v4, "b"));
    // Length prefix: ("ab") and ("a", "b"-ish) splits do not collide trivially.
    assert_ne!(weight(v4, "ab"), weight(v4, "a"));
}

/// Each row: a change to node `a` (the only node) and whether it may still announce.
#[test]
fn eligibility_follows_node_facts_and_policy() {
    type Row = (&'static str, fn(&mut NodeFacts, &mut AddressPolicy), bool);
    let rows: Vec<Row> = vec![
        ("plain node", |_, _| {}, true),
        ("not ready", |n, _| n.ready = false, false),
        (
            "network unavailable",
            |n, _| n.network_unavailable = true,
            false,
        ),
        (
            "excluded by label (any value)",
            |n, _| {
                n.labels.insert(EXCLUDE_LABEL.into(), String::new());
            },
            false,
        ),
        (
            "named interface without carrier",
            |n, _| n.links_up.clear(),
            false,
        ),
        (
            "policy names another interface",
            |_, p| p.interfaces = vec!["eth9".into()],
            false,
        ),
        (
            "node selector does not match",
            |_, p| {
                p.node_selectors = vec![NodeSelector {
                    match_labels: [("zone".into(), "x".into())].into(),
                    ..Default::default()
                }]
            },
            false,
        ),
        (
            "node selector matches",
            |n, p| {
                n.labels.insert("zone".into(), "x".into());
                p.node_selectors = vec![NodeSelector {
                    match_labels: [("zone".into(), "x".into())].into(),
                    ..Default::default()
                }]
            },
            true,
        ),
        (
            "second selector matches",
            |n, p| {
                n.labels.insert("role".into(), "edge".into());
                p.node_selectors = vec![
                    NodeSelector {
                        match_labels: [("zone".into(), "x".into())].into(),
                        ..Default::default()
                    },
                    NodeSelector {
                        match_expressions: vec![LabelRequirement::In(
                            "role".into(),
                            ["edge".into()].into(),
                        )],
                        ..Default::default()
                    },
                ]
            },
            true,
        ),
        (
            "NotIn excludes",
            |n, p| {
                n.labels.insert("role".into(), "edge".into());
                p.node_selectors = vec![NodeSelector {
                    match_expressions: vec![LabelRequirement::NotIn(
                        "role".into(),
                        ["edge".into()].into(),
                    )],
                    ..Default::default()
                }]
            },
            false,
        ),
        (
            "DoesNotExist holds",
            |_, p| {
                p.node_selectors = vec![NodeSelector {
                    match_expressions: vec![LabelRequirement::DoesNotExist("role".into())],
                    ..Default::default()
                }]
            },
            true,
        ),
        (
            "Exists fails",
            |_, p| {
                p.node_selectors = vec![NodeSelector {
                    match_expressions: vec![LabelRequirement::Exists("role".into())],
                    ..Default::default()
                }]
            },
            false,
        ),
        (
            "eTP Local without a local endpoint",
            |_, p| p.local_endpoint_nodes = Some(["b".into()].into()),
            false,
        ),
        (
            "eTP Local with a local endpoint",
            |_, p| p.local_endpoint_nodes = Some(["a".into()].into()),
            true,
        ),
    ];
    for (what, change, eligible) in rows {
        let mut n = node("a", &["eth0"]);
        let mut p = policy("192.0.2.1", &["eth0"]);
        change(&mut n, &mut p);
        assert_eq!(
            owner_of(&[p], &[n]).is_some(),
            eligible,
            "{what}: eligible should be {eligible}"
        );
    }
}

#[test]
fn dead_nodes_are_not_elected() {
    let nodes = vec![node("a", &["eth0"]), node("b", &["eth0"])];
    let live: BTreeSet<String> = ["b".to_string()].into();
    let owners = elect(&[policy("192.0.2.1", &[])], &nodes, &live);
    assert_eq!(owners.values().next().unwrap().node, "b");
    assert!(elect(&[policy("192.0.2.1", &[])], &nodes, &BTreeSet::new()).is_empty());
}

#[test]
fn owner_answers_on_the_policy_interfaces_that_have_carrier() {
    let n = [node("a", &["eth0", "eth1", "eth2"])];
    let owners = elect(&[policy("192.0.2.1", &["eth1", "eth3"])], &n, &names(&n));
    let expected: BTreeSet<String> = ["eth1".to_string()].into();
    assert_eq!(owners.values().next().unwrap().interfaces, expected);
    // No interfaces named: all up interfaces.
    let owners = elect(&[policy("192.0.2.1", &[])], &n, &names(&n));
    assert_eq!(owners.values().next().unwrap().interfaces.len(), 3);
}

#[test]
fn link_down_on_the_owner_moves_the_address() {
    let addr = "192.0.2.77";
    let mut nodes = vec![
        node("a", &["eth0"]),
        node("b", &["eth0"]),
        node("c", &["eth0"]),
    ];
    let before = owner_of(&[policy(addr, &["eth0"])], &nodes).unwrap();
    nodes
        .iter_mut()
        .find(|n| n.name == before)
        .unwrap()
        .links_up
        .clear();
    let after = owner_of(&[policy(addr, &["eth0"])], &nodes).unwrap();
    assert_ne!(before, after);
}

#[test]
fn policies_for_one_address_combine() {
    let n = [node("a", &["eth0", "eth1"])];
    let mut restricted = policy("192.0.2.1", &["eth0"]);
    restricted.local_endpoint_nodes = Some(BTreeSet::new());
    let open = policy("192.0.2.1", &["eth1"]);
    let owners = elect(&[restricted, open], &n, &names(&n));
    let expected: BTreeSet<String> = ["eth1".to_string()].into();
    assert_eq!(owners.values().next().unwrap().interfaces, expected);
}

#[test]
fn announcements_list_only_this_nodes_addresses() {
    let nodes = vec![node("a", &["eth0"]), node("b", &["eth0"])];
    let policies: Vec<_> = (1..=20)
        .map(|i| policy(&format!("192.0.2.{i}"), &[]))
        .collect();
    let owners = elect(&policies, &nodes, &names(&nodes));
    let a = announcements(&owners, "a");
    let b = announcements(&owners, "b");
    assert_eq!(a.len() + b.len(), 20);
    assert!(a.is_disjoint(&b));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "20 addresses over 2 nodes spread"
    );
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeFacts>> {
    prop::collection::btree_set("[a-z]{1,6}", 1..8).prop_flat_map(|names| {
        let n = names.len();
        (
            Just(names),
            prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), n),
        )
            .prop_map(|(names, flags)| {
                names
                    .into_iter()
                    .zip(flags)
                    .map(|(name, (ready, link, zone))| {
                        let mut n = node(&name, if link { &["eth0"] } else { &[] });
                        n.ready = ready || link; // mostly eligible
                        if zone {
                            n.labels.insert("zone".into(), "x".into());
                        }
                        n
                    })
                    .collect()
            })
    })
}

fn arb_policies() -> impl Strategy<Value = Vec<AddressPolicy>> {
    prop::collection::vec((any::<u32>(), any::<bool>()), 1..30).prop_map(|v| {
        v.into_iter()
            .map(|(a, zoned)| AddressPolicy {
                addr: IpAddr::V4(Ipv4Addr::from(a)),
                interfaces: vec!["eth0".into()],
                node_selectors: if zoned {
                    vec![NodeSelector {
                        match_labels: [("zone".into(), "x".into())].into(),
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                local_endpoint_nodes: None,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn election_does_not_depend_on_input_order(
        nodes in arb_nodes(), policies in arb_policies(), seed in any::<u64>()
    ) {
        let live = names(&nodes);
        let mut shuffled = nodes.clone();
        let len = shuffled.len();
        shuffled.rotate_left((seed as usize) % len);
        shuffled.reverse();
        let mut policies_rev = policies.clone();
        policies_rev.reverse();
        prop_assert_eq!(elect(&policies, &nodes, &live), elect(&policies_rev, &shuffled, &live));
    }

    #[test]
    fn every_address_has_at_most_one_eligible_owner(
        nodes in arb_nodes(), policies in arb_policies()
    ) {
        let live = names(&nodes);
        let owners = elect(&policies, &nodes, &live);
        for p in &policies {
            let eligible: Vec<_> = nodes
                .iter()
                .filter(|n| !eligible_interfaces(&[p], n).is_empty())
                .collect();
            match owners.get(&p.addr) {
                // Duplicate addresses in `policies` combine; check against this policy only
                // when it is the only one for its address.
                Some(o) => prop_assert!(nodes.iter().any(|n| n.name == o.node
                    && !eligible_interfaces(
                        &policies.iter().filter(|q| q.addr == p.addr).collect::<Vec<_>>(), n
                    ).is_empty())),
                None => prop_assert!(eligible.is_empty()),
            }
        }
        let total: usize = nodes.iter().map(|n| announcements(&owners, &n.name)
            .iter().map(|(a, _)| *a).collect::<BTreeSet<_>>().len()).sum();
        prop_assert_eq!(total, owners.len(), "each address is announced by exactly one node");
    }

    #[test]
    fn removing_a_node_that_owns_nothing_moves_nothing(
        nodes in arb_nodes(), policies in arb_policies(), pick in any::<prop::sample::Index>()
    ) {
        let live = names(&nodes);
        let before = elect(&policies, &nodes, &live);
        let victim = &nodes[pick.index(nodes.len())].name;
        prop_assume!(before.values().all(|o| &o.node != victim));
        let mut fewer = live.clone();
        fewer.remove(victim);
        prop_assert_eq!(elect(&policies, &nodes, &fewer), before);
    }

    #[test]
    fn removing_an_owner_moves_only_its_addresses(
        nodes in arb_nodes(), policies in arb_policies(), pick in any::<prop::sample::Index>()
    ) {
        let live = names(&nodes);
        let before = elect(&policies, &nodes, &live);
        let victim = nodes[pick.index(nodes.len())].name.clone();
        let mut fewer = live.clone();
        fewer.remove(&victim);
        let after = elect(&policies, &nodes, &fewer);
        for (addr, owner) in &before {
            if owner.node != victim {
                prop_assert_eq!(after.get(addr), Some(owner));
            } else {
                prop_assert!(after.get(addr).is_none_or(|o| o.node != victim));
            }
        }
    }
}
