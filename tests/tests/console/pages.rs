//! The console as any HTTP client sees it: HTML pages in UTF-8 under a
//! strict content policy, long-cached static files, no page without a
//! session, a 4xx page (never a 500) for anything a client sends, and
//! nothing of it in the API's OpenAPI document.

use e2e_tests::{AUDITOR, System, q, zhang_san};
use reqwest::StatusCode;

use crate::{FormBody, get_with_cookie, no_redirects, sign_in_over_http};

#[tokio::test]
async fn pages_are_html_under_a_strict_policy_and_assets_are_cached() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let page = no_redirects()?
        .get(format!("{}/console/sign-in", sys.base))
        .send()
        .await?;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str()?;
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers.contains_key("x-request-id"),
        "the API's edge layers"
    );
    let html = page.text().await?;
    assert!(html.contains("<html lang=\"zh-CN\">"));
    assert!(html.contains("<meta charset=\"utf-8\">"));
    assert!(html.contains("<label for=\"token\">"));

    // The style sheet and htmx, each by the name the page gives it.
    for asset in ["/console/static/console-", "/console/static/htmx-"] {
        let start = html.find(asset).expect("the page names its assets");
        let path = &html[start..start + html[start..].find('"').unwrap_or(0)];
        let response = sys.client.get(format!("{}{path}", sys.base)).send().await?;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert!(!response.bytes().await?.is_empty());
    }
    let gone = sys
        .client
        .get(format!(
            "{}/console/static/console-000000000000.css",
            sys.base
        ))
        .send()
        .await?;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // HTML, not API: nothing of it in the OpenAPI document.
    let doc = sys
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await?;
    let paths = doc.body["paths"].as_object().expect("paths");
    assert!(
        paths.keys().all(|p| !p.starts_with("/console")),
        "{paths:?}"
    );
    Ok(())
}

#[tokio::test]
async fn without_a_session_every_page_leads_to_sign_in() -> anyhow::Result<()> {
    let sys = System::start().await?;
    for (path, next) in [
        ("/console", "%2Fconsole"),
        (
            "/console/audit?subject=1",
            "%2Fconsole%2Faudit%3Fsubject%3D1",
        ),
        ("/console/audit/chain", "%2Fconsole%2Faudit%2Fchain"),
        ("/console/audit/1/raw", "%2Fconsole%2Faudit%2F1%2Fraw"),
    ] {
        let response = no_redirects()?
            .get(format!("{}{path}", sys.base))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            response.headers()["location"],
            format!("/console/sign-in?next={next}").as_str(),
            "{path}"
        );
    }
    // A cookie the gateway never gave out: the same, and recorded.
    let response = get_with_cookie(&sys, "made-up", "/console/audit").await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let refused = sys.audit("action=auth.refused").await?;
    assert_eq!(
        refused
            .iter()
            .filter(|r| r["status"] == "session_ended")
            .count(),
        1,
        "{refused:?}"
    );
    // Signing in goes on to the page asked for, never to another site.
    for (next, to) in [
        ("/console/audit/chain", "/console/audit/chain"),
        ("https://elsewhere.example/", "/console"),
        ("//elsewhere.example/", "/console"),
    ] {
        let response = no_redirects()?
            .post(format!("{}/console/sign-in", sys.base))
            .form_fields(&[("token", AUDITOR), ("next", next)])
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], to, "{next}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_input_is_a_4xx_page_never_a_failure() -> anyhow::Result<()> {
    let sys = System::start().await?;
    sys.inquire(zhang_san(), 10).await?;
    let (session, _) = sign_in_over_http(&sys, AUDITOR).await?;
    let long = "x".repeat(300);
    for (path, status) in [
        ("/console/audit?from=yesterday", 400),
        ("/console/audit?to=2024-13-45T99:00", 400),
        ("/console/audit?limit=0", 400),
        ("/console/audit?limit=100000", 400),
        ("/console/audit?limit=many", 400),
        ("/console/audit?cursor=abc", 400),
        ("/console/audit?direction=sideways", 400),
        ("/console/audit?unknown=1", 400),
        ("/console/audit?subject=1&subject=2", 400),
        (&format!("/console/audit?agency={long}"), 422),
        ("/console/audit?subject=%00", 400),
        // Not UTF-8: read with a replacement character, as the API reads
        // it; it matches nothing.
        ("/console/audit?subject=%FF", 200),
        ("/console/audit?case_number=%E2%80%AE", 422),
        ("/console/audit/export.csv?from=never", 400),
        ("/console/audit/questions/nothing", 404),
        ("/console/audit/questions/officer-volume?threshold=-1", 400),
        (
            "/console/audit/questions/officer-volume?threshold=lots",
            400,
        ),
        ("/console/audit/questions/officer-volume?limit=0", 400),
        (
            "/console/audit/questions/subjects-in-several-cases?from=x",
            400,
        ),
        ("/console/nowhere", 404),
        ("/console/audit/1/raw/more", 404),
    ] {
        let response = get_with_cookie(&sys, &session, path).await?;
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8",
            "{path}"
        );
    }
    // Forms that cannot be read.
    for (content_type, body) in [
        ("application/json", "{\"token\": \"x\"}"),
        ("application/x-www-form-urlencoded", "nothing=here"),
        ("application/x-www-form-urlencoded", "token=%FF"),
    ] {
        let response = no_redirects()?
            .post(format!("{}/console/sign-in", sys.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        assert!(
            response.status().is_client_error(),
            "{content_type} {body}: {}",
            response.status()
        );
    }
    // The API takes the direction filter the console offers, by the
    // same rule.
    let api = sys
        .get("/v1/audit/events?direction=sideways", AUDITOR)
        .await?;
    assert_eq!(api.status, StatusCode::BAD_REQUEST);
    assert_eq!(api.body["error"]["field"], "direction");
    let api = sys.get("/v1/audit/events?direction=reply", AUDITOR).await?;
    let events = api.body["events"].as_array().cloned().unwrap_or_default();
    assert!(!events.is_empty() && events.iter().all(|e| e["direction"] == "reply"));
    let huge = no_redirects()?
        .post(format!("{}/console/sign-in", sys.base))
        .form_fields(&[("token", &"x".repeat(5000))])
        .send()
        .await?;
    assert_eq!(huge.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

/// The four questions, each a page whose parameters are form fields;
/// the answers are the API's.
#[tokio::test]
async fn the_misuse_questions_answer_as_the_api_does() -> anyhow::Result<()> {
    let sys = System::start().await?;
    sys.inquire(zhang_san(), 10).await?;
    let (session, _) = sign_in_over_http(&sys, AUDITOR).await?;
    let index = get_with_cookie(&sys, &session, "/console/audit/questions")
        .await?
        .text()
        .await?;
    for question in [
        "subjects-in-several-cases",
        "officers-outside-their-court",
        "officer-volume",
        "document-mismatches",
    ] {
        assert!(index.contains(&format!("/console/audit/questions/{question}")));
        let page = get_with_cookie(
            &sys,
            &session,
            &format!("/console/audit/questions/{question}"),
        )
        .await?;
        assert_eq!(page.status(), StatusCode::OK, "{question}");
    }
    // One officer, one inquiry today: above a threshold of 0, not of 1.
    let page = get_with_cookie(
        &sys,
        &session,
        "/console/audit/questions/officer-volume?threshold=0",
    )
    .await?
    .text()
    .await?;
    assert!(page.contains("李明 (G620503001/ZX620503001)"), "{page}");
    assert!(
        page.contains("name=\"threshold\" type=\"number\" min=\"0\" max=\"1000000\" value=\"0\""),
        "{page}"
    );
    let api = sys
        .get("/v1/audit/questions/officer-volume?threshold=0", AUDITOR)
        .await?;
    let days = api.body["officer_days"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(page.matches("<tr>").count() - 1, days, "a row per answer");
    let page = get_with_cookie(
        &sys,
        &session,
        "/console/audit/questions/officer-volume?threshold=1",
    )
    .await?
    .text()
    .await?;
    assert!(!page.contains("李明 (G620503001"), "{page}");
    let asked = sys
        .audit(&format!(
            "action={}",
            q("console.audit.question.officer-volume")
        ))
        .await?;
    assert_eq!(asked.len(), 3);
    Ok(())
}
