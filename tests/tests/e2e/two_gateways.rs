//! Two gateway instances on one database, as in production: work is
//! claimed once, and both extend one audit chain that verifies.

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::Value;

use crate::orders::freeze;

async fn two_gateways_share_the_work_and_keep_one_chain(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |config, _| {
        config.audit.checkpoint_every_rows = 10;
    })
    .await?;
    let (second, second_base) = sys.start_another_gateway().await?;

    // Orders and inquiries arrive at both, at once.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let base = if i % 2 == 0 {
            sys.base.clone()
        } else {
            second_base.clone()
        };
        let client = sys.client.clone();
        let body = freeze(&sys, zhang_san(), "bank-a", "6222020200112233445", 100);
        tasks.push(tokio::spawn(async move {
            let reply = client
                .post(format!("{base}/v1/orders"))
                .bearer_auth(ENFORCEMENT)
                .header("idempotency-key", format!("two-{i}"))
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(reply.status() == StatusCode::ACCEPTED, "order {i}");
            Ok::<Value, anyhow::Error>(reply.json().await?)
        }));
        let inquiry = sys
            .client
            .post(format!(
                "{}/v1/inquiries?wait=10",
                if i % 2 == 0 { &second_base } else { &sys.base }
            ))
            .bearer_auth(ENFORCEMENT)
            .json(&inquiry_body(nobody()))
            .send();
        tasks.push(tokio::spawn(async move {
            let reply = inquiry.await?;
            anyhow::ensure!(reply.status() == StatusCode::OK, "inquiry");
            Ok(reply.json().await?)
        }));
    }
    let mut orders = Vec::new();
    for t in tasks {
        let v = t.await??;
        if v["id"].as_str().is_some_and(|id| id.starts_with("ord_")) {
            orders.push(v);
        }
    }
    for o in &orders {
        sys.wait_for_order(o["id"].as_str().unwrap_or_default(), &["applied"])
            .await?;
    }
    // Each order applied once at the bank, whichever gateway sent it.
    let ledger = sys.ledger("bank-a").await?;
    let controls = ledger["controls"].as_array().cloned().unwrap_or_default();
    assert_eq!(controls.len(), 20, "{ledger}");
    assert!(controls.iter().all(|c| c["applied_count"] == 1), "{ledger}");
    // One chain, written by both, verifies.
    let report = sys.get("/v1/audit/verify", AUDITOR).await?.body;
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["checked"].as_i64().unwrap_or(0) > 100, "{report}");
    second.shutdown().await;
    Ok(())
}

on_both_backends!(two_gateways_share_the_work_and_keep_one_chain);
