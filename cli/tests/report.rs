//! Building the report from fixture objects: which problems are found, how announcers read,
//! and the order of everything.

mod common;

use common::*;
use herald_cli::inputs::{Inputs, Listed};
use herald_cli::report::{AddressRow, AnnouncerRow, ProblemKind, build, grouped};
use serde_json::json;

fn problems(inputs: &Inputs) -> Vec<(ProblemKind, String, String)> {
    build(inputs)
        .problems
        .into_iter()
        .map(|p| (p.kind, p.object, p.detail))
        .collect()
}

fn announcer(node: &str, via: &str, through: &[&str]) -> AnnouncerRow {
    AnnouncerRow {
        node: node.into(),
        via: via.into(),
        through: through.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn problems_are_found_in_every_kind_and_sorted_by_kind_then_object() {
    use ProblemKind::*;
    let want = [
        (
            ServiceWithoutAddress,
            "Service shop/pending",
            "no address in status.loadBalancer.ingress",
        ),
        (
            AddressNotAnnounced,
            "Service shop/checkout",
            "192.0.2.12 is announced by no node",
        ),
        (
            SessionNotEstablished,
            "Node n2",
            "BGP peer tor2 (10.0.0.2) is active; last error: connect: connection refused",
        ),
        (
            SessionNotEstablished,
            "Node n5",
            "BGP peer tor2 (10.0.0.2) is connect (from the BGPPeer's status)",
        ),
        (NodeExcluded, "Node n4", "excluded: draining"),
        (
            PoolExhausted,
            "IPPool small",
            "IPv4 exhausted: 1 assigned, none available",
        ),
        (
            PoolNotReady,
            "IPPool lab",
            "Ready is False (Overlapping): overlaps IPPool public: 192.0.2.0/28",
        ),
        (
            PoolNotReady,
            "IPPool new",
            "no status yet: is herald-controller running?",
        ),
        (
            InvalidConfiguration,
            "BGPAdvertisement old",
            "Valid is False (MissingReference): ipPools: no IPPool legacy",
        ),
        (
            InvalidConfiguration,
            "BGPPeer tor3",
            "Valid is False (MissingReference): bfdProfile fast: no BFDProfile fast",
        ),
    ]
    .map(|(k, o, d)| (k, o.to_owned(), d.to_owned()));
    assert_eq!(problems(&cluster()), want);
}

#[test]
fn a_healthy_cluster_has_no_problems() {
    let inputs = Inputs {
        services: Listed::Items(vec![service(
            "default",
            "web",
            &["192.0.2.10"],
            Some("public"),
        )]),
        nodes: Listed::Items(vec![node(
            "n1",
            json!({
                "sessions": "1/1", "announcedCount": 1,
                "bgp": [session("tor1", "10.0.0.1", "established", None)],
                "announcements": [bgp(&["tor1"], &["192.0.2.10"])],
            }),
        )]),
        pools: Listed::Items(vec![pool(
            "public",
            &["192.0.2.0/24"],
            Some(pool_status((1, 253), (0, "0"), ("True", "Valid", ""))),
        )]),
        ..Inputs::default()
    };
    let report = build(&inputs);
    assert!(!report.has_problems(), "{:?}", report.problems);
    assert!(report.notes.is_empty());
}

#[test]
fn announcers_group_nodes_that_announce_the_same_way_bgp_first() {
    let cases: &[(&[AnnouncerRow], &str)] = &[
        (&[], "-"),
        (&[announcer("n1", "BGP", &["tor1"])], "n1 via BGP (tor1)"),
        (
            &[
                announcer("n1", "BGP", &["tor1", "tor2"]),
                announcer("n2", "BGP", &["tor1", "tor2"]),
                announcer("n3", "L2", &["eth0"]),
            ],
            "n1,n2 via BGP (tor1,tor2); n3 via L2 (eth0)",
        ),
        (
            &[
                announcer("n1", "L2", &["eth0"]),
                announcer("n2", "BGP", &["tor1"]),
                announcer("n3", "BGP", &["tor2"]),
                announcer("n4", "BGP", &["tor1"]),
                announcer("n5", "L2", &["eth0"]),
            ],
            "n2,n4 via BGP (tor1); n3 via BGP (tor2); n1,n5 via L2 (eth0)",
        ),
        (&[announcer("n1", "BGP", &[])], "n1 via BGP"),
    ];
    for (announcers, want) in cases {
        assert_eq!(grouped(announcers), *want, "{announcers:?}");
    }
}

#[test]
fn a_service_reads_its_announcers_from_the_herald_nodes() {
    let report = build(&cluster());
    let by = |ns: &str, name: &str| {
        let s = report
            .services
            .iter()
            .find(|s| s.namespace == ns && s.name == name)
            .unwrap();
        s.announced_by()
    };
    assert_eq!(
        by("default", "web"),
        "n1 via BGP (tor1,tor2); n2 via BGP (tor1); n3 via L2 (eth0)"
    );
    assert_eq!(
        by("default", "dual"),
        "192.0.2.11: n1 via BGP (tor1,tor2); n2 via BGP (tor1) | 2001:db8::11: n1 via BGP (tor1,tor2)"
    );
    assert_eq!(by("shop", "checkout"), "-");
    assert_eq!(by("shop", "pending"), "-");
}

#[test]
fn sections_are_sorted_by_name_and_skip_services_of_other_types() {
    let report = build(&cluster());
    let services: Vec<String> = report
        .services
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    assert_eq!(
        services,
        [
            "default/dual",
            "default/web",
            "lab/full",
            "shop/checkout",
            "shop/pending"
        ]
    );
    let nodes: Vec<&str> = report.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes, ["n1", "n2", "n3", "n4"]);
    let pools: Vec<&str> = report.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pools, ["lab", "new", "public", "small"]);
    let dual = &report.services[0];
    assert_eq!(dual.pool.as_deref(), Some("public"));
    assert_eq!(
        dual.addresses
            .iter()
            .map(|a: &AddressRow| a.address.as_str())
            .collect::<Vec<_>>(),
        ["192.0.2.11", "2001:db8::11"]
    );
}

#[test]
fn unreadable_herald_nodes_fall_back_to_the_announced_condition_and_the_peers_sessions() {
    let inputs = Inputs {
        services: Listed::Items(vec![
            with_announced(
                service("default", "web", &["192.0.2.10"], None),
                "True",
                "Announced",
                "n1 via BGP",
            ),
            with_announced(
                service("default", "lost", &["192.0.2.13"], None),
                "False",
                "NotAnnounced",
                "no node announces 192.0.2.13",
            ),
        ]),
        nodes: Listed::Unreadable("403 Forbidden: heraldnodes.herald.dev is forbidden".into()),
        peers: Listed::Items(vec![peer(
            "tor1",
            "10.0.0.1",
            ("True", "Valid", ""),
            json!([
            {"node": "n1", "state": "established"}, {"node": "n2", "state": "idle"}]),
        )]),
        ..Inputs::default()
    };
    let report = build(&inputs);
    assert_eq!(report.services[1].name, "web");
    assert_eq!(report.services[1].announced_by(), "True: n1 via BGP");
    assert_eq!(
        problems(&inputs),
        [
            (
                ProblemKind::AddressNotAnnounced,
                "Service default/lost".to_owned(),
                "herald.dev/Announced is False (NotAnnounced): no node announces 192.0.2.13"
                    .to_owned()
            ),
            (
                ProblemKind::SessionNotEstablished,
                "Node n2".to_owned(),
                "BGP peer tor1 (10.0.0.1) is idle (from the BGPPeer's status)".to_owned()
            ),
        ]
    );
    assert_eq!(
        report.notes,
        [
            "HeraldNodes not readable (403 Forbidden: heraldnodes.herald.dev is forbidden): \
          announcers are taken from each Service's herald.dev/Announced condition and the \
          Nodes section is empty"
        ]
    );
}

#[test]
fn a_disabled_pool_with_nothing_left_is_not_exhausted() {
    let mut p = pool(
        "old",
        &["192.0.2.0/30"],
        Some(pool_status((2, 0), (0, "0"), ("True", "Valid", ""))),
    );
    p.spec.disabled = true;
    let inputs = Inputs {
        pools: Listed::Items(vec![p]),
        ..Inputs::default()
    };
    assert!(problems(&inputs).is_empty());
}

#[test]
fn an_exhausted_family_is_a_problem_even_when_the_other_has_room() {
    let inputs = Inputs {
        pools: Listed::Items(vec![pool(
            "dual",
            &["192.0.2.0/30", "2001:db8::/126"],
            Some(pool_status((4, 0), (1, "3"), ("True", "Valid", ""))),
        )]),
        ..Inputs::default()
    };
    assert_eq!(
        problems(&inputs),
        [(
            ProblemKind::PoolExhausted,
            "IPPool dual".to_owned(),
            "IPv4 exhausted: 4 assigned, none available".to_owned()
        )]
    );
}
