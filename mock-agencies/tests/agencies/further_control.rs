//! Control measures at the agencies of the further kinds, over real HTTP,
//! sent as the gateway's dialects write them (the conformance packs'
//! request samples): each agency decides by the shared ledger rules and
//! answers in its own wire format, and its `/_mock/ledger` shows what it
//! holds.

use std::time::Duration;

use hmac::{Hmac, Mac};
use mock_agencies::{MockFleet, fixtures};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::*;
use crate::further_kinds::{canonical, ledger, pack, shipped, signed_by};

const CONTROL_ACTION: &str = "\"urn:example:vehicle:1#ControlVehicle\"";
const STATUS_ACTION: &str = "\"urn:example:vehicle:1#QueryControl\"";

async fn soap(fleet: &MockFleet, action: &str, body: Vec<u8>) -> (u16, String) {
    let response = client()
        .post(url(fleet, fixtures::VEHICLE_V, "/vehicle/soap"))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", action)
        .body(body)
        .send()
        .await
        .expect("the register answers");
    let status = response.status().as_u16();
    (status, compact(&response.text().await.expect("a body")))
}

fn text_of(dialect: &str, file: &str) -> String {
    String::from_utf8(pack(dialect, file)).expect("UTF-8")
}

#[tokio::test]
async fn the_vehicle_register_seals_a_car_queues_a_sealed_one_and_tells_the_state_by_request_number()
 {
    let fleet = shipped(None).await;
    let order = text_of("vehicle-soap", "seal-submit.request.xml");

    // 张三's car is free: sealed for two years, both documents acknowledged.
    let (status, reply) = soap(&fleet, CONTROL_ACTION, order.clone().into_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(value(&reply, "v:Kzzt"), Some("1"), "{reply}");
    assert_eq!(value(&reply, "v:Clsbdh"), Some(fixtures::ZHANG_SAN_VIN));
    assert_eq!(value(&reply, "v:Jfrq"), Some("2028-11-26"));
    let number = value(&reply, "v:Kzbh").unwrap_or_default().to_owned();
    assert!(number.starts_with("CF"), "{reply}");
    assert_eq!(blocks(&reply, "v:Wsqr").len(), 2, "{reply}");
    // Sent again: applied once, answered with the same state.
    let (_, again) = soap(&fleet, CONTROL_ACTION, order.clone().into_bytes()).await;
    assert_eq!(value(&again, "v:Kzbh"), Some(number.as_str()));
    let book = ledger(&fleet, fixtures::VEHICLE_V, fixtures::ZHANG_SAN_ID).await;
    assert_eq!(book["vehicles"][0]["state_flags"], "K", "{book}");
    let seal = &book["vehicles"][0]["seals"][0];
    assert_eq!(
        (&seal["origin"], &seal["state"], &seal["request_number"]),
        (
            &json!("control"),
            &json!("in_force"),
            &json!("K1-vehicle-v")
        )
    );
    assert_eq!(book["controls"][0]["received_count"], 2);
    assert_eq!(book["controls"][0]["applied_count"], 1);

    // 李四's car is sealed by another court, another seal waiting: ours waits second.
    let li_si = order
        .replace("K1-vehicle-v", "K2-vehicle-v")
        .replace(fixtures::ZHANG_SAN_ID, fixtures::LI_SI_ID)
        .replace(fixtures::ZHANG_SAN_VIN, fixtures::LI_SI_VIN);
    let (_, reply) = soap(&fleet, CONTROL_ACTION, li_si.into_bytes()).await;
    assert_eq!(value(&reply, "v:Kzzt"), Some("2"), "{reply}");
    assert_eq!(value(&reply, "v:Lhxh"), Some("2"));
    assert_eq!(value(&reply, "v:Yy"), Some("已被秦州区人民法院查封，轮候"));

    // Both standing seals lifted: ours takes effect, as the status query says.
    for document in [
        fixtures::LI_SI_SEAL_DOCUMENT,
        fixtures::LI_SI_WAITING_SEAL_DOCUMENT,
    ] {
        let (status, lifted) = post_json(
            &url(&fleet, fixtures::VEHICLE_V, "/_mock/lift"),
            &json!({"vin": fixtures::LI_SI_VIN, "document_number": document}),
        )
        .await;
        assert_eq!(status, 200, "{lifted}");
    }
    let query = text_of("vehicle-soap", "status-unknown.request.xml");
    let (_, reply) = soap(
        &fleet,
        STATUS_ACTION,
        query.replace("K5-vehicle-v", "K2-vehicle-v").into_bytes(),
    )
    .await;
    assert!(reply.contains("<v:QueryControlResponse>"), "{reply}");
    assert_eq!(value(&reply, "v:Kzzt"), Some("1"), "{reply}");
    assert_eq!(value(&reply, "v:Lhxh"), Some("0"));
    // Never received: Kzzt 0.
    let (status, reply) = soap(&fleet, STATUS_ACTION, query.into_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(value(&reply, "v:Kzzt"), Some("0"), "{reply}");

    // A seal past its end date lapses (the mock's clock moved on).
    let (status, _) = post_json(
        &url(&fleet, fixtures::VEHICLE_V, "/_mock/clock"),
        &json!({"today": "2028-11-27"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, reply) = soap(
        &fleet,
        STATUS_ACTION,
        text_of("vehicle-soap", "status-unknown.request.xml")
            .replace("K5-vehicle-v", "K1-vehicle-v")
            .into_bytes(),
    )
    .await;
    assert_eq!(value(&reply, "v:Kzzt"), Some("4"), "lapsed: {reply}");

    // An order with one officer: a client fault, nothing taken in.
    let one_officer = order.replacen(
        "<v:Officer><v:Name>赵强</v:Name><v:WorkCard>G620503002</v:WorkCard><v:Credential>ZX620503002</v:Credential></v:Officer>",
        "",
        1,
    );
    let (status, reply) = soap(
        &fleet,
        CONTROL_ACTION,
        one_officer
            .replace("K1-vehicle-v", "K6-vehicle-v")
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(value(&reply, "faultcode"), Some("soap:Client"), "{reply}");
    fleet.shutdown().await;
}

async fn poll_securities(fleet: &MockFleet, rn: &str) -> String {
    let endpoint = url(
        fleet,
        fixtures::SECURITIES_S,
        &format!("/sec/v1/control-results/{rn}"),
    );
    eventually(Duration::from_secs(5), || {
        let endpoint = endpoint.clone();
        async move {
            let response = client().get(&endpoint).send().await.ok()?;
            let text = compact(&response.text().await.ok()?);
            (value(&text, "Code") == Some("D")).then_some(text)
        }
    })
    .await
}

#[tokio::test]
async fn the_depository_freezes_the_free_shares_queues_behind_another_freeze_and_is_polled() {
    let fleet = shipped(None).await;
    let endpoint = url(&fleet, fixtures::SECURITIES_S, "/sec/v1/controls");
    let order = text_of("securities-xml", "control-submit.request.xml");

    // 15,000 asked of 张三's 12,000 free shares: a ticket now, the result later.
    let (status, _, reply) =
        post_bytes(&endpoint, "application/xml", order.clone().into_bytes()).await;
    let reply = compact(&String::from_utf8_lossy(&reply));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(value(&reply, "Code"), Some("0"), "{reply}");
    let ticket = value(&reply, "Ticket").unwrap_or_default().to_owned();
    assert!(ticket.starts_with("SC"), "{reply}");
    let result = poll_securities(&fleet, "K1-securities-s").await;
    assert_eq!(value(&result, "State"), Some("1"), "{result}");
    assert_eq!(value(&result, "Frozen"), Some("12000"));
    assert_eq!(value(&result, "Short"), Some("3000"));
    assert_eq!(value(&result, "Msg"), Some("可冻结证券数量不足"));
    assert_eq!(value(&result, "Ticket"), Some(ticket.as_str()));
    assert_eq!(result.matches("<DocAck ").count(), 2, "{result}");
    let book = ledger(&fleet, fixtures::SECURITIES_S, fixtures::ZHANG_SAN_ID).await;
    let holding = &book["securities"][0];
    assert_eq!(holding["free_quantity"], 0, "{book}");
    assert_eq!(holding["freezes"][0]["quantity"], 12_000);
    assert_eq!(holding["freezes"][0]["asked_quantity"], 15_000);
    assert_eq!(
        book["controls"][0]["results"][0]["controlled_quantity"],
        12_000
    );

    // 赵六's shares are all frozen by another court: the freeze waits.
    let zhao_liu = order
        .replace("K1-securities-s", "K2-securities-s")
        .replace("张三", fixtures::ZHAO_LIU_NAME)
        .replace(fixtures::ZHANG_SAN_ID, fixtures::ZHAO_LIU_ID)
        .replace(
            r#"acct="A123456789" code="600000" qty="15000""#,
            r#"acct="0198765432" code="000002" qty="2000""#,
        );
    let (_, _, reply) = post_bytes(&endpoint, "application/xml", zhao_liu.into_bytes()).await;
    assert_eq!(
        value(&String::from_utf8_lossy(&reply), "Code"),
        Some("0"),
        "accepted"
    );
    let result = poll_securities(&fleet, "K2-securities-s").await;
    assert_eq!(value(&result, "State"), Some("2"), "{result}");
    assert_eq!(value(&result, "Queue"), Some("1"));
    assert_eq!(value(&result, "Msg"), Some("已被秦州区人民法院冻结，轮候"));

    // Never received: 404, U.
    let (status, _, reply) = get_bytes(&url(
        &fleet,
        fixtures::SECURITIES_S,
        "/sec/v1/control-results/K5-securities-s",
    ))
    .await;
    assert_eq!(status, 404);
    assert_eq!(value(&reply, "Code"), Some("U"), "{reply}");

    // An order without its assistance notice: refused at intake, nothing taken in.
    let notice = r#"<Doc kind="ASSIST_NOTICE" no="协冻-1" sha256="1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"/>"#;
    assert!(order.contains(notice));
    let (status, _, reply) = post_bytes(
        &endpoint,
        "application/xml",
        order
            .replace(notice, "")
            .replace("K1-securities-s", "K3-securities-s")
            .into_bytes(),
    )
    .await;
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(status, 200);
    assert_eq!(value(&reply, "Code"), Some("E12"), "{reply}");
    let (status, _, _) = get_bytes(&url(
        &fleet,
        fixtures::SECURITIES_S,
        "/sec/v1/control-results/K3-securities-s",
    ))
    .await;
    assert_eq!(status, 404, "refused at intake: never received");
    fleet.shutdown().await;
}

async fn get_bytes(url: &str) -> (u16, String, String) {
    let response = client().get(url).send().await.expect("the agency answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("a body");
    let (text, _, _) = encoding_rs::GBK.decode(&bytes);
    (status, content_type, compact(&text))
}

const PACK_KEY: &str = "conformance-test-key-payment";

/// `message` with a timestamp, a nonce and its signature under the pack's key.
fn signed(mut message: Value) -> Value {
    if let Some(object) = message.as_object_mut() {
        object.remove("sign");
        object.insert("timestamp".into(), 1_764_230_500.into());
        object.insert("nonce".into(), "00112233445566778899aabbccddeeff".into());
        let mut mac = Hmac::<Sha256>::new_from_slice(PACK_KEY.as_bytes()).expect("any key length");
        mac.update(canonical(object).as_bytes());
        object.insert(
            "sign".into(),
            hex::encode(mac.finalize().into_bytes()).into(),
        );
    }
    message
}

#[tokio::test]
async fn the_payment_platform_freezes_deducts_and_answers_every_control_message_signed() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, PACK_KEY).expect("written");
    let fleet = shipped(Some(&key_file)).await;
    let endpoint = url(&fleet, fixtures::PAYMENT_P, "/pay/v1/court/control");
    let query = url(&fleet, fixtures::PAYMENT_P, "/pay/v1/court/control-query");
    let order: Value =
        serde_json::from_slice(&pack("payment-json", "freeze-partial.request.json")).expect("JSON");

    // Unsigned: rejected, signed, not taken in.
    let mut unsigned = order.clone();
    unsigned.as_object_mut().map(|o| o.remove("sign"));
    let (_, reply) = post_json(&endpoint, &unsigned).await;
    assert_eq!(reply["result"], "REJECTED", "{reply}");
    assert!(signed_by(PACK_KEY.as_bytes(), &reply));

    // The pack's order: 5,000.00 asked of 3,560.00.
    let (status, reply) = post_json(&endpoint, &order).await;
    assert_eq!(status, 200);
    assert!(signed_by(PACK_KEY.as_bytes(), &reply), "{reply}");
    assert_eq!(
        (
            &reply["state"],
            &reply["controlled_fen"],
            &reply["shortfall_fen"]
        ),
        (&json!("IN_FORCE"), &json!(356_000), &json!(144_000)),
        "{reply}"
    );
    assert_eq!(reply["message"], "余额不足");
    assert_eq!(
        reply["documents_received"].as_array().map(Vec::len),
        Some(2)
    );

    // 1,000.00 deducted to the court: the money leaves the balance.
    let mut deduct = order.clone();
    deduct["req_no"] = "K2-payment-p".into();
    deduct["action"] = "DEDUCT".into();
    deduct["amount_fen"] = 100_000.into();
    deduct["start_date"] = Value::Null;
    deduct["end_date"] = Value::Null;
    deduct["prior_req_no"] = "K1-payment-p".into();
    let (_, reply) = post_json(&endpoint, &signed(deduct)).await;
    assert_eq!(
        (&reply["state"], &reply["controlled_fen"]),
        (&json!("IN_FORCE"), &json!(100_000)),
        "{reply}"
    );
    let book = ledger(&fleet, fixtures::PAYMENT_P, fixtures::ZHANG_SAN_ID).await;
    let account = &book["payment_accounts"][0];
    assert_eq!(account["balance_fen"], 256_000, "{book}");
    assert_eq!(account["available_fen"], 0);
    assert_eq!(account["freezes"][0]["amount_fen"], 256_000);
    assert_eq!(book["transfers"][0]["amount_fen"], 100_000);

    // The status query, signed both ways; unknown for a number never received.
    let (_, reply) = post_json(&query, &signed(json!({"req_no": "K1-payment-p"}))).await;
    assert!(signed_by(PACK_KEY.as_bytes(), &reply), "{reply}");
    assert_eq!(reply["state"], "IN_FORCE");
    assert_eq!(reply["controlled_fen"], 256_000);
    let (_, reply) = post_json(&query, &signed(json!({"req_no": "K4-payment-p"}))).await;
    assert_eq!(reply["state"], "UNKNOWN", "{reply}");
    let (_, reply) = post_json(&query, &json!({"req_no": "K1-payment-p"})).await;
    assert_eq!(reply["result"], "REJECTED", "an unsigned query: {reply}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_fund_centre_deducts_only_from_an_account_eligible_for_withdrawal() {
    let fleet = shipped(None).await;
    let endpoint = url(&fleet, fixtures::FUND_F, "/gjj/api/v1/court-controls");
    let order: Value =
        serde_json::from_slice(&pack("fund-callback", "freeze.request.json")).expect("JSON");

    // 赵六's account (eligible): frozen 20,000.00, then 10,000.00 deducted.
    let (status, reply) = post_json(&endpoint, &order).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&reply["code"], &reply["status"], &reply["amount"]),
        (&json!("OK"), &json!("EFFECTIVE"), &json!("20000.00")),
        "{reply}"
    );
    let deduct = |rn: &str, prior: &str, account: &str| {
        let mut deduct = order.clone();
        deduct["control_no"] = rn.into();
        deduct["action"] = "DEDUCT".into();
        deduct["amount"] = "10000.00".into();
        deduct["account_no"] = account.into();
        deduct["start_date"] = Value::Null;
        deduct["end_date"] = Value::Null;
        deduct["prior_control_no"] = prior.into();
        deduct
    };
    let (_, reply) = post_json(
        &endpoint,
        &deduct("K3-fund-f", "K1-fund-f", fixtures::ZHAO_LIU_FUND_ACCOUNT),
    )
    .await;
    assert_eq!(reply["status"], "EFFECTIVE", "{reply}");
    let book = ledger(&fleet, fixtures::FUND_F, fixtures::ZHAO_LIU_ID).await;
    assert_eq!(book["fund_accounts"][0]["balance_fen"], 5_200_000, "{book}");
    assert_eq!(book["fund_accounts"][0]["withdrawable"], true);
    assert_eq!(
        book["transfers"][0]["from_account"],
        fixtures::ZHAO_LIU_FUND_ACCOUNT
    );

    // 张三's account (not eligible): frozen, but no deduction.
    let mut zhang = order.clone();
    zhang["control_no"] = "K0-fund-f".into();
    zhang["holder"]["name"] = fixtures::ZHANG_SAN_NAME.into();
    zhang["holder"]["id_no"] = fixtures::ZHANG_SAN_ID.into();
    zhang["account_no"] = fixtures::ZHANG_SAN_FUND_ACCOUNT.into();
    let (_, reply) = post_json(&endpoint, &zhang).await;
    assert_eq!(reply["status"], "EFFECTIVE", "{reply}");
    let mut refused = deduct("K2-fund-f", "K0-fund-f", fixtures::ZHANG_SAN_FUND_ACCOUNT);
    refused["holder"] = zhang["holder"].clone();
    let (_, reply) = post_json(&endpoint, &refused).await;
    assert_eq!(
        (&reply["status"], &reply["message"]),
        (&json!("REFUSED"), &json!("账户未满足提取条件，不能划拨")),
        "{reply}"
    );
    let book = ledger(&fleet, fixtures::FUND_F, fixtures::ZHANG_SAN_ID).await;
    assert_eq!(
        book["fund_accounts"][0]["balance_fen"],
        fixtures::ZHANG_SAN_FUND_BALANCE_FEN
    );
    assert_eq!(book["transfers"], json!([]));

    // The status query; unknown for a number never received.
    let (_, reply) = get_json(&url(
        &fleet,
        fixtures::FUND_F,
        "/gjj/api/v1/court-controls/K1-fund-f",
    ))
    .await;
    assert_eq!(
        (&reply["status"], &reply["amount"]),
        (&json!("EFFECTIVE"), &json!("10000.00")),
        "{reply}"
    );
    let (_, reply) = get_json(&url(
        &fleet,
        fixtures::FUND_F,
        "/gjj/api/v1/court-controls/K5-fund-f",
    ))
    .await;
    assert_eq!(reply["status"], "UNKNOWN", "{reply}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_market_registry_queues_a_freeze_of_equity_another_court_froze_and_answers_in_gbk() {
    let fleet = shipped(None).await;
    let endpoint = url(&fleet, fixtures::MARKET_M, "/scjg/gqdj");
    let order = pack("market-gbk-xml", "freeze-waiting.request.xml");
    assert!(std::str::from_utf8(&order).is_err(), "the sample is GBK");

    let (status, content_type, reply) =
        post_bytes(&endpoint, "application/xml; charset=GBK", order.clone()).await;
    let (reply, _, _) = encoding_rs::GBK.decode(&reply);
    let reply = compact(&reply);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(content_type, "application/xml; charset=GBK");
    assert_eq!(value(&reply, "DJZT"), Some("2"), "{reply}");
    assert_eq!(value(&reply, "LHXH"), Some("1"));
    assert_eq!(value(&reply, "YY"), Some("已被秦州区人民法院冻结，轮候"));
    assert_eq!(blocks(&reply, "WSQR").len(), 2);
    let book = ledger(&fleet, fixtures::MARKET_M, fixtures::SAMPLE_ORG_ID).await;
    let freezes = &book["equity"][0]["freezes"];
    assert_eq!(freezes[0]["origin"], "standing", "{book}");
    assert_eq!(freezes[1]["state"], "waiting");
    assert_eq!(freezes[1]["queue_position"], 1);

    // 赵六's equity is free: frozen whole.
    let (text, _, _) = encoding_rs::GBK.decode(&order);
    let zhao_liu = text
        .replace("K1-market-m", "K2-market-m")
        .replace("<MC>示例有限公司</MC>", "<MC>赵六</MC>")
        .replace("<ZJLX>20</ZJLX>", "<ZJLX>10</ZJLX>")
        .replace(fixtures::SAMPLE_ORG_ID, fixtures::ZHAO_LIU_ID)
        .replace(
            fixtures::SAMPLE_ORG_EQUITY_CREDIT_CODE,
            fixtures::ZHAO_LIU_EQUITY_CREDIT_CODE,
        );
    let (_, _, reply) = post_bytes(
        &endpoint,
        "application/xml; charset=GBK",
        encoding_rs::GBK.encode(&zhao_liu).0.into_owned(),
    )
    .await;
    let (reply, _, _) = encoding_rs::GBK.decode(&reply);
    assert_eq!(value(&reply, "DJZT"), Some("1"), "{reply}");
    assert_eq!(value(&reply, "DJJE"), Some("1000000.00"));

    // The status query, in GBK; DJZT 0 for a number never received.
    let (status, _, reply) =
        get_bytes(&url(&fleet, fixtures::MARKET_M, "/scjg/gqdj/K2-market-m")).await;
    assert_eq!(status, 200);
    assert_eq!(value(&reply, "DJZT"), Some("1"), "{reply}");
    let (_, _, reply) = get_bytes(&url(&fleet, fixtures::MARKET_M, "/scjg/gqdj/K5-market-m")).await;
    assert_eq!(value(&reply, "DJZT"), Some("0"), "{reply}");
    fleet.shutdown().await;
}
