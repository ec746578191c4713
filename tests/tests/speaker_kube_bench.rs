//! Cluster-mode speaker with 10 000 Services (issue 12). Run explicitly, in release mode, as
//! root:
//!
//! ```text
//! cargo build --release --workspace
//! cargo test --release -p herald-tests --test speaker_kube_bench -- --ignored --nocapture
//! ```
//!
//! The real `herald-speaker` binary runs in a namespace of its own against the stateful fake
//! API server (`controller/tests/fakeapi`), served over HTTP on that namespace's loopback, and
//! peers with BIRD in a second namespace over a veth pair. The API holds 10 000 LoadBalancer
//! Services with an address in status and one EndpointSlice each (a ready endpoint on the
//! speaker's node).
//!
//! 1. Convergence: speaker start → all 10 000 /32 in BIRD's table.
//! 2. Latency: one Service's status changes to a new address (as the controller writes it) →
//!    the new /32 is in BIRD's table. p50/p99 over 200 changes, one at a time. Goal: p99 ≤
//!    200 ms. Anchor, measured in the same run: one `birdc` query (how the route is looked
//!    for, so the resolution of the figure).
//! 3. Memory: the speaker's RSS after convergence and after the changes. Goal ≤ 64 MiB.
//!
//! `paginated_lists_and_a_burst_of_services_all_reach_the_speaker` is not a benchmark and runs
//! in every CI run (1 200 Services in pages of 500, then a burst of 300).
//!
//! Figures go to docs/benchmarks.md by hand. `HERALD_BENCH_WRAP` names a wrapper command for
//! the speaker (a profiler, an allocator setting); `HERALD_BENCH_LOG` its log filter.

#[allow(unused_imports)]
#[path = "../../controller/tests/fakeapi/mod.rs"]
mod fakeapi;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fakeapi::{
    BGPADVERTISEMENTS, BGPPEERS, ENDPOINTSLICES, FakeApi, IPPOOLS, NAMESPACES, NODES, SERVICES,
};
use herald_tests::bird::Bird;
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};
use serde_json::{Value, json};

const N: usize = 10_000;
const CHANGES: usize = 200;
const NODE: &str = "bench-node";

fn service(i: usize, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": format!("s{i:05}"), "namespace": "bench",
                        "uid": format!("uid-s{i:05}"),
                        "annotations": {"herald.dev/allocated-from": "bench"}},
           "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
           "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
}

fn slice(i: usize) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("s{i:05}-abcde"), "namespace": "bench",
                        "labels": {"kubernetes.io/service-name": format!("s{i:05}")}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": [format!("10.244.{}.{}", i / 250, i % 250 + 1)],
                          "conditions": {"ready": true, "serving": true, "terminating": false},
                          "nodeName": NODE}],
           "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]})
}

fn vip(i: usize) -> String {
    format!("10.200.{}.{}", i / 256, i % 256)
}

fn moved(k: usize) -> String {
    format!("10.201.{}.{}", k / 250, k % 250 + 1)
}

/// The cluster of the benchmark with `n` Services and EndpointSlices.
fn cluster(n: usize) -> FakeApi {
    let api = FakeApi::new();
    api.insert(
        NAMESPACES,
        json!({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": "bench"}}),
    );
    api.insert(
        NODES,
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
               "status": {"conditions": [{"type": "Ready", "status": "True"}],
                          "addresses": [{"type": "InternalIP", "address": "10.77.0.1"}]}}),
    );
    api.insert(
        IPPOOLS,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPPool",
               "metadata": {"name": "bench"},
               "spec": {"addresses": ["10.200.0.0/16", "10.201.0.0/16"]}}),
    );
    api.insert(
        BGPPEERS,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
               "metadata": {"name": "rtr"},
               "spec": {"peerAddress": "10.77.0.2", "peerASN": 64513, "myASN": 64512,
                        "routerID": "10.77.0.1", "connectTime": "1s"}}),
    );
    api.insert(
        BGPADVERTISEMENTS,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
               "metadata": {"name": "adv"}, "spec": {"ipPools": ["bench"]}}),
    );
    api.insert_all(SERVICES, (0..n).map(|i| service(i, &vip(i))));
    api.insert_all(ENDPOINTSLICES, (0..n).map(slice));
    api
}

/// Serves `api` over HTTP on a listener bound inside `ns`'s loopback.
fn serve(api: FakeApi, ns: &Netns, rt: &tokio::runtime::Runtime) -> SocketAddr {
    let listener = ns.run_in(|| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr");
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let api = api.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let req = http::Request::from_parts(parts, kube::client::Body::from(bytes));
                api.handle(req).await.map(axum::body::Body::new)
            }
        });
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

/// A kubeconfig for the fake API server at `addr`, written in `dir`.
fn kubeconfig(dir: &std::path::Path, addr: SocketAddr) -> std::path::PathBuf {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: 'http://{addr}'}}}}]
users: [{{name: bench, user: {{}}}}]
contexts: [{{name: bench, context: {{cluster: fake, user: bench, namespace: default}}}}]
current-context: bench
"
        ),
    )
    .expect("kubeconfig");
    kubeconfig
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn has_route(bird: &Bird, prefix: &str) -> bool {
    bird.birdc(&["show", "route", prefix]).contains(prefix)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
#[ignore = "benchmark: run explicitly, in release mode, as root"]
fn speaker_with_ten_thousand_services() {
    require_privileged!();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let spk = Netns::new("skb-spk");
    let rtr = Netns::new("skb-rtr");
    veth_pair(&spk, &["10.77.0.1/24"], &rtr, &["10.77.0.2/24"]);
    let bird = Bird::start(
        &rtr,
        "router id 10.77.0.2;
protocol device { }
protocol bgp hrd {
  local 10.77.0.2 as 64513;
  neighbor 10.77.0.1 as 64512;
  passive on;
  ipv4 { import all; export none; };
}
",
    );
    let api = cluster(N);
    let addr = serve(api.clone(), &spk, &rt);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kubeconfig(dir.path(), addr);

    let started = Instant::now();
    // HERALD_BENCH_WRAP runs the speaker under a wrapper, for profiling: e.g.
    // `env MALLOC_ARENA_MAX=2` (exec's the speaker: the RSS figures stay its own) or
    // `heaptrack -o /tmp/speaker` (the figures are then the wrapper's).
    let binary = workspace_binary("herald-speaker");
    let wrap = std::env::var("HERALD_BENCH_WRAP").unwrap_or_default();
    let mut words: Vec<&str> = wrap.split_whitespace().collect();
    words.push(binary.to_str().expect("path"));
    let mut speaker = Daemon::spawn(
        "herald-speaker",
        spk.command(words[0])
            .args(&words[1..])
            .env(
                "HERALD_LOG",
                std::env::var("HERALD_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .args(["--node-name", NODE, "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--admin-addr", "127.0.0.1:19471"])
            .args(["--bgp-listen-addr", "127.0.0.1:11179"]),
    );
    wait_until(
        "all Services routed at BIRD",
        Duration::from_secs(180),
        || {
            assert!(!speaker.has_exited(), "herald-speaker exited");
            match bird.route_count("hrd") {
                Ok(n) if n == N => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    let converged = started.elapsed();
    let (rss_converged, _) = rss_kib(speaker.pid());

    // The anchor: one birdc query for a route that is there.
    let mut birdc = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        assert!(has_route(&bird, &format!("{}/32", vip(i))));
        birdc.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    birdc.sort_by(f64::total_cmp);
    let birdc_ms = percentile(&birdc, 0.5);

    let mut latency = Vec::new();
    for k in 0..CHANGES {
        let i = (k * 37) % N;
        let new = moved(k);
        let prefix = format!("{new}/32");
        let t = Instant::now();
        api.update(SERVICES, "bench", &format!("s{i:05}"), |o| {
            o["status"]["loadBalancer"]["ingress"] = json!([{"ip": new}]);
        });
        // Bounded by count and time; each query is a birdc process (a few ms).
        let mut found = false;
        for _ in 0..20_000 {
            if has_route(&bird, &prefix) {
                found = true;
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        if !found {
            let watches: Vec<String> = api
                .seen()
                .iter()
                .filter(|s| s.is_watch())
                .map(|s| format!("{} {} {}", s.path, s.query, s.code))
                .collect();
            let status =
                herald_tests::http::get(&spk, "127.0.0.1:19471".parse().unwrap(), "/status")
                    .unwrap_or_else(|e| e);
            let around: String = status
                .find(&format!("s{i:05}"))
                .map(|at| status[at.saturating_sub(200)..(at + 600).min(status.len())].to_owned())
                .unwrap_or_else(|| status.chars().take(1500).collect());
            panic!(
                "{prefix} never reached BIRD; watches: {watches:#?}\nstatus near s{i:05}: {around}"
            );
        }
        latency.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let first_ms = latency[0];
    let (rss_after, hwm) = rss_kib(speaker.pid());
    latency.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latency, 0.5), percentile(&latency, 0.99));
    println!(
        "speaker, {N} Services + EndpointSlices, one BGP peer (BIRD):\n\
         convergence: all {N} routes at BIRD {:.2} s after the speaker started\n\
         status change -> route at BIRD: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms over \
         {CHANGES} changes; goal p99 <= 200 ms (the first change, right after start: \
         {first_ms:.0} ms)\n\
         anchor: one birdc query {birdc_ms:.1} ms (median of 50); p99 / anchor {:.1}x\n\
         RSS: {:.1} MiB after convergence, {:.1} MiB after the changes, peak {:.1} MiB; goal \
         <= 64 MiB",
        converged.as_secs_f64(),
        latency[latency.len() - 1],
        p99 / birdc_ms,
        rss_converged as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
    // Under a wrapper that does not exec (heaptrack), the speaker is the wrapper's child:
    // SIGTERM lets the profiler write its data, and nothing is left running.
    let pid = speaker.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    speaker.kill();
    drop(bird);
    rt.shutdown_background();
}

/// Not a benchmark: in every CI run. 1 200 Services and as many EndpointSlices are listed in
/// pages of 500, as a real API server sends them, and then 300 more Services arrive in one
/// burst of watch events; the speaker's facts tables must hold every one (all granted, in
/// `/status`), not the first page or the last.
#[test]
fn paginated_lists_and_a_burst_of_services_all_reach_the_speaker() {
    require_privileged!();
    const AT_START: usize = 1200;
    const BURST: usize = 300;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let spk = Netns::new("skp-spk");
    let api = cluster(AT_START);
    let addr = serve(api.clone(), &spk, &rt);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kubeconfig(dir.path(), addr);
    let admin: SocketAddr = "127.0.0.1:19472".parse().unwrap();
    let mut speaker = Daemon::spawn(
        "herald-speaker",
        spk.command(workspace_binary("herald-speaker").to_str().expect("path"))
            .env("HERALD_LOG", "warn")
            .args(["--node-name", NODE, "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--admin-addr", &admin.to_string()])
            .args(["--bgp-listen-addr", "127.0.0.1:11180"]),
    );
    let ns = &spk;
    let services = |want: usize| {
        move || {
            let body = herald_tests::http::get(ns, admin, "/status")?;
            let status: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let n = status["services"].as_array().map_or(0, Vec::len);
            if n == want {
                Ok(())
            } else {
                Err(format!("{n} Services in /status"))
            }
        }
    };
    wait_until(
        "every listed Service in /status",
        Duration::from_secs(60),
        services(AT_START),
    );
    assert!(!speaker.has_exited(), "herald-speaker exited");
    let pages = api
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/services") && !s.is_watch())
        .count();
    assert!(
        pages >= 3,
        "{AT_START} Services listed in {pages} request(s), not pages of 500"
    );
    api.insert_all(
        SERVICES,
        (AT_START..AT_START + BURST).map(|i| service(i, &vip(i))),
    );
    wait_until(
        "the burst's Services in /status",
        Duration::from_secs(60),
        services(AT_START + BURST),
    );
    speaker.kill();
    rt.shutdown_background();
}
