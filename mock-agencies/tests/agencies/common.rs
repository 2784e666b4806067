//! Helpers shared by the stories: starting a fleet, writing a court-bank XML
//! batch by hand (in GB18030), picking values out of a reply, and waiting
//! on a condition with a deadline instead of sleeping.

use std::future::Future;
use std::time::Duration;

use mock_agencies::{MockConfig, MockFleet, fixtures};
use serde_json::Value;

pub const CASE: &str = "(2024)甘0503执1234号";

pub async fn start(config: &MockConfig) -> MockFleet {
    MockFleet::start(config, true)
        .await
        .expect("the mock fleet starts")
}

pub async fn standard() -> MockFleet {
    start(&MockConfig::standard()).await
}

pub fn url(fleet: &MockFleet, agency: &str, path: &str) -> String {
    format!(
        "{}{path}",
        fleet.base_url(agency).expect("the agency is configured")
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// One subject of a court-bank batch: request number, name, ZJZL, ZJH.
pub struct Subject<'a>(pub &'a str, pub &'a str, pub &'a str, pub &'a str);

pub fn zhang_san(request_number: &str) -> Subject<'_> {
    Subject(
        request_number,
        fixtures::ZHANG_SAN_NAME,
        "01",
        fixtures::ZHANG_SAN_ID,
    )
}

pub fn wang_wu(request_number: &str) -> Subject<'_> {
    Subject(
        request_number,
        fixtures::WANG_WU_NAME,
        "01",
        fixtures::WANG_WU_ID,
    )
}

/// A `CXQQ` batch written as the spec shows it, encoded in GB18030.
pub fn cxqq(batch_number: &str, subjects: &[Subject<'_>]) -> Vec<u8> {
    encoding_rs::GB18030
        .encode(&cxqq_text(batch_number, subjects))
        .0
        .into_owned()
}

/// The same batch as text, declaring GB18030.
pub fn cxqq_text(batch_number: &str, subjects: &[Subject<'_>]) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"GB18030\"?>\n<CXQQ><PCH>{batch_number}</PCH>\
         <FYDM>甘0503</FYDM><FYMC>天水市麦积区人民法院</FYMC><CXQQLIST>"
    );
    for Subject(rn, name, zjzl, zjh) in subjects {
        xml.push_str(&format!(
            "<CXQQXX><CXQQDH>{rn}</CXQQDH><AH>{CASE}</AH><XM>{name}</XM><ZJZL>{zjzl}</ZJZL>\
             <ZJH>{zjh}</ZJH><ZFRY><XM>李明</XM><GZZBH>G620503001</GZZBH><GWZBH>ZX620503001</GWZBH></ZFRY>\
             <ZFRY><XM>赵强</XM><GZZBH>G620503002</GZZBH><GWZBH>ZX620503002</GWZBH></ZFRY></CXQQXX>"
        ));
    }
    xml.push_str("</CXQQLIST></CXQQ>");
    xml
}

pub async fn post_xml(fleet: &MockFleet, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = client()
        .post(url(fleet, fixtures::BANK_A, "/ckxt/cxqq"))
        .header("Content-Type", "application/xml; charset=GB18030")
        .body(body)
        .send()
        .await
        .expect("bank-a answers");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("a body").to_vec())
}

pub fn gb18030(bytes: &[u8]) -> String {
    let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
    assert!(!had_errors, "the reply is valid GB18030");
    text.into_owned()
}

/// The contents of every `<tag>...</tag>` in `text` (tags do not nest in
/// the replies we look at).
pub fn blocks<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

pub fn value<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    blocks(text, tag).first().map(|v| v.trim())
}

/// Posts `body` to `url` as `content_type`: status, reply content type, body.
pub async fn post_bytes(url: &str, content_type: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let response = client()
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("the agency answers");
    let status = response.status().as_u16();
    let reply_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        reply_type,
        response.bytes().await.expect("a body").to_vec(),
    )
}

/// An indented XML text with the blanks between tags taken out, so that
/// whole elements compare as one string.
pub fn compact(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    for line in xml.lines() {
        out.push_str(line.trim());
    }
    out
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let response = client().get(url).send().await.expect("the agency answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("the agency answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

pub async fn set_faults(fleet: &MockFleet, agency: &str, faults: Value) {
    let (status, _) = post_json(&url(fleet, agency, "/_mock/faults"), &faults).await;
    assert_eq!(status, 200);
}

/// Polls `check` until it yields a value or the deadline passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
