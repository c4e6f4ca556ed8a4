//! The admin port: `/metrics` (Prometheus text), `/healthz` (the process runs) and `/readyz`
//! (the first full analysis of every opted-in application is done; its body also says how each
//! destination cluster answers — a managed cluster that is down does not make argo-drift
//! unready, its apps' reports say it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::clusters::{describe_board, Board};
use crate::metrics::Metrics;

#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    clusters: Board,
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    clusters: Board,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Admin {
            metrics,
            ready,
            clusters,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_page(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        admin.metrics.encode(),
    )
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    let clusters = describe_board(&admin.clusters);
    if admin.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, format!("ready\n{clusters}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the first analysis of every application is not done\n{clusters}"),
        )
    }
}
