//! Per-agency limits from the agency files.

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_bank_limited_to_one_exchange_at_a_time_gets_them_one_after_another() -> anyhow::Result<()>
{
    let sys = System::start_with(|_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.max_concurrency = Some(1);
        }
    })
    .await?;
    sys.fault("bank-b", json!({"latency_ms": 150})).await?;
    let (first, second, third) = tokio::join!(
        sys.inquire(zhang_san(), 20),
        sys.inquire(nobody(), 20),
        sys.inquire(organisation(), 20)
    );
    for reply in [first?, second?, third?] {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_ne!(agency_status(&reply.body, "bank-b"), "pending");
    }
    // In the audit log's order, every message to bank-b is followed by its
    // reply before the next message goes out.
    let exchanges: Vec<String> = sys
        .audit("agency=bank-b")
        .await?
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..3)
        .flat_map(|_| ["inquiry.send".to_owned(), "inquiry.reply".to_owned()])
        .collect();
    assert_eq!(exchanges, expected);
    Ok(())
}
