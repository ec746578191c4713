//! The admin HTTP server (`--admin-addr`): `/metrics`, `/healthz`, `/readyz`.
//!
//! `/readyz` answers 200 once the run loop sets `ready`: with leader election once this
//! replica's caches are filled (a follower is a hot standby, so a Deployment's rollout does
//! not wait for leadership); without, once it is allocating.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the admin server reads.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Set once the caches are filled.
    pub ready: Arc<AtomicBool>,
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
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

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not filled yet\n")
    }
}

/// The admin routes.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

/// Binds `addr` and returns the bound address (port 0 picks one) with the serving future.
pub async fn bind(
    addr: SocketAddr,
    shared: Shared,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((
        local,
        async move { axum::serve(listener, router(shared)).await },
    ))
}
