//! The chain at a glance: green while every row verifies, red the moment
//! someone with write access to the database changes a row after the row
//! the gateway last verified, naming the row and what is wrong with it. A
//! change to an older row between checkpoints is not read again on every
//! visit (a log of a million rows takes seconds to read): the page stays
//! green but says when the whole log was last verified, and pressing
//! **Verify the whole log now** finds it.

use e2e_tests::{AUDITOR, Backend, System, on_both_backends, zhang_san};
use fantoccini::Locator;

use crate::browser::Browser;
use crate::{COOKIE, FormBody, get_with_cookie, no_redirects, sign_in, sign_in_over_http};

/// The page's verdict is not green.
async fn assert_red(browser: &Browser) -> anyhow::Result<String> {
    browser.wait_for(".status").await?;
    assert!(
        browser
            .client
            .find(Locator::Css(".status.ok"))
            .await
            .is_err(),
        "still green"
    );
    browser.text(".status.bad").await
}

/// Reloads the page and waits for its verdict.
async fn reload(browser: &Browser) -> anyhow::Result<()> {
    browser.client.refresh().await?;
    browser.wait_for(".status").await?;
    Ok(())
}

/// The body of each `console.audit.verify` row: what each visit checked.
async fn verify_rows(sys: &System) -> anyhow::Result<Vec<String>> {
    let mut bodies = Vec::new();
    for row in sys.audit("action=console.audit.verify").await? {
        let row = sys
            .get(&format!("/v1/audit/events/{}", row["seq"]), AUDITOR)
            .await?;
        bodies.push(
            row.body["body_text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    Ok(bodies)
}

async fn the_chain_turns_red_when_a_row_is_altered(backend: Backend) -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start_on(backend, |config, _| {
        // A signed checkpoint every few rows, so the page has one to show.
        config.audit.checkpoint_every_rows = 5;
    })
    .await?;
    sys.inquire(zhang_san(), 10).await?;
    sign_in(&browser, &sys, AUDITOR).await?;

    // The first visit after the gateway started reads the whole log.
    browser
        .open(&format!("{}/console/audit/chain", sys.base), ".status")
        .await?;
    let status = browser.text(".status.ok").await?;
    assert!(status.contains("Verified up to row"), "{status}");
    assert!(
        status.contains("Every one of the"),
        "a whole pass: {status}"
    );
    let checkpoint = browser
        .text("section[aria-labelledby=checkpoint-heading]")
        .await?;
    assert!(checkpoint.contains("signed"), "{checkpoint}");

    // Rows written after that visit are past the watermark: an edit of
    // one is found at the next visit.
    sys.inquire(zhang_san(), 10).await?;
    let created = sys.audit("action=inquiry.create").await?;
    let late = created.last().cloned().unwrap_or_default();
    let seq = late["seq"].as_i64().unwrap_or_default();
    let status_was = late["status"].as_str().unwrap_or_default().to_owned();
    let verified = sys.audit("action=console.audit.verify").await?;
    assert!(
        seq > verified[0]["seq"].as_i64().unwrap_or(i64::MAX),
        "{seq}"
    );
    let changed = sys
        .sql(&format!(
            "UPDATE audit_events SET status = 'tampered' WHERE seq = {seq}"
        ))
        .await?;
    assert_eq!(changed, 1);
    reload(&browser).await?;
    let alarm = assert_red(&browser).await?;
    assert!(alarm.contains(&format!("row {seq}")), "{alarm}");
    assert!(alarm.contains("does not match its hash"), "{alarm}");

    // Put back as it was, the chain holds again; the page says what this
    // visit read and when the whole log was last read.
    sys.sql(&format!(
        "UPDATE audit_events SET status = '{status_was}' WHERE seq = {seq}"
    ))
    .await?;
    reload(&browser).await?;
    let status = browser.text(".status.ok").await?;
    assert!(status.contains("checked now"), "a quick check: {status}");
    assert!(status.contains("whole log last verified at"), "{status}");
    browser.screenshot("audit-chain").await?;

    // An edit behind the gateway's back of an old row no checkpoint
    // signs (row 3; the first checkpoint is at row 5 or later): the quick
    // check does not read it, and the page says since when the whole log
    // has not been read.
    let changed = sys
        .sql("UPDATE audit_events SET status = 'tampered' WHERE seq = 3")
        .await?;
    assert_eq!(changed, 1);
    reload(&browser).await?;
    let status = browser.text(".status.ok").await?;
    assert!(status.contains("whole log last verified at"), "{status}");

    // The button reads the whole log and finds it.
    browser
        .client
        .find(Locator::Css("form.verify-all button[type=submit]"))
        .await?
        .click()
        .await?;
    browser
        .wait_for_url(|u| u.path() == "/console/audit/chain")
        .await?;
    browser.wait_for(".status.bad").await?;
    let alarm = assert_red(&browser).await?;
    assert!(alarm.contains("row 3"), "{alarm}");
    assert!(
        alarm.contains("does not match its hash"),
        "what is wrong: {alarm}"
    );
    let color = browser
        .client
        .find(Locator::Css(".status.bad h2"))
        .await?
        .css_value("color")
        .await?;
    assert!(color.contains("164, 14, 38"), "in red: {color}");
    browser.screenshot("audit-chain-broken").await?;

    // It stays red at the next visits.
    reload(&browser).await?;
    let alarm = assert_red(&browser).await?;
    assert!(alarm.contains("row 3"), "{alarm}");

    // The row itself says the same.
    browser
        .client
        .find(Locator::Css(".status.bad a[href='/console/audit/3']"))
        .await?
        .click()
        .await?;
    browser
        .wait_for_url(|u| u.path() == "/console/audit/3")
        .await?;
    let bad = browser.wait_for("ul.checks li.bad").await?.text().await?;
    assert!(bad.contains("does not match its hash"), "{bad}");
    browser.screenshot("audit-row-altered").await?;

    // And every look at it is in the log, saying what it read.
    let bodies = verify_rows(&sys).await?;
    let full = bodies
        .iter()
        .filter(|b| b.contains("\"pass\":\"full\""))
        .count();
    let quick = bodies
        .iter()
        .filter(|b| b.contains("\"pass\":\"quick\""))
        .count();
    assert_eq!(full, 2, "the first visit and the button: {bodies:?}");
    assert_eq!(quick, 5, "every other visit: {bodies:?}");
    browser.finish().await
}

on_both_backends!(the_chain_turns_red_when_a_row_is_altered);

/// The button's form is refused from another site and without the
/// session's token, and for any role but the auditor's; with both it
/// verifies the whole log and goes back to the page.
#[tokio::test]
async fn the_whole_pass_is_a_form_of_the_auditors_own() -> anyhow::Result<()> {
    let sys = System::start_on(Backend::Sqlite, |_, _| {}).await?;
    let (cookie, _) = sign_in_over_http(&sys, AUDITOR).await?;
    let page = get_with_cookie(&sys, &cookie, "/console/audit/chain")
        .await?
        .text()
        .await?;
    let marker = "name=\"csrf\" value=\"";
    let at = page.find(marker).map(|i| i + marker.len()).unwrap_or(0);
    let csrf = page[at..].split('"').next().unwrap_or_default().to_owned();
    assert!(!csrf.is_empty(), "the form carries the session's token");
    let post = |fields: Vec<(&'static str, String)>, site: &'static str| {
        let cookie = cookie.clone();
        let url = format!("{}/console/audit/chain", sys.base);
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            no_redirects()?
                .post(url)
                .header("cookie", format!("{COOKIE}={cookie}"))
                .header("sec-fetch-site", site)
                .form_fields(&fields)
                .send()
                .await
                .map_err(anyhow::Error::from)
        }
    };
    let refused = post(vec![("csrf", csrf.clone())], "cross-site").await?;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let refused = post(vec![("csrf", "not-the-token".into())], "same-origin").await?;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let unreadable = post(Vec::new(), "same-origin").await?;
    assert!(
        unreadable.status().is_client_error(),
        "{}",
        unreadable.status()
    );
    let before = sys.audit("action=console.audit.verify").await?.len();
    let done = post(vec![("csrf", csrf)], "same-origin").await?;
    assert_eq!(done.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers().get("location").and_then(|l| l.to_str().ok()),
        Some("/console/audit/chain")
    );
    let rows = sys.audit("action=console.audit.verify").await?;
    assert_eq!(rows.len(), before + 1, "the whole pass is recorded");

    // An officer's session may not ask for it.
    let (officer, _) = sign_in_over_http(&sys, e2e_tests::ENFORCEMENT).await?;
    let response = no_redirects()?
        .post(format!("{}/console/audit/chain", sys.base))
        .header("cookie", format!("{COOKIE}={officer}"))
        .form_fields(&[("csrf", "x")])
        .send()
        .await?;
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    Ok(())
}
