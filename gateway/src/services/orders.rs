//! Accepting control orders and freeze plans: the idempotency key's
//! replay, the decision's turn on its asset, the law's rules read in that
//! turn, and the acceptance stored through the journal. The API's handlers
//! parse and authorise a request, call `accept_order` or `accept_plan`, and
//! answer with what they return; they know nothing of turns or writers.

use bytes::Bytes;

use crate::api::{accept, inbound};
use crate::audit::AuditRecord;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::inquiry::officer_labels;
use crate::order::{self, OrderBody, RuleContext, body_digest};
use crate::plan::{self, PlanBody};
use crate::state::AppState;
use crate::store::{Applied, Change, Created, DecisionLock, OrderRecord, PlanRecord, StoreError};

/// What a request under an idempotency key came to.
#[derive(Debug)]
pub enum Decided<T> {
    /// Accepted now, and stored.
    New(T),
    /// The key was used before with the same body: what that request
    /// stored.
    Replayed(T),
}

/// Accepts a control order sent under `key` (`raw`: its body as sent), or
/// replays what the key stored before. The decision runs to its end even
/// when the client goes away.
pub async fn accept_order(
    state: AppState,
    caller: Caller,
    key: String,
    body: OrderBody,
    raw: Bytes,
) -> Result<Decided<OrderRecord>, ApiError> {
    detached(decide_order(state, caller, key, body, raw)).await
}

/// Accepts a freeze plan sent under `key`, or replays what the key stored
/// before (the plan, with the orders it has made).
pub async fn accept_plan(
    state: AppState,
    caller: Caller,
    key: String,
    body: PlanBody,
    raw: Bytes,
) -> Result<Decided<(PlanRecord, Vec<OrderRecord>)>, ApiError> {
    detached(decide_plan(state, caller, key, body, raw)).await
}

pub(crate) fn conflict() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "idempotency_conflict",
        "this Idempotency-Key was used before with another body; use a new key for a new request",
    )
    .with_field("Idempotency-Key")
}

pub(crate) fn order_fields(o: &OrderRecord) -> AuditRecord {
    AuditRecord {
        case_number: Some(o.case_number.clone()),
        subject: Some(o.subject.identifier().to_owned()),
        agency: Some(o.agency.clone()),
        inquiry_id: Some(o.id.clone()),
        request_number: Some(o.request_number.clone()),
        ..AuditRecord::default()
    }
}

async fn decide_order(
    state: AppState,
    caller: Caller,
    key: String,
    body: OrderBody,
    raw: Bytes,
) -> Result<Decided<OrderRecord>, ApiError> {
    let refused = |e: ApiError, raw: Option<Vec<u8>>, fields: AuditRecord| {
        let state = state.clone();
        let caller = caller.clone();
        async move {
            // Refused attempts are recorded too: misuse shows in failures.
            inbound(&state, &caller, "order.create", e.code, raw, fields).await?;
            Err::<Decided<OrderRecord>, ApiError>(e)
        }
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
            Ok(Decided::New(stored))
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
pub(crate) async fn detached<T: Send + 'static>(
    decision: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
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
) -> Result<Decided<OrderRecord>, ApiError> {
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
    Ok(Decided::Replayed(existing))
}

async fn decide_plan(
    state: AppState,
    caller: Caller,
    key: String,
    body: PlanBody,
    raw: Bytes,
) -> Result<Decided<(PlanRecord, Vec<OrderRecord>)>, ApiError> {
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
            Err::<Decided<(PlanRecord, Vec<OrderRecord>)>, ApiError>(e)
        }
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
    Ok(Decided::New((stored, Vec::new())))
}

/// A plan request under a key used before: the plan it stored, or a 409
/// when the body differs; audited either way, naming that plan.
async fn replay_plan(
    state: &AppState,
    caller: &Caller,
    existing: PlanRecord,
    digest: &str,
    raw: Vec<u8>,
) -> Result<Decided<(PlanRecord, Vec<OrderRecord>)>, ApiError> {
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
    Ok(Decided::Replayed((existing, orders)))
}
