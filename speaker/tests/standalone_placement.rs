//! Standalone hosts that read the same file agree on every address, whatever their history
//! (issue 13): the assignment is a function of the current configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use herald_api::standalone::{self, StandaloneConfig};
use herald_speaker::standalone::allocate::{Embedded, Outcome, rank};
use herald_speaker::standalone::state::State;
use proptest::prelude::*;

/// One Service of the test universe.
#[derive(Debug, Clone)]
struct Svc {
    name: String,
    /// (sharing key, port): partners use disjoint ports, so they can share.
    sharing: Option<(String, u16)>,
    /// A requested address.
    request: Option<String>,
}

fn plain(name: &str) -> Svc {
    Svc {
        name: name.into(),
        sharing: None,
        request: None,
    }
}

fn yaml(pool: &str, services: &[Svc]) -> String {
    let mut text = format!(
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: lan}}\n\
         spec: {{addresses: [{pool}]}}\n"
    );
    for s in services {
        let mut annotations = Vec::new();
        if let Some((key, _)) = &s.sharing {
            annotations.push(format!("herald.dev/sharing-key: {key}"));
        }
        if let Some(a) = &s.request {
            annotations.push(format!("herald.dev/load-balancer-ips: \"{a}\""));
        }
        let port = s.sharing.as_ref().map_or(80, |(_, p)| *p);
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {}, namespace: ns, \
             annotations: {{{}}}}}\nspec: {{type: LoadBalancer, ports: [{{port: {port}}}]}}\n",
            s.name,
            annotations.join(", ")
        ));
    }
    text
}

fn config(pool: &str, services: &[Svc]) -> StandaloneConfig {
    standalone::load_str(Path::new("lb.yaml"), &yaml(pool, services)).expect("valid config")
}

/// A host: the embedded allocator, restarted from its own persisted state when asked.
struct Host {
    embedded: Embedded,
    state: State,
}

impl Host {
    fn new() -> Self {
        Host {
            embedded: Embedded::new(State::default()),
            state: State::default(),
        }
    }

    fn apply(&mut self, pool: &str, services: &[Svc]) -> Outcome {
        let o = self
            .embedded
            .apply(&config(pool, services))
            .expect("applies");
        self.state = o.state.clone();
        o
    }

    fn restart(&mut self) {
        self.embedded = Embedded::new(self.state.clone());
    }
}

fn addrs(o: &Outcome) -> BTreeMap<String, Vec<IpAddr>> {
    o.assigned
        .iter()
        .map(|(k, a)| (k.clone(), a.iter().map(|(ip, _)| *ip).collect()))
        .collect()
}

fn by_names(all: &[Svc], names: &[&str]) -> Vec<Svc> {
    names
        .iter()
        .map(|n| all.iter().find(|s| s.name == *n).expect("known").clone())
        .collect()
}

#[test]
fn two_hosts_with_different_histories_assign_the_same_addresses() {
    // A /29: 8 addresses for 4 Services, so candidates do collide.
    let pool = "192.0.2.0/29";
    let all = vec![
        plain("s1"),
        plain("s2"),
        Svc {
            request: Some("192.0.2.3".into()),
            ..plain("s3")
        },
        plain("s4"),
    ];
    let mut a = Host::new();
    let mut b = Host::new();
    let mut last_a = None;
    for step in [&["s1"][..], &["s1", "s2"], &["s1", "s2", "s3"]] {
        last_a = Some(a.apply(pool, &by_names(&all, step)));
    }
    // B: was down while s2 was removed and s4 added, came back, saw s2 re-added and s3.
    for (i, step) in [
        &["s1"][..],
        &["s1", "s2"],
        &["s1"],
        &["s1", "s4"],
        &["s1", "s4", "s2"],
        &["s1", "s4", "s2", "s3"],
        &["s3", "s2", "s1"],
    ]
    .iter()
    .enumerate()
    {
        if i == 3 {
            b.restart();
        }
        b.apply(pool, &by_names(&all, step));
    }
    let last_b = b.apply(pool, &by_names(&all, &["s1", "s2", "s3"]));
    let last_a = last_a.expect("applied");
    assert_eq!(addrs(&last_a), addrs(&last_b));
    assert_eq!(last_a.errors, last_b.errors);
    assert_eq!(
        last_a.assigned["ns/s3"][0].0.to_string(),
        "192.0.2.3",
        "the request is granted"
    );
    // And a third host that starts cold on the final file agrees too.
    let mut c = Host::new();
    assert_eq!(
        addrs(&c.apply(pool, &by_names(&all, &["s2", "s3", "s1"]))),
        addrs(&last_a)
    );
}

#[test]
fn adding_a_service_to_a_sparse_pool_moves_no_other() {
    let pool = "10.20.0.0/16";
    let mut services: Vec<Svc> = (0..100).map(|i| plain(&format!("svc-{i}"))).collect();
    let mut host = Host::new();
    let before = addrs(&host.apply(pool, &services));
    for extra in ["newcomer", "another", "a-third"] {
        services.push(plain(extra));
        let after = host.apply(pool, &services);
        assert!(after.moved.is_empty(), "{:?}", after.moved);
        for (k, v) in &before {
            assert_eq!(&addrs(&after)[k], v, "{k} moved when {extra} was added");
        }
    }
}

#[test]
fn a_requested_address_wins_over_a_hashed_placement_on_it() {
    let pool = "192.0.2.0/29";
    let mut host = Host::new();
    let o = host.apply(pool, &[plain("web")]);
    let web = o.assigned["ns/web"][0].0.to_string();
    // Another Service now asks for exactly web's address: it gets it, web moves (and the
    // move is reported), and no address is held twice.
    let pinned = Svc {
        request: Some(web.clone()),
        ..plain("pinned")
    };
    let o = host.apply(pool, &[plain("web"), pinned]);
    assert_eq!(o.assigned["ns/pinned"][0].0.to_string(), web);
    assert_ne!(o.assigned["ns/web"][0].0.to_string(), web);
    assert_eq!(o.moved.len(), 1);
    assert_eq!(o.moved[0].service, "ns/web");
}

#[test]
fn an_exhausted_pool_leaves_the_lowest_ranked_service_without_an_address_on_every_host() {
    let pool = "192.0.2.0/31";
    let names = ["ex", "why", "zed"];
    let services: Vec<Svc> = names.iter().map(|n| plain(n)).collect();
    let lowest = names
        .iter()
        .max_by_key(|n| rank(&format!("ns/{n}")))
        .expect("three");
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let listed: Vec<Svc> = order.iter().map(|&i| services[i].clone()).collect();
        let o = Host::new().apply(pool, &listed);
        assert_eq!(o.errors.len(), 1);
        assert_eq!(o.errors[0].service.to_string(), format!("ns/{lowest}"));
    }
}

/// The universe of the property tests: plain Services, a sharing pair, one with a request.
fn universe() -> Vec<Svc> {
    let mut all: Vec<Svc> = (0..8).map(|i| plain(&format!("p{i}"))).collect();
    all.push(Svc {
        sharing: Some(("k".into(), 80)),
        ..plain("http")
    });
    all.push(Svc {
        sharing: Some(("k".into(), 443)),
        ..plain("https")
    });
    all.push(Svc {
        request: Some("10.9.0.5".into()),
        ..plain("pinned")
    });
    all
}

/// Configurations as subsets of the universe (bit i: Service i is configured), and whether
/// the host restarts before applying it.
fn history() -> impl Strategy<Value = Vec<(u16, bool)>> {
    prop::collection::vec((0u16..(1 << 11), any::<bool>()), 0..8)
}

fn subset(all: &[Svc], bits: u16) -> Vec<Svc> {
    all.iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, s)| s.clone())
        .collect()
}

/// No address is held by two Services unless they are the sharing pair.
fn no_incompatible_sharing(o: &Outcome) -> Result<(), String> {
    let mut holders: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
    for (k, a) in &o.assigned {
        for (ip, _) in a {
            holders.entry(*ip).or_default().insert(k);
        }
    }
    for (ip, h) in holders {
        if h.len() > 1 && h != BTreeSet::from(["ns/http", "ns/https"]) {
            return Err(format!("{ip} held by {h:?}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_histories_ending_at_the_same_config_agree(
        a in history(),
        b in history(),
        last in 0u16..(1 << 11),
        size in 2u8..16,
    ) {
        // Pools from 2 to 16 addresses for 11 Services: collisions and exhaustion happen.
        let pool = format!("10.9.0.0-10.9.0.{}", size - 1);
        let all = universe();
        let run = |history: &[(u16, bool)]| {
            let mut host = Host::new();
            for (bits, restart) in history {
                if *restart {
                    host.restart();
                }
                host.apply(&pool, &subset(&all, *bits));
            }
            host.restart();
            host.apply(&pool, &subset(&all, last))
        };
        let (oa, ob) = (run(&a), run(&b));
        prop_assert_eq!(addrs(&oa), addrs(&ob));
        prop_assert_eq!(&oa.errors, &ob.errors);
        no_incompatible_sharing(&oa).map_err(TestCaseError::fail)?;
        // The same as a cold start with the Services listed in reverse.
        let mut reversed = subset(&all, last);
        reversed.reverse();
        prop_assert_eq!(addrs(&Host::new().apply(&pool, &reversed)), addrs(&oa));
    }

    #[test]
    fn adding_a_service_moves_only_services_ranked_after_it(
        before in 0u16..(1 << 11),
        added in 0usize..11,
        size in 2u8..32,
    ) {
        let all = universe();
        prop_assume!(before & (1 << added) == 0);
        let pool = format!("10.9.0.0-10.9.0.{}", size - 1);
        let mut host = Host::new();
        let o1 = addrs(&host.apply(&pool, &subset(&all, before)));
        let o2 = host.apply(&pool, &subset(&all, before | (1 << added)));
        let newcomer = &all[added];
        let new_key = format!("ns/{}", newcomer.name);
        let new_order = (newcomer.request.is_none(), rank(&new_key));
        for m in &o2.moved {
            let other = all.iter().find(|s| format!("ns/{}", s.name) == m.service).expect("known");
            let order = (other.request.is_none(), rank(&m.service));
            prop_assert!(
                order > new_order,
                "{} moved ({:?} -> {:?}) though ranked before {}",
                m.service, m.from, m.to, new_key
            );
        }
        // Services that kept an address and did not move are exactly where they were.
        for (k, v) in &o1 {
            if !o2.moved.iter().any(|m| &m.service == k) {
                prop_assert_eq!(&addrs(&o2)[k], v);
            }
        }
    }
}
