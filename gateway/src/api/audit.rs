//! `/v1/audit`: what auditors read. Role `auditor`. Every query is itself
//! recorded in the log it reads.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::api::extract::{ApiPath, ApiQuery, filter, page_limit};
use crate::api::inbound;
use crate::api::schema::ErrorBody;
use crate::audit::{AuditFilter, AuditRecord, StoredAuditEvent};
use crate::auth::{Caller, Role};
use crate::bundle::{BundleFilter, Limits, Plan, PlanError};
use crate::error::ApiError;
use crate::input::{CASE_NUMBER_MAX, FILTER_MAX};
use crate::inquiry::timestamp;
use crate::state::AppState;
use crate::store::{AuditStore, Window};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Rows about this case.
    #[param(min_length = 1, max_length = 64)]
    pub(crate) case_number: Option<String>,
    /// Rows about this subject: an identity number or credit code.
    #[param(min_length = 1, max_length = 200)]
    pub(crate) subject: Option<String>,
    /// Rows of exchanges with this agency.
    #[param(min_length = 1, max_length = 200)]
    pub(crate) agency: Option<String>,
    /// Rows of this caller.
    #[param(min_length = 1, max_length = 200)]
    pub(crate) caller: Option<String>,
    /// Rows naming an officer that contains this text (name, work card or
    /// credential number; ASCII letters in either case; taken literally).
    #[param(min_length = 1, max_length = 200)]
    pub(crate) officer: Option<String>,
    /// Rows of this action (`inquiry.create`, `order.create`, `auth.refused` ...).
    #[param(min_length = 1, max_length = 200)]
    pub(crate) action: Option<String>,
    /// Rows of this inquiry, order or plan id.
    #[param(min_length = 1, max_length = 200)]
    pub(crate) inquiry: Option<String>,
    /// Rows that went this way: `inbound` (API calls, console pages),
    /// `outbound` (messages to agencies), `reply`, `callback` (results
    /// agencies pushed) or `internal` (the gateway's own decisions).
    #[param(pattern = "^(inbound|outbound|reply|callback|internal)$")]
    pub(crate) direction: Option<String>,
    /// From this instant (RFC 3339), inclusive.
    #[param(format = DateTime, max_length = 64)]
    pub(crate) from: Option<String>,
    /// Before this instant (RFC 3339).
    #[param(format = DateTime, max_length = 64)]
    pub(crate) to: Option<String>,
    /// Rows per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<i64>,
    /// The `next_cursor` of the page before.
    #[param(max_length = 20, pattern = "^[0-9]+$")]
    pub(crate) cursor: Option<String>,
}

pub(crate) fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
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

/// Query the audit log: who asked what about whom, under which case, and
/// what came back. JSON, or CSV with `Accept: text/csv` (cells a
/// spreadsheet would run as formulas are neutralised). The query is itself
/// recorded.
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    operation_id = "list_audit_events",
    tag = "audit",
    params(EventParams),
    responses(
        (status = 200, description = "A page of rows, oldest first.", content(
            (crate::api::schema::AuditEventsPage = "application/json"),
            (String = "text/csv", example = "seq,at,direction,caller,officers,case_number,subject,agency,action,inquiry_id,request_number,status,latency_ms,body_sha256,prev_hash,hash,next_cursor"),
        )),
        (status = 422, description = "A filter holds a character no value can hold, or is too long.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<EventParams>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor])?;
    let filter = audit_filter(p)?;
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
    let next_cursor = next_cursor(&events, filter.limit);
    if wants_csv(&headers) {
        return csv_response(&events, next_cursor.as_deref());
    }
    Ok(Json(json!({
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    }))
    .into_response())
}

/// The cursor of the page after `events`, when the page was full.
pub(crate) fn next_cursor(events: &[StoredAuditEvent], limit: i64) -> Option<String> {
    (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.seq.to_string()))
        .flatten()
}

/// Directions a row may have (`AuditFilter::direction`).
pub(crate) const DIRECTIONS: [&str; 5] = ["inbound", "outbound", "reply", "callback", "internal"];

/// The filter a query's parameters ask for, each checked as the API
/// checks it: text filters bounded and free of forbidden characters,
/// times in RFC 3339, the cursor one this API gave out.
pub(crate) fn audit_filter(p: EventParams) -> Result<AuditFilter, ApiError> {
    let limit = page_limit(p.limit, 100, 1000)?;
    let after_seq = p
        .cursor
        .as_deref()
        .map(|c| {
            // Cursors are the row numbers this API gives out: digits only.
            let digits = !c.is_empty() && c.len() <= 20 && c.bytes().all(|b| b.is_ascii_digit());
            digits
                .then(|| c.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_query", "cursor is not one this API gave out")
                        .with_field("cursor")
                })
        })
        .transpose()?;
    let direction = p
        .direction
        .map(|d| {
            DIRECTIONS
                .contains(&d.as_str())
                .then_some(d)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("direction is one of {}", DIRECTIONS.join(", ")),
                    )
                    .with_field("direction")
                })
        })
        .transpose()?;
    Ok(AuditFilter {
        case_number: filter("case_number", p.case_number, CASE_NUMBER_MAX)?,
        subject: subject_filter(p.subject)?,
        agency: filter("agency", p.agency, FILTER_MAX)?,
        caller: filter("caller", p.caller, FILTER_MAX)?,
        officer: filter("officer", p.officer, FILTER_MAX)?,
        action: filter("action", p.action, FILTER_MAX)?,
        inquiry_id: filter("inquiry", p.inquiry, FILTER_MAX)?,
        inquiry_ids: Vec::new(),
        direction,
        from_ms: parse_time("from", p.from.as_deref())?,
        to_ms: parse_time("to", p.to.as_deref())?,
        after_seq,
        through_seq: None,
        before_seq: None,
        limit,
    })
}

/// A subject filter: an identity number or credit code, in the one letter
/// case (upper) identifiers are stored in.
fn subject_filter(raw: Option<String>) -> Result<Option<String>, ApiError> {
    Ok(filter("subject", raw, FILTER_MAX)?.map(|s| s.to_uppercase()))
}

/// Whether the client asked for CSV (`Accept: text/csv`).
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.trim().split(';').next().map(str::trim) == Some("text/csv"))
}

/// The CSV columns: the JSON event's fields, officers joined by `; `.
const CSV_COLUMNS: [&str; 17] = [
    "seq",
    "at",
    "direction",
    "caller",
    "officers",
    "case_number",
    "subject",
    "agency",
    "action",
    "inquiry_id",
    "request_number",
    "status",
    "latency_ms",
    "body_sha256",
    "prev_hash",
    "hash",
    "next_cursor",
];

/// A text cell a spreadsheet shows as text rather than runs as a formula:
/// one that begins with `=`, `+`, `-`, `@`, a tab or a carriage return
/// gets a leading `'` (OWASP's rule against CSV injection). Officers'
/// names, case numbers and other fields clients send reach these cells.
pub(crate) fn inert_cell(mut text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        text.insert(0, '\'');
    }
    text
}

/// The same rows as CSV (RFC 4180, UTF-8). The next page's cursor is in
/// the `Link`-like header `x-next-cursor` and on the last row's
/// `next_cursor` column.
fn csv_response(
    events: &[StoredAuditEvent],
    next_cursor: Option<&str>,
) -> Result<Response, ApiError> {
    let body = csv_rows(events, next_cursor, true)?;
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    if let Some(c) = next_cursor
        && let Ok(v) = HeaderValue::from_str(c)
    {
        response.headers_mut().insert("x-next-cursor", v);
    }
    Ok(response)
}

/// Rows as CSV lines (after the header line, with `header`): the JSON
/// event's fields, officers joined by `; `, every text cell made inert
/// (`inert_cell`); the last row carries `next_cursor`. Pages written one
/// after another (the first with its header) make one file.
pub(crate) fn csv_rows(
    events: &[StoredAuditEvent],
    next_cursor: Option<&str>,
    header: bool,
) -> Result<Vec<u8>, ApiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| ApiError::internal(format!("cannot write CSV: {e}"));
    if header {
        out.write_record(CSV_COLUMNS).map_err(failed)?;
    }
    for (i, e) in events.iter().enumerate() {
        let last = i + 1 == events.len();
        let opt = |v: &Option<String>| inert_cell(v.clone().unwrap_or_default());
        // seq, latency_ms and the cursor are numbers the gateway writes:
        // left as they are. Every text cell goes through `inert_cell`.
        out.write_record([
            e.seq.to_string(),
            inert_cell(timestamp(e.at_ms)),
            inert_cell(e.direction.clone()),
            opt(&e.caller),
            inert_cell(e.officers.join("; ")),
            opt(&e.case_number),
            opt(&e.subject),
            opt(&e.agency),
            inert_cell(e.action.clone()),
            opt(&e.inquiry_id),
            opt(&e.request_number),
            opt(&e.status),
            e.latency_ms.map(|l| l.to_string()).unwrap_or_default(),
            opt(&e.body_sha256),
            inert_cell(e.prev_hash.clone()),
            inert_cell(e.hash.clone()),
            if last {
                next_cursor.unwrap_or_default().to_owned()
            } else {
                String::new()
            },
        ])
        .map_err(failed)?;
    }
    out.into_inner()
        .map_err(|e| ApiError::internal(format!("cannot write CSV: {e}")))
}

/// Verify the audit log: the hash chain and the signed checkpoints. Names
/// the first row anyone altered.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    operation_id = "verify_audit_log",
    tag = "audit",
    responses(
        (status = 200, description = "The verification's result (`ok` false names the first bad row).", body = crate::verify::VerifyReport),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor])?;
    inbound(
        &state,
        &caller,
        "audit.verify",
        "ok",
        None,
        AuditRecord::default(),
    )
    .await?;
    let key = state.config.audit.verifying_key().map_err(|e| {
        tracing::error!(error = %e, "audit verify key unreadable");
        ApiError::unavailable(
            "verify_key_unavailable",
            "the audit verification key cannot be read",
        )
    })?;
    let report = crate::verify::verify(&*state.store, key.as_ref()).await?;
    Ok(Json(serde_json::to_value(&report).unwrap_or_default()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BundleParams {
    /// The case whose rows the bundle holds. Give this or `subject`, not
    /// both.
    #[param(min_length = 1, max_length = 64)]
    case_number: Option<String>,
    /// The subject whose rows, under every case, the bundle holds: an
    /// identity number or credit code (either letter case).
    #[param(min_length = 1, max_length = 200)]
    subject: Option<String>,
}

/// Export an evidence bundle of a case or a subject.
///
/// Every row of the audit log about one case, or about one subject under
/// every case, as one JSON file anyone can check offline (`gateway audit
/// verify-bundle FILE`; docs/audit.md, "Evidence bundles"). Each row comes
/// with every field its hash covers, its message body (base64 of the exact
/// bytes, where still kept), and a chain proof to the nearest signed
/// checkpoint at or after it: the hash inputs of the rows in between
/// (never their bodies) and the checkpoint with its Ed25519 signature; the
/// public key is in the file. Rows no checkpoint has signed yet are proven
/// up to the chain's head and marked unsigned. The bundle is streamed from
/// the store page by page; one of more than `audit.bundle_max_rows`
/// matching rows (100,000 by default), or whose proofs would pass through
/// more than `audit.bundle_max_links` other rows, is refused (422
/// `too_many_rows`). The export is itself recorded (`audit.bundle`).
#[utoipa::path(
    get,
    path = "/v1/audit/bundle",
    operation_id = "export_audit_bundle",
    tag = "audit",
    params(BundleParams),
    responses(
        (status = 200, description = "The bundle, as a file to save (`Content-Disposition: attachment`).",
            body = crate::bundle::Bundle, content_type = "application/json",
            headers(("content-disposition" = String, description = "`attachment; filename=\"audit-bundle-case-<time>.json\"` (or `-subject-`): the file name names no case or subject."))),
        (status = 422, description = "`too_many_rows`: more rows match, or the proofs pass through more rows, than a bundle holds; or a filter holds a character no value can hold, or is too long.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn bundle(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<BundleParams>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor])?;
    let case_number = filter("case_number", p.case_number, CASE_NUMBER_MAX)?;
    let subject = subject_filter(p.subject)?;
    let (wanted, kind) = match (case_number, subject) {
        (Some(case), None) => (BundleFilter::case(case), "case"),
        (None, Some(subject)) => (BundleFilter::subject(subject), "subject"),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "give exactly one of case_number and subject",
            ));
        }
    };
    let key = state.config.audit.verifying_key().map_err(|e| {
        tracing::error!(error = %e, "audit verify key unreadable");
        ApiError::unavailable(
            "verify_key_unavailable",
            "the audit verification key cannot be read",
        )
    })?;
    let limits = Limits {
        max_rows: state.config.audit.bundle_max_rows,
        max_links: state.config.audit.bundle_max_links,
    };
    let store: Arc<dyn AuditStore> = state.store.clone();
    // Only sequence numbers are read before the export is recorded.
    let plan = Plan::make(&*store, wanted.clone(), limits).await;
    let asked = serde_json::to_vec(&wanted).unwrap_or_default();
    let plan = match plan {
        Ok(plan) => plan,
        Err(PlanError::Store(e)) => return Err(e.into()),
        Err(too_big) => {
            inbound(
                &state,
                &caller,
                "audit.bundle",
                "too_many_rows",
                Some(asked),
                AuditRecord::default(),
            )
            .await?;
            return Err(ApiError::unprocessable(
                "too_many_rows",
                too_big.to_string(),
            ));
        }
    };
    inbound(
        &state,
        &caller,
        "audit.bundle",
        "ok",
        Some(asked),
        AuditRecord::default(),
    )
    .await?;
    let now = chrono::Utc::now();
    let header = plan.header(&caller.name, now.timestamp_millis(), key.as_ref());
    let chunks = crate::bundle::stream(store, plan, header).map_err(|e| {
        tracing::error!(error = %e, "an evidence bundle's download failed midway");
        std::io::Error::other(e.to_string())
    });
    let filename = format!(
        "attachment; filename=\"audit-bundle-{kind}-{}.json\"",
        now.format("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuestionParams {
    /// From this instant (RFC 3339), inclusive.
    #[param(format = DateTime, max_length = 64)]
    pub(crate) from: Option<String>,
    /// Before this instant (RFC 3339).
    #[param(format = DateTime, max_length = 64)]
    pub(crate) to: Option<String>,
    /// `officer-volume` only (required there): requests per officer and
    /// civil day above which a day is listed.
    #[param(minimum = 0, maximum = 1000000)]
    pub(crate) threshold: Option<i64>,
    /// At most this many answers (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub(crate) limit: Option<i64>,
}

/// The questions auditors ask.
#[derive(ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum Question {
    SubjectsInSeveralCases,
    OfficersOutsideTheirCourt,
    OfficerVolume,
    DocumentMismatches,
}

/// `GET /v1/audit/questions/{question}`: the questions auditors ask.
/// - `subjects-in-several-cases`: subjects asked about under more than one
///   case;
/// - `officers-outside-their-court`: officers who asked about subjects in
///   cases of a court other than their caller's (the court code in the case
///   number);
/// - `officer-volume?threshold=N`: officers with more than N requests on a
///   civil day (UTC+8);
/// - `document-mismatches`: orders whose agency acknowledged other
///   documents, or other digests, than were sent.
#[utoipa::path(
    get,
    path = "/v1/audit/questions/{question}",
    operation_id = "ask_audit_question",
    tag = "audit",
    params(("question" = inline(Question), Path, description = "Which question."), QuestionParams),
    responses(
        (status = 200, description = "The answer: one list named after what it holds.", body = crate::api::schema::QuestionAnswer),
        (status = 404, description = "`not_found`: no such question.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn question(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(question): ApiPath<String>,
    ApiQuery(p): ApiQuery<QuestionParams>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor])?;
    let described = format!("{p:?}");
    let asked = QuestionAsked::new(question, p)?;
    inbound(
        &state,
        &caller,
        &format!("audit.question.{}", asked.question),
        "ok",
        Some(described.into_bytes()),
        AuditRecord::default(),
    )
    .await?;
    Ok(Json(asked.answer(&state).await?))
}

/// The questions auditors may ask, by name.
pub(crate) const QUESTIONS: [&str; 4] = [
    "subjects-in-several-cases",
    "officers-outside-their-court",
    "officer-volume",
    "document-mismatches",
];

/// A question as asked, its parameters checked.
#[derive(Debug, Clone)]
pub(crate) struct QuestionAsked {
    pub question: String,
    pub window: Window,
    pub threshold: Option<i64>,
    pub limit: i64,
}

impl QuestionAsked {
    /// Checks a question's name and parameters as the API does: a
    /// question that does not exist is 404, a bad parameter 400.
    pub(crate) fn new(question: String, p: QuestionParams) -> Result<Self, ApiError> {
        let window = Window {
            from_ms: parse_time("from", p.from.as_deref())?,
            to_ms: parse_time("to", p.to.as_deref())?,
        };
        let limit = page_limit(p.limit, 1000, 10_000)?;
        if p.threshold.is_some_and(|t| !(0..=1_000_000).contains(&t)) {
            return Err(
                ApiError::bad_request("invalid_query", "threshold is 0 to 1000000")
                    .with_field("threshold"),
            );
        }
        if !QUESTIONS.contains(&question.as_str()) {
            return Err(ApiError::not_found(format!(
                "no question {question:?}; ask one of {}",
                QUESTIONS.join(", ")
            )));
        }
        if question == "officer-volume" && p.threshold.is_none() {
            return Err(
                ApiError::bad_request("invalid_query", "officer-volume needs threshold=N")
                    .with_field("threshold"),
            );
        }
        Ok(Self {
            question,
            window,
            threshold: p.threshold,
            limit,
        })
    }

    /// The answer: one list named after what it holds.
    pub(crate) async fn answer(&self, state: &AppState) -> Result<Value, ApiError> {
        let (window, limit) = (self.window, self.limit);
        let answer = match self.question.as_str() {
            "subjects-in-several-cases" => {
                let rows = state
                    .store
                    .subjects_in_several_cases(&window, limit)
                    .await?;
                json!({ "subjects": rows })
            }
            "officers-outside-their-court" => {
                let courts: std::collections::HashMap<&str, &str> = state
                    .config
                    .callers
                    .iter()
                    .filter_map(|c| {
                        c.court
                            .as_ref()
                            .map(|court| (c.name.as_str(), court.code.as_str()))
                    })
                    .collect();
                let rows = state.store.officer_cases(&window).await?;
                let outside: Vec<Value> = rows
                    .iter()
                    .filter_map(|r| {
                        let own = courts.get(r.caller.as_str())?;
                        let case_court = adapters::ids::CaseNumber::parse(&r.case_number)
                            .map(|c| c.court_code().to_owned())
                            .ok()?;
                        (case_court != *own).then(|| {
                            json!({
                                "caller": r.caller,
                                "caller_court": own,
                                "officer": r.officer,
                                "case_number": r.case_number,
                                "case_court": case_court,
                                "requests": r.requests,
                            })
                        })
                    })
                    .take(limit as usize)
                    .collect();
                json!({ "requests": outside })
            }
            "document-mismatches" => {
                let orders = state
                    .store
                    .orders_with_document_mismatch(window.from_ms, window.to_ms, limit)
                    .await?;
                let orders: Vec<Value> = orders
                    .iter()
                    .map(|o| {
                        json!({
                            "order": o.id,
                            "caller": o.caller,
                            "case_number": o.case_number,
                            "agency": o.agency,
                            "action": o.action,
                            "request_number": o.request_number,
                            "sent": o.documents,
                            "acknowledged": o.acknowledged_documents,
                            "created_at": timestamp(o.created_at_ms),
                        })
                    })
                    .collect();
                json!({ "orders": orders })
            }
            _ => {
                let threshold = self.threshold.unwrap_or_default();
                let rows = state.store.officer_daily_volume(&window, threshold).await?;
                json!({ "threshold": threshold, "officer_days": rows })
            }
        };
        Ok(answer)
    }
}

/// Read one row of the audit log, with the message body where it is kept.
#[utoipa::path(
    get,
    path = "/v1/audit/events/{seq}",
    operation_id = "get_audit_event",
    tag = "audit",
    params(("seq" = i64, Path, minimum = 1, description = "The row's sequence number.")),
    responses(
        (status = 200, description = "The row.", body = crate::api::schema::AuditEvent),
        (status = 404, description = "`not_found`: no row with that number.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(seq): ApiPath<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_neutralised() {
        for (cell, expected) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("@SUM(1+1)", "'@SUM(1+1)"),
            ("+86 931", "'+86 931"),
            ("-2+3", "'-2+3"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
        ] {
            assert_eq!(inert_cell(cell.into()), expected);
        }
    }

    #[test]
    fn other_cells_are_left_as_they_are() {
        for cell in [
            "",
            "李明 (G620503001/ZX620503001)",
            "(2024)甘0503执1234号",
            "a=b",
            "2024-05-01T08:00:00.000Z",
            "'=already quoted",
        ] {
            assert_eq!(inert_cell(cell.into()), cell);
        }
    }
}
