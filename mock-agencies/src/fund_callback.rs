//! The `fund-callback` housing provident fund centre (fund-f): JSON, one
//! subject per request, the result pushed back. `POST
//! /gjj/api/v1/court-queries` takes the court's query with the address to
//! push the result to (`notify_url`, http or https) and acknowledges it at
//! once (`code` `ACCEPTED` with a ticket, `GJJ-…`), or refuses it
//! (`REJECTED` with the reason in `message`; an unreadable one with HTTP
//! 400). The result, settled at intake, is pushed `result_delay_ms` later
//! (`result_push`: up to three attempts, each in the ledger, with the
//! centre's bearer token): `status` `FOUND` with the accounts (balance and
//! available in yuan, `state` `NORMAL|SEALED|CLOSED`, `withdrawable`, the
//! freezes standing on it), `NONE` or `REFUSED`. A request number asked
//! again gets the same acknowledgement and is pushed once.
//!
//! Control orders are answered at once, nothing pushed:
//! `POST /gjj/api/v1/court-controls` freezes, renews, releases or deducts
//! (amounts in yuan) on one account and answers its `status` (`EFFECTIVE`,
//! `REFUSED`, `QUEUED`, `RELEASED`, `LAPSED`), what was controlled and not,
//! and the documents received. A deduction from an account not eligible
//! for withdrawal is `REFUSED` (`账户未满足提取条件，不能划拨`).
//! `GET /gjj/api/v1/court-controls/{control_no}` is the status query,
//! `UNKNOWN` for a number never received. An unacceptable order is
//! `REJECTED` (an unreadable one HTTP 400, `BAD_REQUEST`), not taken in.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use reqwest::Url;
use serde_json::{Map, Value, json};

use crate::agency::{Agency, json_reply, json_text};
use crate::control::{
    Action, ControlItem, ControlOutcome, ControlRequest, ControlState, check_officers, given,
    read_date, read_documents,
};
use crate::faults::FaultMode;
use crate::further_book::FundAccount;
use crate::ledger::{Answer, Outcome};
use crate::{ids, money, result_push};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/gjj/api/v1/court-queries", post(submit))
        .route("/gjj/api/v1/court-controls", post(control))
        .route(
            "/gjj/api/v1/court-controls/{control_no}",
            get(control_status),
        )
}

/// One query, as far as the centre cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub request_number: String,
    pub id_type: String,
    pub id_number: String,
    pub notify_url: Url,
}

fn text_field<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("{field} 为空"))
}

fn object_field<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a Map<String, Value>, String> {
    object
        .get(field)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{field} 须为对象"))
}

/// Reads a query; `Err` is why it is unreadable.
pub(crate) fn read_query(body: &[u8]) -> Result<Query, String> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err("请求须为 JSON 对象".into()),
        Err(e) => return Err(format!("请求格式错误：{e}")),
    };
    text_field(&object, "case_no")?;
    let court = object_field(&object, "court")?;
    for field in ["code", "name"] {
        text_field(court, field)?;
    }
    let holder = object_field(&object, "holder")?;
    text_field(holder, "name")?;
    let officers = object
        .get("officers")
        .and_then(Value::as_array)
        .filter(|o| !o.is_empty())
        .ok_or("officers 为空")?;
    for officer in officers {
        let officer = officer.as_object().ok_or("officers 的每项须为对象")?;
        for field in ["name", "work_card_no", "credential_no"] {
            text_field(officer, field)?;
        }
    }
    let notify = text_field(&object, "notify_url")?;
    let notify_url = result_push::callback_url(notify, true)
        .ok_or_else(|| format!("notify_url 不是有效的 http(s) 地址：{notify}"))?;
    Ok(Query {
        request_number: text_field(&object, "query_no")?.to_owned(),
        id_type: text_field(holder, "id_type")?.to_owned(),
        id_number: text_field(holder, "id_no")?.to_owned(),
        notify_url,
    })
}

/// Why a readable query is refused, if it is. An organisation is asked
/// about like a person (its accounts would be its employees': it holds
/// none, and is answered `NONE`).
fn refusal_for(query: &Query) -> Option<String> {
    let len = query.id_number.chars().count();
    match query.id_type.as_str() {
        "ID_CARD" if len == 18 || len == 15 => None,
        "USCC" if len == 18 => None,
        "ID_CARD" | "USCC" => Some(format!("证件号码长度错误（{len}位）")),
        other => Some(format!("不支持的证件类型：{other}")),
    }
}

async fn submit(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let query = match read_query(&body) {
        Ok(query) => query,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable query");
            let rn = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("query_no").and_then(Value::as_str).map(str::to_owned));
            return json_reply(
                mode,
                StatusCode::BAD_REQUEST,
                &json!({"query_no": rn, "code": "BAD_REQUEST", "message": reason}),
            );
        }
    };
    let rn = query.request_number.as_str();
    let answer = agency.take_inquiry(mode, rn, &query.id_number, refusal_for(&query));
    // Only an accepted query has a result to push.
    result_push::schedule(&agency, rn, &answer, query.notify_url.clone(), pushed);
    let body = match (&answer.ticket, &answer.outcome) {
        (Some(ticket), _) => json!({
            "query_no": rn, "code": "ACCEPTED", "ticket": format!("GJJ-{}", ticket.number),
        }),
        (None, Outcome::Refused(reason)) => {
            json!({"query_no": rn, "code": "REJECTED", "message": reason})
        }
        (None, _) => json!({"query_no": rn, "code": "REJECTED", "message": "未受理"}),
    };
    json_reply(mode, StatusCode::OK, &body)
}

/// The body of the result push.
pub(crate) fn pushed(_: &Agency, rn: &str, answer: &Answer) -> Value {
    match &answer.outcome {
        Outcome::Found(found) => json!({
            "query_no": rn,
            "status": "FOUND",
            "accounts": found.fund_accounts().iter().map(account).collect::<Vec<_>>(),
        }),
        Outcome::NotFound => json!({"query_no": rn, "status": "NONE", "accounts": []}),
        Outcome::Refused(reason) => json!({"query_no": rn, "status": "REFUSED", "message": reason}),
    }
}

fn account(a: &FundAccount) -> Value {
    let freezes: Vec<Value> = a
        .freezes
        .iter()
        .map(|m| {
            let mut v = json!({
                "court": m.authority,
                "document_no": m.document_number,
                "amount": money::yuan(m.amount_fen.unwrap_or(0)),
                "queued": !m.in_force(),
            });
            if let Some(end) = m.end_date {
                v["until"] = end.format("%Y-%m-%d").to_string().into();
            }
            v
        })
        .collect();
    json!({
        "account_no": a.account_no,
        "balance": money::yuan(a.balance_fen),
        "available": money::yuan(a.available_fen()),
        "state": a.state.wire_code(),
        "withdrawable": a.withdrawable,
        "freezes": freezes,
    })
}

// Control orders ------------------------------------------------------------

/// Why a control order is not taken: unreadable (HTTP 400), or readable
/// but unacceptable (`REJECTED`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ControlRejection {
    Unreadable(String),
    Refused(String),
}

/// Reads a control order.
pub(crate) fn read_control(body: &[u8]) -> Result<ControlRequest, ControlRejection> {
    use ControlRejection::{Refused, Unreadable};
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(Unreadable("请求须为 JSON 对象".into())),
        Err(e) => return Err(Unreadable(format!("请求格式错误：{e}"))),
    };
    let request_number = text_field(&object, "control_no").map_err(Unreadable)?;
    let court = object_field(&object, "court").map_err(Refused)?;
    text_field(court, "code").map_err(Refused)?;
    let holder = object_field(&object, "holder").map_err(Refused)?;
    text_field(holder, "name").map_err(Refused)?;
    let id_type = text_field(holder, "id_type").map_err(Refused)?;
    if !matches!(id_type, "ID_CARD" | "USCC") {
        return Err(Refused(format!("不支持的证件类型：{id_type}")));
    }
    let list = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let officers: Vec<[&str; 3]> = list("officers")
        .iter()
        .map(|o| ["name", "work_card_no", "credential_no"].map(|f| json_text(o, f)))
        .collect();
    check_officers(&officers).map_err(Refused)?;
    let documents: Vec<(&str, &str, &str)> = list("documents")
        .iter()
        .map(|d| {
            (
                json_text(d, "type"),
                json_text(d, "number"),
                json_text(d, "sha256"),
            )
        })
        .collect();
    let word = text_field(&object, "action").map_err(Refused)?;
    let action =
        Action::from_word(word).ok_or_else(|| Refused(format!("不支持的控制措施：{word}")))?;
    let amount = given(object.get("amount").and_then(Value::as_str))
        .map(|yuan| {
            money::parse_yuan(yuan).ok_or_else(|| Refused(format!("amount 不是金额：{yuan}")))
        })
        .transpose()?;
    let date = |field: &str| {
        read_date(field, object.get(field).and_then(Value::as_str), "%Y-%m-%d").map_err(Refused)
    };
    let request = ControlRequest {
        request_number: request_number.to_owned(),
        action,
        case_number: text_field(&object, "case_no").map_err(Refused)?.to_owned(),
        court_name: text_field(court, "name").map_err(Refused)?.to_owned(),
        holder_id: ids::normalise_id(text_field(holder, "id_no").map_err(Refused)?),
        prior_request_number: given(object.get("prior_control_no").and_then(Value::as_str))
            .map(str::to_owned),
        items: vec![ControlItem {
            target: text_field(&object, "account_no")
                .map_err(Refused)?
                .to_owned(),
            amount,
            start_date: date("start_date")?,
            end_date: date("end_date")?,
        }],
        documents: read_documents(&documents, "RULING", "ASSIST_NOTICE").map_err(Refused)?,
    };
    request.check_needs(true).map_err(Refused)?;
    Ok(request)
}

/// A control order, decided and answered at once.
async fn control(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let request = match read_control(&body) {
        Ok(request) => request,
        Err(rejection) => {
            let (status, code, reason) = match rejection {
                ControlRejection::Unreadable(r) => (StatusCode::BAD_REQUEST, "BAD_REQUEST", r),
                ControlRejection::Refused(r) => (StatusCode::OK, "REJECTED", r),
            };
            tracing::info!(agency = agency.id(), %reason, "control order not taken");
            let rn = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                v.get("control_no")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            return json_reply(
                mode,
                status,
                &json!({"control_no": rn, "code": code, "message": reason}),
            );
        }
    };
    let outcome = agency.take_control(mode, &request);
    json_reply(
        mode,
        StatusCode::OK,
        &control_body(&request.request_number, Some(&outcome)),
    )
}

/// The status query: the order as it stands now.
async fn control_status(
    State(agency): State<Arc<Agency>>,
    Path(request_number): Path<String>,
) -> Response {
    let mode = agency.mode();
    let outcome = agency.query_control(mode, &request_number);
    json_reply(
        mode,
        StatusCode::OK,
        &control_body(&request_number, outcome.as_ref()),
    )
}

/// `status`: `EFFECTIVE` (in force, or the renewal, release or deduction
/// made), `REFUSED`, `QUEUED`, `RELEASED`, `LAPSED`.
fn status_word(state: ControlState) -> &'static str {
    match state {
        ControlState::InForce => "EFFECTIVE",
        ControlState::NotControlled => "REFUSED",
        ControlState::Waiting => "QUEUED",
        ControlState::Released => "RELEASED",
        ControlState::Lapsed => "LAPSED",
    }
}

/// The answer about an order; `None`: a number never received (`UNKNOWN`).
pub(crate) fn control_body(rn: &str, outcome: Option<&ControlOutcome>) -> Value {
    let Some((outcome, r)) = outcome.and_then(|o| Some((o, o.results.first()?))) else {
        return json!({
            "control_no": rn, "code": "OK", "status": "UNKNOWN",
            "message": "无此控制请求", "documents": [],
        });
    };
    let iso = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    let documents: Vec<Value> = outcome
        .acknowledged
        .iter()
        .map(|d| json!({"number": d.number, "sha256": d.sha256}))
        .collect();
    json!({
        "control_no": rn,
        "code": "OK",
        "status": status_word(r.state),
        "account_no": r.target,
        "amount": money::yuan(r.controlled),
        "shortfall": money::yuan(r.shortfall),
        "queue_no": r.queue_position,
        "start_date": iso(r.start_date),
        "end_date": iso(r.end_date),
        "freeze_no": (!r.measure_number.is_empty()).then_some(&r.measure_number),
        "message": (!r.reason.is_empty()).then_some(&r.reason),
        "documents": documents,
    })
}

/// An injected error (`ERROR` 系统繁忙) or throttling (429), nothing
/// processed.
pub(crate) fn fault_reply(status: StatusCode) -> Response {
    let message = if status == StatusCode::TOO_MANY_REQUESTS {
        "请求过于频繁，请稍后重试"
    } else {
        "系统繁忙，请稍后重试"
    };
    json_reply(
        FaultMode::Normal,
        status,
        &json!({"code": "ERROR", "message": message}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packs_request_is_read_with_its_callback_address() {
        let path = format!(
            "{}/../config/conformance/fund-callback/submit.request.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(path).expect("the pack is there");
        let query = read_query(&body).expect("readable");
        assert_eq!(query.request_number, "Q1-fund-centre");
        assert_eq!(query.id_type, "ID_CARD");
        assert_eq!(query.id_number, "360426199101010071");
        assert_eq!(
            query.notify_url.as_str(),
            "https://gateway.example/v1/callbacks/fund-callback"
        );
        assert_eq!(refusal_for(&query), None);
        let without = String::from_utf8_lossy(&body).replace("https://gateway.example", "ftp://x");
        assert!(read_query(without.as_bytes()).is_err());
    }
}
