//! The misuse questions as an auditor asks them: a threshold typed into
//! the form, the answer as a table whose subjects and cases lead to the
//! rows of the log.

use e2e_tests::{AUDITOR, System, zhang_san};
use fantoccini::Locator;

use crate::browser::Browser;
use crate::sign_in;

#[tokio::test]
async fn an_auditor_asks_who_made_more_requests_than_a_threshold() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    for _ in 0..2 {
        sys.inquire(zhang_san(), 10).await?;
    }
    sign_in(&browser, &sys, AUDITOR).await?;
    browser
        .open(&format!("{}/console/audit/questions", sys.base), "ul.cards")
        .await?;
    browser.screenshot("questions").await?;
    browser
        .client
        .find(Locator::Css(
            "a[href='/console/audit/questions/officer-volume']",
        ))
        .await?
        .click()
        .await?;
    let threshold = browser.wait_for("#q-threshold").await?;
    threshold.clear().await?;
    threshold.send_keys("1").await?;
    browser
        .client
        .find(Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;
    browser
        .wait_for_url(|u| u.query().is_some_and(|q| q.contains("threshold=1")))
        .await?;
    let answer = browser.wait_for("table.rows tbody").await?.text().await?;
    // Two inquiries by 李明 today: more than one.
    assert!(answer.contains("李明 (G620503001/ZX620503001)"), "{answer}");
    assert!(answer.contains('2'), "{answer}");
    browser.screenshot("question-officer-volume").await?;
    let asked = sys
        .audit("action=console.audit.question.officer-volume")
        .await?;
    assert_eq!(asked.len(), 2, "the default threshold, then 1");
    browser.finish().await
}
