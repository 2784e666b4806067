//! `/v1/orders` and `/v1/freeze-plans`: control orders and freeze plans.
//! Role `enforcement`. Creating either needs an `Idempotency-Key`: the same
//! key with the same body returns what the first call stored; with another
//! body it is a 409.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::api::extract::{ApiJson, ApiPath, ApiQuery, case_filter, page_limit, single_header};
use crate::api::inbound;
use crate::api::schema::{ErrorBody, OrderView, PlanView};
use crate::audit::AuditRecord;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::order::{self, OrderBody, parse_date};
use crate::plan::{self, PlanBody};
use crate::services::orders::{self as service, Decided, order_fields};
use crate::state::AppState;

const KEY_HEADER: &str = "idempotency-key";

/// The `Idempotency-Key` header: 1 to 200 visible ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = || {
        ApiError::bad_request(
            "idempotency_key_required",
            "this request needs an Idempotency-Key header (1 to 200 visible ASCII characters), \
             so that a retry cannot act twice",
        )
        .with_field("Idempotency-Key")
    };
    let value = single_header(headers, KEY_HEADER)?.ok_or_else(missing)?;
    let key = value.to_str().map_err(|_| missing())?.trim();
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(missing());
    }
    Ok(key.to_owned())
}

fn accepted(view: Value, replayed: bool) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Send a control order: freeze, renew, release, deduct, seal, renew or
/// release a seal.
///
/// Checked against the law's terms, documents and officers, recorded in
/// the audit log and stored before the 202; delivered to the agency
/// exactly once. Orders on one asset or one measure are decided one at a
/// time. `docs/orders.md` explains every field and rule.
#[utoipa::path(
    post,
    path = "/v1/orders",
    operation_id = "create_order",
    tag = "orders",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 200, pattern = "^[!-~]{1,200}$", description = "Required: the same key with the same body returns what the first call stored (202, header `idempotent-replayed: true`); with another body it is a 409. 1 to 200 visible ASCII characters.")),
    request_body(content = OrderBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted and stored (or, with `idempotent-replayed: true`, the order this key made before).", body = OrderView,
            links(("read" = (operation_id = "get_order", parameters(("id" = "$response.body#/id")))))),
        (status = 409, description = "`idempotency_conflict`; `release_pending` (a release of the measure is on its way) or `renewal_pending` (a renewal of it is on its way): wait for that order's answer.", body = ErrorBody),
        (status = 422, description = "Valid JSON, invalid content: the law's rules (`term_too_long`, `missing_document`, `too_few_officers`, `duplicate_officer`, `deduction_exceeds_freeze`, `measure_not_in_force` ...), `field` naming the field.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<OrderBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let (key, ApiJson { value, raw }) =
        keyed_body(&state, &caller, "order.create", &headers, body).await?;
    Ok(
        match service::accept_order(state, caller, key, value, raw).await? {
            Decided::New(stored) => accepted(order::view(&stored), false),
            Decided::Replayed(existing) => accepted(order::view(&existing), true),
        },
    )
}

/// The `Idempotency-Key` and the body of a request that creates something;
/// a request without either is refused, and the refusal recorded.
async fn keyed_body<T>(
    state: &AppState,
    caller: &Caller,
    action: &str,
    headers: &HeaderMap,
    body: Result<ApiJson<T>, ApiError>,
) -> Result<(String, ApiJson<T>), ApiError> {
    let raw = body.as_ref().map(|b| b.raw.to_vec()).ok();
    match idempotency_key(headers).and_then(|key| Ok((key, body?))) {
        Ok(parsed) => Ok(parsed),
        Err(e) => {
            // Refused attempts are recorded too: misuse shows in failures.
            inbound(state, caller, action, e.code, raw, AuditRecord::default()).await?;
            Err(e)
        }
    }
}

/// Read a control order: its status and what the agency controlled.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    operation_id = "get_order",
    tag = "orders",
    params(("id" = String, Path, max_length = 64, description = "The order's id (`ord_...`).")),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 404, description = "`not_found`: no order with that id for this caller.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let record = state.store.order(&id).await?;
    // Another caller's order does not exist for this caller.
    let Some(record) = record.filter(|r| r.caller == caller.name) else {
        inbound(
            &state,
            &caller,
            "order.read",
            "not_found",
            None,
            AuditRecord {
                inquiry_id: Some(id.clone()),
                ..AuditRecord::default()
            },
        )
        .await?;
        return Err(ApiError::not_found(format!("no order {id}")));
    };
    inbound(
        &state,
        &caller,
        "order.read",
        "ok",
        None,
        order_fields(&record),
    )
    .await?;
    Ok(Json(order::view(&record)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The case whose orders to list (required).
    #[param(
        required = true,
        min_length = 1,
        max_length = 64,
        example = "(2024)甘0503执1234号"
    )]
    case_number: Option<String>,
    /// Only measures ending before this civil date (UTC+8): what needs
    /// renewing.
    #[param(max_length = 10, format = Date, example = "2027-06-01")]
    expiring_before: Option<String>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// List a case's control orders made by this caller.
#[utoipa::path(
    get,
    path = "/v1/orders",
    operation_id = "list_orders",
    tag = "orders",
    params(ListParams),
    responses(
        (status = 200, description = "The case's orders.", body = crate::api::schema::OrderList),
        (status = 422, description = "`invalid_value`: the case number or date is not one.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let case = case_filter(params.case_number.as_deref())?;
    let before = params
        .expiring_before
        .as_deref()
        .map(|d| parse_date("expiring_before", d))
        .transpose()?
        .map(|d| d.format("%Y-%m-%d").to_string());
    let limit = page_limit(params.limit, 100, 1000)?;
    inbound(
        &state,
        &caller,
        "order.list",
        "ok",
        None,
        AuditRecord {
            case_number: Some(case.as_str().to_owned()),
            ..AuditRecord::default()
        },
    )
    .await?;
    let records = state
        .store
        .orders_by_case(&caller.name, case.as_str(), before.as_deref(), limit)
        .await?;
    let orders: Vec<Value> = records.iter().map(order::view).collect();
    Ok(Json(json!({ "orders": orders })))
}

/// Start a freeze plan: freeze up to `amount_fen` in total across the
/// accounts a completed inquiry found, never more.
///
/// Shortfalls move on to the next account; waiting freezes are released
/// at once. `docs/orders.md` ("Freeze plans") explains it.
#[utoipa::path(
    post,
    path = "/v1/freeze-plans",
    operation_id = "create_freeze_plan",
    tag = "freeze-plans",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 200, pattern = "^[!-~]{1,200}$", description = "Required: the same key with the same body returns what the first call stored (202, header `idempotent-replayed: true`); with another body it is a 409. 1 to 200 visible ASCII characters.")),
    request_body(content = PlanBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted and stored (or the plan this key made before).", body = PlanView,
            links(("read" = (operation_id = "get_freeze_plan", parameters(("id" = "$response.body#/id")))))),
        (status = 409, description = "`idempotency_conflict`.", body = ErrorBody),
        (status = 422, description = "Valid JSON, invalid content (the inquiry is unknown or still running, a bad term, documents or officers ...).", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<PlanBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let (key, ApiJson { value, raw }) =
        keyed_body(&state, &caller, "freeze_plan.create", &headers, body).await?;
    Ok(
        match service::accept_plan(state, caller, key, value, raw).await? {
            Decided::New((stored, made)) => accepted(plan::view(&stored, &made), false),
            Decided::Replayed((existing, made)) => accepted(plan::view(&existing, &made), true),
        },
    )
}

/// Read a freeze plan: its status, its orders and what they control.
#[utoipa::path(
    get,
    path = "/v1/freeze-plans/{id}",
    operation_id = "get_freeze_plan",
    tag = "freeze-plans",
    params(("id" = String, Path, max_length = 64, description = "The plan's id (`fpl_...`).")),
    responses(
        (status = 200, description = "The plan.", body = PlanView),
        (status = 404, description = "`not_found`: no plan with that id for this caller.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn get_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let record = state.store.plan(&id).await?;
    let Some(record) = record.filter(|r| r.caller == caller.name) else {
        inbound(
            &state,
            &caller,
            "freeze_plan.read",
            "not_found",
            None,
            AuditRecord {
                inquiry_id: Some(id.clone()),
                ..AuditRecord::default()
            },
        )
        .await?;
        return Err(ApiError::not_found(format!("no freeze plan {id}")));
    };
    inbound(
        &state,
        &caller,
        "freeze_plan.read",
        "ok",
        None,
        AuditRecord {
            inquiry_id: Some(id.clone()),
            case_number: Some(record.case_number.clone()),
            subject: Some(record.subject.identifier().to_owned()),
            ..AuditRecord::default()
        },
    )
    .await?;
    let orders = state.store.orders_of_plan(&id).await?;
    Ok(Json(plan::view(&record, &orders)))
}
