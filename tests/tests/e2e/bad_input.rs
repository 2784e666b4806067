//! Whatever a client sends, the answer is a clear 4xx in the API's error
//! shape, never a 500.

use e2e_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn error_of(body: &Value) -> (&str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap_or("<no code>"),
        body["error"]["field"].as_str(),
    )
}

#[tokio::test]
async fn malformed_or_mistyped_json_is_a_400_naming_the_field() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let post = |raw: &'static str| {
        sys.call(
            Method::POST,
            "/v1/inquiries",
            Some(ENFORCEMENT),
            Some(raw.into()),
        )
    };

    let r = post("{not json").await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r.body).0, "malformed_json");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    let mut body = inquiry_body(zhang_san());
    body["colour"] = json!("red");
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("colour")
    );
    assert_eq!(error_of(&r.body).1, Some("colour"));

    let mut body = inquiry_body(zhang_san());
    body["subject"]["hair"] = json!("black");
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r.body), ("invalid_field", Some("subject.hair")));

    let mut body = inquiry_body(zhang_san());
    body["officers"] = json!("李明");
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r.body), ("invalid_field", Some("officers")));

    let mut body = inquiry_body(zhang_san());
    body["subject"]["kind"] = json!("robot");
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r.body).1, Some("subject.kind"));

    let r = post("[]").await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn invalid_content_is_a_422_naming_the_field() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"kind": "person", "name": "张三", "id_number": "360426199101010072"}),
            "subject.id_number",
        ),
        (
            json!({"kind": "person", "name": "张三", "id_number": "36042619910101007"}),
            "subject.id_number",
        ),
        (
            json!({"kind": "person", "name": "张三"}),
            "subject.id_number",
        ),
        (
            json!({"kind": "person", "name": " ", "id_number": ZHANG_SAN_ID}),
            "subject.name",
        ),
        (
            json!({"kind": "organization", "name": "某公司", "credit_code": "91110000600O37341L"}),
            "subject.credit_code",
        ),
    ];
    for (subject, field) in cases {
        let r = sys
            .post_json("/v1/inquiries", ENFORCEMENT, &inquiry_body(subject.clone()))
            .await?;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{subject}: {}",
            r.body
        );
        assert_eq!(error_of(&r.body).1, Some(field), "{subject}: {}", r.body);
    }

    let mut body = inquiry_body(zhang_san());
    body["case_number"] = json!("2024甘0503执1234");
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body).1, Some("case_number"));

    let mut body = inquiry_body(zhang_san());
    body["officers"] = json!([]);
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body).1, Some("officers"));
    body.as_object_mut().expect("object").remove("officers");
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(error_of(&r.body).1, Some("officers"));

    let mut body = inquiry_body(zhang_san());
    body["officers"][0]["credential_no"] = json!("");
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(error_of(&r.body).1, Some("officers[0].credential_no"));

    let mut body = inquiry_body(zhang_san());
    body["agencies"] = json!(["bank-z"]);
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&r.body).1, Some("agencies[0]"));
    Ok(())
}

#[tokio::test]
async fn a_legacy_identity_number_is_accepted_with_a_warning() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let subject = json!({"kind": "person", "name": "老张", "id_number": "360426910101007"});
    let r = sys.inquire(subject, 10).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let warnings = r.body["warnings"].as_array().expect("warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("15-digit")),
        "{warnings:?}"
    );
    Ok(())
}

#[tokio::test]
async fn tokens_and_roles_are_enforced() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let body = serde_json::to_vec(&inquiry_body(zhang_san()))?;

    let r = sys
        .call(Method::POST, "/v1/inquiries", None, Some(body.clone()))
        .await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&r.body).0, "unauthorized");
    let r = sys
        .call(
            Method::POST,
            "/v1/inquiries",
            Some("not-a-token"),
            Some(body.clone()),
        )
        .await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = sys
        .call(
            Method::POST,
            "/v1/inquiries",
            Some(AUDITOR),
            Some(body.clone()),
        )
        .await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = sys
        .call(Method::POST, "/v1/inquiries", Some(ADMIN), Some(body))
        .await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = sys
        .get(
            &format!("/v1/audit/events?case_number={}", q(CASE)),
            ENFORCEMENT,
        )
        .await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = sys
        .call(Method::GET, "/v1/audit/events", None, None)
        .await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn odd_requests_get_4xx_in_the_error_shape() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let r = sys
        .get("/v1/inquiries/inq_doesnotexist", ENFORCEMENT)
        .await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&r.body).0, "not_found");
    let r = sys.get("/v1/nothing-here", ENFORCEMENT).await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = sys
        .call(Method::DELETE, "/v1/inquiries", Some(ENFORCEMENT), None)
        .await?;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    let r = sys
        .post_json(
            "/v1/inquiries?wait=99",
            ENFORCEMENT,
            &inquiry_body(zhang_san()),
        )
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r.body).1, Some("wait"));
    let r = sys
        .post_json(
            "/v1/inquiries?wait=soon",
            ENFORCEMENT,
            &inquiry_body(zhang_san()),
        )
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let mut huge = inquiry_body(zhang_san());
    huge["subject"]["name"] = json!("张".repeat(300_000));
    let r = sys.post_json("/v1/inquiries", ENFORCEMENT, &huge).await?;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(&r.body).0, "body_too_large");

    let r = sys.get("/v1/inquiries", ENFORCEMENT).await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = sys.get("/v1/audit/events?limit=0", AUDITOR).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = sys.get("/v1/audit/events?cursor=abc", AUDITOR).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = sys
        .call(Method::GET, "/v1/inquiries/x", Some(ENFORCEMENT), None)
        .await?;
    assert!(r.headers.contains_key("x-request-id"));
    let mine = sys
        .client
        .get(format!("{}/healthz", sys.base))
        .header("x-request-id", "req-from-court-42")
        .send()
        .await?;
    assert_eq!(mine.headers()["x-request-id"], "req-from-court-42");
    Ok(())
}

#[tokio::test]
async fn another_callers_inquiry_is_not_visible() -> anyhow::Result<()> {
    let sys = System::start_with(|config, _| {
        let mut other = config.callers[0].clone();
        other.name = "another-court".into();
        // sha256("another-court-token")
        other.token_sha256 =
            Some("384d87849ffcee8b3a4dce654ded381365c0c22bd3aad85be294c0ea84f9969d".into());
        config.callers.push(other);
    })
    .await?;
    let r = sys.inquire(zhang_san(), 0).await?;
    let id = r.body["id"].as_str().expect("id");
    let theirs = sys
        .get(&format!("/v1/inquiries/{id}"), "another-court-token")
        .await?;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let mine = sys.get(&format!("/v1/inquiries/{id}"), ENFORCEMENT).await?;
    assert_eq!(mine.status, StatusCode::OK);
    Ok(())
}
