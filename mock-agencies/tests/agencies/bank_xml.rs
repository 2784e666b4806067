//! bank-a: court-bank XML batches in GB18030.

use mock_agencies::fixtures;
use serde_json::Value;

use crate::common::*;

#[tokio::test]
async fn a_court_asks_bank_a_about_zhang_san_and_gets_both_accounts_in_gb18030() {
    let fleet = standard().await;
    let (status, bytes) = post_xml(&fleet, cxqq("P1", &[zhang_san("Q-xml-1")])).await;
    assert_eq!(status, 200);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the reply must really be GB18030, not UTF-8"
    );
    let text = gb18030(&bytes);
    assert!(text.starts_with(r#"<?xml version="1.0" encoding="GB18030"?>"#));
    assert!(text.contains(fixtures::ZHANG_SAN_BANK_A_DEBIT_BRANCH));
    assert_eq!(value(&text, "PCH"), Some("P1"));

    let feedbacks = blocks(&text, "CXFK");
    assert_eq!(feedbacks.len(), 1);
    let fk = feedbacks[0];
    assert_eq!(value(fk, "CXQQDH"), Some("Q-xml-1"));
    assert_eq!(value(fk, "CXJG"), Some("1"));
    assert_eq!(value(fk, "FKSJ").map(str::len), Some(14));
    let accounts = blocks(fk, "ZHXX");
    assert_eq!(accounts.len(), 2);
    let debit = accounts
        .iter()
        .find(|a| value(a, "KHZH") == Some(fixtures::ZHANG_SAN_BANK_A_DEBIT_ACCOUNT))
        .expect("the debit card account");
    assert_eq!(
        value(debit, "CCLB"),
        Some(fixtures::ZHANG_SAN_BANK_A_DEBIT_TYPE)
    );
    assert_eq!(value(debit, "ZHZT"), Some("正常"));
    assert_eq!(value(debit, "BZ"), Some("CNY"));
    assert_eq!(value(debit, "YE"), Some("125000.00"));
    assert_eq!(value(debit, "KYYE"), Some("125000.00"));
    assert!(
        blocks(debit, "DJXX").is_empty(),
        "no measures on 张三's accounts"
    );
    let savings = accounts
        .iter()
        .find(|a| value(a, "KHZH") == Some(fixtures::ZHANG_SAN_BANK_A_SAVINGS_ACCOUNT))
        .expect("the savings account");
    assert_eq!(value(savings, "CCLB"), Some("活期储蓄"));
    assert_eq!(
        value(savings, "KHWD"),
        Some(fixtures::ZHANG_SAN_BANK_A_SAVINGS_BRANCH)
    );
    assert_eq!(value(savings, "YE"), Some("8650.50"));
    assert_eq!(value(savings, "KYYE"), Some("8650.50"));
    fleet.shutdown().await;
}

#[tokio::test]
async fn one_batch_about_two_subjects_gets_one_feedback_each() {
    let fleet = standard().await;
    let body = cxqq("P2", &[zhang_san("Q-b-1"), wang_wu("Q-b-2")]);
    let (status, bytes) = post_xml(&fleet, body).await;
    assert_eq!(status, 200);
    let text = gb18030(&bytes);
    let feedbacks = blocks(&text, "CXFK");
    assert_eq!(feedbacks.len(), 2);
    let result_of = |rn: &str| {
        feedbacks
            .iter()
            .find(|fk| value(fk, "CXQQDH") == Some(rn))
            .and_then(|fk| value(fk, "CXJG"))
    };
    assert_eq!(result_of("Q-b-1"), Some("1"));
    assert_eq!(result_of("Q-b-2"), Some("0"));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_company_is_asked_by_credit_code_and_has_two_accounts() {
    let fleet = standard().await;
    let org = Subject(
        "Q-org",
        fixtures::SAMPLE_ORG_NAME,
        "02",
        fixtures::SAMPLE_ORG_ID,
    );
    let (_, bytes) = post_xml(&fleet, cxqq("P3", &[org])).await;
    let text = gb18030(&bytes);
    let types: Vec<_> = blocks(&text, "ZHXX")
        .iter()
        .filter_map(|a| value(a, "CCLB"))
        .collect();
    assert_eq!(types, ["基本存款账户", "一般存款账户"]);
    assert!(text.contains("<YE>3256780.45</YE>"));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_retried_batch_gets_the_same_answer_and_is_logged_once() {
    let fleet = standard().await;
    let first = post_xml(&fleet, cxqq("P4", &[zhang_san("Q-dup")])).await;
    let second = post_xml(&fleet, cxqq("P4", &[zhang_san("Q-dup")])).await;
    assert_eq!(first, second, "byte for byte the same answer");

    let (_, ledger) = get_json(&url(
        &fleet,
        fixtures::BANK_A,
        &format!("/_mock/ledger?holder={}", fixtures::ZHANG_SAN_ID),
    ))
    .await;
    let requests: Vec<&Value> = ledger["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["request_number"] == "Q-dup")
        .collect();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["kind"], "inquiry");
    assert_eq!(requests[0]["holder_id"], fixtures::ZHANG_SAN_ID);
    assert_eq!(requests[0]["count"], 2);
    assert_eq!(ledger["accounts"].as_array().map(Vec::len), Some(2));
    assert_eq!(ledger["dialect"], "court-bank-xml");
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_request_gets_cwxx_and_the_bank_keeps_working() {
    let fleet = standard().await;
    for body in [
        b"this is not xml".to_vec(),
        cxqq("P5", &[zhang_san("Q-cut")])[..60].to_vec(),
        b"<?xml version=\"1.0\" encoding=\"GB18030\"?><CXQQ><PCH>P</PCH></CXQQ>".to_vec(),
        b"<?xml version=\"1.0\" encoding=\"no-such\"?><CXQQ/>".to_vec(),
        Vec::new(),
    ] {
        let (status, bytes) = post_xml(&fleet, body).await;
        assert_eq!(status, 400);
        let text = gb18030(&bytes);
        assert_eq!(value(&text, "CWDM"), Some("E001"), "{text}");
        assert!(value(&text, "CWMS").is_some());
    }
    let (status, _) = post_xml(&fleet, cxqq("P6", &[zhang_san("Q-after")])).await;
    assert_eq!(status, 200);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_utf8_request_is_read_by_its_declaration_and_answered_in_gb18030() {
    let fleet = standard().await;
    let utf8 =
        cxqq_text("P7", &[zhang_san("Q-u8")]).replace("encoding=\"GB18030\"", "encoding=\"UTF-8\"");
    let (status, bytes) = post_xml(&fleet, utf8.into_bytes()).await;
    assert_eq!(status, 200);
    let text = gb18030(&bytes);
    assert_eq!(value(&text, "CXJG"), Some("1"));
    fleet.shutdown().await;
}
