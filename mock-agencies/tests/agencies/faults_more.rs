//! The faults real agencies commit, injected on demand: error rates with
//! the dialect's own error codes, connection resets, garbage and cut-off
//! replies, wrong encoding declarations, oversized and trickled replies,
//! throttling, and latency with a tail; all seeded, all counted in the
//! ledger, none of them ever touching the inspection API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mock_agencies::{MockBankFleet, MockConfig, MockDialect, MockFleet, fixtures};
use serde_json::{Value, json};

use crate::bank_json::{inquiries_url, inquiry};
use crate::common::*;
use crate::iso_bank_xml::{CONTENT_TYPE as ISO_CONTENT_TYPE, iso_request, wang_wu_inq};
use crate::registry::{poll_url, submission, submit_url};

fn zhang_san_json(request_number: &str) -> Value {
    inquiry(
        request_number,
        fixtures::ZHANG_SAN_NAME,
        fixtures::ZHANG_SAN_ID,
    )
}

fn wang_wu_json(request_number: &str) -> Value {
    inquiry(request_number, fixtures::WANG_WU_NAME, fixtures::WANG_WU_ID)
}

/// Posts JSON and gives back the status and the raw body.
async fn post_raw(url: &str, body: &Value) -> (u16, Vec<u8>) {
    let response = client()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("the agency answers");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("a body").to_vec())
}

async fn faults_of(fleet: &MockFleet, agency: &str) -> Value {
    get_json(&url(fleet, agency, "/_mock/faults")).await.1
}

async fn injected(fleet: &MockFleet, agency: &str) -> Value {
    let (status, ledger) = get_json(&url(fleet, agency, "/_mock/ledger")).await;
    assert_eq!(status, 200);
    ledger["injected"].clone()
}

/// Whether an XML document reads to its end without an error.
fn well_formed_xml(text: &str) -> bool {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut elements = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => return elements > 0,
            Ok(quick_xml::events::Event::Start(_) | quick_xml::events::Event::Empty(_)) => {
                elements += 1;
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn an_error_rate_fails_about_that_share_of_requests_the_same_way_for_the_same_seed() {
    let fleet = standard().await;
    set_faults(
        &fleet,
        fixtures::BANK_B,
        json!({"error_rate": 0.2, "error_status": 500, "seed": 7}),
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..200 {
        let (status, body) = post_raw(
            &inquiries_url(&fleet),
            &zhang_san_json(&format!("Q-er-{i}")),
        )
        .await;
        let body: Value = serde_json::from_slice(&body).expect("JSON either way");
        match status {
            200 => assert_eq!(body["outcome"], "FOUND"),
            500 => assert_eq!(body["error"]["code"], "INTERNAL_ERROR"),
            other => panic!("unexpected status {other}: {body}"),
        }
        statuses.push(status);
    }
    let errors = statuses.iter().filter(|s| **s == 500).count();
    assert!(
        (20..=60).contains(&errors),
        "{errors} errors of 200 at 20 %"
    );
    let tally = injected(&fleet, fixtures::BANK_B).await;
    assert_eq!(tally["requests"], 200);
    assert_eq!(tally["counts"]["error"], errors);
    assert_eq!(tally["log"].as_array().map(Vec::len), Some(errors));
    assert_eq!(tally["log"][0]["path"], "/api/v1/asset-inquiries");
    assert_eq!(tally["log"][0]["faults"], json!(["error"]));

    // The same seed again: the very same requests fail.
    set_faults(&fleet, fixtures::BANK_B, json!({"seed": 7})).await;
    for (i, expected) in statuses.iter().enumerate() {
        let (status, _) = post_raw(
            &inquiries_url(&fleet),
            &zhang_san_json(&format!("Q-er-{i}")),
        )
        .await;
        assert_eq!(status, *expected, "request {i}");
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn injected_errors_speak_each_dialect_with_the_configured_status() {
    let fleet = MockFleet::start(&MockConfig::standard().with_iso_bank(), true)
        .await
        .expect("the fleet starts");
    for agency in [fixtures::BANK_A, fixtures::REGISTRY_X, fixtures::BANK_D] {
        set_faults(
            &fleet,
            agency,
            json!({"error_rate": 1.0, "error_status": 502}),
        )
        .await;
    }
    let (status, bytes) = post_xml(&fleet, cxqq("P-502", &[zhang_san("Q-502")])).await;
    assert_eq!(status, 502);
    let text = gb18030(&bytes);
    assert_eq!(value(&text, "CWDM"), Some("E999"));
    assert!(value(&text, "CWMS").is_some());

    let (status, body) = get_json(&poll_url(&fleet, "Q-502%2Fr")).await;
    assert_eq!(status, 502);
    assert_eq!(body["RESULT"], "0502");
    assert_eq!(
        body["CXQQDH"], "Q-502/r",
        "a poll's error names its request number"
    );

    let (status, _, bytes) = post_bytes(
        &url(&fleet, fixtures::BANK_D, "/iso/v1/account-inquiries"),
        ISO_CONTENT_TYPE,
        iso_request("M-502", &[wang_wu_inq("Q-502-d")]).into_bytes(),
    )
    .await;
    assert_eq!(status, 502);
    let text = String::from_utf8(bytes).expect("UTF-8");
    assert!(text.contains(r#"<Err Cd="BUSY">"#), "{text}");

    // Nothing was processed.
    let (_, ledger) = get_json(&url(&fleet, fixtures::BANK_A, "/_mock/ledger")).await;
    assert_eq!(ledger["requests"], json!([]));
    assert_eq!(ledger["injected"]["counts"]["error"], 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_reset_closes_the_connection_without_any_answer() {
    let fleet = standard().await;
    set_faults(&fleet, fixtures::BANK_B, json!({"reset_rate": 1.0})).await;
    let client = client();
    for i in 0..3 {
        let sent = client
            .post(inquiries_url(&fleet))
            .json(&zhang_san_json(&format!("Q-rst-{i}")))
            .send()
            .await;
        let error = sent.expect_err("no HTTP answer at all, not even a status line");
        assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    }
    set_faults(&fleet, fixtures::REGISTRY_X, json!({"reset_rate": 1.0})).await;
    let sent = client.get(poll_url(&fleet, "Q-rst-r")).send().await;
    assert!(sent.is_err(), "{sent:?}");

    // Half of them, then none: the same client carries on.
    set_faults(
        &fleet,
        fixtures::BANK_B,
        json!({"reset_rate": 0.5, "seed": 3}),
    )
    .await;
    let mut answered = 0;
    for i in 0..40 {
        let sent = client
            .post(inquiries_url(&fleet))
            .json(&zhang_san_json(&format!("Q-half-{i}")))
            .send()
            .await;
        if let Ok(response) = sent {
            assert_eq!(response.status(), 200);
            answered += 1;
        }
    }
    assert!((8..=32).contains(&answered), "{answered} of 40 answered");
    let tally = injected(&fleet, fixtures::BANK_B).await;
    assert_eq!(tally["counts"]["reset"], 3 + 40 - answered);

    set_faults(&fleet, fixtures::BANK_B, json!({"reset_rate": 0})).await;
    let (status, reply) = post_json(&inquiries_url(&fleet), &zhang_san_json("Q-rst-0")).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply["outcome"], "FOUND",
        "a reset request was never processed"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn garbage_is_a_200_that_neither_an_xml_nor_a_json_parser_takes() {
    let fleet = standard().await;
    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "garbage"})).await;
    let (status, bytes) = post_raw(&inquiries_url(&fleet), &zhang_san_json("Q-gbg")).await;
    assert_eq!(status, 200);
    assert!(bytes.len() >= 16);
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    assert!(std::str::from_utf8(&bytes).is_err());

    set_faults(&fleet, fixtures::BANK_A, json!({"garbage_rate": 1.0})).await;
    let (status, bytes) = post_xml(&fleet, cxqq("P-gbg", &[zhang_san("Q-gbg-x")])).await;
    assert_eq!(status, 200);
    let (text, _, had_errors) = encoding_rs::GB18030.decode(&bytes);
    assert!(had_errors || !well_formed_xml(&text), "not XML: {text:?}");
    assert!(!text.contains("CXFKPC"));

    // The request was processed all the same: a retry gets the answer.
    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "normal"})).await;
    let (_, ledger) = get_json(&url(&fleet, fixtures::BANK_B, "/_mock/ledger")).await;
    assert_eq!(ledger["requests"][0]["request_number"], "Q-gbg");
    assert_eq!(ledger["injected"]["counts"]["garbage"], 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_malformed_rate_cuts_that_share_of_replies_in_half() {
    let fleet = standard().await;
    let (_, whole) = post_raw(&inquiries_url(&fleet), &zhang_san_json("Q-mr")).await;
    set_faults(
        &fleet,
        fixtures::BANK_B,
        json!({"malformed_rate": 0.5, "seed": 11}),
    )
    .await;
    let mut cut = 0;
    for _ in 0..40 {
        let (status, bytes) = post_raw(&inquiries_url(&fleet), &zhang_san_json("Q-mr")).await;
        assert_eq!(status, 200);
        if bytes == whole {
            continue;
        }
        assert_eq!(bytes.len(), whole.len() / 2);
        assert_eq!(&whole[..bytes.len()], &bytes[..]);
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
        cut += 1;
    }
    assert!((8..=32).contains(&cut), "{cut} of 40 cut");
    assert_eq!(
        injected(&fleet, fixtures::BANK_B).await["counts"]["malformed"],
        cut
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_wrong_encoding_declares_utf8_over_gb18030_bytes() {
    let fleet = standard().await;
    set_faults(&fleet, fixtures::BANK_A, json!({"wrong_encoding": true})).await;
    let response = client()
        .post(url(&fleet, fixtures::BANK_A, "/ckxt/cxqq"))
        .header("Content-Type", "application/xml; charset=GB18030")
        .body(cxqq("P-enc", &[zhang_san("Q-enc")]))
        .send()
        .await
        .expect("bank-a answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/xml; charset=UTF-8"
    );
    let bytes = response.bytes().await.expect("a body");
    assert!(bytes.starts_with(br#"<?xml version="1.0" encoding="UTF-8"?>"#));
    assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8 at all");
    let text = gb18030(&bytes);
    assert_eq!(value(&text, "CXJG"), Some("1"));
    assert!(
        text.contains(fixtures::ZHANG_SAN_BANK_A_DEBIT_BRANCH),
        "{text}"
    );

    // A UTF-8 reply becomes GB18030 under its UTF-8 claim.
    set_faults(&fleet, fixtures::BANK_B, json!({"wrong_encoding": true})).await;
    let response = client()
        .post(inquiries_url(&fleet))
        .json(&zhang_san_json("Q-enc-j"))
        .send()
        .await
        .expect("bank-b answers");
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=UTF-8"
    );
    let bytes = response.bytes().await.expect("a body");
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    let reply: Value = serde_json::from_str(&gb18030(&bytes)).expect("JSON once decoded");
    assert_eq!(reply["outcome"], "FOUND");
    assert_eq!(
        injected(&fleet, fixtures::BANK_B).await["counts"]["wrong_encoding"],
        1
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_oversized_reply_is_padded_and_still_valid() {
    let fleet = standard().await;
    set_faults(&fleet, fixtures::BANK_B, json!({"oversize_bytes": 200_000})).await;
    let (status, bytes) = post_raw(&inquiries_url(&fleet), &zhang_san_json("Q-big")).await;
    assert_eq!(status, 200);
    assert!(bytes.len() >= 200_000, "{} bytes", bytes.len());
    let reply: Value = serde_json::from_slice(&bytes).expect("still JSON");
    assert_eq!(reply["outcome"], "FOUND");

    set_faults(&fleet, fixtures::BANK_A, json!({"oversize_bytes": 100_000})).await;
    let (status, bytes) = post_xml(&fleet, cxqq("P-big", &[zhang_san("Q-big-x")])).await;
    assert_eq!(status, 200);
    assert!(bytes.len() >= 100_000, "{} bytes", bytes.len());
    let text = gb18030(&bytes);
    assert!(well_formed_xml(&text), "still XML");
    assert_eq!(value(&text, "CXJG"), Some("1"));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_trickled_reply_comes_one_byte_at_a_time() {
    const MS_PER_BYTE: u64 = 3;
    let fleet = standard().await;
    let (_, whole) = post_raw(&inquiries_url(&fleet), &wang_wu_json("Q-slow")).await;
    set_faults(
        &fleet,
        fixtures::BANK_B,
        json!({"trickle_ms_per_byte": MS_PER_BYTE}),
    )
    .await;
    let started = Instant::now();
    let mut response = client()
        .post(inquiries_url(&fleet))
        .json(&wang_wu_json("Q-slow"))
        .send()
        .await
        .expect("bank-b answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(whole.len() as u64));
    let mut body = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = response.chunk().await.expect("the body arrives") {
        body.extend_from_slice(&chunk);
        chunks += 1;
    }
    let took = started.elapsed();
    assert_eq!(body, whole);
    assert!(chunks > 1, "streamed, not at once");
    let least = Duration::from_millis(MS_PER_BYTE * whole.len() as u64);
    assert!(took >= least, "{took:?} for {} bytes", whole.len());
    fleet.shutdown().await;
}

#[tokio::test]
async fn beyond_the_rate_limit_requests_get_429_with_retry_after() {
    const LIMIT: usize = 3;
    let fleet = standard().await;
    set_faults(
        &fleet,
        fixtures::BANK_B,
        json!({"rate_limit_per_second": LIMIT}),
    )
    .await;
    let client = client();
    let started = Instant::now();
    let mut answers = Vec::new();
    for i in 0..10 {
        let response = client
            .post(inquiries_url(&fleet))
            .json(&zhang_san_json(&format!("Q-429-{i}")))
            .send()
            .await
            .expect("bank-b answers");
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON");
        answers.push((status, retry_after, body, started.elapsed()));
    }
    for (status, retry_after, body, _) in &answers[..LIMIT] {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(*retry_after, None);
    }
    // Every request sent within the second of the first admitted one is
    // beyond the limit (on a slow machine, later ones may be admitted).
    for (status, retry_after, body, at) in &answers[LIMIT..] {
        if *at < Duration::from_secs(1) {
            assert_eq!(*status, 429, "{body}");
        }
        if *status == 429 {
            assert_eq!(body["error"]["code"], "RATE_LIMITED");
            assert!(
                retry_after.is_some_and(|s| s >= 1),
                "Retry-After {retry_after:?}"
            );
        }
    }
    let limited = answers.iter().filter(|a| a.0 == 429).count();
    assert!(limited > 0);
    assert_eq!(
        injected(&fleet, fixtures::BANK_B).await["counts"]["rate_limited"],
        limited
    );
    // Once the second has passed, requests are admitted again.
    eventually(Duration::from_secs(5), || async {
        let (status, _) = post_raw(&inquiries_url(&fleet), &zhang_san_json("Q-429-later")).await;
        (status == 200).then_some(())
    })
    .await;

    set_faults(&fleet, fixtures::REGISTRY_X, json!({"throttle_rate": 1.0})).await;
    let response = client
        .post(submit_url(&fleet))
        .json(&submission(
            "Q-429-r",
            fixtures::ZHANG_SAN_NAME,
            fixtures::ZHANG_SAN_ID,
        ))
        .send()
        .await
        .expect("registry-x answers");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["RESULT"], "0429");
    let (status, _) = post_xml(&fleet, cxqq("P-429", &[zhang_san("Q-429-x")])).await;
    assert_eq!(status, 200, "bank-a is not throttled");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_latency_tail_delays_some_requests_far_more_than_most() {
    let fleet = standard().await;
    set_faults(
        &fleet,
        fixtures::BANK_B,
        json!({"latency_ms": 5, "latency": {"p50_ms": 10, "p99_ms": 300, "max_ms": 600}, "seed": 5}),
    )
    .await;
    let mut took = Vec::new();
    for i in 0..40 {
        let started = Instant::now();
        let (status, _) = post_raw(
            &inquiries_url(&fleet),
            &zhang_san_json(&format!("Q-tail-{i}")),
        )
        .await;
        assert_eq!(status, 200);
        took.push(started.elapsed());
    }
    took.sort();
    assert!(took[0] >= Duration::from_millis(5), "the fixed part always");
    assert!(
        took[39] >= Duration::from_millis(60),
        "the slowest of 40 is in the tail: {took:?}"
    );
    let (_, faults) = get_json(&url(&fleet, fixtures::BANK_B, "/_mock/faults")).await;
    assert_eq!(
        faults["latency"],
        json!({"p50_ms": 10, "p99_ms": 300, "max_ms": 600})
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_inspection_api_is_never_faulted() {
    let fleet = standard().await;
    let everything = json!({
        "mode": "error", "latency_ms": 3000, "reset_rate": 1.0, "error_rate": 1.0,
        "garbage_rate": 1.0, "malformed_rate": 1.0, "wrong_encoding": true,
        "oversize_bytes": 1_000_000, "trickle_ms_per_byte": 1000,
        "rate_limit_per_second": 1, "throttle_rate": 1.0,
        "latency": {"p50_ms": 3000, "p99_ms": 3000}
    });
    for agency in [fixtures::BANK_A, fixtures::BANK_B, fixtures::REGISTRY_X] {
        set_faults(&fleet, agency, everything.clone()).await;
        let started = Instant::now();
        for _ in 0..5 {
            for path in [
                "/_mock/ledger",
                "/_mock/faults",
                "/_mock/faults?all=true",
                "/_mock/clock",
            ] {
                let (status, body) = get_json(&url(&fleet, agency, path)).await;
                assert_eq!(status, 200, "{agency}{path}: {body}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "no latency: {:?}",
            started.elapsed()
        );
        let tally = injected(&fleet, agency).await;
        assert_eq!(tally["requests"], 0, "{agency}: inspection is not counted");
        let (status, _) = post_json(
            &url(&fleet, agency, "/_mock/clock"),
            &json!({"today": null}),
        )
        .await;
        assert_eq!(status, 200);
    }
    // The dialect itself is throttled straight away (no latency).
    let (status, _) = post_raw(&inquiries_url(&fleet), &zhang_san_json("Q-all")).await;
    assert_eq!(
        status, 429,
        "the first is admitted by the limit but throttled by the rate"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn faults_change_field_by_field_and_get_shows_them_all() {
    let fleet = standard().await;
    let agency = fixtures::BANK_B;
    set_faults(&fleet, agency, json!({"error_rate": 0.25})).await;
    set_faults(
        &fleet,
        agency,
        json!({"latency": {"p50_ms": 20, "p99_ms": 400}}),
    )
    .await;
    set_faults(&fleet, agency, json!({"throttle_rate": 0.1, "seed": 42})).await;
    assert_eq!(
        faults_of(&fleet, agency).await,
        json!({
            "latency_ms": 0, "mode": "normal", "result_delay_ms": 300,
            "error_rate": 0.25, "latency": {"p50_ms": 20, "p99_ms": 400},
            "throttle_rate": 0.1, "seed": 42
        })
    );
    let (_, all) = get_json(&url(&fleet, agency, "/_mock/faults?all=true")).await;
    assert_eq!(
        all,
        json!({
            "latency_ms": 0, "mode": "normal", "result_delay_ms": 300, "seed": 42,
            "latency": {"p50_ms": 20, "p99_ms": 400}, "error_rate": 0.25,
            "error_status": 503, "reset_rate": 0.0, "malformed_rate": 0.0,
            "garbage_rate": 0.0, "wrong_encoding": false, "oversize_bytes": 0,
            "trickle_ms_per_byte": 0, "rate_limit_per_second": 0, "throttle_rate": 0.1
        })
    );
    let (status, now) = post_json(
        &url(&fleet, agency, "/_mock/faults"),
        &json!({"latency": null, "seed": null, "error_rate": 0, "throttle_rate": 0}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        now,
        json!({"latency_ms": 0, "mode": "normal", "result_delay_ms": 300})
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn bad_fault_settings_are_400s_and_change_nothing() {
    let fleet = standard().await;
    let agency = fixtures::REGISTRY_X;
    set_faults(&fleet, agency, json!({"error_rate": 0.5})).await;
    let before = faults_of(&fleet, agency).await;
    for bad in [
        json!({"error_rate": 1.5}),
        json!({"reset_rate": -0.1}),
        json!({"error_rate": "often"}),
        json!({"error_status": 200}),
        json!({"error_status": 70000}),
        json!({"latency": {"p50_ms": 0, "p99_ms": 10}}),
        json!({"latency": {"p50_ms": 100, "p99_ms": 10}}),
        json!({"latency": {"p50_ms": 10, "p99_ms": 100, "tail": 3}}),
        json!({"latency": 5}),
        json!({"trickle_ms_per_byte": 1_000_000}),
        json!({"oversize_bytes": 1u64 << 40}),
        json!({"rate_limit_per_second": -1}),
        json!({"mode": "explode"}),
        json!({"surprise": true}),
        json!([1, 2]),
        json!({"error_rate": 0.1, "garbage_rate": 2}),
    ] {
        let (status, body) = post_json(&url(&fleet, agency, "/_mock/faults"), &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let response = client()
        .post(url(&fleet, agency, "/_mock/faults"))
        .body("not json")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 400);
    assert_eq!(faults_of(&fleet, agency).await, before);
    fleet.shutdown().await;
}

#[tokio::test]
async fn faults_can_be_configured_per_agency() {
    let text = r#"
        seed = 1
        population = 20
        [[agencies]]
        id = "bank-b"
        dialect = "bank-json"
        [agencies.faults]
        error_rate = 1.0
        error_status = 504
        seed = 9
        latency = { p50_ms = 1, p99_ms = 2 }
    "#;
    let config: MockConfig = toml::from_str(text).expect("parses");
    config.validate().expect("valid");
    let fleet = start(&config).await;
    let faults = faults_of(&fleet, fixtures::BANK_B).await;
    assert_eq!(faults["error_rate"], 1.0);
    assert_eq!(faults["error_status"], 504);
    assert_eq!(faults["seed"], 9);
    let (status, body) = post_json(&inquiries_url(&fleet), &zhang_san_json("Q-cfg")).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "GATEWAY_TIMEOUT");
    fleet.shutdown().await;

    let wrong = r#"
        [[agencies]]
        id = "bank-b"
        dialect = "bank-json"
        faults = { error_rate = 3.0, error_status = 99, latency = { p50_ms = 9, p99_ms = 1 } }
    "#;
    let config: MockConfig = toml::from_str(wrong).expect("parses");
    let error = config.validate().expect_err("invalid").to_string();
    assert!(
        error.contains("agency bank-b: faults: error_rate"),
        "{error}"
    );
    assert!(error.contains("error_status"), "{error}");
    assert!(error.contains("latency.p99_ms"), "{error}");
    assert!(
        toml::from_str::<MockConfig>(
            "[[agencies]]\nid = \"b\"\ndialect = \"bank-json\"\nfaults = { nonsense = 1 }\n"
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_whole_bank_fleet_takes_one_fault_setting_but_fails_out_of_step() {
    let fleet = MockBankFleet::start(20_241_127, 200, 8, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the bank fleet starts");
    let base = fleet.base_url();
    let (status, body) = post_json(
        &format!("{base}/banks/_mock/faults"),
        &json!({"error_rate": 0.5, "seed": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["banks"], 8);
    let (status, body) = post_json(
        &format!("{base}/banks/_mock/faults"),
        &json!({"error_rate": 9}),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Each bank's first few requests: the banks' generators differ.
    let mut patterns = std::collections::BTreeSet::new();
    for id in fleet.bank_ids() {
        let bank = fleet.agency_base_url(&id).expect("a bank");
        let (_, faults) = get_json(&format!("{bank}/_mock/faults")).await;
        assert_eq!(faults["error_rate"], 0.5, "{id}");
        let mut pattern = Vec::new();
        for i in 0..8 {
            let (path, body) = match fleet.bank_dialect(&id) {
                Some(MockDialect::BankJson) => (
                    "/api/v1/asset-inquiries",
                    serde_json::to_vec(&wang_wu_json(&format!("Q-fl-{i}"))).expect("JSON"),
                ),
                Some(MockDialect::IsoBankXml) => ("/iso/v1/account-inquiries", b"<x/>".to_vec()),
                _ => ("/ckxt/cxqq", b"<x/>".to_vec()),
            };
            let status = client()
                .post(format!("{bank}{path}"))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .expect("an answer")
                .status()
                .as_u16();
            assert!(matches!(status, 200 | 400 | 503), "{id}{path}: {status}");
            pattern.push(status == 503);
        }
        patterns.insert(pattern);
    }
    assert!(patterns.len() > 1, "the banks fail in step: {patterns:?}");
    fleet.shutdown().await;
}
