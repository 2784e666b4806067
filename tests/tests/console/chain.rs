//! The chain at a glance: green while every row verifies, red the moment
//! someone with write access to the database changes a row, naming the
//! row and what is wrong with it.

use e2e_tests::{AUDITOR, Backend, System, on_both_backends, zhang_san};
use fantoccini::Locator;

use crate::browser::Browser;
use crate::sign_in;

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

    browser
        .open(&format!("{}/console/audit/chain", sys.base), ".status")
        .await?;
    let status = browser.text(".status.ok h2").await?;
    assert!(status.contains("Verified up to row"), "{status}");
    let checkpoint = browser
        .text("section[aria-labelledby=checkpoint-heading]")
        .await?;
    assert!(checkpoint.contains("signed"), "{checkpoint}");
    browser.screenshot("audit-chain").await?;

    // An edit behind the gateway's back: row 3's status.
    let changed = sys
        .sql("UPDATE audit_events SET status = 'tampered' WHERE seq = 3")
        .await?;
    assert_eq!(changed, 1);
    browser.client.refresh().await?;
    browser.wait_for(".status").await?;
    assert!(
        browser
            .client
            .find(Locator::Css(".status.ok"))
            .await
            .is_err(),
        "still green"
    );
    let alarm = browser.text(".status.bad").await?;
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

    // And every look at it is in the log.
    assert!(!sys.audit("action=console.audit.verify").await?.is_empty());
    browser.finish().await
}

on_both_backends!(the_chain_turns_red_when_a_row_is_altered);
