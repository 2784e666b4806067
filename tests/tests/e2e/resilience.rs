//! Per-agency protection: a failing agency's breaker opens, inquiries to it
//! are answered `circuit_open` at once instead of waiting, and a probe
//! closes it again once the agency recovers; an agency's quota is kept; a
//! failed exchange is retried within the deadline.

use std::time::Duration;

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn the_breaker_opens_on_a_failing_agency_and_a_probe_closes_it(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |config, agencies| {
        config.dispatcher.max_attempts = 1;
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.breaker_failures = 2;
            a.limits.breaker_cooldown_ms = 1_500;
        }
    })
    .await?;
    sys.fault("bank-b", json!({"mode": "error"})).await?;
    let mut banks = inquiry_body(zhang_san());
    banks["agencies"] = json!(["bank-a", "bank-b"]);
    let inquire = || sys.post_json("/v1/inquiries?wait=10", ENFORCEMENT, &banks);
    // Two failures open the breaker.
    for _ in 0..2 {
        let reply = inquire().await?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(
            agency_status(&reply.body, "bank-b"),
            "error",
            "{}",
            reply.body
        );
        assert_eq!(agency_status(&reply.body, "bank-a"), "answered");
    }
    let agencies = sys.get("/v1/agencies", ENFORCEMENT).await?.body;
    let b = agencies["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == "bank-b"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(b["breaker"], "open", "{agencies}");
    // While open, bank-b is not asked: the answer says so at once.
    let before = sys.ledger("bank-b").await?["requests"]
        .as_array()
        .map_or(0, Vec::len);
    let reply = inquire().await?;
    assert_eq!(
        agency_status(&reply.body, "bank-b"),
        "circuit_open",
        "{}",
        reply.body
    );
    assert_eq!(agency_status(&reply.body, "bank-a"), "answered");
    let after = sys.ledger("bank-b").await?["requests"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(before, after, "an open breaker sends nothing");
    let text = sys.metrics().await?;
    assert!(
        metric(
            &text,
            r#"gateway_agency_rejections_total{agency="bank-b",layer="breaker"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "the breaker's refusal is counted:\n{text}"
    );

    // The bank recovers; after the cooldown one probe goes, and closes it.
    sys.fault("bank-b", json!({"mode": "normal"})).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = inquire().await?;
        if agency_status(&reply.body, "bank-b") == "answered" {
            break;
        }
        assert_eq!(
            agency_status(&reply.body, "bank-b"),
            "circuit_open",
            "{}",
            reply.body
        );
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the breaker never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agencies = sys.get("/v1/agencies", ENFORCEMENT).await?.body;
    assert!(
        agencies.to_string().contains("\"breaker\":\"closed\""),
        "{agencies}"
    );
    Ok(())
}

async fn a_failed_exchange_is_retried_within_the_deadline(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |config, _| {
        config.dispatcher.max_attempts = 3;
        config.dispatcher.retry_base_ms = 50;
    })
    .await?;
    sys.fault("bank-b", json!({"mode": "error"})).await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(
        agency_status(&reply.body, "bank-b"),
        "error",
        "{}",
        reply.body
    );
    // Three attempts reached the bank, each audited.
    let sends = sys.audit("agency=bank-b&action=inquiry.send").await?;
    assert_eq!(sends.len(), 3, "{sends:?}");
    Ok(())
}

async fn the_agency_quota_is_kept(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.rate_per_second = Some(2);
        }
    })
    .await?;
    let started = tokio::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let reply = sys.inquire(nobody(), 0).await?;
        ids.push(reply.body["id"].as_str().unwrap_or_default().to_owned());
    }
    for id in &ids {
        let done = sys
            .wait_for_inquiry(id, Duration::from_secs(15), |i| i["status"] == "completed")
            .await?;
        assert_eq!(agency_status(&done, "bank-b"), "no_record", "{done}");
    }
    // Six messages at two a second: the last could not go before ~2 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

on_both_backends!(the_breaker_opens_on_a_failing_agency_and_a_probe_closes_it);
on_both_backends!(a_failed_exchange_is_retried_within_the_deadline);
on_both_backends!(the_agency_quota_is_kept);

async fn metrics_show_agency_outcomes_breakers_and_the_audit_writer(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    sys.inquire(zhang_san(), 10).await?;
    let response = sys
        .client
        .get(format!("{}/metrics", sys.base))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await?;
    for needle in [
        "gateway_agency_outcomes_total{agency=\"bank-a\",status=\"answered\"}",
        "gateway_agency_latency_seconds_bucket{",
        "gateway_agency_breaker_state{agency=\"bank-a\"} 0",
        "gateway_inquiries_total{status=\"completed\"}",
        "gateway_audit_batch_rows_count",
        "gateway_audit_commit_seconds_bucket",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    // No identity number in any label.
    assert!(!text.contains(ZHANG_SAN_ID));
    Ok(())
}

on_both_backends!(metrics_show_agency_outcomes_breakers_and_the_audit_writer);

/// The gauges of what waits and runs: while a slow bank holds an inquiry,
/// its task is in flight and the inquiry running; once it answers, nothing
/// waits and the inquiry is completed. (The store-sampled gauges count this
/// system's database alone; the in-flight gauge counts the test process.)
async fn the_queue_gauges_show_what_waits_and_what_runs(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    sys.fault("bank-b", json!({"latency_ms": 1500})).await?;
    let mut body = inquiry_body(zhang_san());
    body["agencies"] = json!(["bank-a", "bank-b"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=0", ENFORCEMENT, &body)
        .await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
    let running = |text: &str| {
        metric(text, r#"gateway_inquiries_current{status="running"}"#) == Some(1.0)
            && metric(
                text,
                r#"gateway_task_queue{state="queued",stage="in_flight"}"#,
            ) == Some(1.0)
            && metric(text, r#"gateway_agency_in_flight{agency="bank-b"}"#)
                .is_some_and(|n| n >= 1.0)
    };
    let during = sys
        .wait_for_metrics(Duration::from_secs(10), running)
        .await?;
    assert_eq!(
        metric(
            &during,
            r#"gateway_task_queue{state="queued",stage="waiting"}"#
        ),
        Some(0.0),
        "{during}"
    );
    sys.wait_for_inquiry(&id, Duration::from_secs(15), |i| i["status"] == "completed")
        .await?;
    let after = sys
        .wait_for_metrics(Duration::from_secs(10), |text| {
            metric(text, r#"gateway_inquiries_current{status="completed"}"#) == Some(1.0)
        })
        .await?;
    for (series, expected) in [
        (r#"gateway_inquiries_current{status="running"}"#, 0.0),
        (r#"gateway_task_queue{state="queued",stage="waiting"}"#, 0.0),
        (
            r#"gateway_task_queue{state="queued",stage="in_flight"}"#,
            0.0,
        ),
        (
            r#"gateway_task_queue{state="polling",stage="waiting"}"#,
            0.0,
        ),
        (
            r#"gateway_task_queue{state="awaiting",stage="waiting"}"#,
            0.0,
        ),
        (r#"gateway_order_queue{phase="send",stage="waiting"}"#, 0.0),
        (
            r#"gateway_order_queue{phase="watch",stage="in_flight"}"#,
            0.0,
        ),
        (r#"gateway_callback_outbox{stage="waiting"}"#, 0.0),
    ] {
        assert_eq!(
            metric(&after, series),
            Some(expected),
            "{series} in\n{after}"
        );
    }
    assert!(
        metric(&after, r#"gateway_agency_in_flight{agency="bank-b"}"#).is_some_and(|n| n >= 0.0),
        "{after}"
    );
    assert!(!after.contains(ZHANG_SAN_ID));
    Ok(())
}

on_both_backends!(the_queue_gauges_show_what_waits_and_what_runs);

async fn inquiries_complete_in_time_with_one_agency_failing_half_its_calls_and_another_throttling(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |config, agencies| {
        config.inquiries.deadline_secs = 5;
        config.dispatcher.max_attempts = 3;
        config.dispatcher.retry_base_ms = 20;
        for a in agencies.iter_mut().filter(|a| a.id == "bank-a") {
            a.limits.breaker_failures = 2;
            a.limits.breaker_cooldown_ms = 300;
        }
    })
    .await?;
    sys.fault("bank-a", json!({"error_rate": 0.5, "seed": 7}))
        .await?;
    sys.fault("bank-b", json!({"throttle_rate": 0.5, "seed": 11}))
        .await?;
    let mut seen_a = std::collections::BTreeSet::new();
    let mut seen_b = std::collections::BTreeSet::new();
    let mut opened = false;
    for _ in 0..12 {
        let started = tokio::time::Instant::now();
        let reply = sys.inquire(zhang_san(), 10).await?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "past the deadline"
        );
        let a = agency_status(&reply.body, "bank-a")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let b = agency_status(&reply.body, "bank-b")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            ["answered", "error", "circuit_open"].contains(&a.as_str()),
            "bank-a {a}"
        );
        assert!(
            ["answered", "rate_limited"].contains(&b.as_str()),
            "bank-b {b}"
        );
        assert_eq!(agency_status(&reply.body, "registry-x"), "answered");
        opened |= sys
            .get("/v1/agencies", ENFORCEMENT)
            .await?
            .body
            .to_string()
            .contains("\"breaker\":\"open\"");
        seen_a.insert(a);
        seen_b.insert(b);
    }
    assert!(opened, "bank-a's breaker opened at least once");
    assert!(seen_a.contains("answered"), "{seen_a:?}");
    assert!(seen_b.contains("answered"), "{seen_b:?}");
    // bank-a recovers: the breaker closes again.
    sys.fault("bank-a", json!({"error_rate": 0.0})).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = sys.inquire(zhang_san(), 10).await?;
        let agencies = sys.get("/v1/agencies", ENFORCEMENT).await?.body.to_string();
        if agency_status(&reply.body, "bank-a") == "answered"
            && !agencies.contains("\"breaker\":\"open\"")
        {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "bank-a's breaker never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

on_both_backends!(
    inquiries_complete_in_time_with_one_agency_failing_half_its_calls_and_another_throttling
);

/// Each fault an agency can commit, survived: the inquiry completes, the
/// faulty agency gets the status its fault deserves, the others answer,
/// and nothing is ever a 500.
async fn every_kind_of_agency_fault_is_survived(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |config, agencies| {
        config.dispatcher.max_attempts = 1;
        config.limits.max_reply_bytes = 64 * 1024;
        for a in agencies.iter_mut() {
            a.limits.timeout_ms = 1_000;
            a.limits.breaker_failures = 1_000;
        }
    })
    .await?;
    let cases: [(&str, serde_json::Value, &[&str]); 9] = [
        ("bank-b", json!({"reset_rate": 1.0}), &["error"]),
        ("bank-b", json!({"mode": "garbage"}), &["bad_reply"]),
        ("bank-b", json!({"malformed_rate": 1.0}), &["bad_reply"]),
        ("bank-a", json!({"wrong_encoding": true}), &["bad_reply"]),
        ("bank-b", json!({"oversize_bytes": 200_000}), &["bad_reply"]),
        ("bank-b", json!({"trickle_ms_per_byte": 20}), &["timeout"]),
        ("bank-b", json!({"throttle_rate": 1.0}), &["rate_limited"]),
        (
            "bank-b",
            json!({"error_rate": 1.0, "error_status": 500}),
            &["error"],
        ),
        (
            "bank-b",
            json!({"latency": {"p50_ms": 5, "p99_ms": 50}}),
            &["answered"],
        ),
    ];
    let clear = json!({
        "mode": "normal", "reset_rate": 0.0, "malformed_rate": 0.0, "wrong_encoding": false,
        "oversize_bytes": 0, "trickle_ms_per_byte": 0, "throttle_rate": 0.0, "error_rate": 0.0,
        "latency": null,
    });
    for (agency, fault, expected) in cases {
        sys.fault(agency, fault.clone()).await?;
        let mut body = inquiry_body(zhang_san());
        body["agencies"] = json!(["bank-a", "bank-b"]);
        let reply = sys
            .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
            .await?;
        assert_eq!(reply.status, StatusCode::OK, "{fault}: {}", reply.body);
        let status = agency_status(&reply.body, agency)
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            expected.contains(&status.as_str()),
            "{fault}: {agency} is {status}: {}",
            reply.body
        );
        let other = if agency == "bank-a" {
            "bank-b"
        } else {
            "bank-a"
        };
        assert_eq!(agency_status(&reply.body, other), "answered", "{fault}");
        sys.fault(agency, clear.clone()).await?;
    }
    // The gateway is still well.
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        agency_status(&reply.body, "bank-b"),
        "answered",
        "{}",
        reply.body
    );
    Ok(())
}

on_both_backends!(every_kind_of_agency_fault_is_survived);

/// A bank whose file asks for hedging: once its p95 is known, an answer
/// slower than it gets a second copy of the message; both copies are
/// audited (the second marked `hedge`), both replies recorded, and the
/// inquiry takes the first answer.
#[tokio::test]
async fn a_message_slower_than_the_agency_p95_is_hedged_and_both_copies_are_audited()
-> anyhow::Result<()> {
    let sys = System::start_with(|_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.hedge_percent = 100;
        }
    })
    .await?;
    let mut body = inquiry_body(nobody());
    body["agencies"] = json!(["bank-b"]);
    let inquire = || async {
        let reply = sys
            .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
            .await?;
        anyhow::ensure!(
            agency_status(&reply.body, "bank-b") == "no_record",
            "{}",
            reply.body
        );
        anyhow::Ok(reply)
    };
    // Twenty quick answers make the p95 known.
    for _ in 0..20 {
        inquire().await?;
    }
    assert!(
        sys.audit("agency=bank-b&action=inquiry.send")
            .await?
            .iter()
            .all(|e| e["status"].is_null()),
        "no hedge before the p95 is known"
    );
    sys.fault("bank-b", json!({"latency_ms": 400})).await?;
    let reply = inquire().await?;
    let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
    let sends = sys
        .audit(&format!("inquiry={id}&action=inquiry.send"))
        .await?;
    let statuses: Vec<&Value> = sends.iter().map(|e| &e["status"]).collect();
    assert_eq!(statuses, [&Value::Null, &json!("hedge")], "{sends:?}");
    // The copy that lost runs to its end: its reply is recorded too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sys
        .audit(&format!("inquiry={id}&action=inquiry.reply"))
        .await?
        .len()
        < 2
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the second reply was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = sys.metrics().await?;
    assert!(
        metric(&text, r#"gateway_agency_hedges_total{agency="bank-b"}"#).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    Ok(())
}
