//! The web console (`/console`), end to end: a real gateway and mock
//! agencies, driven by a real browser (Chromium through chromedriver)
//! where one is installed, and over plain HTTP for what needs none.
//!
//! The browser stories also take a screenshot of each page they visit
//! (`browser::Browser::screenshot`): `UPDATE_CONSOLE_SCREENSHOTS=1 cargo
//! test -p e2e-tests --test console` writes them into `docs/console/`.

mod admin;
mod browser;
mod cases;
mod chain;
mod keyboard;
mod pages;
mod questions;
mod roles;
mod rows;
mod search;
mod sessions;
mod timelines;

use anyhow::Context;
use browser::Browser;
use e2e_tests::System;
use reqwest::StatusCode;
use reqwest::redirect::Policy;

pub const COOKIE: &str = "gw_console";

/// Signs in through the sign-in form with `token` and waits for the page
/// the console goes on to; the session cookie's value.
pub async fn sign_in(browser: &Browser, sys: &System, token: &str) -> anyhow::Result<String> {
    browser
        .open(&format!("{}/console/sign-in", sys.base), "#token")
        .await?;
    fill_in_and_sign_in(browser, token).await?;
    browser
        .wait_for_url(|u| u.path() != "/console/sign-in")
        .await?;
    let cookie = browser
        .client
        .get_named_cookie(COOKIE)
        .await
        .context("the session cookie after signing in")?;
    Ok(cookie.value().to_owned())
}

/// Types the token into the sign-in form and presses its button.
pub async fn fill_in_and_sign_in(browser: &Browser, token: &str) -> anyhow::Result<()> {
    let field = browser.wait_for("#token").await?;
    field.send_keys(token).await?;
    browser
        .client
        .find(fantoccini::Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// A request's body as an HTML form sends it.
pub trait FormBody {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// An HTTP client that shows redirects instead of following them.
pub fn no_redirects() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(Policy::none())
        .build()?)
}

/// `GET` a console path with a session cookie (redirects not followed).
pub async fn get_with_cookie(
    sys: &System,
    cookie: &str,
    path: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(no_redirects()?
        .get(format!("{}{path}", sys.base))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await?)
}

/// Signs in over plain HTTP (as a script would): the session cookie's
/// value and the whole `Set-Cookie` header.
pub async fn sign_in_over_http(sys: &System, token: &str) -> anyhow::Result<(String, String)> {
    let response = no_redirects()?
        .post(format!("{}/console/sign-in", sys.base))
        .form_fields(&[("token", token)])
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == StatusCode::SEE_OTHER,
        "sign-in answered {}",
        response.status()
    );
    let header = response
        .headers()
        .get("set-cookie")
        .context("a Set-Cookie header")?
        .to_str()?
        .to_owned();
    let value = header
        .strip_prefix(&format!("{COOKIE}="))
        .and_then(|rest| rest.split(';').next())
        .context("the session cookie")?
        .to_owned();
    Ok((value, header))
}
