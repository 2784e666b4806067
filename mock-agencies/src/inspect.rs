//! The inspection API every mock agency serves beside its dialect, for tests
//! and curious humans: `GET /_mock/ledger[?holder=ID]` shows what the agency
//! holds (as control orders left it), every request number it received, the
//! control orders it decided and the money deductions moved;
//! `GET/POST /_mock/faults` reads or changes injected latency and
//! misbehaviour; `GET/POST /_mock/clock` reads or sets the mock's today
//! (what measures lapse by); `POST /_mock/lift` has another authority lift
//! its standing measure or seal. Not part of any agency's real interface:
//! faults and latency never apply here.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::{Router, body::Bytes};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agency::{Agency, Holdings};
use crate::bank_book::Account;
use crate::config::MockDialect;
use crate::ids;
use crate::ledger::FaultMode;
use crate::registry_book::Unit;

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/_mock/ledger", get(ledger))
        .route("/_mock/faults", get(faults).post(set_faults))
        .route("/_mock/clock", get(clock).post(set_clock))
        .route("/_mock/lift", post(lift))
}

fn bad_request(message: &str) -> Response {
    let error = json!({"error": {"code": "INVALID_REQUEST", "message": message}});
    (StatusCode::BAD_REQUEST, Json(error)).into_response()
}

#[derive(Deserialize)]
struct LedgerQuery {
    holder: Option<String>,
}

async fn ledger(State(agency): State<Arc<Agency>>, Query(q): Query<LedgerQuery>) -> Json<Value> {
    let holder = q.holder.as_deref().map(ids::normalise_id);
    let wanted = |id: &str| holder.as_deref().is_none_or(|h| h == id);
    let mut body = json!({
        "agency": agency.id(),
        "name": agency.spec.display_name(),
        "dialect": agency.spec.dialect.as_str(),
    });
    // One look at the state: lapses first, then everything as it stands.
    let mut state = agency.state();
    let today = state.control.today();
    state.control.sweep(today);
    let control = &state.control;
    match &agency.holdings {
        Holdings::Bank(book) => {
            let accounts: Vec<Value> = book
                .accounts()
                .iter()
                .enumerate()
                .filter(|(_, a)| wanted(&a.holder_id))
                .map(|(position, a)| {
                    let mut v = account(agency.spec.dialect, &control.account_view(position, a));
                    v["measures"] = control.ledger_measures(&agency.holdings, position).into();
                    v
                })
                .collect();
            body["accounts"] = accounts.into();
        }
        Holdings::Registry(book) => {
            let units: Vec<Value> = book
                .units()
                .iter()
                .enumerate()
                .filter(|(_, u)| u.owners.iter().any(|o| wanted(&o.id_number)))
                .map(|(position, u)| {
                    let mut v = unit(u);
                    v["seals"] = control.ledger_measures(&agency.holdings, position).into();
                    v
                })
                .collect();
            body["units"] = units.into();
        }
    }
    let requests: Vec<Value> = state
        .requests()
        .iter()
        .filter(|r| holder.is_none() || r.holder_id.as_deref().is_some_and(&wanted))
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    body["requests"] = requests.into();
    body["controls"] = control.ledger_controls(wanted).into();
    let transfers: Vec<Value> = control
        .transfers()
        .iter()
        .filter(|t| wanted(&t.holder_id))
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    body["transfers"] = transfers.into();
    body["today"] = today.to_string().into();
    Json(body)
}

/// An account as the ledger shows it; `account_type` in the words of the
/// agency's own dialect, so it compares directly with what the wire said.
fn account(dialect: MockDialect, a: &Account) -> Value {
    let account_type = match dialect {
        MockDialect::CourtBankXml => a.kind.xml_label(),
        MockDialect::IsoBankXml => a.kind.iso_code(),
        MockDialect::BankJson | MockDialect::RegistryJson => a.kind.json_product(),
    };
    json!({
        "account_number": a.account_number,
        "holder_id": a.holder_id,
        "holder_name": a.holder_name,
        "account_type": account_type,
        "currency": a.currency,
        "balance_fen": a.balance_fen,
        "available_fen": a.available_fen,
        "branch": a.branch,
    })
}

fn unit(u: &Unit) -> Value {
    let first = u.owners.first();
    json!({
        "unit_number": u.unit_number,
        "certificate_number": u.certificate_number,
        "holder_id": first.map(|o| o.id_number.as_str()),
        "holder_name": first.map(|o| o.name.as_str()),
        "location": u.location,
        "area_centi_m2": u.area_centi_m2,
        "use": u.usage,
        "mortgaged": u.mortgaged,
        "owners": u.owners.iter().map(|o| json!({
            "name": o.name, "id_number": o.id_number, "share": o.share,
        })).collect::<Vec<_>>(),
    })
}

/// `{"today": "YYYY-MM-DD", "overridden": bool}`.
fn clock_body(agency: &Agency) -> Value {
    let state = agency.state();
    json!({
        "today": state.control.today().to_string(),
        "overridden": state.control.clock_overridden(),
    })
}

async fn clock(State(agency): State<Arc<Agency>>) -> Json<Value> {
    Json(clock_body(&agency))
}

/// `{"today": "2027-12-01"}` sets the mock's today; `{"today": null}` goes
/// back to the real civil date in UTC+8.
async fn set_clock(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let today = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) if map.len() == 1 => match map.get("today") {
            Some(Value::Null) => None,
            Some(Value::String(text)) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(date) => Some(date),
                Err(_) => return bad_request(&format!("today is not a date YYYY-MM-DD: {text:?}")),
            },
            _ => return bad_request(r#"expected {"today": "YYYY-MM-DD"} or {"today": null}"#),
        },
        _ => return bad_request(r#"expected {"today": "YYYY-MM-DD"} or {"today": null}"#),
    };
    agency.state().control.set_today(today);
    tracing::info!(agency = agency.id(), ?today, "mock clock set");
    Json(clock_body(&agency)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiftRequest {
    account_number: Option<String>,
    unit_number: Option<String>,
    document_number: String,
}

/// Another authority lifts its standing measure (bank: by account number)
/// or seal (registry: by unit number); the first in line takes effect.
async fn lift(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let request: LiftRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad_request(&e.to_string()),
    };
    let target = match (
        &agency.holdings,
        request.account_number,
        request.unit_number,
    ) {
        (Holdings::Bank(_), Some(account), None) => account,
        (Holdings::Registry(_), None, Some(unit)) => unit,
        (Holdings::Bank(_), _, _) => return bad_request("a bank lifts by account_number alone"),
        (Holdings::Registry(_), _, _) => {
            return bad_request("a registry lifts by unit_number alone");
        }
    };
    let lifted = {
        let mut state = agency.state();
        let today = state.control.today();
        state.control.sweep(today);
        state
            .control
            .lift(&agency.holdings, &target, &request.document_number)
    };
    match lifted {
        Ok(lifted) => {
            tracing::info!(agency = agency.id(), document_number = %lifted.document_number, "standing measure lifted");
            Json(json!({
                "target": target,
                "authority": lifted.authority,
                "document_number": lifted.document_number,
                "promoted": lifted.promoted,
            }))
            .into_response()
        }
        Err(message) => {
            let error = json!({"error": {"code": "NOT_FOUND", "message": message}});
            (StatusCode::NOT_FOUND, Json(error)).into_response()
        }
    }
}

async fn faults(State(agency): State<Arc<Agency>>) -> Json<Value> {
    Json(json!(agency.faults()))
}

/// Fields left out keep their current value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsChange {
    latency_ms: Option<u64>,
    mode: Option<FaultMode>,
    result_delay_ms: Option<u64>,
}

async fn set_faults(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let change: FaultsChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(e) => return bad_request(&e.to_string()),
    };
    let now = {
        let mut state = agency.state();
        if let Some(latency_ms) = change.latency_ms {
            state.faults.latency_ms = latency_ms;
        }
        if let Some(mode) = change.mode {
            state.faults.mode = mode;
        }
        if let Some(delay) = change.result_delay_ms {
            state.faults.result_delay_ms = delay;
        }
        state.faults
    };
    tracing::info!(agency = agency.id(), latency_ms = now.latency_ms, mode = ?now.mode, "faults changed");
    Json(json!(now)).into_response()
}
