//! bank-b: one subject per JSON call.

use mock_agencies::fixtures;
use serde_json::{Value, json};

use crate::common::*;

pub fn inquiry(request_number: &str, name: &str, id_number: &str) -> Value {
    json!({
        "request_number": request_number,
        "case_number": CASE,
        "court": {"code": "甘0503", "name": "天水市麦积区人民法院"},
        "subject": {"type": "individual", "name": name, "id_type": "RESIDENT_ID", "id_number": id_number},
        "officers": [{"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"}]
    })
}

pub fn inquiries_url(fleet: &mock_agencies::MockFleet) -> String {
    url(fleet, fixtures::BANK_B, "/api/v1/asset-inquiries")
}

#[tokio::test]
async fn bank_b_finds_zhang_sans_savings_account() {
    let fleet = standard().await;
    let (status, reply) = post_json(
        &inquiries_url(&fleet),
        &inquiry("Q-json-1", fixtures::ZHANG_SAN_NAME, fixtures::ZHANG_SAN_ID),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reply["request_number"], "Q-json-1");
    assert_eq!(reply["outcome"], "FOUND");
    assert_eq!(reply["reason"], Value::Null);
    let answered_at = reply["answered_at"].as_str().expect("answered_at");
    assert!(answered_at.ends_with("+08:00"), "{answered_at}");
    let accounts = reply["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 1);
    let a = &accounts[0];
    assert_eq!(a["account_number"], fixtures::ZHANG_SAN_BANK_B_ACCOUNT);
    assert_eq!(a["product"], fixtures::ZHANG_SAN_BANK_B_PRODUCT);
    assert_eq!(a["currency"], "CNY");
    assert_eq!(a["ledger_balance"], "56000.00");
    assert_eq!(a["available_balance"], "56000.00");
    assert_eq!(a["branch"], fixtures::ZHANG_SAN_BANK_B_BRANCH);
    assert_eq!(a["status"], "ACTIVE");
    assert_eq!(a["holds"], json!([]));
    fleet.shutdown().await;
}

#[tokio::test]
async fn bank_b_knows_nothing_of_wang_wu() {
    let fleet = standard().await;
    let (status, reply) = post_json(
        &inquiries_url(&fleet),
        &inquiry("Q-json-2", fixtures::WANG_WU_NAME, fixtures::WANG_WU_ID),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reply["outcome"], "NOT_FOUND");
    assert_eq!(reply["accounts"], json!([]));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_legacy_15_digit_number_finds_the_same_person() {
    let fleet = standard().await;
    let (_, reply) = post_json(
        &inquiries_url(&fleet),
        &inquiry("Q-json-15", fixtures::ZHANG_SAN_NAME, "360426910101007"),
    )
    .await;
    assert_eq!(reply["outcome"], "FOUND");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_repeated_request_number_gets_the_first_answer() {
    let fleet = standard().await;
    let body = inquiry(
        "Q-json-dup",
        fixtures::ZHANG_SAN_NAME,
        fixtures::ZHANG_SAN_ID,
    );
    let (_, first) = post_json(&inquiries_url(&fleet), &body).await;
    let (_, second) = post_json(&inquiries_url(&fleet), &body).await;
    assert_eq!(first, second);
    let (_, ledger) = get_json(&url(&fleet, fixtures::BANK_B, "/_mock/ledger")).await;
    let entries = ledger["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["request_number"] == "Q-json-dup")
        .count();
    assert_eq!(entries, 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_broken_request_gets_a_400_error_body() {
    let fleet = standard().await;
    let client = client();
    for body in [
        "not json".to_owned(),
        "{}".to_owned(),
        json!({"request_number": "Q-x", "case_number": CASE}).to_string(),
        {
            let mut b = inquiry("Q-no-officers", "张三", fixtures::ZHANG_SAN_ID);
            b["officers"] = json!([]);
            b.to_string()
        },
    ] {
        let response = client
            .post(inquiries_url(&fleet))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("bank-b answers");
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.expect("a JSON error");
        assert_eq!(error["error"]["code"], "INVALID_REQUEST");
        assert!(error["error"]["message"].is_string());
    }
    let mut odd = inquiry("Q-odd", "张三", fixtures::ZHANG_SAN_ID);
    odd["subject"]["id_type"] = json!("PASSPORT");
    let (status, reply) = post_json(&inquiries_url(&fleet), &odd).await;
    assert_eq!(status, 200);
    assert_eq!(reply["outcome"], "REJECTED");
    assert!(reply["reason"].is_string());
    fleet.shutdown().await;
}
