//! Exactly-once delivery of control orders through a crash: the real
//! `gateway` binary takes 200 freeze orders, is killed with SIGKILL while
//! they are in flight, and is started again on the same database.
//!
//! The proof is the banks' receipts, not what they applied (a mock applies
//! a request number once however often it arrives, so its `applied_count`
//! is 1 whatever the gateway does): every order's control message arrived
//! at its bank exactly once (`received_count`, and the request log's
//! `control` entry), and every order in doubt at the kill (marked `query`
//! in the database: its message may have left) was asked about by the
//! restarted gateway (a `control_query` in the bank's request log), before
//! the restarted gateway sent it where the bank had not got it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mock_agencies::{MockConfig, MockFleet};
use serde_json::{Value, json};

const ENFORCEMENT: &str = "demo-enforcement-token";
const CASE: &str = "(2024)甘0503执1234号";
const ORDERS: usize = 200;
const AMOUNT_FEN: i64 = 100;

fn repo_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// gateway.toml and agency files for bank-a and bank-b at the mocks, with
/// short timeouts and leases so that the restarted gateway takes over the
/// killed one's orders within seconds.
fn write_config(dir: &Path, fleet: &MockFleet, listen: &str) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(repo_config().join("gateway.toml"))?;
    let mut table: toml::Table = toml::from_str(&text)?;
    let db = format!("sqlite://{}", dir.join("gateway.db").display());
    table.insert("database_url".into(), db.into());
    table.insert("listen".into(), listen.into());
    let agencies = dir.join("agencies");
    // bank-b's API key is a file beside its agency file.
    std::fs::create_dir_all(agencies.join("secrets"))?;
    for entry in std::fs::read_dir(repo_config().join("agencies/secrets"))? {
        let entry = entry?;
        std::fs::copy(
            entry.path(),
            agencies.join("secrets").join(entry.file_name()),
        )?;
    }
    for id in ["bank-a", "bank-b"] {
        let text = std::fs::read_to_string(repo_config().join(format!("agencies/{id}.toml")))?;
        let mut agency: toml::Table = toml::from_str(&text)?;
        let url = fleet
            .base_url(id)
            .ok_or_else(|| anyhow::anyhow!("no mock {id}"))?;
        agency.insert("base_url".into(), url.into());
        if let Some(toml::Value::Table(limits)) = agency.get_mut("limits") {
            limits.insert("timeout_ms".into(), 1000.into());
            // Few at a time, so that most orders are still queued or in
            // flight when the gateway is killed.
            limits.insert("max_concurrency".into(), 4.into());
        }
        std::fs::write(
            agencies.join(format!("{id}.toml")),
            toml::to_string(&agency)?,
        )?;
    }
    table.insert("agencies_dir".into(), agencies.display().to_string().into());
    table.insert(
        "dialects_dir".into(),
        repo_config().join("dialects").display().to_string().into(),
    );
    if let Some(toml::Value::Table(audit)) = table.get_mut("audit") {
        let key = repo_config().join("demo-audit-signing-key.hex");
        audit.insert("signing_key_file".into(), key.display().to_string().into());
    }
    let mut dispatcher = toml::Table::new();
    dispatcher.insert("lease_grace_secs".into(), 1.into());
    table.insert("dispatcher".into(), dispatcher.into());
    let mut orders = toml::Table::new();
    orders.insert("retry_ms".into(), 50.into());
    orders.insert("max_retry_ms".into(), 500.into());
    orders.insert("poll_interval_ms".into(), 50.into());
    table.insert("orders".into(), orders.into());
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml::to_string(&table)?)?;
    Ok(path)
}

/// Starts `gateway serve`, its log going to `log`.
fn spawn(config: &Path, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    Ok(Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("GATEWAY_LOG_JSON")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// The gateway's database, read-only.
async fn open(db: &Path) -> anyhow::Result<sqlx::SqlitePool> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    Ok(sqlx::SqlitePool::connect_with(options).await?)
}

/// Orders whose message may have reached a bank but whose answer was not
/// stored: the ones the restarted gateway must ask about before anything.
/// Their request numbers, sorted, with how often each was sent so far.
async fn in_doubt(db: &Path) -> anyhow::Result<Vec<(String, i64)>> {
    let pool = open(db).await?;
    let found = sqlx::query_as(
        "SELECT request_number, send_attempts FROM orders WHERE phase = 'query' \
         ORDER BY request_number",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    Ok(found)
}

/// How often the gateway sent each order, by its own record.
async fn send_attempts(db: &Path) -> anyhow::Result<HashMap<String, i64>> {
    let pool = open(db).await?;
    let found: Vec<(String, i64)> =
        sqlx::query_as("SELECT request_number, send_attempts FROM orders")
            .fetch_all(&pool)
            .await?;
    pool.close().await;
    Ok(found.into_iter().collect())
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the gateway did not get ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ledger(client: &reqwest::Client, fleet: &MockFleet, id: &str) -> anyhow::Result<Value> {
    let url = fleet.base_url(id).unwrap_or_default();
    Ok(client
        .get(format!("{url}/_mock/ledger"))
        .send()
        .await?
        .json()
        .await?)
}

/// Control request numbers a bank decided (`controls`).
fn decided(ledger: &Value) -> usize {
    ledger["controls"].as_array().map_or(0, Vec::len)
}

/// One request number's entry in a bank's request log.
#[derive(Debug, Clone)]
struct Logged {
    count: i64,
    received_at: DateTime<Utc>,
    last_received_at: DateTime<Utc>,
}

/// What the banks got, by request number.
#[derive(Debug, Default)]
struct Receipts {
    /// `controls`: how often each control message arrived, and when first.
    controls: HashMap<String, Vec<(i64, DateTime<Utc>)>>,
    /// The request log's `control` entries.
    sent: HashMap<String, Vec<Logged>>,
    /// The request log's `control_query` entries: questions about a
    /// request number.
    asked: HashMap<String, Vec<Logged>>,
}

fn time(v: &Value) -> anyhow::Result<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not a timestamp: {v}"))
}

impl Receipts {
    fn add(&mut self, ledger: &Value) -> anyhow::Result<()> {
        for c in ledger["controls"].as_array().into_iter().flatten() {
            let rn = c["request_number"].as_str().unwrap_or_default().to_owned();
            let count = c["received_count"].as_i64().unwrap_or(0);
            self.controls
                .entry(rn)
                .or_default()
                .push((count, time(&c["received_at"])?));
        }
        for r in ledger["requests"].as_array().into_iter().flatten() {
            let into = match r["kind"].as_str() {
                Some("control") => &mut self.sent,
                Some("control_query") => &mut self.asked,
                _ => continue,
            };
            into.entry(r["request_number"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push(Logged {
                    count: r["count"].as_i64().unwrap_or(0),
                    received_at: time(&r["received_at"])?,
                    last_received_at: time(&r["last_received_at"])?,
                });
        }
        Ok(())
    }
}

fn documents() -> Value {
    json!([
        {"kind": "ruling", "number": "(2024)甘0503执1234号之一", "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
        {"kind": "assist_notice", "number": "协冻-1", "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_in_flight_when_the_gateway_is_killed_reach_their_banks_exactly_once()
-> anyhow::Result<()> {
    let fleet = MockFleet::start(&MockConfig::standard(), true).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    // Slow banks, so that orders are in flight when the gateway dies.
    for bank in ["bank-a", "bank-b"] {
        let url = fleet.base_url(bank).unwrap_or_default();
        client
            .post(format!("{url}/_mock/faults"))
            .json(&json!({"latency_ms": 150}))
            .send()
            .await?
            .error_for_status()?;
    }
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = write_config(dir.path(), &fleet, &format!("127.0.0.1:{port}"))?;
    let db = dir.path().join("gateway.db");
    let mut child = spawn(&config, &dir.path().join("first.log"))?;
    wait_ready(&client, &base).await?;

    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).ok_or(anyhow::anyhow!("tz"))?)
        .date_naive();
    let end = (today + chrono::Days::new(90)).to_string();
    let mut submitted = Vec::new();
    for i in 0..ORDERS {
        let (agency, account) = if i % 2 == 0 {
            ("bank-a", "6222020200112233445")
        } else {
            ("bank-b", "6217000010001234567")
        };
        let body = json!({
            "case_number": CASE,
            "subject": {"kind": "person", "name": "张三", "id_number": "360426199101010071"},
            "officers": [
                {"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"},
                {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"},
            ],
            "action": "freeze", "agency": agency, "asset": {"account_number": account},
            "amount_fen": AMOUNT_FEN, "end_date": end, "documents": documents(),
        });
        let reply = client
            .post(format!("{base}/v1/orders"))
            .bearer_auth(ENFORCEMENT)
            .header("idempotency-key", format!("crash-{i}"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            reply.status().as_u16() == 202,
            "order {i}: {}",
            reply.status()
        );
        let order: Value = reply.json().await?;
        submitted.push((
            order["id"].as_str().unwrap_or_default().to_owned(),
            order["request_number"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }

    // Kill it once some orders reached the banks and others have not, and
    // some are in doubt.
    let deadline = Instant::now() + Duration::from_secs(30);
    let decided_before = loop {
        let n = decided(&ledger(&client, &fleet, "bank-a").await?)
            + decided(&ledger(&client, &fleet, "bank-b").await?);
        if n >= 20 && !in_doubt(&db).await?.is_empty() {
            break n;
        }
        anyhow::ensure!(Instant::now() < deadline, "no order reached a bank");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill()?; // SIGKILL
    child.wait()?;
    let killed_at = Utc::now();
    assert!(
        decided_before < ORDERS,
        "every order reached its bank before the kill; the test proves nothing"
    );
    // Which orders were in doubt at the kill: the database as it was left.
    let doubtful = in_doubt(&db).await?;
    assert!(
        !doubtful.is_empty(),
        "no order was in doubt when the gateway was killed; the test proves nothing"
    );

    // Started again on the same database, it finishes what was accepted.
    // Whatever reaches a bank from now on may be the new process's.
    let restarted_at = Utc::now();
    let mut child = spawn(&config, &dir.path().join("second.log"))?;
    let result = async {
        wait_ready(&client, &base).await?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let list: Value = client
                .get(format!(
                    "{base}/v1/orders?limit=1000&case_number={}",
                    url_encode(CASE)
                ))
                .bearer_auth(ENFORCEMENT)
                .send()
                .await?
                .json()
                .await?;
            let orders = list["orders"].as_array().cloned().unwrap_or_default();
            let decided = orders
                .iter()
                .filter(|o| !matches!(o["status"].as_str(), Some("accepted" | "dispatched")))
                .count();
            if orders.len() == ORDERS && decided == ORDERS {
                let applied = orders.iter().filter(|o| o["status"] == "applied").count();
                anyhow::ensure!(applied == ORDERS, "not all applied: {list}");
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{decided} of {} orders decided after the restart",
                orders.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result?;

    // The banks' receipts.
    let mut receipts = Receipts::default();
    for bank in ["bank-a", "bank-b"] {
        receipts.add(&ledger(&client, &fleet, bank).await?)?;
    }
    // Every order's control message arrived at its bank exactly once: none
    // lost, none sent again; and nothing else arrived.
    assert_eq!(
        receipts.controls.len(),
        ORDERS,
        "one control request number per order at the banks: {:?}",
        receipts.controls.keys().collect::<Vec<_>>()
    );
    for (id, request_number) in &submitted {
        let got = receipts
            .controls
            .get(request_number)
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(
            matches!(got, [(1, _)]),
            "order {id} ({request_number}): the banks received its control {got:?} (want once, at one bank)"
        );
        let logged = receipts
            .sent
            .get(request_number)
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(
            matches!(logged, [Logged { count: 1, .. }]),
            "order {id} ({request_number}): the banks' request logs show its control {logged:?} (want once)"
        );
    }
    // Every order in doubt at the kill was asked about by the restarted
    // gateway. Where the bank had the killed process's message (got before
    // the kill, or in flight at it and decided just after), the answer said
    // so and nothing was sent again (received once, above); where it had
    // not, the restarted gateway asked before it sent. Which of the two the
    // gateway did is in its own record (an order sent again counts another
    // attempt); the banks' receipts must agree.
    let attempts = send_attempts(&db).await?;
    let (mut had_before_kill, mut had_in_flight, mut sent_after_asking) =
        (Vec::new(), Vec::new(), Vec::new());
    for (request_number, attempts_at_kill) in &doubtful {
        let asked = receipts
            .asked
            .get(request_number)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let [asked] = asked else {
            panic!("{request_number} was in doubt at the kill; questions about it: {asked:?}");
        };
        assert!(
            asked.last_received_at >= restarted_at,
            "{request_number} was in doubt at the kill but the restarted gateway never asked \
             about it: {asked:?}, restarted at {restarted_at}"
        );
        let Some([(1, received_at)]) = receipts.controls.get(request_number).map(Vec::as_slice)
        else {
            unreachable!("checked above: every order's control arrived once");
        };
        let sent_again = attempts.get(request_number).copied().unwrap_or(0) > *attempts_at_kill;
        if !sent_again {
            // The killed process's message: asked about afterwards, never
            // sent again.
            assert!(
                asked.last_received_at > *received_at,
                "{request_number}: asked {asked:?}, control received {received_at}"
            );
            if *received_at < killed_at {
                had_before_kill.push(request_number.as_str());
            } else {
                had_in_flight.push(request_number.as_str());
            }
        } else {
            // The restarted process's: the bank had not got the killed
            // one's (it arrived once, and after the restart), and was asked
            // first.
            assert!(
                *received_at >= restarted_at,
                "{request_number} was sent again after the restart, but the bank's one receipt \
                 of it is from before ({received_at})"
            );
            assert!(
                asked.received_at <= *received_at,
                "{request_number} was sent after the restart without asking the bank first: \
                 first question {}, control received {received_at}",
                asked.received_at
            );
            sent_after_asking.push(request_number.as_str());
        }
    }
    println!(
        "crash test: {decided_before} of {ORDERS} orders had reached the banks when the gateway \
         was killed, {} were in doubt ({}); the restarted gateway asked about each: {} the bank \
         had got before the kill ({}), {} it got from the killed process's last messages just \
         after ({}), {} it had not got and the restarted gateway sent after asking ({}). Every \
         one of the {ORDERS} control messages arrived at its bank exactly once.",
        doubtful.len(),
        doubtful
            .iter()
            .map(|(rn, _)| rn.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        had_before_kill.len(),
        had_before_kill.join(" "),
        had_in_flight.len(),
        had_in_flight.join(" "),
        sent_after_asking.len(),
        sent_after_asking.join(" "),
    );
    fleet.shutdown().await;
    Ok(())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
