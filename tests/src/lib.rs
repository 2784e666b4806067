//! The end-to-end harness: the mock agencies and the gateway, both in-process
//! on ephemeral ports, with the repository's own `config/` files (so the
//! examples there cannot rot) and a fresh SQLite file per test.

use std::path::PathBuf;
use std::time::Duration;

use adapters::agency::{AgencyConfig, AgencyKind};
use gateway::Gateway;
use gateway::clock::Clock;
use gateway::config::GatewayConfig;
use mock_agencies::{MockConfig, MockFleet};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const ENFORCEMENT: &str = "demo-enforcement-token";
pub const AUDITOR: &str = "demo-auditor-token";
pub const ADMIN: &str = "demo-admin-token";
pub const CASE: &str = "(2024)甘0503执1234号";
pub const ZHANG_SAN_ID: &str = "360426199101010071";
pub const NOBODY_ID: &str = "620503198812120015";
pub const ORG_CODE: &str = "91110000600037341L";

/// The repository's `config/` folder.
pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

pub fn zhang_san() -> Value {
    json!({"kind": "person", "name": "张三", "id_number": ZHANG_SAN_ID})
}

pub fn nobody() -> Value {
    json!({"kind": "person", "name": "王五", "id_number": NOBODY_ID})
}

pub fn organisation() -> Value {
    json!({"kind": "organization", "name": "示例有限公司", "credit_code": ORG_CODE})
}

pub fn officer() -> Value {
    json!({"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"})
}

pub fn inquiry_body(subject: Value) -> Value {
    json!({"case_number": CASE, "subject": subject, "officers": [officer()]})
}

/// The database a test's gateway runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A fresh SQLite file in the test's folder.
    Sqlite,
    /// A fresh database on the PostgreSQL server `TEST_DATABASE_URL` names.
    Postgres { server_url: String },
}

impl Backend {
    /// PostgreSQL when `TEST_DATABASE_URL` is set.
    pub fn postgres() -> Option<Self> {
        std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .map(|server_url| Backend::Postgres { server_url })
    }

    /// A database URL for one test: a new SQLite file in `dir`, or a new
    /// database created on the PostgreSQL server, with the guard that drops
    /// it.
    async fn database_url(
        &self,
        dir: &std::path::Path,
    ) -> anyhow::Result<(String, Option<DropDatabase>)> {
        match self {
            Backend::Sqlite => Ok((
                format!("sqlite://{}", dir.join("gateway.db").display()),
                None,
            )),
            Backend::Postgres { server_url } => {
                let (url, database) =
                    postgres_database(server_url, "gw_e2e").await.map_err(|e| {
                        anyhow::anyhow!(
                            "TEST_DATABASE_URL is set but PostgreSQL cannot be reached: {e:#}"
                        )
                    })?;
                Ok((url, Some(database)))
            }
        }
    }
}

/// Creates a database `<prefix>_<uuid>` on the PostgreSQL server at
/// `server_url`: its URL, and the guard that drops it.
pub async fn postgres_database(
    server_url: &str,
    prefix: &str,
) -> anyhow::Result<(String, DropDatabase)> {
    use sqlx::Connection;
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let _ = admin.close().await;
    let mut url = url::Url::parse(server_url)?;
    url.set_path(&format!("/{name}"));
    Ok((
        url.to_string(),
        DropDatabase {
            server_url: server_url.to_owned(),
            name,
        },
    ))
}

/// Drops a PostgreSQL database made for a test (or a bench run) when it
/// ends (also when it panicked), best-effort, on a thread of its own: `Drop` cannot await.
/// `WITH (FORCE)` ends the connections of a gateway still running.
#[derive(Debug)]
pub struct DropDatabase {
    server_url: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        use sqlx::Connection;
        let server_url = std::mem::take(&mut self.server_url);
        let name = std::mem::take(&mut self.name);
        let label = name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&server_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the database {label} (best-effort)");
        }
    }
}

/// Runs an async test function `fn(Backend) -> anyhow::Result<()>` once on
/// SQLite and once on PostgreSQL (skipped, with a notice, when
/// `TEST_DATABASE_URL` is not set; CI sets it, which makes it mandatory).
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name($crate::Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() -> anyhow::Result<()> {
                match $crate::Backend::postgres() {
                    Some(backend) => super::$name(backend).await,
                    None => {
                        eprintln!("skipping PostgreSQL: TEST_DATABASE_URL is not set");
                        Ok(())
                    }
                }
            }
        }
    };
}

/// A whole system for one test.
pub struct System {
    pub fleet: MockFleet,
    pub gateway: Option<Gateway>,
    pub client: reqwest::Client,
    pub base: String,
    pub config: GatewayConfig,
    pub dir: tempfile::TempDir,
    /// The gateway's civil date: tests move it to see measures lapse.
    pub clock: Clock,
    /// Drops the PostgreSQL database after everything else.
    _database: Option<DropDatabase>,
}

/// A response: status, JSON body (or `Value::String` of the text), headers.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl System {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_, _| {}).await
    }

    /// Starts with the repository's configuration, changed by `tweak`.
    pub async fn start_with(
        tweak: impl FnOnce(&mut GatewayConfig, &mut Vec<AgencyConfig>),
    ) -> anyhow::Result<Self> {
        Self::start_on(Backend::Sqlite, tweak).await
    }

    /// Starts on `backend` with the repository's configuration, changed by
    /// `tweak`: the first release's agencies (banks and the real-estate
    /// registry; the stories count on them), the agencies of the further
    /// kinds of asset left out of the gateway's set though their mocks run.
    pub async fn start_on(
        backend: Backend,
        tweak: impl FnOnce(&mut GatewayConfig, &mut Vec<AgencyConfig>),
    ) -> anyhow::Result<Self> {
        Self::start_agencies(backend, false, tweak).await
    }

    /// Starts on `backend` with every agency of the repository's
    /// configuration, the further kinds' (vehicle-v, securities-s,
    /// payment-p, fund-f, market-m) too, as the demo runs them.
    pub async fn start_with_every_kind(
        backend: Backend,
        tweak: impl FnOnce(&mut GatewayConfig, &mut Vec<AgencyConfig>),
    ) -> anyhow::Result<Self> {
        Self::start_agencies(backend, true, tweak).await
    }

    async fn start_agencies(
        backend: Backend,
        every_kind: bool,
        tweak: impl FnOnce(&mut GatewayConfig, &mut Vec<AgencyConfig>),
    ) -> anyhow::Result<Self> {
        gateway::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let mocks = MockConfig::load(&config_dir().join("mock-agencies.toml"))?;
        let fleet = MockFleet::start(&mocks, true).await?;
        let mut config = GatewayConfig::load(&config_dir().join("gateway.toml"))?;
        let (database_url, database) = backend.database_url(dir.path()).await?;
        config.database_url = database_url;
        config.dialects_dir = config_dir().join("dialects");
        config.audit.signing_key_file = Some(config_dir().join("demo-audit-signing-key.hex"));
        // Orders move at test speed: results fetched, waiting measures and
        // expiries looked at, and doubts retried within tenths of a second.
        config.orders.poll_interval_ms = 50;
        config.orders.waiting_poll_ms = 100;
        config.orders.retry_ms = 50;
        config.orders.max_retry_ms = 500;
        config.orders.expiry_sweep_ms = 100;
        config.callbacks.retry_ms = 50;
        config.callbacks.max_retry_ms = 200;
        let mut agencies = adapters::agency::load_agencies(&config_dir().join("agencies"))?;
        agencies
            .retain(|a| every_kind || matches!(a.kind, AgencyKind::Bank | AgencyKind::Registry));
        for agency in &mut agencies {
            if let Some(url) = fleet.base_url(&agency.id) {
                agency.base_url = url;
            }
        }
        tweak(&mut config, &mut agencies);
        // The agencies as files of the test's own: a test may add or break
        // one and reload, as an onboarding engineer would.
        config.agencies_dir = dir.path().join("agencies");
        std::fs::create_dir_all(&config.agencies_dir)?;
        for agency in &agencies {
            write_agency_file(&config.agencies_dir, agency)?;
        }
        let mut system = Self {
            fleet,
            gateway: None,
            client: reqwest::Client::new(),
            base: String::new(),
            config,
            dir,
            clock: Clock::default(),
            _database: database,
        };
        system.start_gateway().await?;
        Ok(system)
    }

    /// (Re)starts the gateway on the same database.
    pub async fn start_gateway(&mut self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let gateway =
            Gateway::start_with_clock(self.config.clone(), listener, self.clock.clone()).await?;
        self.base = gateway.base_url();
        self.gateway = Some(gateway);
        Ok(())
    }

    /// Another gateway instance on the same database and agencies (as a
    /// second server in production), and its base URL.
    pub async fn start_another_gateway(&self) -> anyhow::Result<(Gateway, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let gateway =
            Gateway::start_with_clock(self.config.clone(), listener, self.clock.clone()).await?;
        let base = gateway.base_url();
        Ok((gateway, base))
    }

    pub async fn stop_gateway(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
    }

    /// A second connection to the gateway's database, for tests that break
    /// or inspect it behind the gateway's back.
    pub async fn open_database(&self) -> anyhow::Result<sqlx::SqlitePool> {
        let options: sqlx::sqlite::SqliteConnectOptions = self.config.database_url.parse()?;
        Ok(sqlx::SqlitePool::connect_with(options).await?)
    }

    /// Runs one SQL statement on the gateway's database behind its back
    /// (to break or tamper with it), whichever the backend.
    pub async fn sql(&self, statement: &str) -> anyhow::Result<u64> {
        use sqlx::Connection;
        let url = &self.config.database_url;
        let sql = sqlx::AssertSqlSafe(statement.to_owned());
        if url.starts_with("sqlite:") {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
        }
    }

    /// The folder of this test's agency files.
    pub fn agencies_dir(&self) -> PathBuf {
        self.config.agencies_dir.clone()
    }

    /// Writes (or overwrites) an agency's file, as `<id>.toml`. Takes
    /// effect on the next reload.
    pub fn write_agency(&self, agency: &AgencyConfig) -> anyhow::Result<PathBuf> {
        write_agency_file(&self.config.agencies_dir, agency)
    }

    /// Writes a file of any text into the agencies folder (e.g. a broken one).
    pub fn write_agency_text(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.config.agencies_dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Removes an agency's file. Takes effect on the next reload.
    pub fn remove_agency(&self, id: &str) -> anyhow::Result<()> {
        std::fs::remove_file(self.config.agencies_dir.join(format!("{id}.toml")))?;
        Ok(())
    }

    /// One of this test's agency files, as the gateway would read it.
    pub fn agency(&self, id: &str) -> anyhow::Result<AgencyConfig> {
        let path = self.config.agencies_dir.join(format!("{id}.toml"));
        let text = std::fs::read_to_string(&path)?;
        adapters::agency::parse_agency(&path, &text)
            .map_err(|e| anyhow::anyhow!("{}", adapters::agency::ConfigErrors(e)))
    }

    /// `POST /v1/admin/reload` as the admin.
    pub async fn reload(&self) -> anyhow::Result<Reply> {
        self.call(Method::POST, "/v1/admin/reload", Some(ADMIN), None)
            .await
    }

    pub fn mock_url(&self, agency: &str) -> String {
        self.fleet
            .base_url(agency)
            .expect("a mock agency of that id")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Reply> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply {
            status,
            body,
            headers,
        })
    }

    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Reply> {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<Reply> {
        self.call(
            Method::POST,
            path,
            Some(token),
            Some(serde_json::to_vec(body)?),
        )
        .await
    }

    pub async fn inquire(&self, subject: Value, wait: u64) -> anyhow::Result<Reply> {
        self.post_json(
            &format!("/v1/inquiries?wait={wait}"),
            ENFORCEMENT,
            &inquiry_body(subject),
        )
        .await
    }

    /// Reads an inquiry until `done` holds, or fails after `limit`.
    pub async fn wait_for_inquiry(
        &self,
        id: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let reply = self
                .get(&format!("/v1/inquiries/{id}"), ENFORCEMENT)
                .await?;
            if done(&reply.body) {
                return Ok(reply.body);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "inquiry {id} did not reach the state in {limit:?}: {}",
                    reply.body
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST /v1/orders` with an `Idempotency-Key`.
    pub async fn order(&self, key: &str, body: &Value) -> anyhow::Result<Reply> {
        self.keyed_post("/v1/orders", key, body).await
    }

    /// A POST with an `Idempotency-Key`, as the enforcement system.
    pub async fn keyed_post(&self, path: &str, key: &str, body: &Value) -> anyhow::Result<Reply> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(ENFORCEMENT)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply {
            status,
            body,
            headers,
        })
    }

    /// Reads a resource (`/v1/orders/{id}`, `/v1/freeze-plans/{id}`) until
    /// `done` holds, or fails after `limit`.
    pub async fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let reply = self.get(path, ENFORCEMENT).await?;
            if done(&reply.body) {
                return Ok(reply.body);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "{path} did not reach the state in {limit:?}: {}",
                    reply.body
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until an order's status is one of `statuses`.
    pub async fn wait_for_order(&self, id: &str, statuses: &[&str]) -> anyhow::Result<Value> {
        self.wait_for(&format!("/v1/orders/{id}"), Duration::from_secs(15), |o| {
            statuses.iter().any(|s| o["status"] == *s)
        })
        .await
    }

    /// A mock agency's ledger (`GET /_mock/ledger`).
    pub async fn ledger(&self, agency: &str) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!("{}/_mock/ledger", self.mock_url(agency)))
            .send()
            .await?
            .json()
            .await?)
    }

    /// POSTs to a mock agency's inspection API (`/_mock/clock`, `/_mock/lift`).
    pub async fn mock_post(&self, agency: &str, path: &str, body: &Value) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{}{path}", self.mock_url(agency)))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "{path} refused: {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Sets a mock agency's fault mode.
    pub async fn fault(&self, agency: &str, faults: Value) -> anyhow::Result<()> {
        let status = self
            .client
            .post(format!("{}/_mock/faults", self.mock_url(agency)))
            .json(&faults)
            .send()
            .await?
            .status();
        anyhow::ensure!(status.is_success(), "faults refused: {status}");
        Ok(())
    }

    /// `GET /metrics` (no auth), as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "{}", response.status());
        Ok(response.text().await?)
    }

    /// Scrapes `/metrics` until `done` holds of the text, or fails after
    /// `limit` with the last text.
    pub async fn wait_for_metrics(
        &self,
        limit: Duration,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let text = self.metrics().await?;
            if done(&text) {
                return Ok(text);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("the metrics did not get there in {limit:?}:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every audit event matching the query, following cursors.
    pub async fn audit(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/audit/events?limit=1000&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let reply = self.get(&path, AUDITOR).await?;
            anyhow::ensure!(
                reply.status == StatusCode::OK,
                "audit query: {}",
                reply.body
            );
            events.extend(reply.body["events"].as_array().cloned().unwrap_or_default());
            match reply.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(events),
            }
        }
    }
}

/// Writes an agency's configuration as `<dir>/<id>.toml`.
pub fn write_agency_file(dir: &std::path::Path, agency: &AgencyConfig) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{}.toml", agency.id));
    std::fs::write(&path, toml::to_string(agency)?)?;
    Ok(path)
}

/// The assets of one kind in an inquiry.
pub fn assets<'a>(inquiry: &'a Value, kind: &str) -> Vec<&'a Value> {
    inquiry["assets"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["kind"] == kind).collect())
        .unwrap_or_default()
}

/// One agency's whole line (status, detail, ...) in an inquiry.
pub fn agency_line<'a>(inquiry: &'a Value, agency: &str) -> &'a Value {
    inquiry["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agency"] == agency))
        .unwrap_or(&Value::Null)
}

/// The value of one series in metrics text, e.g.
/// `metric(&text, r#"gateway_inquiries_current{status="running"}"#)`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// One agency's status line in an inquiry.
pub fn agency_status<'a>(inquiry: &'a Value, agency: &str) -> &'a Value {
    inquiry["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agency"] == agency))
        .map(|x| &x["status"])
        .unwrap_or(&Value::Null)
}

/// Today's day of the week in UTC+8 (the agencies' civil time), and the
/// days after it, from the system clock.
pub fn china_days_from_today() -> Vec<adapters::agency::Day> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = (secs + 8 * 3600) / 86_400;
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let today = ((days + 3) % 7) as usize;
    (0..7)
        .map(|i| adapters::agency::Day::ALL[(today + i) % 7])
        .collect()
}

/// Percent-encodes a query value (case numbers are Chinese text).
pub fn q(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Checks a mock agency's receipts of one control request number: its
/// control message arrived exactly once (`controls[].received_count`, and
/// the request log's `control` entry, `requests[].count`). This, not
/// `applied_count`, shows that the gateway sent it once: a mock applies a
/// request number once however often it arrives, so its `applied_count` is
/// 1 whatever the gateway does.
pub fn received_once(ledger: &Value, request_number: &str) -> anyhow::Result<()> {
    let controls: Vec<&Value> = ledger["controls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["request_number"] == request_number)
        .collect();
    anyhow::ensure!(
        matches!(controls.as_slice(), [c] if c["received_count"] == 1),
        "{request_number}: the agency's controls show {controls:?} (want one, received once)"
    );
    let logged: Vec<&Value> = ledger["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["request_number"] == request_number && r["kind"] == "control")
        .collect();
    anyhow::ensure!(
        matches!(logged.as_slice(), [r] if r["count"] == 1),
        "{request_number}: the agency's request log shows {logged:?} (want one control, once)"
    );
    Ok(())
}
