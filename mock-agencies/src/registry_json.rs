//! The `registry-json` real-estate registry (registry-x): a submission
//! (`POST /bdc/api/cxqq`) is answered at once with a ticket (`SLBH`); the
//! result appears `result_delay_ms` later and is fetched by polling
//! `GET /bdc/api/cxjg/{CXQQDH}` (docs/wire-formats.md). The answer is settled
//! at submission and only revealed later, so every poll after the delay
//! returns the same result.
//!
//! A submission may name a callback address (`HDDZ`): the registry then also
//! pushes the result there once it is ready, with the very body a poll would
//! get (`result_push`: a task of its own that tries up to three times). It
//! is pushed once per request number, and stays available by polling.
//!
//! Control orders (seal `11`, renew seal `12`, release seal `14`) go the same
//! way: `POST /bdc/api/kzqq` is decided at once and answered with a ticket;
//! `GET /bdc/api/kzjg/{CXQQDH}` reveals the result `result_delay_ms` later,
//! as it stands at the time of the poll (a waiting seal later promoted shows
//! in force). Each `KZXXLIST` item of the result acknowledges the documents
//! the registry received (文书确认, `WSQRLIST`: `WSBH` and the `WSHASH` it
//! computed, in the order's order; see `control` for the `-TAMPERED`
//! fault). A malformed or unacceptable order is refused at intake
//! (`RESULT` `1001`) and nothing is applied.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use chrono::NaiveDate;

use crate::agency::{Agency, json_reply};
use crate::control::{
    Action, ControlItem, ControlOutcome, ControlRequest, ControlState, Document as Received,
    ItemResult, is_sha256_hex,
};
use crate::faults::FaultMode;
use crate::ledger::{Answer, Outcome, RequestKind};
use crate::registry_book::Unit;
use crate::{ids, money, result_push};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/bdc/api/cxqq", post(submit))
        .route("/bdc/api/cxjg/{request_number}", get(poll))
        .route("/bdc/api/kzqq", post(control_submit))
        .route("/bdc/api/kzjg/{request_number}", get(control_poll))
}

/// What the `refuse` fault answers.
const MAINTENANCE: &str = "系统维护，暂停受理（模拟）";

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
    /// 回调地址: where to push the result; blank is the same as absent.
    #[serde(default)]
    hddz: Option<String>,
}

const BUSY: &str = "系统繁忙，请稍后重试";

/// An injected error (`mode: error`, `error_rate`) or throttling (429),
/// nothing processed: `RESULT` is `0` and the status (`0503`, `0429`), and
/// a poll's answer names its request number.
pub(crate) fn fault_reply(status: StatusCode, path: &str) -> Response {
    let rn = ["/bdc/api/cxjg/", "/bdc/api/kzjg/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .map(percent_decode);
    let text = if status == StatusCode::TOO_MANY_REQUESTS {
        "请求过于频繁，请稍后重试"
    } else {
        BUSY
    };
    json_reply(
        FaultMode::Normal,
        status,
        &message(
            &format!("{:04}", status.as_u16()),
            rn.as_deref(),
            json!({"MSG": text}),
        ),
    )
}

/// A path segment as the router's `Path` extractor would give it.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A submission and the callback address it names, if any.
fn read_submission(body: &[u8]) -> Result<(Submission, Option<Url>), String> {
    let s = read_fields(body)?;
    let callback = callback_address(s.hddz.as_deref())?;
    Ok((s, callback))
}

/// `HDDZ` must be an absolute http URL with a host.
fn callback_address(hddz: Option<&str>) -> Result<Option<Url>, String> {
    let Some(text) = hddz.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match result_push::callback_url(text, false) {
        Some(url) => Ok(Some(url)),
        None => Err(format!("HDDZ 不是有效的 http 地址：{text}")),
    }
}

fn read_fields(body: &[u8]) -> Result<Submission, String> {
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
    let mode = agency.mode();
    let (submission, callback) = match read_submission(&body) {
        Ok(read) => read,
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
    let answer = agency.take_inquiry(mode, rn, &submission.zjh, refusal_for(&submission));
    // Only an accepted submission has a result to push; a refusal (injected
    // or not) is said in this reply.
    if let Some(callback) = callback {
        result_push::schedule(&agency, rn, &answer, callback, pushed);
    }
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
    let mode = agency.mode();
    let rn = request_number.as_str();
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
        return json_reply(mode, StatusCode::OK, &result(rn, slbh, &refusal));
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
    json_reply(mode, StatusCode::OK, &done(rn, &answer))
}

/// The answer to a poll once the result is ready, and the body of its push.
fn done(rn: &str, answer: &Answer) -> Value {
    let slbh = answer.ticket.as_ref().map(|t| t.number.clone());
    result(rn, slbh, answer)
}

/// The body of a result push: what a poll gets once the result is ready.
fn pushed(_: &Agency, rn: &str, answer: &Answer) -> Value {
    done(rn, answer)
}

fn result(rn: &str, slbh: Option<String>, answer: &Answer) -> Value {
    let (cxjg, jjyy, units): (&str, &str, &[Unit]) = match &answer.outcome {
        Outcome::Found(found) => ("1", "", found.units()),
        Outcome::NotFound => ("0", "", &[]),
        Outcome::Refused(reason) => ("9", reason, &[]),
    };
    let units: Vec<Value> = units.iter().map(unit).collect();
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

// Control orders ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct ControlSubmission {
    #[serde(default)]
    ah: String,
    #[serde(default)]
    fydm: String,
    #[serde(default)]
    fymc: String,
    #[serde(default)]
    xm: String,
    #[serde(default)]
    zjzl: String,
    #[serde(default)]
    zjh: String,
    #[serde(default)]
    cbr: String,
    #[serde(default)]
    ykzqqdh: Option<String>,
    #[serde(default)]
    wslist: Vec<Document>,
    #[serde(default)]
    zfry: Vec<Officer>,
    #[serde(default)]
    bdcqllist: Vec<Right>,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Document {
    #[serde(default)]
    wslx: String,
    #[serde(default)]
    wsbh: String,
    #[serde(default)]
    wshash: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Officer {
    #[serde(default)]
    xm: String,
    #[serde(default)]
    gzzbh: String,
    #[serde(default)]
    gwzbh: String,
}

/// One unit of the order (`BDCQLLIST`).
#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Right {
    #[serde(default)]
    kzcs: String,
    #[serde(default)]
    bdcdyh: String,
    #[serde(default)]
    ksrq: Option<String>,
    #[serde(default)]
    jsrq: Option<String>,
}

fn slash_date(field: &str, value: Option<&str>) -> Result<Option<NaiveDate>, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => NaiveDate::parse_from_str(text, "%Y/%m/%d")
            .map(Some)
            .map_err(|_| format!("{field} 不是 yyyy/MM/dd 日期：{text}")),
    }
}

/// Reads a control order whose request number is known; `Err` is why it is
/// refused at intake.
fn read_control(request_number: &str, body: Value) -> Result<ControlRequest, String> {
    let s: ControlSubmission =
        serde_json::from_value(body).map_err(|e| format!("请求格式错误：{e}"))?;
    let fields = [
        ("AH", &s.ah),
        ("FYDM", &s.fydm),
        ("FYMC", &s.fymc),
        ("XM", &s.xm),
        ("ZJZL", &s.zjzl),
        ("ZJH", &s.zjh),
        ("CBR", &s.cbr),
    ];
    if let Some((field, _)) = fields.iter().find(|(_, v)| v.trim().is_empty()) {
        return Err(format!("{field} 为空"));
    }
    if !matches!(s.zjzl.as_str(), "01" | "02") {
        return Err(format!("不支持的证件种类：{}", s.zjzl));
    }
    if s.zfry.len() < 2 {
        return Err(format!(
            "控制须有两名执行人员（ZFRY），只有{}名",
            s.zfry.len()
        ));
    }
    if s.zfry
        .iter()
        .any(|o| o.xm.trim().is_empty() || o.gzzbh.trim().is_empty() || o.gwzbh.trim().is_empty())
    {
        return Err("ZFRY 须有 XM、GZZBH、GWZBH".into());
    }
    for d in &s.wslist {
        if d.wsbh.trim().is_empty() || !is_sha256_hex(&d.wshash) {
            return Err("WSLIST 的文书须有 WSBH 和 64 位十六进制的 WSHASH".into());
        }
    }
    for needed in ["CDS", "XZTZS"] {
        if !s.wslist.iter().any(|d| d.wslx == needed) {
            return Err(format!("WSLIST 缺少 {needed} 文书"));
        }
    }
    let Some(first) = s.bdcqllist.first() else {
        return Err("BDCQLLIST 为空".into());
    };
    let action = Action::from_registry_code(&first.kzcs)
        .ok_or_else(|| format!("不支持的控制措施：KZCS {}", first.kzcs))?;
    let prior_request_number = s
        .ykzqqdh
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    if action.needs_prior() && prior_request_number.is_none() {
        return Err("YKZQQDH 为空".into());
    }
    let mut items = Vec::with_capacity(s.bdcqllist.len());
    for right in &s.bdcqllist {
        if right.kzcs != first.kzcs {
            return Err("BDCQLLIST 中的 KZCS 须一致".into());
        }
        if right.bdcdyh.trim().is_empty() {
            return Err("BDCDYH 为空".into());
        }
        let start_date = slash_date("KSRQ", right.ksrq.as_deref())?;
        let end_date = slash_date("JSRQ", right.jsrq.as_deref())?;
        if action.needs_term() && (start_date.is_none() || end_date.is_none()) {
            return Err("KSRQ、JSRQ 为空".into());
        }
        items.push(ControlItem {
            target: right.bdcdyh.trim().to_owned(),
            amount: None,
            start_date,
            end_date,
        });
    }
    Ok(ControlRequest {
        request_number: request_number.to_owned(),
        action,
        case_number: s.ah,
        court_name: s.fymc,
        holder_id: ids::normalise_id(&s.zjh),
        prior_request_number,
        items,
        documents: s
            .wslist
            .into_iter()
            .map(|d| Received {
                number: d.wsbh,
                sha256: d.wshash,
            })
            .collect(),
    })
}

async fn control_submit(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    // Without a request number there is nobody to answer to.
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let rn = parsed
        .as_ref()
        .and_then(|v| v.get("CXQQDH"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|rn| !rn.is_empty())
        .map(str::to_owned);
    let (Some(body), Some(rn)) = (parsed.filter(Value::is_object), rn) else {
        tracing::info!(agency = agency.id(), "unreadable control order");
        return json_reply(
            mode,
            StatusCode::BAD_REQUEST,
            &message("0400", None, json!({"MSG": "请求格式错误或 CXQQDH 为空"})),
        );
    };
    let request = match read_control(&rn, body) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(agency = agency.id(), request_number = %rn, %reason, "control order refused at intake");
            return json_reply(
                mode,
                StatusCode::OK,
                &message("1001", Some(&rn), json!({"MSG": reason})),
            );
        }
    };
    if mode == FaultMode::Refuse {
        return json_reply(
            mode,
            StatusCode::OK,
            &message("1001", Some(&rn), json!({"MSG": MAINTENANCE})),
        );
    }
    agency.record(&rn, RequestKind::Control, Some(&request.holder_id));
    tracing::info!(
        agency = agency.id(),
        request_number = %rn,
        action = ?request.action,
        subject = %ids::mask(&request.holder_id),
        "control order"
    );
    let outcome = agency.control(&request);
    let slbh = outcome.ticket.as_ref().map(|t| t.number.clone());
    json_reply(
        mode,
        StatusCode::OK,
        &message("0000", Some(&rn), json!({"SLBH": slbh, "MSG": "已受理"})),
    )
}

async fn control_poll(
    State(agency): State<Arc<Agency>>,
    Path(request_number): Path<String>,
) -> Response {
    let mode = agency.mode();
    let rn = request_number.as_str();
    let outcome = agency.control_status(rn);
    if mode != FaultMode::Refuse {
        agency.record(
            rn,
            RequestKind::ControlQuery,
            outcome.as_ref().map(|o| o.holder_id.as_str()),
        );
    }
    let Some(mut outcome) = outcome else {
        return json_reply(
            mode,
            StatusCode::NOT_FOUND,
            &message("0404", Some(rn), json!({"MSG": "无此请求"})),
        );
    };
    let slbh = outcome.ticket.as_ref().map(|t| t.number.clone());
    if let Some(ticket) = &outcome.ticket
        && tokio::time::Instant::now() < ticket.ready_at
    {
        return json_reply(
            mode,
            StatusCode::OK,
            &message("0001", Some(rn), json!({"SLBH": slbh, "MSG": "处理中"})),
        );
    }
    if mode == FaultMode::Refuse {
        // A refusal for the maintenance takes nothing in: no acknowledgement.
        outcome.acknowledged.clear();
        for r in &mut outcome.results {
            *r = ItemResult {
                target: std::mem::take(&mut r.target),
                state: ControlState::NotControlled,
                controlled: 0,
                shortfall: 0,
                reason: MAINTENANCE.into(),
                start_date: None,
                end_date: None,
                queue_position: 0,
                measure_number: String::new(),
            };
        }
    }
    json_reply(mode, StatusCode::OK, &control_result(rn, slbh, &outcome))
}

/// `KZZT`: 1 in force (or the renewal or release made), 2 not applied
/// (refused, or waiting with `LHSX` above 0), 3 released, 4 lapsed.
fn seal_state(state: ControlState) -> &'static str {
    match state {
        ControlState::InForce => "1",
        ControlState::NotControlled | ControlState::Waiting => "2",
        ControlState::Released => "3",
        ControlState::Lapsed => "4",
    }
}

/// The poll's result: one `KZXXLIST` item per unit, each acknowledging the
/// order's documents (`WSQRLIST`, empty when it carried none).
fn control_result(rn: &str, slbh: Option<String>, outcome: &ControlOutcome) -> Value {
    let acknowledged: Vec<Value> = outcome
        .acknowledged
        .iter()
        .map(|d| json!({"WSBH": d.number, "WSHASH": d.sha256}))
        .collect();
    let slash = |d: Option<NaiveDate>| {
        d.map(|d| d.format("%Y/%m/%d").to_string())
            .unwrap_or_default()
    };
    let items: Vec<Value> = outcome
        .results
        .iter()
        .map(|r| {
            json!({
                "BDCDYH": r.target,
                "KZZT": seal_state(r.state),
                "WNKZYY": r.reason,
                "LHSX": r.queue_position,
                "CSKSRQ": slash(r.start_date),
                "CSJSRQ": slash(r.end_date),
                "YWH": r.measure_number,
                "WSQRLIST": acknowledged,
            })
        })
        .collect();
    message("0000", Some(rn), json!({"SLBH": slbh, "KZXXLIST": items}))
}
