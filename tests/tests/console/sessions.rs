//! Signing in and out: an auditor pastes their token, gets a session
//! cookie the browser keeps to itself (HttpOnly, SameSite=Strict, the
//! console's path only), and after signing out that session opens nothing,
//! whoever replays its cookie.

use e2e_tests::{AUDITOR, Backend, System, on_both_backends};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::browser::Browser;
use crate::{
    COOKIE, FormBody, fill_in_and_sign_in, get_with_cookie, no_redirects, sign_in_over_http,
};

async fn an_auditor_signs_in_and_out(backend: Backend) -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start_on(backend, |_, _| {}).await?;

    // A page asked for before signing in leads to the sign-in form, and
    // back to the page after it.
    browser
        .open(&format!("{}/console/audit", sys.base), "#token")
        .await?;
    let url = browser.client.current_url().await?;
    assert_eq!(url.path(), "/console/sign-in");
    assert_eq!(browser.text("h1").await?, "登录 Sign in");
    browser.screenshot("sign-in").await?;

    // A wrong token is refused on the form itself, and recorded.
    fill_in_and_sign_in(&browser, "not-a-token").await?;
    let error = browser.wait_for("#token-error").await?.text().await?;
    assert!(error.contains("令牌无效"), "{error}");
    assert!(browser.client.get_named_cookie(COOKIE).await.is_err());
    let fingerprint = &hex::encode(Sha256::digest(b"not-a-token"))[..16];
    let refused = sys
        .audit(&format!("action=auth.refused&caller=token:{fingerprint}"))
        .await?;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["status"], "unauthorized");

    let value = {
        browser
            .client
            .find(fantoccini::Locator::Id("token"))
            .await?
            .clear()
            .await?;
        fill_in_and_sign_in(&browser, AUDITOR).await?;
        let url = browser
            .wait_for_url(|u| u.path() == "/console/audit")
            .await?;
        assert_eq!(url.path(), "/console/audit");
        browser.client.get_named_cookie(COOKIE).await?
    };
    // What the browser holds: no script may read it, no other site's
    // page may send it, only the console's paths get it, and it expires.
    assert_eq!(value.http_only(), Some(true));
    assert_eq!(
        value.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );
    assert_eq!(value.path(), Some("/console"));
    assert_ne!(value.secure(), Some(true), "plain HTTP: not Secure");
    let session = value.value().to_owned();
    // 32 random bytes in URL-safe base64: 256 bits.
    assert_eq!(session.len(), 43, "{session}");
    assert!(
        !browser
            .client
            .execute("return document.cookie", vec![])
            .await?
            .as_str()
            .unwrap_or_default()
            .contains(&session),
        "a script can read the session cookie"
    );

    // The store keeps the session's digest, never the id itself.
    let digest = hex::encode(Sha256::digest(session.as_bytes()));
    let touch = |column: &str, value: &str| {
        format!("UPDATE console_sessions SET caller = caller WHERE {column} = '{value}'")
    };
    assert_eq!(sys.sql(&touch("id_sha256", &digest)).await?, 1);
    assert_eq!(sys.sql(&touch("id_sha256", &session)).await?, 0);
    assert_eq!(sys.sql(&touch("caller", &session)).await?, 0);

    // The home page names who is signed in.
    browser
        .open(&format!("{}/console", sys.base), "header .who")
        .await?;
    let who = browser.text("header .who span").await?;
    assert!(who.contains("demo-auditor"), "{who}");
    browser.screenshot("home").await?;

    // Signing out, by the button every page carries.
    browser
        .client
        .find(fantoccini::Locator::Css("header .who button"))
        .await?
        .click()
        .await?;
    let url = browser
        .wait_for_url(|u| u.path() == "/console/sign-in")
        .await?;
    assert_eq!(url.query(), Some("signed_out=1"));
    assert!(
        browser.client.get_named_cookie(COOKIE).await.is_err(),
        "the browser still holds the cookie"
    );
    browser.screenshot("signed-out").await?;

    // The session is over for anyone who kept its cookie.
    let replayed = get_with_cookie(&sys, &session, "/console/audit").await?;
    assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
    let to = replayed
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default();
    assert!(to.starts_with("/console/sign-in?"), "{to}");
    assert!(to.contains("ended=1"), "{to}");
    let signed_out_again = no_redirects()?
        .post(format!("{}/console/sign-out", sys.base))
        .header("cookie", format!("{COOKIE}={session}"))
        .form_fields(&[("csrf", "anything")])
        .send()
        .await?;
    assert_eq!(signed_out_again.status(), StatusCode::SEE_OTHER);

    // Both moments are in the log, under the auditor's name and the
    // session's label; the replay is a refusal of that session.
    let label = &digest[..16];
    for action in ["console.sign_in", "console.sign_out"] {
        let rows = sys
            .audit(&format!("action={action}&caller=demo-auditor"))
            .await?;
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        let row = sys
            .get(&format!("/v1/audit/events/{}", rows[0]["seq"]), AUDITOR)
            .await?;
        let body = row.body["body_text"].as_str().unwrap_or_default();
        assert!(body.contains(label), "{action}: {body}");
        assert!(!body.contains(&session), "{action} holds the session id");
    }
    let replays = sys
        .audit(&format!("action=auth.refused&caller=session:{label}"))
        .await?;
    assert!(!replays.is_empty(), "the replayed cookie was not recorded");
    assert!(replays.iter().all(|r| r["status"] == "session_ended"));
    browser.finish().await
}

on_both_backends!(an_auditor_signs_in_and_out);

/// The cookie a script signing in over HTTP gets: the same flags, an
/// expiry of the configured absolute lifetime, and Secure where the
/// gateway is reached over TLS.
#[tokio::test]
async fn the_session_cookie_says_how_it_may_be_used() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let (_, header) = sign_in_over_http(&sys, AUDITOR).await?;
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(header.contains(part), "{header}");
    }
    assert!(!header.contains("Secure"), "{header}");

    let sys = System::start_with(|config, _| {
        config.public_url = Some("https://gateway.court.example".into());
        config.console.session_absolute_minutes = 60;
    })
    .await?;
    let (_, header) = sign_in_over_http(&sys, AUDITOR).await?;
    assert!(header.contains("; Secure"), "{header}");
    assert!(header.contains("Max-Age=3600"), "{header}");
    Ok(())
}

/// A session ends when it has been idle too long, and at its absolute
/// end however busy; the caller signs in again.
#[tokio::test]
async fn a_session_ends_when_idle_and_at_its_end() -> anyhow::Result<()> {
    let sys = System::start().await?;
    for ending in [
        // Idle for an hour (the idle limit is 30 minutes).
        "last_seen_ms = last_seen_ms - 3600000",
        // Past its absolute end.
        "expires_at_ms = created_at_ms",
    ] {
        let (session, _) = sign_in_over_http(&sys, AUDITOR).await?;
        let page = get_with_cookie(&sys, &session, "/console/audit").await?;
        assert_eq!(page.status(), StatusCode::OK);
        let digest = hex::encode(Sha256::digest(session.as_bytes()));
        let ended = sys
            .sql(&format!(
                "UPDATE console_sessions SET {ending} WHERE id_sha256 = '{digest}'"
            ))
            .await?;
        assert_eq!(ended, 1);
        let page = get_with_cookie(&sys, &session, "/console/audit").await?;
        assert_eq!(page.status(), StatusCode::SEE_OTHER, "{ending}");
        let cleared = page
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(cleared.contains("Max-Age=0"), "{ending}: {cleared}");
    }
    Ok(())
}

/// Sign-out takes the session's own form: a form without its CSRF token,
/// or one another site's page sends, signs no one out.
#[tokio::test]
async fn sign_out_needs_the_session_s_own_form() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let (session, _) = sign_in_over_http(&sys, AUDITOR).await?;
    let page = get_with_cookie(&sys, &session, "/console")
        .await?
        .text()
        .await?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(csrf.len(), 43, "{page}");
    let post = |csrf: String, origin: Option<&'static str>| {
        let mut request = no_redirects()
            .expect("a client")
            .post(format!("{}/console/sign-out", sys.base))
            .header("cookie", format!("{COOKIE}={session}"))
            .form_fields(&[("csrf", &csrf)]);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let forged = post("forged".into(), None).await?;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let cross_site = post(csrf.clone(), Some("https://elsewhere.example")).await?;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    // Still signed in.
    let page = get_with_cookie(&sys, &session, "/console/audit").await?;
    assert_eq!(page.status(), StatusCode::OK);
    let refusals = sys.audit("action=auth.refused&caller=demo-auditor").await?;
    assert_eq!(refusals.len(), 2, "{refusals:?}");

    let own = post(csrf, None).await?;
    assert_eq!(own.status(), StatusCode::SEE_OTHER);
    let page = get_with_cookie(&sys, &session, "/console/audit").await?;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    Ok(())
}
