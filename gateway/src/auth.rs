//! Bearer-token callers and their roles.
//!
//! The configuration holds SHA-256 digests of tokens; a presented token is
//! hashed and compared in constant time against every caller, so timing says
//! nothing about which caller or how many bytes matched.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use adapters::model::Court;

use crate::config::CallerConfig;
use crate::error::ApiError;
use crate::state::AppState;

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

/// The callers known from configuration, by token digest.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    entries: Arc<Vec<([u8; 32], Caller)>>,
}

impl Callers {
    pub fn from_config(callers: &[CallerConfig]) -> Self {
        let entries = callers
            .iter()
            .filter_map(|c| {
                let digest: [u8; 32] = hex::decode(&c.token_sha256).ok()?.try_into().ok()?;
                Some((
                    digest,
                    Caller {
                        name: c.name.clone(),
                        role: c.role,
                        court: c.court.clone(),
                    },
                ))
            })
            .collect();
        Self {
            entries: Arc::new(entries),
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
        let value = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be Bearer <token>")
            })?;
        state
            .callers
            .authenticate(token)
            .ok_or_else(|| ApiError::unauthorized("the token is not known"))
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
            token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
            court: None,
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
