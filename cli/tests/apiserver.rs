//! The kube glue against a mocked API server (`tower-test` behind a real `kube::Client`):
//! lists are paginated and followed to the end, and a kind the server refuses becomes a
//! note in the report instead of an error.

use std::sync::{Arc, Mutex};

use herald_cli::fetch::{self, PAGE};
use herald_cli::inputs::Listed;
use herald_cli::report::build;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock;

const HERALD: &str = "/apis/herald.dev/v1alpha1/";

/// A request as the handler sees it: the path and the query's `limit` and `continue`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Get {
    path: String,
    limit: Option<String>,
    continue_: Option<String>,
}

/// Starts a server answering each request with `handler`'s (status, body); the task
/// returns every request seen once the client is dropped.
fn serve(
    handler: impl Fn(&Get) -> (u16, Value) + Send + 'static,
) -> (Client, JoinHandle<Vec<Get>>) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(request.method(), "GET", "the command only reads");
            let param = |name: &str| {
                request
                    .uri()
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        (k == name).then(|| v.to_owned())
                    })
            };
            let get = Get {
                path: request.uri().path().to_owned(),
                limit: param("limit"),
                continue_: param("continue"),
            };
            let (status, body) = handler(&get);
            seen.push(get);
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
        seen
    });
    (Client::new(service, "default"), task)
}

fn list(items: Vec<Value>, continue_: Option<&str>) -> Value {
    let mut metadata = json!({"resourceVersion": "42"});
    if let Some(c) = continue_ {
        metadata["continue"] = json!(c);
    }
    json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": items})
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "code": code, "reason": reason, "message": message})
}

fn service(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": "load", "name": format!("svc-{i:04}"),
                        "annotations": {"herald.dev/allocated-from": "public"}},
           "spec": {"type": "LoadBalancer"},
           "status": {"loadBalancer": {"ingress": [{"ip": format!("10.{}.{}.1", i / 256, i % 256)}]}}})
}

fn herald_node(name: &str, addresses: &[String]) -> Value {
    json!({"apiVersion": "herald.dev/v1alpha1", "kind": "HeraldNode",
           "metadata": {"name": name}, "spec": {},
           "status": {"sessions": "1/1", "announcedCount": addresses.len(),
                      "announcements": [{"via": "BGP", "peers": ["tor1"], "addresses": addresses}]}})
}

/// 700 Services in two pages of 500 and 200.
fn services_page(get: &Get) -> (u16, Value) {
    let limit: usize = get
        .limit
        .as_deref()
        .expect("lists are limited")
        .parse()
        .unwrap();
    let start = match get.continue_.as_deref() {
        None => 0,
        Some(token) => token.strip_prefix("from-").unwrap().parse().unwrap(),
    };
    let end = (start + limit).min(700);
    let next = (end < 700).then(|| format!("from-{end}"));
    (
        200,
        list((start..end).map(service).collect(), next.as_deref()),
    )
}

#[tokio::test]
async fn lists_follow_continue_tokens_until_every_service_is_read() {
    let (client, server) = serve(|get| match get.path.as_str() {
        "/api/v1/services" => services_page(get),
        p if p == format!("{HERALD}heraldnodes") => {
            let addresses: Vec<String> = (0..700)
                .map(|i| format!("10.{}.{}.1", i / 256, i % 256))
                .collect();
            (200, list(vec![herald_node("n1", &addresses)], None))
        }
        _ => (200, list(vec![], None)),
    });
    let inputs = fetch::inputs(&client).await.expect("fetched");
    drop(client);
    let seen = server.await.unwrap();

    assert_eq!(inputs.services.items().len(), 700);
    let report = build(&inputs);
    assert_eq!(report.services.len(), 700);
    assert!(!report.has_problems(), "{:?}", report.problems);
    assert_eq!(report.services[699].name, "svc-0699");
    assert_eq!(report.services[699].announced_by(), "n1 via BGP (tor1)");

    let services: Vec<&Get> = seen
        .iter()
        .filter(|g| g.path == "/api/v1/services")
        .collect();
    let pages: Vec<(Option<&str>, Option<&str>)> = services
        .iter()
        .map(|g| (g.limit.as_deref(), g.continue_.as_deref()))
        .collect();
    assert_eq!(
        pages,
        [(Some("500"), None), (Some("500"), Some("from-500"))]
    );
    assert_eq!(PAGE, 500);
    for kind in [
        "heraldnodes",
        "ippools",
        "bgppeers",
        "bgpadvertisements",
        "l2advertisements",
        "bfdprofiles",
    ] {
        let path = format!("{HERALD}{kind}");
        assert!(
            seen.iter()
                .any(|g| g.path == path && g.limit.as_deref() == Some("500")),
            "{kind} listed with a limit: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_forbidden_kind_becomes_a_note_and_the_rest_is_reported() {
    let (client, server) = serve(|get| match get.path.as_str() {
        "/api/v1/services" => (200, list(vec![service(1)], None)),
        p if p == format!("{HERALD}bgppeers") => (
            403,
            status(
                403,
                "Forbidden",
                "bgppeers.herald.dev is forbidden: User \"alice\" cannot list resource \
                 \"bgppeers\" in API group \"herald.dev\" at the cluster scope",
            ),
        ),
        p if p == format!("{HERALD}l2advertisements") => (
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
        _ => (200, list(vec![], None)),
    });
    let inputs = fetch::inputs(&client)
        .await
        .expect("a refused kind is not an error");
    drop(client);
    server.await.unwrap();

    assert!(
        matches!(&inputs.peers, Listed::Unreadable(why) if why.starts_with("403 Forbidden: bgppeers.herald.dev is forbidden"))
    );
    let report = build(&inputs);
    assert_eq!(report.services.len(), 1);
    assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
    assert!(report.notes[0].starts_with("BGPPeers not readable (403 Forbidden: "));
    assert!(report.notes[1].starts_with("L2Advertisements not readable (404 NotFound: "));
    // The one Service is announced by no node: the HeraldNodes were read (and empty).
    assert_eq!(report.problems.len(), 1);
}

#[tokio::test]
async fn an_expired_continue_token_restarts_the_list_once() {
    let expired = Arc::new(Mutex::new(false));
    let (client, server) = serve(
        move |get| match (get.path.as_str(), get.continue_.as_deref()) {
            ("/api/v1/services", Some("from-500"))
                if !std::mem::replace(&mut *expired.lock().unwrap(), true) =>
            {
                (
                    410,
                    status(410, "Expired", "The provided continue parameter is too old"),
                )
            }
            ("/api/v1/services", _) => services_page(get),
            _ => (200, list(vec![], None)),
        },
    );
    let inputs = fetch::inputs(&client).await.expect("fetched");
    drop(client);
    let seen = server.await.unwrap();

    assert_eq!(
        inputs.services.items().len(),
        700,
        "no Service twice, none lost"
    );
    let services: Vec<Option<&str>> = seen
        .iter()
        .filter(|g| g.path == "/api/v1/services")
        .map(|g| g.continue_.as_deref())
        .collect();
    assert_eq!(services, [None, Some("from-500"), None, Some("from-500")]);
}
