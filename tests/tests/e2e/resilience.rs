//! Per-agency protection: a failing agency's breaker opens, inquiries to it
//! are answered `circuit_open` at once instead of waiting, and a probe
//! closes it again once the agency recovers; an agency's quota is kept; a
//! failed exchange is retried within the deadline.
//!
//! What reached an agency is read from the mock itself (its ledger's
//! `injected` tally counts every dialect request on arrival, and logs the
//! time of each one a fault hit; `requests` has the time each request
//! number first arrived), and the deadlines, cooldowns, backoffs and quotas
//! are checked in numbers against it. Bounds are generous (a loaded 2-core
//! machine) but each one fails if its limit is not kept at all.

use std::time::Duration;

use chrono::{DateTime, Utc};
use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

/// A mock agency's tally of what reached it: `requests` (every dialect
/// request, on arrival), `counts` per fault and the `log` of fault hits.
async fn tally(sys: &System, agency: &str) -> anyhow::Result<Value> {
    Ok(sys.ledger(agency).await?["injected"].clone())
}

/// How many dialect requests reached a mock agency, whatever it answered.
async fn arrivals(sys: &System, agency: &str) -> anyhow::Result<u64> {
    tally(sys, agency).await?["requests"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("{agency} has no injected.requests"))
}

/// How many of the requests that reached `agency` a fault hit.
fn hits(tally: &Value, fault: &str) -> u64 {
    tally["counts"][fault].as_u64().unwrap_or(0)
}

/// An agency's breaker as `GET /v1/agencies` shows it.
async fn breaker(sys: &System, agency: &str) -> anyhow::Result<String> {
    let agencies = sys.get("/v1/agencies", ENFORCEMENT).await?.body;
    agencies["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == agency))
        .and_then(|a| a["breaker"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no breaker for {agency}: {agencies}"))
}

fn timestamp(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    let text = value
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("not a timestamp: {value}"))?;
    Ok(text.parse()?)
}

/// The time from `a` to `b` (negative when `b` is earlier).
fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> chrono::Duration {
    b - a
}

fn ms(ms: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(ms)
}

async fn the_breaker_opens_on_a_failing_agency_and_a_probe_closes_it(
    backend: Backend,
) -> anyhow::Result<()> {
    const COOLDOWN: Duration = Duration::from_millis(1_500);
    let sys = System::start_on(backend, |config, agencies| {
        config.dispatcher.max_attempts = 1;
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.breaker_failures = 2;
            a.limits.breaker_cooldown_ms = COOLDOWN.as_millis() as u64;
        }
    })
    .await?;
    sys.fault("bank-b", json!({"mode": "error"})).await?;
    let mut banks = inquiry_body(zhang_san());
    banks["agencies"] = json!(["bank-a", "bank-b"]);
    let inquire = || sys.post_json("/v1/inquiries?wait=10", ENFORCEMENT, &banks);
    let failed = |reply: &Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(
            agency_status(&reply.body, "bank-b"),
            "error",
            "{}",
            reply.body
        );
        assert_eq!(agency_status(&reply.body, "bank-a"), "answered");
    };
    // One failure leaves the breaker closed...
    failed(&inquire().await?);
    assert_eq!(breaker(&sys, "bank-b").await?, "closed");
    // ...the second in a row opens it.
    let second_sent = Instant::now();
    failed(&inquire().await?);
    let opened_by = Instant::now();
    assert_eq!(breaker(&sys, "bank-b").await?, "open");
    assert_eq!(arrivals(&sys, "bank-b").await?, 2, "one message a failure");

    // While open, bank-b is not asked: the answer says so at once.
    let reply = inquire().await?;
    assert_eq!(
        agency_status(&reply.body, "bank-b"),
        "circuit_open",
        "{}",
        reply.body
    );
    assert_eq!(agency_status(&reply.body, "bank-a"), "answered");
    assert_eq!(
        arrivals(&sys, "bank-b").await?,
        2,
        "an open breaker sends nothing"
    );
    let text = sys.metrics().await?;
    assert!(
        metric(
            &text,
            r#"gateway_agency_rejections_total{agency="bank-b",layer="breaker"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "the breaker's refusal is counted:\n{text}"
    );

    // The bank recovers. Until the cooldown has passed nothing goes to it;
    // then one probe goes, and closes the breaker.
    sys.fault("bank-b", json!({"mode": "normal"})).await?;
    let deadline = opened_by + COOLDOWN + Duration::from_secs(10);
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
        assert_eq!(
            arrivals(&sys, "bank-b").await?,
            2,
            "a message went to bank-b while its breaker was open, {:?} after it opened",
            second_sent.elapsed()
        );
        anyhow::ensure!(Instant::now() < deadline, "the breaker never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed = Instant::now();
    assert!(
        closed - second_sent >= COOLDOWN,
        "closed {:?} after the failure that opened it, within the cooldown of {COOLDOWN:?}",
        closed - second_sent
    );
    assert!(
        closed - opened_by <= COOLDOWN + Duration::from_secs(3),
        "the probe went {:?} after the breaker opened, long after the cooldown of {COOLDOWN:?}",
        closed - opened_by
    );
    assert_eq!(arrivals(&sys, "bank-b").await?, 3, "exactly one probe");
    assert_eq!(breaker(&sys, "bank-b").await?, "closed");
    Ok(())
}

/// An inquiry to bank-b alone, answered within `wait` seconds: the reply
/// and how long it took.
async fn inquire_bank_b(
    sys: &System,
    subject: Value,
    wait: u64,
) -> anyhow::Result<(Reply, Duration)> {
    let mut body = inquiry_body(subject);
    body["agencies"] = json!(["bank-b"]);
    let started = Instant::now();
    let reply = sys
        .post_json(&format!("/v1/inquiries?wait={wait}"), ENFORCEMENT, &body)
        .await?;
    Ok((reply, started.elapsed()))
}

async fn a_failed_exchange_is_retried_within_the_deadline(backend: Backend) -> anyhow::Result<()> {
    // Room for every attempt: three reach the bank, each after its backoff
    // (the base, then twice the base, each plus up to as much again), and
    // the inquiry is answered before its deadline.
    const BASE_MS: i64 = 200;
    const DEADLINE: Duration = Duration::from_secs(20);
    let sys = System::start_on(backend.clone(), |config, _| {
        config.dispatcher.max_attempts = 3;
        config.dispatcher.retry_base_ms = BASE_MS as u64;
        config.inquiries.deadline_secs = DEADLINE.as_secs();
    })
    .await?;
    sys.fault("bank-b", json!({"mode": "error"})).await?;
    let (reply, took) = inquire_bank_b(&sys, zhang_san(), 25).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        agency_status(&reply.body, "bank-b"),
        "error",
        "{}",
        reply.body
    );
    assert!(took < DEADLINE, "answered after {took:?}");
    let bank = tally(&sys, "bank-b").await?;
    assert_eq!(bank["requests"], 3, "{bank}");
    assert_eq!(hits(&bank, "error"), 3, "{bank}");
    let arrived: Vec<DateTime<Utc>> = bank["log"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hit| timestamp(&hit["at"]))
        .collect::<anyhow::Result<_>>()?;
    let [first, second, third] = arrived[..] else {
        anyhow::bail!("three arrivals expected: {bank}");
    };
    for (gap, base) in [
        (between(first, second), BASE_MS),
        (between(second, third), 2 * BASE_MS),
    ] {
        assert!(
            gap >= ms(base) && gap <= ms(2 * base + 1_000),
            "a retry {} ms after the attempt before, with a backoff of {base} to {} ms",
            gap.num_milliseconds(),
            2 * base
        );
    }
    // Each attempt audited.
    let sends = sys.audit("agency=bank-b&action=inquiry.send").await?;
    assert_eq!(sends.len(), 3, "{sends:?}");

    // No room: the backoff (10 s at least) would outlast the deadline
    // (3 s), so no retry is made, and the inquiry is answered with the one
    // failure at once, not kept waiting for a retry until it times out.
    const SHORT: Duration = Duration::from_secs(3);
    let sys = System::start_on(backend, |config, _| {
        config.dispatcher.max_attempts = 3;
        config.dispatcher.retry_base_ms = 10_000;
        config.inquiries.deadline_secs = SHORT.as_secs();
    })
    .await?;
    sys.fault("bank-b", json!({"mode": "error"})).await?;
    let (reply, took) = inquire_bank_b(&sys, zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        agency_status(&reply.body, "bank-b"),
        "error",
        "{}",
        reply.body
    );
    assert!(took < SHORT, "answered after {took:?}");
    assert_eq!(arrivals(&sys, "bank-b").await?, 1);
    let sends = sys.audit("agency=bank-b&action=inquiry.send").await?;
    assert_eq!(sends.len(), 1, "{sends:?}");
    Ok(())
}

async fn the_agency_quota_is_kept(backend: Backend) -> anyhow::Result<()> {
    const RATE: usize = 2;
    const MESSAGES: usize = 6;
    let sys = System::start_on(backend, |_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.rate_per_second = Some(RATE as u32);
        }
    })
    .await?;
    let mut ids = Vec::new();
    for _ in 0..MESSAGES {
        let reply = sys.inquire(nobody(), 0).await?;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        ids.push(reply.body["id"].as_str().unwrap_or_default().to_owned());
    }
    // The quota delays messages, it loses none.
    for id in &ids {
        let done = sys
            .wait_for_inquiry(id, Duration::from_secs(20), |i| i["status"] == "completed")
            .await?;
        assert_eq!(agency_status(&done, "bank-b"), "no_record", "{done}");
    }
    // When they reached the bank: one each (one subject a message), and no
    // faster than the quota. Its bucket holds RATE messages and refills at
    // RATE a second, so n messages in a row span at least (n - RATE) / RATE
    // seconds: two at once, a third half a second later, the sixth two
    // seconds after the first. 300 ms are allowed for the way from the
    // quota to the bank.
    let ledger = sys.ledger("bank-b").await?;
    let received: Vec<&Value> = ledger["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "inquiry")
        .collect();
    assert_eq!(received.len(), MESSAGES, "{ledger}");
    assert!(received.iter().all(|r| r["count"] == 1), "{ledger}");
    let mut times = received
        .iter()
        .map(|r| timestamp(&r["received_at"]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    times.sort();
    for i in 0..times.len() {
        for j in i + RATE..times.len() {
            let n = (j - i + 1) as i64;
            let least = ms((n - RATE as i64) * 1_000 / RATE as i64 - 300);
            let span = between(times[i], times[j]);
            assert!(
                span >= least,
                "{n} messages reached bank-b within {} ms, over its quota of {RATE} a second: {times:?}",
                span.num_milliseconds()
            );
        }
    }
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
    const DEADLINE: Duration = Duration::from_secs(5);
    sys.fault("bank-a", json!({"error_rate": 0.5, "seed": 7}))
        .await?;
    sys.fault("bank-b", json!({"throttle_rate": 0.5, "seed": 11}))
        .await?;
    let mut seen_a = std::collections::BTreeSet::new();
    let mut seen_b = std::collections::BTreeSet::new();
    let mut opened = false;
    for _ in 0..12 {
        let started = Instant::now();
        let reply = sys.inquire(zhang_san(), 10).await?;
        let took = started.elapsed();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["status"], "completed", "{}", reply.body);
        assert!(
            took <= DEADLINE + Duration::from_secs(2),
            "completed {took:?} after it was asked, past the deadline of {DEADLINE:?}"
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
    // The faults were there: about half of what reached bank-a failed, and
    // bank-b throttled some of what reached it and answered the rest.
    let a = tally(&sys, "bank-a").await?;
    let (requests, errors) = (a["requests"].as_u64().unwrap_or(0), hits(&a, "error"));
    assert!(
        requests >= 8 && errors * 4 >= requests && errors * 4 <= requests * 3,
        "bank-a failed {errors} of {requests}: {a}"
    );
    let b = tally(&sys, "bank-b").await?;
    let (requests, throttled) = (b["requests"].as_u64().unwrap_or(0), hits(&b, "throttled"));
    assert!(
        throttled >= 1 && throttled < requests,
        "bank-b throttled {throttled} of {requests}: {b}"
    );
    // bank-a recovers: the breaker closes again.
    sys.fault("bank-a", json!({"error_rate": 0.0})).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = sys.inquire(zhang_san(), 10).await?;
        let agencies = sys.get("/v1/agencies", ENFORCEMENT).await?.body.to_string();
        if agency_status(&reply.body, "bank-a") == "answered"
            && !agencies.contains("\"breaker\":\"open\"")
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "bank-a's breaker never closed");
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
    const TIMEOUT: Duration = Duration::from_millis(2_000);
    let sys = System::start_on(backend, |config, agencies| {
        config.dispatcher.max_attempts = 1;
        config.limits.max_reply_bytes = 64 * 1024;
        for a in agencies.iter_mut() {
            a.limits.timeout_ms = TIMEOUT.as_millis() as u64;
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
        ("bank-b", json!({"trickle_ms_per_byte": 50}), &["timeout"]),
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
        let started = Instant::now();
        let reply = sys
            .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
            .await?;
        let took = started.elapsed();
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
        if status == "timeout" {
            // Timed out at its timeout: not before it, and not long after
            // (the trickled reply would take over 10 s).
            assert!(
                took >= TIMEOUT && took <= TIMEOUT + Duration::from_millis(1_500),
                "{fault}: timed out after {took:?}, with a timeout of {TIMEOUT:?}"
            );
            let detail = agency_line(&reply.body, agency)["detail"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                detail.contains(&format!("within {} ms", TIMEOUT.as_millis())),
                "{detail}"
            );
        }
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while sys
        .audit(&format!("inquiry={id}&action=inquiry.reply"))
        .await?
        .len()
        < 2
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the second reply was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both copies reached the bank under one request number, the second
    // before the first was answered (the bank takes 400 ms a message).
    let request_number = sends[0]["request_number"].clone();
    let ledger = sys.ledger("bank-b").await?;
    let copies = ledger["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["request_number"] == request_number && r["kind"] == "inquiry")
        .map(|r| r["count"].clone());
    assert_eq!(copies, Some(json!(2)), "{ledger}");
    let replies = sys
        .audit(&format!("inquiry={id}&action=inquiry.reply"))
        .await?;
    let first_reply = replies
        .iter()
        .map(|e| timestamp(&e["at"]))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .min()
        .ok_or_else(|| anyhow::anyhow!("no reply recorded"))?;
    let hedge_sent = timestamp(&sends[1]["at"])?;
    assert!(
        hedge_sent < first_reply,
        "the hedge went at {hedge_sent}, after the first answer at {first_reply}"
    );
    let text = sys.metrics().await?;
    assert!(
        metric(&text, r#"gateway_agency_hedges_total{agency="bank-b"}"#).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    Ok(())
}
