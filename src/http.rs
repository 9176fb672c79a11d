//! The HTTP surface (DESIGN §7): `/metrics`, `/healthz`, `/readyz`, `GET /v1/models`,
//! `POST /v1/models/{model_id}/retrain`.
//!
//! Owns: routing, serving and the bearer-token check of the manual trigger. It reads the
//! shared state the service loop publishes and hands manual requests to the loop; it never
//! touches Kafka. The server takes its shutdown signal as an argument, so tests bind
//! port 0 and stop it themselves.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::bus::service::{now_ms, ManualCommand, ManualReply, Shared};
use crate::codec::json::retrain_to_json;

/// A loop that has not iterated for this long is reported unhealthy.
pub const HEARTBEAT_TIMEOUT_MS: i64 = 30_000;

/// How long a manual request waits for the service loop before answering 503.
const MANUAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    /// Required as `Authorization: Bearer <token>` on the manual trigger, when set.
    bearer_token: Option<Arc<str>>,
}

/// The router over the shared state; `bearer_token` protects the manual trigger.
pub fn router(shared: Arc<Shared>, bearer_token: Option<String>) -> Router {
    let state = AppState {
        shared,
        bearer_token: bearer_token.map(Arc::from),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/models", get(models))
        .route("/v1/models/{model_id}/retrain", post(retrain))
        .with_state(state)
}

/// Serves until `shutdown` completes.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    bearer_token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared, bearer_token))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Body of `POST /v1/models/{model_id}/retrain` (optional as a whole).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RetrainBody {
    /// Why; recorded in the request's reasons.
    reason: Option<String>,
    /// Issue it even while the model's cooldown runs.
    force: bool,
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.bearer_token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    // Compare without an early exit so the time taken does not hint at the token.
    given.is_some_and(|given| {
        given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn retrain(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response();
    }
    let body: RetrainBody = if body.iter().all(u8::is_ascii_whitespace) {
        RetrainBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "invalid body (expected {{\"reason\": string, \"force\": bool}}): {e}"
                    ),
                )
            }
        }
    };
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "requested over HTTP".to_owned());
    let (reply, answer) = tokio::sync::oneshot::channel();
    state.shared.submit(ManualCommand {
        model_id: model_id.clone(),
        reason,
        force: body.force,
        reply,
    });
    match tokio::time::timeout(MANUAL_TIMEOUT, answer).await {
        Ok(Ok(ManualReply::Requested(request))) => (
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, "application/json")],
            retrain_to_json(&request),
        )
            .into_response(),
        Ok(Ok(ManualReply::Suppressed { until })) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": "cooldown running; send \"force\": true to override",
                "cooldown_until": until,
            })),
        )
            .into_response(),
        Ok(Ok(ManualReply::UnknownModel)) => error(
            StatusCode::NOT_FOUND,
            &format!("model {model_id:?} is not monitored by this instance"),
        ),
        Ok(Err(_)) | Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service loop did not answer; try again",
        ),
    }
}

async fn metrics(State(AppState { shared, .. }): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(AppState { shared, .. }): State<AppState>) -> Response {
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

async fn readyz(State(AppState { shared, .. }): State<AppState>) -> Response {
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

async fn models(State(AppState { shared, .. }): State<AppState>) -> Response {
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
        let server = tokio::spawn(serve(listener, shared.clone(), None, async {
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
