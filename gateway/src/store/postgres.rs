//! The PostgreSQL backend: the same semantics as SQLite's, for several
//! gateways sharing one database.
//!
//! Work is claimed with `FOR UPDATE SKIP LOCKED`, so two instances never
//! claim the same row; the audit chain is extended under the lock of the
//! one-row `audit_head` table, so several writers keep one chain; many
//! rows go to a statement as one array per column (`UNNEST`). Text
//! columns are `COLLATE "C"`: comparisons and orderings are byte-wise, as
//! in SQLite.
//!
//! Plans: every statement is prepared, and by default PostgreSQL soon
//! switches a prepared statement to a generic plan, made once from the
//! statistics of that moment. On a new database those are of nearly empty
//! tables, and the generic plans scan them whole: each completion check
//! read every inquiry until the next `ANALYZE`. So the gateway's
//! connections set `plan_cache_mode = force_custom_plan`: each execution
//! is planned for its own parameters (the arrays' lengths included) and
//! the tables' current sizes, at a few tens of microseconds a statement.
//! The conditions are also written so that the only index that serves
//! them is the one meant: `COALESCE(status, '')` and `COALESCE(state, '')`
//! keep a lookup by key off `inquiries_running` and `agency_tasks_due`,
//! whose ranges hold every running inquiry or unfinished task (the
//! completion check, `complete_inquiries`, and `time_out_tasks`). With a
//! plain `state IN
//! (...)` the planner, misled by statistics taken when few tasks were
//! unfinished, intersected the primary key with `agency_tasks_due`,
//! reading every unfinished task for each inquiry it checked: the further
//! the gateway fell behind, the slower each check.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Arguments, AssertSqlSafe, PgPool, Postgres};

use super::shared::{
    AUDIT_COLUMNS, Arg, Backend, REQUESTS, Record, Sql, SqlStore, Statements, audit_rows,
};
use super::{DecisionLock, StoreError};
use crate::audit::AuditRow;

/// The PostgreSQL side of [`SqlStore`]: the connections that hold the
/// database's part of decisions' turns (a pool of their own, so that turns
/// never take the connections their work needs).
#[derive(Debug, Clone)]
pub struct PgBackend {
    lock_pool: PgPool,
}

pub type PgStore = SqlStore<PgBackend>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections one gateway keeps for writes (and claims) at most.
const MAX_CONNECTIONS: u32 = 12;

/// Connections one gateway keeps for decisions' turns at most: one for
/// each decision in its turn; more wait for one.
const LOCK_CONNECTIONS: u32 = 8;
/// Connections for reads: API reads, auditors' queries, gauges.
const READER_CONNECTIONS: u32 = 6;

/// A pooled connection idle this long is pinged before it is used.
const PING_WHEN_IDLE: Duration = Duration::from_secs(10);

impl SqlStore<PgBackend> {
    /// Connects to the database a `postgres://` (or `postgresql://`) URL
    /// names and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// The same, from connection options.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        // Every statement is planned for its own parameters (the module's
        // note on plans).
        let options = options.options([("plan_cache_mode", "force_custom_plan")]);
        // A connection is pinged when it goes back to the pool (sqlx does
        // that always); before use only when it has been idle a while: a
        // ping before every statement would be one more round trip each.
        let pool_options = |max| {
            PgPoolOptions::new()
                .max_connections(max)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_WHEN_IDLE {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
        };
        let pool = pool_options(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await?;
        // The migrator holds an advisory lock while it runs: gateways
        // starting together apply each migration once.
        MIGRATOR.run(&pool).await?;
        let lock_pool = pool_options(LOCK_CONNECTIONS).connect_lazy_with(options.clone());
        // Reads on a pool of their own: a long auditor query never holds a
        // connection a writer waits for.
        let readers = pool_options(READER_CONNECTIONS).connect_lazy_with(options);
        Ok(SqlStore::new(pool, readers, PgBackend { lock_pool }))
    }
}

/// The values of a statement as PostgreSQL takes them.
fn arguments(args: Vec<Arg<'_>>) -> Result<PgArguments, sqlx::Error> {
    let mut out = PgArguments::default();
    for arg in args {
        let added: Result<(), BoxDynError> = match arg {
            Arg::Text(v) => out.add(v),
            Arg::Int(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Bytes(v) => out.add(v),
            Arg::Texts(v) => out.add(v),
            Arg::Column(v) => column(&mut out, v),
        };
        added.map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

/// Binds a column of values as one array of their kind (numbers, bytes
/// or texts).
fn column(out: &mut PgArguments, values: Vec<Arg<'_>>) -> Result<(), BoxDynError> {
    fn all<'a, T>(
        values: Vec<Arg<'a>>,
        f: fn(Arg<'a>) -> Option<T>,
    ) -> Result<Vec<T>, BoxDynError> {
        let mixed = || BoxDynError::from("a column holds values it cannot bind as one array");
        values.into_iter().map(|v| f(v).ok_or_else(mixed)).collect()
    }
    match values.first() {
        Some(Arg::Int(_)) => out.add(all(values, |v| match v {
            Arg::Int(v) => Some(v),
            _ => None,
        })?),
        Some(Arg::Bytes(_)) => out.add(all(values, |v| match v {
            Arg::Bytes(v) => Some(v),
            _ => None,
        })?),
        _ => out.add(all(values, |v| match v {
            Arg::Text(v) => Some(v),
            _ => None,
        })?),
    }
}

#[async_trait]
impl Backend for PgBackend {
    type Db = Postgres;

    const BEGIN: &'static str = "BEGIN";

    fn statements() -> &'static Statements {
        &STATEMENTS
    }

    fn one_of(column: &str, param: &str) -> String {
        format!("{column} = ANY({param}::text[])")
    }

    /// `COALESCE(column, '')`: see the module's note on plans.
    fn by_key(column: &str) -> String {
        format!("COALESCE({column}, '')")
    }

    const GREATEST: &'static str = "GREATEST";

    const TRUE: &'static str = "TRUE";
    // The connections' sockets belong to the runtime that opened them.
    const WRITER_ON_OWN_THREAD: bool = false;

    /// A claim that several gateways can share: the rows another instance is
    /// claiming right now are left to it (`SKIP LOCKED`); a row it claimed and
    /// committed fails the lease test when read again under the lock.
    fn claim(table: &str, condition: &str, set: &str, columns: &str) -> String {
        format!(
            "WITH due AS MATERIALIZED ( \
                 SELECT id FROM {table} WHERE {condition} AND due_at_ms <= $3 \
                     AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                 ORDER BY due_at_ms LIMIT $4 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
                 UPDATE {table} SET lease_owner = $1, lease_until_ms = $2{set} \
                 WHERE id IN (SELECT id FROM due) RETURNING {columns}) \
             SELECT {columns} FROM claimed ORDER BY due_at_ms, id"
        )
    }

    async fn execute(conn: &mut PgConnection, sql: Sql<'_>) -> Result<u64, sqlx::Error> {
        let (text, args) = sql.into_parts()?;
        let done = sqlx::query_with(AssertSqlSafe(text), arguments(args)?)
            .execute(conn)
            .await?;
        Ok(done.rows_affected())
    }

    async fn fetch_all<T: Record>(
        conn: &mut PgConnection,
        sql: Sql<'_>,
    ) -> Result<Vec<T>, sqlx::Error> {
        let (text, args) = sql.into_parts()?;
        sqlx::query_as_with(AssertSqlSafe(text), arguments(args)?)
            .fetch_all(conn)
            .await
    }

    fn rows_per_statement(_: usize) -> usize {
        usize::MAX
    }

    /// One array per column, of any length: one statement for any batch.
    fn push_rows<'a>(sql: &mut Sql<'a>, rows: Vec<Vec<Arg<'a>>>) {
        let mut columns: Vec<Vec<Arg<'a>>> = Vec::new();
        for row in rows {
            columns.resize_with(row.len(), Vec::new);
            for (column, value) in columns.iter_mut().zip(row) {
                column.push(value);
            }
        }
        sql.push("SELECT * FROM UNNEST(");
        for (i, column) in columns.into_iter().enumerate() {
            let ty = match column.first() {
                Some(Arg::Int(_)) => "int8",
                Some(Arg::Bytes(_)) => "bytea",
                _ => "text",
            };
            sql.push(if i == 0 { "" } else { ", " })
                .push_bind(Arg::Column(column))
                .push(&format!("::{ty}[]"));
        }
        sql.push(")");
    }

    /// Inserts `rows` (one statement, one array per column) and moves the
    /// chain's head (`audit_head`: the last row's number and hash) to the last
    /// of them. With `after`, only if the head is still that tail: otherwise
    /// nothing is stored and the answer is `false`. A writer that finds the
    /// head row locked re-reads it once the holder commits (READ COMMITTED),
    /// so two writers never both chain after one tail. Without `after` the
    /// head moves unconditionally: the caller holds its lock.
    async fn insert_audit(
        conn: &mut PgConnection,
        rows: &[AuditRow],
        after: Option<(i64, &str)>,
    ) -> Result<bool, StoreError> {
        let Some(last) = rows.last() else {
            return Ok(true);
        };
        let mut sql = Sql::new(format!(
            "WITH head AS ( \
                 UPDATE audit_head SET seq = $1, hash = $2 \
                 WHERE id = 1 AND ($3::int8 IS NULL OR (seq = $3 AND hash = $4)) \
                 RETURNING id), \
             v ({AUDIT_COLUMNS}) AS ("
        ))
        .bind(last.seq)
        .bind(&last.hash)
        .bind(after.map(|(seq, _)| seq))
        .bind(after.map(|(_, hash)| hash));
        Self::push_rows(&mut sql, audit_rows(rows)?);
        sql.push(&format!(
            ") INSERT INTO audit_events ({AUDIT_COLUMNS}) \
             SELECT seq, at_ms, direction, caller, officers::jsonb, case_number, subject, \
                 agency, action, inquiry_id, request_number, status, latency_ms, body_sha256, \
                 body, prev_hash, hash \
             FROM v WHERE EXISTS (SELECT 1 FROM head)"
        ));
        Ok(Self::execute(conn, sql).await? == rows.len() as u64)
    }

    /// A gateway of an earlier version appends without moving the head:
    /// the sequence numbers collide.
    fn audit_retry(e: &StoreError) -> bool {
        match e {
            StoreError::Database(e) => e
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation()),
            _ => false,
        }
    }

    /// Several gateways share the database: the process's locks, then
    /// the database's advisory locks.
    async fn lock_decision(
        store: &PgStore,
        keys: &[String],
        wait: Duration,
    ) -> Result<DecisionLock, StoreError> {
        super::decision::lock_shared(&store.local_locks, &store.backend.lock_pool, keys, wait).await
    }
}

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| Statements {
    claim_tasks: "WITH due AS MATERIALIZED ( \
             SELECT inquiry_id, agency FROM agency_tasks \
             WHERE state IN ($3, $4) AND due_at_ms <= $5 \
               AND (lease_until_ms IS NULL OR lease_until_ms <= $5) \
               AND agency <> ALL ($6::text[]) \
             ORDER BY due_at_ms LIMIT $7 \
             FOR UPDATE SKIP LOCKED), \
         claimed AS ( \
             UPDATE agency_tasks t \
             SET lease_owner = $1, lease_until_ms = $2, attempts = t.attempts + 1 \
             FROM due WHERE t.inquiry_id = due.inquiry_id AND t.agency = due.agency \
             RETURNING t.inquiry_id, t.agency, t.request_number, t.state, t.ticket, \
                 t.sent_at_ms, t.due_at_ms, t.attempts) \
         SELECT inquiry_id, agency, request_number, state, ticket, sent_at_ms, attempts \
         FROM claimed \
         ORDER BY due_at_ms, inquiry_id, agency"
        .to_owned(),
    // The chain's write lock, held until commit: another writer waits here,
    // and then (READ COMMITTED: a new snapshot per statement) reads the
    // tail this transaction leaves.
    lock_audit_chain: Some("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE"),
    audit_select: "seq, at_ms, direction, caller, officers::text AS officers, case_number, \
         subject, agency, action, inquiry_id, request_number, status, latency_ms, body_sha256, \
         body, prev_hash, hash",
    audit_select_no_body: "seq, at_ms, direction, caller, officers::text AS officers, \
         case_number, subject, agency, action, inquiry_id, request_number, status, latency_ms, \
         body_sha256, NULL::bytea AS body, prev_hash, hash",
    // ASCII case folding (`translate`), as `to_ascii_lowercase` does, and
    // nothing more: `lower` would fold by the database's locale.
    officer_contains: [
        "EXISTS (SELECT 1 FROM jsonb_array_elements_text(audit_events.officers) AS o (officer) \
         WHERE strpos(translate(o.officer, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', \
         'abcdefghijklmnopqrstuvwxyz'), ",
        ") > 0)",
    ],
    // Two instances purging at once each drop different rows: the rows
    // one has locked the other skips, and a row already purged fails
    // `body IS NOT NULL` when read again.
    purge_bodies: "UPDATE audit_events SET body = NULL WHERE body IS NOT NULL AND seq IN ( \
             SELECT seq FROM audit_events WHERE body IS NOT NULL AND at_ms < $1 \
             ORDER BY at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)"
        .to_owned(),
    subjects_in_several_cases: format!(
        "SELECT subject, \
             COALESCE(json_agg(DISTINCT case_number) \
                 FILTER (WHERE case_number IS NOT NULL), '[]')::text AS cases, \
             COUNT(*) AS requests \
         FROM audit_events WHERE {REQUESTS} AND subject IS NOT NULL \
         AND at_ms >= $1 AND at_ms < $2 \
         GROUP BY subject HAVING COUNT(DISTINCT case_number) > 1 \
         ORDER BY COUNT(DISTINCT case_number) DESC, subject LIMIT $3"
    ),
    officer_cases: format!(
        "SELECT caller, o.officer COLLATE \"C\" AS officer, case_number, COUNT(*) AS requests \
         FROM audit_events \
         CROSS JOIN LATERAL jsonb_array_elements_text(audit_events.officers) AS o (officer) \
         WHERE {REQUESTS} AND case_number IS NOT NULL AND caller IS NOT NULL \
         AND at_ms >= $1 AND at_ms < $2 \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ),
    // The civil day in UTC+8, from whole seconds truncated toward zero as
    // SQLite's integer division does.
    officer_daily_volume: format!(
        "SELECT o.officer COLLATE \"C\" AS officer, \
             to_char(to_timestamp((at_ms + 28800000) / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD') \
                 COLLATE \"C\" AS day, \
             COUNT(*) AS requests \
         FROM audit_events \
         CROSS JOIN LATERAL jsonb_array_elements_text(audit_events.officers) AS o (officer) \
         WHERE {REQUESTS} AND at_ms >= $1 AND at_ms < $2 \
         GROUP BY 1, 2 HAVING COUNT(*) > $3 ORDER BY 2, 3 DESC, 1"
    ),
});
