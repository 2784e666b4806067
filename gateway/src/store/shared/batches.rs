//! Batch inquiries, on both backends: storing a batch with its subjects'
//! inquiries (in the journal's transaction), and the reads that follow it.

use std::collections::HashMap;

use async_trait::async_trait;

use super::jobs::{INQUIRY_COLUMNS, TASK_COLUMNS, insert_inquiries};
use super::{Arg, Backend, Conn, Sql, SqlStore, select};
use crate::store::columns::json;
use crate::store::{
    BatchCounts, BatchRecord, BatchSlice, BatchStore, Created, InquiryRecord, InquiryStatus,
    NewBatch, StoreError, TaskRecord, TaskState, Text,
};

const BATCH_COLUMNS: &str = "id, caller, idempotency_key, body_sha256, court, officers, \
     asset_kinds, lines, last_line, accepted, refused, created_at_ms";

#[async_trait]
impl<B: Backend> BatchStore for SqlStore<B> {
    async fn batch(&self, id: &str) -> Result<Option<BatchRecord>, StoreError> {
        self.read_optional(select(BATCH_COLUMNS, "inquiry_batches", "id = $1").bind(id))
            .await
    }

    async fn batch_by_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<BatchRecord>, StoreError> {
        let condition = "caller = $1 AND idempotency_key = $2";
        self.read_optional(
            select(BATCH_COLUMNS, "inquiry_batches", condition)
                .bind(caller)
                .bind(key),
        )
        .await
    }

    async fn batch_counts(&self, id: &str) -> Result<BatchCounts, StoreError> {
        let inquiries: Vec<StatusCount> = self
            .read_all(
                Sql::new(
                    "SELECT status AS k, COUNT(*) AS n FROM inquiries \
                     WHERE batch_id = $1 GROUP BY status",
                )
                .bind(id),
            )
            .await?;
        let tasks: Vec<AgencyCount> = self
            .read_all(
                Sql::new(
                    "SELECT t.agency AS agency, t.state AS k, COUNT(*) AS n \
                     FROM inquiries i JOIN agency_tasks t ON t.inquiry_id = i.id \
                     WHERE i.batch_id = $1 GROUP BY t.agency, t.state ORDER BY t.agency",
                )
                .bind(id),
            )
            .await?;
        Ok(BatchCounts {
            inquiries: inquiries.into_iter().map(|c| (c.k, c.n)).collect(),
            tasks: tasks.into_iter().map(|c| (c.agency, c.k, c.n)).collect(),
        })
    }

    async fn batch_inquiries(
        &self,
        id: &str,
        slice: BatchSlice,
    ) -> Result<Vec<(InquiryRecord, Vec<TaskRecord>)>, StoreError> {
        // The inquiries, then their tasks: two reads, each row decoded
        // once (a join would repeat every inquiry's columns per agency).
        let (condition, order) = match slice {
            BatchSlice::Lines { .. } => (
                "batch_id = $1 AND batch_line > $2 AND batch_line <= $3",
                " ORDER BY batch_line",
            ),
            BatchSlice::CompletedAfter { .. } => (
                "batch_id = $1 AND (completed_at_ms > $2 \
                 OR (completed_at_ms = $2 AND batch_line > $3))",
                " ORDER BY completed_at_ms, batch_line LIMIT $4",
            ),
        };
        let bind = |sql: Sql<'static>| -> Sql<'static> {
            match slice {
                BatchSlice::Lines { after, until } => {
                    sql.bind(id.to_owned()).bind(after).bind(until)
                }
                BatchSlice::CompletedAfter {
                    at_ms,
                    after_line,
                    limit,
                } => sql
                    .bind(id.to_owned())
                    .bind(at_ms)
                    .bind(after_line)
                    .bind(limit.max(0)),
            }
        };
        let inquiries: Vec<InquiryRecord> = self
            .read_all(bind(Sql::new(format!(
                "SELECT {INQUIRY_COLUMNS} FROM inquiries WHERE {condition}{order}"
            ))))
            .await?;
        if inquiries.is_empty() {
            return Ok(Vec::new());
        }
        let tasks: Vec<TaskRecord> = self
            .read_all(bind(Sql::new(format!(
                "SELECT {TASK_COLUMNS} FROM agency_tasks WHERE inquiry_id IN \
                 (SELECT id FROM inquiries WHERE {condition}{order}) ORDER BY inquiry_id, agency"
            ))))
            .await?;
        let mut by_inquiry: HashMap<String, Vec<TaskRecord>> = HashMap::new();
        for task in tasks {
            by_inquiry
                .entry(task.inquiry_id.clone())
                .or_default()
                .push(task);
        }
        Ok(inquiries
            .into_iter()
            .map(|i| {
                let tasks = by_inquiry.remove(&i.id).unwrap_or_default();
                (i, tasks)
            })
            .collect())
    }
}

#[derive(sqlx::FromRow)]
struct StatusCount {
    #[sqlx(try_from = "Text")]
    k: InquiryStatus,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct AgencyCount {
    agency: String,
    #[sqlx(try_from = "Text")]
    k: TaskState,
    n: i64,
}

/// Stores a new batch and its subjects' inquiries (in the journal's
/// transaction), or reads back the batch stored under its key before
/// (then nothing else is stored).
pub(super) async fn insert_batch<B: Backend>(
    conn: &mut Conn<B>,
    new: &NewBatch,
) -> Result<Created<BatchRecord>, StoreError> {
    let b = &new.record;
    let mut insert = Sql::new(format!(
        "INSERT INTO inquiry_batches ({BATCH_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (caller, idempotency_key) DO NOTHING"
    ));
    for value in [
        Arg::from(&b.id),
        (&b.caller).into(),
        (&b.idempotency_key).into(),
        (&b.body_sha256).into(),
        json(&b.court)?.into(),
        json(&b.officers)?.into(),
        json(&b.asset_kinds)?.into(),
        b.lines.into(),
        b.last_line.into(),
        b.accepted.into(),
        json(&b.refused)?.into(),
        b.created_at_ms.into(),
    ] {
        insert = insert.bind(value);
    }
    if B::execute(&mut *conn, insert).await? != 1 {
        let existing: Option<BatchRecord> = B::fetch_optional(
            conn,
            select(
                BATCH_COLUMNS,
                "inquiry_batches",
                "caller = $1 AND idempotency_key = $2",
            )
            .bind(&b.caller)
            .bind(&b.idempotency_key),
        )
        .await?;
        return existing.map(Created::Existing).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a batch under idempotency key {:?} conflicted but cannot be read",
                b.idempotency_key
            ))
        });
    }
    insert_inquiries::<B>(conn, &new.inquiries).await?;
    Ok(Created::New(b.clone()))
}
