//! The `payment-json` payment platform (payment-p): JSON, one subject per
//! call, answered at once, every message signed (`signing`).
//! `POST /pay/v1/court/account-query` takes the court's query with its
//! `timestamp`, `nonce` and `sign`; a query whose signature is missing or
//! does not verify under the platform's key is refused (`result`
//! `REJECTED` with the reason in `message`), and so is one that is
//! unreadable (HTTP 400), neither being remembered: the same request
//! number properly signed is answered. Otherwise the answer is `FOUND` with
//! the subject's accounts (balance, what is not frozen, the money-market
//! fund, the freezes standing on it), `NONE`, or `REJECTED`. Every reply,
//! refusals and injected errors included, carries the platform's own
//! timestamp, nonce and signature. The platform does not judge the
//! timestamp's age nor remember nonces: the gateway signs each sending of
//! a request number anew.
//!
//! Control orders, signed the same way: `POST /pay/v1/court/control`
//! freezes, renews, releases or deducts (to the court) on one account,
//! amounts in fen, answered at once with the order's `state` (`IN_FORCE`,
//! `NOT_CONTROLLED`, `QUEUED`, `RELEASED`, `LAPSED`), what was controlled
//! and not, and the documents received; `POST /pay/v1/court/control-query`
//! with a signed `{"req_no"}` answers the same as it stands now, `UNKNOWN`
//! for a number never received. An order not signed, unreadable or
//! unacceptable is `REJECTED` and not taken in.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::agency::{Agency, json_reply, json_text};
use crate::control::{
    Action, ControlItem, ControlOutcome, ControlRequest, ControlState, check_officers, given,
    read_date, read_documents,
};
use crate::faults::FaultMode;
use crate::further_book::PaymentAccount;
use crate::ids;
use crate::ledger::{Answer, Outcome};
use crate::signing;

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/pay/v1/court/account-query", post(inquiry))
        .route("/pay/v1/court/control", post(control))
        .route("/pay/v1/court/control-query", post(control_query))
}

/// One query, as far as the platform cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub request_number: String,
    pub id_type: String,
    pub id_number: String,
}

/// Why a message is not taken: unreadable (HTTP 400), not properly
/// signed, or (a control order) unacceptable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    Unreadable(String),
    Unsigned(&'static str),
    Refused(String),
}

fn text_field<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("{field} 为空"))
}

/// A signed message: a JSON object whose signature verifies under `key`,
/// with its timestamp and nonce.
fn signed_object(key: &[u8], body: &[u8]) -> Result<Map<String, Value>, Rejection> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(Rejection::Unreadable("请求须为 JSON 对象".into())),
        Err(e) => return Err(Rejection::Unreadable(format!("请求格式错误：{e}"))),
    };
    signing::check(key, &object).map_err(Rejection::Unsigned)?;
    if !object.get("timestamp").is_some_and(Value::is_i64) {
        return Err(Rejection::Unsigned("timestamp 须为整数秒"));
    }
    if text_field(&object, "nonce").is_err() {
        return Err(Rejection::Unsigned("缺少 nonce"));
    }
    Ok(object)
}

/// Reads a query and checks its signature under `key`.
pub(crate) fn read_query(key: &[u8], body: &[u8]) -> Result<Query, Rejection> {
    let object = signed_object(key, body)?;
    let unreadable = Rejection::Unreadable;
    for field in ["case_no", "court_code", "court_name", "name"] {
        text_field(&object, field).map_err(unreadable)?;
    }
    let officers = object
        .get("officers")
        .and_then(Value::as_array)
        .filter(|o| !o.is_empty())
        .ok_or_else(|| unreadable("officers 为空".into()))?;
    for officer in officers {
        let officer = officer
            .as_object()
            .ok_or_else(|| unreadable("officers 的每项须为对象".into()))?;
        for field in ["name", "work_card_no", "credential_no"] {
            text_field(officer, field).map_err(unreadable)?;
        }
    }
    Ok(Query {
        request_number: text_field(&object, "req_no")
            .map_err(unreadable)?
            .to_owned(),
        id_type: text_field(&object, "id_type")
            .map_err(unreadable)?
            .to_owned(),
        id_number: text_field(&object, "id_no").map_err(unreadable)?.to_owned(),
    })
}

/// Why a readable, signed query is refused, if it is.
fn refusal_for(query: &Query) -> Option<String> {
    let len = query.id_number.chars().count();
    match query.id_type.as_str() {
        "ID_CARD" if len == 18 || len == 15 => None,
        "USCC" if len == 18 => None,
        "ID_CARD" | "USCC" => Some(format!("证件号码长度错误（{len}位）")),
        other => Some(format!("不支持的证件类型：{other}")),
    }
}

/// The request number of a body, when it has one: what a refusal echoes.
fn request_number_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("req_no")?
        .as_str()
        .map(str::to_owned)
}

async fn inquiry(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let query = match read_query(agency.signing_key(), &body) {
        Ok(query) => query,
        Err(rejection) => return rejected(&agency, mode, &body, &rejection, "query"),
    };
    let rn = query.request_number.as_str();
    let answer = agency.take_inquiry(mode, rn, &query.id_number, refusal_for(&query));
    signed_reply(&agency, mode, StatusCode::OK, answer_body(rn, &answer))
}

/// The signed answer to a message not taken in: `REJECTED` with why,
/// echoing its request number when it has one.
fn rejected(
    agency: &Agency,
    mode: FaultMode,
    body: &[u8],
    rejection: &Rejection,
    what: &str,
) -> Response {
    let (status, reason) = match rejection {
        Rejection::Unreadable(reason) => (StatusCode::BAD_REQUEST, reason.as_str()),
        Rejection::Unsigned(reason) => (StatusCode::OK, *reason),
        Rejection::Refused(reason) => (StatusCode::OK, reason.as_str()),
    };
    tracing::info!(agency = agency.id(), %reason, "{what} not taken");
    let rn = request_number_of(body);
    signed_reply(
        agency,
        mode,
        status,
        json!({"req_no": rn, "result": "REJECTED", "message": reason}),
    )
}

/// The answer's fields (unsigned).
pub(crate) fn answer_body(rn: &str, answer: &Answer) -> Value {
    match &answer.outcome {
        Outcome::Found(found) => json!({
            "req_no": rn,
            "result": "FOUND",
            "accounts": found.payment_accounts().iter().map(account).collect::<Vec<_>>(),
        }),
        Outcome::NotFound => json!({"req_no": rn, "result": "NONE", "accounts": []}),
        Outcome::Refused(reason) => json!({"req_no": rn, "result": "REJECTED", "message": reason}),
    }
}

fn account(a: &PaymentAccount) -> Value {
    let frozen: Vec<Value> = a
        .freezes
        .iter()
        .map(|m| {
            let mut v = json!({
                "court": m.authority,
                "doc_no": m.document_number,
                "amount_fen": m.amount_fen.unwrap_or(0),
                "queued": !m.in_force(),
            });
            // A waiting freeze has no term yet: no `until` at all.
            if let Some(end) = m.end_date {
                v["until"] = end.format("%Y-%m-%d").to_string().into();
            }
            v
        })
        .collect();
    json!({
        "account_id": a.account_id,
        "holder": a.holder_name,
        "balance_fen": a.balance_fen,
        "available_fen": a.available_fen(),
        "fund_fen": a.fund_fen,
        "frozen": frozen,
    })
}

// Control orders ------------------------------------------------------------

/// Reads a signed control order and checks its signature under `key`.
pub(crate) fn read_control(key: &[u8], body: &[u8]) -> Result<ControlRequest, Rejection> {
    let object = signed_object(key, body)?;
    let unreadable = Rejection::Unreadable;
    let request_number = text_field(&object, "req_no").map_err(unreadable)?;
    // From here on the order is readable: what is wrong with it is a
    // refusal.
    let refused = Rejection::Refused;
    for field in ["case_no", "court_code", "court_name", "name"] {
        text_field(&object, field).map_err(refused)?;
    }
    let id_type = text_field(&object, "id_type").map_err(refused)?;
    if !matches!(id_type, "ID_CARD" | "USCC") {
        return Err(refused(format!("不支持的证件类型：{id_type}")));
    }
    let officers = object
        .get("officers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let officers: Vec<[&str; 3]> = officers
        .iter()
        .map(|o| ["name", "work_card_no", "credential_no"].map(|f| json_text(o, f)))
        .collect();
    check_officers(&officers).map_err(refused)?;
    let documents = object
        .get("documents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let documents: Vec<(&str, &str, &str)> = documents
        .iter()
        .map(|d| {
            (
                json_text(d, "type"),
                json_text(d, "no"),
                json_text(d, "sha256"),
            )
        })
        .collect();
    let word = text_field(&object, "action").map_err(refused)?;
    let action =
        Action::from_word(word).ok_or_else(|| refused(format!("不支持的控制措施：{word}")))?;
    let amount = match object.get("amount_fen") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| refused("amount_fen 须为整数（分）".into()))?,
        ),
    };
    let date =
        |field: &str| read_date(field, object.get(field).and_then(Value::as_str), "%Y-%m-%d");
    let request = ControlRequest {
        request_number: request_number.to_owned(),
        action,
        case_number: text_field(&object, "case_no").map_err(refused)?.to_owned(),
        court_name: text_field(&object, "court_name")
            .map_err(refused)?
            .to_owned(),
        holder_id: ids::normalise_id(text_field(&object, "id_no").map_err(refused)?),
        prior_request_number: given(object.get("prior_req_no").and_then(Value::as_str))
            .map(str::to_owned),
        items: vec![ControlItem {
            target: text_field(&object, "account_id")
                .map_err(refused)?
                .to_owned(),
            amount,
            start_date: date("start_date").map_err(refused)?,
            end_date: date("end_date").map_err(refused)?,
        }],
        documents: read_documents(&documents, "RULING", "ASSIST_NOTICE").map_err(refused)?,
    };
    request.check_needs(true).map_err(refused)?;
    Ok(request)
}

/// A control order: decided at once, answered with its state.
async fn control(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let request = match read_control(agency.signing_key(), &body) {
        Ok(request) => request,
        Err(rejection) => return rejected(&agency, mode, &body, &rejection, "control order"),
    };
    let outcome = agency.take_control(mode, &request);
    signed_reply(
        &agency,
        mode,
        StatusCode::OK,
        control_body(&request.request_number, Some(&outcome)),
    )
}

/// A status query: `{"req_no": …}`, signed.
async fn control_query(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let rn = signed_object(agency.signing_key(), &body).and_then(|object| {
        text_field(&object, "req_no")
            .map(str::to_owned)
            .map_err(Rejection::Unreadable)
    });
    let rn = match rn {
        Ok(rn) => rn,
        Err(rejection) => return rejected(&agency, mode, &body, &rejection, "status query"),
    };
    let outcome = agency.query_control(mode, &rn);
    signed_reply(
        &agency,
        mode,
        StatusCode::OK,
        control_body(&rn, outcome.as_ref()),
    )
}

/// `state`: `IN_FORCE` (or the renewal, release or deduction made),
/// `NOT_CONTROLLED`, `QUEUED`, `RELEASED`, `LAPSED`.
fn state_word(state: ControlState) -> &'static str {
    match state {
        ControlState::InForce => "IN_FORCE",
        ControlState::NotControlled => "NOT_CONTROLLED",
        ControlState::Waiting => "QUEUED",
        ControlState::Released => "RELEASED",
        ControlState::Lapsed => "LAPSED",
    }
}

/// The answer about an order (unsigned); `None`: a request number never
/// received (`UNKNOWN`).
pub(crate) fn control_body(rn: &str, outcome: Option<&ControlOutcome>) -> Value {
    let Some((outcome, r)) = outcome.and_then(|o| Some((o, o.results.first()?))) else {
        return json!({
            "req_no": rn, "result": "OK", "state": "UNKNOWN",
            "message": "无此控制请求", "documents_received": [],
        });
    };
    let iso = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    let documents: Vec<Value> = outcome
        .acknowledged
        .iter()
        .map(|d| json!({"no": d.number, "sha256": d.sha256}))
        .collect();
    json!({
        "req_no": rn,
        "result": "OK",
        "state": state_word(r.state),
        "account_id": r.target,
        "controlled_fen": r.controlled,
        "shortfall_fen": r.shortfall,
        "queue_no": r.queue_position,
        "start_date": iso(r.start_date),
        "end_date": iso(r.end_date),
        "freeze_id": (!r.measure_number.is_empty()).then_some(&r.measure_number),
        "message": (!r.reason.is_empty()).then_some(&r.reason),
        "documents_received": documents,
    })
}

/// `body` with the platform's timestamp, nonce and signature.
fn signed_reply(agency: &Agency, mode: FaultMode, status: StatusCode, body: Value) -> Response {
    let Value::Object(object) = body else {
        return json_reply(mode, status, &body);
    };
    json_reply(
        mode,
        status,
        &signing::sign_reply(agency.signing_key(), object),
    )
}

/// An injected error (`ERROR` 系统繁忙) or throttling (429), nothing
/// processed: signed like every reply.
pub(crate) fn fault_reply(agency: &Agency, status: StatusCode) -> Response {
    let message = if status == StatusCode::TOO_MANY_REQUESTS {
        "请求过于频繁，请稍后重试"
    } else {
        "系统繁忙，请稍后重试"
    };
    signed_reply(
        agency,
        FaultMode::Normal,
        status,
        json!({"result": "ERROR", "message": message}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACK_KEY: &[u8] = b"conformance-test-key-payment";

    fn pack_request() -> Vec<u8> {
        let path = format!(
            "{}/../config/conformance/payment-json/found.request.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).expect("the pack is there")
    }

    #[test]
    fn the_packs_signed_request_is_read() {
        let query = read_query(PACK_KEY, &pack_request()).expect("readable and signed");
        assert_eq!(
            query,
            Query {
                request_number: "Q1-pay".into(),
                id_type: "ID_CARD".into(),
                id_number: "360426199101010071".into(),
            }
        );
    }

    #[test]
    fn a_request_signed_with_another_key_altered_or_unsigned_is_rejected() {
        assert_eq!(
            read_query(b"another key", &pack_request()),
            Err(Rejection::Unsigned("签名验证失败"))
        );
        let altered = String::from_utf8_lossy(&pack_request())
            .replace("360426199101010071", "620503198812120015");
        assert_eq!(
            read_query(PACK_KEY, altered.as_bytes()),
            Err(Rejection::Unsigned("签名验证失败"))
        );
        let mut unsigned: Value = serde_json::from_slice(&pack_request()).expect("JSON");
        if let Value::Object(o) = &mut unsigned {
            o.remove("sign");
        }
        let unsigned = serde_json::to_vec(&unsigned).expect("JSON");
        assert_eq!(
            read_query(PACK_KEY, &unsigned),
            Err(Rejection::Unsigned("缺少签名"))
        );
        assert!(matches!(
            read_query(PACK_KEY, b"[1]"),
            Err(Rejection::Unreadable(_))
        ));
    }
}
