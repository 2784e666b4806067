//! The administrators' pages: every agency's live state, refreshing in
//! place as a breaker opens; the agency set's version, and a Reload
//! button that refuses a broken file with its reason in red and keeps the
//! running set, as `POST /v1/admin/reload` does. Other roles are refused
//! the pages, and the button takes only the session's own form.

use std::time::Duration;

use e2e_tests::{ADMIN, AUDITOR, Backend, ENFORCEMENT, Reply, System, inquiry_body, zhang_san};
use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::browser::{Browser, PAGE};
use crate::{COOKIE, FormBody, get_with_cookie, no_redirects, sign_in, sign_in_over_http};

/// The administrators' pages, and the fragment the agencies page asks for.
const ADMIN_PAGES: [&str; 3] = [
    "/console/admin/agencies",
    "/console/admin/agencies/live",
    "/console/admin/config",
];

/// The red of the console's alarms (`--bad`).
const RED: &str = "164, 14, 38";

/// `GET /v1/admin/agencies` as the admin: what the pages must agree with.
async fn api_page(sys: &System) -> anyhow::Result<Value> {
    let reply = sys.get("/v1/admin/agencies", ADMIN).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.body);
    Ok(reply.body)
}

/// The session's CSRF token, as its pages' forms carry it.
async fn csrf_of(sys: &System, session: &str) -> anyhow::Result<String> {
    let page = get_with_cookie(sys, session, "/console/admin/config")
        .await?
        .text()
        .await?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(csrf.len() == 43, "no CSRF token on the page: {page}");
    Ok(csrf)
}

#[tokio::test]
async fn an_admin_sees_every_agency_and_a_breaker_open_without_reloading() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start_with_every_kind(Backend::Sqlite, |config, agencies| {
        config.dispatcher.max_attempts = 1;
        // Two failures in a row open bank-b's breaker, long enough for
        // the page to show it open.
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.breaker_failures = 2;
            a.limits.breaker_cooldown_ms = 120_000;
        }
    })
    .await?;
    sign_in(&browser, &sys, ADMIN).await?;

    // The admin's home and navigation lead to their pages, and to no
    // auditor's page.
    browser.wait_for("header .who").await?;
    for link in ["/console/admin/agencies", "/console/admin/config"] {
        browser
            .wait_for(&format!("header nav a[href='{link}']"))
            .await?;
        browser
            .wait_for(&format!("main .cards a[href='{link}']"))
            .await?;
    }
    assert!(
        browser
            .client
            .find(Locator::Css("a[href^='/console/audit']"))
            .await
            .is_err(),
        "a link to a page the admin may not open"
    );
    assert!(
        browser
            .client
            .find(Locator::Css("main .notice"))
            .await
            .is_err(),
        "the admin's pages are no longer 'to come'"
    );

    browser
        .client
        .find(Locator::Css("header nav a[href='/console/admin/agencies']"))
        .await?
        .click()
        .await?;
    browser.wait_for("#agencies table.agencies").await?;
    assert_eq!(
        browser
            .client
            .find(Locator::Css("header nav a[aria-current=page]"))
            .await?
            .attr("href")
            .await?
            .as_deref(),
        Some("/console/admin/agencies")
    );

    // Every agency of the system, each with its breaker's state in words.
    let api = api_page(&sys).await?;
    let ids: Vec<&str> = api["agencies"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["id"].as_str()).collect())
        .unwrap_or_default();
    // The demo's: banks, the real-estate registry and the further kinds.
    assert!(ids.len() >= 8, "{api}");
    let rows = browser
        .client
        .find_all(Locator::Css("#agencies tbody tr"))
        .await?;
    assert_eq!(rows.len(), ids.len());
    for id in &ids {
        let row = format!("#agencies tr[data-agency='{id}']");
        let breaker = browser.text(&format!("{row} .breaker")).await?;
        assert!(breaker.contains("closed"), "{id}: {breaker}");
        let asset = browser.text(&format!("{row} td:last-child")).await?;
        let expected = api["agencies"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["id"] == *id))
            .and_then(|a| a["asset_kind"].as_str())
            .unwrap_or_default();
        assert!(asset.contains(expected), "{id}: {asset}");
    }
    assert!(
        browser
            .client
            .find(Locator::Css("#agencies a[href^='/console/audit']"))
            .await
            .is_err(),
        "the rows link to the auditor's search, which the admin may not open"
    );

    // A mark on this very page: gone if the page were loaded again. And
    // the keyboard's focus on the table, which should stay there as the
    // table is replaced.
    browser
        .client
        .execute("window.stillTheSamePage = true; return true", vec![])
        .await?;
    let focused = browser
        .client
        .execute(
            "document.getElementById('agencies-scroll').focus(); return document.activeElement.id",
            vec![],
        )
        .await?;
    assert_eq!(focused, json!("agencies-scroll"));

    // bank-b fails twice in a row: its breaker opens.
    sys.fault("bank-b", json!({"mode": "error"})).await?;
    let mut banks = inquiry_body(zhang_san());
    banks["agencies"] = json!(["bank-a", "bank-b"]);
    for _ in 0..2 {
        let reply: Reply = sys
            .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &banks)
            .await?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let api = api_page(&sys).await?;
    let bank_b = api["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == "bank-b"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(bank_b["breaker"]["state"], "open", "{bank_b}");

    // The page shows it by itself, within a few refreshes.
    let open = browser
        .client
        .wait()
        .at_most(PAGE + Duration::from_secs(10))
        .for_element(Locator::Css(
            "#agencies tr[data-agency='bank-b'] .breaker.open",
        ))
        .await?;
    let label = open.text().await?;
    assert!(label.contains("open"), "said in words: {label}");
    assert!(open.css_value("color").await?.contains(RED), "and in red");
    let same = browser
        .client
        .execute("return window.stillTheSamePage === true", vec![])
        .await?;
    assert_eq!(same, json!(true), "the page was loaded again");
    let focused = browser
        .client
        .execute("return document.activeElement.id", vec![])
        .await?;
    assert_eq!(focused, json!("agencies-scroll"), "the focus was lost");
    let errors = browser
        .text("#agencies tr[data-agency='bank-b'] dl.errors")
        .await?;
    assert!(errors.contains("http_5xx"), "{errors}");
    let summary = browser.text("#agencies .summary").await?;
    assert!(summary.contains("1 breaker(s) not closed"), "{summary}");
    for id in ids.iter().filter(|id| **id != "bank-b") {
        let breaker = browser
            .text(&format!("#agencies tr[data-agency='{id}'] .breaker"))
            .await?;
        assert!(breaker.contains("closed"), "{id}: {breaker}");
    }
    browser.screenshot("admin-agencies").await?;

    // Every look was recorded: the page, and each refresh.
    let views = sys.audit("action=console.admin.agencies").await?;
    assert!(views.len() >= 2, "{views:?}");
    assert!(views.iter().all(|v| v["caller"] == "demo-admin"));
    browser.finish().await
}

#[tokio::test]
async fn reload_refuses_a_broken_file_in_red_then_takes_the_fixed_set() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start().await?;
    let session = sign_in(&browser, &sys, ADMIN).await?;
    browser
        .open(
            &format!("{}/console/admin/config", sys.base),
            "code.version",
        )
        .await?;
    let first = browser.text("code.version").await?;
    let api = api_page(&sys).await?;
    assert_eq!(first, api["config"]["version"].as_str().unwrap_or_default());
    assert!(first.starts_with("cfg_"), "{first}");
    let none_yet = browser.text(".last-reload").await?;
    assert!(none_yet.contains("No reload has run"), "{none_yet}");

    // A broken agency file: the reload is refused, with the file and
    // why, in red, and the version stays.
    sys.write_agency_text("broken.toml", "id = \"broken\"\nkind = ")?;
    browser
        .client
        .find(Locator::Id("reload"))
        .await?
        .click()
        .await?;
    let refused = browser.wait_for(".last-reload.bad").await?;
    assert!(refused.text().await?.contains("invalid_configuration"));
    let api = api_page(&sys).await?;
    let reason = api["config"]["last_reload"]["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!reason.is_empty(), "{api}");
    let line = browser.text(".last-reload.bad ul.file-errors li").await?;
    assert!(line.contains("broken.toml"), "{line}");
    let shown = browser
        .text(".last-reload.bad ul.file-errors li .problem")
        .await?;
    let first_line = reason.lines().next().unwrap_or_default().trim();
    assert!(shown.contains(first_line), "{shown:?} is not {reason:?}");
    let item = browser
        .client
        .find(Locator::Css(".last-reload.bad ul.file-errors li"))
        .await?;
    assert!(item.css_value("color").await?.contains(RED), "in red");
    assert_eq!(browser.text("code.version").await?, first, "unchanged");
    assert_eq!(api["config"]["version"].as_str(), Some(first.as_str()));
    browser.screenshot("admin-config-failed").await?;

    // Fixed (the broken file taken out), the reload takes the set: a new
    // version, said in green.
    std::fs::remove_file(sys.agencies_dir().join("broken.toml"))?;
    browser
        .client
        .find(Locator::Id("reload"))
        .await?
        .click()
        .await?;
    let done = browser.wait_for(".last-reload.ok").await?.text().await?;
    let second = browser.text("code.version").await?;
    assert_ne!(second, first, "a new version");
    assert!(done.contains(&second), "{done}");
    assert!(done.contains(&first), "the version it replaced: {done}");
    assert!(done.contains("demo-admin"), "who asked: {done}");
    let api = api_page(&sys).await?;
    assert_eq!(api["config"]["version"].as_str(), Some(second.as_str()));
    assert_eq!(api["config"]["last_reload"]["result"], "ok");
    browser.screenshot("admin-config").await?;

    // Both reloads are in the log as the API's are, and each press with
    // the console's session.
    let mut reloads: Vec<String> = sys
        .audit("action=config.reload&caller=demo-admin")
        .await?
        .iter()
        .filter_map(|r| r["status"].as_str().map(str::to_owned))
        .collect();
    reloads.sort();
    assert_eq!(reloads, ["invalid_configuration", "ok"]);
    let presses = sys.audit("action=console.admin.reload").await?;
    assert_eq!(presses.len(), 2, "{presses:?}");
    let row = sys
        .get(&format!("/v1/audit/events/{}", presses[0]["seq"]), AUDITOR)
        .await?;
    let body = row.body["body_text"].as_str().unwrap_or_default();
    let label = &hex::encode(Sha256::digest(session.as_bytes()))[..16];
    assert!(body.contains(label), "the session: {body}");
    assert!(body.contains("/console/admin/reload"), "{body}");
    assert!(
        sys.audit("action=console.admin.config").await?.len() >= 3,
        "every look at the page"
    );
    browser.finish().await
}

/// An auditor and an enforcement system sign in, but every
/// administrator's page and the Reload button refuse them (403, recorded
/// under their names), and nothing is reloaded.
#[tokio::test]
async fn other_roles_are_refused_the_admin_s_pages() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let version = api_page(&sys).await?["config"]["version"].clone();
    for (token, name) in [(AUDITOR, "demo-auditor"), (ENFORCEMENT, "demo-court")] {
        let (session, _) = sign_in_over_http(&sys, token).await?;
        for page in ADMIN_PAGES {
            let refused = get_with_cookie(&sys, &session, page).await?;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{name} {page}");
            let text = refused.text().await?;
            assert!(text.contains("无权访问"), "{name} {page}: {text}");
            assert!(text.contains("admin role"), "{name} {page}: {text}");
        }
        let home = get_with_cookie(&sys, &session, "/console")
            .await?
            .text()
            .await?;
        assert!(!home.contains("/console/admin/"), "{name}: {home}");
        let pressed = no_redirects()?
            .post(format!("{}/console/admin/reload", sys.base))
            .header("cookie", format!("{COOKIE}={session}"))
            .form_fields(&[("csrf", "whatever")])
            .send()
            .await?;
        assert_eq!(pressed.status(), StatusCode::FORBIDDEN, "{name}");
        let refusals = sys
            .audit(&format!("action=auth.refused&caller={name}"))
            .await?;
        assert_eq!(refusals.len(), ADMIN_PAGES.len() + 1, "{refusals:?}");
    }
    assert!(sys.audit("action=config.reload").await?.is_empty());
    assert!(sys.audit("action=console.admin.config").await?.is_empty());
    assert_eq!(api_page(&sys).await?["config"]["version"], version);
    Ok(())
}

/// The Reload button takes only the session's own form: without its CSRF
/// token, with another, from another site or not as a form at all it is
/// refused (4xx, never 500) and nothing is reloaded.
#[tokio::test]
async fn reload_needs_the_session_s_own_form() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let (session, _) = sign_in_over_http(&sys, ADMIN).await?;
    let csrf = csrf_of(&sys, &session).await?;
    let post = |fields: Vec<(&'static str, String)>, headers: Vec<(&'static str, &'static str)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut request = no_redirects()
            .expect("a client")
            .post(format!("{}/console/admin/reload", sys.base))
            .header("cookie", format!("{COOKIE}={session}"))
            .form_fields(&pairs);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let refused = [
        post(vec![], vec![]).await?,
        post(vec![("csrf", "forged".into())], vec![]).await?,
        post(
            vec![("csrf", csrf.clone())],
            vec![("sec-fetch-site", "cross-site")],
        )
        .await?,
        post(
            vec![("csrf", csrf.clone())],
            vec![("origin", "https://elsewhere.example")],
        )
        .await?,
    ];
    for (i, response) in refused.into_iter().enumerate() {
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "case {i}");
    }
    let refusals = sys.audit("action=auth.refused&caller=demo-admin").await?;
    assert_eq!(refusals.len(), 4, "each refusal recorded: {refusals:?}");
    let not_a_form = no_redirects()?
        .post(format!("{}/console/admin/reload", sys.base))
        .header("cookie", format!("{COOKIE}={session}"))
        .header("content-type", "application/json")
        .body(format!("{{\"csrf\": \"{csrf}\"}}"))
        .send()
        .await?;
    assert!(
        not_a_form.status().is_client_error(),
        "{}",
        not_a_form.status()
    );
    let bad_bytes = no_redirects()?
        .post(format!("{}/console/admin/reload", sys.base))
        .header("cookie", format!("{COOKIE}={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'c', b's', b'r', b'f', b'=', 0xff, 0xfe])
        .send()
        .await?;
    assert!(
        bad_bytes.status().is_client_error(),
        "{}",
        bad_bytes.status()
    );
    let asked = no_redirects()?
        .get(format!("{}/console/admin/reload", sys.base))
        .header("cookie", format!("{COOKIE}={session}"))
        .send()
        .await?;
    assert!(asked.status().is_client_error(), "{}", asked.status());
    assert!(sys.audit("action=config.reload").await?.is_empty());

    // The session's own form, from its own page: reloaded, and back to
    // the configuration page.
    let before = api_page(&sys).await?["config"]["version"].clone();
    let own = post(
        vec![("csrf", csrf)],
        vec![("sec-fetch-site", "same-origin")],
    )
    .await?;
    assert_eq!(own.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        own.headers().get("location").and_then(|l| l.to_str().ok()),
        Some("/console/admin/config")
    );
    let reloads = sys.audit("action=config.reload").await?;
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert_eq!(reloads[0]["status"], "ok");
    assert_ne!(api_page(&sys).await?["config"]["version"], before);
    Ok(())
}
