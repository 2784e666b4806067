//! Injected faults, latency, and agencies going down.

use std::time::{Duration, Instant};

use mock_agencies::{MockConfig, fixtures};
use serde_json::{Value, json};

use crate::bank_json::{inquiries_url, inquiry};
use crate::common::*;

fn zhang_san_json(request_number: &str) -> Value {
    inquiry(
        request_number,
        fixtures::ZHANG_SAN_NAME,
        fixtures::ZHANG_SAN_ID,
    )
}

#[tokio::test]
async fn a_reply_cut_off_in_the_middle_then_a_retry_gets_it_whole() {
    let fleet = standard().await;
    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "malformed"})).await;
    let response = client()
        .post(inquiries_url(&fleet))
        .json(&zhang_san_json("Q-cut"))
        .send()
        .await
        .expect("bank-b answers");
    assert_eq!(response.status(), 200);
    let cut = response.bytes().await.expect("a body");
    assert!(!cut.is_empty());
    assert!(
        serde_json::from_slice::<Value>(&cut).is_err(),
        "the body is cut off"
    );

    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "normal"})).await;
    let (status, whole) = post_json(&inquiries_url(&fleet), &zhang_san_json("Q-cut")).await;
    assert_eq!(status, 200);
    assert_eq!(whole["outcome"], "FOUND");
    let whole_bytes = serde_json::to_vec(&whole).expect("serialises");
    assert!(cut.len() < whole_bytes.len());
    assert_eq!(&whole_bytes[..cut.len()], &cut[..], "the same answer, cut");

    set_faults(&fleet, fixtures::BANK_A, json!({"mode": "malformed"})).await;
    let (status, bytes) = post_xml(&fleet, cxqq("P-cut", &[zhang_san("Q-cut-x")])).await;
    assert_eq!(status, 200);
    let text = encoding_rs::GB18030.decode(&bytes).0;
    assert!(!text.contains("</CXFKPC>"));
    fleet.shutdown().await;
}

#[tokio::test]
async fn in_error_mode_every_agency_answers_503_with_its_own_error_body() {
    let fleet = standard().await;
    for agency in [fixtures::BANK_A, fixtures::BANK_B, fixtures::REGISTRY_X] {
        set_faults(&fleet, agency, json!({"mode": "error"})).await;
    }
    let response = client()
        .post(inquiries_url(&fleet))
        .json(&zhang_san_json("Q-503"))
        .send()
        .await
        .expect("bank-b answers");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");

    let (status, bytes) = post_xml(&fleet, cxqq("P-503", &[zhang_san("Q-503-x")])).await;
    assert_eq!(status, 503);
    assert!(value(&gb18030(&bytes), "CWDM").is_some());

    let (status, body) = get_json(&url(&fleet, fixtures::REGISTRY_X, "/bdc/api/cxjg/Q-503")).await;
    assert_eq!(status, 503);
    assert_eq!(body["RESULT"], "0503");

    // Nothing was processed: once the fault is lifted, the bank has no
    // answer stored for the request number and answers it afresh.
    let (_, ledger) = get_json(&url(&fleet, fixtures::BANK_B, "/_mock/ledger")).await;
    assert_eq!(ledger["requests"], json!([]));
    fleet.shutdown().await;
}

#[tokio::test]
async fn in_refuse_mode_requests_are_refused_and_not_remembered() {
    let fleet = standard().await;
    for agency in [fixtures::BANK_A, fixtures::BANK_B, fixtures::REGISTRY_X] {
        set_faults(&fleet, agency, json!({"mode": "refuse"})).await;
    }
    let (_, reply) = post_json(&inquiries_url(&fleet), &zhang_san_json("Q-ref")).await;
    assert_eq!(reply["outcome"], "REJECTED");
    assert!(reply["reason"].as_str().is_some_and(|r| !r.is_empty()));

    let (_, bytes) = post_xml(&fleet, cxqq("P-ref", &[zhang_san("Q-ref-x")])).await;
    let text = gb18030(&bytes);
    assert_eq!(value(&text, "CXJG"), Some("9"));
    assert!(value(&text, "JJYY").is_some());

    let (_, reply) = post_json(
        &url(&fleet, fixtures::REGISTRY_X, "/bdc/api/cxqq"),
        &json!({"CXQQDH": "Q-ref-r", "AH": CASE, "FYDM": "甘0503", "FYMC": "天水市麦积区人民法院",
                "XM": "张三", "ZJZL": "01", "ZJH": fixtures::ZHANG_SAN_ID,
                "CBR": "李明", "GZZBH": "G1", "GWZBH": "ZX1"}),
    )
    .await;
    assert_eq!(reply["RESULT"], "1001");

    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "normal"})).await;
    let (_, reply) = post_json(&inquiries_url(&fleet), &zhang_san_json("Q-ref")).await;
    assert_eq!(reply["outcome"], "FOUND");
    fleet.shutdown().await;
}

#[tokio::test]
async fn latency_set_at_run_time_or_in_config_delays_every_answer() {
    let fleet = standard().await;
    set_faults(&fleet, fixtures::BANK_B, json!({"latency_ms": 400})).await;
    let (_, faults) = get_json(&url(&fleet, fixtures::BANK_B, "/_mock/faults")).await;
    assert_eq!(
        faults,
        json!({"latency_ms": 400, "mode": "normal", "result_delay_ms": 300})
    );
    let started = Instant::now();
    let (status, _) = post_json(&inquiries_url(&fleet), &zhang_san_json("Q-slow")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    // The inspection API itself is never slowed down.
    let (status, _) = get_json(&url(&fleet, fixtures::BANK_B, "/_mock/faults")).await;
    assert_eq!(status, 200);
    fleet.shutdown().await;

    let mut config = MockConfig::standard();
    config.agencies[0].latency_ms = 300;
    let fleet = start(&config).await;
    let started = Instant::now();
    let (status, _) = post_xml(&fleet, cxqq("P-slow", &[zhang_san("Q-slow-x")])).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_bad_fault_setting_is_a_400() {
    let fleet = standard().await;
    let (status, body) = post_json(
        &url(&fleet, fixtures::BANK_A, "/_mock/faults"),
        &json!({"mode": "explode"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].is_string());
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_stopped_agency_refuses_connections_while_the_others_carry_on() {
    let mut fleet = standard().await;
    let bank_b = fleet.base_url(fixtures::BANK_B).expect("bank-b");
    let addr = fleet
        .agencies()
        .into_iter()
        .find(|(id, _)| id == fixtures::BANK_B)
        .map(|(_, addr)| addr)
        .expect("bank-b's address");
    // A pooled keep-alive connection must not keep the agency reachable.
    let client = client();
    let before = client
        .get(format!("{bank_b}/_mock/faults"))
        .send()
        .await
        .expect("up before");
    assert_eq!(before.status(), 200);

    assert!(fleet.stop_agency(fixtures::BANK_B).await);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let after = client
        .post(format!("{bank_b}/api/v1/asset-inquiries"))
        .json(&zhang_san_json("Q-down"))
        .send()
        .await;
    assert!(after.is_err(), "bank-b is down: {after:?}");

    let (status, _) = post_xml(&fleet, cxqq("P-up", &[zhang_san("Q-up")])).await;
    assert_eq!(status, 200, "bank-a still answers");
    assert!(
        !fleet.stop_agency(fixtures::BANK_B).await,
        "already stopped"
    );
    assert!(!fleet.stop_agency("no-such-agency").await);
    assert_eq!(fleet.base_url(fixtures::BANK_B), Some(bank_b));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_registry_result_delay_can_be_changed_at_run_time() {
    let fleet = standard().await;
    set_faults(
        &fleet,
        fixtures::REGISTRY_X,
        json!({"result_delay_ms": 60_000}),
    )
    .await;
    let (_, faults) = get_json(&url(&fleet, fixtures::REGISTRY_X, "/_mock/faults")).await;
    assert_eq!(faults["result_delay_ms"], 60_000);
    let (_, reply) = post_json(
        &url(&fleet, fixtures::REGISTRY_X, "/bdc/api/cxqq"),
        &json!({"CXQQDH": "Q-delay", "AH": CASE, "FYDM": "甘0503", "FYMC": "天水市麦积区人民法院",
                "XM": "张三", "ZJZL": "01", "ZJH": fixtures::ZHANG_SAN_ID,
                "CBR": "李明", "GZZBH": "G1", "GWZBH": "ZX1"}),
    )
    .await;
    assert_eq!(reply["RESULT"], "0000");
    let (_, poll) = get_json(&url(&fleet, fixtures::REGISTRY_X, "/bdc/api/cxjg/Q-delay")).await;
    assert_eq!(poll["RESULT"], "0001", "still processing a minute from now");
    fleet.shutdown().await;
}
