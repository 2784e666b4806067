//! Extractors that turn every malformed input into the API's error shape:
//! JSON with the path of the offending field, query strings, body limits.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::input::{Normalise, ObjectOnly};

/// A JSON body: exactly one JSON object of the declared shape, sent as
/// `Content-Type: application/json` (415 otherwise). Syntax errors and
/// anything after the value are `malformed_json`; unknown, repeated or
/// missing fields, wrong types and arrays where objects belong are
/// `invalid_field` naming the field; a body over the limit is 413.
pub struct ApiJson<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned + Normalise> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let raw = Bytes::from_request(req, state)
            .await
            .map_err(unreadable_body)?;
        let mut value: T = parse_json(&raw)?;
        value.normalise()?;
        Ok(Self { value, raw })
    }
}

/// A body that could not be read: over the limit (413), or broken off.
pub fn unreadable_body(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is larger than the gateway accepts",
        )
    } else {
        ApiError::bad_request("unreadable_body", e.body_text())
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
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = serde_path_to_error::deserialize(ObjectOnly(&mut de)).map_err(|e| {
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
    })?;
    // One value: nothing but whitespace may follow it.
    de.end().map_err(|e| {
        ApiError::malformed_json(format!(
            "the body must be one JSON value, with nothing after it: {e}"
        ))
    })?;
    Ok(value)
}

/// Refuses a body that is not declared as JSON (`application/json`, in
/// UTF-8 when a charset is named).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = || {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
        )
        .with_field("Content-Type")
    };
    let value = single_header(headers, "content-type")?
        .ok_or_else(unsupported)?
        .to_str()
        .map_err(|_| unsupported())?;
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|essence| essence.eq_ignore_ascii_case("application/json"))
    {
        return Err(unsupported());
    }
    for param in parts.filter(|p| !p.is_empty()) {
        let (name, v) = param.split_once('=').ok_or_else(unsupported)?;
        let v = v.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !v.eq_ignore_ascii_case("utf-8") {
            return Err(unsupported());
        }
    }
    Ok(())
}

/// The single value of a header that may appear at most once; a repeated
/// one is a 400, since proxies and servers disagree on which copy wins.
pub fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "repeated_header",
            format!("the {name} header may be sent only once"),
        )
        .with_field(name));
    }
    Ok(first)
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

/// A path parameter; one that cannot be read (bad percent-encoding, not
/// UTF-8) is a 400 in the API's error shape.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// The `case_number` a list is asked for: required, a case number.
pub fn case_filter(raw: Option<&str>) -> Result<adapters::ids::CaseNumber, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::invalid("case_number", "case_number is required"))?;
    let raw = crate::input::text("case_number", raw, crate::input::CASE_NUMBER_MAX)?;
    adapters::ids::CaseNumber::parse(&raw)
        .map_err(|e| ApiError::invalid("case_number", e.to_string()))
}

/// A page size: `default` when absent, refused outside 1 to `max`.
pub fn page_limit(raw: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = raw.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_query", format!("limit is 1 to {max}"))
                .with_field("limit"),
        );
    }
    Ok(limit)
}

/// A text filter of a query: at most `max` characters, not empty, no
/// forbidden character (module `input`); matched literally.
pub fn filter(field: &str, raw: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    raw.map(|v| crate::input::required(field, &v, max))
        .transpose()
        .map_err(ApiError::from)
}
