//! The SQLite store: one file, WAL mode, migrations embedded in the binary.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, QueryBuilder, Row, Sqlite, SqlitePool};

use super::{
    AuditStore, Checkpoint, ClaimedTask, InquiryRecord, JobStore, NewAuditRow, NewInquiry,
    OfficerCase, OfficerDay, STATE_AWAITING, STATE_POLLING, STATE_QUEUED, StoreError, SubjectCases,
    TaskRecord, TaskUpdate, Window,
};
use super::{
    AuditTail, FinishedTasks, TaskResult, chain_rows, officers_json, stored_results, unchain,
};
use crate::audit::{AuditFilter, AuditRow, GENESIS_HASH, StoredAuditEvent};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    audit_tail: AuditTail,
    /// Decisions' turns, in this process (one gateway to a SQLite file).
    pub(super) local_locks: super::decision::LocalLocks,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqliteStore {
    /// Opens (creating when missing) the database file a `sqlite://` URL
    /// names, and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable across power loss, not just a crash of the process:
            // with NORMAL, WAL commits are synced only at checkpoints, and
            // a power cut could drop audit rows of messages already sent.
            // FULL syncs the WAL at every commit; the writers' group commit
            // pays for it by committing whatever has gathered at once.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            // Room for every statement the store runs, the multi-row ones
            // in each of their sizes (see `padded_chunks`).
            .statement_cache_capacity(512)
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Corrupt(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        // One connection: SQLite takes one writer at a time, and writers
        // that contend from several connections wait in SQLite's busy
        // handler, which sleeps (1, 2, 5, 10 ... ms) instead of queueing.
        // One connection queues them in the pool, in order, without
        // sleeping; reads are short (every listing is paged).
        // One connection, in-process: there is no network to break it, so
        // it is not pinged before each use (a round trip to its worker
        // thread per statement).
        // A transaction SQLite ended by itself (a COMMIT that failed on a
        // full disk may roll back) leaves sqlx counting it open: its
        // ROLLBACK on drop then fails, and every later BEGIN on that
        // connection is refused, for good. Such a connection is closed when
        // it comes back to the pool, and the next use opens a fresh one, so
        // the store works again as soon as the disk does.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .after_release(|conn, _| {
                Box::pin(async move {
                    if conn.is_in_transaction() {
                        // A dropped transaction's ROLLBACK is queued on the
                        // connection's worker; this runs after it.
                        let _ = sqlx::query("SELECT 1").execute(&mut *conn).await;
                    }
                    let healthy = !conn.is_in_transaction();
                    if !healthy {
                        tracing::warn!("an SQLite connection was left inside a transaction it cannot end; replacing it");
                    }
                    Ok(healthy)
                })
            })
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            audit_tail: AuditTail::default(),
            local_locks: Default::default(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

const INQUIRY_COLUMNS: &str = "id, caller, case_number, subject_kind, subject_name, subject_id, \
     officers, asset_kinds, court, warnings, status, created_at_ms, deadline_at_ms, completed_at_ms, \
     catalog_version";

fn inquiry_from(row: &sqlx::sqlite::SqliteRow) -> Result<InquiryRecord, sqlx::Error> {
    Ok(InquiryRecord {
        id: row.try_get("id")?,
        caller: row.try_get("caller")?,
        case_number: row.try_get("case_number")?,
        subject_kind: row.try_get("subject_kind")?,
        subject_name: row.try_get("subject_name")?,
        subject_id: row.try_get("subject_id")?,
        officers: row.try_get("officers")?,
        asset_kinds: row.try_get("asset_kinds")?,
        court: row.try_get("court")?,
        warnings: row.try_get("warnings")?,
        status: row.try_get("status")?,
        created_at_ms: row.try_get("created_at_ms")?,
        deadline_at_ms: row.try_get("deadline_at_ms")?,
        completed_at_ms: row.try_get("completed_at_ms")?,
        catalog_version: row.try_get("catalog_version")?,
    })
}

/// A task row as `claim_due_tasks` and `awaiting_task` return it.
fn claimed_from(r: &sqlx::sqlite::SqliteRow) -> Result<ClaimedTask, sqlx::Error> {
    Ok(ClaimedTask {
        inquiry_id: r.try_get("inquiry_id")?,
        agency: r.try_get("agency")?,
        request_number: r.try_get("request_number")?,
        state: r.try_get("state")?,
        ticket: r.try_get("ticket")?,
        sent_at_ms: r.try_get("sent_at_ms")?,
        attempts: r.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
    })
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_inquiries(&self, new: &[NewInquiry]) -> Result<(), StoreError> {
        if new.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (chunk, size) in padded_chunks(new, INQUIRIES_PER_INSERT) {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                "INSERT INTO inquiries ({INQUIRY_COLUMNS}) SELECT * FROM ("
            ));
            insert.push_values(0..size, |mut b, i| {
                let Some(NewInquiry { record: r, .. }) = chunk.get(i) else {
                    return push_nulls(&mut b, 15);
                };
                b.push_bind(r.id.as_str())
                    .push_bind(r.caller.as_str())
                    .push_bind(r.case_number.as_str())
                    .push_bind(r.subject_kind.as_str())
                    .push_bind(r.subject_name.as_str())
                    .push_bind(r.subject_id.as_str())
                    .push_bind(r.officers.as_str())
                    .push_bind(r.asset_kinds.as_str())
                    .push_bind(r.court.as_str())
                    .push_bind(r.warnings.as_str())
                    .push_bind(r.status.as_str())
                    .push_bind(r.created_at_ms)
                    .push_bind(r.deadline_at_ms)
                    .push_bind(r.completed_at_ms)
                    .push_bind(r.catalog_version.as_deref());
            });
            insert.push(") WHERE column1 IS NOT NULL");
            insert.build().execute(&mut *tx).await?;
        }
        // Many tasks per statement: an inquiry may go to thousands of
        // agencies. The first `lease.count` of each inquiry's are claimed.
        let tasks: Vec<(&NewInquiry, usize, &(String, String))> = new
            .iter()
            .flat_map(|n| n.tasks.iter().enumerate().map(move |(i, t)| (n, i, t)))
            .collect();
        for (chunk, size) in padded_chunks(&tasks, TASKS_PER_INSERT) {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO agency_tasks (inquiry_id, agency, request_number, state, due_at_ms, \
                 lease_owner, lease_until_ms, attempts) SELECT * FROM (",
            );
            insert.push_values(0..size, |mut b, i| {
                let Some((new, n, (agency, request_number))) = chunk.get(i) else {
                    return push_nulls(&mut b, 8);
                };
                let lease = new.lease.as_ref().filter(|l| *n < l.count);
                b.push_bind(new.record.id.as_str())
                    .push_bind(agency.as_str())
                    .push_bind(request_number.as_str())
                    .push_bind(STATE_QUEUED)
                    .push_bind(new.record.created_at_ms)
                    .push_bind(lease.map(|l| l.owner.as_str()))
                    .push_bind(lease.map(|l| l.until_ms))
                    .push_bind(i64::from(lease.is_some()));
            });
            insert.push(") WHERE column1 IS NOT NULL");
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn inquiry(&self, id: &str) -> Result<Option<InquiryRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INQUIRY_COLUMNS} FROM inquiries WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(inquiry_from).transpose()?)
    }

    async fn tasks(&self, inquiry_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT inquiry_id, agency, request_number, state, detail, ticket, latency_ms, result \
             FROM agency_tasks WHERE inquiry_id = ? ORDER BY agency",
        )
        .bind(inquiry_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TaskRecord {
                    inquiry_id: r.try_get("inquiry_id")?,
                    agency: r.try_get("agency")?,
                    request_number: r.try_get("request_number")?,
                    state: r.try_get("state")?,
                    detail: r.try_get("detail")?,
                    ticket: r.try_get("ticket")?,
                    latency_ms: r.try_get("latency_ms")?,
                    result: r.try_get("result")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn inquiry_with_tasks(
        &self,
        id: &str,
    ) -> Result<Option<(InquiryRecord, Vec<TaskRecord>)>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(super::inquiry_with_tasks_sql("?")))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(super::inquiry_with_tasks_from(&rows, inquiry_from)?)
    }

    async fn inquiries_by_case(
        &self,
        caller: &str,
        case_number: &str,
        limit: i64,
    ) -> Result<Vec<InquiryRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INQUIRY_COLUMNS} FROM inquiries WHERE case_number = ? AND caller = ? \
             ORDER BY created_at_ms DESC, id DESC LIMIT ?"
        )))
        .bind(case_number)
        .bind(caller)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(inquiry_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn claim_due_tasks(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
        skip_agencies: &[String],
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        let skip =
            serde_json::to_string(skip_agencies).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(
            "UPDATE agency_tasks SET lease_owner = ?, lease_until_ms = ?, attempts = attempts + 1 \
             WHERE rowid IN (SELECT rowid FROM agency_tasks \
                 WHERE state IN (?, ?) AND due_at_ms <= ? \
                   AND (lease_until_ms IS NULL OR lease_until_ms <= ?) \
                   AND agency NOT IN (SELECT value FROM json_each(?)) \
                 ORDER BY due_at_ms LIMIT ?) \
             RETURNING inquiry_id, agency, request_number, state, ticket, sent_at_ms, attempts",
        )
        .bind(owner)
        .bind(lease_until_ms)
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(now_ms)
        .bind(now_ms)
        .bind(skip)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(claimed_from)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn release_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        due_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE agency_tasks SET lease_owner = NULL, lease_until_ms = NULL, due_at_ms = ? \
             WHERE inquiry_id = ? AND agency = ? AND lease_owner = ?",
        )
        .bind(due_at_ms)
        .bind(inquiry_id)
        .bind(agency)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn defer_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        due_at_ms: i64,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE agency_tasks SET lease_owner = NULL, lease_until_ms = NULL, due_at_ms = ?, \
             detail = ? WHERE inquiry_id = ? AND agency = ? AND lease_owner = ?",
        )
        .bind(due_at_ms)
        .bind(detail)
        .bind(inquiry_id)
        .bind(agency)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn running_catalog_versions(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT catalog_version FROM inquiries \
             WHERE status = 'running' AND catalog_version IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("catalog_version"))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn expire_overdue(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "UPDATE agency_tasks SET state = 'timeout', \
                 detail = 'no answer before the inquiry''s deadline', \
                 lease_owner = NULL, lease_until_ms = NULL \
             WHERE state IN (?, ?, ?) AND (lease_until_ms IS NULL OR lease_until_ms <= ?) \
               AND inquiry_id IN (SELECT id FROM inquiries WHERE status = 'running' AND deadline_at_ms <= ?) \
             RETURNING inquiry_id",
        )
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(STATE_AWAITING)
        .bind(now_ms)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("inquiry_id"))
            .collect::<Result<_, _>>()?;
        // Every running inquiry past its deadline too: one whose last
        // results were stored but whose completion check failed (the
        // database went away between the two) is completed here, at the
        // latest by its deadline.
        let overdue = sqlx::query(
            "SELECT id FROM inquiries WHERE status = 'running' AND deadline_at_ms <= ? \
             ORDER BY deadline_at_ms LIMIT 1000",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        for row in &overdue {
            ids.push(row.try_get("id")?);
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn try_complete(&self, inquiry_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE inquiries SET status = 'completed', completed_at_ms = ?, callback_due = 1 \
             WHERE id = ? AND status = 'running' AND NOT EXISTS \
               (SELECT 1 FROM agency_tasks WHERE inquiry_id = ? AND state IN (?, ?, ?))",
        )
        .bind(now_ms)
        .bind(inquiry_id)
        .bind(inquiry_id)
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(STATE_AWAITING)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_tasks(
        &self,
        owner: &str,
        results: &[TaskResult],
        now_ms: i64,
    ) -> Result<FinishedTasks, StoreError> {
        use std::collections::HashSet;
        if results.is_empty() {
            return Ok(FinishedTasks::default());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut stored_keys: HashSet<(String, String)> = HashSet::new();
        for (chunk, size) in padded_chunks(results, TASK_RESULTS_PER_UPDATE) {
            // The padding rows' NULL keys match no task.
            let mut update: QueryBuilder<Sqlite> = QueryBuilder::new(
                "WITH v (inquiry_id, agency, state, detail, ticket, due_at_ms, sent_at_ms, \
                 latency_ms, result) AS (",
            );
            update.push_values(0..size, |mut b, i| {
                let Some(r) = chunk.get(i) else {
                    return push_nulls(&mut b, 9);
                };
                let u = &r.update;
                b.push_bind(r.inquiry_id.as_str())
                    .push_bind(r.agency.as_str())
                    .push_bind(u.state.as_str())
                    .push_bind(u.detail.as_deref())
                    .push_bind(u.ticket.as_deref())
                    .push_bind(u.due_at_ms)
                    .push_bind(u.sent_at_ms)
                    .push_bind(u.latency_ms)
                    .push_bind(u.result.as_deref());
            });
            update.push(
                ") UPDATE agency_tasks SET state = v.state, detail = v.detail, \
                 ticket = COALESCE(v.ticket, agency_tasks.ticket), due_at_ms = v.due_at_ms, \
                 sent_at_ms = COALESCE(agency_tasks.sent_at_ms, v.sent_at_ms), \
                 latency_ms = v.latency_ms, result = v.result, \
                 lease_owner = NULL, lease_until_ms = NULL \
                 FROM v WHERE agency_tasks.inquiry_id = v.inquiry_id \
                   AND agency_tasks.agency = v.agency AND agency_tasks.lease_owner = ",
            );
            update.push_bind(owner);
            update.push(" RETURNING agency_tasks.inquiry_id, agency_tasks.agency");
            for row in update.build().fetch_all(&mut *tx).await? {
                stored_keys.insert((row.try_get("inquiry_id")?, row.try_get("agency")?));
            }
        }
        let (stored, touched) = stored_results(results, &stored_keys);
        let touched =
            serde_json::to_string(&touched).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let completed = sqlx::query(
            "UPDATE inquiries SET status = 'completed', completed_at_ms = ?, callback_due = 1 \
             WHERE id IN (SELECT value FROM json_each(?)) AND status = 'running' \
               AND NOT EXISTS (SELECT 1 FROM agency_tasks \
                   WHERE inquiry_id = inquiries.id AND state IN (?, ?, ?)) \
             RETURNING id",
        )
        .bind(now_ms)
        .bind(touched)
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(STATE_AWAITING)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<Vec<String>, _>>()?;
        tx.commit().await?;
        Ok(FinishedTasks { stored, completed })
    }

    async fn awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
    ) -> Result<Option<ClaimedTask>, StoreError> {
        let row = sqlx::query(
            "SELECT inquiry_id, agency, request_number, state, ticket, sent_at_ms, attempts \
             FROM agency_tasks WHERE agency = ? AND request_number = ? AND state = ?",
        )
        .bind(agency)
        .bind(request_number)
        .bind(STATE_AWAITING)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(claimed_from)
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
    }

    async fn finish_awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
        u: &TaskUpdate,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE agency_tasks SET state = ?, detail = ?, ticket = COALESCE(?, ticket), \
             due_at_ms = ?, latency_ms = ?, result = ? \
             WHERE agency = ? AND request_number = ? AND state = ?",
        )
        .bind(&u.state)
        .bind(&u.detail)
        .bind(&u.ticket)
        .bind(u.due_at_ms)
        .bind(u.latency_ms)
        .bind(&u.result)
        .bind(agency)
        .bind(request_number)
        .bind(STATE_AWAITING)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn next_due_ms(&self, skip_agencies: &[String]) -> Result<Option<i64>, StoreError> {
        let skip =
            serde_json::to_string(skip_agencies).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let row = sqlx::query(
            "SELECT MIN(MAX(due_at_ms, COALESCE(lease_until_ms, 0))) AS next \
             FROM agency_tasks WHERE state IN (?, ?) \
               AND agency NOT IN (SELECT value FROM json_each(?))",
        )
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(skip)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("next")?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // BEGIN IMMEDIATE takes the write lock: a read-only or broken file
        // fails here. The probe row tries the audit table itself (where a
        // full disk or a broken table shows first) and is rolled back.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO audit_events (seq, at_ms, direction, action, prev_hash, hash) \
             VALUES (-1, 0, 'internal', 'readiness.probe', '', '')",
        )
        .execute(&mut *tx)
        .await?;
        tx.rollback().await?;
        Ok(())
    }

    async fn queue_counts(&self, now_ms: i64) -> Result<Vec<super::QueueCount>, StoreError> {
        super::fetch_queue_counts(&self.pool, ["?", "?", "?"], now_ms).await
    }
}

/// Tasks per INSERT statement when an inquiry is stored (8 parameters each).
const TASKS_PER_INSERT: usize = 512;

/// Task results per UPDATE statement (9 parameters each).
const TASK_RESULTS_PER_UPDATE: usize = 256;

/// Inquiries per INSERT statement (15 parameters each).
const INQUIRIES_PER_INSERT: usize = 64;

/// Rows per INSERT statement when appending audit rows (17 parameters
/// each, well under SQLite's limit of 32,766): as many as the audit
/// writer's largest batch, so that each batch is one statement.
const AUDIT_ROWS_PER_INSERT: usize = 512;

/// Splits `items` for multi-row statements, each chunk with the number of
/// rows its statement has: chunks of `max` (a power of two), then the rest
/// in one statement of the next power of two, its spare rows NULL (each
/// statement filters them out). Each size is one SQL text, so a handful of
/// statements stay prepared in the connection's cache (parsing a long
/// statement cost more than running it), and any batch takes one statement
/// (each is a round trip to SQLite's worker thread).
fn padded_chunks<T>(mut items: &[T], max: usize) -> impl Iterator<Item = (&[T], usize)> {
    debug_assert!(max.is_power_of_two());
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let (chunk, rest) = items.split_at(items.len().min(max));
        items = rest;
        Some((chunk, chunk.len().next_power_of_two()))
    })
}

/// `count` NULLs into a padding row of a `VALUES` list.
fn push_nulls(b: &mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, count: usize) {
    for _ in 0..count {
        b.push_bind(None::<i64>);
    }
}

const AUDIT_COLUMNS: &str = "seq, at_ms, direction, caller, officers, case_number, subject, agency, \
     action, inquiry_id, request_number, status, latency_ms, body_sha256, body, prev_hash, hash";
/// The same, with NULL for the body (verification needs only its digest).
const AUDIT_COLUMNS_NO_BODY: &str = "seq, at_ms, direction, caller, officers, case_number, subject, \
     agency, action, inquiry_id, request_number, status, latency_ms, body_sha256, NULL AS body, \
     prev_hash, hash";
/// The rows that are requests about a subject: accepted inquiries, orders
/// and freeze plans.
pub(crate) const REQUESTS: &str = "direction = 'inbound' AND status = 'accepted' \
     AND action IN ('inquiry.create', 'order.create', 'freeze_plan.create')";

/// Inserts chained `rows`, many to a statement. With `after`, only if the
/// chain's tail is still the row of that hash, checked by the statement
/// itself (so `rows` must fit one statement): false when it was not;
/// without, the caller holds the write lock.
async fn insert_audit(
    conn: &mut sqlx::SqliteConnection,
    rows: &[AuditRow],
    after: Option<&str>,
) -> Result<bool, StoreError> {
    let officers = officers_json(rows)?;
    for ((chunk, size), officers) in
        padded_chunks(rows, AUDIT_ROWS_PER_INSERT).zip(officers.chunks(AUDIT_ROWS_PER_INSERT))
    {
        let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "INSERT INTO audit_events ({AUDIT_COLUMNS}) SELECT * FROM ("
        ));
        insert.push_values(0..size, |mut b, i| {
            let (Some(row), Some(officers)) = (chunk.get(i), officers.get(i)) else {
                return push_nulls(&mut b, 17);
            };
            let r = &row.record;
            b.push_bind(row.seq)
                .push_bind(row.at_ms)
                .push_bind(r.direction.map(|d| d.as_str()).unwrap_or("inbound"))
                .push_bind(r.caller.as_deref())
                .push_bind(officers.as_str())
                .push_bind(r.case_number.as_deref())
                .push_bind(r.subject.as_deref())
                .push_bind(r.agency.as_deref())
                .push_bind(r.action.as_str())
                .push_bind(r.inquiry_id.as_deref())
                .push_bind(r.request_number.as_deref())
                .push_bind(r.status.as_deref())
                .push_bind(r.latency_ms)
                .push_bind(row.body_sha256.as_deref())
                .push_bind(r.body.as_deref())
                .push_bind(row.prev_hash.as_str())
                .push_bind(row.hash.as_str());
        });
        insert.push(") WHERE column1 IS NOT NULL");
        if let Some(hash) = after {
            insert.push(" AND (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1) = ");
            insert.push_bind(hash);
        }
        let done = insert.build().execute(&mut *conn).await?;
        if done.rows_affected() != chunk.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn audit_from(row: &sqlx::sqlite::SqliteRow) -> Result<StoredAuditEvent, StoreError> {
    let officers: Option<String> = row.try_get("officers")?;
    let officers = match officers {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("audit officers: {e}")))?,
        None => Vec::new(),
    };
    Ok(StoredAuditEvent {
        seq: row.try_get("seq")?,
        at_ms: row.try_get("at_ms")?,
        direction: row.try_get("direction")?,
        caller: row.try_get("caller")?,
        officers,
        case_number: row.try_get("case_number")?,
        subject: row.try_get("subject")?,
        agency: row.try_get("agency")?,
        action: row.try_get("action")?,
        inquiry_id: row.try_get("inquiry_id")?,
        request_number: row.try_get("request_number")?,
        status: row.try_get("status")?,
        latency_ms: row.try_get("latency_ms")?,
        body_sha256: row.try_get("body_sha256")?,
        body: row.try_get("body")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_tail(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("seq")?, r.try_get("hash")?)))
            .transpose()?)
    }

    async fn append_audit(&self, new: Vec<NewAuditRow>) -> Result<Vec<AuditRow>, StoreError> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        // The fast path: the batch chained after the tail this handle last
        // wrote, in one statement that inserts only if that is still the
        // tail (one statement is atomic; in WAL mode it cannot commit over
        // a write it did not see).
        let new = match self.audit_tail.get() {
            Some((seq, hash)) if new.len() <= AUDIT_ROWS_PER_INSERT => {
                let rows = chain_rows(new, seq, hash.clone());
                let mut conn = self.pool.acquire().await?;
                match insert_audit(&mut conn, &rows, Some(&hash)).await {
                    Ok(true) => {
                        self.audit_tail.keep(Some(&rows));
                        return Ok(rows);
                    }
                    // Another writer of this file moved the chain on, or
                    // the statement failed (and so changed nothing): the
                    // slow path reads the tail as stored.
                    Ok(false) | Err(_) => unchain(rows),
                }
            }
            _ => new,
        };
        let appended = async {
            // BEGIN IMMEDIATE takes the write lock first: the tail read here
            // stays the tail until commit, whoever else writes this file.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let tail = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
            let (seq, prev) = match tail {
                Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
                None => (0, GENESIS_HASH.to_owned()),
            };
            let rows = chain_rows(new, seq, prev);
            insert_audit(&mut tx, &rows, None).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(rows)
        }
        .await;
        self.audit_tail
            .keep(appended.as_ref().ok().map(Vec::as_slice));
        appended
    }

    async fn audit_chain(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS_NO_BODY} FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?"
        )))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at_ms, key_id, signature) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.at_ms)
        .bind(&c.key_id)
        .bind(&c.signature)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, hash, at_ms, key_id, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at_ms: r.try_get("at_ms")?,
                    key_id: r.try_get("key_id")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn purge_bodies(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE audit_events SET body = NULL WHERE seq IN ( \
                 SELECT seq FROM audit_events WHERE body IS NOT NULL AND at_ms < ? \
                 ORDER BY at_ms LIMIT ?)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn subjects_in_several_cases(
        &self,
        window: &Window,
        limit: i64,
    ) -> Result<Vec<SubjectCases>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT subject, json_group_array(DISTINCT case_number) AS cases, COUNT(*) AS requests \
             FROM audit_events WHERE {REQUESTS} AND subject IS NOT NULL \
             AND case_number IS NOT NULL \
             AND at_ms >= ? AND at_ms < ? \
             GROUP BY subject HAVING COUNT(DISTINCT case_number) > 1 \
             ORDER BY COUNT(DISTINCT case_number) DESC, subject LIMIT ?"
        )))
        .bind(window.from_ms.unwrap_or(i64::MIN))
        .bind(window.to_ms.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let cases: String = r.try_get("cases")?;
                let mut cases: Vec<String> = serde_json::from_str(&cases)
                    .map_err(|e| StoreError::Corrupt(format!("cases: {e}")))?;
                cases.sort();
                Ok(SubjectCases {
                    subject: r.try_get("subject")?,
                    cases,
                    requests: r.try_get("requests")?,
                })
            })
            .collect()
    }

    async fn officer_cases(&self, window: &Window) -> Result<Vec<OfficerCase>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT caller, o.value AS officer, case_number, COUNT(*) AS requests \
             FROM audit_events, json_each(audit_events.officers) o \
             WHERE {REQUESTS} AND case_number IS NOT NULL AND caller IS NOT NULL \
             AND at_ms >= ? AND at_ms < ? \
             GROUP BY caller, o.value, case_number ORDER BY caller, officer, case_number"
        )))
        .bind(window.from_ms.unwrap_or(i64::MIN))
        .bind(window.to_ms.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OfficerCase {
                    caller: r.try_get("caller")?,
                    officer: r.try_get("officer")?,
                    case_number: r.try_get("case_number")?,
                    requests: r.try_get("requests")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn officer_daily_volume(
        &self,
        window: &Window,
        threshold: i64,
    ) -> Result<Vec<OfficerDay>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT o.value AS officer, \
                 date((at_ms + 28800000) / 1000, 'unixepoch') AS day, COUNT(*) AS requests \
             FROM audit_events, json_each(audit_events.officers) o \
             WHERE {REQUESTS} AND at_ms >= ? AND at_ms < ? \
             GROUP BY officer, day HAVING COUNT(*) > ? ORDER BY day, requests DESC, officer"
        )))
        .bind(window.from_ms.unwrap_or(i64::MIN))
        .bind(window.to_ms.unwrap_or(i64::MAX))
        .bind(threshold)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OfficerDay {
                    officer: r.try_get("officer")?,
                    day: r.try_get("day")?,
                    requests: r.try_get("requests")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1 = 1"
        ));
        let text_filters = [
            ("case_number", &f.case_number),
            ("subject", &f.subject),
            ("agency", &f.agency),
            ("caller", &f.caller),
            ("action", &f.action),
            ("inquiry_id", &f.inquiry_id),
        ];
        for (column, value) in text_filters {
            if let Some(v) = value {
                q.push(format!(" AND {column} = ")).push_bind(v.clone());
            }
        }
        if let Some(officer) = &f.officer {
            // Officers are stored as a JSON array of "name (credential)"
            // strings; the filter is a substring of one, ASCII letters in
            // either case, taken literally: `%` and `_` are characters
            // like any other (`lower` folds ASCII only, as on PostgreSQL).
            q.push(
                " AND EXISTS (SELECT 1 FROM json_each(audit_events.officers) o \
                 WHERE instr(lower(o.value), ",
            )
            .push_bind(officer.to_ascii_lowercase())
            .push(") > 0)");
        }
        if let Some(from) = f.from_ms {
            q.push(" AND at_ms >= ").push_bind(from);
        }
        if let Some(to) = f.to_ms {
            q.push(" AND at_ms < ").push_bind(to);
        }
        if let Some(after) = f.after_seq {
            q.push(" AND seq > ").push_bind(after);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_event(&self, seq: i64) -> Result<Option<StoredAuditEvent>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq = ?"
        )))
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(audit_from).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::padded_chunks;

    /// SQLite may end a transaction by itself (a COMMIT that fails on a full
    /// disk); sqlx's ROLLBACK on drop then fails and it keeps counting the
    /// transaction open. The store must not stay wedged on that connection.
    #[tokio::test]
    async fn a_transaction_sqlite_ended_by_itself_does_not_wedge_the_store() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        let store = super::SqliteStore::open(&url).await?;
        {
            let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query("ROLLBACK").execute(&mut *tx).await?;
            // Dropped: sqlx's own ROLLBACK finds no transaction and fails.
        }
        for _ in 0..3 {
            let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query("SELECT 1").execute(&mut *tx).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    #[test]
    fn chunks_come_in_a_few_sizes_and_cover_everything() {
        for n in 0..1100usize {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<(&[usize], usize)> = padded_chunks(&items, 256).collect();
            let joined: Vec<usize> = chunks.iter().flat_map(|(c, _)| c.iter().copied()).collect();
            assert_eq!(joined, items, "n = {n}");
            for (i, (c, size)) in chunks.iter().enumerate() {
                assert!(size.is_power_of_two() && *size <= 256, "n = {n}: {size}");
                assert!(
                    c.len() <= *size && c.len() * 2 > *size,
                    "n = {n}: {}",
                    c.len()
                );
                // Only the last chunk is short.
                if i + 1 < chunks.len() {
                    assert_eq!(c.len(), 256, "n = {n}");
                }
            }
        }
    }
}
