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
use crate::api::schema::{ErrorBody, OrderView, PlanView};
use crate::api::{accept, inbound};
use crate::audit::AuditRecord;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::inquiry::officer_labels;
use crate::order::{self, OrderBody, RuleContext, body_digest, parse_date};
use crate::plan::{self, PlanBody};
use crate::state::AppState;
use crate::store::{Applied, Change, Created, DecisionLock, OrderRecord, PlanRecord, StoreError};

const KEY_HEADER: &str = "idempotency-key";

/// The `Idempotency-Key` header: 1 to 200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
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

fn conflict() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_conflict",
        "this Idempotency-Key was used before with another body; use a new key for a new request",
    )
    .with_field("Idempotency-Key")
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

fn order_fields(o: &OrderRecord) -> AuditRecord {
    AuditRecord {
        case_number: Some(o.case_number.clone()),
        subject: Some(o.subject.identifier().to_owned()),
        agency: Some(o.agency.clone()),
        inquiry_id: Some(o.id.clone()),
        request_number: Some(o.request_number.clone()),
        ..AuditRecord::default()
    }
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
    detached(decide_order(state, caller, headers, body)).await
}

async fn decide_order(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<OrderBody>, ApiError>,
) -> Result<Response, ApiError> {
    let raw = body.as_ref().map(|b| b.raw.to_vec()).ok();
    let refused = |e: ApiError, raw: Option<Vec<u8>>, fields: AuditRecord| {
        let state = state.clone();
        let caller = caller.clone();
        async move {
            // Refused attempts are recorded too: misuse shows in failures.
            inbound(&state, &caller, "order.create", e.code, raw, fields).await?;
            Err::<Response, ApiError>(e)
        }
    };
    let key = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(e) => return refused(e, raw, AuditRecord::default()).await,
    };
    let ApiJson { value: body, raw } = match body {
        Ok(b) => b,
        Err(e) => return refused(e, raw, AuditRecord::default()).await,
    };
    let digest = body_digest(&raw);
    if let Some(existing) = state.store.order_by_key(&caller.name, &key).await? {
        return replay(&state, &caller, existing, &digest, raw.to_vec()).await;
    }

    // From here to the stored order, this request has the turn of its
    // asset and its key: what the rules read cannot change under them.
    let (turn, facts) = order_turn(&state, &caller.name, &key, &body).await?;
    if let Some(existing) = state.store.order_by_key(&caller.name, &key).await? {
        turn.release().await;
        return replay(&state, &caller, existing, &digest, raw.to_vec()).await;
    }
    let agencies = state.agencies.current();
    let checked = body
        .validate(&RuleContext {
            today: state.clock.today(),
            min_officers: state.config.orders.min_officers,
            agencies: &agencies,
            caller: &caller.name,
            prior: facts.prior.as_ref(),
            measure: facts.measure.as_ref(),
            pending_deductions_fen: order::pending_deductions_fen(&facts.measure_orders),
        })
        .and_then(|new| {
            order::check_no_release_of_measure(new.action, &facts.measure_orders)?;
            order::check_no_renewal_on_its_way(new.action, &facts.measure_orders)?;
            Ok(new)
        })
        .map_err(ApiError::from);
    let new = match checked {
        Ok(n) => n,
        Err(e) => {
            turn.release().await;
            let fields = AuditRecord {
                case_number: Some(body.case_number.clone()),
                agency: body.agency.clone(),
                ..AuditRecord::default()
            };
            return refused(e, Some(raw.to_vec()), fields).await;
        }
    };
    let court = caller
        .court
        .clone()
        .ok_or_else(|| ApiError::forbidden("this caller has no court configured"))?;
    let id = format!("ord_{}", uuid::Uuid::now_v7().simple());
    let now = chrono::Utc::now().timestamp_millis();
    let record = order::new_record(&id, &caller.name, &key, &digest, &court, &new, None, now);
    let fields = AuditRecord {
        officers: officer_labels(&new.officers),
        action: String::new(),
        ..order_fields(&record)
    };
    let applied = accept(
        &state,
        &caller,
        "order.create",
        Some(raw.to_vec()),
        fields,
        Change::Order(Box::new(record)),
    )
    .await?;
    turn.release().await;
    let Applied::Order(created) = applied else {
        return Err(ApiError::internal(
            "the journal stored something else than the order",
        ));
    };
    match *created {
        Created::New(stored) => {
            tracing::info!(
                order = %id,
                action = stored.action.as_str(),
                agency = %stored.agency,
                case = %stored.case_number,
                "order accepted"
            );
            state.orders.wake();
            Ok(accepted(order::view(&stored), false))
        }
        // Only a gateway that takes no turns (an older version beside this
        // one) can have stored it in the meantime.
        Created::Existing(existing) => {
            replay(&state, &caller, existing, &digest, raw.to_vec()).await
        }
    }
}

/// What the rules of an order read: the order `prior_order` names, its
/// measure, and the orders acting on that measure.
#[derive(Default)]
struct Facts {
    prior: Option<OrderRecord>,
    measure: Option<OrderRecord>,
    measure_orders: Vec<OrderRecord>,
}

async fn read_facts(state: &AppState, prior_id: Option<&str>) -> Result<Facts, ApiError> {
    let Some(prior) = (match prior_id {
        Some(id) => state.store.order(id).await?,
        None => None,
    }) else {
        return Ok(Facts::default());
    };
    // The measure and the orders on it in one statement, so one snapshot:
    // the order worker stores a deduction's answer and its effect on the
    // measure together, outside any turn, and two reads could see the
    // deduction decided but the measure not yet reduced.
    let measure_orders = state.store.orders_of_measure(&prior.measure_order).await?;
    let measure = measure_orders
        .iter()
        .find(|o| o.id == prior.measure_order)
        .cloned();
    let prior = measure_orders
        .iter()
        .find(|o| o.id == prior.id)
        .cloned()
        .unwrap_or(prior);
    Ok(Facts {
        prior: Some(prior),
        measure,
        measure_orders,
    })
}

/// Runs a decision to its end even when the client goes away: a request
/// dropped between its "accepted" audit row and its stored order would
/// leave the row naming an order that does not exist.
async fn detached(
    decision: impl std::future::Future<Output = Result<Response, ApiError>> + Send + 'static,
) -> Result<Response, ApiError> {
    tokio::spawn(decision).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a decision failed");
        Err(ApiError::internal(
            "the gateway failed on this request; it has been logged",
        ))
    })
}

/// Waits for a turn on `keys` (see `OrderStore::lock_decision`).
async fn take_turn(state: &AppState, keys: &[String]) -> Result<DecisionLock, ApiError> {
    state
        .store
        .lock_decision(keys, order::DECISION_WAIT)
        .await
        .map_err(|e| match e {
            StoreError::Busy(why) => busy(why),
            other => other.into(),
        })
}

fn busy(why: String) -> ApiError {
    tracing::warn!(%why, "a decision waited too long for its turn");
    ApiError::unavailable(
        "decision_busy",
        "another request on the same asset or Idempotency-Key is being decided and took too \
         long; send this one again (with the same Idempotency-Key)",
    )
    .with_retry_after(std::time::Duration::from_secs(1))
}

/// The turn of an order and the facts its rules read, read in that turn.
/// An order acting on a measure finds its asset by reading the prior order
/// once before the turn; the facts are read again in it (and, should the
/// prior order have appeared meanwhile, the turn is taken again with its
/// asset).
async fn order_turn(
    state: &AppState,
    caller: &str,
    key: &str,
    body: &OrderBody,
) -> Result<(DecisionLock, Facts), ApiError> {
    let prior = match body.prior_id() {
        Some(id) => state.store.order(id).await?,
        None => None,
    };
    let mut keys = order::turn_keys(caller, key, body, prior.as_ref());
    for _ in 0..3 {
        let turn = take_turn(state, &keys).await?;
        let facts = read_facts(state, body.prior_id()).await?;
        let now = order::turn_keys(caller, key, body, facts.prior.as_ref());
        if now == keys {
            return Ok((turn, facts));
        }
        turn.release().await;
        keys = now;
    }
    Err(busy("the prior order kept changing".into()))
}

async fn replay(
    state: &AppState,
    caller: &Caller,
    existing: OrderRecord,
    digest: &str,
    raw: Vec<u8>,
) -> Result<Response, ApiError> {
    if existing.body_sha256 != digest {
        inbound(
            state,
            caller,
            "order.create",
            "idempotency_conflict",
            Some(raw),
            order_fields(&existing),
        )
        .await?;
        return Err(conflict());
    }
    inbound(
        state,
        caller,
        "order.create",
        "replayed",
        Some(raw),
        order_fields(&existing),
    )
    .await?;
    Ok(accepted(order::view(&existing), true))
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
    detached(decide_plan(state, caller, headers, body)).await
}

async fn decide_plan(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<PlanBody>, ApiError>,
) -> Result<Response, ApiError> {
    let raw = body.as_ref().map(|b| b.raw.to_vec()).ok();
    let refused = |e: ApiError, raw: Option<Vec<u8>>| {
        let state = state.clone();
        let caller = caller.clone();
        async move {
            inbound(
                &state,
                &caller,
                "freeze_plan.create",
                e.code,
                raw,
                AuditRecord::default(),
            )
            .await?;
            Err::<Response, ApiError>(e)
        }
    };
    let key = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(e) => return refused(e, raw).await,
    };
    let ApiJson { value: body, raw } = match body {
        Ok(b) => b,
        Err(e) => return refused(e, raw).await,
    };
    let digest = body_digest(&raw);
    if let Some(existing) = state.store.plan_by_key(&caller.name, &key).await? {
        return replay_plan(&state, &caller, existing, &digest, raw.to_vec()).await;
    }
    // The first request under the key decides; the others, in their turn
    // after it, replay what it stored.
    let turn = take_turn(
        &state,
        &[order::idempotency_turn_key(
            "freeze_plan",
            &caller.name,
            &key,
        )],
    )
    .await?;
    if let Some(existing) = state.store.plan_by_key(&caller.name, &key).await? {
        turn.release().await;
        return replay_plan(&state, &caller, existing, &digest, raw.to_vec()).await;
    }
    let inquiry = state.store.inquiry(body.inquiry.trim()).await?;
    let tasks = match &inquiry {
        Some(i) => state.store.tasks(&i.id).await?,
        None => Vec::new(),
    };
    let agencies = state.agencies.current();
    let new = match body.validate(
        state.clock.today(),
        state.config.orders.min_officers,
        &caller.name,
        inquiry.as_ref().map(|i| (i, tasks.as_slice())),
        &agencies,
        state.config.orders.plan_account_order,
    ) {
        Ok(n) => n,
        Err(e) => {
            turn.release().await;
            return refused(ApiError::from(e), Some(raw.to_vec())).await;
        }
    };
    let court = caller
        .court
        .clone()
        .ok_or_else(|| ApiError::forbidden("this caller has no court configured"))?;
    let id = format!("fpl_{}", uuid::Uuid::now_v7().simple());
    let now = chrono::Utc::now().timestamp_millis();
    let record = plan::new_record(
        &id,
        &caller.name,
        &key,
        &digest,
        &court,
        body.inquiry.trim(),
        &new,
        now,
    );
    let fields = AuditRecord {
        officers: officer_labels(&new.officers),
        case_number: Some(record.case_number.clone()),
        subject: Some(record.subject.identifier().to_owned()),
        inquiry_id: Some(id.clone()),
        ..AuditRecord::default()
    };
    let applied = accept(
        &state,
        &caller,
        "freeze_plan.create",
        Some(raw.to_vec()),
        fields,
        Change::Plan(Box::new(record)),
    )
    .await?;
    turn.release().await;
    let Applied::Plan(created) = applied else {
        return Err(ApiError::internal(
            "the journal stored something else than the plan",
        ));
    };
    let stored = match *created {
        Created::New(p) => p,
        // Only a gateway that takes no turns can have stored it meanwhile.
        Created::Existing(p) => {
            return replay_plan(&state, &caller, p, &digest, raw.to_vec()).await;
        }
    };
    tracing::info!(plan = %id, case = %stored.case_number, amount_fen = stored.amount_fen, "freeze plan accepted");
    state.orders.wake();
    Ok(accepted(plan::view(&stored, &[]), false))
}

/// A plan request under a key used before: the plan it stored, or a 409
/// when the body differs; audited either way, naming that plan.
async fn replay_plan(
    state: &AppState,
    caller: &Caller,
    existing: PlanRecord,
    digest: &str,
    raw: Vec<u8>,
) -> Result<Response, ApiError> {
    let fields = AuditRecord {
        inquiry_id: Some(existing.id.clone()),
        case_number: Some(existing.case_number.clone()),
        ..AuditRecord::default()
    };
    if existing.body_sha256 != digest {
        inbound(
            state,
            caller,
            "freeze_plan.create",
            "idempotency_conflict",
            Some(raw),
            fields,
        )
        .await?;
        return Err(conflict());
    }
    inbound(
        state,
        caller,
        "freeze_plan.create",
        "replayed",
        Some(raw),
        fields,
    )
    .await?;
    let orders = state.store.orders_of_plan(&existing.id).await?;
    Ok(accepted(plan::view(&existing, &orders), true))
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
