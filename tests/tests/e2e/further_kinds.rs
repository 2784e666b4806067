//! Agencies of the further kinds of asset, connected by configuration
//! alone: a vehicle register speaking SOAP 1.1, and a payment platform that
//! signs every message. Each is a stub agency of the test's own, answering
//! in its dialect's wire format (the replies of the dialects' conformance
//! packs), around a real gateway on both backends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use adapters::agency::AgencyConfig;
use adapters::engine::signing::{canonical, signature};
use axum::Router;
use axum::http::{HeaderMap, StatusCode as Status};
use axum::routing::post;
use bytes::Bytes;
use e2e_tests::*;
use mock_agencies::fixtures;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Serves `app` on 127.0.0.1 on a port of its own; its base URL.
async fn serve(app: Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

fn pack(dialect: &str, file: &str) -> anyhow::Result<Vec<u8>> {
    Ok(std::fs::read(
        config_dir().join(format!("conformance/{dialect}/{file}")),
    )?)
}

fn li_si() -> Value {
    json!({"kind": "person", "name": "李四", "id_number": fixtures::LI_SI_ID})
}

async fn a_vehicle_register_speaking_soap_is_asked_by_configuration(
    backend: Backend,
) -> anyhow::Result<()> {
    // The register: 李四's sealed car, a client fault for 王五, no vehicle
    // for anyone else; it notes the SOAPAction of each call.
    let found = Bytes::from(pack("vehicle-soap", "found.reply.xml")?);
    let fault = Bytes::from(pack("vehicle-soap", "client-fault.reply.xml")?);
    let none = Bytes::from(pack("vehicle-soap", "none.reply.xml")?);
    let actions = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = actions.clone();
    let app = Router::new().route(
        "/vehicle/soap",
        post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            let (found, fault, none) = (found.clone(), fault.clone(), none.clone());
            async move {
                let action = headers
                    .get("soapaction")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                seen.lock().map(|mut s| s.push(action)).ok();
                let text = String::from_utf8_lossy(&body);
                if text.contains(fixtures::LI_SI_ID) {
                    (Status::OK, found)
                } else if text.contains(NOBODY_ID) {
                    (Status::INTERNAL_SERVER_ERROR, fault)
                } else {
                    (Status::OK, none)
                }
            }
        }),
    );
    let url = serve(app).await?;
    let vehicle: AgencyConfig = toml::from_str(&format!(
        "id = \"vehicle-x\"\nname = \"Vehicle register X (SOAP 1.1)\"\n\
         kind = \"vehicle_registry\"\ndialect = \"vehicle-soap\"\nbase_url = \"{url}\"\n"
    ))?;
    let sys = System::start_on(backend, |_, agencies| agencies.push(vehicle)).await?;

    let mut body = inquiry_body(li_si());
    body["asset_kinds"] = json!(["vehicle"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["progress"]["total"], 1, "{}", reply.body);
    assert_eq!(agency_status(&reply.body, "vehicle-x"), "answered");
    let cars = assets(&reply.body, "vehicle");
    assert_eq!(cars.len(), 1, "{}", reply.body);
    let car = cars[0];
    assert_eq!(car["agency"], "vehicle-x");
    assert_eq!(car["vin"], "LFV2A21K8M4012345");
    assert_eq!(car["plate_number"], "甘E·B5678");
    assert_eq!(car["first_registered"], "2021-05-10");
    assert_eq!(car["state"], "sealed, mortgaged");
    assert_eq!(car["mortgaged"], true);
    assert_eq!(car["measures"][0]["authority"], "秦州区人民法院");
    assert_eq!(car["measures"][0]["waiting"], false);
    assert_eq!(car["measures"][1]["waiting"], true);
    assert_eq!(car["measures"][1]["queue_position"], 1);
    assert_eq!(
        actions.lock().map(|a| a.clone()).unwrap_or_default(),
        ["\"urn:example:vehicle:1#QueryVehicles\""]
    );

    // Asked about every kind, the register is one of the agencies asked.
    let reply = sys.inquire(li_si(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["progress"]["total"], 4, "{}", reply.body);
    assert_eq!(assets(&reply.body, "vehicle").len(), 1);
    assert!(!assets(&reply.body, "bank_account").is_empty());

    // A SOAP fault of the client kind is the register's refusal, with its
    // reason.
    let mut body = inquiry_body(nobody());
    body["asset_kinds"] = json!(["vehicle"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let line = agency_line(&reply.body, "vehicle-x");
    assert_eq!(line["status"], "refused", "{}", reply.body);
    assert!(
        line["detail"]
            .as_str()
            .is_some_and(|d| d.contains("执行公务证号未备案")),
        "{}",
        reply.body
    );
    Ok(())
}

const PLATFORM_KEY: &str = "e2e-platform-signing-key";

/// The platform's answer for 张三, signed with its key (and altered after
/// signing when `tamper`).
fn platform_answer(request_number: &str, tamper: bool) -> Value {
    let mut answer = json!({
        "req_no": request_number, "result": "FOUND",
        "accounts": [{"account_id": "2088000012341234", "holder": "张三",
                      "balance_fen": 356000, "available_fen": 256000, "fund_fen": 120000,
                      "frozen": []}],
        "timestamp": 1764230401, "nonce": "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a"
    });
    let text = answer
        .as_object()
        .map(|o| canonical(o, "sign"))
        .unwrap_or_default();
    answer["sign"] = signature(PLATFORM_KEY.as_bytes(), &text)
        .unwrap_or_default()
        .into();
    if tamper {
        answer["accounts"][0]["balance_fen"] = 99_999_999.into();
    }
    answer
}

async fn a_payment_platform_that_signs_its_messages_is_asked_by_configuration(
    backend: Backend,
) -> anyhow::Result<()> {
    // The platform checks each request's signature (refusing one that
    // fails) and signs its answers; it can be made to alter an answer after
    // signing it, as a man in the middle would.
    let tamper = Arc::new(AtomicBool::new(false));
    let verified = Arc::new(AtomicBool::new(false));
    let (t, v) = (tamper.clone(), verified.clone());
    let app = Router::new().route(
        "/pay/v1/court/account-query",
        post(move |body: Bytes| {
            let (tamper, verified) = (t.clone(), v.clone());
            async move {
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let Some(object) = request.as_object() else {
                    return (
                        Status::BAD_REQUEST,
                        axum::Json(json!({"result": "REJECTED"})),
                    );
                };
                let expected = signature(PLATFORM_KEY.as_bytes(), &canonical(object, "sign"))
                    .unwrap_or_default();
                if request["sign"] != expected.as_str()
                    || request["nonce"].as_str().map(str::len) != Some(32)
                    || !request["timestamp"].is_i64()
                {
                    return (
                        Status::UNAUTHORIZED,
                        axum::Json(json!({"result": "REJECTED", "message": "bad signature"})),
                    );
                }
                verified.store(true, Ordering::SeqCst);
                let request_number = request["req_no"].as_str().unwrap_or_default();
                (
                    Status::OK,
                    axum::Json(platform_answer(
                        request_number,
                        tamper.load(Ordering::SeqCst),
                    )),
                )
            }
        }),
    );
    let url = serve(app).await?;
    let secrets = tempfile::tempdir()?;
    let key_file = secrets.path().join("pay-x.key");
    std::fs::write(&key_file, format!("{PLATFORM_KEY}\n"))?;
    let platform: AgencyConfig = toml::from_str(&format!(
        "id = \"pay-x\"\nname = \"Payment platform X (signed JSON)\"\n\
         kind = \"payment_platform\"\ndialect = \"payment-json\"\nbase_url = \"{url}\"\n\n\
         [auth.signing_key]\nfile = {:?}\n",
        key_file.display().to_string()
    ))?;
    let sys = System::start_on(backend, |_, agencies| agencies.push(platform)).await?;

    let mut body = inquiry_body(zhang_san());
    body["asset_kinds"] = json!(["payment_account"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        verified.load(Ordering::SeqCst),
        "the request's signature held"
    );
    assert_eq!(
        agency_status(&reply.body, "pay-x"),
        "answered",
        "{}",
        reply.body
    );
    let accounts = assets(&reply.body, "payment_account");
    assert_eq!(accounts.len(), 1, "{}", reply.body);
    assert_eq!(accounts[0]["payment_account"], "2088000012341234");
    assert_eq!(accounts[0]["balance_fen"], 356_000);
    assert_eq!(accounts[0]["available_fen"], 256_000);
    assert_eq!(accounts[0]["fund_balance_fen"], 120_000);

    // An answer altered after the platform signed it is never used.
    tamper.store(true, Ordering::SeqCst);
    let reply = sys
        .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        agency_status(&reply.body, "pay-x"),
        "bad_reply",
        "{}",
        reply.body
    );
    assert!(assets(&reply.body, "payment_account").is_empty());
    Ok(())
}

on_both_backends!(a_vehicle_register_speaking_soap_is_asked_by_configuration);
on_both_backends!(a_payment_platform_that_signs_its_messages_is_asked_by_configuration);
