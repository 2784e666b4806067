//! Callers and their roles: known by a bearer token, by a client
//! certificate, or by both.
//!
//! The configuration holds SHA-256 digests of tokens; a presented token is
//! hashed and compared in constant time against every caller, so timing says
//! nothing about which caller or how many bytes matched.
//!
//! Over TLS with client certificates (`tls.rs`), a caller whose
//! `client_cert_sha256` names a certificate is known by that certificate:
//! the connection that presented it needs no token, a token of another
//! caller on it is refused, and the caller's own token is refused on any
//! connection without the certificate (a stolen token alone is not enough).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use adapters::model::Court;

use crate::config::CallerConfig;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tls::PeerCertificate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Enforcement,
    Auditor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Enforcement => "enforcement",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub court: Option<Court>,
}

impl Caller {
    fn of(config: &CallerConfig) -> Self {
        Self {
            name: config.name.clone(),
            role: config.role,
            court: config.court.clone(),
        }
    }

    /// Refuses the call unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not use this endpoint",
                self.role.as_str()
            )))
        }
    }
}

type Bucket = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

/// The callers known from configuration, by token digest, with each one's
/// request quota.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    entries: Arc<Vec<([u8; 32], Caller)>>,
    /// Callers by the fingerprint of their client certificate.
    by_certificate: Arc<std::collections::HashMap<String, Caller>>,
    /// The names of those callers: their tokens alone do not admit them.
    certificate_bound: Arc<std::collections::HashSet<String>>,
    quotas: Arc<std::collections::HashMap<String, Bucket>>,
}

impl Callers {
    pub fn from_config(callers: &[CallerConfig]) -> Self {
        let entries = callers
            .iter()
            .filter_map(|c| {
                let digest: [u8; 32] = hex::decode(c.token_sha256.as_ref()?)
                    .ok()?
                    .try_into()
                    .ok()?;
                Some((digest, Caller::of(c)))
            })
            .collect();
        let by_certificate: std::collections::HashMap<String, Caller> = callers
            .iter()
            .filter_map(|c| Some((c.client_cert_fingerprint()?.ok()?, Caller::of(c))))
            .collect();
        let certificate_bound = by_certificate.values().map(|c| c.name.clone()).collect();
        let quotas = callers
            .iter()
            .filter_map(|c| {
                let rate = std::num::NonZeroU32::new(c.rate_per_second?)?;
                let burst = std::num::NonZeroU32::new(c.burst.unwrap_or(0)).unwrap_or(rate);
                let quota = governor::Quota::per_second(rate).allow_burst(burst);
                Some((c.name.clone(), governor::RateLimiter::direct(quota)))
            })
            .collect();
        Self {
            entries: Arc::new(entries),
            by_certificate: Arc::new(by_certificate),
            certificate_bound: Arc::new(certificate_bound),
            quotas: Arc::new(quotas),
        }
    }

    /// Takes one request from the caller's quota; the error says when the
    /// next may come.
    pub fn admit(&self, caller: &str) -> Result<(), std::time::Duration> {
        use governor::clock::Clock;
        match self.quotas.get(caller) {
            None => Ok(()),
            Some(bucket) => bucket.check().map_err(|not_until| {
                not_until.wait_time_from(governor::clock::DefaultClock::default().now())
            }),
        }
    }

    /// The caller a client certificate (its fingerprint) names.
    pub fn by_certificate(&self, fingerprint: &str) -> Option<Caller> {
        self.by_certificate.get(fingerprint).cloned()
    }

    /// A caller by its configured name.
    pub fn by_name(&self, name: &str) -> Option<Caller> {
        self.entries
            .iter()
            .map(|(_, caller)| caller)
            .chain(self.by_certificate.values())
            .find(|caller| caller.name == name)
            .cloned()
    }

    /// Whether the caller is known by its client certificate: a
    /// connection without that certificate does not admit it.
    pub fn is_certificate_bound(&self, name: &str) -> bool {
        self.certificate_bound.contains(name)
    }

    /// Who is calling: the connection's client certificate and the
    /// Authorization header, under the rules of the module's text.
    pub fn identify(
        &self,
        certificate: Option<&str>,
        authorization: Option<&axum::http::HeaderValue>,
    ) -> Result<Caller, ApiError> {
        let token = match authorization {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        ApiError::unauthorized("the Authorization header must be Bearer <token>")
                    })?,
            ),
        };
        self.identify_token(certificate, token)
    }

    /// Who is calling with this token (if any) on a connection with this
    /// client certificate (if any), under the rules of the module's text:
    /// the console's sign-in asks this of the token pasted into its form.
    pub fn identify_token(
        &self,
        certificate: Option<&str>,
        token: Option<&str>,
    ) -> Result<Caller, ApiError> {
        let by_certificate = certificate.and_then(|f| self.by_certificate(f));
        let by_token = match token {
            None => None,
            Some(token) => Some(
                self.authenticate(token)
                    .ok_or_else(|| ApiError::unauthorized("the token is not known"))?,
            ),
        };
        match (by_certificate, by_token) {
            (Some(cert), Some(token)) if cert.name != token.name => Err(ApiError::unauthorized(
                "the token and the client certificate name different callers",
            )),
            (Some(cert), _) => Ok(cert),
            (None, Some(token)) if self.certificate_bound.contains(&token.name) => Err(
                ApiError::unauthorized("this caller must connect with its client certificate"),
            ),
            (None, Some(token)) => Ok(token),
            (None, None) => Err(ApiError::unauthorized(
                "an Authorization: Bearer token (or a known client certificate) is required",
            )),
        }
    }

    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Look at every entry, whatever matches, so time does not depend on
        // the position of the match.
        for (known, caller) in self.entries.iter() {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(caller.clone());
            }
        }
        found
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let certificate = parts
            .extensions
            .get::<axum::extract::ConnectInfo<PeerCertificate>>()
            .and_then(|info| info.0.fingerprint.as_deref());
        // Two Authorization headers are refused, not resolved: servers and
        // proxies disagree on which one counts.
        let authorization = crate::api::extract::single_header(&parts.headers, "authorization")?;
        let caller = state.callers.identify(certificate, authorization)?;
        if let Err(wait) = state.callers.admit(&caller.name) {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this caller is over its rate; try again in {} ms",
                    wait.as_millis().max(1)
                ),
            )
            .with_retry_after(wait));
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_authenticates_only_its_own_caller() {
        let config = |name: &str, token: &str, role| CallerConfig {
            name: name.into(),
            role,
            token_sha256: Some(hex::encode(Sha256::digest(token.as_bytes()))),
            client_cert_sha256: None,
            court: None,
            rate_per_second: None,
            burst: None,
            callback_url: None,
            callback_secret_env: None,
            callback_secret_file: None,
        };
        let callers = Callers::from_config(&[
            config("court", "t-enf", Role::Enforcement),
            config("audit", "t-aud", Role::Auditor),
        ]);
        assert_eq!(
            callers.authenticate("t-aud").map(|c| c.role),
            Some(Role::Auditor)
        );
        assert_eq!(
            callers.authenticate("t-enf").map(|c| c.name),
            Some("court".into())
        );
        assert!(callers.authenticate("t-en").is_none());
        assert!(callers.authenticate("").is_none());
    }
}
