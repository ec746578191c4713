//! A scripted API server for the kube glue: a `tower-test` mock behind a real
//! `kube::Client`. Each test states the exact requests it expects, in order, and the
//! canned answers; [`ApiServer::done`] asserts nothing else was sent.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use herald_api::pool::{IPPool, IPPoolSpec};
use herald_controller::context::{Context, Settings, Stores};
use herald_controller::metrics::Metrics;
use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Namespace, Service, ServicePort, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

/// The mocked API server.
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A request as seen by the server.
#[derive(Debug)]
pub struct Seen {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
}

impl ApiServer {
    /// Waits for the next request, asserts its method and path (the part before `?`),
    /// answers `code` with `reply`, and returns what was sent.
    pub async fn expect_with(&mut self, method: &str, path: &str, code: u16, reply: Value) -> Seen {
        let (req, send) = self
            .handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        let seen = Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            content_type: req
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: {
                let bytes = req.into_body().collect_bytes().await.unwrap();
                if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                }
            },
        };
        let got_path = seen.uri.split('?').next().unwrap();
        assert_eq!(
            (seen.method.as_str(), got_path),
            (method, path),
            "unexpected request {} {} with body {}",
            seen.method,
            seen.uri,
            seen.body
        );
        send.send_response(
            Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        seen
    }

    /// [`ApiServer::expect_with`] answering 200 with the request's own body (what an apply
    /// returns, near enough).
    pub async fn expect(&mut self, method: &str, path: &str) -> Seen {
        let (req, send) = self
            .handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        let uri = req.uri().to_string();
        let got_method = req.method().to_string();
        let content_type = req
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        assert_eq!(
            (got_method.as_str(), uri.split('?').next().unwrap()),
            (method, path),
            "unexpected request {got_method} {uri} with body {body}"
        );
        send.send_response(
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        Seen {
            method: got_method,
            uri,
            content_type,
            body,
        }
    }

    /// Asserts that no further request arrives before every client is dropped.
    pub async fn done(mut self) {
        if let Some((req, _)) = self.handle.next_request().await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

/// A client and its scripted server.
pub fn pair() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

/// Writers of the caches a test fills.
pub struct Caches {
    /// Pools.
    pub pools: Writer<IPPool>,
    /// Namespaces.
    pub namespaces: Writer<Namespace>,
    /// Services.
    pub services: Writer<Service>,
}

impl Caches {
    /// Puts a pool in the cache.
    pub fn pool(&mut self, p: IPPool) {
        self.pools.apply_watcher_event(&watcher::Event::Apply(p));
    }
    /// Removes a pool from the cache.
    pub fn delete_pool(&mut self, p: IPPool) {
        self.pools.apply_watcher_event(&watcher::Event::Delete(p));
    }
    /// Puts a Service in the cache.
    pub fn service(&mut self, s: &Service) {
        self.services
            .apply_watcher_event(&watcher::Event::Apply(s.clone()));
    }
}

/// A leading context on `client` with empty caches.
pub fn context(client: Client) -> (Arc<Context>, Caches) {
    let (pools, pool_w) = reflector::store::<IPPool>();
    let (namespaces, ns_w) = reflector::store::<Namespace>();
    let (services, svc_w) = reflector::store::<Service>();
    let ctx = Context::new(
        client,
        Settings {
            lb_class: herald_ipam::convert::LbClass::default(),
            instance: "controller-0".to_owned(),
        },
        Stores {
            pools,
            namespaces,
            services,
            config: herald_controller::context::ConfigStores {
                peers: reflector::store().0,
                bgp_advertisements: reflector::store().0,
                l2_advertisements: reflector::store().0,
                bfd_profiles: reflector::store().0,
            },
        },
        Arc::new(Metrics::new()),
    );
    ctx.set_leader(true);
    (
        Arc::new(ctx),
        Caches {
            pools: pool_w,
            namespaces: ns_w,
            services: svc_w,
        },
    )
}

/// A pool named `name` with `addresses`, at resource version `rv`.
pub fn pool(name: &str, addresses: &[&str], rv: &str) -> IPPool {
    let mut p = IPPool::new(
        name,
        IPPoolSpec {
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            auto_assign: true,
            ..IPPoolSpec::default()
        },
    );
    p.metadata.resource_version = Some(rv.to_owned());
    p.metadata.generation = Some(1);
    p
}

/// A `type: LoadBalancer` Service in `default` with one TCP port.
pub fn service(name: &str, port: i32) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_owned()),
            ports: Some(vec![ServicePort {
                port,
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Adds an annotation.
pub fn annotate(mut svc: Service, key: &str, value: &str) -> Service {
    svc.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
    svc
}

/// Sets `status.loadBalancer.ingress` to `ips`.
pub fn with_status(mut svc: Service, ips: &[&str]) -> Service {
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(
                ips.iter()
                    .map(|ip| LoadBalancerIngress {
                        ip: Some(ip.to_string()),
                        ..LoadBalancerIngress::default()
                    })
                    .collect(),
            ),
        }),
        ..ServiceStatus::default()
    });
    svc
}

/// Sets the creation time (seconds since the epoch).
pub fn created(mut svc: Service, secs: i64) -> Service {
    svc.metadata.creation_timestamp = Some(Time(Timestamp::from_second(secs).unwrap()));
    svc
}

/// A list response.
pub fn list<T: serde::Serialize>(kind: &str, api_version: &str, items: &[T]) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "resourceVersion": "1" },
        "items": items,
    })
}

/// The ingress IPs in an apply patch of Service status.
pub fn ingress_ips(body: &Value) -> Vec<String> {
    body["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["ip"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
