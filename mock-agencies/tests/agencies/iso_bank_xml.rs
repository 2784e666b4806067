//! bank-d: ISO 20022-flavoured XML in a default namespace, amounts in fen.

use mock_agencies::{MockConfig, MockDialect, MockFleet, fixtures};
use serde_json::json;

use crate::common::*;

pub const NS: &str = "urn:example:court:acctinq:001";
pub const CONTENT_TYPE: &str = "application/xml; charset=UTF-8";

/// One `Inq`: request number, name, `Tp`, identifier.
pub struct Inq<'a>(pub &'a str, pub &'a str, pub &'a str, pub &'a str);

pub fn zhang_san_inq(request_number: &str) -> Inq<'_> {
    Inq(
        request_number,
        fixtures::ZHANG_SAN_NAME,
        "NIDN",
        fixtures::ZHANG_SAN_ID,
    )
}

pub fn wang_wu_inq(request_number: &str) -> Inq<'_> {
    Inq(
        request_number,
        fixtures::WANG_WU_NAME,
        "NIDN",
        fixtures::WANG_WU_ID,
    )
}

/// An `AcctInqReq` written as the spec shows it, two officers an inquiry.
pub fn iso_request(msg_id: &str, inquiries: &[Inq<'_>]) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"{NS}\"><AcctInqReq>\
         <GrpHdr><MsgId>{msg_id}</MsgId><Court Cd=\"甘0503\">天水市麦积区人民法院</Court></GrpHdr>"
    );
    for Inq(rn, name, tp, id) in inquiries {
        xml.push_str(&format!(
            "<Inq><InqId>{rn}</InqId><CaseRef>{CASE}</CaseRef>\
             <Pty><Nm>{name}</Nm><Id Tp=\"{tp}\">{id}</Id></Pty>\
             <Offcr><Nm>李明</Nm><WorkCard>G620503001</WorkCard><Cred>ZX620503001</Cred></Offcr>\
             <Offcr><Nm>赵强</Nm><WorkCard>G620503002</WorkCard><Cred>ZX620503002</Cred></Offcr></Inq>"
        ));
    }
    xml.push_str("</AcctInqReq></Document>");
    xml
}

/// Posts an `iso-bank-xml` document; the reply as compact UTF-8 text.
pub async fn post_iso(url: &str, body: String) -> (u16, String) {
    let (status, content_type, bytes) = post_bytes(url, CONTENT_TYPE, body.into_bytes()).await;
    assert_eq!(content_type, CONTENT_TYPE);
    let text = String::from_utf8(bytes).expect("the reply is UTF-8");
    assert!(
        text.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
        "{text}"
    );
    (status, compact(&text))
}

/// The `Rpt` of a request number in a compact reply.
pub fn report<'a>(text: &'a str, request_number: &str) -> &'a str {
    blocks(text, "Rpt")
        .into_iter()
        .find(|r| value(r, "InqId") == Some(request_number))
        .unwrap_or_else(|| panic!("no <Rpt> for {request_number} in {text}"))
}

async fn with_bank_d() -> MockFleet {
    start(&MockConfig::standard().with_iso_bank()).await
}

fn inquiries_url(fleet: &MockFleet) -> String {
    url(fleet, fixtures::BANK_D, "/iso/v1/account-inquiries")
}

#[tokio::test]
async fn bank_d_finds_zhang_sans_savings_account_in_fen() {
    let fleet = with_bank_d().await;
    let (status, text) = post_iso(
        &inquiries_url(&fleet),
        iso_request("P-iso-1", &[zhang_san_inq("Q-iso-1")]),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        text.contains(&format!(
            r#"<Document xmlns="{NS}"><AcctInqRpt><Rpt><InqId>Q-iso-1</InqId>"#
        )),
        "{text}"
    );
    let rpt = report(&text, "Q-iso-1");
    assert!(rpt.contains(r#"<Sts Cd="FOUND"/>"#), "{rpt}");
    let accounts = blocks(rpt, "Acct");
    assert_eq!(accounts.len(), 1);
    let expected = format!(
        "<Id><Othr>{}</Othr></Id><Tp Cd=\"{}\"/><Ccy>CNY</Ccy>\
         <Svcr><BrnchNm>{}</BrnchNm></Svcr>\
         <Bal Tp=\"CLBD\"><Amt Ccy=\"CNY\">{}</Amt></Bal>\
         <Bal Tp=\"ITAV\"><Amt Ccy=\"CNY\">{}</Amt></Bal>",
        fixtures::ZHANG_SAN_BANK_D_ACCOUNT,
        fixtures::ZHANG_SAN_BANK_D_TYPE,
        fixtures::ZHANG_SAN_BANK_D_BRANCH,
        fixtures::ZHANG_SAN_BANK_D_BALANCE_FEN,
        fixtures::ZHANG_SAN_BANK_D_AVAILABLE_FEN,
    );
    assert_eq!(accounts[0], expected);
    assert!(expected.contains(">2000000<"), "20000.00 yuan in fen");
    assert!(!rpt.contains("<Hold>"), "no measures on 张三's account");

    let (_, ledger) = get_json(&url(
        &fleet,
        fixtures::BANK_D,
        &format!("/_mock/ledger?holder={}", fixtures::ZHANG_SAN_ID),
    ))
    .await;
    assert_eq!(ledger["dialect"], "iso-bank-xml");
    assert_eq!(ledger["name"], "中国农业银行（模拟）");
    assert_eq!(ledger["accounts"][0]["account_type"], "SVGS");
    assert_eq!(ledger["requests"][0]["request_number"], "Q-iso-1");
    fleet.shutdown().await;
}

#[tokio::test]
async fn bank_d_knows_nothing_of_wang_wu() {
    let fleet = with_bank_d().await;
    let (status, text) = post_iso(
        &inquiries_url(&fleet),
        iso_request("P-iso-2", &[wang_wu_inq("Q-iso-2")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        report(&text, "Q-iso-2"),
        r#"<InqId>Q-iso-2</InqId><Sts Cd="NONE"/>"#
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn one_message_about_two_subjects_gets_one_report_each_and_repeats_are_recognised() {
    let fleet = with_bank_d().await;
    let org = Inq(
        "Q-iso-org",
        fixtures::SAMPLE_ORG_NAME,
        "USCC",
        fixtures::SAMPLE_ORG_ID,
    );
    let body = iso_request(
        "P-iso-3",
        &[zhang_san_inq("Q-iso-3a"), wang_wu_inq("Q-iso-3b"), org],
    );
    let (status, text) = post_iso(&inquiries_url(&fleet), body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(blocks(&text, "Rpt").len(), 3);
    assert!(report(&text, "Q-iso-3a").contains(r#"<Sts Cd="FOUND"/>"#));
    assert!(report(&text, "Q-iso-3b").contains(r#"<Sts Cd="NONE"/>"#));
    assert!(
        report(&text, "Q-iso-org").contains(r#"<Sts Cd="NONE"/>"#),
        "a company is asked by USCC; it banks elsewhere"
    );

    let (_, again) = post_iso(&inquiries_url(&fleet), body).await;
    assert_eq!(
        again, text,
        "a repeated request number gets the first answer"
    );
    let (_, ledger) = get_json(&url(&fleet, fixtures::BANK_D, "/_mock/ledger")).await;
    let requests = ledger["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r["count"] == 2), "{requests:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn under_the_refuse_fault_every_inquiry_is_rjct_with_a_reason() {
    let fleet = with_bank_d().await;
    set_faults(&fleet, fixtures::BANK_D, json!({"mode": "refuse"})).await;
    let (status, text) = post_iso(
        &inquiries_url(&fleet),
        iso_request("P-iso-4", &[zhang_san_inq("Q-iso-4")]),
    )
    .await;
    assert_eq!(status, 200);
    let rpt = report(&text, "Q-iso-4");
    assert!(
        rpt.starts_with(r#"<InqId>Q-iso-4</InqId><Sts Cd="RJCT"><Rsn>"#),
        "{rpt}"
    );
    assert!(value(rpt, "Rsn").is_some_and(|r| !r.is_empty()));
    assert!(!rpt.contains("<Acct>"));

    set_faults(&fleet, fixtures::BANK_D, json!({"mode": "normal"})).await;
    let (_, text) = post_iso(
        &inquiries_url(&fleet),
        iso_request("P-iso-4", &[zhang_san_inq("Q-iso-4")]),
    )
    .await;
    assert!(report(&text, "Q-iso-4").contains(r#"<Sts Cd="FOUND"/>"#));

    // An identifier type the bank does not take is refused, not unreadable.
    let passport = Inq("Q-iso-pp", "张三", "CCPT", "E12345678");
    let (status, text) =
        post_iso(&inquiries_url(&fleet), iso_request("P-iso-5", &[passport])).await;
    assert_eq!(status, 200);
    assert!(report(&text, "Q-iso-pp").contains(r#"<Sts Cd="RJCT"><Rsn>"#));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_request_the_bank_cannot_read_gets_a_400_err_document() {
    let fleet = with_bank_d().await;
    let good = iso_request("P-bad", &[zhang_san_inq("Q-bad")]);
    let cases = [
        "not xml at all".to_owned(),
        good.replace(&format!(" xmlns=\"{NS}\""), ""),
        good.replace(NS, "urn:example:other"),
        good.replace(" Tp=\"NIDN\"", ""),
        good.replace("<InqId>Q-bad</InqId>", ""),
        iso_request("P-bad", &[]),
        {
            let start = good.find("<Offcr>").expect("officers");
            let end = good.rfind("</Offcr>").expect("officers") + "</Offcr>".len();
            format!("{}{}", &good[..start], &good[end..])
        },
        good.replace("encoding=\"UTF-8\"", "encoding=\"GB18030\""),
        good.replace("</Document>", ""),
    ];
    for body in cases {
        let (status, text) = post_iso(&inquiries_url(&fleet), body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            text.starts_with(&format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{NS}"><Err Cd="FF01">"#
            )),
            "{text}"
        );
        assert!(text.ends_with("</Err></Document>"), "{text}");
    }
    let (_, ledger) = get_json(&url(&fleet, fixtures::BANK_D, "/_mock/ledger")).await;
    assert_eq!(
        ledger["requests"],
        json!([]),
        "nothing unreadable is recorded"
    );

    // A prefixed namespace is the same namespace.
    let prefixed = good
        .replace(&format!("xmlns=\"{NS}\""), &format!("xmlns:d=\"{NS}\""))
        .replace("<", "<d:")
        .replace("<d:/", "</d:")
        .replace("<d:?xml", "<?xml");
    let (status, text) = post_iso(&inquiries_url(&fleet), prefixed).await;
    assert_eq!(status, 200, "{text}");
    assert!(report(&text, "Q-bad").contains(r#"<Sts Cd="FOUND"/>"#));
    fleet.shutdown().await;
}

#[tokio::test]
async fn error_and_malformed_faults_speak_iso_too() {
    let fleet = with_bank_d().await;
    set_faults(&fleet, fixtures::BANK_D, json!({"mode": "error"})).await;
    let body = iso_request("P-iso-6", &[zhang_san_inq("Q-iso-6")]);
    let (status, text) = post_iso(&inquiries_url(&fleet), body.clone()).await;
    assert_eq!(status, 503);
    assert!(
        text.contains(&format!(r#"<Document xmlns="{NS}"><Err Cd="BUSY">"#)),
        "{text}"
    );

    set_faults(&fleet, fixtures::BANK_D, json!({"mode": "malformed"})).await;
    let (status, _, bytes) = post_bytes(&inquiries_url(&fleet), CONTENT_TYPE, body.into()).await;
    assert_eq!(status, 200);
    let cut = String::from_utf8_lossy(&bytes);
    assert!(cut.starts_with("<?xml"));
    assert!(!cut.contains("</Document>"), "{cut}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn bank_d_is_only_added_on_request_and_holds_generated_accounts_too() {
    let standard = MockConfig::standard();
    assert_eq!(standard.agencies.len(), 3);
    let config = MockConfig::standard().with_iso_bank();
    assert_eq!(config.agencies.len(), 4);
    let bank_d = &config.agencies[3];
    assert_eq!(bank_d.id, fixtures::BANK_D);
    assert_eq!(bank_d.dialect, MockDialect::IsoBankXml);
    assert_eq!(bank_d.dialect.as_str(), "iso-bank-xml");
    assert!(bank_d.dialect.is_bank());
    assert_eq!(config.agencies[..3], standard.agencies[..]);
    config.validate().expect("valid");
    let parsed: MockConfig =
        toml::from_str("[[agencies]]\nid = \"bank-d\"\ndialect = \"iso-bank-xml\"\n")
            .expect("the dialect has a name in files");
    assert_eq!(parsed.agencies[0].dialect, MockDialect::IsoBankXml);

    let fleet = start(&config).await;
    let (_, ledger) = get_json(&url(&fleet, fixtures::BANK_D, "/_mock/ledger")).await;
    let accounts = ledger["accounts"].as_array().expect("accounts");
    assert!(accounts.len() > 500, "{} accounts", accounts.len());
    assert!(accounts.iter().all(|a| {
        a["branch"]
            .as_str()
            .is_some_and(|b| b.starts_with("中国农业银行"))
    }));
    assert!(
        accounts
            .iter()
            .all(|a| ["SVGS", "CACC", "TDEP"].contains(&a["account_type"].as_str().unwrap_or("")))
    );
    fleet.shutdown().await;
}
