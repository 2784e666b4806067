//! Orders, freeze plans and the callback outbox, on both backends.

use async_trait::async_trait;

use super::{Arg, Backend, Conn, Record, Sql, SqlStore, limit, select};
use crate::store::columns::{asset_columns, json, subject_kind};
use crate::store::orders::{
    Created, MeasureEffect, OrderProgress, OrderRecord, OrderStore, OutboxOutcome, OutboxRecord,
    PlanRecord,
};
use crate::store::states::sql_list;
use crate::store::{
    CompletionCallbacks, DecisionLock, Leased, OrderPhase, OrderStatus, PlanStatus, SavePlan,
    StoreError,
};

const ORDER_COLUMNS: &str = "id, caller, idempotency_key, body_sha256, case_number, \
     subject_kind, subject_name, subject_id, officers, court, documents, action, agency, \
     asset_kind, account_number, unit_number, security_code, amount_fen, quantity, start_date, \
     end_date, prior_order, measure_order, prior_request_number, plan_id, request_number, status, \
     phase, send_attempts, steps, ticket, controlled_fen, shortfall_fen, controlled_quantity, \
     shortfall_quantity, deducted_fen, reason, queue_position, measure_start, measure_end, \
     agency_reference, detail, warned_end, due_at_ms, created_at_ms, updated_at_ms, \
     decided_at_ms, acknowledged_documents, documents_mismatch";

const PLAN_COLUMNS: &str = "id, caller, idempotency_key, body_sha256, case_number, \
     subject_kind, subject_name, subject_id, officers, court, documents, inquiry_id, amount_fen, \
     end_date, accounts, next_index, status, controlled_fen, detail, due_at_ms, created_at_ms, \
     updated_at_ms, completed_at_ms";

const OUTBOX_COLUMNS: &str =
    "id, caller, event, resource_id, body, attempts, due_at_ms, created_at_ms";

/// Statuses of a measure that can still lapse, written out in the
/// statements: the partial index `orders_end` is chosen by this very
/// condition (as `orders_due` by `phase <> 'done'`, `freeze_plans_due` by
/// `status = 'running'`).
fn live() -> String {
    sql_list(&OrderStatus::LIVE)
}

const DONE: OrderPhase = OrderPhase::Done;
const PLAN_RUNNING: PlanStatus = PlanStatus::Running;

/// A row by its caller's idempotency key: $1 caller, $2 key.
const BY_KEY: &str = "caller = $1 AND idempotency_key = $2";

/// The orders that meet `condition` (with its order and limit), every column.
fn orders<'a>(condition: &str) -> Sql<'a> {
    select(ORDER_COLUMNS, "orders", condition)
}

/// The freeze plans that meet `condition`, every column.
fn plans<'a>(condition: &str) -> Sql<'a> {
    select(PLAN_COLUMNS, "freeze_plans", condition)
}

#[async_trait]
impl<B: Backend> OrderStore for SqlStore<B> {
    async fn lock_decision(
        &self,
        keys: &[String],
        wait: std::time::Duration,
    ) -> Result<DecisionLock, StoreError> {
        B::lock_decision(self, keys, wait).await
    }

    async fn order(&self, id: &str) -> Result<Option<OrderRecord>, StoreError> {
        self.read_optional(orders("id = $1").bind(id)).await
    }

    async fn order_by_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        self.read_optional(orders(BY_KEY).bind(caller).bind(key))
            .await
    }

    async fn orders_by_case(
        &self,
        caller: &str,
        case_number: &str,
        expiring_before: Option<&str>,
        n: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let q = match expiring_before {
            None => orders(
                "caller = $1 AND case_number = $2 ORDER BY created_at_ms DESC, id DESC LIMIT $3",
            )
            .bind(caller)
            .bind(case_number)
            .bind(limit(n)),
            Some(before) => orders(&format!(
                "caller = $1 AND case_number = $2 AND status IN {live} AND measure_order = id \
                 AND measure_end < $3 ORDER BY measure_end, id LIMIT $4",
                live = live()
            ))
            .bind(caller)
            .bind(case_number)
            .bind(before)
            .bind(limit(n)),
        };
        self.read_all(q).await
    }

    async fn measures_by_case(
        &self,
        caller: &str,
        case_number: &str,
        n: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        // Along `orders_case`.
        self.read_all(
            orders(
                "caller = $1 AND case_number = $2 AND measure_order = id \
                 ORDER BY created_at_ms DESC, id DESC LIMIT $3",
            )
            .bind(caller)
            .bind(case_number)
            .bind(limit(n)),
        )
        .await
    }

    async fn plans_by_case(
        &self,
        caller: &str,
        case_number: &str,
        n: i64,
    ) -> Result<Vec<PlanRecord>, StoreError> {
        // Along `freeze_plans_case`.
        self.read_all(
            plans("caller = $1 AND case_number = $2 ORDER BY created_at_ms DESC, id DESC LIMIT $3")
                .bind(caller)
                .bind(case_number)
                .bind(limit(n)),
        )
        .await
    }

    async fn orders_of_plans(&self, plan_ids: &[String]) -> Result<Vec<OrderRecord>, StoreError> {
        if plan_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Along `orders_plan`.
        self.read_all(
            orders(&format!(
                "{} ORDER BY plan_id, created_at_ms, id",
                B::one_of("plan_id", "$1")
            ))
            .bind(plan_ids),
        )
        .await
    }

    async fn orders_of_measure(&self, measure_order: &str) -> Result<Vec<OrderRecord>, StoreError> {
        self.read_all(
            orders("measure_order = $1 ORDER BY (id = measure_order) DESC, created_at_ms, id")
                .bind(measure_order),
        )
        .await
    }

    async fn orders_of_plan(&self, plan_id: &str) -> Result<Vec<OrderRecord>, StoreError> {
        self.read_all(orders("plan_id = $1 ORDER BY created_at_ms, id").bind(plan_id))
            .await
    }

    async fn claim_due_orders(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        n: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let due = format!("phase <> '{DONE}'");
        let text = B::claim("orders", &due, ", steps = steps + 1", ORDER_COLUMNS);
        self.all(claim(text, owner, now_ms, lease_until_ms, n))
            .await
    }

    async fn orders_to_warn(&self, before: &str, n: i64) -> Result<Vec<OrderRecord>, StoreError> {
        self.read_all(
            orders(&format!(
                "measure_order = id AND status IN {live} AND measure_end < $1 \
                 AND (warned_end IS NULL OR warned_end <> measure_end) \
                 ORDER BY measure_end LIMIT $2",
                live = live()
            ))
            .bind(before)
            .bind(limit(n)),
        )
        .await
    }

    async fn plan(&self, id: &str) -> Result<Option<PlanRecord>, StoreError> {
        self.read_optional(plans("id = $1").bind(id)).await
    }

    async fn plan_by_key(&self, caller: &str, key: &str) -> Result<Option<PlanRecord>, StoreError> {
        self.read_optional(plans(BY_KEY).bind(caller).bind(key))
            .await
    }

    async fn claim_due_plans(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        n: i64,
    ) -> Result<Vec<PlanRecord>, StoreError> {
        let due = format!("status = '{PLAN_RUNNING}'");
        let text = B::claim("freeze_plans", &due, "", PLAN_COLUMNS);
        self.all(claim(text, owner, now_ms, lease_until_ms, n))
            .await
    }

    async fn inquiries_owing_callbacks(
        &self,
        callers: &[String],
        completed_before_ms: i64,
        n: i64,
    ) -> Result<Vec<String>, StoreError> {
        let owing: Vec<(String,)> = self
            .all(
                Sql::new(format!(
                    "SELECT id FROM inquiries WHERE callback_due = 1 AND completed_at_ms <= $1 \
                     AND {callers} ORDER BY completed_at_ms LIMIT $3",
                    callers = B::one_of("caller", "$2"),
                ))
                .bind(completed_before_ms)
                .bind(callers)
                .bind(limit(n)),
            )
            .await?;
        Ok(owing.into_iter().map(|(id,)| id).collect())
    }

    async fn claim_outbox(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        n: i64,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let due = "delivered_at_ms IS NULL AND failed_at_ms IS NULL";
        let text = B::claim("outbox", due, "", OUTBOX_COLUMNS);
        self.all(claim(text, owner, now_ms, lease_until_ms, n))
            .await
    }

    async fn orders_with_document_mismatch(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        n: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        self.read_all(
            orders(&format!(
                "documents_mismatch = {} AND created_at_ms >= $1 AND created_at_ms < $2 \
                 ORDER BY created_at_ms DESC, id DESC LIMIT $3",
                B::TRUE
            ))
            .bind(from_ms.unwrap_or(i64::MIN))
            .bind(to_ms.unwrap_or(i64::MAX))
            .bind(limit(n)),
        )
        .await
    }

    async fn next_order_work_ms(&self) -> Result<Option<i64>, StoreError> {
        let due: Option<(Option<i64>,)> = self
            .read_optional(Sql::new(format!(
                "SELECT MIN(due) FROM ( \
                     SELECT MIN(due_at_ms) AS due FROM orders WHERE phase <> '{DONE}' \
                     UNION ALL SELECT MIN(due_at_ms) FROM freeze_plans \
                         WHERE status = '{PLAN_RUNNING}' \
                     UNION ALL SELECT MIN(due_at_ms) FROM outbox \
                         WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL) AS work"
            )))
            .await?;
        Ok(due.and_then(|(d,)| d))
    }
}

/// Marks an order sending where `owner` still holds it
/// (`Change::MarkSending`); whether it did.
pub(super) async fn mark_sending<B: Backend>(
    conn: &mut Conn<B>,
    owner: &str,
    id: &str,
    send_attempts: i64,
    query_due_ms: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = B::execute(
        conn,
        Sql::new(format!(
            "UPDATE orders SET phase = '{query}', status = '{dispatched}', \
             send_attempts = $1, due_at_ms = $2, updated_at_ms = $3 \
             WHERE id = $4 AND lease_owner = $5",
            query = OrderPhase::Query,
            dispatched = OrderStatus::Dispatched,
        ))
        .bind(send_attempts)
        .bind(query_due_ms)
        .bind(now_ms)
        .bind(id)
        .bind(owner),
    )
    .await?;
    Ok(done == 1)
}

/// Gives a claimed task or order back untouched (but for its detail, when
/// one is given), due again at `due_at_ms` (`Change::Release`); whether
/// `owner` still held it.
pub(super) async fn release<B: Backend>(
    conn: &mut Conn<B>,
    owner: &str,
    of: &Leased,
    due_at_ms: i64,
    detail: Option<&str>,
) -> Result<bool, StoreError> {
    let (table, key) = match of {
        Leased::Task { .. } => ("agency_tasks", "inquiry_id = $4 AND agency = $5"),
        Leased::Order { .. } => ("orders", "id = $4"),
    };
    let mut sql = Sql::new(format!(
        "UPDATE {table} SET lease_owner = NULL, lease_until_ms = NULL, due_at_ms = $1, \
         detail = COALESCE($2, detail) WHERE lease_owner = $3 AND {key}"
    ))
    .bind(due_at_ms)
    .bind(detail)
    .bind(owner);
    sql = match of {
        Leased::Task { inquiry_id, agency } => sql.bind(inquiry_id).bind(agency),
        Leased::Order { id } => sql.bind(id),
    };
    Ok(B::execute(conn, sql).await? == 1)
}

/// Expires the measures in force or waiting whose end date is before
/// `today`, each with the callback `lapsed` makes of it, and wakes their
/// plans (`Change::ExpireOrders`); returns them, by end date.
pub(super) async fn expire_orders<B: Backend>(
    conn: &mut Conn<B>,
    today: &str,
    now_ms: i64,
    callbacks: Option<&dyn CompletionCallbacks>,
) -> Result<Vec<OrderRecord>, StoreError> {
    // Two instances expiring at once (PostgreSQL): the second waits for
    // the first's rows, finds them no longer live, and leaves them (one
    // callback).
    let mut expired: Vec<OrderRecord> = B::fetch_all(
        &mut *conn,
        Sql::new(format!(
            "UPDATE orders SET status = '{expired}', phase = '{DONE}', updated_at_ms = $1, \
             lease_owner = NULL, lease_until_ms = NULL \
             WHERE measure_order = id AND status IN {live} AND measure_end < $2 \
             RETURNING {ORDER_COLUMNS}",
            expired = OrderStatus::Expired,
            live = live(),
        ))
        .bind(now_ms)
        .bind(today),
    )
    .await?;
    expired.sort_by(|a, b| (&a.measure_end, &a.id).cmp(&(&b.measure_end, &b.id)));
    for order in &expired {
        if let Some(item) = callbacks.and_then(|c| c.lapsed(order, now_ms)) {
            insert_outbox::<B>(conn, &item).await?;
        }
        if let Some(plan) = &order.plan_id {
            wake_plan::<B>(conn, plan, now_ms).await?;
        }
    }
    Ok(expired)
}

/// Records the warning about an order's end date with its callback
/// (`Change::MarkWarned`); whether this call marked it (only the first
/// gateway to mark an end date sends the warning).
pub(super) async fn mark_warned<B: Backend>(
    conn: &mut Conn<B>,
    id: &str,
    end_date: &str,
    notify: Option<&OutboxRecord>,
) -> Result<bool, StoreError> {
    let marked = B::execute(
        &mut *conn,
        Sql::new(
            "UPDATE orders SET warned_end = $1 WHERE id = $2 \
             AND (warned_end IS NULL OR warned_end <> $1)",
        )
        .bind(end_date)
        .bind(id),
    )
    .await?
        == 1;
    if marked && let Some(item) = notify {
        insert_outbox::<B>(conn, item).await?;
    }
    Ok(marked)
}

/// Stores a plan's progress and releases its lease, with its callback,
/// where `owner` still holds it (`Change::SavePlan`).
pub(super) async fn save_plan<B: Backend>(
    conn: &mut Conn<B>,
    save: &SavePlan,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let p = &save.progress;
    let saved = B::execute(
        &mut *conn,
        Sql::new(
            "UPDATE freeze_plans SET next_index = $1, status = $2, controlled_fen = $3, \
             detail = $4, due_at_ms = $5, completed_at_ms = $6, updated_at_ms = $7, \
             lease_owner = NULL, lease_until_ms = NULL WHERE id = $8 AND lease_owner = $9",
        )
        .bind(p.next_index)
        .bind(p.status)
        .bind(p.controlled_fen)
        .bind(&p.detail)
        .bind(p.due_at_ms)
        .bind(p.completed_at_ms)
        .bind(now_ms)
        .bind(&save.id)
        .bind(&save.owner),
    )
    .await?
        == 1;
    if saved && let Some(item) = &save.notify {
        insert_outbox::<B>(conn, item).await?;
    }
    Ok(saved)
}

/// Clears the owed callback of every completed inquiry whose caller is not
/// one of `callers` (`Change::DropUnwantedCallbacks`); how many.
pub(super) async fn drop_unwanted_callbacks<B: Backend>(
    conn: &mut Conn<B>,
    callers: &[String],
) -> Result<u64, StoreError> {
    let callers_sql = B::one_of("caller", "$1");
    Ok(B::execute(
        conn,
        Sql::new(format!(
            "UPDATE inquiries SET callback_due = 0 WHERE callback_due = 1 \
             AND NOT ({callers_sql})"
        ))
        .bind(callers),
    )
    .await?)
}

/// Records one delivery attempt of a callback `owner` leases: delivered,
/// given up, or due again (`Change::Attempted`); whether it held the lease.
pub(super) async fn outbox_attempted<B: Backend>(
    conn: &mut Conn<B>,
    owner: &str,
    id: &str,
    attempts: i64,
    outcome: &OutboxOutcome,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (delivered, failed, due, error) = match outcome {
        OutboxOutcome::Delivered => (Some(now_ms), None, now_ms, None),
        OutboxOutcome::Retry { due_at_ms, error } => (None, None, *due_at_ms, Some(error.as_str())),
        OutboxOutcome::GaveUp { error } => (None, Some(now_ms), now_ms, Some(error.as_str())),
    };
    let done = B::execute(
        conn,
        Sql::new(
            "UPDATE outbox SET attempts = $1, delivered_at_ms = $2, failed_at_ms = $3, \
             due_at_ms = $4, last_error = COALESCE($5, last_error), lease_owner = NULL, \
             lease_until_ms = NULL WHERE id = $6 AND lease_owner = $7",
        )
        .bind(attempts)
        .bind(delivered)
        .bind(failed)
        .bind(due)
        .bind(error)
        .bind(id)
        .bind(owner),
    )
    .await?;
    Ok(done == 1)
}

/// A claim of work: the backend's statement with its arguments.
fn claim<'a>(text: String, owner: &'a str, now: i64, until: i64, n: i64) -> Sql<'a> {
    Sql::new(text)
        .bind(owner)
        .bind(until)
        .bind(now)
        .bind(limit(n))
}

/// Queues an inquiry's completion callback if it still owes one (another
/// gateway may have queued it), clearing what it owes; whether it did.
pub(super) async fn queue_owed<B: Backend>(
    conn: &mut Conn<B>,
    inquiry_id: &str,
    item: &OutboxRecord,
) -> Result<bool, StoreError> {
    let owed = B::execute(
        conn,
        Sql::new("UPDATE inquiries SET callback_due = 0 WHERE id = $1 AND callback_due = 1")
            .bind(inquiry_id),
    )
    .await?
        == 1;
    if owed {
        insert_outbox::<B>(conn, item).await?;
    }
    Ok(owed)
}

pub(super) async fn insert_outbox<B: Backend>(
    conn: &mut Conn<B>,
    item: &OutboxRecord,
) -> Result<(), sqlx::Error> {
    B::execute(
        conn,
        Sql::new(format!(
            "INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&item.id)
        .bind(&item.caller)
        .bind(&item.event)
        .bind(&item.resource_id)
        .bind(&item.body)
        .bind(item.attempts)
        .bind(item.due_at_ms)
        .bind(item.created_at_ms),
    )
    .await?;
    Ok(())
}

/// Wakes a running plan up now.
async fn wake_plan<B: Backend>(
    conn: &mut Conn<B>,
    plan: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    B::execute(
        conn,
        Sql::new(format!(
            "UPDATE freeze_plans SET due_at_ms = $1 WHERE id = $2 AND status = '{PLAN_RUNNING}'"
        ))
        .bind(now_ms)
        .bind(plan),
    )
    .await?;
    Ok(())
}

/// Stores a new order on `conn` (a pooled connection, or the journal's
/// transaction), or reads back the one stored under its key before.
pub(super) async fn insert_order<B: Backend>(
    conn: &mut Conn<B>,
    o: &OrderRecord,
) -> Result<Created<OrderRecord>, StoreError> {
    let (account, unit, security_code) = asset_columns(&o.asset);
    let row = vec![
        Arg::from(&o.id),
        (&o.caller).into(),
        (&o.idempotency_key).into(),
        (&o.body_sha256).into(),
        (&o.case_number).into(),
        subject_kind(o.subject.kind()).into(),
        o.subject.name().into(),
        o.subject.identifier().into(),
        json(&o.officers)?.into(),
        json(&o.court)?.into(),
        json(&o.documents)?.into(),
        o.action.into(),
        (&o.agency).into(),
        o.asset.kind().as_str().into(),
        account.into(),
        unit.into(),
        security_code.into(),
        o.amount_fen.into(),
        o.quantity.into(),
        (&o.start_date).into(),
        (&o.end_date).into(),
        (&o.prior_order).into(),
        (&o.measure_order).into(),
        (&o.prior_request_number).into(),
        (&o.plan_id).into(),
        (&o.request_number).into(),
        o.status.into(),
        o.phase.into(),
        o.send_attempts.into(),
        o.steps.into(),
        (&o.ticket).into(),
        o.controlled_fen.into(),
        o.shortfall_fen.into(),
        o.controlled_quantity.into(),
        o.shortfall_quantity.into(),
        o.deducted_fen.into(),
        (&o.reason).into(),
        o.queue_position.into(),
        (&o.measure_start).into(),
        (&o.measure_end).into(),
        (&o.agency_reference).into(),
        (&o.detail).into(),
        (&o.warned_end).into(),
        o.due_at_ms.into(),
        o.created_at_ms.into(),
        o.updated_at_ms.into(),
        o.decided_at_ms.into(),
        o.acknowledged_documents
            .as_ref()
            .map(json)
            .transpose()?
            .into(),
        o.documents_mismatch.into(),
    ];
    let existing = orders(BY_KEY).bind(&o.caller);
    insert_once::<B, _>(
        conn,
        "orders",
        ORDER_COLUMNS,
        row,
        existing,
        &o.idempotency_key,
        o,
    )
    .await
}

/// Stores a new freeze plan on `conn` (a pooled connection, or the
/// journal's transaction), or reads back the one stored under its key
/// before.
pub(super) async fn insert_plan<B: Backend>(
    conn: &mut Conn<B>,
    p: &PlanRecord,
) -> Result<Created<PlanRecord>, StoreError> {
    let row = vec![
        Arg::from(&p.id),
        (&p.caller).into(),
        (&p.idempotency_key).into(),
        (&p.body_sha256).into(),
        (&p.case_number).into(),
        subject_kind(p.subject.kind()).into(),
        p.subject.name().into(),
        p.subject.identifier().into(),
        json(&p.officers)?.into(),
        json(&p.court)?.into(),
        json(&p.documents)?.into(),
        (&p.inquiry_id).into(),
        p.amount_fen.into(),
        (&p.end_date).into(),
        json(&p.accounts)?.into(),
        p.next_index.into(),
        p.status.into(),
        p.controlled_fen.into(),
        (&p.detail).into(),
        p.due_at_ms.into(),
        p.created_at_ms.into(),
        p.updated_at_ms.into(),
        p.completed_at_ms.into(),
    ];
    let existing = plans(BY_KEY).bind(&p.caller);
    insert_once::<B, _>(
        conn,
        "freeze_plans",
        PLAN_COLUMNS,
        row,
        existing,
        &p.idempotency_key,
        p,
    )
    .await
}

/// Inserts `row` into `table` unless its caller's idempotency `key` is
/// taken; then the row stored under it is read back (`existing`, with the
/// caller bound). A
/// concurrent insert under the same key makes this one wait for its commit
/// (PostgreSQL), then do nothing: the row that won is read back.
async fn insert_once<B: Backend, T: Record + Clone>(
    conn: &mut Conn<B>,
    table: &str,
    columns: &str,
    row: Vec<Arg<'_>>,
    existing: Sql<'_>,
    key: &str,
    record: &T,
) -> Result<Created<T>, StoreError> {
    let mut insert = Sql::new(format!("INSERT INTO {table} ({columns}) VALUES ("));
    for (i, value) in row.into_iter().enumerate() {
        insert.push(if i == 0 { "" } else { ", " }).push_bind(value);
    }
    insert.push(") ON CONFLICT (caller, idempotency_key) DO NOTHING");
    if B::execute(conn, insert).await? == 1 {
        return Ok(Created::New(record.clone()));
    }
    let existing: Option<T> = B::fetch_optional(conn, existing.bind(key)).await?;
    existing.map(Created::Existing).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{table} under idempotency key {key:?} conflicted but cannot be read"
        ))
    })
}

/// Stores an order's progress where `owner` still holds its lease, its
/// effect on the measure it acts on, the plans to look again, and the
/// callbacks it owes, on `conn` (a transaction of its own, or the
/// journal's). False when the lease was lost.
#[allow(clippy::too_many_arguments)]
pub(super) async fn save_order_in<B: Backend>(
    conn: &mut Conn<B>,
    owner: &str,
    id: &str,
    p: &OrderProgress,
    effect: Option<&MeasureEffect>,
    notify: &[OutboxRecord],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let saved: Option<(String, Option<String>)> = B::fetch_optional(
        &mut *conn,
        Sql::new(
            "UPDATE orders SET status = $1, phase = $2, send_attempts = $3, ticket = $4, \
             controlled_fen = $5, shortfall_fen = $6, reason = $7, queue_position = $8, \
             measure_start = $9, measure_end = $10, agency_reference = $11, detail = $12, \
             due_at_ms = $13, decided_at_ms = $14, acknowledged_documents = $15, \
             documents_mismatch = $16, updated_at_ms = $17, controlled_quantity = $18, \
             shortfall_quantity = $19, lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = $20 AND lease_owner = $21 RETURNING measure_order, plan_id",
        )
        .bind(p.status)
        .bind(p.phase)
        .bind(p.send_attempts)
        .bind(&p.ticket)
        .bind(p.controlled_fen)
        .bind(p.shortfall_fen)
        .bind(&p.reason)
        .bind(p.queue_position)
        .bind(&p.measure_start)
        .bind(&p.measure_end)
        .bind(&p.agency_reference)
        .bind(&p.detail)
        .bind(p.due_at_ms)
        .bind(p.decided_at_ms)
        .bind_json(p.acknowledged_documents.as_ref())
        .bind(p.documents_mismatch)
        .bind(now_ms)
        .bind(p.controlled_quantity)
        .bind(p.shortfall_quantity)
        .bind(id)
        .bind(owner),
    )
    .await?;
    let Some((measure, plan)) = saved else {
        return Ok(false);
    };
    let on_measure = match effect {
        None => None,
        Some(MeasureEffect::Renewed { end_date }) => Some(
            Sql::new(format!(
                "UPDATE orders SET measure_end = $1, updated_at_ms = $2 \
                 WHERE id = $3 AND status IN {live}",
                live = live()
            ))
            .bind(end_date.as_str()),
        ),
        // The measure's own watch ends: it is lifted.
        Some(MeasureEffect::Released) => Some(Sql::new(format!(
            "UPDATE orders SET status = '{released}', phase = '{DONE}', updated_at_ms = $1 \
             WHERE id = $2 AND status NOT IN {ended}",
            released = OrderStatus::Released,
            ended = sql_list(&OrderStatus::ENDED),
        ))),
        Some(MeasureEffect::Deducted { amount_fen }) => Some(
            Sql::new(
                "UPDATE orders SET deducted_fen = deducted_fen + $1, \
                 controlled_fen = CASE WHEN COALESCE(controlled_fen, 0) > $1 \
                     THEN COALESCE(controlled_fen, 0) - $1 ELSE 0 END, \
                 updated_at_ms = $2 WHERE id = $3",
            )
            .bind(*amount_fen),
        ),
    };
    // The plan of this order (or of the measure it acts on) looks again.
    let mut plans: Vec<String> = plan.into_iter().collect();
    if let Some(q) = on_measure {
        B::execute(&mut *conn, q.bind(now_ms).bind(&measure)).await?;
        let measure_plan: Option<(Option<String>,)> = B::fetch_optional(
            &mut *conn,
            Sql::new("SELECT plan_id FROM orders WHERE id = $1").bind(&measure),
        )
        .await?;
        plans.extend(measure_plan.and_then(|(p,)| p));
    }
    for plan in &plans {
        wake_plan::<B>(&mut *conn, plan, now_ms).await?;
    }
    for item in notify {
        insert_outbox::<B>(&mut *conn, item).await?;
    }
    Ok(true)
}
