//! The audit writer's capacity: rows committed per second through the
//! gateway's own writer (`AuditLog`: one writer task, one transaction or
//! statement per batch, every producer acknowledged after the commit)
//! when producers keep it busy, against one transaction per row through
//! the same store. The load scenarios cannot show it: there the audit
//! writer takes what the inquiries make (9 rows each), far below what it
//! can commit.
//!
//! And what that capacity pays for. Durability: the same runs with the
//! commit not waiting for the disk (SQLite `synchronous = NORMAL`,
//! PostgreSQL `synchronous_commit = off`) against the gateway's settings
//! (`FULL`, `on`), read back from the connection that wrote. The indexes:
//! the same runs with each index of `audit_events` dropped in turn, and
//! with none, each index's cost being the time per row it adds.
//!
//! It runs the gateway's library code in the bench's own process (the
//! library of the tree the bench is built from, whatever `--gateway-bin`
//! says), on a fresh database each time: a temporary SQLite file opened as
//! the gateway opens it, or a new PostgreSQL database created for the run
//! and dropped after it.

use std::sync::Arc;
use std::time::Instant;

use gateway::audit::{AuditLog, AuditRecord, Direction};
use gateway::store::{NewAuditRow, PgStore, SqliteStore, Store};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection};

use crate::procs::{cpu_seconds, postgres_cpu_seconds};
use crate::system::{Backend, postgres_database_name};

/// Producers recording at once (inquiries and orders in flight).
const PRODUCERS: usize = 256;

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRun {
    /// `SQLite` or `PostgreSQL`.
    pub backend: String,
    /// Which round of the scenario.
    pub round: usize,
    /// `group commit` (the gateway's writer) or `one transaction per row`.
    pub mode: String,
    /// Which rows: `as inquiries make them` or `every row another case`.
    pub rows_like: String,
    /// The commit's durability as the writing connection reported it
    /// after the run: `synchronous=FULL`, `synchronous_commit=on` ...
    pub durability: String,
    /// Whether the commit was made not to wait for the disk.
    pub relaxed: bool,
    /// Indexes of `audit_events` dropped before the run.
    pub dropped: Vec<String>,
    pub rows: usize,
    pub secs: f64,
    pub rows_per_s: f64,
    /// Wall time per row at that rate.
    pub us_per_row: f64,
    /// For a run compared with the baseline (the writer as the gateway
    /// runs it, every index), the mean time per row of the baseline runs
    /// just before and after it: differences taken against it are
    /// immune to the machine drifting slower or faster over a round.
    pub baseline_us_per_row: Option<f64>,
    /// CPU of the bench's process (producers, writer, SQLite) meanwhile.
    pub bench_cpu_s: f64,
    /// CPU of the PostgreSQL server meanwhile, when it runs here.
    pub postgres_cpu_s: Option<f64>,
}

impl AuditRun {
    /// The gateway's writer on rows as inquiries make them, with the
    /// gateway's durability: the runs the capacity and the costs are
    /// measured on, dropping `dropped`.
    pub fn is_writer_run(&self, dropped: &[String]) -> bool {
        self.mode == GROUP_COMMIT
            && self.rows_like == Mix::INQUIRIES
            && !self.relaxed
            && self.dropped == dropped
    }

    pub fn indexes_label(&self, all: usize) -> String {
        match self.dropped.len() {
            0 => "all".into(),
            n if n == all && all > 1 => "none".into(),
            _ => format!("without {}", self.dropped.join(", ")),
        }
    }
}

/// An index of `audit_events` (the primary key aside), as the migrations
/// made it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditIndex {
    pub backend: String,
    pub name: String,
    pub definition: String,
}

pub const GROUP_COMMIT: &str = "group commit";
pub const ROW_BY_ROW: &str = "one transaction per row";

/// The rows' case numbers and identity numbers, which decide how many
/// index pages each commit touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// As a four-agency inquiry makes them: its inbound row, then four
    /// outbound rows at once, then four replies at once, all nine about
    /// one case and one subject.
    Inquiries,
    /// The same rows, each about another case and subject: the worst case
    /// for the indexes on them.
    Distinct,
}

impl Mix {
    pub const INQUIRIES: &str = "as inquiries make them";

    fn label(self) -> &'static str {
        match self {
            Mix::Inquiries => Self::INQUIRIES,
            Mix::Distinct => "every row another case",
        }
    }
}

/// Rows an inquiry makes: its inbound row, four outbound, four replies.
const ROWS_PER_INQUIRY: usize = 9;

/// Row `row` of inquiry `inquiry` (0 inbound, 1-4 outbound, 5-8 replies),
/// about the case and subject `key`.
fn record(inquiry: usize, row: usize, key: usize) -> AuditRecord {
    let (direction, action, status) = match row {
        0 => (Direction::Inbound, "inquiry.create", Some("accepted")),
        1..=4 => (Direction::Outbound, "inquiry.send", None),
        _ => (Direction::Reply, "inquiry.reply", Some("http_200")),
    };
    let agency = format!("bank-{}", (inquiry + row) % 4);
    AuditRecord {
        direction: Some(direction),
        caller: Some("demo-court".into()),
        officers: vec!["李明 (ZX620503001)".into()],
        case_number: Some(format!("(2024)甘0503执{key}号")),
        subject: Some(format!("36042619910{key:07}")),
        agency: (row > 0).then(|| agency.clone()),
        action: action.into(),
        inquiry_id: Some(format!("inq_{inquiry:032}")),
        request_number: (row > 0).then(|| format!("Q{inquiry:032}-{agency}")),
        status: status.map(str::to_owned),
        body: Some(format!("<CXQQ><CXQQDH>Q{inquiry:032}</CXQQDH><XM>张三</XM></CXQQ>").into()),
        ..AuditRecord::default()
    }
}

/// The case and subject of row `row` of inquiry `inquiry` under `mix`.
fn key(mix: Mix, inquiry: usize, row: usize) -> usize {
    match mix {
        Mix::Inquiries => inquiry,
        Mix::Distinct => inquiry * ROWS_PER_INQUIRY + row,
    }
}

/// Runs `PRODUCERS` producers making about `rows` rows in all: each
/// makes the rows of one inquiry after another with `inquiry(number)`.
/// The rows made and the seconds it took.
async fn produce<F, Fut>(rows: usize, inquiry: F) -> anyhow::Result<(usize, f64)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let per = (rows / PRODUCERS / ROWS_PER_INQUIRY).max(1);
    let inquiry = Arc::new(inquiry);
    let started = Instant::now();
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let inquiry = inquiry.clone();
            tokio::spawn(async move {
                for q in 0..per {
                    inquiry(p * per + q).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((
        per * PRODUCERS * ROWS_PER_INQUIRY,
        started.elapsed().as_secs_f64(),
    ))
}

/// Through the gateway's writer, each inquiry's rows in its three steps
/// (waiting for each step's acknowledgements before the next, as the
/// gateway does).
async fn group_commit(
    store: Arc<dyn Store>,
    rows: usize,
    mix: Mix,
) -> anyhow::Result<(usize, f64)> {
    let log = AuditLog::start(store, 4096).await?;
    produce(rows, move |inquiry| {
        let log = log.clone();
        async move {
            for step in [0..1, 1..5, 5..9] {
                let records =
                    step.map(|row| log.record(record(inquiry, row, key(mix, inquiry, row))));
                for done in futures::future::join_all(records).await {
                    done?;
                }
            }
            Ok(())
        }
    })
    .await
}

/// Rows as inquiries make them, appended one transaction each through the
/// same store method.
async fn row_by_row(store: Arc<dyn Store>, rows: usize) -> anyhow::Result<(usize, f64)> {
    produce(rows, move |inquiry| {
        let store = store.clone();
        async move {
            for row in 0..ROWS_PER_INQUIRY {
                let new = NewAuditRow {
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    record: record(inquiry, row, inquiry),
                };
                store.append_audit(vec![new]).await?;
            }
            Ok(())
        }
    })
    .await
}

/// The store as the gateway opens it, and its pool for what the bench
/// does beside it (durability, indexes).
enum Opened {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Opened {
    /// Opens the database at `url`; with `relaxed`, commits that do not
    /// wait for the disk. PostgreSQL's setting is the database's, set
    /// before the store connects, so that every connection it opens has
    /// it.
    async fn open(url: &str, relaxed: bool) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            let store = SqliteStore::open(url).await?;
            if relaxed {
                // The store has one connection: the setting stays on it
                // (read back after the run, in case it was replaced).
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(store.pool())
                    .await?;
            }
            Ok(Self::Sqlite(store))
        } else {
            if relaxed {
                let mut c = sqlx::PgConnection::connect(url).await?;
                sqlx::query(
                    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', \
                     current_database()); END $$",
                )
                .execute(&mut c)
                .await?;
                c.close().await?;
            }
            Ok(Self::Postgres(PgStore::open(url).await?))
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(s) => Arc::new(s.clone()),
            Opened::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// The durability of the store's commits, as its connection reports
    /// it.
    async fn durability(&self) -> anyhow::Result<String> {
        Ok(match self {
            Opened::Sqlite(s) => {
                let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(s.pool())
                    .await?;
                format!("synchronous={}", sqlite_synchronous_name(level))
            }
            Opened::Postgres(s) => {
                let value: String = sqlx::query_scalar("SHOW synchronous_commit")
                    .fetch_one(s.pool())
                    .await?;
                format!("synchronous_commit={value}")
            }
        })
    }

    /// The indexes of `audit_events` but its primary key's: name and
    /// definition, by name.
    async fn audit_indexes(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(match self {
            Opened::Sqlite(s) => {
                sqlx::query_as(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' \
                     AND tbl_name = 'audit_events' AND sql IS NOT NULL ORDER BY name",
                )
                .fetch_all(s.pool())
                .await?
            }
            Opened::Postgres(s) => {
                sqlx::query_as(
                    "SELECT indexname::text, indexdef FROM pg_indexes \
                     WHERE schemaname = current_schema() AND tablename = 'audit_events' \
                     AND indexname NOT IN (SELECT conname FROM pg_constraint \
                         WHERE conrelid = 'audit_events'::regclass) \
                     ORDER BY indexname",
                )
                .fetch_all(s.pool())
                .await?
            }
        })
    }

    async fn drop_index(&self, name: &str) -> anyhow::Result<()> {
        // The name is one the database listed; quoted all the same.
        let sql = format!("DROP INDEX \"{}\"", name.replace('"', "\"\""));
        match self {
            Opened::Sqlite(s) => {
                sqlx::query(AssertSqlSafe(sql)).execute(s.pool()).await?;
            }
            Opened::Postgres(s) => {
                sqlx::query(AssertSqlSafe(sql)).execute(s.pool()).await?;
            }
        }
        Ok(())
    }

    async fn close(self) {
        match self {
            Opened::Sqlite(s) => s.pool().close().await,
            Opened::Postgres(s) => s.pool().close().await,
        }
    }
}

/// SQLite's `PRAGMA synchronous` levels by name.
pub fn sqlite_synchronous_name(level: i64) -> String {
    match level {
        0 => "OFF".into(),
        1 => "NORMAL".into(),
        2 => "FULL".into(),
        3 => "EXTRA".into(),
        other => other.to_string(),
    }
}

/// `PRAGMA synchronous` of a SQLite file opened as the gateway opens it
/// (`SqliteStore::open` of the library the bench is built from).
pub async fn sqlite_synchronous_as_opened(dir: &std::path::Path) -> anyhow::Result<String> {
    let url = format!("sqlite://{}", dir.join("synchronous-probe.db").display());
    let opened = Opened::open(&url, false).await?;
    let durability = opened.durability().await;
    opened.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("synchronous-probe.db{suffix}")));
    }
    durability
}

/// One kind of run: the writer's mode, the rows, durability, and which
/// indexes are dropped (names from the fresh database).
#[derive(Debug, Clone)]
struct Variant {
    mode: &'static str,
    mix: Mix,
    relaxed: bool,
    dropping: Dropping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropping {
    None,
    One(usize),
    All,
}

/// The writer's capacity as the gateway runs it: group commit, rows as
/// inquiries make them, the gateway's durability, every index.
const BASELINE: Variant = Variant {
    mode: GROUP_COMMIT,
    mix: Mix::Inquiries,
    relaxed: false,
    dropping: Dropping::None,
};

/// What a round compares with the baseline, each run between two
/// baseline runs: relaxed durability, rows about many cases, each of
/// `indexes` indexes dropped in turn, then none left.
fn compared(indexes: usize) -> Vec<Variant> {
    let v = |mix, relaxed, dropping| Variant {
        mode: GROUP_COMMIT,
        mix,
        relaxed,
        dropping,
    };
    let mut all = vec![
        v(Mix::Inquiries, true, Dropping::None),
        v(Mix::Distinct, false, Dropping::None),
    ];
    all.extend((0..indexes).map(|i| v(Mix::Inquiries, false, Dropping::One(i))));
    if indexes > 1 {
        all.push(v(Mix::Inquiries, false, Dropping::All));
    }
    all
}

/// One transaction a row, with either durability: what a commit costs
/// when nothing shares it.
fn row_by_row_variants() -> [Variant; 2] {
    [false, true].map(|relaxed| Variant {
        mode: ROW_BY_ROW,
        mix: Mix::Inquiries,
        relaxed,
        dropping: Dropping::None,
    })
}

/// What the scenario measured on one backend.
pub struct AuditScenario {
    pub runs: Vec<AuditRun>,
    pub indexes: Vec<AuditIndex>,
}

/// Every variant on `backend`, `rounds` times, the variants of a round
/// one after another (so that a slower minute of the machine falls on all
/// of them); a fresh database for every run.
pub async fn scenario(
    backend: &Backend,
    dir: &std::path::Path,
    group_rows: usize,
    rounds: usize,
) -> anyhow::Result<AuditScenario> {
    // The indexes as the migrations make them, from a fresh database.
    let (url, database) = backend.database(dir, "audit-indexes").await?;
    let opened = Opened::open(&url, false).await?;
    let listed = opened.audit_indexes().await;
    opened.close().await;
    drop(database);
    remove_sqlite(&url);
    let indexes: Vec<AuditIndex> = listed?
        .into_iter()
        .map(|(name, definition)| AuditIndex {
            backend: backend.label().into(),
            name,
            definition,
        })
        .collect();
    let names: Vec<String> = indexes.iter().map(|i| i.name.clone()).collect();
    println!(
        "  {} audit_events indexes: {}",
        backend.label(),
        names.join(", ")
    );
    let mut runs: Vec<AuditRun> = Vec::new();
    let mut n = 0;
    let mut run = async |round: usize, variant: &Variant| -> anyhow::Result<AuditRun> {
        let dropped: Vec<String> = match variant.dropping {
            Dropping::None => Vec::new(),
            Dropping::One(i) => names.get(i).cloned().into_iter().collect(),
            Dropping::All => names.clone(),
        };
        let rows = if variant.mode == GROUP_COMMIT {
            group_rows
        } else {
            group_rows / 10
        };
        n += 1;
        let (url, database) = backend.database(dir, &format!("audit-{n}")).await?;
        let measured = measure(&url, variant, &dropped, rows).await;
        drop(database);
        remove_sqlite(&url);
        let (rows, secs, durability, bench_cpu_s, postgres_cpu_s) = measured?;
        let run = AuditRun {
            backend: backend.label().into(),
            round,
            mode: variant.mode.into(),
            rows_like: variant.mix.label().into(),
            durability,
            relaxed: variant.relaxed,
            dropped,
            rows,
            secs,
            rows_per_s: rows as f64 / secs,
            us_per_row: secs * 1e6 / rows.max(1) as f64,
            baseline_us_per_row: None,
            bench_cpu_s,
            postgres_cpu_s,
        };
        println!(
            "  audit  {:<10} {:<24} {:<22} {:<26} {:<28} {:>6} rows {:>8.0} rows/s {:>6.2} µs/row",
            run.backend,
            run.mode,
            run.rows_like,
            run.durability,
            run.indexes_label(names.len()),
            run.rows,
            run.rows_per_s,
            run.us_per_row
        );
        Ok(run)
    };
    for round in 0..rounds {
        // Baseline, variant, baseline, variant ... baseline; the
        // variants' order turns from round to round, so that none is
        // always first or last.
        let mut order = compared(names.len());
        let turn = round % order.len().max(1);
        order.rotate_left(turn);
        let mut before = run(round, &BASELINE).await?;
        for variant in &order {
            let mut compared = run(round, variant).await?;
            let after = run(round, &BASELINE).await?;
            compared.baseline_us_per_row = Some((before.us_per_row + after.us_per_row) / 2.0);
            runs.push(std::mem::replace(&mut before, after));
            runs.push(compared);
        }
        runs.push(before);
        for variant in &row_by_row_variants() {
            runs.push(run(round, variant).await?);
        }
    }
    Ok(AuditScenario { runs, indexes })
}

/// Rows made, seconds, the durability read back after the run, the
/// bench's and PostgreSQL's CPU seconds.
type Measured = (usize, f64, String, f64, Option<f64>);

async fn measure(
    url: &str,
    variant: &Variant,
    dropped: &[String],
    rows: usize,
) -> anyhow::Result<Measured> {
    let opened = Opened::open(url, variant.relaxed).await?;
    let result = async {
        for name in dropped {
            opened.drop_index(name).await?;
        }
        let store = opened.store();
        let own = std::process::id();
        let database = postgres_database_name(url);
        let pg_cpu = || database.as_deref().and_then(postgres_cpu_seconds);
        let (cpu0, pg0) = (cpu_seconds(own), pg_cpu());
        let (rows, secs) = match variant.mode {
            GROUP_COMMIT => group_commit(store, rows, variant.mix).await?,
            _ => row_by_row(store, rows).await?,
        };
        let cpu = cpu_seconds(own).zip(cpu0).map_or(0.0, |(b, a)| b - a);
        let pg = pg_cpu().zip(pg0).map(|(b, a)| b - a);
        let durability = opened.durability().await?;
        anyhow::Ok((rows, secs, durability, cpu, pg))
    }
    .await;
    opened.close().await;
    result
}

/// A SQLite run's files are removed after it (a full run makes dozens).
fn remove_sqlite(url: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
}
