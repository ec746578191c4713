//! The admin HTTP server (`--admin-addr`): `/metrics`, `/healthz`, `/readyz`, `/status`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio::net::TcpListener;

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

/// The admin routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
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
    Ok((
        local,
        async move { axum::serve(listener, router(shared)).await },
    ))
}
