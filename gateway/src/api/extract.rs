//! Extractors that turn every malformed input into the API's error shape:
//! JSON with the path of the offending field, query strings, body limits.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Syntax errors are `malformed_json`; unknown fields, missing
/// fields and wrong types are `invalid_field` naming the field; a body over
/// the limit is 413.
pub struct ApiJson<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let raw = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than the gateway accepts",
                )
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })?;
        let value = parse_json(&raw)?;
        Ok(Self { value, raw })
    }
}

/// Whether JSON text carries the NUL character (`\u0000`): no text the
/// gateway keeps may hold it (PostgreSQL text cannot).
pub fn has_nul_escape(raw: &[u8]) -> bool {
    raw.windows(6).any(|w| w == b"\\u0000")
}

pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    if has_nul_escape(raw) {
        return Err(ApiError::bad_request(
            "invalid_characters",
            "text in the body may not contain the NUL character (\\u0000)",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::malformed_json(format!("the body is not valid JSON: {inner}"))
            }
            Category::Data => {
                let err = ApiError::bad_request("invalid_field", inner.to_string());
                if path == "." || path.is_empty() {
                    err
                } else {
                    err.with_field(path)
                }
            }
        }
    })
}

/// Query parameters; a malformed query is a 400 naming the problem.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}
