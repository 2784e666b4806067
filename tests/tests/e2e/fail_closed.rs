//! When the audit log cannot write, the gateway refuses new work and sends
//! nothing to any agency, `/readyz` says not ready, and when the store
//! recovers, work resumes by itself.
//!
//! On both backends the audit store fails on its own: every insert into the
//! audit table fails (as on a full disk under the audit log), while the rest
//! of the store works. New inquiries and orders get `503 audit_unavailable`
//! and leave nothing stored; work accepted before the failure (a freeze the
//! bank has not taken yet, an inquiry whose registry result is still
//! pending) is taken up again and again while the audit store is down, none
//! of it reaches an agency, and it completes once the audit store writes
//! again. On PostgreSQL the whole database also fails: made read-only, and
//! refusing connections (as when it is stopped).

use std::time::Duration;

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const AGENCIES: [&str; 3] = ["bank-a", "bank-b", "registry-x"];
/// Zhang San's accounts at bank-a.
const DEBIT_ACCOUNT: &str = "6222020200112233445";
const SAVINGS_ACCOUNT: &str = "6222020200118877665";

async fn ready(sys: &System) -> anyhow::Result<StatusCode> {
    Ok(sys
        .client
        .get(format!("{}/readyz", sys.base))
        .send()
        .await?
        .status())
}

/// Waits until `/readyz` answers `wanted`.
async fn wait_until_ready_is(sys: &System, wanted: StatusCode) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = ready(sys).await?;
        if status == wanted {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "/readyz still answers {status}, not {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn freeze_body(account: &str) -> Value {
    let end = chrono::Utc::now().date_naive() + chrono::Days::new(90);
    json!({
        "case_number": CASE, "subject": zhang_san(),
        "officers": [officer(), {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"}],
        "action": "freeze", "agency": "bank-a", "asset": {"account_number": account},
        "amount_fen": 100_000, "end_date": end.to_string(),
        "documents": [
            {"kind": "ruling", "number": "(2024)甘0503执1234号之一", "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
            {"kind": "assist_notice", "number": "协冻-1", "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
        ],
    })
}

/// Every dialect request that reached a mock agency, whatever it was
/// answered (its ledger's `injected.requests`, counted on arrival).
async fn arrivals(sys: &System, agency: &str) -> anyhow::Result<u64> {
    let ledger = sys.ledger(agency).await?;
    ledger["injected"]["requests"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("{agency}'s ledger has no injected.requests: {ledger}"))
}

async fn all_arrivals(sys: &System) -> anyhow::Result<Vec<u64>> {
    let mut counts = Vec::new();
    for agency in AGENCIES {
        counts.push(arrivals(sys, agency).await?);
    }
    Ok(counts)
}

/// The control measures bank-a placed on Zhang San's accounts.
async fn bank_a_controls(sys: &System) -> anyhow::Result<Value> {
    let ledger: Value = sys
        .client
        .get(format!(
            "{}/_mock/ledger?holder={ZHANG_SAN_ID}",
            sys.mock_url("bank-a")
        ))
        .send()
        .await?
        .json()
        .await?;
    Ok(ledger["controls"].clone())
}

/// One number read from the gateway's main store behind its back.
async fn number(sys: &System, query: &str) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let url = &sys.config.database_url;
    let sql = sqlx::AssertSqlSafe(query.to_owned());
    if url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        Ok(sqlx::query_scalar(sql).fetch_one(&mut conn).await?)
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        Ok(sqlx::query_scalar(sql).fetch_one(&mut conn).await?)
    }
}

/// Waits until `query` reads at least `at_least`, and returns what it read.
async fn wait_for_number(sys: &System, query: &str, at_least: i64) -> anyhow::Result<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = number(sys, query).await?;
        if n >= at_least {
            return Ok(n);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{query} reads {n}, not {at_least}, after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `agency` has received at least `at_least` requests.
async fn wait_for_arrivals(sys: &System, agency: &str, at_least: u64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while arrivals(sys, agency).await? < at_least {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{agency} did not get {at_least} requests in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Makes every insert into the audit table fail, and nothing else.
async fn break_audit_store(sys: &System) -> anyhow::Result<()> {
    if sys.config.database_url.starts_with("sqlite:") {
        sys.sql(
            "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
        )
        .await?;
    } else {
        sys.sql(
            "CREATE FUNCTION audit_broken() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$",
        )
        .await?;
        sys.sql(
            "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION audit_broken()",
        )
        .await?;
    }
    Ok(())
}

async fn repair_audit_store(sys: &System) -> anyhow::Result<()> {
    if sys.config.database_url.starts_with("sqlite:") {
        sys.sql("DROP TRIGGER audit_broken").await?;
    } else {
        sys.sql("DROP TRIGGER audit_broken ON audit_events").await?;
    }
    Ok(())
}

/// A 503 with one of `codes` as its error code.
fn assert_unavailable(reply: &Reply, codes: &[&str]) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(
        codes.iter().any(|c| reply.body["error"]["code"] == *c),
        "not {codes:?}: {}",
        reply.body
    );
}

fn assert_audit_unavailable(reply: &Reply) {
    assert_unavailable(reply, &["audit_unavailable"]);
}

/// Audit before dispatch, counted: no agency received more messages than
/// the audit log holds outbound rows for it.
async fn every_message_has_its_audit_row(sys: &System) -> anyhow::Result<()> {
    for agency in AGENCIES {
        let received = arrivals(sys, agency).await?;
        let recorded = sys
            .audit(&format!("agency={agency}"))
            .await?
            .iter()
            .filter(|e| e["direction"] == "outbound")
            .count() as u64;
        assert!(
            received <= recorded,
            "{agency} received {received} messages, the audit log records {recorded}"
        );
    }
    Ok(())
}

async fn nothing_reaches_an_agency_while_the_audit_log_cannot_write(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    assert_eq!(ready(&sys).await?, StatusCode::OK);

    // Work in flight: a freeze bank-a cannot take yet (it answers every
    // message with a 503, and keeps nothing)...
    sys.fault("bank-a", json!({"mode": "error"})).await?;
    let order = sys.order("in-flight", &freeze_body(DEBIT_ACCOUNT)).await?;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    let order_id = order.body["id"].as_str().unwrap_or_default().to_owned();
    wait_for_arrivals(&sys, "bank-a", 1).await?;
    // ...and an inquiry whose registry result is three seconds away: the
    // registry took it, and the gateway polls it.
    sys.fault("registry-x", json!({"result_delay_ms": 3_000}))
        .await?;
    let mut to_registry = inquiry_body(zhang_san());
    to_registry["agencies"] = json!(["registry-x"]);
    let inquiry = sys
        .post_json("/v1/inquiries?wait=0", ENFORCEMENT, &to_registry)
        .await?;
    assert_eq!(inquiry.status, StatusCode::ACCEPTED, "{}", inquiry.body);
    let inquiry_id = inquiry.body["id"].as_str().unwrap_or_default().to_owned();
    wait_for_arrivals(&sys, "registry-x", 2).await?;
    sys.fault("registry-x", json!({"result_delay_ms": 300}))
        .await?;

    // The audit store fails; the rest of the store works.
    break_audit_store(&sys).await?;
    // How often the gateway has taken each piece of work up (a claim is a
    // write to the main store).
    let order_claims = format!("SELECT CAST(steps AS BIGINT) FROM orders WHERE id = '{order_id}'");
    let task_claims = format!(
        "SELECT CAST(attempts AS BIGINT) FROM agency_tasks WHERE inquiry_id = '{inquiry_id}'"
    );
    let order_at_break = number(&sys, &order_claims).await?;
    let task_at_break = number(&sys, &task_claims).await?;
    // Once each has been taken up again after the failure, every message
    // of theirs from before it has ended: what reached the agencies by
    // then is the baseline.
    wait_for_number(&sys, &order_claims, order_at_break + 1).await?;
    wait_for_number(&sys, &task_claims, task_at_break + 1).await?;
    let baseline = all_arrivals(&sys).await?;
    // From now on bank-a would take the freeze if it got it.
    sys.fault("bank-a", json!({"mode": "normal"})).await?;

    // New work is refused, and leaves nothing in the store.
    assert_audit_unavailable(&sys.inquire(zhang_san(), 5).await?);
    assert_audit_unavailable(
        &sys.order("while-broken", &freeze_body(SAVINGS_ACCOUNT))
            .await?,
    );
    assert_eq!(ready(&sys).await?, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(number(&sys, "SELECT COUNT(*) FROM inquiries").await?, 1);
    assert_eq!(number(&sys, "SELECT COUNT(*) FROM orders").await?, 1);

    // The work in flight is taken up twice more, and none of it goes out:
    // no agency receives anything while the audit store is down.
    wait_for_number(&sys, &order_claims, order_at_break + 3).await?;
    wait_for_number(&sys, &task_claims, task_at_break + 3).await?;
    assert_eq!(
        all_arrivals(&sys).await?,
        baseline,
        "an agency was contacted while the audit log could not write ({AGENCIES:?})"
    );
    assert_eq!(
        bank_a_controls(&sys).await?,
        json!([]),
        "the freeze went out unrecorded"
    );

    repair_audit_store(&sys).await?;
    // Back by itself: ready again, the work in flight completes...
    wait_until_ready_is(&sys, StatusCode::OK).await?;
    let order = sys.wait_for_order(&order_id, &["applied"]).await?;
    assert_eq!(order["controlled_fen"], 100_000, "{order}");
    let inquiry = sys
        .wait_for_inquiry(&inquiry_id, Duration::from_secs(20), |i| {
            i["status"] == "completed"
        })
        .await?;
    assert_eq!(
        agency_status(&inquiry, "registry-x"),
        "answered",
        "{inquiry}"
    );
    // ...and new work flows.
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "completed");
    let order = sys
        .order("after-repair", &freeze_body(SAVINGS_ACCOUNT))
        .await?;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    sys.wait_for_order(order.body["id"].as_str().unwrap_or_default(), &["applied"])
        .await?;
    every_message_has_its_audit_row(&sys).await
}

on_both_backends!(nothing_reaches_an_agency_while_the_audit_log_cannot_write);

/// Makes the whole PostgreSQL database fail the way `how` says.
async fn break_database(sys: &System, how: &str) -> anyhow::Result<()> {
    let db = database_name(sys)?;
    let server = server_url(sys)?;
    let change = match how {
        "read-only" => format!("ALTER DATABASE {db} SET default_transaction_read_only = on"),
        _ => format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
    };
    admin(&server, &change).await?;
    // Connections open before the change keep their settings: end them.
    end_connections(&server, &db).await
}

async fn repair_database(sys: &System) -> anyhow::Result<()> {
    let db = database_name(sys)?;
    let server = server_url(sys)?;
    admin(
        &server,
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
    )
    .await?;
    admin(
        &server,
        &format!("ALTER DATABASE {db} SET default_transaction_read_only = off"),
    )
    .await?;
    end_connections(&server, &db).await
}

async fn end_connections(server: &str, db: &str) -> anyhow::Result<()> {
    admin(
        server,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
    )
    .await
}

fn database_name(sys: &System) -> anyhow::Result<String> {
    let url = url::Url::parse(&sys.config.database_url)?;
    Ok(url.path().trim_start_matches('/').to_owned())
}

fn server_url(sys: &System) -> anyhow::Result<String> {
    let mut url = url::Url::parse(&sys.config.database_url)?;
    url.set_path("/postgres");
    Ok(url.to_string())
}

async fn admin(server: &str, statement: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// The whole PostgreSQL database fails (`how`): new work is refused and
/// nothing is sent; when it is back, work flows again.
async fn refuses_while_the_database_is_down(server_url: String, how: &str) -> anyhow::Result<()> {
    let sys = System::start_on(Backend::Postgres { server_url }, |_, _| {}).await?;
    assert_eq!(ready(&sys).await?, StatusCode::OK);
    let before = all_arrivals(&sys).await?;
    break_database(&sys, how).await?;

    // Whichever fails first, recording the call or reading the store (an
    // order looks its key up before it is recorded): 503, nothing done.
    let down = ["audit_unavailable", "store_unavailable"];
    assert_unavailable(&sys.inquire(zhang_san(), 5).await?, &down);
    assert_unavailable(
        &sys.order("while-broken", &freeze_body(DEBIT_ACCOUNT))
            .await?,
        &down,
    );
    assert_eq!(ready(&sys).await?, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(all_arrivals(&sys).await?, before, "an agency was contacted");
    assert_eq!(
        bank_a_controls(&sys).await?,
        json!([]),
        "a control order went out"
    );

    repair_database(&sys).await?;
    wait_until_ready_is(&sys, StatusCode::OK).await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "completed");
    let order = sys
        .order("after-repair", &freeze_body(DEBIT_ACCOUNT))
        .await?;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    sys.wait_for_order(order.body["id"].as_str().unwrap_or_default(), &["applied"])
        .await?;
    every_message_has_its_audit_row(&sys).await
}

/// PostgreSQL only: an SQLite file cannot be made read-only or stopped
/// under the connections the gateway holds open.
async fn on_postgres(how: &str) -> anyhow::Result<()> {
    match Backend::postgres() {
        Some(Backend::Postgres { server_url }) => {
            refuses_while_the_database_is_down(server_url, how).await
        }
        _ => {
            eprintln!("skipping PostgreSQL: TEST_DATABASE_URL is not set");
            Ok(())
        }
    }
}

#[tokio::test]
async fn nothing_reaches_an_agency_while_the_database_is_read_only() -> anyhow::Result<()> {
    on_postgres("read-only").await
}

#[tokio::test]
async fn nothing_reaches_an_agency_while_the_database_refuses_connections() -> anyhow::Result<()> {
    on_postgres("stopped").await
}
