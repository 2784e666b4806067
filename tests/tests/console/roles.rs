//! Roles decide what each person sees: an enforcement system's token
//! signs in, but the auditor's pages refuse it with a page that says why,
//! and the refusal is recorded under its name.

use e2e_tests::{ADMIN, AUDITOR, ENFORCEMENT, System};
use fantoccini::Locator;
use reqwest::StatusCode;

use crate::browser::Browser;
use crate::{get_with_cookie, sign_in, sign_in_over_http};

/// Every auditor's page, as the navigation and links reach them.
const AUDITOR_PAGES: [&str; 8] = [
    "/console/audit",
    "/console/audit?subject=360426199101010071",
    "/console/audit/1",
    "/console/audit/1/raw",
    "/console/audit/export.csv",
    "/console/audit/chain",
    "/console/audit/questions",
    "/console/audit/questions/officer-volume",
];

#[tokio::test]
async fn an_enforcement_officer_is_refused_the_auditor_s_pages() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    let session = sign_in(&browser, &sys, ENFORCEMENT).await?;
    // Signed in, the officer's home says what is there for them; the
    // navigation offers no auditor's page.
    browser.wait_for("header .who").await?;
    assert_eq!(browser.client.current_url().await?.path(), "/console");
    assert!(
        browser
            .client
            .find(Locator::Css("header nav a[href='/console/audit']"))
            .await
            .is_err()
    );

    browser
        .open(&format!("{}/console/audit", sys.base), "main h1")
        .await?;
    assert_eq!(
        browser.text("main h1").await?,
        "无权访问 · Not for your role"
    );
    let why = browser.text("main .error").await?;
    assert!(why.contains("auditor"), "{why}");
    assert!(why.contains("demo-court"), "{why}");
    browser.screenshot("forbidden").await?;

    for page in AUDITOR_PAGES {
        let response = get_with_cookie(&sys, &session, page).await?;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{page}");
    }
    let refusals = sys.audit("action=auth.refused&caller=demo-court").await?;
    assert_eq!(refusals.len(), AUDITOR_PAGES.len() + 1, "{refusals:?}");
    let row = sys
        .get(&format!("/v1/audit/events/{}", refusals[0]["seq"]), AUDITOR)
        .await?;
    let body = row.body["body_text"].as_str().unwrap_or_default();
    assert!(body.contains("\"route\":\"/console/audit\""), "{body}");
    assert!(body.contains("\"status\":403"), "{body}");
    // Nothing was read: no page view was recorded for the officer.
    assert!(sys.audit("action=console.audit.query").await?.is_empty());
    browser.finish().await
}

/// The administrator signs in too, and is refused the auditor's pages
/// alike; an auditor is refused nothing of them.
#[tokio::test]
async fn each_role_sees_its_own_pages() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let (admin, _) = sign_in_over_http(&sys, ADMIN).await?;
    let (auditor, _) = sign_in_over_http(&sys, AUDITOR).await?;
    for page in AUDITOR_PAGES {
        let refused = get_with_cookie(&sys, &admin, page).await?;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{page}");
        let allowed = get_with_cookie(&sys, &auditor, page).await?;
        assert_eq!(allowed.status(), StatusCode::OK, "{page}");
    }
    let timeline = get_with_cookie(&sys, &admin, "/console/audit/timeline/inq_x").await?;
    assert_eq!(timeline.status(), StatusCode::FORBIDDEN);
    let home = get_with_cookie(&sys, &admin, "/console").await?;
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().await?.contains("demo-admin"));
    Ok(())
}
