//! Property tests: random sequences of Service creates, updates, deletes, restores and pool
//! edits, checked against brute-force recomputations that share no code with the allocator.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::{ip, owned, owned_all, range};
use herald_ipam::{
    AllocateTo, Allocator, Family, FamilyPolicy, Pool, Protocol, Selector, Service, ServiceKey,
    TrafficPolicy,
};
use proptest::prelude::*;

/// Ranges pools are built from: a /28, a range across a .255/.0 boundary, an overlap, and
/// small IPv6 ranges (one overlapping).
const RANGES: &[&str] = &[
    "10.0.0.0/28",
    "10.0.0.250-10.0.1.5",
    "10.0.0.8-10.0.0.11",
    "fd00::/125",
    "fd00::4-fd00::b",
];

/// Addresses a Service may request or carry in its status.
const ADDRS: &[&str] = &[
    "10.0.0.0",
    "10.0.0.5",
    "10.0.0.9",
    "10.0.0.255",
    "10.0.1.0",
    "10.0.1.1",
    "fd00::1",
    "fd00::9",
    "192.0.2.1",
];

const POOL_NAMES: &[&str] = &["p", "q", "r"];

/// Every address any test can touch (brute-force universe).
fn universe() -> Vec<IpAddr> {
    let mut all = Vec::new();
    for a in 0u32..=0x1ff {
        all.push(IpAddr::V4((0x0a00_0000 + a).into()));
    }
    for a in 0u128..=0xf {
        all.push(IpAddr::V6((0xfd00_u128 << 112 | a).into()));
    }
    all.push(ip("192.0.2.1"));
    all
}

fn pool_strategy(name: &'static str) -> impl Strategy<Value = Pool> {
    (
        prop::sample::subsequence(RANGES.to_vec(), 1..=3),
        prop::bool::weighted(0.8),
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::option::of(-1i32..2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            move |(ranges, auto_assign, avoid, disabled, priority, ns_only, front_only)| Pool {
                name: name.into(),
                ranges: ranges.iter().map(|r| range(r)).collect(),
                auto_assign,
                avoid_buggy_ips: avoid,
                disabled,
                allocate_to: AllocateTo {
                    priority,
                    namespaces: if ns_only { vec!["a".into()] } else { vec![] },
                    namespace_selectors: vec![],
                    service_selectors: if front_only {
                        vec![Selector::labels([("tier", "front")])]
                    } else {
                        vec![]
                    },
                },
            },
        )
}

fn pools_strategy() -> impl Strategy<Value = Vec<Pool>> {
    (
        pool_strategy("p"),
        prop::option::of(pool_strategy("q")),
        prop::option::of(pool_strategy("r")),
    )
        .prop_map(|(p, q, r)| [Some(p), q, r].into_iter().flatten().collect())
}

fn service_strategy() -> impl Strategy<Value = Service> {
    let ports = prop::sample::subsequence(
        vec![
            (Protocol::Tcp, 80),
            (Protocol::Tcp, 443),
            (Protocol::Udp, 53),
        ],
        0..=2,
    );
    let families = prop::sample::select(vec![
        (vec![Family::V4], FamilyPolicy::SingleStack),
        (vec![Family::V6], FamilyPolicy::SingleStack),
        (vec![Family::V4, Family::V6], FamilyPolicy::PreferDualStack),
        (vec![Family::V6, Family::V4], FamilyPolicy::RequireDualStack),
        (vec![Family::V4, Family::V6], FamilyPolicy::RequireDualStack),
    ]);
    (
        (
            0usize..6,
            prop::sample::select(vec!["a", "b"]),
            any::<bool>(),
        ),
        prop::option::of(prop::sample::select(vec!["k", "j"])),
        ports,
        any::<bool>(),
        prop::sample::select(vec!["x", "y"]),
        families,
        prop::sample::subsequence(ADDRS.to_vec(), 0..=1),
        prop::sample::subsequence(POOL_NAMES.to_vec(), 0..=2),
        prop::sample::subsequence(ADDRS.to_vec(), 0..=2),
    )
        .prop_map(
            |((n, ns, front), key, ports, local, pods, (fams, policy), req, pools, current)| {
                let mut s = Service::new(ServiceKey::new(ns, format!("s{n}")));
                if front {
                    s.labels.insert("tier".into(), "front".into());
                }
                s.sharing_key = key.map(str::to_owned);
                s.ports = ports;
                s.traffic_policy = if local {
                    TrafficPolicy::Local
                } else {
                    TrafficPolicy::Cluster
                };
                s.backend_key = pods.into();
                s.ip_families = fams;
                s.family_policy = policy;
                s.requested_ips = req.iter().map(|a| ip(a)).collect();
                s.requested_pools = pools.iter().map(|p| p.to_string()).collect();
                s.current = current.iter().map(|a| ip(a)).collect();
                s
            },
        )
}

#[derive(Debug, Clone)]
enum Op {
    /// Create or update (status `current` ignored unless the Service is unknown).
    Assign(Service),
    /// Restore from status.
    Restore(Service),
    /// Delete.
    Release(usize, &'static str),
    /// Edit pools.
    SetPools(Vec<Pool>),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => service_strategy().prop_map(|mut s| { s.current.clear(); Op::Assign(s) }),
        1 => service_strategy().prop_map(Op::Assign),
        1 => service_strategy().prop_map(Op::Restore),
        2 => (0usize..6, prop::sample::select(vec!["a", "b"])).prop_map(|(n, ns)| Op::Release(n, ns)),
        1 => pools_strategy().prop_map(Op::SetPools),
    ]
}

/// The sharing rule of DESIGN §3, written again from the text.
fn may_share(a: &Service, b: &Service) -> bool {
    let same_key = a.sharing_key.is_some() && a.sharing_key == b.sharing_key;
    let ports_disjoint = a.ports.iter().all(|p| !b.ports.contains(p));
    let both_cluster =
        a.traffic_policy == TrafficPolicy::Cluster && b.traffic_policy == TrafficPolicy::Cluster;
    same_key && ports_disjoint && (both_cluster || a.backend_key == b.backend_key)
}

fn is_avoided(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if matches!(a.octets()[3], 0 | 255))
}

fn in_range(addr: IpAddr, (lo, hi): (IpAddr, IpAddr)) -> bool {
    match (addr, lo, hi) {
        (IpAddr::V4(a), IpAddr::V4(l), IpAddr::V4(h)) => l <= a && a <= h,
        (IpAddr::V6(a), IpAddr::V6(l), IpAddr::V6(h)) => l <= a && a <= h,
        _ => false,
    }
}

/// Applies `op`, keeping `model` = the spec the allocator knows for each live Service.
fn apply(
    a: &mut Allocator,
    model: &mut BTreeMap<ServiceKey, Service>,
    pools: &mut Vec<Pool>,
    op: Op,
) {
    match op {
        Op::Assign(s) => {
            let key = s.key.clone();
            let known = a.assignment(&key).is_some();
            let result = a.assign(s.clone()).map(|got| owned(&got));
            if let Ok(got) = result {
                assert_eq!(
                    Some(got),
                    a.assignment(&key).map(|x| owned(&x)),
                    "Ok reports what is held"
                );
            }
            if a.assignment(&key).is_some() {
                // A known Service whose request is unchanged keeps its stored spec unless its
                // context changed; the spec fields the checks use (sharing) are request fields.
                if !known || model.get(&key).is_none_or(|m| m != &s) {
                    model.insert(key, s);
                }
            } else {
                model.remove(&key);
            }
        }
        Op::Restore(s) => {
            let key = s.key.clone();
            let has_current = !s.current.is_empty();
            a.restore([s.clone()]);
            if has_current {
                model.insert(key, s);
            }
        }
        Op::Release(n, ns) => {
            let key = ServiceKey::new(ns, format!("s{n}"));
            a.release(&key);
            model.remove(&key);
        }
        Op::SetPools(new) => {
            a.set_pools(new.clone()).expect("generated pools are valid");
            *pools = new;
        }
    }
}

/// (a) no address is held by two Services that may not share it.
fn check_sharing(a: &Allocator, model: &BTreeMap<ServiceKey, Service>) {
    for addr in universe() {
        let holders = a.holders(addr);
        for (i, x) in holders.iter().enumerate() {
            for y in &holders[i + 1..] {
                let (sx, sy) = (&model[x], &model[y]);
                assert!(
                    may_share(sx, sy),
                    "{addr} held by {x} and {y}, which may not share"
                );
            }
        }
    }
}

/// (c) per-pool, per-family counts equal a recount over the universe.
fn check_counts(a: &Allocator, pools: &[Pool]) {
    for pool in pools {
        let mut want = [(0u128, 0u128); 2];
        let addrs: BTreeSet<IpAddr> = universe()
            .into_iter()
            .filter(|&x| pool.ranges.iter().any(|&r| in_range(x, r)))
            .collect();
        for x in addrs {
            if pool.avoid_buggy_ips && is_avoided(x) {
                continue;
            }
            let f = Family::of(x) as usize;
            if a.holders(x).is_empty() {
                if !pool.disabled {
                    want[f].1 += 1;
                }
            } else {
                want[f].0 += 1;
            }
        }
        let got = a.counts(&pool.name).expect("pool exists");
        assert_eq!(
            [
                (got.v4.assigned, got.v4.available),
                (got.v6.assigned, got.v6.available)
            ],
            want,
            "counts of pool {}",
            pool.name
        );
    }
}

/// (b) restoring the current assignments into a fresh allocator, then assigning every
/// restored Service again, gives the same assignments.
fn check_restore_fixed_point(a: &Allocator, model: &BTreeMap<ServiceKey, Service>, pools: &[Pool]) {
    let mut b = Allocator::new();
    b.set_pools(pools.to_vec()).unwrap();
    let statuses: Vec<Service> = model
        .values()
        .filter_map(|s| {
            let held = a.assignment(&s.key)?.addresses();
            (!held.is_empty()).then(|| Service {
                current: held,
                ..s.clone()
            })
        })
        .collect();
    b.restore(statuses.clone());
    for s in statuses {
        let _ = b.assign(s);
    }
    assert_eq!(owned_all(&b), owned_all(a));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_address_is_ever_held_by_two_incompatible_services(
        pools in pools_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..60),
    ) {
        let mut a = Allocator::new();
        let mut pools = pools;
        a.set_pools(pools.clone()).unwrap();
        let mut model = BTreeMap::new();
        for op in ops {
            apply(&mut a, &mut model, &mut pools, op);
            check_sharing(&a, &model);
        }
    }

    #[test]
    fn restoring_the_current_assignments_is_a_fixed_point(
        pools in pools_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..60),
    ) {
        let mut a = Allocator::new();
        let mut pools = pools;
        a.set_pools(pools.clone()).unwrap();
        let mut model = BTreeMap::new();
        for op in ops {
            apply(&mut a, &mut model, &mut pools, op);
        }
        // One reconcile pass, as the controller runs after every restore: a status the
        // allocator did not write itself (say, RequireDualStack with one family) is topped
        // up here; from then on the state is one the allocator wrote.
        for s in model.values() {
            let _ = a.assign(s.clone());
        }
        check_restore_fixed_point(&a, &model, &pools);
    }

    #[test]
    fn counts_equal_a_brute_force_recount(
        pools in pools_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        let mut a = Allocator::new();
        let mut pools = pools;
        a.set_pools(pools.clone()).unwrap();
        let mut model = BTreeMap::new();
        for op in ops {
            apply(&mut a, &mut model, &mut pools, op);
            check_counts(&a, &pools);
        }
    }

    #[test]
    fn the_same_call_sequence_gives_the_same_results(
        pools in pools_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        let run = || {
            let mut a = Allocator::new();
            let mut p = pools.clone();
            a.set_pools(p.clone()).unwrap();
            let mut model = BTreeMap::new();
            for op in ops.clone() {
                apply(&mut a, &mut model, &mut p, op);
            }
            (owned_all(&a), a.conflicts())
        };
        prop_assert_eq!(run(), run());
    }
}
