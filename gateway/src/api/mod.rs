//! The HTTP API (api.md): routes, the layers every request passes, and the
//! inbound audit record every authenticated call leaves.

mod admin;
mod audit;
mod callbacks;
pub mod extract;
mod health;
mod inquiries;
mod orders;
mod refusals;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::audit::{AuditRecord, Direction};
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_request_bytes;
    Router::new()
        .route("/v1/inquiries", get(inquiries::list).post(inquiries::create))
        .route("/v1/inquiries/{id}", get(inquiries::get))
        .route("/v1/orders", get(orders::list).post(orders::create))
        .route("/v1/orders/{id}", get(orders::get))
        .route("/v1/freeze-plans", post(orders::create_plan))
        .route("/v1/freeze-plans/{id}", get(orders::get_plan))
        .route("/v1/audit/events", get(audit::events))
        .route("/v1/audit/events/{seq}", get(audit::event))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/questions/{question}", get(audit::question))
        .route("/v1/agencies", get(agencies))
        .route("/v1/admin/reload", post(admin::reload))
        .route("/v1/callbacks/{agency}", post(callbacks::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), refusals::record))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(reject_nul))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path only: query strings may hold identity numbers.
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::internal("the gateway failed on this request; it has been logged").into_response()
                })),
        )
        .with_state(state)
}

/// Records an authenticated inbound call. If the audit log cannot take it,
/// the call fails with 503 and nothing else happens.
pub(crate) async fn inbound(
    state: &AppState,
    caller: &Caller,
    action: &str,
    status: &str,
    body: Option<Vec<u8>>,
    fields: AuditRecord,
) -> Result<i64, ApiError> {
    Ok(state
        .audit
        .record(AuditRecord {
            direction: Some(Direction::Inbound),
            caller: Some(caller.name.clone()),
            action: action.to_owned(),
            status: Some(status.to_owned()),
            body,
            ..fields
        })
        .await?)
}

async fn agencies(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Enforcement, Role::Admin])?;
    inbound(
        &state,
        &caller,
        "agencies.list",
        "ok",
        None,
        AuditRecord::default(),
    )
    .await?;
    let registry = state.agencies.current();
    let now = chrono::Utc::now();
    let list: Vec<Value> = registry
        .all()
        .map(|link| {
            let a = link.config();
            json!({
                "id": a.id,
                "name": a.name,
                "kind": a.kind.as_str(),
                "dialect": a.dialect,
                "enabled": a.enabled,
                "asset_kind": a.asset_kind().as_str(),
                "breaker": state.guards.state_of(&a.id),
                "limits": {
                    "timeout_ms": a.limits.timeout_ms,
                    "max_batch": link.agency.dialect.max_batch(),
                    "rate_per_second": a.limits.rate_per_second,
                    "max_concurrency": a.limits.max_concurrency,
                },
                "business_hours": a.business_hours.as_ref().map(|h| json!({
                    "days": h.days,
                    "open": h.open,
                    "close": h.close,
                    "open_now": h.is_open(now),
                })),
                "tls": link.channel.has_own_client(),
                "auth_headers": link.channel.header_names(),
            })
        })
        .collect();
    Ok(Json(json!({
        "version": registry.version(),
        "loaded_at": crate::inquiry::timestamp(registry.loaded_at_ms()),
        // Older sets that running inquiries started with and still use.
        "retired_versions": state.agencies.retired_versions(),
        "dialects": registry.dialect_count(),
        "agencies": list,
    })))
}

/// Refuses a path or query that carries an encoded NUL character (`%00`):
/// no identifier or filter holds one, and PostgreSQL text cannot.
async fn reject_nul(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = request.uri();
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return ApiError::bad_request(
            "invalid_characters",
            "the path and query may not contain the NUL character (%00)",
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found() -> Response {
    ApiError::not_found("no such endpoint; see api.md").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
    .into_response()
}
