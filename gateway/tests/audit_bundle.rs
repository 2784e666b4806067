//! Evidence bundles as an auditor exports them and a court checks them:
//! a real gateway over real HTTP (port 0) with the mock agencies in this
//! process, on a SQLite file and, when `TEST_DATABASE_URL` names a server
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`), on a fresh PostgreSQL
//! database; `GET /v1/audit/bundle` after a real inquiry and a freeze, and
//! the real `gateway audit verify-bundle` binary on the file it answers.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use gateway::config::GatewayConfig;
use mock_agencies::{MockConfig, MockFleet};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ENFORCEMENT: &str = "demo-enforcement-token";
const AUDITOR: &str = "demo-auditor-token";
const CASE: &str = "(2024)甘0503执1234号";
const OTHER_CASE: &str = "(2024)甘0503执1235号";
const ZHANG_SAN_ID: &str = "360426199101010071";
const WANG_WU_ID: &str = "620503198812120015";
/// 张三 at bank-a: 125,000.00 available.
const ZHANG_SAN_DEBIT: &str = "6222020200112233445";

fn repo_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

// ---------------------------------------------------------------------------
// Databases

#[derive(Debug, Clone)]
enum Backend {
    Sqlite,
    Postgres(String),
}

/// A PostgreSQL database made for one test, dropped (best-effort, on a
/// thread of its own: `Drop` cannot await) when the test ends.
struct PgDatabase {
    server: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
                    .await
                    .ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                sqlx::Connection::close(admin).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop a test database (best-effort)");
        }
    }
}

/// The server URL with its database replaced by `name` (query kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn database_url(
    backend: &Backend,
    dir: &Path,
) -> anyhow::Result<(String, Option<PgDatabase>)> {
    match backend {
        Backend::Sqlite => Ok((
            format!("sqlite://{}", dir.join("gateway.db").display()),
            None,
        )),
        Backend::Postgres(server) => {
            let name = format!("gw_bundle_{}", uuid::Uuid::now_v7().simple());
            let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(server).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await?;
            let _ = sqlx::Connection::close(admin).await;
            Ok((
                with_database(server, &name),
                Some(PgDatabase {
                    server: server.clone(),
                    name,
                }),
            ))
        }
    }
}

/// Each story becomes `<name>::sqlite` and `<name>::postgres` (skipped,
/// with a notice, when `TEST_DATABASE_URL` is not set).
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name(super::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                match std::env::var("TEST_DATABASE_URL") {
                    Ok(url) if !url.trim().is_empty() => {
                        super::$name(super::Backend::Postgres(url)).await
                    }
                    _ => {
                        eprintln!("skipping PostgreSQL: TEST_DATABASE_URL is not set");
                        Ok(())
                    }
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------
// The system

/// The mock agencies and a gateway in this process.
struct System {
    _fleet: MockFleet,
    gateway: Option<gateway::Gateway>,
    base: String,
    client: reqwest::Client,
    config: GatewayConfig,
    dir: tempfile::TempDir,
    _database: Option<PgDatabase>,
}

impl System {
    /// Starts with the repository's configuration, a checkpoint signed
    /// after every batch of rows, changed by `tweak`.
    async fn start(
        backend: Backend,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> anyhow::Result<Self> {
        gateway::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let mocks = MockConfig::load(&repo_config().join("mock-agencies.toml"))?;
        let fleet = MockFleet::start(&mocks, true).await?;
        let mut config = GatewayConfig::load(&repo_config().join("gateway.toml"))?;
        let (url, database) = database_url(&backend, dir.path()).await?;
        config.database_url = url;
        config.agencies_dir = repo_config().join("agencies");
        config.dialects_dir = repo_config().join("dialects");
        config.audit.signing_key_file = Some(repo_config().join("demo-audit-signing-key.hex"));
        config.audit.checkpoint_every_rows = 1;
        config.orders.poll_interval_ms = 50;
        config.orders.retry_ms = 50;
        config.orders.max_retry_ms = 500;
        for (id, _) in fleet.agencies() {
            if let Some(url) = fleet.base_url(&id) {
                config.agency_base_urls.insert(id, url);
            }
        }
        tweak(&mut config);
        let mut system = Self {
            _fleet: fleet,
            gateway: None,
            base: String::new(),
            client: reqwest::Client::new(),
            config,
            dir,
            _database: database,
        };
        system.start_gateway().await?;
        Ok(system)
    }

    async fn start_gateway(&mut self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let gateway = gateway::Gateway::start(self.config.clone(), listener).await?;
        self.base = gateway.base_url();
        self.gateway = Some(gateway);
        Ok(())
    }

    /// Stops the gateway, changes its configuration, starts it again on
    /// the same database.
    async fn restart(&mut self, tweak: impl FnOnce(&mut GatewayConfig)) -> anyhow::Result<()> {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
        tweak(&mut self.config);
        self.start_gateway().await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)], token: &str) -> anyhow::Result<Reply> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?.to_vec();
        Ok(Reply {
            status,
            headers,
            bytes,
        })
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(ENFORCEMENT)
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }

    /// An inquiry about a person under a case, waited for.
    async fn inquire(&self, case: &str, name: &str, id_number: &str) -> anyhow::Result<Value> {
        self.post(
            "/v1/inquiries?wait=15",
            None,
            &json!({
                "case_number": case,
                "subject": {"kind": "person", "name": name, "id_number": id_number},
                "officers": [officer()],
            }),
        )
        .await
    }

    /// A freeze of 1.00 on 张三's account at bank-a under `CASE`, waited
    /// for until the bank applied it.
    async fn freeze(&self) -> anyhow::Result<Value> {
        let end =
            (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive() + chrono::Days::new(180);
        let order = self
            .post(
                "/v1/orders",
                Some("bundle-freeze-1"),
                &json!({
                    "case_number": CASE,
                    "subject": {"kind": "person", "name": "张三", "id_number": ZHANG_SAN_ID},
                    "officers": [officer(), {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"}],
                    "action": "freeze",
                    "agency": "bank-a",
                    "asset": {"account_number": ZHANG_SAN_DEBIT},
                    "amount_fen": 100,
                    "end_date": end.to_string(),
                    "documents": [
                        {"kind": "ruling", "number": "(2024)甘0503执1234号之一",
                         "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
                        {"kind": "assist_notice", "number": "协冻-1",
                         "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
                    ],
                }),
            )
            .await?;
        let id = order["id"].as_str().unwrap_or_default().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let response = self
                .client
                .get(format!("{}/v1/orders/{id}", self.base))
                .bearer_auth(ENFORCEMENT)
                .send()
                .await?;
            let order: Value = response.json().await?;
            if order["status"] == "applied" {
                return Ok(order);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the freeze was not applied: {order}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every row of the log `query` finds, as the events API shows them.
    async fn events(&self, query: &[(&str, &str)]) -> anyhow::Result<Vec<Value>> {
        let mut query = query.to_vec();
        query.push(("limit", "1000"));
        let reply = self.get("/v1/audit/events", &query, AUDITOR).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.text());
        Ok(reply.json()?["events"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until a signed checkpoint covers every row `query` finds.
    async fn signed(&self, query: &[(&str, &str)]) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let last = self
                .events(query)
                .await?
                .iter()
                .filter_map(|e| e["seq"].as_i64())
                .max()
                .unwrap_or(0);
            let report = self.get("/v1/audit/verify", &[], AUDITOR).await?.json()?;
            anyhow::ensure!(report["ok"] == true, "{report}");
            if report["signed_through_seq"].as_i64().unwrap_or(0) >= last {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no checkpoint covers row {last}: {report}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Exports a bundle into a file of the test's folder.
    async fn export(&self, query: &[(&str, &str)], name: &str) -> anyhow::Result<PathBuf> {
        let reply = self.get("/v1/audit/bundle", query, AUDITOR).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.text());
        let path = self.dir.path().join(name);
        std::fs::write(&path, &reply.bytes)?;
        Ok(path)
    }

    /// The public key checkpoints verify with, in hex.
    fn public_key(&self) -> anyhow::Result<String> {
        let key = self
            .config
            .audit
            .verifying_key()
            .map_err(anyhow::Error::msg)?
            .ok_or_else(|| anyhow::anyhow!("no key"))?;
        Ok(hex::encode(key.to_bytes()))
    }
}

fn officer() -> Value {
    json!({"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"})
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn json(&self) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.bytes)?)
    }
}

/// Runs `gateway audit verify-bundle FILE` with `args` after it.
async fn verify_bundle(file: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["audit", "verify-bundle"])
        .arg(file)
        .args(args)
        .env_remove("GATEWAY_LOG_JSON")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output()
        .await?)
}

fn outputs(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &Path) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

/// A copy of the bundle at `path`, changed by `change`, in a file of its own.
fn altered(path: &Path, name: &str, change: impl FnOnce(&mut Value)) -> anyhow::Result<PathBuf> {
    let mut bundle = read(path)?;
    change(&mut bundle);
    let out = path.with_file_name(name);
    std::fs::write(&out, serde_json::to_vec_pretty(&bundle)?)?;
    Ok(out)
}

fn rows(bundle: &Value) -> Vec<Value> {
    bundle["rows"].as_array().cloned().unwrap_or_default()
}

/// The traffic of the stories: 张三 asked about under two cases, 王五
/// under `CASE`, and a freeze of 张三's account under `CASE`.
async fn traffic(sys: &System) -> anyhow::Result<()> {
    sys.inquire(CASE, "张三", ZHANG_SAN_ID).await?;
    sys.inquire(OTHER_CASE, "张三", ZHANG_SAN_ID).await?;
    sys.inquire(CASE, "王五", WANG_WU_ID).await?;
    sys.freeze().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The stories

async fn a_case_bundle_verifies_offline(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start(backend, |_| {}).await?;
    traffic(&sys).await?;
    sys.signed(&[("case_number", CASE)]).await?;

    let reply = sys
        .get("/v1/audit/bundle", &[("case_number", CASE)], AUDITOR)
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("application/json"));
    let disposition = header("content-disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"audit-bundle-case-")
            && disposition.ends_with(".json\""),
        "{disposition}"
    );
    let bundle = reply.json()?;
    assert_eq!(bundle["format"], "court-gateway-audit-bundle");
    assert_eq!(bundle["version"], 1);
    assert_eq!(
        bundle["filter"],
        json!({"case_number": CASE, "subject": null})
    );
    assert_eq!(bundle["exported_by"], "demo-auditor");
    assert_eq!(bundle["public_key"], sys.public_key()?);

    // Every row of the case, as the events API lists them, and no other.
    let listed: Vec<i64> = sys
        .events(&[("case_number", CASE)])
        .await?
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .filter(|&seq| seq <= bundle["head"]["seq"].as_i64().unwrap_or(0))
        .collect();
    let rows = rows(&bundle);
    let held: Vec<i64> = rows.iter().filter_map(|r| r["seq"].as_i64()).collect();
    assert_eq!(held, listed);
    assert!(rows.iter().all(|r| r["case_number"] == CASE));
    for action in ["inquiry.create", "order.create"] {
        assert!(rows.iter().any(|r| r["action"] == action), "no {action}");
    }
    for direction in ["inbound", "outbound", "reply"] {
        assert!(
            rows.iter().any(|r| r["direction"] == direction),
            "no {direction} row"
        );
    }
    // Bodies as the exact bytes their digests name.
    let with_body: Vec<&Value> = rows
        .iter()
        .filter(|r| r["body_base64"].is_string())
        .collect();
    assert!(!with_body.is_empty());
    for r in with_body {
        let body = base64::engine::general_purpose::STANDARD
            .decode(r["body_base64"].as_str().unwrap_or_default())?;
        assert_eq!(
            r["body_sha256"].as_str(),
            Some(
                gateway::audit::lower_hex(&<sha2::Sha256 as sha2::Digest>::digest(&body)).as_str()
            )
        );
    }
    assert_eq!(
        bundle["summary"]["unsigned_rows"], 0,
        "{}",
        bundle["summary"]
    );
    assert!(rows.iter().all(|r| r["proof"]["signed"] == true));

    // The court checks it offline, with the key in the file, then pinned.
    let path = sys.dir.path().join("case.json");
    std::fs::write(&path, &reply.bytes)?;
    let out = verify_bundle(&path, &[]).await?;
    let text = outputs(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("not pinned"), "{text}");
    assert!(
        text.contains("every row is proven up to a signed checkpoint"),
        "{text}"
    );
    assert!(!text.contains(ZHANG_SAN_ID), "{text}");
    let out = verify_bundle(&path, &["--public-key", &sys.public_key()?]).await?;
    let text = outputs(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("(pinned with --public-key)"), "{text}");
    // Another key pinned: the bundle is not the court's.
    let other = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[5; 32])
            .verifying_key()
            .to_bytes(),
    );
    let out = verify_bundle(&path, &["--public-key", &other]).await?;
    let text = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("key mismatch"), "{text}");

    // The export is recorded, as every audit read is.
    let recorded = sys.events(&[("action", "audit.bundle")]).await?;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["caller"], "demo-auditor");
    assert_eq!(recorded[0]["status"], "ok");
    Ok(())
}

async fn one_altered_row_is_named(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start(backend, |_| {}).await?;
    traffic(&sys).await?;
    sys.signed(&[("case_number", CASE)]).await?;
    let path = sys.export(&[("case_number", CASE)], "case.json").await?;
    let bundle = read(&path)?;
    let rows = rows(&bundle);
    assert!(rows.len() >= 6, "{}", bundle["summary"]);

    // A field of one row: its status, then (another row) its action.
    let middle = rows.len() / 2;
    for (i, field, value) in [(middle, "status", "refused"), (1, "action", "inquiry.get")] {
        let seq = rows[i]["seq"].as_i64().unwrap_or_default();
        let file = altered(&path, &format!("{field}.json"), |b| {
            b["rows"][i][field] = json!(value);
        })?;
        let out = verify_bundle(&file, &[]).await?;
        let text = outputs(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains(&format!("FAILED at row {seq}: field altered")),
            "{field}: {text}"
        );
    }

    // One byte of one body.
    let (i, body) = rows
        .iter()
        .enumerate()
        .find_map(|(i, r)| Some((i, r["body_base64"].as_str()?.to_owned())))
        .ok_or_else(|| anyhow::anyhow!("no row with a body"))?;
    let seq = rows[i]["seq"].as_i64().unwrap_or_default();
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(body)?;
    bytes[0] ^= 0x01;
    let file = altered(&path, "body.json", |b| {
        b["rows"][i]["body_base64"] = json!(engine.encode(&bytes));
    })?;
    let out = verify_bundle(&file, &[]).await?;
    let text = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("FAILED at row {seq}: body altered")),
        "{text}"
    );

    // A checkpoint's signature.
    let checkpoint = bundle["checkpoints"][0]["seq"].as_i64().unwrap_or_default();
    let file = altered(&path, "signature.json", |b| {
        let signature = b["checkpoints"][0]["signature"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let flipped = if signature.starts_with('0') { "1" } else { "0" };
        b["checkpoints"][0]["signature"] = json!(format!("{flipped}{}", &signature[1..]));
    })?;
    let out = verify_bundle(&file, &[]).await?;
    let text = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("FAILED at row {checkpoint}: signature bad")),
        "{text}"
    );

    // The file as exported still verifies.
    let out = verify_bundle(&path, &[]).await?;
    assert_eq!(out.status.code(), Some(0), "{}", outputs(&out));
    Ok(())
}

async fn a_subject_bundle_holds_every_case_about_the_subject_and_no_other_subject(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start(backend, |_| {}).await?;
    traffic(&sys).await?;
    sys.signed(&[("subject", ZHANG_SAN_ID)]).await?;
    let path = sys
        .export(&[("subject", ZHANG_SAN_ID)], "subject.json")
        .await?;
    let bundle = read(&path)?;
    assert_eq!(bundle["filter"]["subject"], ZHANG_SAN_ID);
    let rows = rows(&bundle);
    assert!(rows.iter().all(|r| r["subject"] == ZHANG_SAN_ID));
    let cases: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r["case_number"].as_str())
        .collect();
    assert_eq!(
        cases,
        [CASE, OTHER_CASE].into_iter().collect(),
        "both of 张三's cases"
    );
    // Every row about 张三 the events API lists, and no row about 王五
    // (who shares a case with 张三) among the rows.
    let listed = sys.events(&[("subject", ZHANG_SAN_ID)]).await?;
    assert_eq!(rows.len(), listed.len());
    assert!(!rows.iter().any(|r| r["subject"] == WANG_WU_ID));
    assert!(
        !sys.events(&[("subject", WANG_WU_ID)]).await?.is_empty(),
        "王五 was asked about"
    );
    // The identity number is not in the file's name.
    let reply = sys
        .get("/v1/audit/bundle", &[("subject", ZHANG_SAN_ID)], AUDITOR)
        .await?;
    let disposition = reply
        .headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        disposition.contains("audit-bundle-subject-"),
        "{disposition}"
    );
    assert!(!disposition.contains(ZHANG_SAN_ID), "{disposition}");

    let out = verify_bundle(&path, &["--public-key", &sys.public_key()?]).await?;
    let text = outputs(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The subject is printed masked.
    assert!(text.contains("subject 3604************71"), "{text}");
    assert!(!text.contains(ZHANG_SAN_ID), "{text}");
    Ok(())
}

async fn rows_no_checkpoint_signs_yet_are_reported_unsigned(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut sys = System::start(backend, |_| {}).await?;
    sys.inquire(CASE, "张三", ZHANG_SAN_ID).await?;
    sys.signed(&[("case_number", CASE)]).await?;
    // From now on no checkpoint is signed: the next rows are newer than
    // the last checkpoint.
    sys.restart(|config| {
        config.audit.checkpoint_every_rows = 1_000_000;
        config.audit.checkpoint_every_secs = 1_000_000;
    })
    .await?;
    let before = sys.events(&[("case_number", CASE)]).await?.len();
    sys.inquire(CASE, "王五", WANG_WU_ID).await?;
    let path = sys
        .export(&[("case_number", CASE)], "unsigned.json")
        .await?;
    let bundle = read(&path)?;
    let rows = rows(&bundle);
    let unsigned: Vec<i64> = rows
        .iter()
        .filter(|r| r["proof"]["signed"] == false)
        .filter_map(|r| r["seq"].as_i64())
        .collect();
    assert_eq!(
        rows.len() - unsigned.len(),
        before,
        "the rows before are signed"
    );
    assert!(!unsigned.is_empty());
    let head = bundle["head"]["seq"].as_i64().unwrap_or_default();
    assert!(
        rows.iter()
            .filter(|r| r["proof"]["signed"] == false)
            .all(|r| r["proof"]["through_seq"] == head)
    );
    assert_eq!(bundle["summary"]["unsigned_rows"], unsigned.len());

    let out = verify_bundle(&path, &[]).await?;
    let text = outputs(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    let mut listed: Vec<String> = unsigned.iter().take(20).map(i64::to_string).collect();
    if unsigned.len() > 20 {
        listed.push(format!("... ({} in all)", unsigned.len()));
    }
    assert!(
        text.contains(&format!(
            "UNSIGNED: row(s) {} are proven only up to the chain's head (row {head})",
            listed.join(", ")
        )),
        "{text}"
    );
    Ok(())
}

async fn bad_requests_are_refused_with_4xx(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start(backend, |config| config.audit.bundle_max_rows = 3).await?;
    sys.inquire(CASE, "张三", ZHANG_SAN_ID).await?;
    let long = "案".repeat(65);
    for (query, status, code) in [
        (vec![], StatusCode::BAD_REQUEST, "invalid_query"),
        (
            vec![("case_number", CASE), ("subject", ZHANG_SAN_ID)],
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            vec![("case_number", CASE), ("limit", "5")],
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            vec![("case_number", long.as_str())],
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
        ),
        (
            vec![("case_number", CASE)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_rows",
        ),
    ] {
        let reply = sys.get("/v1/audit/bundle", &query, AUDITOR).await?;
        assert_eq!(reply.status, status, "{query:?}: {}", reply.text());
        let body = reply.json()?;
        assert_eq!(body["error"]["code"], code, "{query:?}: {body}");
        if code == "too_many_rows" {
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("more than 3 rows") && message.contains("audit.bundle_max_rows"),
                "{message}"
            );
        }
    }
    // Refused, and recorded so.
    let refused = sys.events(&[("action", "audit.bundle")]).await?;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["status"], "too_many_rows");
    // Auditors only.
    let reply = sys
        .get("/v1/audit/bundle", &[("case_number", CASE)], ENFORCEMENT)
        .await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // A case nobody asked about: an empty bundle, which verifies.
    let path = sys
        .export(&[("case_number", "(2024)甘0503执9999号")], "empty.json")
        .await?;
    assert_eq!(read(&path)?["rows"], json!([]));
    let out = verify_bundle(&path, &[]).await?;
    assert_eq!(out.status.code(), Some(0), "{}", outputs(&out));
    // A file that is not a bundle.
    let junk = sys.dir.path().join("junk.json");
    std::fs::write(&junk, b"{\"format\": 1}")?;
    let out = verify_bundle(&junk, &[]).await?;
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    Ok(())
}

on_both_backends!(a_case_bundle_verifies_offline);
on_both_backends!(one_altered_row_is_named);
on_both_backends!(a_subject_bundle_holds_every_case_about_the_subject_and_no_other_subject);
on_both_backends!(rows_no_checkpoint_signs_yet_are_reported_unsigned);
on_both_backends!(bad_requests_are_refused_with_4xx);
