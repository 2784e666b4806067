//! The `registry-json` real-estate registry (registry-x): a submission
//! (`POST /bdc/api/cxqq`) is answered at once with a ticket (`SLBH`); the
//! result appears `result_delay_ms` later and is fetched by polling
//! `GET /bdc/api/cxjg/{CXQQDH}` (docs/wire-formats.md). The answer is settled
//! at submission and only revealed later, so every poll after the delay
//! returns the same result.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::agency::{Agency, Holdings, json_reply};
use crate::ledger::{Answer, FaultMode, Outcome, RequestKind};
use crate::registry_book::Unit;
use crate::{ids, money};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/bdc/api/cxqq", post(submit))
        .route("/bdc/api/cxjg/{request_number}", get(poll))
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Submission {
    cxqqdh: String,
    ah: String,
    fydm: String,
    fymc: String,
    xm: String,
    zjzl: String,
    zjh: String,
    cbr: String,
    gzzbh: String,
    gwzbh: String,
}

const BUSY: &str = "系统繁忙，请稍后重试";

fn read_submission(body: &[u8]) -> Result<Submission, String> {
    let s: Submission = serde_json::from_slice(body).map_err(|e| format!("请求格式错误：{e}"))?;
    let fields = [
        ("CXQQDH", &s.cxqqdh),
        ("AH", &s.ah),
        ("FYDM", &s.fydm),
        ("FYMC", &s.fymc),
        ("XM", &s.xm),
        ("ZJZL", &s.zjzl),
        ("ZJH", &s.zjh),
        ("CBR", &s.cbr),
        ("GZZBH", &s.gzzbh),
        ("GWZBH", &s.gwzbh),
    ];
    match fields.iter().find(|(_, v)| v.trim().is_empty()) {
        Some((field, _)) => Err(format!("{field} 为空")),
        None => Ok(s),
    }
}

fn refusal_for(s: &Submission) -> Option<String> {
    let len = s.zjh.chars().count();
    match s.zjzl.as_str() {
        "01" if len == 18 || len == 15 => None,
        "02" if len == 18 => None,
        "01" | "02" => Some(format!("证件号码长度错误（{len}位）")),
        other => Some(format!("不支持的证件种类：{other}")),
    }
}

/// A registry-style answer: `RESULT`, `CXQQDH` when known, then the rest.
fn message(result: &str, request_number: Option<&str>, rest: Value) -> Value {
    let mut body = Map::new();
    body.insert("RESULT".into(), result.into());
    if let Some(rn) = request_number {
        body.insert("CXQQDH".into(), rn.into());
    }
    if let Value::Object(rest) = rest {
        body.extend(rest);
    }
    Value::Object(body)
}

async fn submit(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.arrive().await;
    if mode == FaultMode::Error {
        return json_reply(
            mode,
            StatusCode::SERVICE_UNAVAILABLE,
            &message("0503", None, json!({"MSG": BUSY})),
        );
    }
    let submission = match read_submission(&body) {
        Ok(s) => s,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable submission");
            // Echo the request number when it can be found at all.
            let rn = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("CXQQDH").and_then(Value::as_str).map(str::to_owned));
            return json_reply(
                mode,
                StatusCode::BAD_REQUEST,
                &message("0400", rn.as_deref(), json!({"MSG": reason})),
            );
        }
    };
    let rn = submission.cxqqdh.as_str();
    let holder = ids::normalise_id(&submission.zjh);
    agency.record(rn, RequestKind::Inquiry, Some(&holder));
    tracing::info!(agency = agency.id(), request_number = %rn, subject = %ids::mask(&holder), "submission");
    let answer = if mode == FaultMode::Refuse {
        Agency::injected_refusal(&holder)
    } else {
        agency.answer(rn, &holder, refusal_for(&submission))
    };
    let body = match (&answer.ticket, &answer.outcome) {
        (Some(ticket), _) => message(
            "0000",
            Some(rn),
            json!({"SLBH": ticket.number, "MSG": "已受理"}),
        ),
        (None, Outcome::Refused(reason)) => message("1001", Some(rn), json!({"MSG": reason})),
        (None, _) => message("1001", Some(rn), json!({"MSG": "未受理"})),
    };
    json_reply(mode, StatusCode::OK, &body)
}

async fn poll(State(agency): State<Arc<Agency>>, Path(request_number): Path<String>) -> Response {
    let mode = agency.arrive().await;
    let rn = request_number.as_str();
    if mode == FaultMode::Error {
        return json_reply(
            mode,
            StatusCode::SERVICE_UNAVAILABLE,
            &message("0503", Some(rn), json!({"MSG": BUSY})),
        );
    }
    let stored = agency.stored_answer(rn);
    agency.record(
        rn,
        RequestKind::Poll,
        stored.as_ref().map(|a| a.holder_id.as_str()),
    );
    let Some(answer) = stored else {
        return json_reply(
            mode,
            StatusCode::NOT_FOUND,
            &message("0404", Some(rn), json!({"MSG": "无此请求"})),
        );
    };
    let slbh = answer.ticket.as_ref().map(|t| t.number.clone());
    if mode == FaultMode::Refuse {
        let refusal = Agency::injected_refusal(&answer.holder_id);
        return json_reply(mode, StatusCode::OK, &result(&agency, rn, slbh, &refusal));
    }
    if let Some(ticket) = &answer.ticket
        && tokio::time::Instant::now() < ticket.ready_at
    {
        return json_reply(
            mode,
            StatusCode::OK,
            &message("0001", Some(rn), json!({"SLBH": slbh, "MSG": "处理中"})),
        );
    }
    json_reply(mode, StatusCode::OK, &result(&agency, rn, slbh, &answer))
}

fn result(agency: &Agency, rn: &str, slbh: Option<String>, answer: &Answer) -> Value {
    let (cxjg, jjyy, positions): (&str, &str, &[usize]) = match &answer.outcome {
        Outcome::Found(p) => ("1", "", p),
        Outcome::NotFound => ("0", "", &[]),
        Outcome::Refused(reason) => ("9", reason, &[]),
    };
    let units: Vec<Value> = match &agency.holdings {
        Holdings::Registry(book) => positions
            .iter()
            .filter_map(|&p| book.get(p))
            .map(unit)
            .collect(),
        Holdings::Bank(_) => Vec::new(),
    };
    let mut rest = json!({"CXJG": cxjg, "JJYY": jjyy, "BDCLIST": units});
    if let (Some(slbh), Value::Object(map)) = (slbh, &mut rest) {
        map.insert("SLBH".into(), slbh.into());
    }
    message("0000", Some(rn), rest)
}

fn unit(u: &Unit) -> Value {
    let owners: Vec<Value> = u
        .owners
        .iter()
        .map(|o| json!({"QLRMC": o.name, "GYFE": o.share}))
        .collect();
    let seals: Vec<Value> = u
        .seals
        .iter()
        .map(|s| {
            json!({
                "CFJG": s.authority,
                "CFWH": s.document_number,
                "CFKSRQ": s.start_date.format("%Y/%m/%d").to_string(),
                "CFJSRQ": s.end_date.format("%Y/%m/%d").to_string(),
                "LHSX": s.queue_position,
            })
        })
        .collect();
    json!({
        "BDCDYH": u.unit_number,
        "BDCQZH": u.certificate_number,
        "ZL": u.location,
        "MJ": money::hundredths(u.area_centi_m2),
        "YT": u.usage,
        "QLRLIST": owners,
        "DYZT": if u.mortgaged { "1" } else { "0" },
        "CFLIST": seals,
    })
}
