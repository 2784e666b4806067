//! When the audit log cannot write, the gateway refuses new work and sends
//! nothing to any agency; when it can again, work resumes by itself.

use e2e_tests::*;
use reqwest::StatusCode;

#[tokio::test]
async fn nothing_reaches_an_agency_while_the_audit_log_cannot_write() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let db = sys.open_database().await?;
    // Every insert into the audit table now fails, as on a full or broken disk.
    sqlx::query(
        "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
    )
    .execute(&db)
    .await?;

    let reply = sys.inquire(zhang_san(), 5).await?;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "audit_unavailable");
    for agency in ["bank-a", "bank-b", "registry-x"] {
        let ledger: serde_json::Value = sys
            .client
            .get(format!(
                "{}/_mock/ledger?holder={ZHANG_SAN_ID}",
                sys.mock_url(agency)
            ))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(
            ledger["requests"],
            serde_json::json!([]),
            "{agency} was contacted"
        );
    }

    sqlx::query("DROP TRIGGER audit_broken")
        .execute(&db)
        .await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "completed");
    Ok(())
}
