//! Allocator benchmark: 100k Services, against an anchor measured in the same run.
//!
//! Scenarios: allocate from a /8 IPv4 pool, allocate from a /64 IPv6 pool, restore 100k
//! existing assignments. The anchor ("floor") is inserting the same number of `u128` into a
//! `BTreeSet`: the least an allocator that remembers what it handed out in an ordered
//! structure could cost. Inputs are built outside the timed section; each figure is the
//! median of `SAMPLES` runs. Run with `cargo bench -p herald-ipam --bench ipam`.
//! The two `context` lines are not the allocator: they show what storing 100k `Service`
//! values and 100k hash-map inserts cost on the same machine, to read the ratios against.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald_ipam::{Allocator, Family, Pool, Protocol, Service, ServiceKey};

const N: usize = 100_000;
const SAMPLES: usize = 15;

fn services(family: Family) -> Vec<Service> {
    (0..N)
        .map(|i| {
            let mut s = Service::new(ServiceKey::new("bench", format!("svc-{i}")));
            s.ports = vec![(Protocol::Tcp, 80)];
            s.backend_key = "app=bench".into();
            s.ip_families = vec![family];
            s
        })
        .collect()
}

fn allocator(range: (&str, &str)) -> Allocator {
    let mut a = Allocator::new();
    let range = (
        range.0.parse::<IpAddr>().unwrap(),
        range.1.parse::<IpAddr>().unwrap(),
    );
    a.set_pools(vec![Pool::new("bench", vec![range])]).unwrap();
    a
}

/// Median wall time of `SAMPLES` runs of `timed(setup())`; setup and drop are not timed.
fn measure<S, R>(mut setup: impl FnMut() -> S, mut timed: impl FnMut(S) -> R) -> Duration {
    let mut times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let input = setup();
            let start = Instant::now();
            let out = timed(input);
            let elapsed = start.elapsed();
            drop(black_box(out));
            elapsed
        })
        .collect();
    times.sort();
    times[SAMPLES / 2]
}

fn report(name: &str, t: Duration, floor: Option<Duration>) {
    let ms = t.as_secs_f64() * 1e3;
    let ns = t.as_secs_f64() * 1e9 / N as f64;
    match floor {
        Some(f) => println!(
            "{name:<28} {ms:>9.2} ms {ns:>8.1} ns/op   ratio {:.2}",
            t.as_secs_f64() / f.as_secs_f64()
        ),
        None => println!("{name:<28} {ms:>9.2} ms {ns:>8.1} ns/op"),
    }
}

fn main() {
    let v4_pool = ("10.0.0.0", "10.255.255.255");
    let v6_pool = ("fd00::", "fd00::ffff:ffff:ffff:ffff");

    let floor = measure(
        || {
            (0..N as u128)
                .map(|i| 0x0a00_0000 + i)
                .collect::<Vec<u128>>()
        },
        |values| {
            let mut set = BTreeSet::new();
            for v in values {
                set.insert(black_box(v));
            }
            set
        },
    );

    let alloc_v4 = measure(
        || (allocator(v4_pool), services(Family::V4)),
        |(mut a, mut svcs)| {
            for s in svcs.drain(..) {
                black_box(a.assign(s).unwrap());
            }
            (a, svcs)
        },
    );

    let alloc_v6 = measure(
        || (allocator(v6_pool), services(Family::V6)),
        |(mut a, mut svcs)| {
            for s in svcs.drain(..) {
                black_box(a.assign(s).unwrap());
            }
            (a, svcs)
        },
    );

    // The state a previous controller wrote: every Service with its address in status.
    let statuses = {
        let mut a = allocator(v4_pool);
        services(Family::V4)
            .into_iter()
            .map(|mut s| {
                s.current = a.assign(s.clone()).unwrap().addresses();
                s
            })
            .collect::<Vec<Service>>()
    };
    let restore = measure(
        || (allocator(v4_pool), statuses.clone()),
        |(mut a, mut svcs)| {
            let conflicts = a.restore(svcs.drain(..));
            assert!(conflicts.is_empty());
            (a, svcs)
        },
    );

    println!("ipam benchmark: {N} services, median of {SAMPLES} samples");
    report("floor: BTreeSet<u128> insert", floor, None);
    report("allocate /8 IPv4", alloc_v4, Some(floor));
    report("allocate /64 IPv6", alloc_v6, Some(floor));
    report("restore 100k assignments", restore, Some(floor));

    // Context for reading the ratios: what merely keeping one Service struct per Service
    // costs (the allocator must keep each Service's request to re-check it later), and one
    // hash-map insert of the same count.
    let store = measure(
        || services(Family::V4),
        |mut svcs| {
            let mut v = Vec::new();
            for s in svcs.drain(..) {
                v.push(black_box(s));
            }
            (v, svcs)
        },
    );
    report("context: Vec<Service> push", store, Some(floor));
    let hm = measure(
        || (),
        |_| {
            let mut m = std::collections::HashMap::new();
            for i in 0..N as u128 {
                m.insert(black_box(i), i as u32);
            }
            m
        },
    );
    report("context: HashMap insert", hm, Some(floor));
}
