//! The store written once: [`SqlStore`] implements every store trait for
//! both backends. The statements that read the same on SQLite and
//! PostgreSQL (sqlx binds `$1`, `$2` ... on both) are written here, once,
//! with the rows they read. A [`Backend`] supplies only what truly
//! differs: how values are bound, writing many rows at once, the audit
//! chain's lock, the turns of decisions, and the text of the statements
//! whose SQL differs ([`Statements`]: claiming work, lists of values, JSON).
//!
//! Nothing here names a backend: a statement that cannot be written the
//! same on both belongs to the backends.

mod audit;
mod batches;
mod console;
mod jobs;
mod orders;

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, FromRow, Pool, Transaction};

pub(super) use audit::{AUDIT_COLUMNS, AUDIT_ROWS_PER_INSERT, AuditTail, REQUESTS, audit_rows};

use super::StoreError;
use super::columns::json;
use super::decision::{DecisionLock, LocalLocks};
use crate::audit::AuditRow;

/// One store on one database: its pool, what its backend keeps, and what
/// one handle remembers (the audit chain's tail, decisions' turns).
#[derive(Debug)]
pub struct SqlStore<B: Backend> {
    /// Where writes go (on SQLite, its one connection).
    pub(super) pool: Pool<B::Db>,
    /// Where reads go: API reads, auditors' queries, gauges. On SQLite
    /// these are read-only connections of their own (WAL readers see the
    /// last commit and never wait for the writer, nor it for them); on
    /// PostgreSQL a pool of its own, so a long auditor query never takes a
    /// connection a writer waits for.
    pub(super) readers: Pool<B::Db>,
    pub(super) backend: B,
    pub(super) audit_tail: AuditTail,
    pub(super) local_locks: LocalLocks,
}

// By hand: a derived `Clone` would ask the database type itself to be
// `Clone`, which no sqlx database is; the handle's parts all are.
impl<B: Backend> Clone for SqlStore<B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            readers: self.readers.clone(),
            backend: self.backend.clone(),
            audit_tail: self.audit_tail.clone(),
            local_locks: self.local_locks.clone(),
        }
    }
}

impl<B: Backend> SqlStore<B> {
    pub(super) fn new(pool: Pool<B::Db>, readers: Pool<B::Db>, backend: B) -> Self {
        Self {
            pool,
            readers,
            backend,
            audit_tail: AuditTail::default(),
            local_locks: LocalLocks::default(),
        }
    }

    pub fn pool(&self) -> &Pool<B::Db> {
        &self.pool
    }

    /// Begins a write transaction.
    pub(super) async fn begin(&self) -> Result<Transaction<'static, B::Db>, StoreError> {
        Ok(self.pool.begin_with(B::BEGIN).await?)
    }

    /// Begins a write transaction that holds the journal's lock (the audit
    /// chain's): the transactions that finish tasks and complete inquiries
    /// take it first, so each sees every result committed before it and
    /// completes an inquiry in the transaction of its last result. On
    /// SQLite, beginning is the lock (one writer at a time).
    pub(super) async fn begin_locked(&self) -> Result<Transaction<'static, B::Db>, StoreError> {
        let mut tx = self.begin().await?;
        if let Some(lock) = B::statements().lock_audit_chain {
            B::execute(&mut tx, Sql::new(lock)).await?;
        }
        Ok(tx)
    }

    async fn run(&self, sql: Sql<'_>) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(B::execute(&mut conn, sql).await?)
    }

    async fn all<T: Record>(&self, sql: Sql<'_>) -> Result<Vec<T>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(B::fetch_all(&mut conn, sql).await?)
    }

    async fn optional<T: Record>(&self, sql: Sql<'_>) -> Result<Option<T>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(B::fetch_optional(&mut conn, sql).await?)
    }

    /// A read, on a reader's connection: it sees every commit made before
    /// it starts and waits for no writer. A connection the server ended
    /// while it lay idle in the pool (a restart, an administrator) fails
    /// its read and is dropped; the read is tried again on another, so the
    /// first reads after the database comes back do not fail for it.
    async fn read_all<T: Record>(&self, sql: Sql<'_>) -> Result<Vec<T>, StoreError> {
        let mut sql = sql;
        let mut tries = self.readers.options().get_max_connections() + 1;
        loop {
            let again = sql.try_clone();
            let mut conn = self.readers.acquire().await?;
            match B::fetch_all(&mut conn, sql).await {
                Err(e) if tries > 1 && connection_lost(&e) => {
                    tries -= 1;
                    drop(conn.detach());
                    match again {
                        Some(again) => sql = again,
                        None => return Err(e.into()),
                    }
                }
                done => return Ok(done?),
            }
        }
    }

    async fn read_optional<T: Record>(&self, sql: Sql<'_>) -> Result<Option<T>, StoreError> {
        Ok(self.read_all(sql).await?.into_iter().next())
    }
}

/// Whether a statement failed because its connection is gone (ended by
/// the server or broken), not because of the statement.
pub(in crate::store) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

/// A backend's connection (a pooled one, or a transaction's).
pub type Conn<B> = <<B as Backend>::Db as Database>::Connection;

/// What differs between the backends.
#[async_trait]
pub trait Backend: std::fmt::Debug + Clone + Send + Sync + Sized + 'static {
    type Db: Database;

    /// How a write transaction begins.
    const BEGIN: &'static str;

    /// The statements whose text differs.
    fn statements() -> &'static Statements;

    /// `column` is one of the texts bound to `param` (`Arg::Texts`).
    fn one_of(column: &str, param: &str) -> String;

    /// `column` as a lookup by key tests it: on PostgreSQL kept off the
    /// column's own index (`postgres`' note on plans).
    fn by_key(column: &str) -> String;

    /// The larger of two values.
    const GREATEST: &'static str;

    /// A boolean column's true, as the partial indexes spell it.
    const TRUE: &'static str;

    /// Whether the journal's writer runs on a thread of its own
    /// (`AuditStore::writer_on_own_thread`).
    const WRITER_ON_OWN_THREAD: bool;

    /// Claims the rows of `table` that meet `condition` and are due,
    /// setting `set` as well, returning `columns`: $1 owner, $2 lease
    /// until, $3 now, $4 how many.
    fn claim(table: &str, condition: &str, set: &str, columns: &str) -> String;

    /// Runs a statement; how many rows it changed.
    async fn execute(conn: &mut Conn<Self>, sql: Sql<'_>) -> Result<u64, sqlx::Error>;

    async fn fetch_all<T: Record>(
        conn: &mut Conn<Self>,
        sql: Sql<'_>,
    ) -> Result<Vec<T>, sqlx::Error>;

    /// The first row of a statement that returns at most one.
    async fn fetch_optional<T: Record>(
        conn: &mut Conn<Self>,
        sql: Sql<'_>,
    ) -> Result<Option<T>, sqlx::Error> {
        Ok(Self::fetch_all(conn, sql).await?.into_iter().next())
    }

    /// How many rows one multi-row statement writes: `max` where a
    /// statement takes only so many values (SQLite), all of them where one
    /// array per column takes any number (PostgreSQL).
    fn rows_per_statement(max: usize) -> usize;

    /// Pushes `rows` (each row's values in the same columns) as the body of
    /// `WITH v (columns) AS (...)`: a row whose first value is NULL is
    /// padding, which statements filter out.
    fn push_rows<'a>(sql: &mut Sql<'a>, rows: Vec<Vec<Arg<'a>>>);

    /// Appends chained `rows`. With `after` (the chain's tail a handle
    /// last wrote), only if that is still the tail, checked by the one
    /// statement that appends them: false when it was not. Without, the
    /// caller holds the chain's lock.
    async fn insert_audit(
        conn: &mut Conn<Self>,
        rows: &[AuditRow],
        after: Option<(i64, &str)>,
    ) -> Result<bool, StoreError>;

    /// Whether an append after a remembered tail that failed with `e` is
    /// tried again after the tail as stored (it changed nothing).
    fn audit_retry(e: &StoreError) -> bool;

    /// `OrderStore::lock_decision`.
    async fn lock_decision(
        store: &SqlStore<Self>,
        keys: &[String],
        wait: Duration,
    ) -> Result<DecisionLock, StoreError>;
}

/// The statements whose SQL differs between the backends, each with the
/// same arguments on both (numbered as listed).
#[derive(Debug)]
pub struct Statements {
    /// Claims due tasks, returning them as `ClaimedTask`s: $1 owner, $2
    /// lease until, $3 and $4 the states to claim, $5 now, $6 the agencies
    /// to leave alone, $7 how many.
    pub claim_tasks: String,
    /// Locks the audit chain for a writer, when beginning a write
    /// transaction does not.
    pub lock_audit_chain: Option<&'static str>,
    /// The audit columns as read (officers as JSON text), with and without
    /// the bodies.
    pub audit_select: &'static str,
    pub audit_select_no_body: &'static str,
    /// A condition on an audit row's officers: one contains the bound text
    /// (lower case), ASCII letters in either case. The text goes between
    /// the two parts.
    pub officer_contains: [&'static str; 2],
    /// Drops the bodies of rows written before $1, at most $2 of them.
    pub purge_bodies: String,
    /// Auditors' questions (`crate::questions`), rows of `subject`, `cases`
    /// (a JSON array), `requests`: $1 from, $2 to, $3 how many.
    pub subjects_in_several_cases: String,
    /// Rows of `caller`, `officer`, `case_number`, `requests`: $1 from, $2
    /// to.
    pub officer_cases: String,
    /// Rows of `officer`, `day`, `requests`: $1 from, $2 to, $3 the
    /// threshold.
    pub officer_daily_volume: String,
}

/// A row type both backends read.
pub trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// A statement as both backends run it: its SQL, made only of the store's
/// own text (values are never written into it), and the values bound to
/// `$1`, `$2` ...
#[derive(Debug)]
pub struct Sql<'a> {
    text: Cow<'static, str>,
    args: Vec<Arg<'a>>,
    /// A value that could not be bound: the statement fails with it.
    error: Option<sqlx::Error>,
}

impl<'a> Sql<'a> {
    pub fn new(text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
            error: None,
        }
    }

    /// The same statement again, unless a value could not be bound.
    pub fn try_clone(&self) -> Option<Self> {
        match self.error {
            Some(_) => None,
            None => Some(Self {
                text: self.text.clone(),
                args: self.args.clone(),
                error: None,
            }),
        }
    }

    /// Binds the next `$N`.
    pub fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Binds the next `$N` to a value's JSON text (`columns::json`); NULL
    /// for none.
    pub fn bind_json<T: Serialize>(mut self, value: Option<&T>) -> Self {
        match value.map(json).transpose() {
            Ok(text) => self.args.push(Arg::Text(text.map(Cow::Owned))),
            Err(e) => {
                self.args.push(Arg::Text(None));
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Appends text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.to_mut().push_str(text);
        self
    }

    /// Appends `column` is one of `values` (`Backend::one_of`), bound as
    /// one argument.
    pub fn push_one_of<B: Backend>(&mut self, column: &str, values: &'a [String]) -> &mut Self {
        self.args.push(Arg::Texts(values));
        let param = format!("${}", self.args.len());
        self.push(&B::one_of(column, &param))
    }

    /// Appends the placeholder of a new argument.
    pub fn push_bind(&mut self, value: impl Into<Arg<'a>>) -> &mut Self {
        self.args.push(value.into());
        let n = self.args.len();
        self.push(&format!("${n}"))
    }

    /// Appends an anonymous placeholder (`?`) of a new argument, for
    /// SQLite's long `VALUES` lists: it takes the next number as `$N`
    /// would, but SQLite looks a named parameter's name up in a list at
    /// every bind (sqlx asks for each parameter's name), so a statement of
    /// N named parameters costs N² at each run; anonymous ones cost
    /// nothing. Only where every argument before it is anonymous too
    /// (sqlx numbers anonymous parameters by counting them).
    pub fn push_anonymous(&mut self, value: impl Into<Arg<'a>>) -> &mut Self {
        self.args.push(value.into());
        self.push("?")
    }

    /// The text and the values, or why a value could not be bound.
    pub fn into_parts(self) -> Result<(Cow<'static, str>, Vec<Arg<'a>>), sqlx::Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok((self.text, self.args)),
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Bool(bool),
    Bytes(Option<&'a [u8]>),
    /// A list of texts: a JSON array on SQLite (read with `json_each`), an
    /// array on PostgreSQL.
    Texts(&'a [String]),
    /// A column of many rows' values, all of one kind (PostgreSQL's
    /// `UNNEST`).
    Column(Vec<Arg<'a>>),
}

/// How each kind of value is bound.
macro_rules! args {
    ($($ty:ty => |$v:ident| $arg:expr,)*) => {
        $(
            impl<'a> From<$ty> for Arg<'a> {
                fn from($v: $ty) -> Self {
                    $arg
                }
            }
        )*
    };
}

args! {
    &'a str => |v| Arg::Text(Some(Cow::Borrowed(v))),
    &'a String => |v| Arg::Text(Some(Cow::Borrowed(v))),
    String => |v| Arg::Text(Some(Cow::Owned(v))),
    Option<&'a str> => |v| Arg::Text(v.map(Cow::Borrowed)),
    &'a Option<String> => |v| Arg::Text(v.as_deref().map(Cow::Borrowed)),
    Option<String> => |v| Arg::Text(v.map(Cow::Owned)),
    i64 => |v| Arg::Int(Some(v)),
    Option<i64> => |v| Arg::Int(v),
    bool => |v| Arg::Bool(v),
    &'a Vec<u8> => |v| Arg::Bytes(Some(v)),
    Option<&'a [u8]> => |v| Arg::Bytes(v),
    &'a [String] => |v| Arg::Texts(v),
}

/// `SELECT columns FROM table WHERE condition` (with its order and limit).
pub fn select<'a>(columns: &str, table: &str, condition: &str) -> Sql<'a> {
    Sql::new(format!("SELECT {columns} FROM {table} WHERE {condition}"))
}

/// A `LIMIT`: a negative one means none (PostgreSQL refuses a negative
/// limit, SQLite a NULL one).
pub fn limit(n: i64) -> i64 {
    if n < 0 { i64::MAX } else { n }
}

/// `rows` in batches of `B::rows_per_statement(max)`, one statement each.
pub fn batches<'a, B: Backend>(
    rows: Vec<Vec<Arg<'a>>>,
    max: usize,
) -> impl Iterator<Item = Vec<Vec<Arg<'a>>>> {
    let n = B::rows_per_statement(max);
    let mut rows = rows.into_iter().peekable();
    std::iter::from_fn(move || {
        rows.peek()?;
        Some(rows.by_ref().take(n).collect())
    })
}

/// Inserts `rows` into `table`, each row's values in the order of
/// `columns`, at most `max` rows to a statement where that is bounded.
pub async fn insert_rows<B: Backend>(
    conn: &mut Conn<B>,
    table: &str,
    columns: &str,
    rows: Vec<Vec<Arg<'_>>>,
    max: usize,
) -> Result<(), StoreError> {
    let first = columns.split(',').next().unwrap_or(columns);
    for batch in batches::<B>(rows, max) {
        let mut sql = Sql::new(format!("WITH v ({columns}) AS ("));
        B::push_rows(&mut sql, batch);
        sql.push(&format!(
            ") INSERT INTO {table} ({columns}) SELECT {columns} FROM v WHERE {first} IS NOT NULL"
        ));
        B::execute(conn, sql).await?;
    }
    Ok(())
}
