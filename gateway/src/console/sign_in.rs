//! Signing in and out of the console.
//!
//! A person signs in by pasting a caller's bearer token; the token is
//! checked as the API checks it (`Callers::identify_token`, client
//! certificates included) and never kept, and the answer is a new session
//! (`session.rs`) and its cookie. Signing out revokes the session.
//!
//! Forms that change something (sign-in, sign-out) are refused when the
//! browser says they came from another site (`Sec-Fetch-Site`, `Origin`),
//! and a signed-in form must carry its session's CSRF token. Signing in
//! and out leaves audit rows (`console.sign_in`, `console.sign_out`)
//! committed with the session's change; a refused sign-in or sign-out is
//! recorded as the API records refusals (`auth.refused`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::session::{
    Connection, SESSION_COOKIE, Signed, clear_cookie, digest, now_ms, safe_next, secure,
    session_label,
};
use super::{Layout, PageError};
use crate::audit::{AuditRecord, Direction};
use crate::error::Refused;
use crate::inquiry::timestamp;
use crate::state::AppState;
use crate::store::{Change, ConsoleSession};

/// Bytes of randomness in a session id and in a CSRF token.
const RANDOM_BYTES: usize = 32;

/// The longest token the sign-in form takes.
const MAX_TOKEN_CHARS: usize = 4096;

/// Refuses a form the browser says came from another site: by
/// `Sec-Fetch-Site` where the browser sends it, else by `Origin` against
/// the host the request was made to. A client that sends neither (not a
/// browser) is not refused here; a signed-in form's CSRF token still is
/// checked.
pub(super) fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" {
            Ok(())
        } else {
            Err(format!(
                "the browser says this form came from another site ({})",
                String::from_utf8_lossy(site.as_bytes())
            ))
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err("this form was sent from another origin".into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    ended: Option<String>,
    signed_out: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    layout: Layout,
    next: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

/// `GET /console/sign-in`: the form.
pub async fn sign_in_page(
    query: Result<Query<SignInQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = query.unwrap_or_default();
    let notice = if query.signed_out.is_some() {
        Some("您已退出登录。 You have signed out.")
    } else if query.ended.is_some() {
        Some("会话已结束，请重新登录。 Your session has ended; please sign in again.")
    } else {
        None
    };
    SignInPage {
        layout: Layout::new("登录 Sign in", "sign-in", None),
        next: safe_next(query.next.as_deref()),
        notice,
        error: None,
    }
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
    next: Option<String>,
}

/// The sign-in form again, with why it was refused; recorded as the API
/// records a refused token.
fn sign_in_refused(next: String, status: StatusCode, message: String, source: String) -> Response {
    let page = SignInPage {
        layout: Layout::new("登录 Sign in", "sign-in", None),
        next,
        notice: None,
        error: Some(message.clone()),
    };
    let mut response = (status, page).into_response();
    response.extensions_mut().insert(Refused {
        code: if status == StatusCode::FORBIDDEN {
            "forbidden"
        } else {
            "unauthorized"
        },
        message,
        source: Some(source),
    });
    response
}

/// A random value of `RANDOM_BYTES` bytes from the operating system, in
/// URL-safe base64.
fn random_token() -> Result<String, PageError> {
    use rand::TryRngCore;
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a console session");
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "暂时无法登录。 The gateway cannot make a session now; try again later.",
        )
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// `POST /console/sign-in`: exchanges a caller's bearer token for a
/// session cookie.
pub async fn sign_in(
    State(state): State<AppState>,
    connection: Connection,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(form_error)?;
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim();
    if token.chars().count() > MAX_TOKEN_CHARS {
        return Err(PageError::bad_request(format!(
            "令牌过长。 The token is longer than {MAX_TOKEN_CHARS} characters."
        ))
        .with_field("token"));
    }
    let source = crate::api::refusals::token_source(token);
    if let Err(why) = same_origin(&headers, &uri) {
        return Ok(sign_in_refused(
            next,
            StatusCode::FORBIDDEN,
            format!("登录被拒绝：{why}。 Sign-in refused: {why}."),
            source,
        ));
    }
    if token.is_empty() {
        return Ok(sign_in_refused(
            next,
            StatusCode::UNAUTHORIZED,
            "请粘贴您的令牌。 Paste your bearer token to sign in.".into(),
            source,
        ));
    }
    let caller = match state
        .callers
        .identify_token(connection.certificate.as_deref(), Some(token))
    {
        Ok(caller) => caller,
        Err(e) => {
            return Ok(sign_in_refused(
                next,
                StatusCode::UNAUTHORIZED,
                format!("令牌无效。 {}.", capitalised(&e.message)),
                source,
            ));
        }
    };
    if state.callers.admit(&caller.name).is_err() {
        return Err(PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "请求过于频繁，请稍后再试。 This caller is over its rate; try again shortly.",
        ));
    }
    let id = random_token()?;
    let csrf = random_token()?;
    let now = now_ms();
    let session = ConsoleSession {
        id_sha256: digest(&id),
        caller: caller.name.clone(),
        csrf_token: csrf,
        created_at_ms: now,
        last_seen_ms: now,
        expires_at_ms: now.saturating_add(state.config.console.absolute_ms()),
        revoked_at_ms: None,
    };
    let record = AuditRecord {
        direction: Some(Direction::Inbound),
        caller: Some(caller.name.clone()),
        action: "console.sign_in".into(),
        status: Some("ok".into()),
        body: Some(
            json!({
                "path": "/console/sign-in",
                "session": session_label(&session.id_sha256),
                "role": caller.role.as_str(),
                "expires_at": timestamp(session.expires_at_ms),
                "idle_minutes": state.config.console.session_idle_minutes,
            })
            .to_string()
            .into(),
        ),
        ..AuditRecord::default()
    };
    let max_age = state.config.console.session_absolute_minutes * 60;
    state
        .audit
        .record_with(record, Change::OpenSession(Box::new(session)))
        .await?;
    let secure = if secure(&state) { "; Secure" } else { "" };
    let cookie = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .map_err(|_| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot make the cookie"))?;
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

fn capitalised(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A form that could not be read, as a page.
pub fn form_error(rejection: FormRejection) -> PageError {
    PageError::new(
        rejection.status(),
        format!(
            "表单无法读取。 The form could not be read: {}",
            rejection.body_text()
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    csrf: String,
}

/// `POST /console/sign-out`: revokes the session, and the browser's
/// cookie with it.
pub async fn sign_out(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_error(r).for_user(signed.view()))?;
    let refuse = |why: String| {
        PageError::forbidden(
            signed.view(),
            format!("退出请求被拒绝：{why}。 Sign-out refused: {why}."),
        )
    };
    same_origin(&headers, &uri).map_err(refuse)?;
    let matches: bool = form
        .csrf
        .as_bytes()
        .ct_eq(signed.session.csrf_token.as_bytes())
        .into();
    if !matches {
        return Err(refuse(
            "the form does not carry this session's token (CSRF)".into(),
        ));
    }
    let record = AuditRecord {
        direction: Some(Direction::Inbound),
        caller: Some(signed.caller.name.clone()),
        action: "console.sign_out".into(),
        status: Some("ok".into()),
        body: Some(
            json!({"path": "/console/sign-out", "session": signed.session_label()})
                .to_string()
                .into(),
        ),
        ..AuditRecord::default()
    };
    state
        .audit
        .record_with_if(
            record,
            Change::RevokeSession {
                id_sha256: signed.session.id_sha256.clone(),
                at_ms: now_ms(),
            },
        )
        .await
        .map_err(|e| PageError::from(e).for_user(signed.view()))?;
    let mut response = Redirect::to("/console/sign-in?signed_out=1").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(secure(&state)));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_from_another_site_is_refused() {
        let uri: Uri = "/console/sign-out".parse().expect("a uri");
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.insert(*name, HeaderValue::from_str(value).expect("a header"));
            }
            h
        };
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")]), &uri).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")]), &uri).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")]), &uri).is_err());
        assert!(
            same_origin(
                &headers(&[
                    ("origin", "http://127.0.0.1:8080"),
                    ("host", "127.0.0.1:8080")
                ]),
                &uri
            )
            .is_ok()
        );
        assert!(
            same_origin(
                &headers(&[
                    ("origin", "http://evil.example"),
                    ("host", "127.0.0.1:8080")
                ]),
                &uri
            )
            .is_err()
        );
        assert!(same_origin(&headers(&[("origin", "null"), ("host", "a")]), &uri).is_err());
        assert!(same_origin(&headers(&[]), &uri).is_ok(), "not a browser");
    }
}
