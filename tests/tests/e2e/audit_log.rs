//! The audit log auditors can trust: the chain and its signed checkpoints
//! verify, and an edited, deleted or reordered row is named; pagination
//! holds under concurrent writes; CSV; the questions auditors ask;
//! retention keeps the chain verifiable. Each story runs on SQLite, and on
//! PostgreSQL when `TEST_DATABASE_URL` is set.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Starts a system whose audit writer signs a checkpoint every 4 rows.
async fn start(backend: Backend) -> anyhow::Result<System> {
    System::start_on(backend, |config, _| {
        config.audit.checkpoint_every_rows = 4;
    })
    .await
}

async fn verify(sys: &System) -> anyhow::Result<Value> {
    let reply = sys.get("/v1/audit/verify", AUDITOR).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "verify: {}", reply.body);
    Ok(reply.body)
}

/// Some traffic: two inquiries (three agencies each).
async fn traffic(sys: &System) -> anyhow::Result<()> {
    for subject in [zhang_san(), nobody()] {
        let reply = sys.inquire(subject, 10).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "inquiry: {}", reply.body);
    }
    Ok(())
}

async fn chain_verifies_with_signed_checkpoints(backend: Backend) -> anyhow::Result<()> {
    let sys = start(backend).await?;
    traffic(&sys).await?;
    let report = verify(&sys).await?;
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["checked"].as_i64().unwrap_or(0) >= 14, "{report}");
    assert!(report["checkpoints"].as_i64().unwrap_or(0) >= 2, "{report}");
    assert_eq!(report["first_bad_seq"], Value::Null);
    // Asking is itself recorded.
    let asked = sys.audit("action=audit.verify").await?;
    assert_eq!(asked.len(), 1);
    Ok(())
}

async fn an_edited_row_is_named(backend: Backend) -> anyhow::Result<()> {
    let sys = start(backend).await?;
    traffic(&sys).await?;
    sys.sql("UPDATE audit_events SET agency = 'bank-x' WHERE seq = 5")
        .await?;
    let report = verify(&sys).await?;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad_seq"], 5, "{report}");
    assert!(
        report["problem"]
            .as_str()
            .is_some_and(|p| p.contains("does not match its hash"))
    );
    Ok(())
}

async fn a_deleted_row_is_named(backend: Backend) -> anyhow::Result<()> {
    let sys = start(backend).await?;
    traffic(&sys).await?;
    sys.sql("DELETE FROM audit_events WHERE seq = 7").await?;
    let report = verify(&sys).await?;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad_seq"], 7, "{report}");
    assert!(
        report["problem"]
            .as_str()
            .is_some_and(|p| p.contains("missing")),
        "{report}"
    );
    Ok(())
}

async fn rows_deleted_at_the_end_are_caught_by_a_checkpoint(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut sys = start(backend).await?;
    traffic(&sys).await?;
    let signed: i64 = verify(&sys).await?["signed_through_seq"]
        .as_i64()
        .unwrap_or(0);
    assert!(signed >= 4);
    // The log cut short while the gateway is down: the restarted gateway
    // reads the tail as stored. (A running one on PostgreSQL chains after
    // the tail it wrote itself, and the cut shows as a gap at once.)
    sys.stop_gateway().await;
    sys.sql(&format!(
        "DELETE FROM audit_events WHERE seq >= {}",
        signed - 1
    ))
    .await?;
    sys.start_gateway().await?;
    // Asking records one new row after what is left (row signed - 1), so
    // the chain looks whole up to it; the checkpoint signed for row
    // `signed` shows that row is gone.
    let report = verify(&sys).await?;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad_seq"], signed, "{report}");
    assert!(
        report["problem"]
            .as_str()
            .is_some_and(|p| p.contains("missing") && p.contains("checkpoint")),
        "{report}"
    );
    Ok(())
}

async fn reordered_rows_are_named(backend: Backend) -> anyhow::Result<()> {
    let sys = start(backend).await?;
    traffic(&sys).await?;
    // Rows 3 and 4 trade places.
    sys.sql("UPDATE audit_events SET seq = -4 WHERE seq = 4")
        .await?;
    sys.sql("UPDATE audit_events SET seq = 4 WHERE seq = 3")
        .await?;
    sys.sql("UPDATE audit_events SET seq = 3 WHERE seq = -4")
        .await?;
    let report = verify(&sys).await?;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad_seq"], 3, "{report}");
    Ok(())
}

async fn a_rewritten_chain_fails_its_signed_checkpoint(backend: Backend) -> anyhow::Result<()> {
    let sys = start(backend).await?;
    traffic(&sys).await?;
    // Edit row 2 and recompute every hash after it, as a forger with write
    // access but without the signing key would.
    let events = sys.audit("").await?;
    let mut prev = gateway::audit::GENESIS_HASH.to_owned();
    for e in &events {
        let seq = e["seq"].as_i64().unwrap_or(0);
        let mut stored = stored_event(e)?;
        if seq == 2 {
            stored.agency = Some("bank-x".into());
            sys.sql("UPDATE audit_events SET agency = 'bank-x' WHERE seq = 2")
                .await?;
        }
        stored.prev_hash = prev.clone();
        let hash = gateway::audit::row_hash(&prev, &stored);
        sys.sql(&format!(
            "UPDATE audit_events SET prev_hash = '{prev}', hash = '{hash}' WHERE seq = {seq}"
        ))
        .await?;
        prev = hash;
    }
    let report = verify(&sys).await?;
    assert_eq!(report["ok"], false, "{report}");
    let bad = report["first_bad_seq"].as_i64().unwrap_or(0);
    assert!(
        (2..=8).contains(&bad),
        "the first checkpoint after row 2: {report}"
    );
    assert!(
        report["problem"]
            .as_str()
            .is_some_and(|p| p.contains("checkpoint")),
        "{report}"
    );
    Ok(())
}

/// An event as the API shows it, back into the stored form the hash covers.
fn stored_event(e: &Value) -> anyhow::Result<gateway::audit::StoredAuditEvent> {
    let text = |k: &str| e[k].as_str().map(str::to_owned);
    let at = chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap_or_default())?;
    Ok(gateway::audit::StoredAuditEvent {
        seq: e["seq"].as_i64().unwrap_or(0),
        at_ms: at.timestamp_millis(),
        direction: text("direction").unwrap_or_default(),
        caller: text("caller"),
        officers: serde_json::from_value(e["officers"].clone())?,
        case_number: text("case_number"),
        subject: text("subject"),
        agency: text("agency"),
        action: text("action").unwrap_or_default(),
        inquiry_id: text("inquiry_id"),
        request_number: text("request_number"),
        status: text("status"),
        latency_ms: e["latency_ms"].as_i64(),
        body_sha256: text("body_sha256"),
        body: None,
        prev_hash: text("prev_hash").unwrap_or_default(),
        hash: text("hash").unwrap_or_default(),
    })
}

async fn pages_have_no_gaps_or_repeats_under_concurrent_writes(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = start(backend).await?;
    traffic(&sys).await?;
    // Inquiries keep writing while an auditor pages 7 rows at a time.
    let writer = {
        let client = sys.client.clone();
        let base = sys.base.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                let _ = client
                    .post(format!("{base}/v1/inquiries?wait=5"))
                    .bearer_auth(ENFORCEMENT)
                    .json(&inquiry_body(zhang_san()))
                    .send()
                    .await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut path = "/v1/audit/events?limit=7".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = sys.get(&path, AUDITOR).await?.body;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        seen.extend(events.iter().filter_map(|e| e["seq"].as_i64()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None if writer.is_finished() => break,
            // The end for now: keep reading from the last row seen.
            None => {
                if let Some(last) = seen.last() {
                    cursor = Some(last.to_string());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "paging did not end");
    }
    writer.await?;
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a row was read twice");
    let max = seen.iter().copied().max().unwrap_or(0);
    assert_eq!(unique, (1..=max).collect(), "a row was skipped");
    assert!(max > 100, "the writers wrote meanwhile: {max}");
    Ok(())
}

async fn csv_has_the_same_rows(backend: Backend) -> anyhow::Result<()> {
    let sys = start(backend).await?;
    traffic(&sys).await?;
    let json_rows = sys.audit(&format!("subject={ZHANG_SAN_ID}")).await?;
    let response = sys
        .client
        .get(format!(
            "{}/v1/audit/events?limit=1000&subject={ZHANG_SAN_ID}",
            sys.base
        ))
        .bearer_auth(AUDITOR)
        .header("accept", "text/csv")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/csv")),
    );
    let text = response.text().await?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    assert_eq!(&header[..4], ["seq", "at", "direction", "caller"]);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), json_rows.len());
    for (row, event) in rows.iter().zip(&json_rows) {
        assert_eq!(
            row.get(0),
            event["seq"].as_i64().map(|s| s.to_string()).as_deref()
        );
        assert_eq!(row.get(15), event["hash"].as_str());
        assert_eq!(row.get(6), Some(ZHANG_SAN_ID));
    }
    // The Chinese case number survives the round trip.
    assert!(rows.iter().any(|r| r.get(5) == Some(CASE)));
    Ok(())
}

async fn the_questions_auditors_ask_are_answered(backend: Backend) -> anyhow::Result<()> {
    let sys = start(backend).await?;
    // 张三 asked about under two cases; one of them another court's (甘0502).
    sys.inquire(zhang_san(), 10).await?;
    let mut elsewhere = inquiry_body(zhang_san());
    elsewhere["case_number"] = json!("(2024)甘0502执77号");
    sys.post_json("/v1/inquiries?wait=10", ENFORCEMENT, &elsewhere)
        .await?;
    // One officer asks three times today.
    sys.inquire(nobody(), 10).await?;

    let several = sys
        .get("/v1/audit/questions/subjects-in-several-cases", AUDITOR)
        .await?
        .body;
    let subjects = several["subjects"].as_array().cloned().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "{several}");
    assert_eq!(subjects[0]["subject"], ZHANG_SAN_ID);
    assert_eq!(subjects[0]["cases"], json!(["(2024)甘0502执77号", CASE]));

    let outside = sys
        .get("/v1/audit/questions/officers-outside-their-court", AUDITOR)
        .await?
        .body;
    let requests = outside["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!(requests.len(), 1, "{outside}");
    assert_eq!(requests[0]["case_number"], "(2024)甘0502执77号");
    assert_eq!(requests[0]["caller_court"], "甘0503");
    assert!(
        requests[0]["officer"]
            .as_str()
            .is_some_and(|o| o.contains("ZX620503001"))
    );

    let busy = sys
        .get("/v1/audit/questions/officer-volume?threshold=2", AUDITOR)
        .await?
        .body;
    let days = busy["officer_days"].as_array().cloned().unwrap_or_default();
    assert_eq!(days.len(), 1, "{busy}");
    assert_eq!(days[0]["requests"], 3);
    let quiet = sys
        .get("/v1/audit/questions/officer-volume?threshold=3", AUDITOR)
        .await?
        .body;
    assert_eq!(quiet["officer_days"], json!([]), "{quiet}");
    // An order whose assistance notice reached the bank as another file.
    let honest = crate::orders::freeze(&sys, zhang_san(), "bank-a", "6222020200112233445", 100);
    let honest = crate::orders::place(&sys, "honest", &honest, &["applied"]).await?;
    assert_eq!(honest["documents_match"], true, "{honest}");
    let mut tampered =
        crate::orders::freeze(&sys, zhang_san(), "bank-b", "6217000010001234567", 100);
    tampered["documents"][1]["number"] = json!("协冻-2-TAMPERED");
    let tampered = crate::orders::place(&sys, "tampered", &tampered, &["applied"]).await?;
    assert_eq!(tampered["documents_match"], false, "{tampered}");
    let mismatches = sys
        .get("/v1/audit/questions/document-mismatches", AUDITOR)
        .await?
        .body;
    let orders = mismatches["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(orders.len(), 1, "{mismatches}");
    assert_eq!(orders[0]["order"], tampered["id"]);
    assert_ne!(
        orders[0]["sent"][1]["sha256"],
        orders[0]["acknowledged"][1]["sha256"]
    );

    // Only auditors ask; each question is recorded.
    let denied = sys
        .get(
            "/v1/audit/questions/officer-volume?threshold=3",
            ENFORCEMENT,
        )
        .await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        sys.audit("action=audit.question.officer-volume")
            .await?
            .len(),
        2
    );
    Ok(())
}

async fn retention_purges_bodies_and_the_chain_still_verifies(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |config, _| {
        config.audit.checkpoint_every_rows = 4;
        config.audit.body_retention_days = Some(0);
        config.audit.retention_sweep_secs = 1;
    })
    .await?;
    traffic(&sys).await?;
    let events = sys.audit("action=inquiry.send").await?;
    let seq = events[0]["seq"].as_i64().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = sys
            .get(&format!("/v1/audit/events/{seq}"), AUDITOR)
            .await?
            .body;
        if event.get("body_base64").is_none() {
            assert!(event["body_sha256"].as_str().is_some_and(|h| h.len() == 64));
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "bodies not purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = verify(&sys).await?;
    assert_eq!(report["ok"], true, "{report}");
    // The sweep records itself once its purge is done (after the bodies
    // are gone, so a moment after the loop above sees them gone).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sys.audit("action=audit.retention").await?.is_empty() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the sweep did not record itself"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

on_both_backends!(chain_verifies_with_signed_checkpoints);
on_both_backends!(an_edited_row_is_named);
on_both_backends!(a_deleted_row_is_named);
on_both_backends!(rows_deleted_at_the_end_are_caught_by_a_checkpoint);
on_both_backends!(reordered_rows_are_named);
on_both_backends!(a_rewritten_chain_fails_its_signed_checkpoint);
on_both_backends!(pages_have_no_gaps_or_repeats_under_concurrent_writes);
on_both_backends!(csv_has_the_same_rows);
on_both_backends!(the_questions_auditors_ask_are_answered);
on_both_backends!(retention_purges_bodies_and_the_chain_still_verifies);
