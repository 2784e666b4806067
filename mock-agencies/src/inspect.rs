//! The inspection API every mock agency serves beside its dialect, for tests
//! and curious humans: `GET /_mock/ledger[?holder=ID]` shows what the agency
//! holds (as control orders left it), every request number it received, the
//! control orders it decided and the money deductions moved;
//! `GET/POST /_mock/faults` reads or changes injected latency and
//! misbehaviour (see `fault_layer`); `GET/POST /_mock/clock` reads or sets the mock's today
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
use crate::control::{AssetKind, securities_target};
use crate::fault_layer::Faults;
use crate::faults::{self, FaultMode, LatencyDistribution, Rate};
use crate::ids;
use crate::registry_book::Unit;

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/_mock/ledger", get(ledger))
        .route("/_mock/faults", get(faults).post(set_faults))
        .route("/_mock/clock", get(clock).post(set_clock))
        .route("/_mock/lift", post(lift))
}

pub(crate) fn bad_request(message: &str) -> Response {
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
    let holdings = &agency.holdings;
    match holdings {
        Holdings::Bank(book) => {
            let accounts: Vec<Value> = book
                .accounts()
                .iter()
                .enumerate()
                .filter(|(_, a)| wanted(&a.holder_id))
                .map(|(position, a)| {
                    let mut v = account(agency.spec.dialect, &control.account_view(position, a));
                    v["measures"] = control.ledger_measures(holdings, position).into();
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
                    v["seals"] = control.ledger_measures(holdings, position).into();
                    v
                })
                .collect();
            body["units"] = units.into();
        }
        Holdings::Further(book) => {
            // The records as they stand now, each with every measure on it.
            let positions = book.positions_where(wanted);
            let (key, measures_key, mut records) = control.further_view(book, &positions).ledger();
            for (record, &position) in records.iter_mut().zip(&positions) {
                record[measures_key] = control.ledger_measures(holdings, position).into();
            }
            body[key] = records.into();
        }
    }
    let requests: Vec<Value> = state
        .requests()
        .iter()
        .filter(|r| holder.is_none() || r.holder_id.as_deref().is_some_and(&wanted))
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    body["requests"] = requests.into();
    body["controls"] = control
        .ledger_controls(AssetKind::of(holdings), wanted)
        .into();
    let transfers: Vec<Value> = control
        .transfers()
        .iter()
        .filter(|t| wanted(&t.holder_id))
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    body["transfers"] = transfers.into();
    body["today"] = today.to_string().into();
    body["injected"] = state.engine.tally();
    Json(body)
}

/// An account as the ledger shows it; `account_type` in the words of the
/// agency's own dialect, so it compares directly with what the wire said.
fn account(dialect: MockDialect, a: &Account) -> Value {
    let account_type = match dialect {
        MockDialect::CourtBankXml => a.kind.xml_label(),
        MockDialect::IsoBankXml => a.kind.iso_code(),
        _ => a.kind.json_product(),
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

/// `POST /_mock/lift`: the asset by its kind's fields (as control orders
/// name it), and the standing measure's document number.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiftRequest {
    account_number: Option<String>,
    unit_number: Option<String>,
    vin: Option<String>,
    securities_account: Option<String>,
    security_code: Option<String>,
    payment_account: Option<String>,
    fund_account: Option<String>,
    company_credit_code: Option<String>,
    document_number: String,
}

impl LiftRequest {
    /// The key of the asset an agency of `kind` lifts on, when the request
    /// names it by that kind's fields alone.
    fn target(&self, kind: AssetKind) -> Result<String, String> {
        let given = [
            ("account_number", &self.account_number),
            ("unit_number", &self.unit_number),
            ("vin", &self.vin),
            ("securities_account", &self.securities_account),
            ("security_code", &self.security_code),
            ("payment_account", &self.payment_account),
            ("fund_account", &self.fund_account),
            ("company_credit_code", &self.company_credit_code),
        ];
        let wanted: &[&str] = match kind {
            AssetKind::BankAccount => &["account_number"],
            AssetKind::RealEstate => &["unit_number"],
            AssetKind::Vehicle => &["vin"],
            AssetKind::Securities => &["securities_account", "security_code"],
            AssetKind::PaymentAccount => &["payment_account"],
            AssetKind::ProvidentFund => &["fund_account"],
            AssetKind::Equity => &["company_credit_code"],
        };
        let named: Vec<&str> = given
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        if named != wanted {
            return Err(format!(
                "this agency lifts by {} alone",
                wanted.join(" and ")
            ));
        }
        let value = |name: &str| {
            given
                .iter()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.as_deref())
                .unwrap_or_default()
        };
        Ok(match kind {
            AssetKind::Securities => {
                securities_target(value("securities_account"), value("security_code"))
            }
            _ => value(wanted.first().copied().unwrap_or_default()).to_owned(),
        })
    }
}

/// Another authority lifts its standing measure on an asset (named by its
/// kind's fields: a bank's account number, a registry's unit number, a
/// VIN ...); the first in line takes effect.
async fn lift(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let request: LiftRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad_request(&e.to_string()),
    };
    let target = match request.target(AssetKind::of(&agency.holdings)) {
        Ok(target) => target,
        Err(e) => return bad_request(&e),
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

#[derive(Deserialize)]
struct FaultsQuery {
    #[serde(default)]
    all: bool,
}

/// The faults in force; with `?all=true` every field, off ones included.
async fn faults(State(agency): State<Arc<Agency>>, Query(q): Query<FaultsQuery>) -> Json<Value> {
    Json(agency.faults().view(q.all))
}

/// A change of faults: fields left out keep their current value; `latency`
/// and `seed` take `null` (no distribution; the seed derived from the id).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultsChange {
    latency_ms: Option<u64>,
    mode: Option<FaultMode>,
    result_delay_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    seed: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    latency: Option<Option<LatencyDistribution>>,
    error_rate: Option<Rate>,
    error_status: Option<u16>,
    reset_rate: Option<Rate>,
    malformed_rate: Option<Rate>,
    garbage_rate: Option<Rate>,
    wrong_encoding: Option<bool>,
    oversize_bytes: Option<u64>,
    trickle_ms_per_byte: Option<u64>,
    rate_limit_per_second: Option<u32>,
    throttle_rate: Option<Rate>,
}

/// A field given, possibly as `null`: `Some(None)`; left out: `None` (by
/// `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl FaultsChange {
    /// Reads a change from a request body; `Err` is why it is refused.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }

    /// `faults` with the change made, or every reason it cannot be.
    fn applied_to(&self, faults: &Faults) -> Result<Faults, String> {
        let mut new = *faults;
        let c = &mut new.config;
        macro_rules! set {
            ($($field:ident => $target:expr),* $(,)?) => {
                $(if let Some(value) = self.$field {
                    $target = value;
                })*
            };
        }
        set! {
            latency_ms => new.latency_ms,
            result_delay_ms => new.result_delay_ms,
            mode => c.mode,
            seed => c.seed,
            latency => c.latency,
            error_rate => c.error_rate,
            error_status => c.error_status,
            reset_rate => c.reset_rate,
            malformed_rate => c.malformed_rate,
            garbage_rate => c.garbage_rate,
            wrong_encoding => c.wrong_encoding,
            oversize_bytes => c.oversize_bytes,
            trickle_ms_per_byte => c.trickle_ms_per_byte,
            rate_limit_per_second => c.rate_limit_per_second,
            throttle_rate => c.throttle_rate,
        }
        let problems = new.config.problems();
        if problems.is_empty() {
            Ok(new)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Makes the change at `agency`; a seed given (even the same) starts
    /// its generator again, from `seed` mixed with the agency's id when
    /// `mix_seed` (a change made to a whole fleet of banks at once).
    pub(crate) fn apply(&self, agency: &Agency, mix_seed: bool) -> Result<Faults, String> {
        let mut state = agency.state();
        let mut new = self.applied_to(&state.faults)?;
        if let Some(seed) = self.seed {
            let own = faults::default_seed(agency.id());
            let seed = match seed {
                Some(seed) if mix_seed => {
                    let mixed = seed ^ own;
                    new.config.seed = Some(mixed);
                    mixed
                }
                Some(seed) => seed,
                None => own,
            };
            state.engine.reseed(seed);
        }
        state.faults = new;
        Ok(new)
    }
}

async fn set_faults(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let change = match FaultsChange::parse(&body) {
        Ok(change) => change,
        Err(e) => return bad_request(&e),
    };
    match change.apply(&agency, false) {
        Ok(now) => {
            tracing::info!(agency = agency.id(), faults = ?now, "faults changed");
            Json(now.view(false)).into_response()
        }
        Err(e) => bad_request(&e),
    }
}
