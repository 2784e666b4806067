//! The console from the keyboard alone: the sign-in field has the focus,
//! Enter signs in, the first Tab reaches a "skip to content" link with a
//! visible focus ring, and the search form's fields are reached in order,
//! each named by its label.

use e2e_tests::{AUDITOR, System};
use fantoccini::key::Key;

use crate::browser::Browser;

#[tokio::test]
async fn an_auditor_signs_in_and_searches_by_keyboard_alone() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    browser
        .open(&format!("{}/console/audit", sys.base), "#token")
        .await?;
    let focused = browser.client.active_element().await?;
    assert_eq!(focused.attr("id").await?.as_deref(), Some("token"));
    focused
        .send_keys(&format!("{AUDITOR}{}", char::from(Key::Enter)))
        .await?;
    browser
        .wait_for_url(|u| u.path() == "/console/audit")
        .await?;
    browser.wait_for("form[role=search]").await?;

    let tab = || async {
        browser
            .client
            .active_element()
            .await?
            .send_keys(&char::from(Key::Tab).to_string())
            .await?;
        anyhow::Ok(browser.client.active_element().await?)
    };
    let skip = tab().await?;
    assert_eq!(skip.attr("class").await?.as_deref(), Some("skip"));
    assert_eq!(
        skip.css_value("outline-style").await?,
        "solid",
        "a visible focus ring"
    );
    assert!(
        skip.is_displayed().await?,
        "the skip link shows when focused"
    );
    skip.send_keys(&char::from(Key::Enter).to_string()).await?;
    let main = browser.client.active_element().await?;
    assert_eq!(main.attr("id").await?.as_deref(), Some("main"));

    // From the main part, the search form's fields in order, each with
    // its label.
    let mut fields = Vec::new();
    for _ in 0..4 {
        let field = tab().await?;
        let id = field.attr("id").await?.unwrap_or_default();
        let label = browser
            .client
            .find(fantoccini::Locator::Css(&format!("label[for='{id}']")))
            .await?
            .text()
            .await?;
        fields.push((id, label));
    }
    let ids: Vec<&str> = fields.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["f-case", "f-subject", "f-officer", "f-agency"],
        "{fields:?}"
    );
    assert!(fields[0].1.contains("案号"), "{fields:?}");
    browser.finish().await
}
