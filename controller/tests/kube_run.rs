//! The whole controller (`run`: watches, restore, leadership, reconciles) against a mocked
//! API server that answers by path, as a real one would, in whatever order the tasks ask.

mod apiserver;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use apiserver::{annotate, created, list, pool, service, with_status};
use herald_controller::context::Settings;
use herald_controller::metrics::Metrics;
use herald_controller::run::run;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_test::mock;

fn reply(value: &Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

/// The configuration kinds the controller checks: none here.
fn config_list(path: &str) -> Option<Value> {
    let kind = match path.strip_prefix("/apis/herald.dev/v1alpha1/")? {
        "bgppeers" => "BGPPeerList",
        "bgpadvertisements" => "BGPAdvertisementList",
        "l2advertisements" => "L2AdvertisementList",
        "bfdprofiles" => "BFDProfileList",
        "heraldnodes" => "HeraldNodeList",
        _ => return None,
    };
    Some(list::<Value>(kind, "herald.dev/v1alpha1", &[]))
}

#[tokio::test]
async fn the_controller_restores_existing_addresses_before_allocating_and_releases_deleted_services()
 {
    let (service_mock, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service_mock, "default");
    let old = annotate(
        created(
            with_status(service("old", 80), &["10.0.0.10"]),
            1_600_000_000,
        ),
        "herald.dev/allocated-from",
        "pool-a",
    );
    let fresh = created(service("fresh", 81), 1_700_000_000);
    let pools = list(
        "IPPoolList",
        "herald.dev/v1alpha1",
        &[pool("pool-a", &["10.0.0.10-10.0.0.11"], "1")],
    );
    let namespaces = list(
        "NamespaceList",
        "v1",
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})],
    );
    let services = list("ServiceList", "v1", &[old, fresh]);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let controller = tokio::spawn(run(
        client,
        Settings {
            lb_class: herald_ipam::convert::LbClass::default(),
            instance: "controller-0".to_owned(),
        },
        None,
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(false)),
        shutdown_rx,
    ));

    let mut watches = Vec::new();
    let mut writes: Vec<(String, String, Value)> = Vec::new();
    let server = async {
        loop {
            let (req, send) = handle
                .next_request()
                .await
                .expect("controller stopped early");
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let path = uri.split('?').next().unwrap().to_owned();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if method == "GET" && uri.contains("watch=true") {
                // Watches stay open and quiet.
                watches.push((path, send));
                continue;
            }
            match (method.as_str(), path.as_str()) {
                ("GET", "/apis/herald.dev/v1alpha1/ippools") => send.send_response(reply(&pools)),
                ("GET", p) if config_list(p).is_some() => {
                    send.send_response(reply(&config_list(p).unwrap()))
                }
                ("GET", "/api/v1/namespaces") => send.send_response(reply(&namespaces)),
                ("GET", "/api/v1/services") => send.send_response(reply(&services)),
                _ => {
                    send.send_response(reply(&body));
                    let done = path == "/api/v1/namespaces/default/services/fresh/status";
                    writes.push((method, path, body));
                    if done {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("no status write for the new Service within 30 s");

    let status = &writes.last().unwrap().2;
    // 10.0.0.10 is in old's status: restored first, so fresh gets the other address.
    assert_eq!(
        status["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "10.0.0.11"}])
    );
    assert!(
        writes
            .iter()
            .all(|(_, path, _)| !path.contains("/services/old")),
        "the restored Service is left alone: {writes:?}"
    );

    // Deleting the new Service (a DELETED watch event) releases its address: the pool's
    // status counts one address again.
    let svc_watch = watches
        .iter()
        .position(|(path, _)| path == "/api/v1/services")
        .expect("a Service watch");
    let (_, send) = watches.remove(svc_watch);
    let mut gone = created(service("fresh", 81), 1_700_000_000);
    gone.metadata.resource_version = Some("2".to_owned());
    let event = json!({"type": "DELETED", "object": gone});
    send.send_response(
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(format!("{event}\n").into_bytes()))
            .unwrap(),
    );
    let released = async {
        loop {
            let (req, send) = handle
                .next_request()
                .await
                .expect("controller stopped early");
            let uri = req.uri().to_string();
            let path = uri.split('?').next().unwrap().to_owned();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if uri.contains("watch=true") {
                watches.push((path, send));
                continue;
            }
            send.send_response(reply(&body));
            if path == "/apis/herald.dev/v1alpha1/ippools/pool-a/status"
                && body["status"]["assignedIPv4"] == 1
                && body["status"]["availableIPv4"] == 1
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), released)
        .await
        .expect("the deleted Service's address was not released within 30 s");

    shutdown_tx.send(true).unwrap();
    // Keep answering until the controller has stopped.
    let drain = async {
        while let Some((req, send)) = handle.next_request().await {
            if req.uri().to_string().contains("watch=true") {
                watches.push((String::new(), send));
            } else {
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                send.send_response(reply(&body));
            }
        }
    };
    tokio::select! {
        r = controller => r.unwrap().unwrap(),
        () = drain => {}
    }
}

#[tokio::test(start_paused = true)]
async fn a_follower_writes_nothing_until_the_leader_lets_the_lease_expire_then_takes_over() {
    use herald_controller::election::Timing;
    use herald_controller::run::Election;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    const LEASE: &str =
        "/apis/coordination.k8s.io/v1/namespaces/herald-system/leases/herald-controller";
    let (service_mock, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service_mock, "default");
    let fresh = service("fresh", 81);
    let pools = list(
        "IPPoolList",
        "herald.dev/v1alpha1",
        &[pool("pool-a", &["10.0.0.10-10.0.0.11"], "1")],
    );
    let namespaces = list("NamespaceList", "v1", &Vec::<Value>::new());
    let services = list("ServiceList", "v1", &[fresh]);
    let lease = |renewed: Timestamp| {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "herald-controller", "namespace": "herald-system", "resourceVersion": "3"},
            "spec": {"holderIdentity": "controller-1", "leaseDurationSeconds": 15,
                     "renewTime": renewed.to_string(), "leaseTransitions": 0},
        })
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let controller = tokio::spawn(run(
        client,
        Settings {
            lb_class: herald_ipam::convert::LbClass::default(),
            instance: "controller-0".to_owned(),
        },
        Some(Election {
            namespace: "herald-system".to_owned(),
            name: "herald-controller".to_owned(),
            timing: Timing {
                lease_duration: Duration::from_secs(15),
                retry_period: Duration::from_secs(2),
            },
        }),
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(false)),
        shutdown_rx,
    ));

    // The other replica's last renewal: one record, which this one must see unchanged for a
    // lease duration on its own clock before it takes over.
    let last_renewal = Timestamp::now() - SignedDuration::from_secs(16);
    let mut watches = Vec::new();
    let mut follower_rounds = 0;
    let mut took_over = false;
    let server = async {
        loop {
            let (req, send) = handle
                .next_request()
                .await
                .expect("controller stopped early");
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let path = uri.split('?').next().unwrap().to_owned();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if method == "GET" && uri.contains("watch=true") {
                watches.push(send);
                continue;
            }
            match (method.as_str(), path.as_str()) {
                ("GET", "/apis/herald.dev/v1alpha1/ippools") => send.send_response(reply(&pools)),
                ("GET", p) if config_list(p).is_some() => {
                    send.send_response(reply(&config_list(p).unwrap()))
                }
                ("GET", "/api/v1/namespaces") => send.send_response(reply(&namespaces)),
                ("GET", "/api/v1/services") => send.send_response(reply(&services)),
                ("GET", LEASE) if follower_rounds < 3 => {
                    // The other replica renews: this one follows.
                    follower_rounds += 1;
                    send.send_response(reply(&lease(Timestamp::now())));
                }
                ("GET", LEASE) => {
                    // The other replica stopped renewing.
                    send.send_response(reply(&lease(last_renewal)));
                }
                ("PUT", LEASE) => {
                    assert_eq!(body["spec"]["holderIdentity"], "controller-0");
                    took_over = true;
                    send.send_response(reply(&body));
                }
                _ => {
                    assert!(
                        took_over,
                        "a follower wrote {method} {path} before taking the Lease"
                    );
                    send.send_response(reply(&body));
                    if path == "/api/v1/namespaces/default/services/fresh/status" {
                        return body;
                    }
                }
            }
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(300), server)
        .await
        .expect("no takeover within 300 s of (paused) time");
    assert_eq!(
        status["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "10.0.0.10"}])
    );
    assert_eq!(follower_rounds, 3);
    shutdown_tx.send(true).unwrap();
    let drain = async {
        while let Some((req, send)) = handle.next_request().await {
            if req.uri().to_string().contains("watch=true") {
                watches.push(send);
            } else {
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                send.send_response(reply(&body));
            }
        }
    };
    tokio::select! {
        r = controller => r.unwrap().unwrap(),
        () = drain => {}
    }
}
