//! The HTTP surface (DESIGN §7): `/metrics`, `/healthz`, `/readyz`, `GET /v1/models`.
//!
//! Owns: routing and serving. It only reads the shared state the service loop publishes; it
//! never touches Kafka. The server takes its shutdown signal as an argument, so tests bind
//! port 0 and stop it themselves.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::bus::service::{now_ms, Shared};

/// A loop that has not iterated for this long is reported unhealthy.
const HEARTBEAT_TIMEOUT_MS: i64 = 30_000;

/// The router over the shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/models", get(models))
        .with_state(shared)
}

/// Serves until `shutdown` completes.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let age = now_ms() - shared.heartbeat_ms.load(Ordering::Acquire);
    if age <= HEARTBEAT_TIMEOUT_MS {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("service loop stalled for {age} ms\n"),
        )
            .into_response()
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for a partition assignment\n",
        )
            .into_response()
    }
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    match shared.status.read() {
        Ok(status) => Json(serde_json::json!({ "models": *status })).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Metrics;

    async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn endpoints_answer() {
        let shared = Arc::new(Shared::new(Metrics::new(true, 100).unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, shared.clone(), async {
            let _ = stopped.await;
        }));
        assert_eq!(get(address, "/healthz").await.0, 200);
        assert_eq!(get(address, "/readyz").await.0, 503);
        shared.ready.store(true, Ordering::Release);
        assert_eq!(get(address, "/readyz").await.0, 200);
        let (status, body) = get(address, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("driftwatch_late_events_total"));
        let (status, body) = get(address, "/v1/models").await;
        assert_eq!(status, 200);
        assert!(body.contains("\"models\""), "{body}");
        shared.heartbeat_ms.store(0, Ordering::Release);
        assert_eq!(get(address, "/healthz").await.0, 503);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
