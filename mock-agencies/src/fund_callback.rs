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
//! again gets the same acknowledgement and is pushed once. Inquiries only.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use reqwest::Url;
use serde_json::{Map, Value, json};

use crate::agency::{Agency, json_reply};
use crate::faults::FaultMode;
use crate::further_book::FundAccount;
use crate::ledger::{Answer, Outcome};
use crate::{money, result_push};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new().route("/gjj/api/v1/court-queries", post(submit))
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
