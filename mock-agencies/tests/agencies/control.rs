//! Control measures: freezes, renewals, releases and deductions at the
//! banks, seals at the registry, as a court's gateway orders them, and what
//! the agencies' inquiry answers and ledgers show afterwards. Every test
//! pins the mock's clock (so the dates below never age) unless it moves it.

use std::net::SocketAddr;
use std::time::Duration;

use mock_agencies::{MockBankFleet, MockConfig, MockFleet, fixtures};
use serde_json::{Value, json};

use crate::common::*;

const OTHER_CASE: &str = "(2024)甘0503执2345号";
const COURT: &str = "天水市麦积区人民法院";
const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

// court-bank-xml ------------------------------------------------------------

/// One `KZQQ`, built field by field.
#[derive(Clone)]
struct Order {
    rn: String,
    kzcs: &'static str,
    case: &'static str,
    name: &'static str,
    id: &'static str,
    account: &'static str,
    amount: String,
    start: String,
    end: String,
    prior: String,
    officers: usize,
    documents: Vec<&'static str>,
}

impl Order {
    fn freeze(rn: &str, account: &'static str, amount: &str) -> Self {
        Self {
            rn: rn.into(),
            kzcs: "01",
            case: CASE,
            name: fixtures::LI_SI_NAME,
            id: fixtures::LI_SI_ID,
            account,
            amount: amount.into(),
            start: "20261127".into(),
            end: "20271126".into(),
            prior: String::new(),
            officers: 2,
            documents: vec!["CDS", "XZTZS"],
        }
    }

    fn renew(rn: &str, prior: &str, account: &'static str, start: &str, end: &str) -> Self {
        Self {
            kzcs: "02",
            amount: String::new(),
            start: start.into(),
            end: end.into(),
            prior: prior.into(),
            ..Self::freeze(rn, account, "")
        }
    }

    fn release(rn: &str, prior: &str, account: &'static str) -> Self {
        Self {
            kzcs: "04",
            amount: String::new(),
            start: String::new(),
            end: String::new(),
            prior: prior.into(),
            ..Self::freeze(rn, account, "")
        }
    }

    fn deduct(rn: &str, prior: &str, account: &'static str, amount: &str) -> Self {
        Self {
            kzcs: "06",
            start: String::new(),
            end: String::new(),
            prior: prior.into(),
            ..Self::freeze(rn, account, amount)
        }
    }

    fn case(self, case: &'static str) -> Self {
        Self { case, ..self }
    }

    fn zhang_san(self) -> Self {
        Self {
            name: fixtures::ZHANG_SAN_NAME,
            id: fixtures::ZHANG_SAN_ID,
            ..self
        }
    }

    fn xml(&self) -> String {
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"GB18030\"?>\n<KZQQ><KZQQDH>{}</KZQQDH>\
             <FYDM>甘0503</FYDM><FYMC>{COURT}</FYMC><AH>{}</AH><XM>{}</XM><ZJZL>01</ZJZL>\
             <ZJH>{}</ZJH><KZCS>{}</KZCS><KZLX>1</KZLX><KZNR>1</KZNR><KHZH>{}</KHZH><BZ>CNY</BZ>\
             <SQKZJE>{}</SQKZJE><KSRQ>{}</KSRQ><JSRQ>{}</JSRQ><YKZQQDH>{}</YKZQQDH><WSLIST>",
            self.rn,
            self.case,
            self.name,
            self.id,
            self.kzcs,
            self.account,
            self.amount,
            self.start,
            self.end,
            self.prior
        );
        for (i, kind) in self.documents.iter().enumerate() {
            xml.push_str(&format!(
                "<WS><WSLX>{kind}</WSLX><WSBH>{}之{i}</WSBH><WSHASH>{HASH}</WSHASH></WS>",
                self.case
            ));
        }
        xml.push_str("</WSLIST>");
        for i in 0..self.officers {
            xml.push_str(&format!(
                "<ZFRY><XM>执行员{i}</XM><GZZBH>G62050300{i}</GZZBH><GWZBH>ZX62050300{i}</GWZBH></ZFRY>"
            ));
        }
        xml.push_str("</KZQQ>");
        xml
    }
}

fn gb(text: &str) -> Vec<u8> {
    encoding_rs::GB18030.encode(text).0.into_owned()
}

/// Posts a control order to bank-a: status and the reply as text.
async fn kzqq(fleet: &MockFleet, order: &Order) -> (u16, String) {
    kzqq_bytes(fleet, gb(&order.xml())).await
}

async fn kzqq_bytes(fleet: &MockFleet, body: Vec<u8>) -> (u16, String) {
    let (status, _, bytes) = post_bytes(
        &url(fleet, fixtures::BANK_A, "/ckxt/kzqq"),
        "application/xml; charset=GB18030",
        body,
    )
    .await;
    (status, gb18030(&bytes))
}

/// `GET /ckxt/kzjg/{rn}` at bank-a, as text.
async fn kzjg(fleet: &MockFleet, rn: &str) -> String {
    let response = client()
        .get(url(fleet, fixtures::BANK_A, &format!("/ckxt/kzjg/{rn}")))
        .send()
        .await
        .expect("bank-a answers");
    assert_eq!(response.status(), 200);
    gb18030(&response.bytes().await.expect("a body"))
}

fn v<'a>(text: &'a str, tag: &str) -> &'a str {
    value(text, tag).unwrap_or_else(|| panic!("no <{tag}> in {text}"))
}

/// 李四's accounts at bank-a as an inquiry answers them: `ZHXX` by `KHZH`.
async fn li_si_at_bank_a(fleet: &MockFleet, rn: &str) -> String {
    let subject = Subject(rn, fixtures::LI_SI_NAME, "01", fixtures::LI_SI_ID);
    let (status, bytes) = post_xml(fleet, cxqq("P-li", &[subject])).await;
    assert_eq!(status, 200);
    gb18030(&bytes)
}

fn zhxx<'a>(text: &'a str, account: &str) -> &'a str {
    blocks(text, "ZHXX")
        .into_iter()
        .find(|a| value(a, "KHZH") == Some(account))
        .unwrap_or_else(|| panic!("no account {account} in {text}"))
}

// Fleet, clock, ledger ------------------------------------------------------

async fn set_clock(fleet: &MockFleet, agency: &str, today: Value) -> Value {
    let (status, body) = post_json(
        &url(fleet, agency, "/_mock/clock"),
        &json!({ "today": today }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The standard agencies with every clock on 2026-11-27 and registry
/// results ready after `result_delay_ms`.
async fn pinned(result_delay_ms: u64) -> MockFleet {
    let mut config = MockConfig::standard();
    for a in &mut config.agencies {
        a.result_delay_ms = result_delay_ms;
    }
    let fleet = start(&config).await;
    for agency in [fixtures::BANK_A, fixtures::BANK_B, fixtures::REGISTRY_X] {
        set_clock(&fleet, agency, json!("2026-11-27")).await;
    }
    fleet
}

async fn ledger(fleet: &MockFleet, agency: &str, holder: &str) -> Value {
    let (status, body) = get_json(&url(
        fleet,
        agency,
        &format!("/_mock/ledger?holder={holder}"),
    ))
    .await;
    assert_eq!(status, 200);
    body
}

fn ledger_account<'a>(ledger: &'a Value, account: &str) -> &'a Value {
    ledger["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["account_number"] == account))
        .unwrap_or_else(|| panic!("no account {account} in the ledger"))
}

fn ledger_control<'a>(ledger: &'a Value, rn: &str) -> &'a Value {
    ledger["controls"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["request_number"] == rn))
        .unwrap_or_else(|| panic!("no control {rn} in the ledger"))
}

// bank-json -----------------------------------------------------------------

fn json_order(rn: &str, action: &str, account: &str) -> Value {
    json!({
        "request_number": rn,
        "case_number": CASE,
        "court": {"code": "甘0503", "name": COURT},
        "subject": {"type": "individual", "name": fixtures::LI_SI_NAME,
                    "id_type": "RESIDENT_ID", "id_number": fixtures::LI_SI_ID},
        "officers": [{"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"},
                     {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"}],
        "action": action,
        "account_number": account,
        "currency": "CNY",
        "amount": null, "start_date": null, "end_date": null, "prior_request_number": null,
        "documents": [{"type": "RULING", "number": "(2024)甘0503执1234号之一", "sha256": HASH},
                      {"type": "ASSIST_NOTICE", "number": "协冻-1", "sha256": HASH}]
    })
}

fn orders_url(fleet: &MockFleet) -> String {
    url(fleet, fixtures::BANK_B, "/api/v1/control-orders")
}

async fn order_status(fleet: &MockFleet, rn: &str) -> Value {
    let (status, body) = get_json(&format!("{}/{rn}", orders_url(fleet))).await;
    assert_eq!(status, 200);
    body
}

// registry-json -------------------------------------------------------------

fn seal_order(rn: &str, kzcs: &str, unit: &str, prior: &str, term: (&str, &str)) -> Value {
    json!({
        "CXQQDH": rn, "AH": CASE, "FYDM": "甘0503", "FYMC": COURT,
        "XM": fixtures::LI_SI_NAME, "ZJZL": "01", "ZJH": fixtures::LI_SI_ID, "CBR": "李明",
        "YKZQQDH": prior,
        "WSLIST": [{"WSLX": "CDS", "WSBH": "(2024)甘0503执1234号之二", "WSHASH": HASH},
                   {"WSLX": "XZTZS", "WSBH": "协封-1", "WSHASH": HASH}],
        "ZFRY": [{"XM": "李明", "GZZBH": "G620503001", "GWZBH": "ZX620503001"},
                 {"XM": "赵强", "GZZBH": "G620503002", "GWZBH": "ZX620503002"}],
        "BDCQLLIST": [{"KZCS": kzcs, "BDCDYH": unit, "KSRQ": term.0, "JSRQ": term.1}]
    })
}

const SEAL_TERM: (&str, &str) = ("2026/11/27", "2029/11/26");

async fn submit_control(fleet: &MockFleet, order: &Value) -> Value {
    let (status, reply) =
        post_json(&url(fleet, fixtures::REGISTRY_X, "/bdc/api/kzqq"), order).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

async fn control_poll(fleet: &MockFleet, rn: &str) -> (u16, Value) {
    get_json(&url(
        fleet,
        fixtures::REGISTRY_X,
        &format!("/bdc/api/kzjg/{rn}"),
    ))
    .await
}

/// Polls until the registry's result for `rn` is ready; its one `KZXXLIST` item.
async fn control_result(fleet: &MockFleet, rn: &str) -> Value {
    let done = eventually(Duration::from_secs(10), || async move {
        let (status, reply) = control_poll(fleet, rn).await;
        assert_eq!(status, 200, "{reply}");
        match reply["RESULT"].as_str() {
            Some("0001") => None,
            Some("0000") => Some(reply),
            other => panic!("unexpected RESULT {other:?}"),
        }
    })
    .await;
    assert_eq!(done["CXQQDH"], rn);
    let items = done["KZXXLIST"].as_array().expect("KZXXLIST");
    assert_eq!(items.len(), 1, "{done}");
    items[0].clone()
}

// The stories ---------------------------------------------------------------

#[test]
fn fixture_accounts_show_as_available_their_balance_less_the_measures_in_force() {
    assert!(mock_agencies::ids::is_valid_resident_id(fixtures::LI_SI_ID));
    for agency in [
        fixtures::BANK_A,
        fixtures::BANK_B,
        fixtures::BANK_D,
        fixtures::FLEET_ZHANG_SAN_BANK,
    ] {
        for a in fixtures::bank_accounts(agency) {
            let held: i64 = a
                .measures
                .iter()
                .filter(|m| !m.waiting)
                .map(|m| m.amount_fen)
                .sum();
            assert_eq!(a.available_fen, (a.balance_fen - held).max(0), "{a:?}");
            assert!(fixtures::ALL_ACCOUNT_NUMBERS.contains(&a.account_number.as_str()));
        }
    }
    for u in fixtures::registry_units(fixtures::REGISTRY_X) {
        assert!(fixtures::ALL_UNIT_NUMBERS.contains(&u.unit_number.as_str()));
    }
}

#[tokio::test]
async fn a_freeze_beyond_what_is_available_controls_what_there_is_in_gb18030() {
    let fleet = pinned(0).await;
    let account = fixtures::LI_SI_BANK_A_SAVINGS_ACCOUNT;
    let (status, _, bytes) = post_bytes(
        &url(&fleet, fixtures::BANK_A, "/ckxt/kzqq"),
        "application/xml; charset=GB18030",
        gb(&Order::freeze("K-part", account, "50000.00").xml()),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the reply must really be GB18030"
    );
    let fk = gb18030(&bytes);
    assert!(fk.starts_with(r#"<?xml version="1.0" encoding="GB18030"?>"#));
    assert_eq!(v(&fk, "KZQQDH"), "K-part");
    assert_eq!(v(&fk, "KZZT"), "1");
    assert_eq!(v(&fk, "SKJE"), "20000.00", "all that was available");
    assert_eq!(v(&fk, "CESKJE"), "30000.00");
    assert_eq!(v(&fk, "WNKZYY"), "余额不足");
    assert_eq!(v(&fk, "KSRQ"), "20261127");
    assert_eq!(v(&fk, "JSRQ"), "20271126");
    assert_eq!(v(&fk, "LHXH"), "0");
    assert!(v(&fk, "KZBH").starts_with("KZ20261127"), "{fk}");

    let text = li_si_at_bank_a(&fleet, "Q-li-1").await;
    let savings = zhxx(&text, account);
    assert_eq!(v(savings, "YE"), "30000.00");
    assert_eq!(v(savings, "KYYE"), "0.00");
    let measures = blocks(savings, "DJXX");
    assert_eq!(measures.len(), 2, "the other court's and ours");
    assert_eq!(v(measures[0], "DJJG"), "秦州区人民法院");
    assert_eq!(v(measures[0], "DJJE"), "10000.00");
    assert_eq!(v(measures[1], "DJJG"), COURT, "decoded from GB18030");
    assert_eq!(v(measures[1], "DJWH"), CASE);
    assert_eq!(v(measures[1], "DJJE"), "20000.00");
    assert_eq!(v(measures[1], "DJJSRQ"), "20271126");
    assert_eq!(v(measures[1], "LHBZ"), "0");

    let ledger = ledger(&fleet, fixtures::BANK_A, fixtures::LI_SI_ID).await;
    let a = ledger_account(&ledger, account);
    assert_eq!(a["balance_fen"], 3_000_000);
    assert_eq!(a["available_fen"], 0);
    let ours = &a["measures"][1];
    assert_eq!(ours["request_number"], "K-part");
    assert_eq!(ours["case_number"], CASE);
    assert_eq!(ours["state"], "in_force");
    assert_eq!(ours["amount_fen"], 2_000_000);
    assert_eq!(ours["asked_fen"], 5_000_000);
    assert_eq!(ours["start_date"], "2026-11-27");
    assert_eq!(ours["end_date"], "2027-11-26");
    assert_eq!(ledger["today"], "2026-11-27");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_freeze_on_a_wholly_frozen_account_waits_until_the_other_court_lifts_its_own() {
    let fleet = pinned(0).await;
    let account = fixtures::LI_SI_BANK_A_DEBIT_ACCOUNT;
    let (_, first) = kzqq(&fleet, &Order::freeze("K-wait-1", account, "5000.00")).await;
    assert_eq!(v(&first, "KZZT"), "2");
    assert_eq!(v(&first, "SKJE"), "0.00");
    assert_eq!(v(&first, "CESKJE"), "5000.00");
    assert_eq!(v(&first, "WNKZYY"), "已被甘谷县人民法院冻结，轮候");
    assert_eq!(v(&first, "LHXH"), "1");
    assert_eq!(v(&first, "JSRQ"), "20271126");
    assert!(!v(&first, "KZBH").is_empty());
    let (_, second) = kzqq(
        &fleet,
        &Order::freeze("K-wait-2", account, "1000.00").case(OTHER_CASE),
    )
    .await;
    assert_eq!(v(&second, "KZZT"), "2");
    assert_eq!(v(&second, "LHXH"), "2");

    let text = li_si_at_bank_a(&fleet, "Q-li-2").await;
    let debit = zhxx(&text, account);
    let measures = blocks(debit, "DJXX");
    assert_eq!(measures.len(), 3);
    assert_eq!(
        v(measures[1], "DJJE"),
        "5000.00",
        "a waiting one by its ask"
    );
    assert_eq!(v(measures[1], "LHBZ"), "1");

    let lift_url = url(&fleet, fixtures::BANK_A, "/_mock/lift");
    let lift = json!({"account_number": account,
                      "document_number": fixtures::LI_SI_BANK_A_DEBIT_MEASURE_DOCUMENT});
    let (status, lifted) = post_json(&lift_url, &lift).await;
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["authority"], "甘谷县人民法院");
    assert_eq!(lifted["promoted"], "K-wait-1");

    let now = kzjg(&fleet, "K-wait-1").await;
    assert_eq!(v(&now, "KZZT"), "1");
    assert_eq!(v(&now, "SKJE"), "5000.00");
    assert_eq!(v(&now, "CESKJE"), "0.00");
    assert_eq!(v(&now, "WNKZYY"), "");
    assert_eq!(v(&now, "LHXH"), "0");
    assert_eq!(v(&now, "KZBH"), v(&first, "KZBH"), "the same measure");
    let behind = kzjg(&fleet, "K-wait-2").await;
    assert_eq!(v(&behind, "KZZT"), "2");
    assert_eq!(v(&behind, "LHXH"), "1", "moved up one place");

    // A waiting freeze may be renewed in line.
    let renewal = Order::renew("K-wait-2r", "K-wait-2", account, "20270101", "20271231");
    let (_, renewed) = kzqq(&fleet, &renewal.case(OTHER_CASE)).await;
    assert_eq!(v(&renewed, "KZZT"), "1");
    assert_eq!(v(&renewed, "JSRQ"), "20271231");
    assert_eq!(v(&renewed, "LHXH"), "1");
    assert_eq!(v(&kzjg(&fleet, "K-wait-2").await, "JSRQ"), "20271231");

    let ledger = ledger(&fleet, fixtures::BANK_A, fixtures::LI_SI_ID).await;
    let a = ledger_account(&ledger, account);
    assert_eq!(a["available_fen"], 300_000);
    let states: Vec<&str> = a["measures"]
        .as_array()
        .expect("measures")
        .iter()
        .filter_map(|m| m["state"].as_str())
        .collect();
    assert_eq!(states, ["in_force", "waiting"], "the lifted one is gone");

    let (status, again) = post_json(&lift_url, &lift).await;
    assert_eq!(status, 404);
    assert_eq!(again["error"]["code"], "NOT_FOUND");
    let (status, _) = post_json(
        &lift_url,
        &json!({"unit_number": "x", "document_number": "y"}),
    )
    .await;
    assert_eq!(status, 400, "a bank lifts by account");
    fleet.shutdown().await;
}

#[tokio::test]
async fn releasing_a_freeze_lets_the_next_case_in_line_take_effect() {
    let fleet = pinned(0).await;
    let account = fixtures::LI_SI_BANK_A_SAVINGS_ACCOUNT;
    let (_, a) = kzqq(&fleet, &Order::freeze("K-rel-a", account, "20000.00")).await;
    assert_eq!(
        (v(&a, "KZZT"), v(&a, "SKJE"), v(&a, "CESKJE")),
        ("1", "20000.00", "0.00")
    );
    let (_, b) = kzqq(
        &fleet,
        &Order::freeze("K-rel-b", account, "8000.00").case(OTHER_CASE),
    )
    .await;
    assert_eq!(v(&b, "KZZT"), "2");
    assert_eq!(v(&b, "LHXH"), "1");
    assert_eq!(
        v(&b, "WNKZYY"),
        "已被秦州区人民法院冻结，轮候",
        "the first measure in force by another authority"
    );

    let (status, released) = kzqq(&fleet, &Order::release("K-rel-a-x", "K-rel-a", account)).await;
    assert_eq!(status, 200);
    assert_eq!(v(&released, "KZZT"), "1");
    assert_eq!(v(&released, "SKJE"), "20000.00");
    assert_eq!(v(&released, "KZBH"), v(&a, "KZBH"));

    assert_eq!(v(&kzjg(&fleet, "K-rel-a").await, "KZZT"), "3");
    let promoted = kzjg(&fleet, "K-rel-b").await;
    assert_eq!(v(&promoted, "KZZT"), "1");
    assert_eq!(v(&promoted, "SKJE"), "8000.00");
    assert_eq!(v(&promoted, "LHXH"), "0");
    assert_eq!(
        v(&kzjg(&fleet, "K-rel-a-x").await, "SKJE"),
        "20000.00",
        "a release is asked about by its own answer"
    );

    let (_, twice) = kzqq(&fleet, &Order::release("K-rel-a-y", "K-rel-a", account)).await;
    assert_eq!(v(&twice, "KZZT"), "2");
    assert_eq!(v(&twice, "WNKZYY"), "原冻结不存在或已解除");
    let (_, unknown) = kzqq(&fleet, &Order::release("K-rel-z", "K-never", account)).await;
    assert_eq!(v(&unknown, "KZZT"), "2");

    let text = li_si_at_bank_a(&fleet, "Q-li-3").await;
    assert_eq!(v(zhxx(&text, account), "KYYE"), "12000.00");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_deduction_moves_money_to_the_court_and_a_freeze_deducted_to_nothing_ends() {
    let fleet = pinned(0).await;
    let account = fixtures::ZHANG_SAN_BANK_A_DEBIT_ACCOUNT;
    let (_, frozen) = kzqq(
        &fleet,
        &Order::freeze("K-ded", account, "10000.00").zhang_san(),
    )
    .await;
    assert_eq!(v(&frozen, "KZZT"), "1");
    let (_, moved) = kzqq(
        &fleet,
        &Order::deduct("K-ded-1", "K-ded", account, "4000.00").zhang_san(),
    )
    .await;
    assert_eq!(v(&moved, "KZZT"), "1");
    assert_eq!(v(&moved, "SKJE"), "4000.00");

    let (_, bytes) = post_xml(&fleet, cxqq("P-ded", &[zhang_san("Q-ded-1")])).await;
    let text = gb18030(&bytes);
    let debit = zhxx(&text, account);
    assert_eq!(v(debit, "YE"), "121000.00");
    assert_eq!(v(debit, "KYYE"), "115000.00");
    assert_eq!(v(debit, "DJJE"), "6000.00");
    assert_eq!(v(&kzjg(&fleet, "K-ded").await, "SKJE"), "6000.00");

    let (_, too_much) = kzqq(
        &fleet,
        &Order::deduct("K-ded-2", "K-ded", account, "7000.00").zhang_san(),
    )
    .await;
    assert_eq!(v(&too_much, "KZZT"), "2");
    assert_eq!(v(&too_much, "WNKZYY"), "划拨金额超过冻结金额");
    let (_, rest) = kzqq(
        &fleet,
        &Order::deduct("K-ded-3", "K-ded", account, "6000.00").zhang_san(),
    )
    .await;
    assert_eq!(v(&rest, "KZZT"), "1");
    assert_eq!(v(&kzjg(&fleet, "K-ded").await, "KZZT"), "3", "ended");
    let (_, after) = kzqq(
        &fleet,
        &Order::deduct("K-ded-4", "K-ded", account, "1.00").zhang_san(),
    )
    .await;
    assert_eq!(v(&after, "WNKZYY"), "原冻结未生效或已解除，不能划拨");

    let (_, bytes) = post_xml(&fleet, cxqq("P-ded2", &[zhang_san("Q-ded-2")])).await;
    let text = gb18030(&bytes);
    let debit = zhxx(&text, account);
    assert_eq!(v(debit, "YE"), "115000.00");
    assert_eq!(v(debit, "KYYE"), "115000.00");
    assert!(blocks(debit, "DJXX").is_empty());

    let ledger = ledger(&fleet, fixtures::BANK_A, fixtures::ZHANG_SAN_ID).await;
    let transfers = ledger["transfers"].as_array().expect("transfers");
    assert_eq!(transfers.len(), 2);
    assert_eq!(transfers[0]["request_number"], "K-ded-1");
    assert_eq!(transfers[0]["case_number"], CASE);
    assert_eq!(transfers[0]["from_account"], account);
    assert_eq!(transfers[0]["amount_fen"], 400_000);
    assert!(transfers[0]["at"].is_string());
    assert_eq!(transfers[1]["amount_fen"], 600_000);
    assert_eq!(ledger_account(&ledger, account)["balance_fen"], 11_500_000);
    assert_eq!(ledger_control(&ledger, "K-ded-1")["action"], "deduct");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_renewal_before_expiry_extends_and_after_the_lapse_is_refused() {
    let fleet = pinned(0).await;
    let account = fixtures::LI_SI_BANK_B_ACCOUNT;
    let mut freeze = json_order("K-ren", "FREEZE", account);
    freeze["amount"] = json!("10000.00");
    freeze["start_date"] = json!("2026-11-27");
    freeze["end_date"] = json!("2027-05-26");
    let (status, frozen) = post_json(&orders_url(&fleet), &freeze).await;
    assert_eq!(status, 200, "{frozen}");
    assert_eq!(frozen["state"], "IN_FORCE");
    assert_eq!(frozen["controlled_amount"], "10000.00");
    assert_eq!(frozen["uncontrolled_amount"], "0.00");
    assert_eq!(frozen["reason"], Value::Null);
    assert_eq!(frozen["queue_position"], Value::Null);
    assert!(
        frozen["hold_id"]
            .as_str()
            .is_some_and(|h| h.starts_with('H'))
    );

    let renewal = |rn: &str, prior: &str, start: &str, end: &str| {
        let mut order = json_order(rn, "RENEW", account);
        order["prior_request_number"] = json!(prior);
        order["start_date"] = json!(start);
        order["end_date"] = json!(end);
        order
    };
    let (_, too_long) = post_json(
        &orders_url(&fleet),
        &renewal("K-ren-0", "K-ren", "2027-05-20", "2028-05-20"),
    )
    .await;
    assert_eq!(too_long["state"], "NOT_CONTROLLED");
    assert_eq!(too_long["reason"], "冻结期限超过一年");
    let (_, renewed) = post_json(
        &orders_url(&fleet),
        &renewal("K-ren-1", "K-ren", "2027-05-20", "2028-05-19"),
    )
    .await;
    assert_eq!(renewed["state"], "IN_FORCE");
    assert_eq!(renewed["controlled_amount"], "10000.00");
    assert_eq!(renewed["end_date"], "2028-05-19");
    assert_eq!(renewed["hold_id"], frozen["hold_id"]);
    assert_eq!(
        order_status(&fleet, "K-ren").await["end_date"],
        "2028-05-19"
    );
    // A renewal may name the renewal before it.
    let (_, again) = post_json(
        &orders_url(&fleet),
        &renewal("K-ren-2", "K-ren-1", "2028-05-10", "2029-05-09"),
    )
    .await;
    assert_eq!(again["state"], "IN_FORCE");

    set_clock(&fleet, fixtures::BANK_B, json!("2029-06-01")).await;
    let lapsed = order_status(&fleet, "K-ren").await;
    assert_eq!(lapsed["state"], "LAPSED");
    assert_eq!(lapsed["end_date"], "2029-05-09");
    let (_, late) = post_json(
        &orders_url(&fleet),
        &renewal("K-ren-3", "K-ren-2", "2029-06-01", "2030-05-31"),
    )
    .await;
    assert_eq!(late["state"], "NOT_CONTROLLED");
    assert_eq!(late["reason"], "原冻结已失效或已解除，不能续冻");
    assert_eq!(late["hold_id"], Value::Null);

    let (_, inquiry) = post_json(
        &url(&fleet, fixtures::BANK_B, "/api/v1/asset-inquiries"),
        &crate::bank_json::inquiry("Q-ren", fixtures::LI_SI_NAME, fixtures::LI_SI_ID),
    )
    .await;
    let a = &inquiry["accounts"][0];
    assert_eq!(a["available_balance"], "40000.00");
    assert_eq!(a["holds"], json!([]));
    let ledger = ledger(&fleet, fixtures::BANK_B, fixtures::LI_SI_ID).await;
    assert_eq!(
        ledger_account(&ledger, account)["measures"][0]["state"],
        "lapsed"
    );
    assert_eq!(ledger["today"], "2029-06-01");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_repeated_control_request_is_applied_once_and_answered_alike() {
    let fleet = pinned(0).await;
    let account = fixtures::LI_SI_BANK_B_ACCOUNT;
    let mut freeze = json_order("K-dup", "FREEZE", account);
    freeze["amount"] = json!("1000.00");
    freeze["start_date"] = json!("2026-11-27");
    freeze["end_date"] = json!("2027-11-26");
    let (_, first) = post_json(&orders_url(&fleet), &freeze).await;
    let (_, second) = post_json(&orders_url(&fleet), &freeze).await;
    assert_eq!(first, second);
    assert_eq!(first["state"], "IN_FORCE");

    // A reply cut in the middle: the order was applied all the same, and
    // the retry is recognised.
    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "malformed"})).await;
    freeze["request_number"] = json!("K-cut");
    let response = client()
        .post(orders_url(&fleet))
        .json(&freeze)
        .send()
        .await
        .expect("bank-b answers");
    assert_eq!(response.status(), 200);
    let cut = response.bytes().await.expect("a body");
    assert!(serde_json::from_slice::<Value>(&cut).is_err());
    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "normal"})).await;
    let (_, whole) = post_json(&orders_url(&fleet), &freeze).await;
    assert_eq!(whole["state"], "IN_FORCE");

    let ledger = ledger(&fleet, fixtures::BANK_B, fixtures::LI_SI_ID).await;
    for rn in ["K-dup", "K-cut"] {
        let c = ledger_control(&ledger, rn);
        assert_eq!(c["applied_count"], 1, "{c}");
        assert_eq!(c["received_count"], 2, "{c}");
        assert_eq!(c["action"], "freeze");
        assert_eq!(c["results"][0]["state"], "in_force");
        let logged: Vec<&Value> = ledger["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .filter(|r| r["request_number"] == rn)
            .collect();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0]["kind"], "control");
        assert_eq!(logged[0]["count"], 2);
    }
    let a = ledger_account(&ledger, account);
    assert_eq!(a["measures"].as_array().map(Vec::len), Some(2));
    assert_eq!(a["available_fen"], 4_000_000 - 200_000);
    fleet.shutdown().await;
}

#[tokio::test]
async fn status_queries_answer_unknown_and_known_request_numbers() {
    let fleet = pinned(0).await;
    let unknown = kzjg(&fleet, "K-nobody").await;
    assert_eq!(v(&unknown, "KZQQDH"), "K-nobody");
    assert_eq!(v(&unknown, "KZZT"), "0");
    assert_eq!(v(&unknown, "WNKZYY"), "无此控制请求");
    let odd = kzjg(&fleet, "K%20odd").await;
    assert_eq!(v(&odd, "KZQQDH"), "K odd", "the path is percent-decoded");

    let (_, answer) = kzqq(
        &fleet,
        &Order::freeze("K-st", fixtures::LI_SI_BANK_A_SAVINGS_ACCOUNT, "100.00"),
    )
    .await;
    assert_eq!(compact(&kzjg(&fleet, "K-st").await), compact(&answer));

    let nobody = order_status(&fleet, "K-nobody").await;
    assert_eq!(nobody["state"], "UNKNOWN");
    assert_eq!(nobody["reason"], "no such control order");
    assert_eq!(nobody["hold_id"], Value::Null);

    let ledger = ledger(&fleet, fixtures::BANK_A, fixtures::LI_SI_ID).await;
    let kinds: Vec<&str> = ledger["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["request_number"] == "K-st")
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["control", "control_query"]);
    fleet.shutdown().await;
}

#[tokio::test]
async fn orders_beyond_the_term_or_on_what_is_not_the_subjects_are_refused() {
    let fleet = pinned(0).await;
    let savings = fixtures::LI_SI_BANK_A_SAVINGS_ACCOUNT;
    let refused = |text: &str| (v(text, "KZZT").to_owned(), v(text, "WNKZYY").to_owned());
    let year_and_a_day = Order {
        end: "20271127".into(),
        ..Order::freeze("K-term", savings, "1.00")
    };
    let (_, fk) = kzqq(&fleet, &year_and_a_day).await;
    assert_eq!(refused(&fk), ("2".into(), "冻结期限超过一年".into()));
    assert_eq!(v(&fk, "KZBH"), "");
    assert_eq!(v(&fk, "CESKJE"), "1.00");
    let backwards = Order {
        end: "20261126".into(),
        ..Order::freeze("K-back", savings, "1.00")
    };
    assert_eq!(v(&kzqq(&fleet, &backwards).await.1, "KZZT"), "2");

    let (_, fk) = kzqq(
        &fleet,
        &Order::freeze("K-nope", "6222020200199999999", "1.00"),
    )
    .await;
    assert_eq!(refused(&fk), ("2".into(), "账号不存在".into()));
    let (_, fk) = kzqq(
        &fleet,
        &Order::freeze("K-theirs", fixtures::ZHANG_SAN_BANK_A_DEBIT_ACCOUNT, "1.00"),
    )
    .await;
    assert_eq!(refused(&fk), ("2".into(), "账户与被执行人不符".into()));

    // Nothing available and nobody else's measure in the way: refused.
    let zhang_savings = fixtures::ZHANG_SAN_BANK_A_SAVINGS_ACCOUNT;
    let (_, all) = kzqq(
        &fleet,
        &Order::freeze("K-all", zhang_savings, "9000.00").zhang_san(),
    )
    .await;
    assert_eq!(v(&all, "SKJE"), "8650.50");
    let (_, more) = kzqq(
        &fleet,
        &Order::freeze("K-more", zhang_savings, "1.00").zhang_san(),
    )
    .await;
    assert_eq!(refused(&more), ("2".into(), "账户可用余额为零".into()));

    let ledger = ledger(&fleet, fixtures::BANK_A, fixtures::LI_SI_ID).await;
    assert_eq!(
        ledger_control(&ledger, "K-term")["results"][0]["state"],
        "not_controlled"
    );
    assert_eq!(
        ledger_account(&ledger, savings)["available_fen"],
        2_000_000,
        "nothing was frozen"
    );

    // The registry: three years at most.
    let too_long = seal_order(
        "K-seal-term",
        "11",
        fixtures::LI_SI_UNIT_NUMBER,
        "",
        ("2026/11/27", "2029/11/27"),
    );
    assert_eq!(submit_control(&fleet, &too_long).await["RESULT"], "0000");
    let item = control_result(&fleet, "K-seal-term").await;
    assert_eq!(item["KZZT"], "2");
    assert_eq!(item["WNKZYY"], "查封期限超过三年");
    assert_eq!(item["YWH"], "");
    fleet.shutdown().await;
}

#[tokio::test]
async fn malformed_control_orders_are_unreadable_and_nothing_is_applied() {
    let fleet = pinned(0).await;
    let good = Order::freeze("K-bad", fixtures::LI_SI_BANK_A_SAVINGS_ACCOUNT, "1.00");
    let one_officer = Order {
        officers: 1,
        ..good.clone()
    };
    let no_notice = Order {
        documents: vec!["CDS"],
        ..good.clone()
    };
    let waiting_code = Order {
        kzcs: "03",
        ..good.clone()
    };
    let no_number = Order {
        rn: String::new(),
        ..good.clone()
    };
    let no_amount = Order {
        amount: String::new(),
        ..good.clone()
    };
    let release_without_prior = Order::release("K-bad", "", fixtures::LI_SI_BANK_A_SAVINGS_ACCOUNT);
    let mut bodies: Vec<Vec<u8>> = [
        one_officer,
        no_notice,
        waiting_code,
        no_number,
        no_amount,
        release_without_prior,
    ]
    .iter()
    .map(|o| gb(&o.xml()))
    .collect();
    bodies.push(b"<KZQQ><KZQQDH>K-bad</KZQQDH>".to_vec());
    bodies.push(b"not xml at all".to_vec());
    for body in bodies {
        let (status, text) = kzqq_bytes(&fleet, body).await;
        assert_eq!(status, 400, "{text}");
        assert_eq!(value(&text, "CWDM"), Some("E001"), "{text}");
    }

    let mut bad = json_order("K-bad-j", "FREEZE", fixtures::LI_SI_BANK_B_ACCOUNT);
    let (status, body) = post_json(&orders_url(&fleet), &bad).await;
    assert_eq!(status, 400, "a freeze without amount or dates");
    assert_eq!(body["error"]["code"], "INVALID_REQUEST");
    bad["action"] = json!("SEIZE");
    assert_eq!(post_json(&orders_url(&fleet), &bad).await.0, 400);
    let response = client()
        .post(orders_url(&fleet))
        .body("{")
        .send()
        .await
        .expect("bank-b answers");
    assert_eq!(response.status(), 400);

    let mut one_officer = seal_order("K-bad-r", "11", fixtures::LI_SI_UNIT_NUMBER, "", SEAL_TERM);
    one_officer["ZFRY"] = json!([{"XM": "李明", "GZZBH": "G1", "GWZBH": "ZX1"}]);
    let reply = submit_control(&fleet, &one_officer).await;
    assert_eq!(reply["RESULT"], "1001");
    assert_eq!(reply["CXQQDH"], "K-bad-r");
    let unknown_code = seal_order("K-bad-r2", "13", fixtures::LI_SI_UNIT_NUMBER, "", SEAL_TERM);
    assert_eq!(
        submit_control(&fleet, &unknown_code).await["RESULT"],
        "1001"
    );
    let (status, reply) = post_json(
        &url(&fleet, fixtures::REGISTRY_X, "/bdc/api/kzqq"),
        &json!({"AH": CASE}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(reply["RESULT"], "0400");

    for agency in [fixtures::BANK_A, fixtures::BANK_B, fixtures::REGISTRY_X] {
        let ledger = ledger(&fleet, agency, fixtures::LI_SI_ID).await;
        assert_eq!(ledger["controls"], json!([]), "{agency}");
    }
    let (status, reply) = control_poll(&fleet, "K-bad-r").await;
    assert_eq!(status, 404, "refused at intake, never applied: {reply}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn in_refuse_mode_control_orders_are_refused_and_nothing_is_applied() {
    let fleet = pinned(0).await;
    set_faults(&fleet, fixtures::BANK_A, json!({"mode": "refuse"})).await;
    let order = Order::freeze("K-ref", fixtures::LI_SI_BANK_A_SAVINGS_ACCOUNT, "100.00");
    let (status, refused) = kzqq(&fleet, &order).await;
    assert_eq!(status, 200);
    assert_eq!(v(&refused, "KZZT"), "2");
    assert!(!v(&refused, "WNKZYY").is_empty());
    let ledger_now = ledger(&fleet, fixtures::BANK_A, fixtures::LI_SI_ID).await;
    assert_eq!(ledger_now["controls"], json!([]));
    assert_eq!(ledger_now["requests"], json!([]));

    set_faults(&fleet, fixtures::BANK_A, json!({"mode": "normal"})).await;
    let (_, applied) = kzqq(&fleet, &order).await;
    assert_eq!(v(&applied, "KZZT"), "1");
    let ledger_now = ledger(&fleet, fixtures::BANK_A, fixtures::LI_SI_ID).await;
    assert_eq!(ledger_control(&ledger_now, "K-ref")["applied_count"], 1);

    set_faults(&fleet, fixtures::BANK_A, json!({"mode": "error"})).await;
    let (status, text) = kzqq(&fleet, &order).await;
    assert_eq!(status, 503);
    assert_eq!(value(&text, "CWDM"), Some("E999"));
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_registry_seals_li_sis_flat_and_a_later_case_waits_its_turn() {
    let fleet = pinned(300).await;
    let unit = fixtures::LI_SI_UNIT_NUMBER;
    let accepted = submit_control(&fleet, &seal_order("K-seal-1", "11", unit, "", SEAL_TERM)).await;
    assert_eq!(accepted["RESULT"], "0000");
    assert_eq!(accepted["MSG"], "已受理");
    let ticket = accepted["SLBH"].as_str().expect("a ticket").to_owned();
    let (_, early) = control_poll(&fleet, "K-seal-1").await;
    assert_eq!(early["RESULT"], "0001", "not before the delay");
    assert_eq!(early["MSG"], "处理中");

    let first = control_result(&fleet, "K-seal-1").await;
    assert_eq!(first["BDCDYH"], unit);
    assert_eq!(first["KZZT"], "1");
    assert_eq!(first["WNKZYY"], "");
    assert_eq!(first["LHSX"], 0);
    assert_eq!(first["CSKSRQ"], "2026/11/27");
    assert_eq!(first["CSJSRQ"], "2029/11/26");
    let ywh = first["YWH"].as_str().expect("YWH").to_owned();
    assert_eq!(ywh.len(), 13);

    // The same request number again: the same intake answer, nothing more.
    let again = submit_control(&fleet, &seal_order("K-seal-1", "11", unit, "", SEAL_TERM)).await;
    assert_eq!(again["SLBH"], ticket.as_str());

    let mut other = seal_order("K-seal-2", "11", unit, "", SEAL_TERM);
    other["AH"] = json!(OTHER_CASE);
    submit_control(&fleet, &other).await;
    let waiting = control_result(&fleet, "K-seal-2").await;
    assert_eq!(waiting["KZZT"], "2");
    assert_eq!(waiting["LHSX"], 1);
    assert_eq!(waiting["WNKZYY"], format!("已被{COURT}查封，轮候"));

    // The waiting seal is renewed in line (by its own case).
    let mut renew = seal_order(
        "K-seal-2r",
        "12",
        unit,
        "K-seal-2",
        ("2027/06/01", "2030/05/31"),
    );
    renew["AH"] = json!(OTHER_CASE);
    submit_control(&fleet, &renew).await;
    let renewed = control_result(&fleet, "K-seal-2r").await;
    assert_eq!(renewed["KZZT"], "1");
    assert_eq!(renewed["CSJSRQ"], "2030/05/31");
    assert_eq!(renewed["LHSX"], 1);

    submit_control(
        &fleet,
        &seal_order("K-seal-1x", "14", unit, "K-seal-1", ("", "")),
    )
    .await;
    let released = control_result(&fleet, "K-seal-1x").await;
    assert_eq!(released["KZZT"], "1");
    assert_eq!(released["YWH"], ywh.as_str());
    assert_eq!(control_result(&fleet, "K-seal-1").await["KZZT"], "3");
    let promoted = control_result(&fleet, "K-seal-2").await;
    assert_eq!(promoted["KZZT"], "1");
    assert_eq!(promoted["LHSX"], 0);
    assert_eq!(promoted["WNKZYY"], "");
    assert_eq!(promoted["CSJSRQ"], "2030/05/31");

    // An inquiry shows the seal in force now.
    let (_, inquiry) = post_json(
        &url(&fleet, fixtures::REGISTRY_X, "/bdc/api/cxqq"),
        &crate::registry::submission("Q-seal", fixtures::LI_SI_NAME, fixtures::LI_SI_ID),
    )
    .await;
    assert_eq!(inquiry["RESULT"], "0000");
    let poll = url(&fleet, fixtures::REGISTRY_X, "/bdc/api/cxjg/Q-seal");
    let poll = &poll;
    let done = eventually(Duration::from_secs(10), || async move {
        let (_, reply) = get_json(poll).await;
        (reply["RESULT"] == "0000").then_some(reply)
    })
    .await;
    let flat = &done["BDCLIST"][0];
    assert_eq!(flat["BDCDYH"], unit);
    assert_eq!(flat["MJ"], fixtures::LI_SI_UNIT_AREA);
    assert_eq!(
        flat["CFLIST"],
        json!([{"CFJG": COURT, "CFWH": OTHER_CASE, "CFKSRQ": "2026/11/27",
                "CFJSRQ": "2030/05/31", "LHSX": 0}])
    );

    // Lapsed: the seal's end is past; a renewal then is refused.
    set_clock(&fleet, fixtures::REGISTRY_X, json!("2030-06-01")).await;
    assert_eq!(control_result(&fleet, "K-seal-2").await["KZZT"], "4");
    let mut late = seal_order(
        "K-seal-2s",
        "12",
        unit,
        "K-seal-2",
        ("2030/06/01", "2033/05/31"),
    );
    late["AH"] = json!(OTHER_CASE);
    submit_control(&fleet, &late).await;
    let refused = control_result(&fleet, "K-seal-2s").await;
    assert_eq!(refused["KZZT"], "2");
    assert_eq!(refused["WNKZYY"], "原查封已失效或已解除，不能续封");

    let ledger = ledger(&fleet, fixtures::REGISTRY_X, fixtures::LI_SI_ID).await;
    let seals = ledger["units"][0]["seals"].as_array().expect("seals");
    let states: Vec<&str> = seals.iter().filter_map(|s| s["state"].as_str()).collect();
    assert_eq!(states, ["released", "lapsed"]);
    let kinds: Vec<&str> = ledger["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["request_number"] == "K-seal-1")
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["control", "control_query"]);
    for c in ledger["controls"].as_array().expect("controls") {
        assert_eq!(c["applied_count"], 1, "{c}");
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_seal_on_zhang_sans_flat_waits_behind_the_other_court_until_it_lifts() {
    let fleet = pinned(0).await;
    let unit = fixtures::ZHANG_SAN_UNIT_NUMBER;
    let mut order = seal_order("K-zs", "11", unit, "", SEAL_TERM);
    order["XM"] = json!(fixtures::ZHANG_SAN_NAME);
    order["ZJH"] = json!(fixtures::ZHANG_SAN_ID);
    submit_control(&fleet, &order).await;
    let waiting = control_result(&fleet, "K-zs").await;
    assert_eq!(waiting["KZZT"], "2");
    assert_eq!(waiting["LHSX"], 1);
    assert_eq!(waiting["WNKZYY"], "已被秦州区人民法院查封，轮候");

    // Not his: 李四's flat asked for 张三.
    let mut not_his = seal_order("K-zs-2", "11", fixtures::LI_SI_UNIT_NUMBER, "", SEAL_TERM);
    not_his["ZJH"] = json!(fixtures::ZHANG_SAN_ID);
    submit_control(&fleet, &not_his).await;
    assert_eq!(
        control_result(&fleet, "K-zs-2").await["WNKZYY"],
        "不动产权利人与被执行人不符"
    );

    let (status, lifted) = post_json(
        &url(&fleet, fixtures::REGISTRY_X, "/_mock/lift"),
        &json!({"unit_number": unit, "document_number": fixtures::ZHANG_SAN_SEAL_DOCUMENT}),
    )
    .await;
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["promoted"], "K-zs");
    let now = control_result(&fleet, "K-zs").await;
    assert_eq!(now["KZZT"], "1");
    assert_eq!(now["LHSX"], 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_mock_clock_is_set_read_and_given_back() {
    let fleet = standard().await;
    let clock = url(&fleet, fixtures::BANK_A, "/_mock/clock");
    let (status, real) = get_json(&clock).await;
    assert_eq!(status, 200);
    assert_eq!(real["overridden"], false);
    assert_eq!(real["today"].as_str().map(str::len), Some(10));

    let set = set_clock(&fleet, fixtures::BANK_A, json!("2027-12-01")).await;
    assert_eq!(set, json!({"today": "2027-12-01", "overridden": true}));
    assert_eq!(get_json(&clock).await.1, set);
    let (_, other) = get_json(&url(&fleet, fixtures::BANK_B, "/_mock/clock")).await;
    assert_eq!(other["overridden"], false, "each agency has its own clock");

    let back = set_clock(&fleet, fixtures::BANK_A, Value::Null).await;
    assert_eq!(back, real);
    for bad in [
        json!({"today": "01.12.2027"}),
        json!({"now": null}),
        json!([]),
    ] {
        assert_eq!(post_json(&clock, &bad).await.0, 400, "{bad}");
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_bank_of_the_fleet_takes_control_orders_under_its_prefix() {
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let fleet = MockBankFleet::start(7, 50, 42, listen)
        .await
        .expect("the fleet starts");
    let base = fleet
        .agency_base_url(fixtures::FLEET_ZHANG_SAN_BANK)
        .expect("fleet-0042");
    let (status, _) = post_json(
        &format!("{base}/_mock/clock"),
        &json!({"today": "2026-11-27"}),
    )
    .await;
    assert_eq!(status, 200);
    let order = Order::freeze("K-fleet", fixtures::FLEET_ZHANG_SAN_ACCOUNT, "100.00").zhang_san();
    let utf8 = order.xml().replace("GB18030", "UTF-8");
    let (status, _, bytes) = post_bytes(
        &format!("{base}/ckxt/kzqq"),
        "application/xml; charset=UTF-8",
        utf8.into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let fk = String::from_utf8(bytes).expect("fleet-0042 answers in UTF-8");
    assert_eq!(v(&fk, "KZZT"), "1");
    assert_eq!(v(&fk, "SKJE"), "100.00");
    let (_, ledger) = get_json(&format!(
        "{base}/_mock/ledger?holder={}",
        fixtures::ZHANG_SAN_ID
    ))
    .await;
    assert_eq!(ledger_control(&ledger, "K-fleet")["applied_count"], 1);
    fleet.shutdown().await;
}

/// What the mocks acknowledge for a `-TAMPERED` document sent with
/// `sha256`: the SHA-256 of that digest's text, hex.
fn tampered_digest(sha256: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(sha256.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `(WSBH, WSHASH)` of every `WSQR` of a `KZFK`.
fn wsqr(kzfk: &str) -> Vec<(String, String)> {
    blocks(kzfk, "WSQR")
        .into_iter()
        .map(|q| (v(q, "WSBH").to_owned(), v(q, "WSHASH").to_owned()))
        .collect()
}

#[tokio::test]
async fn documents_are_acknowledged_with_the_digests_the_agency_computed_in_every_answer() {
    let fleet = pinned(0).await;
    let other = tampered_digest(HASH);
    assert_ne!(other, HASH);

    // court-bank-xml: the assistance notice's number says it was tampered with.
    let order = Order::freeze("K-ack", fixtures::LI_SI_BANK_A_SAVINGS_ACCOUNT, "100.00");
    let notice = format!("{CASE}之1-TAMPERED");
    let tampered = order
        .xml()
        .replace(&format!("{CASE}之1</WSBH>"), &format!("{notice}</WSBH>"));
    assert_ne!(tampered, order.xml());
    let (status, first) = kzqq_bytes(&fleet, gb(&tampered)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(v(&first, "KZZT"), "1");
    let expected = vec![
        (format!("{CASE}之0"), HASH.to_owned()),
        (notice.clone(), other.clone()),
    ];
    assert_eq!(wsqr(&first), expected, "{first}");
    // A repeat is answered with the documents as they first arrived, even
    // when the repeat carries others.
    let (_, again) = kzqq(&fleet, &order).await;
    assert_eq!(compact(&again), compact(&first));
    assert_eq!(wsqr(&kzjg(&fleet, "K-ack").await), expected);
    let unknown = kzjg(&fleet, "K-ack-nobody").await;
    assert_eq!(v(&unknown, "KZZT"), "0");
    assert!(!unknown.contains("WSQRLIST"), "{unknown}");

    // bank-json.
    let mut freeze = json_order("K-ack-b", "FREEZE", fixtures::LI_SI_BANK_B_ACCOUNT);
    freeze["amount"] = json!("100.00");
    freeze["start_date"] = json!("2026-11-27");
    freeze["end_date"] = json!("2027-11-26");
    freeze["documents"][1]["number"] = json!("协冻-1-TAMPERED");
    let expected = json!([
        {"number": "(2024)甘0503执1234号之一", "sha256": HASH},
        {"number": "协冻-1-TAMPERED", "sha256": other},
    ]);
    let (status, first) = post_json(&orders_url(&fleet), &freeze).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["state"], "IN_FORCE");
    assert_eq!(first["documents_received"], expected);
    let (_, again) = post_json(&orders_url(&fleet), &freeze).await;
    assert_eq!(again, first);
    assert_eq!(
        order_status(&fleet, "K-ack-b").await["documents_received"],
        expected
    );
    assert_eq!(
        order_status(&fleet, "K-ack-nobody").await["documents_received"],
        json!([])
    );
    // The refuse fault takes nothing in and acknowledges nothing.
    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "refuse"})).await;
    freeze["request_number"] = json!("K-ack-refused");
    let (_, refused) = post_json(&orders_url(&fleet), &freeze).await;
    assert_eq!(refused["state"], "NOT_CONTROLLED");
    assert_eq!(refused["documents_received"], json!([]));
    set_faults(&fleet, fixtures::BANK_B, json!({"mode": "normal"})).await;

    // registry-json: the poll's item acknowledges, the intake receipt not.
    let mut seal = seal_order(
        "K-ack-seal",
        "11",
        fixtures::LI_SI_UNIT_NUMBER,
        "",
        SEAL_TERM,
    );
    seal["WSLIST"][0]["WSBH"] = json!("(2024)甘0503执1234号之二-TAMPERED");
    let accepted = submit_control(&fleet, &seal).await;
    assert_eq!(accepted["RESULT"], "0000");
    assert!(accepted.get("WSQRLIST").is_none(), "{accepted}");
    let expected = json!([
        {"WSBH": "(2024)甘0503执1234号之二-TAMPERED", "WSHASH": other},
        {"WSBH": "协封-1", "WSHASH": HASH},
    ]);
    let item = control_result(&fleet, "K-ack-seal").await;
    assert_eq!(item["KZZT"], "1");
    assert_eq!(item["WSQRLIST"], expected);
    submit_control(&fleet, &seal).await;
    assert_eq!(
        control_result(&fleet, "K-ack-seal").await["WSQRLIST"],
        expected
    );
    fleet.shutdown().await;
}
