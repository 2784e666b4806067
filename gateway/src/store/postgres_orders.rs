//! The PostgreSQL side of orders, freeze plans and the callback outbox: the
//! SQLite side's semantics, with claims that several gateways can share
//! (`FOR UPDATE SKIP LOCKED`) and idempotency keys that hold under races
//! (`ON CONFLICT DO NOTHING`, then the row that won).

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use super::StoreError;
use super::orders::{
    Created, MeasureEffect, OrderProgress, OrderRecord, OrderStore, OutboxOutcome, OutboxRecord,
    PHASE_DONE, PlanProgress, PlanRecord,
};
use super::postgres::{PgStore, limit, placeholders};

const ORDER_COLUMNS: &str = "id, caller, idempotency_key, body_sha256, case_number, subject_kind, \
     subject_name, subject_id, officers, court, documents, action, agency, account_number, \
     unit_number, amount_fen, start_date, end_date, prior_order, measure_order, \
     prior_request_number, plan_id, request_number, status, phase, send_attempts, steps, ticket, \
     controlled_fen, shortfall_fen, deducted_fen, reason, queue_position, measure_start, \
     measure_end, agency_reference, detail, warned_end, due_at_ms, created_at_ms, updated_at_ms, \
     decided_at_ms, acknowledged_documents, documents_mismatch";
const ORDER_COLUMN_COUNT: usize = 44;

/// Statuses of a measure that can still lapse.
const LIVE: &str = "('applied', 'partial', 'waiting')";

fn order_from(r: &PgRow) -> Result<OrderRecord, sqlx::Error> {
    Ok(OrderRecord {
        id: r.try_get("id")?,
        caller: r.try_get("caller")?,
        idempotency_key: r.try_get("idempotency_key")?,
        body_sha256: r.try_get("body_sha256")?,
        case_number: r.try_get("case_number")?,
        subject_kind: r.try_get("subject_kind")?,
        subject_name: r.try_get("subject_name")?,
        subject_id: r.try_get("subject_id")?,
        officers: r.try_get("officers")?,
        court: r.try_get("court")?,
        documents: r.try_get("documents")?,
        action: r.try_get("action")?,
        agency: r.try_get("agency")?,
        account_number: r.try_get("account_number")?,
        unit_number: r.try_get("unit_number")?,
        amount_fen: r.try_get("amount_fen")?,
        start_date: r.try_get("start_date")?,
        end_date: r.try_get("end_date")?,
        prior_order: r.try_get("prior_order")?,
        measure_order: r.try_get("measure_order")?,
        prior_request_number: r.try_get("prior_request_number")?,
        plan_id: r.try_get("plan_id")?,
        request_number: r.try_get("request_number")?,
        status: r.try_get("status")?,
        phase: r.try_get("phase")?,
        send_attempts: r.try_get("send_attempts")?,
        steps: r.try_get("steps")?,
        ticket: r.try_get("ticket")?,
        controlled_fen: r.try_get("controlled_fen")?,
        shortfall_fen: r.try_get("shortfall_fen")?,
        deducted_fen: r.try_get("deducted_fen")?,
        reason: r.try_get("reason")?,
        queue_position: r.try_get("queue_position")?,
        measure_start: r.try_get("measure_start")?,
        measure_end: r.try_get("measure_end")?,
        agency_reference: r.try_get("agency_reference")?,
        detail: r.try_get("detail")?,
        warned_end: r.try_get("warned_end")?,
        due_at_ms: r.try_get("due_at_ms")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        decided_at_ms: r.try_get("decided_at_ms")?,
        acknowledged_documents: r.try_get("acknowledged_documents")?,
        documents_mismatch: r.try_get("documents_mismatch")?,
    })
}

const PLAN_COLUMNS: &str = "id, caller, idempotency_key, body_sha256, case_number, subject_kind, \
     subject_name, subject_id, officers, court, documents, inquiry_id, amount_fen, end_date, \
     accounts, next_index, status, controlled_fen, detail, due_at_ms, created_at_ms, \
     updated_at_ms, completed_at_ms";
const PLAN_COLUMN_COUNT: usize = 23;

fn plan_from(r: &PgRow) -> Result<PlanRecord, sqlx::Error> {
    Ok(PlanRecord {
        id: r.try_get("id")?,
        caller: r.try_get("caller")?,
        idempotency_key: r.try_get("idempotency_key")?,
        body_sha256: r.try_get("body_sha256")?,
        case_number: r.try_get("case_number")?,
        subject_kind: r.try_get("subject_kind")?,
        subject_name: r.try_get("subject_name")?,
        subject_id: r.try_get("subject_id")?,
        officers: r.try_get("officers")?,
        court: r.try_get("court")?,
        documents: r.try_get("documents")?,
        inquiry_id: r.try_get("inquiry_id")?,
        amount_fen: r.try_get("amount_fen")?,
        end_date: r.try_get("end_date")?,
        accounts: r.try_get("accounts")?,
        next_index: r.try_get("next_index")?,
        status: r.try_get("status")?,
        controlled_fen: r.try_get("controlled_fen")?,
        detail: r.try_get("detail")?,
        due_at_ms: r.try_get("due_at_ms")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        completed_at_ms: r.try_get("completed_at_ms")?,
    })
}

const OUTBOX_COLUMNS: &str =
    "id, caller, event, resource_id, body, attempts, due_at_ms, created_at_ms";

fn outbox_from(r: &PgRow) -> Result<OutboxRecord, sqlx::Error> {
    Ok(OutboxRecord {
        id: r.try_get("id")?,
        caller: r.try_get("caller")?,
        event: r.try_get("event")?,
        resource_id: r.try_get("resource_id")?,
        body: r.try_get("body")?,
        attempts: r.try_get("attempts")?,
        due_at_ms: r.try_get("due_at_ms")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

fn rows<T>(rows: &[PgRow], f: fn(&PgRow) -> Result<T, sqlx::Error>) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(f)
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

async fn insert_outbox(
    tx: &mut Transaction<'_, Postgres>,
    item: &OutboxRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES ({})",
        placeholders(8)
    )))
    .bind(&item.id)
    .bind(&item.caller)
    .bind(&item.event)
    .bind(&item.resource_id)
    .bind(&item.body)
    .bind(item.attempts)
    .bind(item.due_at_ms)
    .bind(item.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Wakes a running plan up now.
async fn wake_plan(
    tx: &mut Transaction<'_, Postgres>,
    plan: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE freeze_plans SET due_at_ms = $1 WHERE id = $2 AND status = 'running'")
        .bind(now_ms)
        .bind(plan)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl OrderStore for PgStore {
    async fn lock_decision(
        &self,
        keys: &[String],
        wait: std::time::Duration,
    ) -> Result<super::DecisionLock, StoreError> {
        super::decision::lock_shared(&self.local_locks, &self.lock_pool, keys, wait).await
    }

    async fn create_order(&self, o: &OrderRecord) -> Result<Created<OrderRecord>, StoreError> {
        // A concurrent insert under the same key makes this one wait for
        // its commit, then do nothing: the row that won is read back.
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({}) \
             ON CONFLICT (caller, idempotency_key) DO NOTHING",
            placeholders(ORDER_COLUMN_COUNT)
        )))
        .bind(&o.id)
        .bind(&o.caller)
        .bind(&o.idempotency_key)
        .bind(&o.body_sha256)
        .bind(&o.case_number)
        .bind(&o.subject_kind)
        .bind(&o.subject_name)
        .bind(&o.subject_id)
        .bind(&o.officers)
        .bind(&o.court)
        .bind(&o.documents)
        .bind(&o.action)
        .bind(&o.agency)
        .bind(&o.account_number)
        .bind(&o.unit_number)
        .bind(o.amount_fen)
        .bind(&o.start_date)
        .bind(&o.end_date)
        .bind(&o.prior_order)
        .bind(&o.measure_order)
        .bind(&o.prior_request_number)
        .bind(&o.plan_id)
        .bind(&o.request_number)
        .bind(&o.status)
        .bind(&o.phase)
        .bind(o.send_attempts)
        .bind(o.steps)
        .bind(&o.ticket)
        .bind(o.controlled_fen)
        .bind(o.shortfall_fen)
        .bind(o.deducted_fen)
        .bind(&o.reason)
        .bind(o.queue_position)
        .bind(&o.measure_start)
        .bind(&o.measure_end)
        .bind(&o.agency_reference)
        .bind(&o.detail)
        .bind(&o.warned_end)
        .bind(o.due_at_ms)
        .bind(o.created_at_ms)
        .bind(o.updated_at_ms)
        .bind(o.decided_at_ms)
        .bind(&o.acknowledged_documents)
        .bind(o.documents_mismatch)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Created::New(o.clone()));
        }
        match self.order_by_key(&o.caller, &o.idempotency_key).await? {
            Some(existing) => Ok(Created::Existing(existing)),
            None => Err(StoreError::Corrupt(format!(
                "order under idempotency key {:?} conflicted but cannot be read",
                o.idempotency_key
            ))),
        }
    }

    async fn order(&self, id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(order_from).transpose()?)
    }

    async fn order_by_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE caller = $1 AND idempotency_key = $2"
        )))
        .bind(caller)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(order_from).transpose()?)
    }

    async fn orders_by_case(
        &self,
        caller: &str,
        case_number: &str,
        expiring_before: Option<&str>,
        n: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let found = match expiring_before {
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE caller = $1 AND case_number = $2 \
                     ORDER BY created_at_ms DESC, id DESC LIMIT $3"
                )))
                .bind(caller)
                .bind(case_number)
                .bind(limit(n))
                .fetch_all(&self.pool)
                .await?
            }
            Some(before) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE caller = $1 AND case_number = $2 \
                     AND status IN {LIVE} AND measure_order = id AND measure_end < $3 \
                     ORDER BY measure_end, id LIMIT $4"
                )))
                .bind(caller)
                .bind(case_number)
                .bind(before)
                .bind(limit(n))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows(&found, order_from)
    }

    async fn orders_of_measure(&self, measure_order: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE measure_order = $1 \
             ORDER BY (id = measure_order) DESC, created_at_ms, id"
        )))
        .bind(measure_order)
        .fetch_all(&self.pool)
        .await?;
        rows(&found, order_from)
    }

    async fn orders_of_plan(&self, plan_id: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE plan_id = $1 ORDER BY created_at_ms, id"
        )))
        .bind(plan_id)
        .fetch_all(&self.pool)
        .await?;
        rows(&found, order_from)
    }

    async fn claim_due_orders(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        n: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "WITH due AS MATERIALIZED ( \
                 SELECT id FROM orders WHERE phase <> '{PHASE_DONE}' AND due_at_ms <= $3 \
                     AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                 ORDER BY due_at_ms LIMIT $4 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
                 UPDATE orders SET lease_owner = $1, lease_until_ms = $2, steps = steps + 1 \
                 WHERE id IN (SELECT id FROM due) RETURNING {ORDER_COLUMNS}) \
             SELECT {ORDER_COLUMNS} FROM claimed ORDER BY due_at_ms, id"
        )))
        .bind(owner)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        rows(&found, order_from)
    }

    async fn mark_sending(
        &self,
        owner: &str,
        id: &str,
        send_attempts: i64,
        now_ms: i64,
        query_due_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE orders SET phase = 'query', status = 'dispatched', send_attempts = $1, \
             due_at_ms = $2, updated_at_ms = $3 WHERE id = $4 AND lease_owner = $5",
        )
        .bind(send_attempts)
        .bind(query_due_ms)
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn save_order(
        &self,
        owner: &str,
        id: &str,
        p: &OrderProgress,
        effect: Option<&MeasureEffect>,
        notify: &[OutboxRecord],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE orders SET status = $1, phase = $2, send_attempts = $3, ticket = $4, \
             controlled_fen = $5, shortfall_fen = $6, reason = $7, queue_position = $8, \
             measure_start = $9, measure_end = $10, agency_reference = $11, detail = $12, \
             due_at_ms = $13, decided_at_ms = $14, updated_at_ms = $15, lease_owner = NULL, \
             lease_until_ms = NULL, acknowledged_documents = $18, documents_mismatch = $19 \
             WHERE id = $16 AND lease_owner = $17 RETURNING measure_order, plan_id",
        )
        .bind(&p.status)
        .bind(&p.phase)
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
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .bind(&p.acknowledged_documents)
        .bind(p.documents_mismatch)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = done else {
            return Ok(false);
        };
        let measure: String = row.try_get("measure_order")?;
        let plan: Option<String> = row.try_get("plan_id")?;
        match effect {
            None => {}
            Some(MeasureEffect::Renewed { end_date }) => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE orders SET measure_end = $1, updated_at_ms = $2 \
                     WHERE id = $3 AND status IN {LIVE}"
                )))
                .bind(end_date)
                .bind(now_ms)
                .bind(&measure)
                .execute(&mut *tx)
                .await?;
            }
            Some(MeasureEffect::Released) => {
                // The measure's own watch ends: it is lifted.
                sqlx::query(
                    "UPDATE orders SET status = 'released', phase = 'done', updated_at_ms = $1 \
                     WHERE id = $2 AND status NOT IN ('released', 'expired', 'refused', 'failed')",
                )
                .bind(now_ms)
                .bind(&measure)
                .execute(&mut *tx)
                .await?;
            }
            Some(MeasureEffect::Deducted { amount_fen }) => {
                sqlx::query(
                    "UPDATE orders SET deducted_fen = deducted_fen + $1, \
                     controlled_fen = GREATEST(COALESCE(controlled_fen, 0) - $1, 0), \
                     updated_at_ms = $2 WHERE id = $3",
                )
                .bind(amount_fen)
                .bind(now_ms)
                .bind(&measure)
                .execute(&mut *tx)
                .await?;
            }
        }
        // The plan of this order (or of the measure it acts on) looks again.
        let measure_plan: Option<String> = if effect.is_some() {
            sqlx::query_scalar("SELECT plan_id FROM orders WHERE id = $1")
                .bind(&measure)
                .fetch_optional(&mut *tx)
                .await?
                .flatten()
        } else {
            None
        };
        for plan in plan.iter().chain(measure_plan.iter()) {
            wake_plan(&mut tx, plan, now_ms).await?;
        }
        for item in notify {
            insert_outbox(&mut tx, item).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release_order(
        &self,
        owner: &str,
        id: &str,
        due_at_ms: i64,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET lease_owner = NULL, lease_until_ms = NULL, due_at_ms = $1, \
             detail = COALESCE($2, detail) WHERE id = $3 AND lease_owner = $4",
        )
        .bind(due_at_ms)
        .bind(detail)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn expire_orders(
        &self,
        today: &str,
        now_ms: i64,
        notify: &(dyn for<'r> Fn(&'r OrderRecord) -> Option<OutboxRecord> + Send + Sync),
    ) -> Result<Vec<OrderRecord>, StoreError> {
        // Two instances expiring at once: the second waits for the first's
        // rows, finds them no longer live, and leaves them (one callback).
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(AssertSqlSafe(format!(
            "WITH expired AS ( \
                 UPDATE orders SET status = 'expired', phase = 'done', updated_at_ms = $1, \
                 lease_owner = NULL, lease_until_ms = NULL \
                 WHERE measure_order = id AND status IN {LIVE} AND measure_end < $2 \
                 RETURNING {ORDER_COLUMNS}) \
             SELECT {ORDER_COLUMNS} FROM expired ORDER BY measure_end, id"
        )))
        .bind(now_ms)
        .bind(today)
        .fetch_all(&mut *tx)
        .await?;
        let expired = rows(&found, order_from)?;
        for order in &expired {
            if let Some(item) = notify(order) {
                insert_outbox(&mut tx, &item).await?;
            }
            if let Some(plan) = &order.plan_id {
                wake_plan(&mut tx, plan, now_ms).await?;
            }
        }
        tx.commit().await?;
        Ok(expired)
    }

    async fn orders_to_warn(&self, before: &str, n: i64) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE measure_order = id AND status IN {LIVE} \
             AND measure_end < $1 AND (warned_end IS NULL OR warned_end <> measure_end) \
             ORDER BY measure_end LIMIT $2"
        )))
        .bind(before)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        rows(&found, order_from)
    }

    async fn mark_warned(
        &self,
        id: &str,
        end_date: &str,
        notify: Option<&OutboxRecord>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Only the first gateway to mark this end date sends the warning.
        let marked = sqlx::query(
            "UPDATE orders SET warned_end = $1 WHERE id = $2 \
             AND (warned_end IS NULL OR warned_end <> $1)",
        )
        .bind(end_date)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 1
            && let Some(item) = notify
        {
            insert_outbox(&mut tx, item).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_plan(&self, p: &PlanRecord) -> Result<Created<PlanRecord>, StoreError> {
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO freeze_plans ({PLAN_COLUMNS}) VALUES ({}) \
             ON CONFLICT (caller, idempotency_key) DO NOTHING",
            placeholders(PLAN_COLUMN_COUNT)
        )))
        .bind(&p.id)
        .bind(&p.caller)
        .bind(&p.idempotency_key)
        .bind(&p.body_sha256)
        .bind(&p.case_number)
        .bind(&p.subject_kind)
        .bind(&p.subject_name)
        .bind(&p.subject_id)
        .bind(&p.officers)
        .bind(&p.court)
        .bind(&p.documents)
        .bind(&p.inquiry_id)
        .bind(p.amount_fen)
        .bind(&p.end_date)
        .bind(&p.accounts)
        .bind(p.next_index)
        .bind(&p.status)
        .bind(p.controlled_fen)
        .bind(&p.detail)
        .bind(p.due_at_ms)
        .bind(p.created_at_ms)
        .bind(p.updated_at_ms)
        .bind(p.completed_at_ms)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Created::New(p.clone()));
        }
        match self.plan_by_key(&p.caller, &p.idempotency_key).await? {
            Some(existing) => Ok(Created::Existing(existing)),
            None => Err(StoreError::Corrupt(format!(
                "freeze plan under idempotency key {:?} conflicted but cannot be read",
                p.idempotency_key
            ))),
        }
    }

    async fn plan(&self, id: &str) -> Result<Option<PlanRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PLAN_COLUMNS} FROM freeze_plans WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(plan_from).transpose()?)
    }

    async fn plan_by_key(&self, caller: &str, key: &str) -> Result<Option<PlanRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PLAN_COLUMNS} FROM freeze_plans WHERE caller = $1 AND idempotency_key = $2"
        )))
        .bind(caller)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(plan_from).transpose()?)
    }

    async fn claim_due_plans(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        n: i64,
    ) -> Result<Vec<PlanRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "WITH due AS MATERIALIZED ( \
                 SELECT id FROM freeze_plans WHERE status = 'running' AND due_at_ms <= $3 \
                     AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                 ORDER BY due_at_ms LIMIT $4 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
                 UPDATE freeze_plans SET lease_owner = $1, lease_until_ms = $2 \
                 WHERE id IN (SELECT id FROM due) RETURNING {PLAN_COLUMNS}) \
             SELECT {PLAN_COLUMNS} FROM claimed ORDER BY due_at_ms, id"
        )))
        .bind(owner)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        rows(&found, plan_from)
    }

    async fn save_plan(
        &self,
        owner: &str,
        id: &str,
        p: &PlanProgress,
        notify: Option<&OutboxRecord>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE freeze_plans SET next_index = $1, status = $2, controlled_fen = $3, \
             detail = $4, due_at_ms = $5, completed_at_ms = $6, updated_at_ms = $7, \
             lease_owner = NULL, lease_until_ms = NULL WHERE id = $8 AND lease_owner = $9",
        )
        .bind(p.next_index)
        .bind(&p.status)
        .bind(p.controlled_fen)
        .bind(&p.detail)
        .bind(p.due_at_ms)
        .bind(p.completed_at_ms)
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(item) = notify {
            insert_outbox(&mut tx, item).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn enqueue(&self, item: &OutboxRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_outbox(&mut tx, item).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn inquiries_owing_callbacks(
        &self,
        callers: &[String],
        completed_before_ms: i64,
        n: i64,
    ) -> Result<Vec<String>, StoreError> {
        let found = sqlx::query(
            "SELECT id FROM inquiries WHERE callback_due = 1 AND completed_at_ms <= $1 \
               AND caller = ANY($2::text[]) ORDER BY completed_at_ms LIMIT $3",
        )
        .bind(completed_before_ms)
        .bind(callers)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        found
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn drop_unwanted_callbacks(&self, callers: &[String]) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE inquiries SET callback_due = 0 WHERE callback_due = 1 \
               AND NOT (caller = ANY($1::text[]))",
        )
        .bind(callers)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn queue_inquiry_callback(
        &self,
        inquiry_id: &str,
        item: &OutboxRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let owed =
            sqlx::query("UPDATE inquiries SET callback_due = 0 WHERE id = $1 AND callback_due = 1")
                .bind(inquiry_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if owed {
            insert_outbox(&mut tx, item).await?;
        }
        tx.commit().await?;
        Ok(owed)
    }

    async fn claim_outbox(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        n: i64,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "WITH due AS MATERIALIZED ( \
                 SELECT id FROM outbox WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL \
                     AND due_at_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                 ORDER BY due_at_ms LIMIT $4 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
                 UPDATE outbox SET lease_owner = $1, lease_until_ms = $2 \
                 WHERE id IN (SELECT id FROM due) RETURNING {OUTBOX_COLUMNS}) \
             SELECT {OUTBOX_COLUMNS} FROM claimed ORDER BY due_at_ms, id"
        )))
        .bind(owner)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        rows(&found, outbox_from)
    }

    async fn outbox_attempted(
        &self,
        owner: &str,
        id: &str,
        attempts: i64,
        outcome: OutboxOutcome<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (delivered, failed, due, error) = match outcome {
            OutboxOutcome::Delivered => (Some(now_ms), None, now_ms, None),
            OutboxOutcome::Retry { due_at_ms, error } => (None, None, due_at_ms, Some(error)),
            OutboxOutcome::GaveUp { error } => (None, Some(now_ms), now_ms, Some(error)),
        };
        sqlx::query(
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
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn orders_with_document_mismatch(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        limit_rows: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE documents_mismatch \
             AND created_at_ms >= $1 AND created_at_ms < $2 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $3"
        )))
        .bind(from_ms.unwrap_or(i64::MIN))
        .bind(to_ms.unwrap_or(i64::MAX))
        .bind(limit(limit_rows))
        .fetch_all(&self.pool)
        .await?;
        found
            .iter()
            .map(order_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn next_order_work_ms(&self) -> Result<Option<i64>, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(due) FROM ( \
                 SELECT MIN(due_at_ms) AS due FROM orders WHERE phase <> 'done' \
                 UNION ALL SELECT MIN(due_at_ms) FROM freeze_plans WHERE status = 'running' \
                 UNION ALL SELECT MIN(due_at_ms) FROM outbox \
                     WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL) AS work",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }
}
