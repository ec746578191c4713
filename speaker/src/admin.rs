//! The admin HTTP server (`--admin-addr`): `/metrics`, `/healthz`, `/readyz`, `/status`,
//! and `POST`/`DELETE /drain` (from loopback only: `herald-speaker drain` on the node).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::status::StatusReport;

/// What the admin server reads; the daemon writes it.
#[derive(Debug, Default)]
pub struct Shared {
    /// The latest status document.
    pub status: RwLock<StatusReport>,
    /// Metrics.
    pub metrics: Metrics,
    /// Set once the first configuration has been applied.
    pub ready: AtomicBool,
    /// The drain command: `Some(wait)` after `POST /drain`, `None` after `DELETE /drain`.
    pub drain: watch::Sender<Option<Duration>>,
}

impl Shared {
    /// Replaces the status document.
    pub fn set_status(&self, status: StatusReport) {
        *self.status.write().expect("status lock poisoned") = status;
    }

    /// Edits the status document in place.
    pub fn update_status(&self, edit: impl FnOnce(&mut StatusReport)) {
        edit(&mut self.status.write().expect("status lock poisoned"));
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no configuration applied yet\n",
        )
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<StatusReport> {
    Json(shared.status.read().expect("status lock poisoned").clone())
}

/// `POST /drain[?wait=30s]` drains the node, `DELETE /drain` serves again. Only from a
/// loopback address: the admin port may listen on every address (cluster mode), and taking
/// a node out of service is for someone on the node (or `kubectl exec`), or the Node
/// annotation, which RBAC guards.
async fn drain(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if !peer.is_some_and(|ip| ip.is_loopback() || ip.to_canonical().is_loopback()) {
        return (
            StatusCode::FORBIDDEN,
            "drain is accepted from loopback only: run `herald-speaker drain` on the node, or \
             annotate the Node with herald.dev/drain=true\n",
        )
            .into_response();
    }
    if request.method() == Method::DELETE {
        shared.drain.send_replace(None);
        return (StatusCode::OK, "serving again\n").into_response();
    }
    let wait = match drain_wait(request.uri().query()) {
        Ok(wait) => wait,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    shared.drain.send_replace(Some(wait));
    (
        StatusCode::ACCEPTED,
        format!(
            "draining: routes carry GRACEFUL_SHUTDOWN for {}s, then are withdrawn\n",
            wait.as_secs_f64()
        ),
    )
        .into_response()
}

/// The `wait` query parameter (a duration such as `30s` or `2m`), default
/// [`crate::drain::DEFAULT_WAIT`].
fn drain_wait(query: Option<&str>) -> Result<Duration, String> {
    let mut wait = crate::drain::DEFAULT_WAIT;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("wait", value)) => {
                wait = herald_api::duration::parse_duration(value)
                    .map_err(|e| format!("wait={value}: {e}"))?;
                if wait > crate::drain::MAX_WAIT {
                    return Err(format!(
                        "wait={value}: longer than {}s",
                        crate::drain::MAX_WAIT.as_secs()
                    ));
                }
            }
            _ => return Err(format!("unknown parameter {pair:?} (only wait=DURATION)")),
        }
    }
    Ok(wait)
}

/// The admin routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/drain", axum::routing::post(drain).delete(drain))
        .with_state(shared)
}

/// Binds `addr` and returns the bound address (port 0 picks one) with the serving future.
pub async fn bind(
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, async move {
        let app = router(shared).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_wait_defaults_parses_and_refuses_nonsense() {
        assert_eq!(drain_wait(None), Ok(crate::drain::DEFAULT_WAIT));
        assert_eq!(drain_wait(Some("wait=90s")), Ok(Duration::from_secs(90)));
        assert_eq!(drain_wait(Some("wait=0s")), Ok(Duration::ZERO));
        assert!(
            drain_wait(Some("wait=soon"))
                .unwrap_err()
                .contains("wait=soon")
        );
        assert!(
            drain_wait(Some("wait=2h"))
                .unwrap_err()
                .contains("longer than")
        );
        assert!(drain_wait(Some("force=1")).unwrap_err().contains("force=1"));
    }

    #[tokio::test]
    async fn drain_is_refused_from_other_than_loopback_and_accepted_from_it() {
        let shared = Arc::new(Shared::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let post = |path: &'static str| {
            tokio::task::spawn_blocking(move || {
                let r = ureq::post(&format!("http://{addr}{path}"))
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .send_empty()
                    .unwrap();
                r.status().as_u16()
            })
        };
        assert_eq!(post("/drain?wait=5s").await.unwrap(), 202);
        assert_eq!(*shared.drain.borrow(), Some(Duration::from_secs(5)));
        assert_eq!(post("/drain?wait=x").await.unwrap(), 400);
        assert_eq!(*shared.drain.borrow(), Some(Duration::from_secs(5)));
        server.abort();
        // Without a loopback peer (no connection info at all counts as not loopback).
        let response = tower::ServiceExt::oneshot(
            router(shared.clone()),
            Request::builder()
                .method(Method::POST)
                .uri("/drain")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}
