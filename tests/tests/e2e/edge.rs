//! The API's edge: what `GET /openapi.json` describes is exactly what the
//! router serves, and hostile or careless requests are refused in the
//! error shape before they reach a rule, a store or an agency.

use std::collections::BTreeSet;

use e2e_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::orders::{freeze, officers};

const BANK_B_SAVINGS: &str = "6217000010001234567";

fn error_of(body: &Value) -> (&str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap_or("<no code>"),
        body["error"]["field"].as_str(),
    )
}

/// A request path for a documented path template, with a value for each
/// parameter.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", "x1")
        .replace("{seq}", "1")
        .replace("{question}", "officer-volume")
        .replace("{agency}", "registry-x")
}

#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_gateway_serves() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let r = sys.call(Method::GET, "/openapi.json", None, None).await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"], "3.1.0");
    let paths = r.body["paths"].as_object().expect("paths").clone();
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    assert!(documented.len() >= 17, "{documented:?}");
    for route in [
        "/v1/inquiries",
        "/v1/orders",
        "/v1/freeze-plans",
        "/v1/audit/events",
        "/v1/audit/verify",
        "/v1/agencies",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }

    for path in paths.keys() {
        let url = concrete(path);
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let m = Method::from_bytes(method.as_bytes())?;
            let r = sys.call(m, &url, None, None).await?;
            let served = documented.contains(&(path.clone(), method.to_lowercase()));
            if served {
                // Served: anything but the router's own refusals (the
                // route may well answer 401, 404 for an unknown id ...).
                assert_ne!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not routed"
                );
                let fallback = r.body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no such endpoint"));
                assert!(!fallback, "{method} {path} is documented but not routed");
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented ({})",
                    r.body
                );
                assert_eq!(error_of(&r.body).0, "method_not_allowed");
            }
        }
    }

    // Every route is registered with its description: the API's modules
    // add none on the side.
    let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/src/api");
    for entry in std::fs::read_dir(&api)? {
        let file = entry?.path();
        let text = std::fs::read_to_string(&file)?;
        // Unit tests build routers of their own.
        let served = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in served.lines().enumerate() {
            assert!(
                !line.contains(".route(") && !line.contains(".nest("),
                "{}:{}: a route added outside the documented registrations",
                file.display(),
                n + 1
            );
        }
    }
    Ok(())
}

async fn post_raw(
    sys: &System,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> anyhow::Result<Reply> {
    let mut request = sys
        .client
        .post(format!("{}{path}", sys.base))
        .bearer_auth(ENFORCEMENT)
        .header("idempotency-key", "edge-raw")
        .body(body.to_owned());
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = serde_json::from_str(&response.text().await?).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        body,
        headers,
    })
}

#[tokio::test]
async fn a_body_is_one_json_object_of_the_declared_shape_sent_as_json() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let one = serde_json::to_string(&inquiry_body(zhang_san()))?;

    // Trailing data after the value.
    for raw in [format!("{one} {one}"), format!("{one}x"), format!("{one}]")] {
        let r = post_raw(&sys, "/v1/inquiries", Some("application/json"), &raw).await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{raw}");
        assert_eq!(error_of(&r.body).0, "malformed_json");
    }
    // Arrays where objects belong: the body, the subject, an officer.
    let fields = inquiry_body(zhang_san());
    let as_array = json!([fields["case_number"], fields["subject"], fields["officers"]]);
    let r = post_raw(
        &sys,
        "/v1/inquiries",
        Some("application/json"),
        &as_array.to_string(),
    )
    .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let mut body = inquiry_body(zhang_san());
    body["subject"] = json!(["person", "张三", ZHANG_SAN_ID]);
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(error_of(&r.body), ("invalid_field", Some("subject")));
    let mut body = inquiry_body(zhang_san());
    body["officers"] = json!([["李明", "G620503001", "ZX620503001"]]);
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(error_of(&r.body), ("invalid_field", Some("officers[0]")));

    // Declared as JSON, or refused.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
    ] {
        let r = post_raw(&sys, "/v1/inquiries", ct, &one).await?;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(error_of(&r.body).0, "unsupported_media_type");
    }
    let r = post_raw(
        &sys,
        "/v1/inquiries",
        Some("Application/JSON; charset=UTF-8"),
        &one,
    )
    .await?;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn names_and_numbers_refuse_invisible_and_control_characters() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let cases = [
        ("/subject/name", "张\u{0007}三", "subject.name"),
        ("/subject/name", "张三\u{202E}", "subject.name"),
        ("/subject/name", "张\u{200B}三", "subject.name"),
        ("/officers/0/name", "李\u{FEFF}明", "officers[0].name"),
        (
            "/officers/0/credential_no",
            "ZX620503001\u{2066}",
            "officers[0].credential_no",
        ),
        (
            "/officers/0/work_card_no",
            "G62\u{FDD0}",
            "officers[0].work_card_no",
        ),
        ("/case_number", "(2024)甘0503执1234号\n", "case_number"),
    ];
    for (pointer, value, field) in cases {
        let mut body = inquiry_body(zhang_san());
        *body.pointer_mut(pointer).expect(pointer) = json!(value);
        let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{value:?}");
        assert_eq!(error_of(&r.body), ("invalid_characters", Some(field)));
    }
    // What NFKC makes plain is plain: full-width digits, an ideographic
    // space around the name.
    let mut body = inquiry_body(zhang_san());
    body["subject"]["name"] = json!("\u{3000}张三\u{3000}");
    body["subject"]["id_number"] = json!("３６０４２６１９９１０１０１００７１");
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["subject"]["id_number"], ZHANG_SAN_ID);
    assert_eq!(r.body["subject"]["name"], "张三");
    Ok(())
}

#[tokio::test]
async fn every_string_list_and_amount_has_a_bound() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let mut body = inquiry_body(zhang_san());
    body["subject"]["name"] = json!("张".repeat(101));
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body), ("too_long", Some("subject.name")));
    let mut body = inquiry_body(zhang_san());
    body["subject"]["name"] = json!("x".repeat(200 * 1024));
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body), ("too_long", Some("subject.name")));

    let many: Vec<Value> = (0..2500)
        .map(|i| json!({"name": "李明", "work_card_no": format!("G{i}"), "credential_no": format!("ZX{i}")}))
        .collect();
    let mut body = inquiry_body(zhang_san());
    body["officers"] = json!(many);
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body), ("too_many", Some("officers")));

    let mut order = freeze(&sys, zhang_san(), "bank-b", BANK_B_SAVINGS, 100_000);
    order["documents"][0]["number"] = json!("号".repeat(20_000));
    let r = sys.order("edge-doc", &order).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body), ("too_long", Some("documents[0].number")));

    let mut order = freeze(&sys, zhang_san(), "bank-b", BANK_B_SAVINGS, 100_000);
    order["amount_fen"] = json!(i64::MAX);
    let r = sys.order("edge-amount", &order).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body), ("amount_too_large", Some("amount_fen")));

    let r = sys
        .get(
            &format!("/v1/audit/events?officer={}", "x".repeat(201)),
            AUDITOR,
        )
        .await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body), ("too_long", Some("officer")));
    let r = sys
        .get(
            &format!("/v1/audit/events?cursor={}", "0".repeat(21)),
            AUDITOR,
        )
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r.body), ("invalid_query", Some("cursor")));
    let r = sys
        .get(
            &format!("/v1/inquiries?case_number={CASE}&limit=0"),
            ENFORCEMENT,
        )
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r.body), ("invalid_query", Some("limit")));
    Ok(())
}

#[tokio::test]
async fn the_same_officer_twice_is_caught_however_spelt() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let first =
        json!({"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"});
    let spellings = [
        // Other spacing, other letter case, full-width letters and digits.
        json!({"name": "李 明", "work_card_no": "G620503009", "credential_no": " zx620503001 "}),
        json!({"name": "李明", "work_card_no": "g620503001", "credential_no": "ZX620503009"}),
        json!({"name": "李明", "work_card_no": "G620503009", "credential_no": "ＺＸ６２０５０３００１"}),
    ];
    for (i, second) in spellings.iter().enumerate() {
        let mut order = freeze(&sys, zhang_san(), "bank-b", BANK_B_SAVINGS, 100_000);
        order["officers"] = json!([first, second]);
        let r = sys.order(&format!("edge-twice-{i}"), &order).await?;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{second}");
        assert_eq!(error_of(&r.body).0, "duplicate_officer", "{second}");
    }
    // A zero-width space does not make a second officer either.
    let mut order = freeze(&sys, zhang_san(), "bank-b", BANK_B_SAVINGS, 100_000);
    order["officers"] = json!([first, {"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001\u{200B}"}]);
    let r = sys.order("edge-twice-zw", &order).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error_of(&r.body),
        ("invalid_characters", Some("officers[1].credential_no"))
    );
    // Two different officers are two officers.
    let order = freeze(&sys, zhang_san(), "bank-b", BANK_B_SAVINGS, 100_000);
    assert_eq!(order["officers"], officers());
    let r = sys.order("edge-two-officers", &order).await?;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn repeated_credentials_and_keys_are_refused() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let send = |path: &str, headers: &[(&str, &str)], body: &Value| {
        let mut request = sys
            .client
            .post(format!("{}{path}", sys.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let bearer = format!("Bearer {ENFORCEMENT}");
    let other = format!("Bearer {AUDITOR}");
    let r = send(
        "/v1/inquiries",
        &[("authorization", &bearer), ("authorization", &other)],
        &inquiry_body(zhang_san()),
    )
    .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await?;
    assert_eq!(error_of(&body), ("repeated_header", Some("authorization")));

    let order = freeze(&sys, zhang_san(), "bank-b", BANK_B_SAVINGS, 100_000);
    let r = send(
        "/v1/orders",
        &[
            ("authorization", &bearer),
            ("idempotency-key", "k-1"),
            ("idempotency-key", "k-2"),
        ],
        &order,
    )
    .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await?;
    assert_eq!(error_of(&body).0, "repeated_header");

    // A body's type is declared once.
    let r = send(
        "/v1/inquiries",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        &inquiry_body(zhang_san()),
    )
    .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await?;
    assert_eq!(error_of(&body), ("repeated_header", Some("content-type")));

    // The agency callback route refuses what the API refuses.
    let r = send(
        "/v1/callbacks/registry-x",
        &[("authorization", &bearer), ("authorization", &other)],
        &json!({}),
    )
    .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await?;
    assert_eq!(error_of(&body).0, "repeated_header");
    Ok(())
}

#[tokio::test]
async fn wildcards_in_the_officer_filter_are_matched_literally() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let r = sys.inquire(zhang_san(), 0).await?;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(!sys.audit("officer=ZX620503001").await?.is_empty());
    assert!(!sys.audit("officer=zx620503001").await?.is_empty());
    for wildcard in ["%25", "_", "%25%25", "ZX62050300_"] {
        let rows = sys.audit(&format!("officer={wildcard}")).await?;
        assert!(rows.is_empty(), "officer={wildcard} matched {rows:?}");
    }
    Ok(())
}

#[tokio::test]
async fn every_refusal_of_the_router_is_in_the_error_shape() -> anyhow::Result<()> {
    let sys = System::start().await?;
    for (method, path, status) in [
        (Method::GET, "/v1/nothing-here", StatusCode::NOT_FOUND),
        (Method::DELETE, "/v1/orders", StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/inquiries/%FF%FE", StatusCode::BAD_REQUEST),
        (Method::GET, "/v1/orders/%C3%28", StatusCode::BAD_REQUEST),
    ] {
        let r = sys
            .call(method.clone(), path, Some(ENFORCEMENT), None)
            .await?;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(
            r.body["error"]["code"].is_string() && r.body["error"]["message"].is_string(),
            "{method} {path}: {}",
            r.body
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_audit_log_finds_a_subject_however_its_check_letter_is_cased() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let subject = json!({"kind": "person", "name": "赵六", "id_number": "34052419800101001x"});
    let r = sys.inquire(subject, 0).await?;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    for spelt in ["34052419800101001X", "34052419800101001x"] {
        let rows = sys.audit(&format!("subject={spelt}")).await?;
        assert!(!rows.is_empty(), "subject={spelt}");
    }
    Ok(())
}

#[tokio::test]
async fn the_document_states_this_gateways_bound_on_wait() -> anyhow::Result<()> {
    let sys = System::start_with(|config, _| config.inquiries.max_wait_secs = 12).await?;
    let r = sys.call(Method::GET, "/openapi.json", None, None).await?;
    let params = r.body["paths"]["/v1/inquiries"]["post"]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wait = params
        .iter()
        .find(|p| p["name"] == "wait")
        .expect("wait is documented");
    assert_eq!(wait["schema"]["maximum"], 12, "{wait}");
    Ok(())
}
