//! The audit trail of an inquiry: inbound call, then each agency's outbound
//! message, then its reply, chained by hashes.

use std::collections::HashMap;

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn every_inbound_call_outbound_message_and_reply_is_recorded_in_order() -> anyhow::Result<()>
{
    let sys = System::start().await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK);
    let id = reply.body["id"].as_str().expect("id");

    let events = sys.audit(&format!("case_number={}", q(CASE))).await?;
    let of_inquiry: Vec<&Value> = events.iter().filter(|e| e["inquiry_id"] == id).collect();
    let inbound = of_inquiry
        .iter()
        .find(|e| e["direction"] == "inbound" && e["action"] == "inquiry.create")
        .expect("the inbound call is recorded");
    assert_eq!(inbound["caller"], "demo-court");
    assert_eq!(inbound["subject"], ZHANG_SAN_ID);
    assert_eq!(inbound["status"], "accepted");
    assert!(
        inbound["officers"][0]
            .as_str()
            .unwrap_or("")
            .contains("ZX620503001")
    );
    let inbound_seq = inbound["seq"].as_i64().expect("seq");

    for agency in ["bank-a", "bank-b", "registry-x"] {
        let mine: Vec<&&Value> = of_inquiry
            .iter()
            .filter(|e| e["agency"] == agency)
            .collect();
        let first_out = mine
            .iter()
            .find(|e| e["direction"] == "outbound")
            .expect("outbound recorded");
        let first_reply = mine
            .iter()
            .find(|e| e["direction"] == "reply")
            .expect("reply recorded");
        let (out_seq, reply_seq) = (
            first_out["seq"].as_i64().unwrap_or(0),
            first_reply["seq"].as_i64().unwrap_or(0),
        );
        assert!(
            inbound_seq < out_seq && out_seq < reply_seq,
            "{agency}: {inbound_seq} {out_seq} {reply_seq}"
        );
        assert_eq!(first_out["request_number"], first_reply["request_number"]);
        assert!(
            first_out["body_sha256"]
                .as_str()
                .is_some_and(|h| h.len() == 64)
        );
        assert_eq!(first_reply["status"], "http_200");
    }
    // The registry was polled until it answered: every poll is recorded too.
    assert!(
        of_inquiry
            .iter()
            .any(|e| e["agency"] == "registry-x" && e["action"] == "inquiry.poll")
    );

    // The recorded message is the one sent: bank-a's GB18030 XML names 张三.
    let out = of_inquiry
        .iter()
        .find(|e| e["agency"] == "bank-a" && e["direction"] == "outbound")
        .expect("bank-a outbound");
    let one = sys
        .get(&format!("/v1/audit/events/{}", out["seq"]), AUDITOR)
        .await?;
    assert_eq!(one.status, StatusCode::OK);
    let text = one.body["body_text"].as_str().expect("decoded body");
    assert!(
        text.contains("<XM>张三</XM>") && text.contains("encoding=\"GB18030\""),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn the_log_is_a_hash_chain_and_auditors_reads_are_logged() -> anyhow::Result<()> {
    let sys = System::start().await?;
    sys.inquire(zhang_san(), 10).await?;
    sys.inquire(nobody(), 10).await?;
    let all = sys.audit("").await?;
    assert!(all.len() > 10);
    let mut by_seq: HashMap<i64, &Value> = HashMap::new();
    for e in &all {
        by_seq.insert(e["seq"].as_i64().expect("seq"), e);
    }
    for e in &all {
        let seq = e["seq"].as_i64().expect("seq");
        if let Some(prev) = by_seq.get(&(seq - 1)) {
            assert_eq!(
                e["prev_hash"],
                prev["hash"],
                "row {seq} does not chain to {}",
                seq - 1
            );
        }
    }
    let seqs: Vec<i64> = all.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps, no duplicates"
    );
    assert!(
        all.iter()
            .any(|e| e["action"] == "audit.query" && e["caller"] == "demo-auditor")
    );

    // Filters narrow; pages follow each other without gaps.
    let page = sys.get("/v1/audit/events?limit=3", AUDITOR).await?;
    let next = page.body["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let page2 = sys
        .get(&format!("/v1/audit/events?limit=3&cursor={next}"), AUDITOR)
        .await?;
    assert_eq!(
        page2.body["events"][0]["seq"].as_i64(),
        page.body["events"][2]["seq"].as_i64().map(|s| s + 1)
    );
    let nobody_events = sys.audit(&format!("subject={NOBODY_ID}")).await?;
    assert!(!nobody_events.is_empty() && nobody_events.iter().all(|e| e["subject"] == NOBODY_ID));
    let bank_b = sys.audit("agency=bank-b").await?;
    assert!(!bank_b.is_empty() && bank_b.iter().all(|e| e["agency"] == "bank-b"));
    Ok(())
}
