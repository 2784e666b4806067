//! The session every signed-in page runs in (`Signed`): found by its
//! cookie, live (not revoked, not idle for `console.session_idle_minutes`,
//! not past `console.session_absolute_minutes` after sign-in), and its
//! caller still configured, with the role the configuration gives it now.
//!
//! The cookie holds a random id of 256 bits (`HttpOnly`, `SameSite=Strict`,
//! `Path=/console`, `Secure` when the gateway is reached over TLS); the
//! store keeps only its SHA-256. A request without a live session goes to
//! the sign-in form (`sign_in.rs`); a cookie of an ended session is
//! recorded as the API records refusals (`auth.refused`).

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use super::{PageError, UserView};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Refused};
use crate::state::AppState;
use crate::store::{ConsoleSession, TOUCH_EVERY_MS};
use crate::tls::PeerCertificate;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "gw_console";

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

pub(super) fn session_label(id_sha256: &str) -> String {
    id_sha256
        .get(..SESSION_LABEL_DIGITS)
        .unwrap_or(id_sha256)
        .to_owned()
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) fn digest(id: &str) -> String {
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
pub(super) fn safe_next(next: Option<&str>) -> String {
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
pub(super) fn clear_cookie(secure: bool) -> HeaderValue {
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
pub(super) fn secure(state: &AppState) -> bool {
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
    pub certificate: Option<String>,
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
}
