//! When the audit log cannot write, the gateway refuses new work and sends
//! nothing to any agency, `/readyz` says not ready, and when the store
//! recovers, work resumes by itself. On SQLite the audit table is broken (as
//! by a full disk); on PostgreSQL the database is made read-only, then
//! refuses connections altogether (as when it is stopped).

use std::time::Duration;

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn ledger_requests(sys: &System, agency: &str) -> anyhow::Result<Value> {
    let ledger: Value = sys
        .client
        .get(format!(
            "{}/_mock/ledger?holder={ZHANG_SAN_ID}",
            sys.mock_url(agency)
        ))
        .send()
        .await?
        .json()
        .await?;
    Ok(ledger["requests"].clone())
}

async fn ready(sys: &System) -> anyhow::Result<StatusCode> {
    Ok(sys
        .client
        .get(format!("{}/readyz", sys.base))
        .send()
        .await?
        .status())
}

fn freeze_body() -> Value {
    let end = chrono::Utc::now().date_naive() + chrono::Days::new(90);
    json!({
        "case_number": CASE, "subject": zhang_san(),
        "officers": [officer(), {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"}],
        "action": "freeze", "agency": "bank-a", "asset": {"account_number": "6222020200112233445"},
        "amount_fen": 100_000, "end_date": end.to_string(),
        "documents": [
            {"kind": "ruling", "number": "(2024)甘0503执1234号之一", "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
            {"kind": "assist_notice", "number": "协冻-1", "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
        ],
    })
}

/// Breaks the store the way `how` says, for the backend in use.
async fn break_store(sys: &System, how: &str) -> anyhow::Result<()> {
    if sys.config.database_url.starts_with("sqlite:") {
        sys.sql(
            "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
        )
        .await?;
        return Ok(());
    }
    let db = database_name(sys)?;
    let server = server_url(sys)?;
    let change = match how {
        "read-only" => format!("ALTER DATABASE {db} SET default_transaction_read_only = on"),
        _ => format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
    };
    admin(&server, &change).await?;
    // Connections open before the change keep their settings: end them.
    admin(
        &server,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
    )
    .await?;
    Ok(())
}

async fn repair_store(sys: &System) -> anyhow::Result<()> {
    if sys.config.database_url.starts_with("sqlite:") {
        sys.sql("DROP TRIGGER audit_broken").await?;
        return Ok(());
    }
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
    admin(
        &server,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
    )
    .await?;
    Ok(())
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

async fn refuses_and_recovers(backend: Backend, how: &str) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    assert_eq!(ready(&sys).await?, StatusCode::OK);
    break_store(&sys, how).await?;

    let reply = sys.inquire(zhang_san(), 5).await?;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    let order = sys.order("while-broken", &freeze_body()).await?;
    assert_eq!(
        order.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        order.body
    );
    assert_eq!(ready(&sys).await?, StatusCode::SERVICE_UNAVAILABLE);
    for agency in ["bank-a", "bank-b", "registry-x"] {
        assert_eq!(
            ledger_requests(&sys, agency).await?,
            json!([]),
            "{agency} was contacted"
        );
    }
    let ledger = sys.ledger("bank-a").await?;
    assert_eq!(
        ledger["controls"],
        json!([]),
        "a control order went out: {ledger}"
    );

    repair_store(&sys).await?;
    // Back by itself: ready again, and work flows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ready(&sys).await? != StatusCode::OK {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "completed");
    let order = sys.order("after-repair", &freeze_body()).await?;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    sys.wait_for_order(order.body["id"].as_str().unwrap_or_default(), &["applied"])
        .await?;
    Ok(())
}

async fn nothing_reaches_an_agency_while_the_audit_log_cannot_write(
    backend: Backend,
) -> anyhow::Result<()> {
    refuses_and_recovers(backend, "read-only").await
}

async fn nothing_reaches_an_agency_while_the_database_refuses_connections(
    backend: Backend,
) -> anyhow::Result<()> {
    refuses_and_recovers(backend, "stopped").await
}

on_both_backends!(nothing_reaches_an_agency_while_the_audit_log_cannot_write);
on_both_backends!(nothing_reaches_an_agency_while_the_database_refuses_connections);
