//! `POST /v1/callbacks/{agency}`: results an agency pushes (dialects with
//! `interaction = "callback"`).
//!
//! The agency authenticates with its own bearer token, whose SHA-256 its
//! agency file holds (compared in constant time). The pushed body is recorded
//! in the audit log before anything reads it, and each result again, with its
//! case and subject, before it changes a task. A repeated or late callback is
//! acknowledged and changes nothing.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::extract::{ApiPath, single_header};
use crate::error::ApiError;
use crate::services::pushes::{Taken, take_push};
use crate::state::AppState;

/// Results an agency pushes (agencies whose dialect answers by callback).
/// The body is the agency's own message format (XML or JSON, as its
/// dialect says); it is recorded before it is read.
#[utoipa::path(
    post,
    path = "/v1/callbacks/{agency}",
    operation_id = "receive_callback",
    tag = "callbacks",
    params(("agency" = String, Path, max_length = 64, description = "The agency's id.")),
    request_body(description = "The agency's message, in its dialect's format.", content(
        (String = "application/json"), (String = "application/xml"), (String = "text/xml"))),
    responses(
        (status = 200, description = "Which results were taken and which ignored.", body = crate::api::schema::CallbackAck),
        (status = 400, description = "`bad_callback`: the message cannot be read in the agency's dialect; or a malformed request.", body = crate::api::schema::ErrorBody),
        (status = 404, description = "`not_found`: no agency with that id takes callbacks here.", body = crate::api::schema::ErrorBody),
    ),
    security(("agency_token" = [])),
)]
pub async fn receive(
    State(state): State<AppState>,
    ApiPath(agency_id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    // As on the API: one Authorization header, or none.
    let authorization = single_header(&headers, "authorization")?;
    let current = state.agencies.current();
    let link = current
        .get(&agency_id)
        .filter(|l| l.config().callback_token_sha256.is_some())
        .ok_or_else(|| ApiError::not_found(format!("no agency {agency_id} takes callbacks here")))?
        .clone();
    let expected = link
        .config()
        .callback_token_sha256
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    let presented = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Sha256::digest(t.trim().as_bytes()).to_vec())
        .unwrap_or_default();
    if presented.is_empty() || !bool::from(presented.ct_eq(&expected)) {
        return Err(ApiError::unauthorized(
            "the agency's callback token is missing or wrong",
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the callback is too large",
            )
        } else {
            ApiError::bad_request("unreadable_body", e.body_text())
        }
    })?;
    let content_type = message_type(&headers)?;
    let Taken { accepted, ignored } = take_push(&state, &link, body, content_type).await?;
    tracing::info!(agency = %agency_id, accepted = accepted.len(), ignored = ignored.len(), "callback");
    Ok(Json(json!({"accepted": accepted, "ignored": ignored})))
}

/// The callback's declared type: one `Content-Type`, JSON or XML (the
/// formats dialects speak); anything else is a 415, as on the API.
fn message_type(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unsupported = || {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a callback is JSON or XML, sent with its Content-Type",
        )
        .with_field("Content-Type")
    };
    let value = single_header(headers, "content-type")?
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unsupported)?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let known = matches!(
        essence.as_str(),
        "application/json" | "application/xml" | "text/xml"
    ) || essence.ends_with("+json")
        || essence.ends_with("+xml");
    if known { Ok(value) } else { Err(unsupported()) }
}
