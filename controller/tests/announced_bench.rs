//! What the `herald.dev/Announced` condition and the peers' sessions cost the API server
//! (issue 15): 10 000 Services announced by 100 nodes over BGP, against the stateful fake
//! API server. Run explicitly, in release mode:
//!
//! ```text
//! cargo test --release -p herald-controller --test announced_bench -- --ignored --nocapture
//! ```
//!
//! 1. At rest: writes per second from the controller over 10 s once everything shows the
//!    condition (the speakers write nothing at rest by construction; their side is tested
//!    in `speaker/tests/kube_cluster.rs`). Goal: under 5 per second in total.
//! 2. One node of the 100 flaps (down 10 s, up 10 s): every Service's message would change;
//!    such message-only changes are written at most 50 per second (`DETAIL_BUDGET`), so the
//!    figure is the write rate while it flaps.
//! 3. Flap storm: every node's sessions go down at once, then come back: every Service's
//!    status flips, written at once. Figures: the time until all 10 000 show it, and the
//!    writes.
//! 3. Anchor, measured in the same run against the same server: 10 000 plain status applies
//!    of one condition each, 16 at a time (what any design that puts the fact on the
//!    Service pays for one change of every Service).
//!
//! Figures go to docs/benchmarks.md by hand.

mod fakeapi;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use fakeapi::{BGPPEERS, FakeApi, HERALDNODES, IPPOOLS, NAMESPACES, SERVICES};
use futures::StreamExt;
use herald_controller::context::Settings;
use herald_controller::metrics::Metrics;
use herald_controller::run::run;
use herald_ipam::convert::LbClass;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;

const SERVICES_N: usize = 10_000;
const NODES_N: usize = 100;
const DEADLINE: Duration = Duration::from_secs(240);

fn address(i: usize) -> String {
    format!("10.0.{}.{}", i / 250, i % 250 + 1)
}

/// A Service with its address already in status (restored by the controller at start).
fn service(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": format!("s{i:05}"), "namespace": "bench",
                        "annotations": {"herald.dev/allocated-from": "bench"}},
           "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
           "status": {"loadBalancer": {"ingress": [{"ip": address(i)}]}}})
}

fn node_status(up: bool, addresses: &[String]) -> Value {
    let mut s = json!({
        "sessions": if up { "1/1" } else { "0/1" },
        "announcedCount": if up { addresses.len() } else { 0 },
        "bgp": [{"peer": "tor1", "address": "192.0.2.1",
                 "state": if up { "established" } else { "active" }}],
    });
    if up {
        s["announcements"] = json!([{"via": "BGP", "peers": ["tor1"], "addresses": addresses}]);
    }
    s
}

fn announced(svc: &Value) -> Option<&Value> {
    svc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "herald.dev/Announced")
}

fn writes(api: &FakeApi) -> usize {
    api.seen()
        .iter()
        .filter(|s| s.method != "GET" && s.path.ends_with("/status"))
        .count()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Waits until every Service's condition satisfies `ok`; returns the time it took.
async fn every_service(api: &FakeApi, what: &str, ok: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    let done = api
        .wait_for(DEADLINE, |a| {
            a.count(SERVICES, |s| announced(s).is_some_and(&ok)) == SERVICES_N
        })
        .await;
    assert!(done, "{what}: not within {DEADLINE:?}");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture in release mode"]
async fn announced_condition_at_rest_and_in_a_flap_storm() {
    let api = FakeApi::new();
    api.insert(
        IPPOOLS,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPPool",
               "metadata": {"name": "bench"}, "spec": {"addresses": ["10.0.0.0/16"]}}),
    );
    api.insert(
        BGPPEERS,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
               "metadata": {"name": "tor1"},
               "spec": {"peerAddress": "192.0.2.1", "peerASN": 64513, "myASN": 64512}}),
    );
    api.insert(
        NAMESPACES,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
    );
    api.insert_all(SERVICES, (0..SERVICES_N).map(service));
    let addresses: Vec<String> = (0..SERVICES_N).map(address).collect();
    let names: Vec<String> = (0..NODES_N).map(|i| format!("n{i:03}")).collect();
    for n in &names {
        api.insert(
            HERALDNODES,
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "HeraldNode",
                   "metadata": {"name": n}, "spec": {}, "status": node_status(true, &addresses)}),
        );
    }
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        api.client(),
        Settings {
            lb_class: LbClass::default(),
            instance: "bench".to_owned(),
        },
        None,
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(false)),
        rx,
    ));
    let w0 = writes(&api);
    let took = every_service(&api, "all announced by 100 nodes", |c| {
        c["status"] == "True"
            && c["message"] == "announced by 100 nodes (n000, n001, n002, ...) via BGP (tor1)"
    })
    .await;
    eprintln!(
        "start: every condition written {took:?} after the controller started, {} status writes",
        writes(&api) - w0
    );

    // At rest.
    let w0 = writes(&api);
    let rest = Duration::from_secs(10);
    tokio::time::sleep(rest).await;
    let at_rest = (writes(&api) - w0) as f64 / rest.as_secs_f64();
    let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
    for s in api
        .seen()
        .iter()
        .filter(|s| s.method != "GET" && s.path.ends_with("/status"))
        .skip(w0)
    {
        let kind = s.path.split('/').rev().nth(2).unwrap_or("?").to_owned();
        *by_kind.entry(kind).or_default() += 1;
    }
    eprintln!("at rest: {at_rest:.2} status writes per second (goal < 5): {by_kind:?}");

    // One node flaps.
    let w0 = writes(&api);
    let t = Instant::now();
    let s = node_status(false, &addresses);
    api.update(HERALDNODES, "", "n000", |o| o["status"] = s);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = node_status(true, &addresses);
    api.update(HERALDNODES, "", "n000", |o| o["status"] = s);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let one_node = (writes(&api) - w0) as f64 / t.elapsed().as_secs_f64();
    eprintln!("one node of {NODES_N} flapping: {one_node:.1} status writes per second");

    // Flap storm: every node down, then up, three rounds.
    let mut down_times = Vec::new();
    let mut up_times = Vec::new();
    let mut storm_writes = Vec::new();
    for _ in 0..3 {
        let w0 = writes(&api);
        for n in &names {
            let s = node_status(false, &addresses);
            api.update(HERALDNODES, "", n, |o| o["status"] = s);
        }
        down_times.push(
            every_service(&api, "every Service False", |c| c["status"] == "False")
                .await
                .as_secs_f64(),
        );
        for n in &names {
            let s = node_status(true, &addresses);
            api.update(HERALDNODES, "", n, |o| o["status"] = s);
        }
        up_times.push(
            every_service(&api, "every Service True again", |c| c["status"] == "True")
                .await
                .as_secs_f64(),
        );
        storm_writes.push(writes(&api) - w0);
    }
    let storm = median(down_times.clone()).max(median(up_times.clone()));
    eprintln!(
        "flap storm (every node down then up, 3 rounds): down {down_times:.2?} s, up \
         {up_times:.2?} s, writes per round {storm_writes:?}"
    );
    shutdown.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;

    // Anchor: 10 000 plain status applies, 16 at a time.
    let mut anchor = Vec::new();
    for round in 0..3 {
        let client = api.client();
        let t = Instant::now();
        futures::stream::iter(0..SERVICES_N)
            .map(|i| {
                let api: Api<Service> = Api::namespaced(client.clone(), "bench");
                async move {
                    let name = format!("s{i:05}");
                    let patch = json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": name, "namespace": "bench"},
                        "status": {"conditions": [{"type": "bench/Anchor", "status": "True",
                            "reason": "Anchor", "message": format!("round {round}"),
                            "lastTransitionTime": "2026-12-03T12:00:00Z"}]}});
                    api.patch_status(
                        &name,
                        &PatchParams::apply("bench-anchor").force(),
                        &Patch::Apply(&patch),
                    )
                    .await
                    .unwrap();
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        anchor.push(t.elapsed().as_secs_f64());
    }
    let anchor = median(anchor);
    eprintln!(
        "anchor: {SERVICES_N} plain status applies in {anchor:.2} s (median of 3); flap storm \
         median {storm:.2} s = {:.2}x the anchor",
        storm / anchor
    );
    assert!(at_rest < 5.0, "{at_rest} writes per second at rest");
}
