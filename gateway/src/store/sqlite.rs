//! The SQLite backend: one file, WAL mode, migrations embedded in the
//! binary. What it does its own way: many rows to a statement in padded
//! chunks (`VALUES` lists of a few sizes), claims as one `UPDATE` (one
//! writer at a time), the audit chain under `BEGIN IMMEDIATE`, lists as
//! JSON read with `json_each`.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, Connection, Sqlite};

use super::shared::{
    AUDIT_COLUMNS, AUDIT_ROWS_PER_INSERT, Arg, Backend, REQUESTS, Record, Sql, SqlStore,
    Statements, audit_rows, batches,
};
use super::{DecisionLock, StoreError};
use crate::audit::AuditRow;

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
            // in each of their sizes (see `push_rows`).
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
            Arg::Column(_) => Err("SQLite takes no column of values".into()),
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

    fn statements() -> &'static Statements {
        &STATEMENTS
    }

    fn one_of(column: &str, param: &str) -> String {
        format!("{column} IN (SELECT value FROM json_each({param}))")
    }

    fn by_key(column: &str) -> String {
        column.to_owned()
    }

    const GREATEST: &'static str = "MAX";

    /// `1`, as the partial index `orders_documents_mismatch` says it.
    const TRUE: &'static str = "1";
    // Every statement ends on the connection's worker thread.
    const WRITER_ON_OWN_THREAD: bool = true;

    fn claim(table: &str, condition: &str, set: &str, columns: &str) -> String {
        format!(
            "UPDATE {table} SET lease_owner = $1, lease_until_ms = $2{set} \
             WHERE id IN (SELECT id FROM {table} WHERE {condition} AND due_at_ms <= $3 \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                 ORDER BY due_at_ms LIMIT $4) \
             RETURNING {columns}"
        )
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

    fn rows_per_statement(max: usize) -> usize {
        max
    }

    /// A `VALUES` list padded with NULL rows to a power of two: each size
    /// is one SQL text, so a handful of statements stay prepared in the
    /// connection's cache (parsing a long statement cost more than running
    /// it), and any batch takes one statement (each is a round trip to
    /// SQLite's worker thread). The values are anonymous parameters
    /// (`Sql::push_anonymous`): the list comes first in every statement
    /// that uses it.
    fn push_rows<'a>(sql: &mut Sql<'a>, rows: Vec<Vec<Arg<'a>>>) {
        let width = rows.first().map_or(0, Vec::len);
        let size = rows.len().next_power_of_two();
        let padding = std::iter::repeat_with(|| vec![Arg::Int(None); width]);
        sql.push("VALUES ");
        for (i, row) in rows.into_iter().chain(padding).take(size).enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            for (j, value) in row.into_iter().enumerate() {
                sql.push(if j == 0 { "" } else { ", " })
                    .push_anonymous(value);
            }
            sql.push(")");
        }
    }

    /// Many rows to a statement; with `after`, the statement inserts only if
    /// the last row's hash is still that tail's (one statement is atomic; in
    /// WAL mode it cannot commit over a write it did not see).
    async fn insert_audit(
        conn: &mut SqliteConnection,
        rows: &[AuditRow],
        after: Option<(i64, &str)>,
    ) -> Result<bool, StoreError> {
        for batch in batches::<Self>(audit_rows(rows)?, AUDIT_ROWS_PER_INSERT) {
            let count = batch.len() as u64;
            let mut sql = Sql::new(format!("WITH v ({AUDIT_COLUMNS}) AS ("));
            Self::push_rows(&mut sql, batch);
            sql.push(&format!(
                ") INSERT INTO audit_events ({AUDIT_COLUMNS}) SELECT {AUDIT_COLUMNS} FROM v \
                 WHERE seq IS NOT NULL"
            ));
            if let Some((_, hash)) = after {
                sql.push(" AND (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1) = ")
                    .push_bind(hash);
            }
            if Self::execute(conn, sql).await? != count {
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::{Arg, Backend, Sql, SqliteBackend, batches};

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
    fn batches_come_in_a_few_sizes_and_cover_everything() -> anyhow::Result<()> {
        let mut texts = HashSet::new();
        for n in 0..1100i64 {
            let rows = (0..n).map(|i| vec![Arg::Int(Some(i))]).collect();
            let batches: Vec<_> = batches::<SqliteBackend>(rows, 256).collect();
            let count = batches.len();
            let mut joined = Vec::new();
            for (i, batch) in batches.into_iter().enumerate() {
                let len = batch.len();
                // Only the last batch is short.
                assert!(len == 256 || i + 1 == count, "n = {n}: {len}");
                let mut sql = Sql::new("");
                SqliteBackend::push_rows(&mut sql, batch);
                let (text, args) = sql.into_parts()?;
                let size = args.len();
                assert!(size.is_power_of_two() && size < len * 2, "n = {n}: {size}");
                joined.extend(args.into_iter().map_while(|a| match a {
                    Arg::Int(Some(v)) => Some(v),
                    _ => None,
                }));
                texts.insert(text);
            }
            assert_eq!(joined, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
        // One text per size: 1, 2, 4 ... 256 rows.
        assert_eq!(texts.len(), 9);
        Ok(())
    }
}
