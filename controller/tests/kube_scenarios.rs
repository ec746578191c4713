//! The whole controller (`run`) against a fake API server with state ([`fakeapi`]): the
//! situations a real cluster puts it in on first contact. Each test is one of the failures
//! seen against a real kube-apiserver (see the issue "A real API server refuses the IPPool
//! CRD, and the controller stalls"): every CLI mode must start allocating, with nothing,
//! one or thousands of objects present, with bursts, after a `410 Gone`, and with a Lease
//! left by an instance that died.

mod fakeapi;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fakeapi::{FakeApi, IPPOOLS, LEASES, NAMESPACES, SERVICES, allocated, ip_pool, lb_service};
use herald_controller::context::Settings;
use herald_controller::election::Timing;
use herald_controller::metrics::Metrics;
use herald_controller::pools::STATUS_DELAY;
use herald_controller::run::{Election, run};
use herald_ipam::convert::LbClass;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running controller and what a test reads of it.
struct Running {
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the controller did not stop within 20 s of shutdown")
            .unwrap()
            .unwrap();
    }

    fn leader(&self) -> i64 {
        self.metrics.leader.get()
    }
}

fn election(retry: Duration, duration: Duration) -> Election {
    Election {
        namespace: "herald-system".to_owned(),
        name: "herald-controller".to_owned(),
        timing: Timing {
            lease_duration: duration,
            retry_period: retry,
        },
    }
}

fn start(api: &FakeApi, instance: &str, election: Option<Election>) -> Running {
    start_with(api, instance, election, LbClass::default())
}

fn start_with(
    api: &FakeApi,
    instance: &str,
    election: Option<Election>,
    lb_class: LbClass,
) -> Running {
    if let Ok(filter) = std::env::var("HERALD_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(Metrics::new());
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        api.client(),
        Settings {
            lb_class,
            instance: instance.to_owned(),
        },
        election,
        metrics.clone(),
        ready.clone(),
        rx,
    ));
    Running {
        ready,
        metrics,
        shutdown,
        task,
    }
}

fn base(api: &FakeApi) {
    for ns in ["default", "kube-system", "herald-system", "burst"] {
        api.insert(NAMESPACES, fakeapi::namespace(ns));
    }
}

/// Five /24s without `allocateTo`, as in the failing lab.
fn five_24s(api: &FakeApi) {
    api.insert(
        IPPOOLS,
        ip_pool(
            "lab",
            &[
                "10.1.0.0/24",
                "10.1.1.0/24",
                "10.1.2.0/24",
                "10.1.3.0/24",
                "10.1.4.0/24",
            ],
        ),
    );
}

fn allocated_count(api: &FakeApi) -> usize {
    api.count(SERVICES, allocated)
}

/// Every Service allocated, with distinct addresses.
fn assert_all_allocated_distinct(api: &FakeApi, n: usize) {
    let mut seen = std::collections::BTreeSet::new();
    for svc in api.all(SERVICES) {
        let ips = fakeapi::ingress(&svc);
        assert_eq!(ips.len(), 1, "{}: {ips:?}", svc["metadata"]["name"]);
        assert!(seen.insert(ips[0].clone()), "{} given twice", ips[0]);
    }
    assert_eq!(seen.len(), n);
}

#[tokio::test]
async fn without_leader_election_an_empty_cluster_allocates_what_is_created_later() {
    let api = FakeApi::new();
    base(&api);
    let c = start(&api, "c0", None);
    assert!(
        api.wait_for(Duration::from_secs(10), |_| c.ready.load(Ordering::Acquire))
            .await,
        "/readyz never turned ready with --no-leader-election"
    );
    five_24s(&api);
    api.insert(SERVICES, lb_service("default", "web", 80));
    assert!(
        api.wait_for(Duration::from_secs(10), |a| allocated_count(a) == 1)
            .await,
        "--no-leader-election allocated nothing within 10 s; requests: {:?}",
        api.seen()
    );
    c.stop().await;
}

#[tokio::test]
async fn without_leader_election_existing_services_are_allocated_at_start() {
    let api = FakeApi::new();
    base(&api);
    five_24s(&api);
    api.insert(SERVICES, lb_service("default", "one", 80));
    let c = start(&api, "c0", None);
    assert!(
        api.wait_for(Duration::from_secs(10), |a| allocated_count(a) == 1)
            .await,
        "the one Service present at start was not allocated within 10 s"
    );
    assert!(c.ready.load(Ordering::Acquire), "allocating but not ready");
    assert_eq!(c.leader(), 1, "a controller without election leads");
    c.stop().await;
}

/// `--lb-class-exclusive`: Herald runs beside the cluster's default load balancer, which
/// takes the Services without a class.
#[tokio::test]
async fn with_an_exclusive_class_a_service_without_a_class_gets_no_address() {
    let api = FakeApi::new();
    base(&api);
    five_24s(&api);
    let mut ours = lb_service("default", "ours", 80);
    ours["spec"]["loadBalancerClass"] = json!("example.com/lb");
    api.insert(SERVICES, ours);
    api.insert(SERVICES, lb_service("default", "classless", 80));
    let c = start_with(&api, "c0", None, LbClass::exclusive("example.com/lb"));
    let ours_allocated = |a: &FakeApi| {
        a.get(SERVICES, "default", "ours")
            .is_some_and(|s| allocated(&s))
    };
    assert!(
        api.wait_for(Duration::from_secs(10), ours_allocated).await,
        "the Service of the exclusive class got no address within 10 s"
    );
    // A Service created after the first reconcile pass is not taken either.
    api.insert(SERVICES, lb_service("default", "later", 80));
    let mut later_ours = lb_service("default", "later-ours", 80);
    later_ours["spec"]["loadBalancerClass"] = json!("example.com/lb");
    api.insert(SERVICES, later_ours);
    assert!(
        api.wait_for(Duration::from_secs(10), |a| {
            a.get(SERVICES, "default", "later-ours")
                .is_some_and(|s| allocated(&s))
        })
        .await,
        "a later Service of the class got no address"
    );
    for name in ["classless", "later"] {
        let svc = api.get(SERVICES, "default", name).unwrap();
        assert!(!allocated(&svc), "{name} was given an address: {svc}");
        assert!(
            svc["metadata"]["annotations"]["herald.dev/allocated-from"].is_null(),
            "{name} was annotated: {svc}"
        );
    }
    c.stop().await;
}

/// Failure 2: with more than one page of Services the runtime's controller polls the Service
/// store's readiness after the leadership task did, and the lone wakeup went to it: nothing
/// was ever allocated and /readyz stayed 503.
#[tokio::test]
async fn without_leader_election_1200_services_present_at_start_are_all_allocated() {
    let api = FakeApi::new();
    base(&api);
    api.insert(IPPOOLS, ip_pool("lab", &["10.1.0.0/20"]));
    api.insert_all(
        SERVICES,
        (0..1200).map(|i| lb_service("default", &format!("s{i:04}"), 80)),
    );
    let c = start(&api, "c0", None);
    assert!(
        api.wait_for(Duration::from_secs(60), |a| allocated_count(a) == 1200)
            .await,
        "{} of 1200 Services allocated within 60 s with --no-leader-election",
        allocated_count(&api)
    );
    assert!(c.ready.load(Ordering::Acquire), "allocating but not ready");
    assert_all_allocated_distinct(&api, 1200);
    c.stop().await;
}

#[tokio::test]
async fn a_burst_of_300_services_after_leadership_is_allocated_and_pools_are_watched() {
    let api = FakeApi::new();
    api.set_latency(Duration::from_millis(3));
    base(&api);
    five_24s(&api);
    let c = start(
        &api,
        "c0",
        Some(election(Duration::from_secs(2), Duration::from_secs(15))),
    );
    assert!(
        api.wait_for(Duration::from_secs(10), |_| c.ready.load(Ordering::Acquire))
            .await,
        "/readyz never turned ready"
    );
    // One `kubectl apply` of 300 Services: 300 ADDED events back to back.
    api.insert_all(
        SERVICES,
        (0..300).map(|i| lb_service("burst", &format!("s{i:03}"), 80)),
    );
    let started = Instant::now();
    assert!(
        api.wait_for(Duration::from_secs(30), |a| allocated_count(a) == 300)
            .await,
        "{} of 300 Services allocated within 30 s",
        allocated_count(&api)
    );
    eprintln!("300 Services allocated in {:?}", started.elapsed());
    assert_all_allocated_distinct(&api, 300);
    let pool_watches = api
        .seen()
        .iter()
        .filter(|s| s.is_watch() && s.path.ends_with("/ippools"))
        .count();
    assert!(
        pool_watches >= 1,
        "the IPPool list was never followed by a watch"
    );
    // The pool's status counts them.
    let pool = api.get(IPPOOLS, "", "lab").unwrap();
    assert!(
        api.wait_for(Duration::from_secs(5), |a| a
            .get(IPPOOLS, "", "lab")
            .unwrap()["status"]["assignedIPv4"]
            == 300)
            .await,
        "pool status: {}",
        pool["status"]
    );
    // Written together, not once per Service: at most one write per STATUS_DELAY.
    let took = started.elapsed();
    let writes = api
        .seen()
        .iter()
        .filter(|s| s.method == "PATCH" && s.path.ends_with("/ippools/lab/status"))
        .count();
    let bound = took.as_millis() / STATUS_DELAY.as_millis() + 2;
    assert!(
        writes as u128 <= bound,
        "{writes} pool status writes for 300 allocations in {took:?}; at most {bound} expected"
    );
    c.stop().await;
}

#[tokio::test]
async fn two_thousand_services_present_at_start_are_listed_in_pages_and_all_allocated() {
    let api = FakeApi::new();
    base(&api);
    api.insert(IPPOOLS, ip_pool("lab", &["10.1.0.0/20"]));
    // Half already hold an address from an earlier controller; the rest wait.
    api.insert_all(
        SERVICES,
        (0..2000).map(|i| {
            let mut s = lb_service("default", &format!("s{i:04}"), 80);
            if i % 2 == 0 {
                s["status"] = json!({"loadBalancer": {"ingress": [
                    {"ip": format!("10.1.{}.{}", (i / 2) / 250, (i / 2) % 250 + 1)}]}});
                s["metadata"]["annotations"] = json!({"herald.dev/allocated-from": "lab"});
            }
            s
        }),
    );
    let before: Vec<_> = api
        .all(SERVICES)
        .iter()
        .filter(|s| allocated(s))
        .map(|s| (s["metadata"]["name"].clone(), fakeapi::ingress(s)))
        .collect();
    let c = start(
        &api,
        "c0",
        Some(election(Duration::from_secs(2), Duration::from_secs(15))),
    );
    assert!(
        api.wait_for(Duration::from_secs(60), |a| allocated_count(a) == 2000)
            .await,
        "{} of 2000 Services allocated within 60 s; last requests: {:?}",
        allocated_count(&api),
        {
            let mut m = std::collections::BTreeMap::new();
            for e in api.all(fakeapi::EVENTS) {
                *m.entry(format!("event {} {}", e["reason"], e["series"]["count"]))
                    .or_insert(0) += 1;
            }
            for s in api.seen() {
                let k = format!(
                    "{} {} {} {}",
                    s.method,
                    s.path.split('/').take(5).collect::<Vec<_>>().join("/"),
                    if s.is_watch() { "watch" } else { "" },
                    s.code
                );
                *m.entry(k).or_insert(0) += 1;
            }
            m
        }
    );
    assert_all_allocated_distinct(&api, 2000);
    for (name, ips) in before {
        let s = api
            .get(SERVICES, "default", name.as_str().unwrap())
            .unwrap();
        assert_eq!(fakeapi::ingress(&s), ips, "{name} moved");
    }
    let pages = api
        .seen()
        .iter()
        .filter(|s| !s.is_watch() && s.path == "/api/v1/services" && s.query.contains("continue="))
        .count();
    assert!(pages >= 3, "the Service list was not read in pages of 500");
    // The restore's list too, not only the watch's: no list asks for everything at once.
    let whole: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| !s.is_watch() && s.path == "/api/v1/services" && !s.query.contains("limit="))
        .map(|s| s.query.clone())
        .collect();
    assert!(
        whole.is_empty(),
        "Services listed without a limit: {whole:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_410_gone_on_the_watches_relists_and_allocation_goes_on() {
    let api = FakeApi::new();
    base(&api);
    five_24s(&api);
    api.insert(SERVICES, lb_service("default", "first", 80));
    let c = start(&api, "c0", None);
    assert!(
        api.wait_for(Duration::from_secs(10), |a| allocated_count(a) == 1)
            .await
    );
    // etcd compacted and the watches ended: the resumed watches get 410 Gone.
    api.compact();
    api.end_watches();
    api.insert(SERVICES, lb_service("default", "second", 80));
    assert!(
        api.wait_for(Duration::from_secs(20), |a| allocated_count(a) == 2)
            .await,
        "no allocation after a 410 Gone; requests: {:?}",
        api.seen().iter().rev().take(20).collect::<Vec<_>>()
    );
    // A pool change after the relist is still seen.
    api.insert(IPPOOLS, ip_pool("second-pool", &["10.9.0.0/24"]));
    api.insert(
        SERVICES,
        fakeapi::annotate(
            lb_service("default", "third", 80),
            "herald.dev/pool",
            "second-pool",
        ),
    );
    assert!(
        api.wait_for(Duration::from_secs(20), |a| a
            .get(SERVICES, "default", "third")
            .is_some_and(
                |s| fakeapi::ingress(&s) == ["10.9.0.0"] || fakeapi::ingress(&s) == ["10.9.0.1"]
            ))
        .await,
        "a pool created after the relist was not used"
    );
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_left_by_a_dead_instance_is_taken_over_after_it_expires() {
    let api = FakeApi::new();
    base(&api);
    five_24s(&api);
    api.insert(SERVICES, lb_service("default", "web", 80));
    api.insert(
        LEASES,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "herald-controller", "namespace": "herald-system"},
               "spec": {"holderIdentity": "c-dead", "leaseDurationSeconds": 15,
                        "renewTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                        "acquireTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                        "leaseTransitions": 3}}),
    );
    let started = tokio::time::Instant::now();
    let c = start(
        &api,
        "c1",
        Some(election(Duration::from_secs(2), Duration::from_secs(15))),
    );
    assert!(
        api.wait_for(Duration::from_secs(60), |a| allocated_count(a) == 1)
            .await,
        "never took over from the dead instance"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(13),
        "wrote after {took:?}, before the dead instance's Lease expired"
    );
    assert!(
        took <= Duration::from_secs(15 + 3),
        "took {took:?}: more than lease duration + one retry"
    );
    let lease = api
        .get(LEASES, "herald-system", "herald-controller")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "c1");
    assert_eq!(lease["spec"]["leaseTransitions"], 4);
    c.stop().await;
}

#[tokio::test]
async fn a_restart_right_after_sigterm_leads_again_at_once() {
    let api = FakeApi::new();
    base(&api);
    five_24s(&api);
    api.insert(SERVICES, lb_service("default", "web", 80));
    let timing = || Some(election(Duration::from_secs(2), Duration::from_secs(15)));
    let first = start(&api, "controller-7d9f-abc", timing());
    assert!(
        api.wait_for(Duration::from_secs(10), |a| allocated_count(a) == 1)
            .await
    );
    first.stop().await;
    let lease = api
        .get(LEASES, "herald-system", "herald-controller")
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_none_or(str::is_empty),
        "the Lease was not released at shutdown: {}",
        lease["spec"]
    );
    // The next instance (another pod name) must lead at once, not after 15 s.
    let started = Instant::now();
    let second = start(&api, "controller-7d9f-def", timing());
    api.insert(SERVICES, lb_service("default", "after", 80));
    assert!(
        api.wait_for(Duration::from_secs(10), |a| allocated_count(a) == 2)
            .await,
        "the restarted controller did not allocate within 10 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} to lead again",
        started.elapsed()
    );
    assert_eq!(second.leader(), 1);
    second.stop().await;
}

/// 10 000 Services present at start, in both modes: every one allocated, each address once.
#[tokio::test]
async fn ten_thousand_services_present_at_start_are_all_allocated_in_both_modes() {
    for election_on in [true, false] {
        let api = FakeApi::new();
        base(&api);
        api.insert(IPPOOLS, ip_pool("lab", &["10.8.0.0/16"]));
        api.insert_all(
            SERVICES,
            (0..10_000).map(|i| lb_service("burst", &format!("s{i:05}"), 80)),
        );
        let c = start(
            &api,
            "c0",
            election_on.then(|| election(Duration::from_secs(2), Duration::from_secs(15))),
        );
        assert!(
            api.wait_for_every(Duration::from_secs(120), Duration::from_millis(200), |a| {
                allocated_count(a) == 10_000
            })
            .await,
            "election {election_on}: {} of 10 000 allocated within 120 s",
            allocated_count(&api)
        );
        assert!(
            c.ready.load(Ordering::Acquire),
            "election {election_on}: allocating but not ready"
        );
        assert_all_allocated_distinct(&api, 10_000);
        c.stop().await;
    }
}

/// A pool with `allocateTo.namespaceSelectors` serves only the namespaces it selects; a
/// namespace labelled later gets its Services allocated without any change to them.
#[tokio::test]
async fn a_pool_with_allocate_to_serves_the_selected_namespaces_and_follows_their_labels() {
    let api = FakeApi::new();
    base(&api);
    let mut team_a = fakeapi::namespace("team-a");
    team_a["metadata"]["labels"] = json!({"team": "a"});
    api.insert(NAMESPACES, team_a);
    api.insert(NAMESPACES, fakeapi::namespace("team-b"));
    let mut pool = ip_pool("teams", &["10.9.0.0/24"]);
    pool["spec"]["allocateTo"] = json!({"namespaceSelectors": [{"matchExpressions": [{"key": "team", "operator": "Exists"}]}]});
    api.insert(IPPOOLS, pool);
    api.insert(SERVICES, lb_service("team-a", "web", 80));
    api.insert(SERVICES, lb_service("team-b", "web", 80));
    let c = start(
        &api,
        "c0",
        Some(election(Duration::from_secs(2), Duration::from_secs(15))),
    );
    let allocated_in =
        |a: &FakeApi, ns: &str| a.get(SERVICES, ns, "web").is_some_and(|s| allocated(&s));
    assert!(
        api.wait_for(Duration::from_secs(10), |a| allocated_in(a, "team-a"))
            .await,
        "the selected namespace's Service was not allocated"
    );
    // team-b is not selected: it fails, with a Warning naming why, and holds nothing.
    assert!(
        api.wait_for(Duration::from_secs(10), |a| {
            a.all(fakeapi::EVENTS).iter().any(|e| {
                e["reason"] == "AllocationFailed" && e["regarding"]["namespace"] == "team-b"
            })
        })
        .await,
        "no AllocationFailed Event on team-b/web"
    );
    assert!(!allocated_in(&api, "team-b"), "team-b/web got an address");
    api.update(NAMESPACES, "", "team-b", |ns| {
        ns["metadata"]["labels"] = json!({"team": "b"});
    });
    assert!(
        api.wait_for(Duration::from_secs(10), |a| allocated_in(a, "team-b"))
            .await,
        "labelling the namespace did not get its Service allocated"
    );
    c.stop().await;
}
