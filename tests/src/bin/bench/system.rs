//! The system under test: one `mock-agencies --banks N` process (the bank
//! fleet) and `gateway serve` processes with generated configurations, each
//! on a fresh database (an SQLite file, or a new PostgreSQL database dropped
//! afterwards), plus read access to that database for the figures only it
//! holds (audit rows committed, order and inquiry times).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use e2e_tests::{DropDatabase, postgres_database};
use serde_json::json;
use sqlx::Connection;

use crate::procs::{Proc, free_port, wait_http_ok};
use crate::stats::metric_sum;

/// The mock bank fleet in its own process.
pub struct Mocks {
    pub proc: Proc,
    pub base: String,
    pub banks: usize,
    client: reqwest::Client,
}

impl Mocks {
    pub async fn start(
        bin: &Path,
        banks: usize,
        dir: &Path,
        client: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let banks_arg = banks.to_string();
        let mut proc = Proc::spawn(
            "mock-agencies",
            bin,
            &["--banks", &banks_arg, "--listen", &listen],
            &[("RUST_LOG", "warn")],
            dir.join("mock-agencies.log"),
        )?;
        let base = format!("http://{listen}");
        wait_http_ok(
            client,
            &format!("{base}/banks"),
            &mut proc,
            Duration::from_secs(60),
        )
        .await?;
        Ok(Self {
            proc,
            base,
            banks,
            client: client.clone(),
        })
    }

    /// The demo's agencies as `mock-agencies --config FILE` runs them (on
    /// the file's own addresses), with a population of `population`.
    pub async fn start_configured(
        bin: &Path,
        config: &Path,
        population: usize,
        dir: &Path,
        client: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let mocks = mock_agencies::MockConfig::load(config)?;
        let first = mocks
            .agencies
            .first()
            .and_then(|a| a.listen)
            .context("the mock configuration lists no agency with an address")?;
        let config_arg = config.display().to_string();
        let population_arg = population.to_string();
        let mut proc = Proc::spawn(
            "mock-agencies",
            bin,
            &["--config", &config_arg, "--population", &population_arg],
            &[("RUST_LOG", "warn")],
            dir.join("mock-agencies.log"),
        )?;
        let base = format!("http://{first}");
        for agency in &mocks.agencies {
            if let Some(listen) = agency.listen {
                wait_http_ok(
                    client,
                    &format!("http://{listen}/_mock/clock"),
                    &mut proc,
                    Duration::from_secs(60),
                )
                .await?;
            }
        }
        Ok(Self {
            proc,
            base,
            banks: 0,
            client: client.clone(),
        })
    }

    /// Sets the same faults at every bank (`POST /banks/_mock/faults`).
    pub async fn set_faults(&self, change: serde_json::Value) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/banks/_mock/faults", self.base))
            .json(&change)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// No injected latency anywhere.
    pub async fn zero_latency(&self) -> anyhow::Result<()> {
        self.set_faults(json!({"latency_ms": 0, "latency": null}))
            .await
    }

    /// The realistic mode: a log-normal delay per request.
    pub async fn realistic_latency(&self, p50_ms: u64, p99_ms: u64) -> anyhow::Result<()> {
        self.set_faults(json!({"latency_ms": 0, "latency": {"p50_ms": p50_ms, "p99_ms": p99_ms}}))
            .await
    }

    /// The gateway's agency files for banks `numbers` (1-based) of the fleet.
    pub fn write_agency_files(&self, dir: &Path, numbers: &[usize]) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let files = mock_agencies::fleet_agency_files(&self.base, self.banks);
        for n in numbers {
            let (name, text) = files
                .get(n.saturating_sub(1))
                .with_context(|| format!("the fleet has no bank {n}"))?;
            std::fs::write(dir.join(name), text)?;
        }
        Ok(())
    }
}

/// Which database a gateway runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres { server_url: String },
}

impl Backend {
    pub fn label(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres { .. } => "PostgreSQL",
        }
    }

    /// A fresh database for the run `name`: a file in `dir`, or a new
    /// database on the server. Its URL, and on PostgreSQL the guard that
    /// drops the database.
    pub async fn database(
        &self,
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<(String, Option<DropDatabase>)> {
        match self {
            Backend::Sqlite => {
                let file = dir.join(format!("{name}.db"));
                Ok((format!("sqlite://{}", file.display()), None))
            }
            Backend::Postgres { server_url } => {
                let prefix = format!("bench_{}", name.replace('-', "_"));
                let (url, database) = postgres_database(server_url, &prefix)
                    .await
                    .with_context(|| format!("cannot create a database at {server_url}"))?;
                Ok((url, Some(database)))
            }
        }
    }
}

/// Read access to a gateway's database.
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres {
        pool: sqlx::PgPool,
        /// Dropped after the pool is closed.
        database: DropDatabase,
    },
}

/// The database a `postgres://` URL names.
pub fn postgres_database_name(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    matches!(url.scheme(), "postgres" | "postgresql")
        .then(|| url.path().trim_start_matches('/').to_owned())
        .filter(|name| !name.is_empty())
}

/// Reaches the PostgreSQL server, or says why not.
pub async fn postgres_reachable(server_url: &str) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect(server_url),
    )
    .await
    {
        Ok(Ok(c)) => {
            let _ = c.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// `?` placeholders as PostgreSQL numbers them (`$1`, `$2`, ...).
fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// One query, written once with `?` placeholders, run on either backend.
macro_rules! on_db {
    ($db:expr, $query:ident, $fetch:ident, $sql:expr $(, $bind:expr)*) => {
        match $db {
            Db::Sqlite(pool) => sqlx::$query(sqlx::AssertSqlSafe($sql.to_owned()))
                $(.bind($bind))*
                .$fetch(pool)
                .await?,
            Db::Postgres { pool, .. } => sqlx::$query(sqlx::AssertSqlSafe(pg_placeholders($sql)))
                $(.bind($bind))*
                .$fetch(pool)
                .await?,
        }
    };
}

/// Audit rows committed in a time window, by direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditCounts {
    pub rows: i64,
    /// Calls to the gateway's API (each is recorded).
    pub inbound: i64,
    /// Messages the gateway sent to agencies (each recorded before it is
    /// sent): its HTTP exchanges with them.
    pub outbound: i64,
}

impl Db {
    /// Rows of the audit log committed with `at_ms` in `[from, to)`.
    pub async fn audit_rows(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<i64> {
        Ok(self.audit_counts(from_ms, to_ms).await?.rows)
    }

    /// The same, by direction.
    pub async fn audit_counts(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<AuditCounts> {
        let by_direction: Vec<(String, i64)> = on_db!(
            self,
            query_as,
            fetch_all,
            "SELECT direction, COUNT(*) FROM audit_events WHERE at_ms >= ? AND at_ms < ? \
             GROUP BY direction",
            from_ms,
            to_ms
        );
        let mut counts = AuditCounts::default();
        for (direction, n) in by_direction {
            counts.rows += n;
            match direction.as_str() {
                "inbound" => counts.inbound += n,
                "outbound" => counts.outbound += n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// `(status, created_at_ms, decided_at_ms)` of every order created at
    /// or after `since_ms`.
    pub async fn orders_since(
        &self,
        since_ms: i64,
    ) -> anyhow::Result<Vec<(String, i64, Option<i64>)>> {
        Ok(on_db!(
            self,
            query_as,
            fetch_all,
            "SELECT status, created_at_ms, decided_at_ms FROM orders WHERE created_at_ms >= ?",
            since_ms
        ))
    }

    /// Orders created at or after `since_ms` that have an outcome.
    pub async fn orders_decided_since(&self, since_ms: i64) -> anyhow::Result<i64> {
        Ok(on_db!(
            self,
            query_scalar,
            fetch_one,
            "SELECT COUNT(*) FROM orders WHERE created_at_ms >= ? AND decided_at_ms IS NOT NULL",
            since_ms
        ))
    }

    /// `(created_at_ms, completed_at_ms)` of the inquiries created at or
    /// after `since_ms`.
    pub async fn inquiries_since(&self, since_ms: i64) -> anyhow::Result<Vec<(i64, Option<i64>)>> {
        Ok(on_db!(
            self,
            query_as,
            fetch_all,
            "SELECT created_at_ms, completed_at_ms FROM inquiries WHERE created_at_ms >= ?",
            since_ms
        ))
    }

    /// Agency tasks of inquiries created at or after `since_ms`, by state.
    pub async fn task_states_since(&self, since_ms: i64) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(on_db!(
            self,
            query_as,
            fetch_all,
            "SELECT t.state, COUNT(*) FROM agency_tasks t \
             JOIN inquiries i ON i.id = t.inquiry_id \
             WHERE i.created_at_ms >= ? GROUP BY t.state",
            since_ms
        ))
    }

    /// Closes the pool; a PostgreSQL database made for the run is dropped.
    pub async fn close(self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres { pool, database } => {
                pool.close().await;
                drop(database);
            }
        }
    }
}

/// The gateway binary the scenarios run, and the folder its configuration
/// comes from (`gateway.toml`, `dialects/`, the demo audit key): this
/// tree's `config/`, or that of the older tree a `before` binary was built
/// in (its configuration may differ).
#[derive(Debug, Clone)]
pub struct GatewayBinary {
    pub path: PathBuf,
    pub config_dir: PathBuf,
}

/// A gateway process with its configuration and database.
pub struct Gateway {
    pub proc: Proc,
    pub base: String,
    pub db: Db,
    /// The name of its PostgreSQL database, when it runs on one.
    pub postgres_database: Option<String>,
    client: reqwest::Client,
}

/// The settings a scenario gives its gateway.
pub struct GatewaySpec<'a> {
    pub name: &'a str,
    pub banks: &'a [usize],
    pub backend: Backend,
    /// `dispatcher.max_in_flight`; the shipped configuration's when `None`.
    pub max_in_flight: Option<usize>,
    /// Agency files to use as they are (the demo's), instead of files for
    /// `banks` of the fleet.
    pub agencies_dir: Option<PathBuf>,
}

impl Gateway {
    /// Writes the configuration (the repository's `config/gateway.toml`
    /// with its listen address, database, agency files and audit key
    /// replaced) and starts `gateway serve` on it.
    pub async fn start(
        bin: &GatewayBinary,
        mocks: &Mocks,
        spec: GatewaySpec<'_>,
        dir: &Path,
        client: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let database = spec.backend.database(dir, spec.name).await?;
        Self::start_on(bin, Some(mocks), spec, database, dir, client).await
    }

    /// `start`, on a database made (and filled) beforehand, as
    /// `Backend::database` makes them (for SQLite, the file `<name>.db` in
    /// `dir`); without `mocks`, the spec must name its agency files.
    pub async fn start_on(
        bin: &GatewayBinary,
        mocks: Option<&Mocks>,
        spec: GatewaySpec<'_>,
        (database_url, db): (String, Option<DropDatabase>),
        dir: &Path,
        client: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let agencies_dir = match (&spec.agencies_dir, mocks) {
            (Some(given), _) => given.clone(),
            (None, Some(mocks)) => {
                let written = dir.join(format!("agencies-{}", spec.name));
                mocks.write_agency_files(&written, spec.banks)?;
                written
            }
            (None, None) => anyhow::bail!("a gateway without mocks needs its agency files"),
        };
        let port = free_port()?;
        let config_dir = &bin.config_dir;
        let text = std::fs::read_to_string(config_dir.join("gateway.toml"))
            .with_context(|| format!("{}", config_dir.join("gateway.toml").display()))?;
        let mut table: toml::Table = toml::from_str(&text)?;
        table.insert("listen".into(), format!("127.0.0.1:{port}").into());
        table.insert("database_url".into(), database_url.clone().into());
        table.insert(
            "agencies_dir".into(),
            agencies_dir.display().to_string().into(),
        );
        table.insert(
            "dialects_dir".into(),
            config_dir.join("dialects").display().to_string().into(),
        );
        if let Some(toml::Value::Table(audit)) = table.get_mut("audit") {
            let key = config_dir.join("demo-audit-signing-key.hex");
            audit.insert("signing_key_file".into(), key.display().to_string().into());
        }
        if let (Some(n), Some(toml::Value::Table(d))) =
            (spec.max_in_flight, table.get_mut("dispatcher"))
        {
            d.insert("max_in_flight".into(), (n as i64).into());
        }
        let config = dir.join(format!("gateway-{}.toml", spec.name));
        std::fs::write(&config, toml::to_string(&table)?)?;
        let config_arg = config.display().to_string();
        let mut proc = Proc::spawn(
            &format!("gateway ({})", spec.name),
            &bin.path,
            &["serve", "--config", &config_arg],
            &[],
            dir.join(format!("gateway-{}.log", spec.name)),
        )?;
        let base = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            client,
            &format!("{base}/readyz"),
            &mut proc,
            Duration::from_secs(120),
        )
        .await?;
        let db = match db {
            Some(database) => Db::Postgres {
                pool: sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&database_url)
                    .await?,
                database,
            },
            _ => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.join(format!("{}.db", spec.name)))
                    .read_only(true);
                Db::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(2)
                        .connect_with(options)
                        .await?,
                )
            }
        };
        Ok(Self {
            proc,
            base,
            postgres_database: postgres_database_name(&database_url),
            db,
            client: client.clone(),
        })
    }

    /// The gateway's `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Inquiries accepted and completed so far.
    pub async fn inquiry_counts(&self) -> anyhow::Result<(f64, f64)> {
        let text = self.metrics().await?;
        Ok((
            metric_sum(&text, "gateway_inquiries_total", &[("status", "accepted")]),
            metric_sum(&text, "gateway_inquiries_total", &[("status", "completed")]),
        ))
    }

    /// Waits (up to `within`) until every accepted inquiry has completed,
    /// so that one step's work does not spill into the next.
    pub async fn settle(&self, within: Duration) -> anyhow::Result<bool> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let (accepted, completed) = self.inquiry_counts().await?;
            if completed >= accepted {
                return Ok(true);
            }
            if std::time::Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the gateway and closes (or drops) its database.
    pub async fn stop(self) {
        self.proc.stop(Duration::from_secs(10)).await;
        self.db.close().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_of_a_postgres_url() {
        assert_eq!(
            super::postgres_database_name(
                "postgres://postgres@127.0.0.1:5432/bench_b_1?sslmode=disable"
            )
            .as_deref(),
            Some("bench_b_1")
        );
        assert_eq!(super::postgres_database_name("sqlite:///tmp/a.db"), None);
    }

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            super::pg_placeholders("a >= ? AND b < ? OR c = ?"),
            "a >= $1 AND b < $2 OR c = $3"
        );
    }
}
