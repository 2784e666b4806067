//! An auditor opens one row: its fields, its hashes and place in the
//! chain, the message to the bank as the bank got it (GB18030 XML, shown
//! as text), and the raw bytes one click away, exactly as stored.

use base64::Engine;
use e2e_tests::{AUDITOR, System, ZHANG_SAN_ID, zhang_san};
use fantoccini::Locator;
use reqwest::StatusCode;

use crate::browser::Browser;
use crate::{get_with_cookie, sign_in};

#[tokio::test]
async fn an_auditor_opens_a_row_and_its_raw_bytes() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    sys.inquire(zhang_san(), 10).await?;
    // The inquiry as it went to bank-a: XML in GB18030.
    let sent = sys.audit("agency=bank-a&direction=outbound").await?;
    let seq = sent[0]["seq"].as_i64().expect("a row");
    let session = sign_in(&browser, &sys, AUDITOR).await?;

    // From the search, by its link.
    browser
        .open(
            &format!(
                "{}/console/audit?agency=bank-a&direction=outbound",
                sys.base
            ),
            "#results",
        )
        .await?;
    browser
        .client
        .find(Locator::Css(&format!(
            "#results a[href='/console/audit/{seq}']"
        )))
        .await?
        .click()
        .await?;
    browser
        .wait_for_url(|u| u.path() == format!("/console/audit/{seq}"))
        .await?;
    browser.wait_for("pre.body").await?;
    assert_eq!(browser.text("h1").await?, format!("第 {seq} 行 Row {seq}"));
    let fields = browser.text("table.fields").await?;
    for expected in [
        ZHANG_SAN_ID,
        "bank-a",
        "inquiry.send",
        "outbound",
        "(2024)甘0503执1234号",
    ] {
        assert!(fields.contains(expected), "{expected} not in {fields}");
    }
    // Its hashes, and the checks of its place in the chain: all good.
    let hashes = browser.text("table.hashes").await?;
    assert!(
        hashes.contains(sent[0]["hash"].as_str().unwrap_or("?")),
        "{hashes}"
    );
    assert!(
        hashes.contains(sent[0]["prev_hash"].as_str().unwrap_or("?")),
        "{hashes}"
    );
    let good = browser
        .client
        .find_all(Locator::Css("ul.checks li.ok"))
        .await?;
    let bad = browser
        .client
        .find_all(Locator::Css("ul.checks li.bad"))
        .await?;
    assert_eq!((good.len(), bad.len()), (3, 0), "hash, link, body digest");
    // The body decoded from GB18030, by its XML declaration.
    let encoding = browser
        .text("section[aria-labelledby=body-heading] strong")
        .await?;
    assert_eq!(encoding, "GB18030");
    let text = browser.text("pre.body").await?;
    assert!(text.contains("<XM>张三</XM>"), "{text}");
    assert!(text.contains("天水市麦积区人民法院"), "{text}");
    browser.screenshot("audit-row").await?;

    // One click away: the bytes as stored, byte for byte what the API's
    // row holds.
    let raw = browser
        .client
        .find(Locator::Css("a[href$='/raw']"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    assert_eq!(raw, format!("/console/audit/{seq}/raw"));
    let response = get_with_cookie(&sys, &session, &raw).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let bytes = response.bytes().await?;
    let api = sys.get(&format!("/v1/audit/events/{seq}"), AUDITOR).await?;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(api.body["body_base64"].as_str().unwrap_or_default())?;
    assert_eq!(bytes.as_ref(), stored.as_slice());
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "GB18030 text, not UTF-8: the bytes as the bank got them"
    );
    let name = encoding_rs::GB18030.encode("张三").0;
    assert!(bytes.windows(name.len()).any(|w| w == name.as_ref()));

    // Both reads are in the log.
    for action in ["console.audit.read", "console.audit.raw"] {
        let rows = sys.audit(&format!("action={action}")).await?;
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
    }
    browser.finish().await
}

/// A row that does not exist, a number that is not one, and a body the
/// row never had are pages that say so (404), never a failure.
#[tokio::test]
async fn rows_that_are_not_there_are_404_pages() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let (session, _) = crate::sign_in_over_http(&sys, AUDITOR).await?;
    for path in [
        "/console/audit/999999",
        "/console/audit/0",
        "/console/audit/-1",
        "/console/audit/1e3",
        "/console/audit/99999999999999999999999",
        "/console/audit/%E5%BC%A0",
        "/console/audit/999999/raw",
        "/console/audit/x/raw",
    ] {
        let response = get_with_cookie(&sys, &session, path).await?;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let html = response.text().await?;
        assert!(html.contains("<html lang=\"zh-CN\">"), "{path}: {html}");
    }
    // Row 1 (the sign-in) has a body; a row written without one has none.
    let refusals = sys.audit("action=console.sign_in").await?;
    let seq = refusals[0]["seq"].as_i64().unwrap_or(1);
    let response = get_with_cookie(&sys, &session, &format!("/console/audit/{seq}/raw")).await?;
    assert_eq!(response.status(), StatusCode::OK);
    sys.sql(&format!(
        "UPDATE audit_events SET body = NULL WHERE seq = {seq}"
    ))
    .await?;
    let response = get_with_cookie(&sys, &session, &format!("/console/audit/{seq}/raw")).await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let html = response.text().await?;
    assert!(html.contains("purged"), "{html}");
    Ok(())
}

/// From a row to the story it belongs to: every row of the inquiry, in
/// order, with the time each step took after the request.
#[tokio::test]
async fn an_auditor_follows_a_row_to_its_inquiry_s_timeline() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    let inquiry = sys.inquire(zhang_san(), 10).await?;
    let id = inquiry.body["id"].as_str().unwrap_or_default().to_owned();
    let rows = sys.audit(&format!("inquiry={id}")).await?;
    assert!(
        rows.len() >= 7,
        "accepted, a message and a reply per agency: {rows:?}"
    );
    sign_in(&browser, &sys, AUDITOR).await?;
    browser
        .open(
            &format!("{}/console/audit/{}", sys.base, rows[0]["seq"]),
            "table.fields",
        )
        .await?;
    browser
        .client
        .find(Locator::Css(&format!(
            "table.fields a[href='/console/audit/timeline/{id}']"
        )))
        .await?
        .click()
        .await?;
    browser
        .wait_for_url(|u| u.path() == format!("/console/audit/timeline/{id}"))
        .await?;
    browser.wait_for("ol.timeline").await?;
    let steps = browser
        .client
        .find_all(Locator::Css("ol.timeline li.step"))
        .await?;
    assert_eq!(steps.len(), rows.len());
    let first = steps[0].text().await?;
    assert!(first.contains("+0.000 s"), "{first}");
    assert!(first.contains("inquiry.create"), "{first}");
    let summary = browser
        .text("section[aria-labelledby=summary-heading]")
        .await?;
    assert!(summary.contains(ZHANG_SAN_ID), "{summary}");
    browser.screenshot("audit-timeline").await?;
    assert_eq!(sys.audit("action=console.audit.timeline").await?.len(), 1);

    let (session, _) = crate::sign_in_over_http(&sys, AUDITOR).await?;
    for (path, status) in [
        ("/console/audit/timeline/inq_nothing", StatusCode::NOT_FOUND),
        (
            "/console/audit/timeline/%E2%80%AE",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let response = get_with_cookie(&sys, &session, path).await?;
        assert_eq!(response.status(), status, "{path}");
    }
    browser.finish().await
}
