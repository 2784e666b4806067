//! Signing in and out of the console, and the session every other page
//! runs in.
//!
//! A person signs in by pasting a caller's bearer token; the token is
//! checked as the API checks it (`Callers::identify_token`, client
//! certificates included) and never kept. The answer is a session cookie:
//! a random id of 256 bits, `HttpOnly`, `SameSite=Strict`, `Path=/console`,
//! `Secure` when the gateway is reached over TLS. The store keeps only the
//! id's SHA-256, with the caller, the session's CSRF token and its times;
//! a session ends when idle for `console.session_idle_minutes`, at
//! `console.session_absolute_minutes` after sign-in, or at sign-out, and
//! the roles of the caller's configuration decide every page again.
//!
//! Forms that change something (sign-in, sign-out) are refused when the
//! browser says they came from another site (`Sec-Fetch-Site`, `Origin`),
//! and a signed-in form must carry its session's CSRF token. Signing in
//! and out leaves audit rows (`console.sign_in`, `console.sign_out`)
//! committed with the session's change; a refused sign-in, a role refused
//! a page and a cookie of an ended session are recorded as the API
//! records refusals (`auth.refused`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Layout, PageError, UserView};
use crate::audit::{AuditRecord, Direction};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Refused};
use crate::inquiry::timestamp;
use crate::state::AppState;
use crate::store::{Change, ConsoleSession, TOUCH_EVERY_MS};
use crate::tls::PeerCertificate;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "gw_console";

/// Bytes of randomness in a session id and in a CSRF token.
const RANDOM_BYTES: usize = 32;

/// The longest token the sign-in form takes.
const MAX_TOKEN_CHARS: usize = 4096;

/// Hex digits of a session's digest that name it in the audit log.
const SESSION_LABEL_DIGITS: usize = 16;

/// A signed-in person: the caller (as configured now) and the session.
#[derive(Debug, Clone)]
pub struct Signed {
    pub caller: Caller,
    pub session: ConsoleSession,
    /// The path of the page asked for (no query).
    pub path: String,
}

impl Signed {
    pub fn view(&self) -> UserView {
        UserView {
            name: self.caller.name.clone(),
            role: self.caller.role,
            csrf: self.session.csrf_token.clone(),
        }
    }

    /// How the audit log names the session: the first hex digits of its
    /// id's SHA-256 (the id itself is never written anywhere).
    pub fn session_label(&self) -> String {
        session_label(&self.session.id_sha256)
    }

    /// Refuses the page (403, recorded) unless the caller has `role`.
    pub fn require(&self, role: Role) -> Result<(), PageError> {
        if self.caller.role == role {
            return Ok(());
        }
        Err(PageError::forbidden(
            self.view(),
            format!(
                "此页面仅供{}角色使用，您的角色是{}。 This page is for the {} role; you are signed in as {} ({}).",
                role_zh(role),
                role_zh(self.caller.role),
                role.as_str(),
                self.caller.name,
                self.caller.role.as_str(),
            ),
        ))
    }
}

/// A role's name in Chinese.
fn role_zh(role: Role) -> &'static str {
    match role {
        Role::Enforcement => "执行",
        Role::Auditor => "审计",
        Role::Admin => "管理",
    }
}

fn session_label(id_sha256: &str) -> String {
    id_sha256
        .get(..SESSION_LABEL_DIGITS)
        .unwrap_or(id_sha256)
        .to_owned()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The session cookie's value, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A page path to go on to after signing in: a console path only (never
/// another site, never `//host`), else the console's home.
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| {
        n.len() <= 2048
            && (*n == "/console" || n.starts_with("/console/") || n.starts_with("/console?"))
            && !n.contains("//")
            && !n.contains('\\')
            && !n.chars().any(char::is_control)
    })
    .unwrap_or(super::PREFIX)
    .to_owned()
}

/// The way to the sign-in page from a request that has no live session.
fn to_sign_in(parts: &Parts, ended: bool) -> Response {
    let next = if parts.method == axum::http::Method::GET {
        parts
            .uri
            .path_and_query()
            .map_or(super::PREFIX, |p| p.as_str())
    } else {
        super::PREFIX
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("next", &safe_next(Some(next)));
    if ended {
        query.append_pair("ended", "1");
    }
    Redirect::to(&format!("/console/sign-in?{}", query.finish())).into_response()
}

/// The `Set-Cookie` that ends the browser's copy of the session.
fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(
        "gw_console=; Path=/console; Max-Age=0",
    ))
}

/// Whether the browser is reached over TLS: by the gateway itself, or by
/// a proxy in front of it whose address the configuration gives.
fn secure(state: &AppState) -> bool {
    state.config.tls.is_some()
        || state
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

fn peer_certificate(parts: &Parts) -> Option<&str> {
    parts
        .extensions
        .get::<ConnectInfo<PeerCertificate>>()
        .and_then(|info| info.0.fingerprint.as_deref())
}

/// The connection a request came on: its client certificate's
/// fingerprint, when it presented one.
pub struct Connection {
    certificate: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Connection {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            certificate: peer_certificate(parts).map(str::to_owned),
        })
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(id) = session_cookie(&parts.headers) else {
            return Err(to_sign_in(parts, false));
        };
        let id_sha256 = digest(id);
        let now = now_ms();
        let idle_ms = state.config.console.idle_ms();
        let session = state
            .store
            .console_session(&id_sha256)
            .await
            .map_err(|e| PageError::from(e).into_response())?
            .filter(|s| s.live(now, idle_ms));
        // The caller as configured now: one removed from the
        // configuration has no session left.
        let caller = session
            .as_ref()
            .and_then(|s| state.callers.by_name(&s.caller));
        let (Some(session), Some(caller)) = (session, caller) else {
            let mut response = to_sign_in(parts, true);
            response
                .headers_mut()
                .insert(header::SET_COOKIE, clear_cookie(secure(state)));
            response.extensions_mut().insert(Refused {
                code: "session_ended",
                message: "the console session is unknown, signed out or expired".into(),
                source: Some(format!("session:{}", session_label(&id_sha256))),
            });
            return Err(response);
        };
        if state.callers.is_certificate_bound(&caller.name) {
            let presented = peer_certificate(parts)
                .and_then(|f| state.callers.by_certificate(f))
                .map(|c| c.name);
            if presented.as_deref() != Some(caller.name.as_str()) {
                return Err(PageError::from(ApiError::unauthorized(
                    "this caller must connect with its client certificate",
                ))
                .refused_as(caller.name.clone())
                .into_response());
            }
        }
        if let Err(wait) = state.callers.admit(&caller.name) {
            let mut response = PageError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "请求过于频繁，请 {} 秒后再试。 This caller is over its rate; try again in {} s.",
                    wait.as_secs().max(1),
                    wait.as_secs().max(1)
                ),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Err(response);
        }
        if now - session.last_seen_ms >= TOUCH_EVERY_MS {
            state
                .store
                .touch_console_session(&id_sha256, now)
                .await
                .map_err(|e| PageError::from(e).into_response())?;
        }
        Ok(Signed {
            caller,
            session,
            path: parts.uri.path().to_owned(),
        })
    }
}

/// Refuses a form the browser says came from another site: by
/// `Sec-Fetch-Site` where the browser sends it, else by `Origin` against
/// the host the request was made to. A client that sends neither (not a
/// browser) is not refused here; a signed-in form's CSRF token still is
/// checked.
fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
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

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::COOKIE, HeaderValue::from_str(v).expect("a header"));
        }
        headers
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(
            session_cookie(&cookies(&["a=1; gw_console=abc; b=2"])),
            Some("abc")
        );
        assert_eq!(
            session_cookie(&cookies(&["a=1", "gw_console=xyz"])),
            Some("xyz")
        );
        assert_eq!(session_cookie(&cookies(&["gw_console_x=1"])), None);
        assert_eq!(session_cookie(&cookies(&["gw_console="])), None);
        assert_eq!(
            session_cookie(&cookies(&[&format!("gw_console={}", "a".repeat(200))])),
            None
        );
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn only_a_console_path_is_gone_on_to_after_sign_in() {
        for (next, expected) in [
            (Some("/console/audit?subject=1"), "/console/audit?subject=1"),
            (Some("/console"), "/console"),
            (Some("/console?x=1"), "/console?x=1"),
            (Some("https://evil.example/"), "/console"),
            (Some("//evil.example/console"), "/console"),
            (Some("/console//evil.example"), "/console"),
            (Some("/consolex"), "/console"),
            (Some("/console/\\evil"), "/console"),
            (Some("/v1/audit/events"), "/console"),
            (None, "/console"),
        ] {
            assert_eq!(safe_next(next), expected, "{next:?}");
        }
    }

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
