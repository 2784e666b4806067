//! The agencies of the further kinds of asset, as config/mock-agencies.toml
//! runs them, spoken to with the requests of their dialects' conformance
//! packs: each answers from its ledger in its own wire format.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use mock_agencies::{MockConfig, MockFleet, fixtures};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::common::*;

pub fn repo_config() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

pub fn pack(dialect: &str, file: &str) -> Vec<u8> {
    std::fs::read(repo_config().join(format!("conformance/{dialect}/{file}")))
        .expect("the pack is there")
}

/// The shipped fleet, on ephemeral ports; with `payment_key_file` the
/// payment platform reads its key there instead.
pub async fn shipped(payment_key_file: Option<&std::path::Path>) -> MockFleet {
    let mut config =
        MockConfig::load(&repo_config().join("mock-agencies.toml")).expect("the shipped config");
    if let Some(file) = payment_key_file {
        for spec in &mut config.agencies {
            if spec.id == fixtures::PAYMENT_P {
                spec.signing_key_file = Some(file.to_owned());
            }
        }
    }
    start(&config).await
}

pub async fn ledger(fleet: &MockFleet, agency: &str, holder: &str) -> Value {
    get_json(&url(
        fleet,
        agency,
        &format!("/_mock/ledger?holder={holder}"),
    ))
    .await
    .1
}

async fn soap(fleet: &MockFleet, action: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut request = client()
        .post(url(fleet, fixtures::VEHICLE_V, "/vehicle/soap"))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .body(body);
    if let Some(action) = action {
        request = request.header("SOAPAction", action);
    }
    let response = request.send().await.expect("the register answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

const ACTION: &str = "\"urn:example:vehicle:1#QueryVehicles\"";

#[tokio::test]
async fn the_vehicle_register_answers_li_sis_sealed_car_over_soap_and_refuses_with_faults() {
    let fleet = shipped(None).await;
    let (status, reply) = soap(
        &fleet,
        Some(ACTION),
        pack("vehicle-soap", "found.request.xml"),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let reply = compact(&reply);
    assert!(
        reply.contains("<v:ReqNo>Q1-vehicle-x</v:ReqNo><v:Result>1</v:Result>"),
        "{reply}"
    );
    assert_eq!(value(&reply, "v:Clsbdh"), Some(fixtures::LI_SI_VIN));
    assert_eq!(value(&reply, "v:Hphm"), Some(fixtures::LI_SI_PLATE));
    assert_eq!(value(&reply, "v:Zt"), Some("KM"), "sealed and mortgaged");
    let seals = blocks(&reply, "v:Cfxx");
    assert_eq!(seals.len(), 2, "{reply}");
    assert_eq!(
        value(seals[0], "v:Cfwh"),
        Some(fixtures::LI_SI_SEAL_DOCUMENT)
    );
    assert_eq!(value(seals[0], "v:Jfrq"), Some("2027-02-28"));
    assert_eq!(value(seals[0], "v:Lhxh"), Some("0"));
    assert_eq!(value(seals[1], "v:Lhxh"), Some("1"));
    // The same car in the register's ledger.
    let book = ledger(&fleet, fixtures::VEHICLE_V, fixtures::LI_SI_ID).await;
    assert_eq!(book["vehicles"][0]["vin"], fixtures::LI_SI_VIN, "{book}");
    assert_eq!(book["vehicles"][0]["state_flags"], "KM");
    assert_eq!(book["requests"][0]["request_number"], "Q1-vehicle-x");

    // Nobody's car: Result 0.
    let wang_wu = String::from_utf8_lossy(&pack("vehicle-soap", "found.request.xml"))
        .replace(fixtures::LI_SI_ID, fixtures::WANG_WU_ID)
        .replace("Q1-vehicle-x", "Q2-vehicle-x");
    let (status, reply) = soap(&fleet, Some(ACTION), wang_wu.into_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(value(&reply, "v:Result"), Some("0"), "{reply}");

    // Without its SOAPAction, or refused: a client fault with HTTP 500.
    let (status, reply) = soap(&fleet, None, pack("vehicle-soap", "found.request.xml")).await;
    assert_eq!(status, 500);
    assert_eq!(value(&reply, "faultcode"), Some("soap:Client"), "{reply}");
    set_faults(&fleet, fixtures::VEHICLE_V, json!({"mode": "refuse"})).await;
    let (status, reply) = soap(
        &fleet,
        Some(ACTION),
        pack("vehicle-soap", "found.request.xml"),
    )
    .await;
    assert_eq!(
        (status, value(&reply, "faultcode")),
        (500, Some("soap:Client"))
    );
    // Its own trouble: a server fault.
    set_faults(&fleet, fixtures::VEHICLE_V, json!({"mode": "error"})).await;
    let (status, reply) = soap(
        &fleet,
        Some(ACTION),
        pack("vehicle-soap", "found.request.xml"),
    )
    .await;
    assert_eq!(
        (status, value(&reply, "faultcode")),
        (503, Some("soap:Server")),
        "{reply}"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_depository_takes_zhang_sans_query_with_a_ticket_and_answers_the_poll_later() {
    let fleet = shipped(None).await;
    let (status, _, reply) = post_bytes(
        &url(&fleet, fixtures::SECURITIES_S, "/sec/v1/queries"),
        "application/xml; charset=UTF-8",
        pack("securities-xml", "submit.request.xml"),
    )
    .await;
    let reply = String::from_utf8(reply).expect("UTF-8");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(value(&reply, "Code"), Some("0"), "{reply}");
    assert!(
        value(&reply, "Ticket").is_some_and(|t| t.starts_with("SQ")),
        "{reply}"
    );

    let poll = url(
        &fleet,
        fixtures::SECURITIES_S,
        "/sec/v1/results/Q1-depository",
    );
    let result = eventually(Duration::from_secs(5), || {
        let poll = poll.clone();
        async move {
            let text = client().get(&poll).send().await.ok()?.text().await.ok()?;
            (value(&text, "Code") != Some("P")).then_some(text)
        }
    })
    .await;
    let result = compact(&result);
    assert!(result.contains("<Code>F</Code>"), "{result}");
    assert!(
        result.contains(&format!(
            "<Holding acct=\"{}\" mkt=\"SH\"><Code>{}</Code><Name>{}</Name><Qty>12000</Qty><Free>12000</Free><Custodian>{}</Custodian></Holding>",
            fixtures::ZHANG_SAN_SECURITIES_ACCOUNT,
            fixtures::ZHANG_SAN_SECURITY_CODE,
            fixtures::ZHANG_SAN_SECURITY_NAME,
            fixtures::ZHANG_SAN_CUSTODIAN
        )),
        "{result}"
    );
    let never = client()
        .get(url(
            &fleet,
            fixtures::SECURITIES_S,
            "/sec/v1/results/never-sent",
        ))
        .send()
        .await
        .expect("an answer");
    let status = never.status().as_u16();
    assert_eq!(status, 404);
    fleet.shutdown().await;
}

/// The canonical string of the payment dialect, written again here.
pub fn canonical(object: &Map<String, Value>) -> String {
    fn sorted(v: &Value) -> String {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                let parts: Vec<String> = keys
                    .iter()
                    .map(|k| format!("{}:{}", Value::String((*k).clone()), sorted(&o[*k])))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            Value::Array(a) => format!("[{}]", a.iter().map(sorted).collect::<Vec<_>>().join(",")),
            other => other.to_string(),
        }
    }
    let mut fields: Vec<(&String, &Value)> = object
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_null() && v.as_str() != Some(""))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={}", sorted(other)),
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub fn signed_by(key: &[u8], message: &Value) -> bool {
    let Some(object) = message.as_object() else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(canonical(object).as_bytes());
    let given = message["sign"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .unwrap_or_default();
    mac.verify_slice(&given).is_ok()
}

#[tokio::test]
async fn the_payment_platform_checks_the_signature_and_signs_its_answer() {
    const PACK_KEY: &str = "conformance-test-key-payment";
    let dir = tempfile::tempdir().expect("a temporary folder");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{PACK_KEY}\n")).expect("written");
    let fleet = shipped(Some(&key_file)).await;
    let endpoint = url(&fleet, fixtures::PAYMENT_P, "/pay/v1/court/account-query");
    let request: Value =
        serde_json::from_slice(&pack("payment-json", "found.request.json")).expect("JSON");

    // Altered after signing, or unsigned: refused, signed, nothing remembered.
    let mut altered = request.clone();
    altered["id_no"] = fixtures::WANG_WU_ID.into();
    let (status, reply) = post_json(&endpoint, &altered).await;
    assert_eq!(status, 200);
    assert_eq!(reply["result"], "REJECTED", "{reply}");
    assert_eq!(reply["message"], "签名验证失败");
    assert!(signed_by(PACK_KEY.as_bytes(), &reply), "{reply}");
    let mut unsigned = request.clone();
    unsigned.as_object_mut().map(|o| o.remove("sign"));
    let (_, reply) = post_json(&endpoint, &unsigned).await;
    assert_eq!(
        (reply["result"].as_str(), reply["message"].as_str()),
        (Some("REJECTED"), Some("缺少签名"))
    );
    let book = ledger(&fleet, fixtures::PAYMENT_P, fixtures::ZHANG_SAN_ID).await;
    assert_eq!(
        book["requests"],
        json!([]),
        "refusals are not taken in: {book}"
    );

    // The pack's signed request: 张三's account, the answer signed.
    let (status, reply) = post_json(&endpoint, &request).await;
    assert_eq!(status, 200);
    assert_eq!(reply["req_no"], "Q1-pay");
    assert_eq!(reply["result"], "FOUND", "{reply}");
    assert!(signed_by(PACK_KEY.as_bytes(), &reply), "{reply}");
    assert!(!signed_by(b"another key", &reply));
    let account = &reply["accounts"][0];
    assert_eq!(account["account_id"], fixtures::ZHANG_SAN_PAYMENT_ACCOUNT);
    assert_eq!(account["holder"], fixtures::ZHANG_SAN_NAME);
    assert_eq!(
        account["balance_fen"],
        fixtures::ZHANG_SAN_PAYMENT_BALANCE_FEN
    );
    assert_eq!(
        account["available_fen"],
        fixtures::ZHANG_SAN_PAYMENT_BALANCE_FEN
    );
    assert_eq!(account["fund_fen"], fixtures::ZHANG_SAN_PAYMENT_FUND_FEN);
    assert_eq!(account["frozen"], json!([]));
    let book = ledger(&fleet, fixtures::PAYMENT_P, fixtures::ZHANG_SAN_ID).await;
    assert_eq!(
        book["payment_accounts"][0]["account_id"],
        fixtures::ZHANG_SAN_PAYMENT_ACCOUNT
    );
    fleet.shutdown().await;
}

/// A push as the court side received it: its `Authorization`, its body.
type Push = (Option<String>, Value);

#[derive(Clone, Default)]
struct CourtSide {
    pushes: Arc<Mutex<Vec<Push>>>,
}

async fn take(State(court): State<CourtSide>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    court
        .pushes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((authorization, body));
    StatusCode::OK
}

#[tokio::test]
async fn the_fund_centre_acknowledges_and_pushes_zhang_sans_account_to_the_notify_url() {
    let court = CourtSide::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let notify = format!(
        "http://{}/v1/callbacks/fund-f",
        listener.local_addr().expect("an address")
    );
    let app = Router::new()
        .route("/v1/callbacks/fund-f", post(take))
        .with_state(court.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let fleet = shipped(None).await;
    let mut request: Value =
        serde_json::from_slice(&pack("fund-callback", "submit.request.json")).expect("JSON");
    request["notify_url"] = notify.into();
    let endpoint = url(&fleet, fixtures::FUND_F, "/gjj/api/v1/court-queries");
    let (status, ack) = post_json(&endpoint, &request).await;
    assert_eq!(status, 200);
    assert_eq!(ack["code"], "ACCEPTED", "{ack}");
    assert!(
        ack["ticket"]
            .as_str()
            .is_some_and(|t| t.starts_with("GJJ-"))
    );
    // Asked again: the same acknowledgement, and still one push.
    let (_, again) = post_json(&endpoint, &request).await;
    assert_eq!(again, ack);

    let pushes = eventually(Duration::from_secs(10), || {
        let court = court.clone();
        async move {
            let pushes = court
                .pushes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            (!pushes.is_empty()).then_some(pushes)
        }
    })
    .await;
    let (authorization, body) = &pushes[0];
    assert_eq!(
        authorization.as_deref(),
        Some("Bearer demo-fund-callback-token")
    );
    assert_eq!(body["query_no"], "Q1-fund-centre");
    assert_eq!(body["status"], "FOUND", "{body}");
    let account = &body["accounts"][0];
    assert_eq!(account["account_no"], fixtures::ZHANG_SAN_FUND_ACCOUNT);
    assert_eq!(account["balance"], "48200.50");
    assert_eq!(account["available"], "48200.50");
    assert_eq!(account["state"], "NORMAL");
    assert_eq!(account["withdrawable"], false);
    // The push is in the ledger, answered 200.
    let book = eventually(Duration::from_secs(5), || {
        let fleet = &fleet;
        async move {
            let book = ledger(fleet, fixtures::FUND_F, fixtures::ZHANG_SAN_ID).await;
            let pushed = book["requests"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r["kind"] == "callback" && r["callback_status"] == 200)
            });
            pushed.then_some(book)
        }
    })
    .await;
    assert_eq!(
        book["fund_accounts"][0]["account_no"],
        fixtures::ZHANG_SAN_FUND_ACCOUNT
    );
    assert_eq!(
        court
            .pushes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len(),
        1,
        "pushed once"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_market_registry_answers_a_gbk_batch_with_the_organisations_partly_frozen_equity() {
    let fleet = shipped(None).await;
    let (status, content_type, reply) = post_bytes(
        &url(&fleet, fixtures::MARKET_M, "/scjg/gqcx"),
        "application/xml; charset=GBK",
        pack("market-gbk-xml", "batch-gbk.request.xml"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/xml; charset=GBK");
    let (text, had_errors) = encoding_rs::GBK.decode_without_bom_handling(&reply);
    assert!(!had_errors, "GBK throughout");
    assert!(std::str::from_utf8(&reply).is_err(), "not UTF-8");
    let text = compact(&text);
    assert!(
        text.starts_with("<?xml version=\"1.0\" encoding=\"GBK\"?>"),
        "{text}"
    );
    let items = blocks(&text, "FKXX");
    assert_eq!(items.len(), 2, "{text}");
    assert_eq!(value(items[0], "CXQQDH"), Some("Q1-market"));
    assert_eq!(value(items[0], "JG"), Some("1"));
    assert_eq!(
        value(items[0], "QYMC"),
        Some(fixtures::SAMPLE_ORG_EQUITY_COMPANY)
    );
    assert_eq!(
        value(items[0], "TYSHXYDM"),
        Some(fixtures::SAMPLE_ORG_EQUITY_CREDIT_CODE)
    );
    assert_eq!(value(items[0], "RJCZE"), Some("3500000.00"));
    assert_eq!(value(items[0], "SJCZE"), Some("1000000.00"));
    assert_eq!(value(items[0], "CGBL"), Some("35.00%"));
    assert_eq!(
        value(items[0], "DJJG"),
        Some(fixtures::SAMPLE_ORG_EQUITY_FREEZE_AUTHORITY)
    );
    assert_eq!(value(items[0], "DJJE"), Some("1500000.00"));
    assert_eq!(value(items[0], "JSRQ"), Some("20280229"));
    assert_eq!(value(items[0], "LHXH"), Some("0"));
    assert_eq!(value(items[1], "CXQQDH"), Some("Q2-market"));
    assert_eq!(value(items[1], "JG"), Some("0"));
    let book = ledger(&fleet, fixtures::MARKET_M, fixtures::SAMPLE_ORG_ID).await;
    assert_eq!(book["equity"][0]["share_ratio"], "35.00%", "{book}");
    fleet.shutdown().await;
}
