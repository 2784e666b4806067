//! Records every refused API call (401, 403) in the audit log, in one place
//! for every route: who (the caller's name when it is known, else a
//! fingerprint of the token or client certificate presented, else
//! `anonymous`), what (the method and the route's template) and why (the
//! error's code and message).
//!
//! `ApiError` marks a refusal on its response ([`Refused`]); this layer
//! takes the mark off, so a refusal is recorded once, and asks the
//! [`RefusalLimiter`](crate::refusals::RefusalLimiter) whether it gets a
//! row of its own or is only counted. It must never write a token or a
//! query string (which may hold identity numbers), and never turn a
//! refusal into another answer: if the audit log cannot take the row, the
//! refusal is logged as an error and answered all the same.

use axum::RequestExt;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::{AuditRecord, Direction};
use crate::auth::Callers;
use crate::error::Refused;
use crate::refusals::Admission;
use crate::state::AppState;
use crate::tls::PeerCertificate;

/// Hex digits of a fingerprint kept in the log: enough to tell sources
/// apart and to match a caller's configured `token_sha256`, whose prefix
/// it is.
const FINGERPRINT_DIGITS: usize = 16;

pub async fn record(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let certificate = request
        .extensions()
        .get::<ConnectInfo<PeerCertificate>>()
        .and_then(|info| info.0.fingerprint.clone());
    // Which agency's callback endpoint was called: known agencies only
    // reach a 401 there.
    let agency = match &route {
        Some(r) if r.as_str().contains("{agency}") => request
            .extract_parts::<RawPathParams>()
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "agency")
                    .map(|(_, value)| value.to_owned())
            }),
        _ => None,
    };
    let mut response = next.run(request).await;
    let Some(refused) = response.extensions_mut().remove::<Refused>() else {
        return response;
    };
    let status = response.status();
    let source = refused.source.clone().unwrap_or_else(|| {
        source(
            &state.callers,
            status,
            certificate.as_deref(),
            authorization.as_ref(),
        )
    });
    if state.refusals.admit(&source, refused.code) == Admission::Count {
        return response;
    }
    let route = route.as_ref().map_or("(no route)", MatchedPath::as_str);
    let body = json!({
        "method": method.as_str(),
        "route": route,
        "status": status.as_u16(),
        "code": refused.code,
        "message": refused.message,
    });
    let row = AuditRecord {
        direction: Some(Direction::Inbound),
        caller: Some(source),
        agency,
        action: "auth.refused".into(),
        status: Some(refused.code.to_owned()),
        body: Some(body.to_string().into()),
        ..AuditRecord::default()
    };
    if let Err(e) = state.audit.record(row).await {
        tracing::error!(error = %e, %method, route, code = refused.code, "cannot record a refused call");
    }
    response
}

/// Who was refused, under the rules of the module's text. A 403 went to a
/// known caller; a 401 by definition did not.
fn source(
    callers: &Callers,
    status: StatusCode,
    certificate: Option<&str>,
    authorization: Option<&HeaderValue>,
) -> String {
    if status == StatusCode::FORBIDDEN
        && let Ok(caller) = callers.identify(certificate, authorization)
    {
        return caller.name;
    }
    let token = authorization.map(|value| {
        let bytes = value.as_bytes();
        bytes.strip_prefix(b"Bearer ").unwrap_or(bytes).trim_ascii()
    });
    match (token, certificate) {
        (Some(token), _) if !token.is_empty() => format!("token:{}", fingerprint(token)),
        (_, Some(certificate)) => format!(
            "cert:{}",
            certificate.get(..FINGERPRINT_DIGITS).unwrap_or(certificate)
        ),
        _ => "anonymous".into(),
    }
}

/// How a refused token is named in the log: `token:` and the first hex
/// digits of its SHA-256 (`anonymous` for an empty one).
pub(crate) fn token_source(token: &str) -> String {
    let token = token.trim();
    if token.is_empty() {
        "anonymous".into()
    } else {
        format!("token:{}", fingerprint(token.as_bytes()))
    }
}

/// The first hex digits of the SHA-256 of what was presented.
pub(crate) fn fingerprint(presented: &[u8]) -> String {
    let mut hex = hex::encode(Sha256::digest(presented));
    hex.truncate(FINGERPRINT_DIGITS);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::config::CallerConfig;

    fn callers() -> Callers {
        Callers::from_config(&[CallerConfig {
            name: "demo-auditor".into(),
            role: Role::Auditor,
            token_sha256: Some(hex::encode(Sha256::digest(b"demo-auditor-token"))),
            client_cert_sha256: None,
            court: None,
            rate_per_second: None,
            burst: None,
            callback_url: None,
            callback_secret_env: None,
            callback_secret_file: None,
        }])
    }

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or(HeaderValue::from_static(""))
    }

    #[test]
    fn a_refused_source_is_named_without_what_it_presented() {
        let callers = callers();
        let known = bearer("demo-auditor-token");
        let unknown = bearer("made-up");
        let certificate = "ab".repeat(32);
        let cases = [
            (
                StatusCode::FORBIDDEN,
                None,
                Some(&known),
                "demo-auditor".to_owned(),
            ),
            (
                StatusCode::UNAUTHORIZED,
                Some(certificate.as_str()),
                Some(&unknown),
                format!("token:{}", fingerprint(b"made-up")),
            ),
            (
                StatusCode::UNAUTHORIZED,
                Some(certificate.as_str()),
                None,
                format!("cert:{}", &certificate[..FINGERPRINT_DIGITS]),
            ),
            (StatusCode::UNAUTHORIZED, None, None, "anonymous".to_owned()),
            (
                StatusCode::UNAUTHORIZED,
                None,
                Some(&HeaderValue::from_static("Bearer  ")),
                "anonymous".to_owned(),
            ),
        ];
        for (status, certificate, authorization, expected) in cases {
            assert_eq!(
                source(&callers, status, certificate, authorization),
                expected,
                "{status} {certificate:?} {authorization:?}"
            );
        }
    }

    #[test]
    fn a_fingerprint_is_the_prefix_of_the_digest_a_caller_is_configured_with() {
        // demo-enforcement-token, as config/gateway.toml holds it.
        let configured = "75b94038177054bfafe1233c645d1145c28ed6c8e6236d428bb6b3507c8d3a33";
        let print = fingerprint(b"demo-enforcement-token");
        assert_eq!(print.len(), FINGERPRINT_DIGITS);
        assert!(configured.starts_with(&print));
    }
}
