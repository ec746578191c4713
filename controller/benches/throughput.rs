//! Controller throughput and leader handover against the stateful fake API server
//! (`tests/fakeapi`), every request answered after a fixed latency like a real server's
//! round trip. Figures go to `docs/benchmarks.md`.
//!
//! - burst: N Services created in one go (as one `kubectl apply`); time from the last create
//!   to the last allocated, and Services/s over the whole burst. Goal: within 2 s, ≥ 500/s.
//! - handover: the leader dies without releasing its Lease; time until the follower writes
//!   its first allocation. Goal: ≤ lease duration + 1 s.
//!
//! `HERALD_BENCH=burst` or `HERALD_BENCH=handover` runs one of the two.
//!
//! Anchor: no other controller can run here; Cilium's published LB-IPAM scale figure (50 000
//! Services in 3 minutes, ~278/s) is printed for the ratio.

#[path = "../tests/fakeapi/mod.rs"]
mod fakeapi;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fakeapi::{FakeApi, IPPOOLS, NAMESPACES, SERVICES, allocated, ip_pool, lb_service};
use herald_controller::context::Settings;
use herald_controller::election::Timing;
use herald_controller::metrics::Metrics;
use herald_controller::run::{Election, run};
use tokio::sync::watch;

const LATENCY: Duration = Duration::from_millis(2);
/// How often the burst looks at the Services; the times it reports are this coarse.
const POLL: Duration = Duration::from_millis(25);
const CILIUM_PER_S: f64 = 50_000.0 / 180.0;

/// A controller in a runtime of its own, so that it can be killed outright: every task it
/// spawned (the elector renewing the Lease included) ends with the runtime, as when the
/// process dies.
struct Running {
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    runtime: tokio::runtime::Runtime,
}

impl Running {
    /// Graceful stop: the Lease is released.
    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        let _ = self.task.await;
        self.runtime.shutdown_background();
    }

    /// SIGKILL: nothing is released.
    fn kill(self) {
        self.runtime.shutdown_background();
    }
}

fn start(api: &FakeApi, instance: &str, lease: Duration, retry: Duration) -> Running {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ready = Arc::new(AtomicBool::new(false));
    let (shutdown, rx) = watch::channel(false);
    let client = {
        let _in = runtime.enter();
        api.client()
    };
    let task = runtime.spawn(run(
        client,
        Settings {
            lb_class: herald_ipam::convert::LbClass::default(),
            instance: instance.to_owned(),
        },
        Some(Election {
            namespace: "herald-system".to_owned(),
            name: "herald-controller".to_owned(),
            timing: Timing {
                lease_duration: lease,
                retry_period: retry,
            },
        }),
        Arc::new(Metrics::new()),
        ready.clone(),
        rx,
    ));
    Running {
        ready,
        shutdown,
        task,
        runtime,
    }
}

fn cluster() -> FakeApi {
    let api = FakeApi::new();
    for ns in ["default", "herald-system", "burst"] {
        api.insert(NAMESPACES, fakeapi::namespace(ns));
    }
    api.insert(IPPOOLS, ip_pool("lab", &["10.0.0.0/16"]));
    api
}

/// One burst of `n`: (seconds from the last create to the last allocated, Services/s).
async fn burst(n: usize) -> (f64, f64) {
    let api = cluster();
    api.set_latency(LATENCY);
    let c = start(&api, "c0", Duration::from_secs(15), Duration::from_secs(2));
    assert!(
        api.wait_for(Duration::from_secs(30), |_| c.ready.load(Ordering::Acquire))
            .await
    );
    let first = Instant::now();
    api.insert_all(
        SERVICES,
        (0..n).map(|i| lb_service("burst", &format!("s{i:05}"), 80)),
    );
    let last_create = Instant::now();
    // Follows the change log, as a watcher would, instead of scanning every Service.
    let mut seen_allocated = std::collections::HashSet::new();
    let mut cursor = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen_allocated.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} allocated in 600 s",
            seen_allocated.len()
        );
        tokio::time::sleep(POLL).await;
        let (changed, rv) = api.changed_after(SERVICES, cursor);
        cursor = rv;
        for svc in changed.iter().filter(|s| allocated(s)) {
            seen_allocated.insert(
                svc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    let done = Instant::now();
    c.stop().await;
    (
        (done - last_create).as_secs_f64(),
        n as f64 / (done - first).as_secs_f64(),
    )
}

/// The leader dies holding the Lease; seconds until the follower allocates a new Service.
async fn handover(lease: Duration, retry: Duration) -> f64 {
    let api = cluster();
    api.set_latency(LATENCY);
    let leader = start(&api, "c0", lease, retry);
    assert!(
        api.wait_for(Duration::from_secs(30), |_| leader
            .ready
            .load(Ordering::Acquire))
            .await
    );
    api.insert(SERVICES, lb_service("default", "before", 80));
    assert!(
        api.wait_for(Duration::from_secs(30), |a| a.count(SERVICES, allocated)
            == 1)
            .await
    );
    let follower = start(&api, "c1", lease, retry);
    assert!(
        api.wait_for(Duration::from_secs(30), |_| follower
            .ready
            .load(Ordering::Acquire))
            .await
    );
    // Killed: no graceful shutdown, the Lease stays held.
    leader.kill();
    let killed = Instant::now();
    api.insert(SERVICES, lb_service("default", "after", 80));
    assert!(
        api.wait_for(lease * 4, |a| a.count(SERVICES, allocated) == 2)
            .await,
        "the follower never took over"
    );
    let took = killed.elapsed().as_secs_f64();
    follower.stop().await;
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    println!("fake API server latency per request: {LATENCY:?}");
    let only = std::env::var("HERALD_BENCH").unwrap_or_default();
    let bursts: &[(usize, usize)] = if only == "handover" {
        &[]
    } else {
        &[(1000, 7), (10_000, 7)]
    };
    for &(n, samples) in bursts {
        let mut after = Vec::new();
        let mut rate = Vec::new();
        for _ in 0..samples {
            let (a, r) = burst(n).await;
            after.push(a);
            rate.push(r);
        }
        let (a, r) = (median(after.clone()), median(rate));
        println!(
            "burst N={n}: last allocated {a:.2} s after the last create (median of {samples}, \
             min {:.2}, max {:.2}), {r:.0} Services/s; goal 2 s and 500/s; Cilium anchor \
             {CILIUM_PER_S:.0}/s, ratio {:.1}x",
            after.iter().copied().fold(f64::INFINITY, f64::min),
            after.iter().copied().fold(0.0, f64::max),
            r / CILIUM_PER_S
        );
    }
    if only == "burst" {
        return;
    }
    let (lease, retry) = (Duration::from_secs(4), Duration::from_secs(1));
    let mut took = Vec::new();
    for _ in 0..5 {
        took.push(handover(lease, retry).await);
    }
    println!(
        "handover (lease {}s, retry {}s): first allocation {:.2} s after the leader died \
         (median of 5, min {:.2}, max {:.2}); goal ≤ lease + 1 s = {} s",
        lease.as_secs(),
        retry.as_secs(),
        median(took.clone()),
        took.iter().copied().fold(f64::INFINITY, f64::min),
        took.iter().copied().fold(0.0, f64::max),
        lease.as_secs() + 1
    );
}
