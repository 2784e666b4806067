//! `/v1/audit`: what auditors read. Role `auditor`. Every query is itself
//! recorded in the log it reads.

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::ApiQuery;
use crate::api::inbound;
use crate::audit::{AuditFilter, AuditRecord, StoredAuditEvent};
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::inquiry::timestamp;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    case_number: Option<String>,
    subject: Option<String>,
    agency: Option<String>,
    caller: Option<String>,
    officer: Option<String>,
    action: Option<String>,
    inquiry: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_millis())
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("{field} must be an RFC 3339 timestamp"),
                    )
                    .with_field(field)
                })
        })
        .transpose()
}

fn event_json(e: &StoredAuditEvent) -> Value {
    json!({
        "seq": e.seq,
        "at": timestamp(e.at_ms),
        "direction": e.direction,
        "caller": e.caller,
        "officers": e.officers,
        "case_number": e.case_number,
        "subject": e.subject,
        "agency": e.agency,
        "action": e.action,
        "inquiry_id": e.inquiry_id,
        "request_number": e.request_number,
        "status": e.status,
        "latency_ms": e.latency_ms,
        "body_sha256": e.body_sha256,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<EventParams>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor])?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_query", "limit is 1 to 1000").with_field("limit")
        );
    }
    let after_seq = p
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::bad_request("invalid_query", "cursor is not one this API gave out")
                    .with_field("cursor")
            })
        })
        .transpose()?;
    let filter = AuditFilter {
        case_number: p.case_number,
        subject: p.subject,
        agency: p.agency,
        caller: p.caller,
        officer: p.officer,
        action: p.action,
        inquiry_id: p.inquiry,
        from_ms: parse_time("from", p.from.as_deref())?,
        to_ms: parse_time("to", p.to.as_deref())?,
        after_seq,
        limit,
    };
    let described = format!("{filter:?}");
    inbound(
        &state,
        &caller,
        "audit.query",
        "ok",
        Some(described.into_bytes()),
        AuditRecord::default(),
    )
    .await?;
    let events = state.store.audit_events(&filter).await?;
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Json(json!({
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

pub async fn event(
    State(state): State<AppState>,
    caller: Caller,
    Path(seq): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor])?;
    let seq: i64 = seq
        .parse()
        .map_err(|_| ApiError::not_found(format!("no audit event {seq}")))?;
    inbound(
        &state,
        &caller,
        "audit.read",
        "ok",
        Some(seq.to_string().into_bytes()),
        AuditRecord::default(),
    )
    .await?;
    let e = state
        .store
        .audit_event(seq)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no audit event {seq}")))?;
    let mut value = event_json(&e);
    if let (Some(map), Some(body)) = (value.as_object_mut(), &e.body) {
        map.insert(
            "body_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .into(),
        );
        // XML bodies in GB18030 are shown decoded, as the agency meant them.
        if let Ok(text) = adapters::xml::decode_document(body) {
            map.insert("body_text".into(), text.into());
        }
    }
    Ok(Json(value))
}
