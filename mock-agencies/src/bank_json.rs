//! The `bank-json` bank (bank-b): `POST /api/v1/asset-inquiries`, one
//! subject per call, UTF-8 JSON, outcome `FOUND` / `NOT_FOUND` / `REJECTED`,
//! errors as `{"error": {"code", "message"}}` (docs/wire-formats.md).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agency::{Agency, Holdings, json_reply};
use crate::bank_book::Account;
use crate::ledger::{Answer, FaultMode, Outcome, RequestKind};
use crate::{ids, money};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new().route("/api/v1/asset-inquiries", post(inquiry))
}

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

async fn inquiry(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.arrive().await;
    if mode == FaultMode::Error {
        return json_reply(
            mode,
            StatusCode::SERVICE_UNAVAILABLE,
            &error_body(
                "SERVICE_UNAVAILABLE",
                "the bank's system is busy, retry later",
            ),
        );
    }
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
    let holder = ids::normalise_id(&request.subject.id_number);
    agency.record(&request.request_number, RequestKind::Inquiry, Some(&holder));
    tracing::info!(
        agency = agency.id(),
        request_number = %request.request_number,
        subject = %ids::mask(&holder),
        "inquiry"
    );
    let answer = if mode == FaultMode::Refuse {
        Agency::injected_refusal(&holder)
    } else {
        agency.answer(
            &request.request_number,
            &holder,
            refusal_for(&request.subject),
        )
    };
    json_reply(
        mode,
        StatusCode::OK,
        &reply(&agency, &request.request_number, &answer),
    )
}

fn reply(agency: &Agency, request_number: &str, answer: &Answer) -> Value {
    let (outcome, reason, positions): (&str, Option<&str>, &[usize]) = match &answer.outcome {
        Outcome::Found(p) => ("FOUND", None, p),
        Outcome::NotFound => ("NOT_FOUND", None, &[]),
        Outcome::Refused(reason) => ("REJECTED", Some(reason), &[]),
    };
    let accounts: Vec<Value> = match &agency.holdings {
        Holdings::Bank(book) => positions
            .iter()
            .filter_map(|&p| book.get(p))
            .map(account)
            .collect(),
        Holdings::Registry(_) => Vec::new(),
    };
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
