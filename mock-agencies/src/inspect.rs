//! The inspection API every mock agency serves beside its dialect, for tests
//! and curious humans: `GET /_mock/ledger[?holder=ID]` shows what the agency
//! holds and every request number it received; `GET/POST /_mock/faults`
//! reads or changes injected latency and misbehaviour. Not part of any
//! agency's real interface: faults and latency never apply here.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::{Router, body::Bytes};
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
    match &agency.holdings {
        Holdings::Bank(book) => {
            let accounts: Vec<Value> = book
                .accounts()
                .iter()
                .filter(|a| wanted(&a.holder_id))
                .map(|a| account(agency.spec.dialect, a))
                .collect();
            body["accounts"] = accounts.into();
        }
        Holdings::Registry(book) => {
            let units: Vec<Value> = book
                .units()
                .iter()
                .filter(|u| u.owners.iter().any(|o| wanted(&o.id_number)))
                .map(unit)
                .collect();
            body["units"] = units.into();
        }
    }
    let requests: Vec<Value> = agency
        .state()
        .requests()
        .iter()
        .filter(|r| holder.is_none() || r.holder_id.as_deref().is_some_and(&wanted))
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    body["requests"] = requests.into();
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
    let measures: Vec<Value> = a
        .measures
        .iter()
        .map(|m| {
            json!({
                "authority": m.authority,
                "document_number": m.document_number,
                "amount_fen": m.amount_fen,
                "end_date": m.end_date,
                "waiting": m.waiting,
            })
        })
        .collect();
    json!({
        "account_number": a.account_number,
        "holder_id": a.holder_id,
        "holder_name": a.holder_name,
        "account_type": account_type,
        "currency": a.currency,
        "balance_fen": a.balance_fen,
        "available_fen": a.available_fen,
        "branch": a.branch,
        "measures": measures,
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
        "seals": u.seals.iter().map(|s| json!({
            "authority": s.authority,
            "document_number": s.document_number,
            "start_date": s.start_date,
            "end_date": s.end_date,
            "queue_position": s.queue_position,
        })).collect::<Vec<_>>(),
    })
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
        Err(e) => {
            let error = json!({"error": {"code": "INVALID_REQUEST", "message": e.to_string()}});
            return (StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
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
