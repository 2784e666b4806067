//! The `bank-json` bank (bank-b): `POST /api/v1/asset-inquiries`, one
//! subject per call, UTF-8 JSON, outcome `FOUND` / `NOT_FOUND` / `REJECTED`,
//! errors as `{"error": {"code", "message"}}` (docs/wire-formats.md).
//! Control orders: `POST /api/v1/control-orders` (freeze, renew, release or
//! deduct one account) and `GET /api/v1/control-orders/{request_number}`,
//! both answering the order's state as it is now, with the documents the
//! bank received (`documents_received`: number and the digest it computed,
//! in the order's order; see `control` for the `-TAMPERED` fault).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::{NaiveDate, SecondsFormat};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agency::{Agency, json_reply};
use crate::bank_book::Account;
use crate::control::{
    self, Action, ControlItem, ControlRequest, ControlState, ItemResult, is_sha256_hex,
};
use crate::faults::FaultMode;
use crate::ledger::{Answer, Outcome, RequestKind};
use crate::{ids, money};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/api/v1/asset-inquiries", post(inquiry))
        .route("/api/v1/control-orders", post(control))
        .route(
            "/api/v1/control-orders/{request_number}",
            get(control_status),
        )
}

/// What the `refuse` fault answers a control order.
const MAINTENANCE: &str = "the bank's system is under maintenance (simulated)";

#[derive(Deserialize)]
struct InquiryRequest {
    request_number: String,
    case_number: String,
    court: Court,
    subject: Subject,
    officers: Vec<Officer>,
}

#[derive(Deserialize)]
struct Court {
    code: String,
    name: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    id_type: String,
    id_number: String,
}

#[derive(Deserialize)]
struct Officer {
    name: String,
    work_card_no: String,
    credential_no: String,
}

fn read_request(body: &[u8]) -> Result<InquiryRequest, String> {
    let request: InquiryRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid request: {e}"))?;
    let fields = [
        ("request_number", &request.request_number),
        ("case_number", &request.case_number),
        ("court.code", &request.court.code),
        ("court.name", &request.court.name),
        ("subject.type", &request.subject.kind),
        ("subject.name", &request.subject.name),
        ("subject.id_type", &request.subject.id_type),
        ("subject.id_number", &request.subject.id_number),
    ];
    if let Some((field, _)) = fields.iter().find(|(_, v)| v.trim().is_empty()) {
        return Err(format!("{field} is empty"));
    }
    if request.officers.is_empty() {
        return Err("officers is empty".into());
    }
    if request
        .officers
        .iter()
        .any(|o| o.name.is_empty() || o.work_card_no.is_empty() || o.credential_no.is_empty())
    {
        return Err("every officer needs name, work_card_no and credential_no".into());
    }
    Ok(request)
}

fn refusal_for(subject: &Subject) -> Option<String> {
    let len = subject.id_number.chars().count();
    match (subject.kind.as_str(), subject.id_type.as_str()) {
        ("individual", "RESIDENT_ID") if len == 18 || len == 15 => None,
        ("organization", "USCC") if len == 18 => None,
        ("individual", "RESIDENT_ID") | ("organization", "USCC") => {
            Some(format!("id_number has {len} characters"))
        }
        (kind, id_type) => Some(format!(
            "subject type {kind:?} with id_type {id_type:?} is not supported"
        )),
    }
}

fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// An injected error (`mode: error`, `error_rate`) or throttling (429),
/// nothing processed: `{"error": {"code", "message"}}` with a code for the
/// status.
pub(crate) fn fault_reply(status: StatusCode) -> Response {
    let (code, message) = match status.as_u16() {
        429 => ("RATE_LIMITED", "too many requests, retry later"),
        500 => ("INTERNAL_ERROR", "the bank's system failed, retry later"),
        502 => (
            "BAD_GATEWAY",
            "the bank's backend did not answer, retry later",
        ),
        503 => (
            "SERVICE_UNAVAILABLE",
            "the bank's system is busy, retry later",
        ),
        504 => (
            "GATEWAY_TIMEOUT",
            "the bank's backend timed out, retry later",
        ),
        _ => ("SYSTEM_BUSY", "the bank's system is busy, retry later"),
    };
    json_reply(FaultMode::Normal, status, &error_body(code, message))
}

async fn inquiry(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let request = match read_request(&body) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable request");
            return json_reply(
                mode,
                StatusCode::BAD_REQUEST,
                &error_body("INVALID_REQUEST", &reason),
            );
        }
    };
    let answer = agency.take_inquiry(
        mode,
        &request.request_number,
        &request.subject.id_number,
        refusal_for(&request.subject),
    );
    json_reply(
        mode,
        StatusCode::OK,
        &reply(&request.request_number, &answer),
    )
}

fn reply(request_number: &str, answer: &Answer) -> Value {
    let (outcome, reason, accounts): (&str, Option<&str>, &[Account]) = match &answer.outcome {
        Outcome::Found(found) => ("FOUND", None, found.accounts()),
        Outcome::NotFound => ("NOT_FOUND", None, &[]),
        Outcome::Refused(reason) => ("REJECTED", Some(reason), &[]),
    };
    let accounts: Vec<Value> = accounts.iter().map(account).collect();
    json!({
        "request_number": request_number,
        "outcome": outcome,
        "reason": reason,
        "answered_at": answer.answered_at.to_rfc3339_opts(SecondsFormat::Secs, false),
        "accounts": accounts,
    })
}

fn account(a: &Account) -> Value {
    let holds: Vec<Value> = a
        .measures
        .iter()
        .map(|m| {
            json!({
                "authority": m.authority,
                "document_number": m.document_number,
                "amount": money::yuan(m.amount_fen),
                "expires_on": m.end_date.format("%Y-%m-%d").to_string(),
                "queued": m.waiting,
            })
        })
        .collect();
    json!({
        "account_number": a.account_number,
        "product": a.kind.json_product(),
        "currency": a.currency,
        "ledger_balance": money::yuan(a.balance_fen),
        "available_balance": money::yuan(a.available_fen),
        "branch": a.branch,
        "status": a.state.json_status(),
        "holds": holds,
    })
}

// Control orders ------------------------------------------------------------

#[derive(Deserialize)]
struct ControlOrder {
    request_number: String,
    case_number: String,
    court: Court,
    subject: Subject,
    officers: Vec<Officer>,
    action: String,
    account_number: String,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    prior_request_number: Option<String>,
    documents: Vec<Document>,
}

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "type")]
    kind: String,
    number: String,
    sha256: String,
}

/// Present and not blank.
fn given(value: Option<&String>) -> Option<&str> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn iso_date(field: &str, value: Option<&String>) -> Result<Option<NaiveDate>, String> {
    given(value)
        .map(|text| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| format!("{field} is not a date YYYY-MM-DD: {text:?}"))
        })
        .transpose()
}

fn read_control(body: &[u8]) -> Result<ControlRequest, String> {
    let order: ControlOrder =
        serde_json::from_slice(body).map_err(|e| format!("invalid control order: {e}"))?;
    let fields = [
        ("request_number", &order.request_number),
        ("case_number", &order.case_number),
        ("court.code", &order.court.code),
        ("court.name", &order.court.name),
        ("subject.type", &order.subject.kind),
        ("subject.name", &order.subject.name),
        ("subject.id_type", &order.subject.id_type),
        ("subject.id_number", &order.subject.id_number),
        ("account_number", &order.account_number),
    ];
    if let Some((field, _)) = fields.iter().find(|(_, v)| v.trim().is_empty()) {
        return Err(format!("{field} is empty"));
    }
    if !matches!(
        (order.subject.kind.as_str(), order.subject.id_type.as_str()),
        ("individual", "RESIDENT_ID") | ("organization", "USCC")
    ) {
        return Err(format!(
            "subject type {:?} with id_type {:?} is not supported",
            order.subject.kind, order.subject.id_type
        ));
    }
    let action = match order.action.as_str() {
        "FREEZE" => Action::Freeze,
        "RENEW" => Action::Renew,
        "RELEASE" => Action::Release,
        "DEDUCT" => Action::Deduct,
        other => return Err(format!("unknown action {other:?}")),
    };
    if order.officers.len() < 2 {
        return Err(format!(
            "a control order needs two officers, not {}",
            order.officers.len()
        ));
    }
    if order
        .officers
        .iter()
        .any(|o| o.name.is_empty() || o.work_card_no.is_empty() || o.credential_no.is_empty())
    {
        return Err("every officer needs name, work_card_no and credential_no".into());
    }
    for d in &order.documents {
        if d.number.trim().is_empty() || !is_sha256_hex(&d.sha256) {
            return Err("every document needs a number and a sha256 of 64 hex digits".into());
        }
    }
    for needed in ["RULING", "ASSIST_NOTICE"] {
        if !order.documents.iter().any(|d| d.kind == needed) {
            return Err(format!("documents lack the {needed}"));
        }
    }
    if let Some(currency) = given(order.currency.as_ref())
        && currency != "CNY"
    {
        return Err(format!("currency {currency:?} is not supported"));
    }
    let amount_fen = given(order.amount.as_ref())
        .map(|text| {
            money::parse_yuan(text).ok_or_else(|| format!("amount is not a yuan amount: {text:?}"))
        })
        .transpose()?;
    if action.needs_amount() && amount_fen.is_none_or(|fen| fen <= 0) {
        return Err(format!("{} needs an amount above zero", order.action));
    }
    let start_date = iso_date("start_date", order.start_date.as_ref())?;
    let end_date = iso_date("end_date", order.end_date.as_ref())?;
    if action.needs_term() && (start_date.is_none() || end_date.is_none()) {
        return Err(format!("{} needs start_date and end_date", order.action));
    }
    let prior_request_number = given(order.prior_request_number.as_ref()).map(str::to_owned);
    if action.needs_prior() && prior_request_number.is_none() {
        return Err(format!("{} needs prior_request_number", order.action));
    }
    Ok(ControlRequest {
        request_number: order.request_number,
        action,
        case_number: order.case_number,
        court_name: order.court.name,
        holder_id: ids::normalise_id(&order.subject.id_number),
        prior_request_number,
        items: vec![ControlItem {
            target: order.account_number,
            amount: amount_fen,
            start_date,
            end_date,
        }],
        documents: order
            .documents
            .into_iter()
            .map(|d| control::Document {
                number: d.number,
                sha256: d.sha256,
            })
            .collect(),
    })
}

async fn control(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let request = match read_control(&body) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable control order");
            return json_reply(
                mode,
                StatusCode::BAD_REQUEST,
                &error_body("INVALID_REQUEST", &reason),
            );
        }
    };
    let rn = request.request_number.as_str();
    let (results, acknowledged) = if mode == FaultMode::Refuse {
        (control::refusal(&request, MAINTENANCE), Vec::new())
    } else {
        agency.record(rn, RequestKind::Control, Some(&request.holder_id));
        tracing::info!(
            agency = agency.id(),
            request_number = %rn,
            action = ?request.action,
            subject = %ids::mask(&request.holder_id),
            "control order"
        );
        let outcome = agency.control(&request);
        (outcome.results, outcome.acknowledged)
    };
    json_reply(
        mode,
        StatusCode::OK,
        &control_body(rn, results.first(), &acknowledged),
    )
}

async fn control_status(
    State(agency): State<Arc<Agency>>,
    Path(request_number): Path<String>,
) -> Response {
    let mode = agency.mode();
    let rn = request_number.as_str();
    if mode == FaultMode::Refuse {
        let mut body = control_body(rn, None, &[]);
        body["state"] = "NOT_CONTROLLED".into();
        body["reason"] = MAINTENANCE.into();
        return json_reply(mode, StatusCode::OK, &body);
    }
    let outcome = agency.control_status(rn);
    agency.record(
        rn,
        RequestKind::ControlQuery,
        outcome.as_ref().map(|o| o.holder_id.as_str()),
    );
    let (result, acknowledged) = match outcome {
        Some(o) => (o.results.into_iter().next(), o.acknowledged),
        None => (None, Vec::new()),
    };
    json_reply(
        mode,
        StatusCode::OK,
        &control_body(rn, result.as_ref(), &acknowledged),
    )
}

/// An order's state; `None` is the answer about an unknown request number.
/// `documents_received` lists the acknowledged documents (empty: none).
fn control_body(
    request_number: &str,
    result: Option<&ItemResult>,
    acknowledged: &[control::Document],
) -> Value {
    let documents_received: Vec<Value> = acknowledged
        .iter()
        .map(|d| json!({"number": d.number, "sha256": d.sha256}))
        .collect();
    let Some(r) = result else {
        return json!({
            "request_number": request_number,
            "state": "UNKNOWN",
            "controlled_amount": "0.00",
            "uncontrolled_amount": "0.00",
            "reason": "no such control order",
            "queue_position": null,
            "start_date": null,
            "end_date": null,
            "hold_id": null,
            "documents_received": documents_received,
        });
    };
    let state = match r.state {
        ControlState::InForce => "IN_FORCE",
        ControlState::NotControlled => "NOT_CONTROLLED",
        ControlState::Waiting => "QUEUED",
        ControlState::Released => "RELEASED",
        ControlState::Lapsed => "LAPSED",
    };
    let iso = |d: Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    json!({
        "request_number": request_number,
        "state": state,
        "controlled_amount": money::yuan(r.controlled),
        "uncontrolled_amount": money::yuan(r.shortfall),
        "reason": (!r.reason.is_empty()).then_some(&r.reason),
        "queue_position": (r.queue_position > 0).then_some(r.queue_position),
        "start_date": iso(r.start_date),
        "end_date": iso(r.end_date),
        "hold_id": (!r.measure_number.is_empty()).then_some(&r.measure_number),
        "documents_received": documents_received,
    })
}
