//! registry-x: submit, then poll until the result is ready.

use std::time::Duration;

use mock_agencies::{MockConfig, MockFleet, fixtures};
use serde_json::{Value, json};

use crate::common::*;

pub fn submission(request_number: &str, name: &str, id_number: &str) -> Value {
    json!({
        "CXQQDH": request_number, "AH": CASE, "FYDM": "甘0503", "FYMC": "天水市麦积区人民法院",
        "XM": name, "ZJZL": "01", "ZJH": id_number,
        "CBR": "李明", "GZZBH": "G620503001", "GWZBH": "ZX620503001"
    })
}

pub async fn registry_with_delay(result_delay_ms: u64) -> MockFleet {
    let mut config = MockConfig::standard();
    for a in &mut config.agencies {
        a.result_delay_ms = result_delay_ms;
    }
    start(&config).await
}

pub fn submit_url(fleet: &MockFleet) -> String {
    url(fleet, fixtures::REGISTRY_X, "/bdc/api/cxqq")
}

pub fn poll_url(fleet: &MockFleet, request_number: &str) -> String {
    url(
        fleet,
        fixtures::REGISTRY_X,
        &format!("/bdc/api/cxjg/{request_number}"),
    )
}

#[tokio::test]
async fn the_registry_takes_a_ticket_then_shows_zhang_sans_sealed_flat() {
    let fleet = registry_with_delay(1500).await;
    let (status, accepted) = post_json(
        &submit_url(&fleet),
        &submission("Q-reg-1", fixtures::ZHANG_SAN_NAME, fixtures::ZHANG_SAN_ID),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(accepted["RESULT"], "0000");
    assert_eq!(accepted["CXQQDH"], "Q-reg-1");
    assert_eq!(accepted["MSG"], "已受理");
    let ticket = accepted["SLBH"].as_str().expect("a ticket").to_owned();
    assert_eq!(ticket.len(), 13);

    let (_, first_poll) = get_json(&poll_url(&fleet, "Q-reg-1")).await;
    assert_eq!(first_poll["RESULT"], "0001", "not ready before the delay");
    assert_eq!(first_poll["MSG"], "处理中");

    let poll = &poll_url(&fleet, "Q-reg-1");
    let done = eventually(Duration::from_secs(10), || async move {
        let (status, reply) = get_json(poll).await;
        assert_eq!(status, 200);
        match reply["RESULT"].as_str() {
            Some("0001") => None,
            Some("0000") => Some(reply),
            other => panic!("unexpected RESULT {other:?}"),
        }
    })
    .await;
    assert_eq!(done["CXQQDH"], "Q-reg-1");
    assert_eq!(done["CXJG"], "1");
    assert_eq!(done["JJYY"], "");
    let units = done["BDCLIST"].as_array().expect("units");
    assert_eq!(units.len(), 1);
    let u = &units[0];
    assert_eq!(u["BDCDYH"], fixtures::ZHANG_SAN_UNIT_NUMBER);
    assert_eq!(u["BDCQZH"], fixtures::ZHANG_SAN_CERTIFICATE_NUMBER);
    assert_eq!(u["ZL"], fixtures::ZHANG_SAN_UNIT_LOCATION);
    assert_eq!(u["MJ"], "89.50");
    assert_eq!(u["YT"], "住宅");
    assert_eq!(u["QLRLIST"], json!([{"QLRMC": "张三", "GYFE": "1/1"}]));
    assert_eq!(u["DYZT"], "1");
    assert_eq!(
        u["CFLIST"],
        json!([{"CFJG": "秦州区人民法院", "CFWH": "(2023)甘0502执88号",
                "CFKSRQ": "2024/03/01", "CFJSRQ": "2027/02/28", "LHSX": 0}])
    );

    // A resubmission is recognised: same ticket, and the result stays.
    let (_, again) = post_json(
        &submit_url(&fleet),
        &submission("Q-reg-1", fixtures::ZHANG_SAN_NAME, fixtures::ZHANG_SAN_ID),
    )
    .await;
    assert_eq!(again["SLBH"], ticket.as_str());
    let (_, later) = get_json(&poll_url(&fleet, "Q-reg-1")).await;
    assert_eq!(later, done);

    let (_, ledger) = get_json(&url(
        &fleet,
        fixtures::REGISTRY_X,
        &format!("/_mock/ledger?holder={}", fixtures::ZHANG_SAN_ID),
    ))
    .await;
    assert_eq!(ledger["units"].as_array().map(Vec::len), Some(1));
    let kinds: Vec<&str> = ledger["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["inquiry", "poll"]);
    fleet.shutdown().await;
}

#[tokio::test]
async fn wang_wu_has_no_real_estate() {
    let fleet = registry_with_delay(0).await;
    let (_, accepted) = post_json(
        &submit_url(&fleet),
        &submission("Q-reg-2", fixtures::WANG_WU_NAME, fixtures::WANG_WU_ID),
    )
    .await;
    assert_eq!(accepted["RESULT"], "0000");
    let poll = &poll_url(&fleet, "Q-reg-2");
    let done = eventually(Duration::from_secs(10), || async move {
        let (_, reply) = get_json(poll).await;
        (reply["RESULT"] == "0000").then_some(reply)
    })
    .await;
    assert_eq!(done["CXJG"], "0");
    assert_eq!(done["BDCLIST"], json!([]));
    fleet.shutdown().await;
}

#[tokio::test]
async fn polling_an_unknown_request_number_is_a_404() {
    let fleet = standard().await;
    let (status, reply) = get_json(&poll_url(&fleet, "Q-never-sent")).await;
    assert_eq!(status, 404);
    assert_eq!(reply["RESULT"], "0404");
    assert_eq!(reply["CXQQDH"], "Q-never-sent");
    assert_eq!(reply["MSG"], "无此请求");
    // Percent-encoded request numbers are decoded before the lookup.
    let (status, reply) = get_json(&poll_url(&fleet, "Q%20odd")).await;
    assert_eq!(status, 404);
    assert_eq!(reply["CXQQDH"], "Q odd");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_broken_submission_gets_a_400_and_an_odd_id_type_is_refused_at_intake() {
    let fleet = standard().await;
    let (status, reply) = post_json(&submit_url(&fleet), &json!({"CXQQDH": "Q-bad"})).await;
    assert_eq!(status, 400);
    assert_eq!(reply["RESULT"], "0400");
    assert_eq!(reply["CXQQDH"], "Q-bad");
    let response = client()
        .post(submit_url(&fleet))
        .body("{{{")
        .send()
        .await
        .expect("the registry answers");
    assert_eq!(response.status(), 400);

    let mut odd = submission("Q-odd", "张三", fixtures::ZHANG_SAN_ID);
    odd["ZJZL"] = json!("09");
    let (status, reply) = post_json(&submit_url(&fleet), &odd).await;
    assert_eq!(status, 200);
    assert_eq!(reply["RESULT"], "1001");
    assert!(reply["MSG"].is_string());
    fleet.shutdown().await;
}
