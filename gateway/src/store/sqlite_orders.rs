//! The SQLite side of orders, freeze plans and the callback outbox.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use super::orders::{
    Created, MeasureEffect, OrderProgress, OrderRecord, OrderStore, OutboxOutcome, OutboxRecord,
    PHASE_DONE, PlanProgress, PlanRecord,
};
use super::{SqliteStore, StoreError};

const ORDER_COLUMNS: &str = "id, caller, idempotency_key, body_sha256, case_number, subject_kind, \
     subject_name, subject_id, officers, court, documents, action, agency, account_number, \
     unit_number, amount_fen, start_date, end_date, prior_order, measure_order, \
     prior_request_number, plan_id, request_number, status, phase, send_attempts, steps, ticket, \
     controlled_fen, shortfall_fen, deducted_fen, reason, queue_position, measure_start, \
     measure_end, agency_reference, detail, warned_end, due_at_ms, created_at_ms, updated_at_ms, \
     decided_at_ms, acknowledged_documents, documents_mismatch";

/// Statuses of a measure that can still lapse.
const LIVE: &str = "('applied', 'partial', 'waiting')";

fn order_from(r: &SqliteRow) -> Result<OrderRecord, sqlx::Error> {
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
        documents_mismatch: r.try_get::<i64, _>("documents_mismatch")? != 0,
    })
}

const PLAN_COLUMNS: &str = "id, caller, idempotency_key, body_sha256, case_number, subject_kind, \
     subject_name, subject_id, officers, court, documents, inquiry_id, amount_fen, end_date, \
     accounts, next_index, status, controlled_fen, detail, due_at_ms, created_at_ms, \
     updated_at_ms, completed_at_ms";

fn plan_from(r: &SqliteRow) -> Result<PlanRecord, sqlx::Error> {
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

fn outbox_from(r: &SqliteRow) -> Result<OutboxRecord, sqlx::Error> {
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

fn rows<T>(
    rows: &[SqliteRow],
    f: fn(&SqliteRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(f)
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

async fn insert_outbox(
    tx: &mut Transaction<'_, Sqlite>,
    item: &OutboxRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, caller, event, resource_id, body, attempts, due_at_ms, \
         created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
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

#[async_trait]
impl OrderStore for SqliteStore {
    async fn lock_decision(
        &self,
        keys: &[String],
        wait: std::time::Duration,
    ) -> Result<super::DecisionLock, StoreError> {
        super::decision::lock_local(&self.local_locks, keys, wait).await
    }

    async fn create_order(&self, o: &OrderRecord) -> Result<Created<OrderRecord>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let existing = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE caller = ? AND idempotency_key = ?"
        )))
        .bind(&o.caller)
        .bind(&o.idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Ok(Created::Existing(order_from(&row)?));
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
             ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        .bind(i64::from(o.documents_mismatch))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Created::New(o.clone()))
    }

    async fn order(&self, id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?"
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
            "SELECT {ORDER_COLUMNS} FROM orders WHERE caller = ? AND idempotency_key = ?"
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
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let found = match expiring_before {
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE caller = ? AND case_number = ? \
                     ORDER BY created_at_ms DESC, id DESC LIMIT ?"
                )))
                .bind(caller)
                .bind(case_number)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            Some(before) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE caller = ? AND case_number = ? \
                     AND status IN {LIVE} AND measure_order = id AND measure_end < ? \
                     ORDER BY measure_end, id LIMIT ?"
                )))
                .bind(caller)
                .bind(case_number)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows(&found, order_from)
    }

    async fn orders_of_measure(&self, measure_order: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE measure_order = ? \
             ORDER BY (id = measure_order) DESC, created_at_ms, id"
        )))
        .bind(measure_order)
        .fetch_all(&self.pool)
        .await?;
        rows(&found, order_from)
    }

    async fn orders_of_plan(&self, plan_id: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE plan_id = ? ORDER BY created_at_ms, id"
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
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "UPDATE orders SET lease_owner = ?, lease_until_ms = ?, steps = steps + 1 \
             WHERE id IN (SELECT id FROM orders WHERE phase <> '{PHASE_DONE}' AND due_at_ms <= ? \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= ?) \
                 ORDER BY due_at_ms LIMIT ?) \
             RETURNING {ORDER_COLUMNS}"
        )))
        .bind(owner)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(limit)
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
            "UPDATE orders SET phase = 'query', status = 'dispatched', send_attempts = ?, \
             due_at_ms = ?, updated_at_ms = ? WHERE id = ? AND lease_owner = ?",
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE orders SET status = ?, phase = ?, send_attempts = ?, ticket = ?, \
             controlled_fen = ?, shortfall_fen = ?, reason = ?, queue_position = ?, \
             measure_start = ?, measure_end = ?, agency_reference = ?, detail = ?, due_at_ms = ?, \
             decided_at_ms = ?, acknowledged_documents = ?, documents_mismatch = ?, \
             updated_at_ms = ?, lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = ? AND lease_owner = ? RETURNING measure_order, plan_id",
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
        .bind(&p.acknowledged_documents)
        .bind(i64::from(p.documents_mismatch))
        .bind(now_ms)
        .bind(id)
        .bind(owner)
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
                    "UPDATE orders SET measure_end = ?, updated_at_ms = ? \
                     WHERE id = ? AND status IN {LIVE}"
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
                    "UPDATE orders SET status = 'released', phase = 'done', updated_at_ms = ? \
                     WHERE id = ? AND status NOT IN ('released', 'expired', 'refused', 'failed')",
                )
                .bind(now_ms)
                .bind(&measure)
                .execute(&mut *tx)
                .await?;
            }
            Some(MeasureEffect::Deducted { amount_fen }) => {
                sqlx::query(
                    "UPDATE orders SET deducted_fen = deducted_fen + ?, \
                     controlled_fen = MAX(COALESCE(controlled_fen, 0) - ?, 0), updated_at_ms = ? \
                     WHERE id = ?",
                )
                .bind(amount_fen)
                .bind(amount_fen)
                .bind(now_ms)
                .bind(&measure)
                .execute(&mut *tx)
                .await?;
            }
        }
        // The plan of this order (or of the measure it acts on) looks again.
        let measure_plan: Option<String> = if effect.is_some() {
            sqlx::query_scalar("SELECT plan_id FROM orders WHERE id = ?")
                .bind(&measure)
                .fetch_optional(&mut *tx)
                .await?
                .flatten()
        } else {
            None
        };
        for plan in plan.iter().chain(measure_plan.iter()) {
            sqlx::query(
                "UPDATE freeze_plans SET due_at_ms = ? WHERE id = ? AND status = 'running'",
            )
            .bind(now_ms)
            .bind(plan)
            .execute(&mut *tx)
            .await?;
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
            "UPDATE orders SET lease_owner = NULL, lease_until_ms = NULL, due_at_ms = ?, \
             detail = COALESCE(?, detail) WHERE id = ? AND lease_owner = ?",
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let found = sqlx::query(AssertSqlSafe(format!(
            "UPDATE orders SET status = 'expired', phase = 'done', updated_at_ms = ?, \
             lease_owner = NULL, lease_until_ms = NULL \
             WHERE measure_order = id AND status IN {LIVE} AND measure_end < ? \
             RETURNING {ORDER_COLUMNS}"
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
                sqlx::query(
                    "UPDATE freeze_plans SET due_at_ms = ? WHERE id = ? AND status = 'running'",
                )
                .bind(now_ms)
                .bind(plan)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(expired)
    }

    async fn orders_to_warn(
        &self,
        before: &str,
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE measure_order = id AND status IN {LIVE} \
             AND measure_end < ? AND (warned_end IS NULL OR warned_end <> measure_end) \
             ORDER BY measure_end LIMIT ?"
        )))
        .bind(before)
        .bind(limit)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Only the first gateway to mark this end date sends the warning.
        let marked = sqlx::query(
            "UPDATE orders SET warned_end = ? WHERE id = ? \
             AND (warned_end IS NULL OR warned_end <> ?)",
        )
        .bind(end_date)
        .bind(id)
        .bind(end_date)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let existing = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PLAN_COLUMNS} FROM freeze_plans WHERE caller = ? AND idempotency_key = ?"
        )))
        .bind(&p.caller)
        .bind(&p.idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Ok(Created::Existing(plan_from(&row)?));
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO freeze_plans ({PLAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
             ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Created::New(p.clone()))
    }

    async fn plan(&self, id: &str) -> Result<Option<PlanRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PLAN_COLUMNS} FROM freeze_plans WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(plan_from).transpose()?)
    }

    async fn plan_by_key(&self, caller: &str, key: &str) -> Result<Option<PlanRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PLAN_COLUMNS} FROM freeze_plans WHERE caller = ? AND idempotency_key = ?"
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
        limit: i64,
    ) -> Result<Vec<PlanRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "UPDATE freeze_plans SET lease_owner = ?, lease_until_ms = ? \
             WHERE id IN (SELECT id FROM freeze_plans WHERE status = 'running' AND due_at_ms <= ? \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= ?) ORDER BY due_at_ms LIMIT ?) \
             RETURNING {PLAN_COLUMNS}"
        )))
        .bind(owner)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(limit)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE freeze_plans SET next_index = ?, status = ?, controlled_fen = ?, detail = ?, \
             due_at_ms = ?, completed_at_ms = ?, updated_at_ms = ?, lease_owner = NULL, \
             lease_until_ms = NULL WHERE id = ? AND lease_owner = ?",
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        insert_outbox(&mut tx, item).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn inquiries_owing_callbacks(
        &self,
        callers: &[String],
        completed_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let callers =
            serde_json::to_string(callers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let found = sqlx::query(
            "SELECT id FROM inquiries WHERE callback_due = 1 AND completed_at_ms <= ? \
               AND caller IN (SELECT value FROM json_each(?)) \
             ORDER BY completed_at_ms LIMIT ?",
        )
        .bind(completed_before_ms)
        .bind(callers)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        found
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn drop_unwanted_callbacks(&self, callers: &[String]) -> Result<u64, StoreError> {
        let callers =
            serde_json::to_string(callers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE inquiries SET callback_due = 0 WHERE callback_due = 1 \
               AND caller NOT IN (SELECT value FROM json_each(?))",
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let owed =
            sqlx::query("UPDATE inquiries SET callback_due = 0 WHERE id = ? AND callback_due = 1")
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
        limit: i64,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let found = sqlx::query(
            "UPDATE outbox SET lease_owner = ?, lease_until_ms = ? \
             WHERE id IN (SELECT id FROM outbox WHERE delivered_at_ms IS NULL \
                 AND failed_at_ms IS NULL AND due_at_ms <= ? \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= ?) ORDER BY due_at_ms LIMIT ?) \
             RETURNING id, caller, event, resource_id, body, attempts, due_at_ms, created_at_ms",
        )
        .bind(owner)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(limit)
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
            "UPDATE outbox SET attempts = ?, delivered_at_ms = ?, failed_at_ms = ?, due_at_ms = ?, \
             last_error = COALESCE(?, last_error), lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = ? AND lease_owner = ?",
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
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE documents_mismatch = 1 \
             AND created_at_ms >= ? AND created_at_ms < ? ORDER BY created_at_ms DESC LIMIT ?"
        )))
        .bind(from_ms.unwrap_or(i64::MIN))
        .bind(to_ms.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows(&found, order_from)
    }

    async fn next_order_work_ms(&self) -> Result<Option<i64>, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(due) FROM ( \
                 SELECT MIN(due_at_ms) AS due FROM orders WHERE phase <> 'done' \
                 UNION ALL SELECT MIN(due_at_ms) FROM freeze_plans WHERE status = 'running' \
                 UNION ALL SELECT MIN(due_at_ms) FROM outbox \
                     WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }
}
