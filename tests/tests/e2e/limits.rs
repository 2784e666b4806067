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

/// With room for one exchange at a time across all agencies, inquiries
/// that arrive together cannot all be handed to the dispatcher as they are
/// stored: the first is sent at once, the others wait unclaimed for its
/// rounds. Every one completes with every agency's answer, each message
/// sent once.
#[tokio::test]
async fn inquiries_beyond_the_dispatchers_room_wait_for_its_rounds() -> anyhow::Result<()> {
    let sys = System::start_with(|config, _| config.dispatcher.max_in_flight = 1).await?;
    sys.fault("bank-a", json!({"latency_ms": 50})).await?;
    let subjects = [zhang_san(), nobody(), organisation(), zhang_san()];
    let replies = futures::future::join_all(subjects.into_iter().map(|s| sys.inquire(s, 30))).await;
    let mut request_numbers = Vec::new();
    for reply in replies {
        let reply = reply?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let agencies = reply.body["agencies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!agencies.is_empty(), "{}", reply.body);
        for line in &agencies {
            assert!(
                ["answered", "no_record"].contains(&line["status"].as_str().unwrap_or("")),
                "{line}"
            );
        }
        let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
        let sends = sys
            .audit(&format!("inquiry={id}&action=inquiry.send"))
            .await?;
        assert_eq!(
            sends.len(),
            agencies.len(),
            "one message per agency: {sends:?}"
        );
        request_numbers.extend(sends.iter().map(|e| e["request_number"].to_string()));
    }
    let unique: std::collections::BTreeSet<_> = request_numbers.iter().collect();
    assert_eq!(unique.len(), request_numbers.len());
    Ok(())
}
