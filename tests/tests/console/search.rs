//! An auditor searches the log with the API's filters, pages through it,
//! and exports what they filtered: the file holds exactly the rows the
//! API gives for the same filters, every one of them, not one page.

use e2e_tests::{AUDITOR, System, ZHANG_SAN_ID, nobody, q, zhang_san};
use fantoccini::Locator;
use reqwest::StatusCode;
use sha2::Digest;

use crate::browser::Browser;
use crate::{get_with_cookie, sign_in};

/// The rows of a CSV export (header first), without its `next_cursor`
/// column.
fn csv_records(text: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let mut row: Vec<String> = record?.iter().map(str::to_owned).collect();
        row.pop();
        rows.push(row);
    }
    Ok(rows)
}

#[tokio::test]
async fn an_auditor_searches_the_log_and_exports_what_is_filtered() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    for subject in [zhang_san(), nobody()] {
        let r = sys.inquire(subject, 10).await?;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let session = sign_in(&browser, &sys, AUDITOR).await?;
    browser
        .open(&format!("{}/console/audit", sys.base), "form[role=search]")
        .await?;
    // htmx came from the gateway and runs under the page's policy.
    let htmx = browser
        .client
        .execute("return typeof htmx === 'object' && htmx.version", vec![])
        .await?;
    assert!(htmx.as_str().is_some_and(|v| v.starts_with('2')), "{htmx}");

    // Filter by subject and direction, by keyboard and the form's button.
    browser
        .client
        .execute("window.stillThisPage = true", vec![])
        .await?;
    browser
        .client
        .find(Locator::Id("f-subject"))
        .await?
        .send_keys(ZHANG_SAN_ID)
        .await?;
    browser
        .client
        .find(Locator::Id("f-direction"))
        .await?
        .select_by_value("outbound")
        .await?;
    browser
        .client
        .find(Locator::Css("form[role=search] button[type=submit]"))
        .await?
        .click()
        .await?;
    let url = browser
        .wait_for_url(|u| u.query().is_some_and(|q| q.contains("direction=outbound")))
        .await?;
    assert!(url.query().unwrap_or_default().contains(ZHANG_SAN_ID));
    let expected = sys
        .audit(&format!("subject={ZHANG_SAN_ID}&direction=outbound"))
        .await?;
    assert!(
        expected.len() >= 3,
        "an outbound message per agency: {expected:?}"
    );
    let expected_seqs: Vec<String> = expected.iter().map(|e| e["seq"].to_string()).collect();
    // The results swap in place (htmx): wait until they are this search's.
    let deadline = tokio::time::Instant::now() + crate::browser::PAGE;
    let shown = loop {
        let cells = browser
            .client
            .find_all(Locator::Css("#results table.rows tbody td.num"))
            .await?;
        let mut shown = Vec::new();
        for cell in cells {
            shown.push(cell.text().await?);
        }
        if shown == expected_seqs || tokio::time::Instant::now() >= deadline {
            break shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(shown, expected_seqs);
    let swapped = browser
        .client
        .execute("return window.stillThisPage === true", vec![])
        .await?;
    assert_eq!(
        swapped,
        serde_json::json!(true),
        "htmx swapped the results in place"
    );
    for direction in browser
        .client
        .find_all(Locator::Css("#results table.rows tbody td:nth-child(3)"))
        .await?
    {
        assert_eq!(direction.text().await?, "outbound");
    }
    browser.screenshot("audit-search").await?;

    // Export: the link carries the filters, and the file holds exactly
    // the rows the API gives for them.
    let export = browser
        .client
        .find(Locator::Css("#results a[download]"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    assert!(export.starts_with("/console/audit/export.csv?"), "{export}");
    let response = get_with_cookie(&sys, &session, &export).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let exported = csv_records(&response.text().await?)?;
    let api = sys
        .client
        .get(format!(
            "{}/v1/audit/events?subject={ZHANG_SAN_ID}&direction=outbound&limit=1000",
            sys.base
        ))
        .bearer_auth(AUDITOR)
        .header("accept", "text/csv")
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(exported, csv_records(&api)?);
    assert_eq!(exported.len(), expected.len() + 1, "a header and the rows");

    // The page views are in the log, each with its filters.
    let views = sys
        .audit("action=console.audit.query&caller=demo-auditor")
        .await?;
    let last = views.last().expect("the search was recorded");
    let row = sys
        .get(&format!("/v1/audit/events/{}", last["seq"]), AUDITOR)
        .await?;
    let body = row.body["body_text"].as_str().unwrap_or_default();
    assert!(body.contains("/console/audit"), "{body}");
    assert!(body.contains(ZHANG_SAN_ID), "{body}");
    assert!(body.contains("outbound"), "{body}");
    assert_eq!(
        sys.audit("action=console.audit.export").await?.len(),
        1,
        "the export was recorded"
    );
    browser.finish().await
}

/// Pages follow the log's order: the next page begins after the last
/// row shown, and nothing is skipped.
#[tokio::test]
async fn an_auditor_pages_through_the_log() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    for subject in [zhang_san(), nobody(), zhang_san()] {
        sys.inquire(subject, 10).await?;
    }
    sign_in(&browser, &sys, AUDITOR).await?;
    browser
        .open(&format!("{}/console/audit?limit=20", sys.base), "#results")
        .await?;
    let seqs = |browser: &Browser| {
        let client = browser.client.clone();
        async move {
            let mut seqs = Vec::new();
            for cell in client
                .find_all(Locator::Css("#results table.rows tbody td.num"))
                .await?
            {
                seqs.push(cell.text().await?.parse::<i64>()?);
            }
            anyhow::Ok(seqs)
        }
    };
    let first = seqs(&browser).await?;
    assert_eq!(first, (1..=20).collect::<Vec<_>>());
    browser
        .client
        .find(Locator::Css("#results a[rel=next]"))
        .await?
        .click()
        .await?;
    browser
        .wait_for_url(|u| u.query().is_some_and(|q| q.contains("cursor=20")))
        .await?;
    let deadline = tokio::time::Instant::now() + crate::browser::PAGE;
    let second = loop {
        let second = seqs(&browser).await?;
        if second.first() == Some(&21) || tokio::time::Instant::now() >= deadline {
            break second;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(second.first(), Some(&21), "{second:?}");
    assert!(second.windows(2).all(|w| w[1] == w[0] + 1), "{second:?}");
    let back = browser
        .client
        .find(Locator::Css("#results nav.pages a:not([rel=next])"))
        .await?
        .attr("href")
        .await?;
    assert_eq!(
        back.as_deref(),
        Some("/console/audit?limit=20"),
        "a way back to the first page"
    );
    browser.finish().await
}

/// A case number in Chinese, and a search that finds nothing.
#[tokio::test]
async fn a_case_number_in_chinese_finds_its_rows() -> anyhow::Result<()> {
    let sys = System::start().await?;
    sys.inquire(zhang_san(), 10).await?;
    let (session, _) = crate::sign_in_over_http(&sys, AUDITOR).await?;
    let page = get_with_cookie(
        &sys,
        &session,
        &format!("/console/audit?case_number={}", q(e2e_tests::CASE)),
    )
    .await?;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await?;
    assert!(html.contains("(2024)甘0503执1234号"), "{html}");
    assert!(html.contains("<td class=\"num\">"));
    let page = get_with_cookie(&sys, &session, "/console/audit?case_number=nothing")
        .await?
        .text()
        .await?;
    assert!(page.contains("没有符合条件的记录"), "{page}");
    Ok(())
}

/// Where htmx cannot swap the results in place it gives way to whole
/// pages: a refused search shows its error page, and a session that ended
/// meanwhile leads to the sign-in form, not to an empty table.
#[tokio::test]
async fn a_refused_search_and_an_ended_session_show_whole_pages() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    sys.inquire(zhang_san(), 10).await?;
    let session = sign_in(&browser, &sys, AUDITOR).await?;
    browser
        .open(&format!("{}/console/audit", sys.base), "form[role=search]")
        .await?;
    // A mark on this page's window: it survives a swap in place, not a
    // new page.
    browser
        .client
        .execute("window.stillThisPage = true", vec![])
        .await?;
    // A right-to-left override in a case number: refused by the input
    // rules (422), the page says so in place of its main part.
    browser
        .client
        .find(Locator::Id("f-case"))
        .await?
        .send_keys("(2024)\u{202e}甘0503执1234号")
        .await?;
    browser
        .client
        .find(Locator::Css("form[role=search] button[type=submit]"))
        .await?
        .click()
        .await?;
    let error = browser.wait_for("main .error").await?.text().await?;
    assert!(!error.is_empty());
    assert!(
        browser
            .client
            .find(Locator::Css("main main"))
            .await
            .is_err(),
        "the error page's main part replaced the page's, not nested in it"
    );
    let swapped = browser
        .client
        .execute("return window.stillThisPage === true", vec![])
        .await?;
    assert_eq!(swapped, serde_json::json!(true), "htmx swapped it in place");

    // The session ends (signed out elsewhere); the next search goes to
    // the sign-in form.
    browser
        .open(&format!("{}/console/audit", sys.base), "form[role=search]")
        .await?;
    let digest = hex::encode(sha2::Sha256::digest(session.as_bytes()));
    sys.sql(&format!(
        "UPDATE console_sessions SET revoked_at_ms = 1 WHERE id_sha256 = '{digest}'"
    ))
    .await?;
    browser
        .client
        .find(Locator::Css("form[role=search] button[type=submit]"))
        .await?
        .click()
        .await?;
    let url = browser
        .wait_for_url(|u| u.path() == "/console/sign-in")
        .await?;
    assert!(url.query().unwrap_or_default().contains("ended=1"), "{url}");
    browser.wait_for("#token").await?;
    browser.finish().await
}
