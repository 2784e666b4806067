//! Liveness and readiness, without auth.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "Alive.", body = crate::api::schema::Health)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store takes writes: without it the gateway refuses work.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = crate::api::schema::Readiness),
        (status = 503, description = "Not ready: the store does not take writes.", body = crate::api::schema::Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store not writable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": "store not writable"})),
            )
        }
    }
}

/// Prometheus metrics (OpenMetrics text), no auth: no label carries
/// personal data. The breaker states are read from the guards, the queue
/// gauges sampled from the store, at each scrape.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text).",
        content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let m = crate::metrics::global();
    for (agency, breaker) in state.guards.states() {
        let value = match breaker {
            "open" => 2,
            "half_open" => 1,
            _ => 0,
        };
        m.breaker_open
            .get_or_create(&crate::metrics::AgencyLabel { agency })
            .set(value);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render_sampled(&*state.store).await,
    )
        .into_response()
}
