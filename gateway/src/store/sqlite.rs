//! The SQLite backend: one file, WAL mode, migrations embedded in the
//! binary. What it does its own way: many rows to a statement in padded
//! chunks (`VALUES` lists of a few sizes), claims as one `UPDATE` (one
//! writer at a time), the audit chain under `BEGIN IMMEDIATE`, lists as
//! JSON read with `json_each`.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use adapters::model::AgencyStatus;
use async_trait::async_trait;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, Connection, QueryBuilder, Row, Sqlite};

use super::shared::{
    AUDIT_COLUMNS, Arg, Backend, INQUIRY_COLUMNS, InquiryText, ORDER_COLUMNS, OUTBOX_COLUMNS,
    PLAN_COLUMNS, REQUESTS, Record, Sql, SqlStore, Statements, officers_json, results_json,
};
use super::{
    DecisionLock, InquiryStatus, NewInquiry, OrderPhase, PlanStatus, StoreError, TaskResult,
    TaskState,
};
use crate::audit::AuditRow;

/// The state of a task whose inquiry's deadline passed first.
const TIMED_OUT: TaskState = TaskState::Finished(AgencyStatus::Timeout);

/// Read-only connections beside the one writer: each has its own thread,
/// so reads use the cores the writer leaves.
const READERS: u32 = 4;

/// The SQLite side of [`SqlStore`].
#[derive(Debug, Clone, Default)]
pub struct SqliteBackend;

pub type SqliteStore = SqlStore<SqliteBackend>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqlStore<SqliteBackend> {
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
        // One connection for writes: SQLite takes one writer at a time,
        // and writers that contend from several connections wait in
        // SQLite's busy handler, which sleeps (1, 2, 5, 10 ... ms) instead
        // of queueing. One connection queues them in the pool, in order,
        // without sleeping. Reads have connections of their own (below).
        // One connection, in-process: there is no network to break it, so
        // it is not pinged before each use (a round trip to its worker
        // thread per statement).
        // A transaction SQLite ended by itself (a COMMIT that failed on a
        // full disk may roll back) leaves sqlx counting it open: its
        // ROLLBACK on drop then fails, and every later BEGIN on that
        // connection is refused, for good. Such a connection is closed when
        // it comes back to the pool, and the next use opens a fresh one, so
        // the store works again as soon as the disk does.
        let readers_options = options.clone().read_only(true);
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
        // Reads on read-only connections of their own, opened once the
        // schema is in place: in WAL mode a reader sees the last commit
        // and neither waits for the writer nor holds it up, so an
        // auditor's long query never delays a commit.
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            .test_before_acquire(false)
            .connect_with(readers_options)
            .await?;
        Ok(SqlStore::new(pool, readers, SqliteBackend))
    }
}

/// The values of a statement as SQLite takes them.
fn arguments(args: Vec<Arg<'_>>) -> Result<SqliteArguments, sqlx::Error> {
    let mut out = SqliteArguments::default();
    for arg in args {
        let added: Result<(), BoxDynError> = match arg {
            Arg::Text(v) => out.add(v),
            Arg::Int(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Bytes(v) => out.add(v),
            Arg::Texts(v) => serde_json::to_string(v)
                .map_err(Into::into)
                .and_then(|json| out.add(json)),
        };
        added.map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

#[async_trait]
impl Backend for SqliteBackend {
    type Db = Sqlite;

    /// Takes the write lock first: what a transaction reads stays as read
    /// until it commits, whoever else writes the file.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    const AUDIT_ROWS_PER_STATEMENT: usize = AUDIT_ROWS_PER_INSERT;

    fn statements() -> &'static Statements {
        &STATEMENTS
    }

    async fn execute(conn: &mut SqliteConnection, sql: Sql<'_>) -> Result<u64, sqlx::Error> {
        let (text, args) = sql.into_parts()?;
        let done = sqlx::query_with(AssertSqlSafe(text), arguments(args)?)
            .execute(conn)
            .await?;
        Ok(done.rows_affected())
    }

    async fn fetch_all<T: Record>(
        conn: &mut SqliteConnection,
        sql: Sql<'_>,
    ) -> Result<Vec<T>, sqlx::Error> {
        let (text, args) = sql.into_parts()?;
        sqlx::query_as_with(AssertSqlSafe(text), arguments(args)?)
            .fetch_all(conn)
            .await
    }

    async fn insert_inquiries(
        conn: &mut SqliteConnection,
        new: &[NewInquiry],
    ) -> Result<(), StoreError> {
        let texts = new
            .iter()
            .map(|n| InquiryText::of(&n.record))
            .collect::<Result<Vec<_>, _>>()?;
        for ((chunk, size), texts) in
            padded_chunks(new, INQUIRIES_PER_INSERT).zip(texts.chunks(INQUIRIES_PER_INSERT))
        {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                "INSERT INTO inquiries ({INQUIRY_COLUMNS}) SELECT * FROM ("
            ));
            insert.push_values(0..size, |mut b, i| {
                let (Some(NewInquiry { record: r, .. }), Some(t)) = (chunk.get(i), texts.get(i))
                else {
                    return push_nulls(&mut b, 15);
                };
                b.push_bind(r.id.as_str())
                    .push_bind(r.caller.as_str())
                    .push_bind(r.case_number.as_str())
                    .push_bind(t.subject_kind)
                    .push_bind(r.subject.name())
                    .push_bind(r.subject.identifier())
                    .push_bind(t.officers.as_str())
                    .push_bind(t.asset_kinds.as_str())
                    .push_bind(t.court.as_str())
                    .push_bind(t.warnings.as_str())
                    .push_bind(r.status.as_str())
                    .push_bind(r.created_at_ms)
                    .push_bind(r.deadline_at_ms)
                    .push_bind(r.completed_at_ms)
                    .push_bind(r.catalog_version.as_deref());
            });
            insert.push(") WHERE column1 IS NOT NULL");
            insert.build().execute(&mut *conn).await?;
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
                    .push_bind(TaskState::Queued.as_str())
                    .push_bind(new.record.created_at_ms)
                    .push_bind(lease.map(|l| l.owner.as_str()))
                    .push_bind(lease.map(|l| l.until_ms))
                    .push_bind(i64::from(lease.is_some()));
            });
            insert.push(") WHERE column1 IS NOT NULL");
            insert.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn update_tasks(
        conn: &mut SqliteConnection,
        owner: &str,
        results: &[TaskResult],
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let assets = results_json(results)?;
        let mut stored_keys: HashSet<(String, String)> = HashSet::new();
        for ((chunk, size), assets) in padded_chunks(results, TASK_RESULTS_PER_UPDATE)
            .zip(assets.chunks(TASK_RESULTS_PER_UPDATE))
        {
            // The padding rows' NULL keys match no task.
            let mut update: QueryBuilder<Sqlite> = QueryBuilder::new(
                "WITH v (inquiry_id, agency, state, detail, ticket, due_at_ms, sent_at_ms, \
                 latency_ms, result) AS (",
            );
            update.push_values(0..size, |mut b, i| {
                let (Some(r), Some(assets)) = (chunk.get(i), assets.get(i)) else {
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
                    .push_bind(assets.as_deref());
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
            for row in update.build().fetch_all(&mut *conn).await? {
                stored_keys.insert((row.try_get("inquiry_id")?, row.try_get("agency")?));
            }
        }
        Ok(stored_keys)
    }

    /// Many rows to a statement; with `after`, the statement inserts only if
    /// the last row's hash is still that tail's (one statement is atomic; in
    /// WAL mode it cannot commit over a write it did not see).
    async fn insert_audit(
        conn: &mut SqliteConnection,
        rows: &[AuditRow],
        after: Option<(i64, &str)>,
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
            if let Some((_, hash)) = after {
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

    /// A failed statement changed nothing.
    fn audit_retry(_: &StoreError) -> bool {
        true
    }

    /// One gateway to a SQLite file: the process's locks are the turns.
    async fn lock_decision(
        store: &SqliteStore,
        keys: &[String],
        wait: Duration,
    ) -> Result<DecisionLock, StoreError> {
        super::decision::lock_local(&store.local_locks, keys, wait).await
    }
}

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| Statements {
    claim_tasks: "UPDATE agency_tasks SET lease_owner = $1, lease_until_ms = $2, \
             attempts = attempts + 1 \
         WHERE rowid IN (SELECT rowid FROM agency_tasks \
             WHERE state IN ($3, $4) AND due_at_ms <= $5 \
               AND (lease_until_ms IS NULL OR lease_until_ms <= $5) \
               AND agency NOT IN (SELECT value FROM json_each($6)) \
             ORDER BY due_at_ms LIMIT $7) \
         RETURNING inquiry_id, agency, request_number, state, ticket, sent_at_ms, attempts"
        .to_owned(),
    time_out_tasks: format!(
        "UPDATE agency_tasks SET state = '{TIMED_OUT}', \
             detail = 'no answer before the inquiry''s deadline', \
             lease_owner = NULL, lease_until_ms = NULL \
         WHERE inquiry_id IN (SELECT value FROM json_each($1)) AND state IN ($2, $3, $4) \
           AND (lease_until_ms IS NULL OR lease_until_ms <= $5)"
    ),
    next_due: "SELECT MIN(MAX(due_at_ms, COALESCE(lease_until_ms, 0))) AS next \
         FROM agency_tasks WHERE state IN ($1, $2) \
           AND agency NOT IN (SELECT value FROM json_each($3))"
        .to_owned(),
    claim_orders: format!(
        "UPDATE orders SET lease_owner = $1, lease_until_ms = $2, steps = steps + 1 \
         WHERE id IN (SELECT id FROM orders WHERE phase <> '{done}' AND due_at_ms <= $3 \
             AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
             ORDER BY due_at_ms LIMIT $4) \
         RETURNING {ORDER_COLUMNS}",
        done = OrderPhase::Done,
    ),
    claim_plans: format!(
        "UPDATE freeze_plans SET lease_owner = $1, lease_until_ms = $2 \
         WHERE id IN (SELECT id FROM freeze_plans WHERE status = '{running}' \
             AND due_at_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
             ORDER BY due_at_ms LIMIT $4) \
         RETURNING {PLAN_COLUMNS}",
        running = PlanStatus::Running,
    ),
    claim_outbox: format!(
        "UPDATE outbox SET lease_owner = $1, lease_until_ms = $2 \
         WHERE id IN (SELECT id FROM outbox WHERE delivered_at_ms IS NULL \
             AND failed_at_ms IS NULL AND due_at_ms <= $3 \
             AND (lease_until_ms IS NULL OR lease_until_ms <= $3) ORDER BY due_at_ms LIMIT $4) \
         RETURNING {OUTBOX_COLUMNS}"
    ),
    owing_callbacks: "SELECT id FROM inquiries WHERE callback_due = 1 AND completed_at_ms <= $1 \
           AND caller IN (SELECT value FROM json_each($2)) \
         ORDER BY completed_at_ms LIMIT $3"
        .to_owned(),
    drop_unwanted_callbacks: "UPDATE inquiries SET callback_due = 0 WHERE callback_due = 1 \
           AND caller NOT IN (SELECT value FROM json_each($1))"
        .to_owned(),
    complete_inquiries: format!(
        "UPDATE inquiries SET status = '{completed}', completed_at_ms = $1, callback_due = 1 \
         WHERE id IN (SELECT value FROM json_each($2)) AND status = '{running}' \
           AND NOT EXISTS (SELECT 1 FROM agency_tasks \
               WHERE inquiry_id = inquiries.id AND state IN ($3, $4, $5)) \
         RETURNING id, caller",
        completed = InquiryStatus::Completed,
        running = InquiryStatus::Running,
    ),
    // `= 1`, as the partial index `orders_documents_mismatch` says it.
    documents_mismatch: format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE documents_mismatch = 1 \
         AND created_at_ms >= $1 AND created_at_ms < $2 \
         ORDER BY created_at_ms DESC, id DESC LIMIT $3"
    ),
    // `BEGIN IMMEDIATE` takes the write lock.
    lock_audit_chain: None,
    audit_select: AUDIT_COLUMNS,
    audit_select_no_body: "seq, at_ms, direction, caller, officers, case_number, subject, \
         agency, action, inquiry_id, request_number, status, latency_ms, body_sha256, \
         NULL AS body, prev_hash, hash",
    // `lower` folds ASCII only, as `to_ascii_lowercase` does.
    officer_contains: [
        "EXISTS (SELECT 1 FROM json_each(audit_events.officers) o WHERE instr(lower(o.value), ",
        ") > 0)",
    ],
    purge_bodies: "UPDATE audit_events SET body = NULL WHERE seq IN ( \
             SELECT seq FROM audit_events WHERE body IS NOT NULL AND at_ms < $1 \
             ORDER BY at_ms LIMIT $2)"
        .to_owned(),
    subjects_in_several_cases: format!(
        "SELECT subject, json_group_array(DISTINCT case_number) AS cases, COUNT(*) AS requests \
         FROM audit_events WHERE {REQUESTS} AND subject IS NOT NULL \
         AND case_number IS NOT NULL AND at_ms >= $1 AND at_ms < $2 \
         GROUP BY subject HAVING COUNT(DISTINCT case_number) > 1 \
         ORDER BY COUNT(DISTINCT case_number) DESC, subject LIMIT $3"
    ),
    officer_cases: format!(
        "SELECT caller, o.value AS officer, case_number, COUNT(*) AS requests \
         FROM audit_events, json_each(audit_events.officers) o \
         WHERE {REQUESTS} AND case_number IS NOT NULL AND caller IS NOT NULL \
         AND at_ms >= $1 AND at_ms < $2 \
         GROUP BY caller, o.value, case_number ORDER BY caller, officer, case_number"
    ),
    officer_daily_volume: format!(
        "SELECT o.value AS officer, \
             date((at_ms + 28800000) / 1000, 'unixepoch') AS day, COUNT(*) AS requests \
         FROM audit_events, json_each(audit_events.officers) o \
         WHERE {REQUESTS} AND at_ms >= $1 AND at_ms < $2 \
         GROUP BY officer, day HAVING COUNT(*) > $3 ORDER BY day, requests DESC, officer"
    ),
});

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
