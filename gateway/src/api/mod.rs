//! The HTTP API (api.md): routes, the layers every request passes, and the
//! inbound audit record every authenticated call leaves.

pub(crate) mod admin;
pub(crate) mod audit;
mod batches;
mod callbacks;
mod cases;
mod domain_errors;
pub mod edge;
pub mod extract;
mod health;
mod inquiries;
pub mod openapi;
mod orders;
pub(crate) mod refusals;
pub mod schema;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{AuditRecord, Direction};
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Applied, Change};

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_request_bytes;
    let (routes, doc) = documented();
    // The web console: HTML pages, not part of the API's document, behind
    // the same layers.
    let routes = if state.config.console.enabled {
        routes.merge(crate::console::router())
    } else {
        routes
    };
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(OpenApiJson(openapi::document(&doc, state.config.inquiries.max_wait_secs))))
        .layer(axum::middleware::from_fn_with_state(state.clone(), refusals::record))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(reject_nul))
        .layer(axum::middleware::from_fn_with_state(edge::Edge::new(&state.config.limits), edge::guard))
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

/// Every route of the API, each registered with its OpenAPI description:
/// a route cannot be added here without one, and the document
/// (`GET /openapi.json`) is made from the same registrations.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(inquiries::list, inquiries::create))
        .routes(routes!(inquiries::get))
        .merge(
            // A batch's body has a bound of its own (`batch::MAX_BODY_BYTES`).
            OpenApiRouter::new()
                .routes(routes!(batches::create))
                .layer(DefaultBodyLimit::max(crate::batch::MAX_BODY_BYTES)),
        )
        .routes(routes!(batches::get))
        .routes(routes!(batches::events))
        .routes(routes!(batches::results))
        .routes(routes!(orders::list, orders::create))
        .routes(routes!(orders::get))
        .routes(routes!(orders::create_plan))
        .routes(routes!(orders::get_plan))
        .routes(routes!(cases::get))
        .routes(routes!(audit::events))
        .routes(routes!(audit::event))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::bundle))
        .routes(routes!(audit::question))
        .routes(routes!(agencies))
        .routes(routes!(admin::reload))
        .routes(routes!(admin::agencies))
        .routes(routes!(callbacks::receive))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi_json))
        .split_for_parts();
    utoipa::Modify::modify(&openapi::CommonResponses, &mut doc);
    (routes, doc)
}

/// The OpenAPI document of the API (as `GET /openapi.json` serves it).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented().1
}

#[derive(Clone)]
struct OpenApiJson(bytes::Bytes);

/// This API's OpenAPI 3.1 document: every route, body, answer and error.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object)))]
async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    openapi::serve(doc.0)
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
        .record(inbound_record(caller, action, status, body, fields))
        .await?)
}

/// Records a request's acceptance and stores what it accepted (a new
/// inquiry, order or plan) in one transaction of the journal: an
/// "accepted" row never names a request that was not stored, and no
/// request is stored without its row.
pub(crate) async fn accept(
    state: &AppState,
    caller: &Caller,
    action: &str,
    body: Option<Vec<u8>>,
    fields: AuditRecord,
    change: Change,
) -> Result<Applied, ApiError> {
    let record = inbound_record(caller, action, "accepted", body, fields);
    Ok(state.audit.accept(record, change).await?.1)
}

fn inbound_record(
    caller: &Caller,
    action: &str,
    status: &str,
    body: Option<Vec<u8>>,
    fields: AuditRecord,
) -> AuditRecord {
    AuditRecord {
        direction: Some(Direction::Inbound),
        caller: Some(caller.name.clone()),
        action: action.to_owned(),
        status: Some(status.to_owned()),
        body: body.map(Into::into),
        ..fields
    }
}

/// The connected agencies: id, kind, dialect, whether enabled, the
/// breaker's state, limits and business hours.
#[utoipa::path(
    get,
    path = "/v1/agencies",
    operation_id = "list_agencies",
    tag = "agencies",
    responses((status = 200, description = "The agency set in use.", body = schema::AgencyList)),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
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
                "tls": link.runtime.channel.has_own_client(),
                "auth_headers": link.runtime.channel.header_names(),
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
        if uri.path().starts_with(crate::console::PREFIX) {
            return crate::console::PageError::bad_request(
                "地址中不能含有 NUL 字符（%00）。 The path and query may not contain the NUL character (%00).",
            )
            .into_response();
        }
        return ApiError::bad_request(
            "invalid_characters",
            "the path and query may not contain the NUL character (%00)",
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found() -> Response {
    ApiError::not_found("no such endpoint; GET /openapi.json lists every one").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
    .into_response()
}
