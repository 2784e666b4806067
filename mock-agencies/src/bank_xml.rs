//! The `court-bank-xml` bank (bank-a): `POST /ckxt/cxqq` takes a batch of
//! subjects (`CXQQ`) and answers one `CXFK` per subject in one `CXFKPC`, in
//! the agency's configured encoding (GB18030 for bank-a), exactly as
//! docs/wire-formats.md lays it out. Control orders: `POST /ckxt/kzqq` takes
//! one `KZQQ` (freeze, renew, release or deduct one account) and answers a
//! `KZFK`; `GET /ckxt/kzjg/{KZQQDH}` answers the `KZFK` of what that request
//! number did, as it stands now. Every `KZFK` about a request number that
//! carried documents acknowledges them (文书确认, `WSQRLIST`: one `WSQR` per
//! `WS` received, in the order's order, with the digest the bank computed;
//! see `control` for the `-TAMPERED` fault). Written with quick-xml and
//! encoding_rs directly, never with the gateway's codec, so the two check
//! each other.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::NaiveDate;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::agency::{Agency, wire_reply};
use crate::bank_book::Account;
use crate::control::{
    self, Action, ControlItem, ControlRequest, ControlState, Document, ItemResult, is_sha256_hex,
};
use crate::faults::FaultMode;
use crate::ledger::{Answer, Outcome, RequestKind};
use crate::xml_tree::{Element, decode_document, parse};
use crate::{ids, money};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/ckxt/cxqq", post(inquiry))
        .route("/ckxt/kzqq", post(control))
        .route("/ckxt/kzjg/{request_number}", get(control_status))
}

/// The authority of a measure whose order names no court (neither `FYMC`
/// nor `FYDM`).
const UNNAMED_COURT: &str = "执行法院";

/// What the `refuse` fault answers.
const MAINTENANCE: &str = "系统维护，暂停受理（模拟）";

/// One subject of a batch, as far as the bank cares.
struct Item {
    request_number: String,
    id_type: String,
    id_number: String,
}

struct Batch {
    batch_number: String,
    items: Vec<Item>,
}

fn required<'a>(element: &'a Element, tag: &str) -> Result<&'a str, String> {
    element
        .text_of(tag)
        .ok_or_else(|| format!("<{}> lacks <{tag}>", element.name))
}

/// Reads and checks a whole batch; the first problem makes it unreadable.
fn read_batch(body: &[u8]) -> Result<Batch, String> {
    let text = decode_document(body)?;
    let root = parse(&text)?;
    if root.name != "CXQQ" {
        return Err(format!("expected <CXQQ>, got <{}>", root.name));
    }
    let batch_number = required(&root, "PCH")?.to_owned();
    required(&root, "FYDM")?;
    required(&root, "FYMC")?;
    let list = root.child("CXQQLIST").ok_or("<CXQQ> lacks <CXQQLIST>")?;
    let mut items = Vec::new();
    for xx in list.children("CXQQXX") {
        for tag in ["AH", "XM"] {
            required(xx, tag)?;
        }
        let mut officers = 0;
        for officer in xx.children("ZFRY") {
            for tag in ["XM", "GZZBH", "GWZBH"] {
                required(officer, tag)?;
            }
            officers += 1;
        }
        if officers == 0 {
            return Err("<CXQQXX> names no officer (<ZFRY>)".into());
        }
        items.push(Item {
            request_number: required(xx, "CXQQDH")?.to_owned(),
            id_type: required(xx, "ZJZL")?.to_owned(),
            id_number: required(xx, "ZJH")?.to_owned(),
        });
    }
    if items.is_empty() {
        return Err("<CXQQLIST> holds no <CXQQXX>".into());
    }
    Ok(Batch {
        batch_number,
        items,
    })
}

/// Why a readable request is refused, if it is.
fn refusal_for(item: &Item) -> Option<String> {
    let len = item.id_number.chars().count();
    match item.id_type.as_str() {
        "01" if len == 18 || len == 15 => None,
        "02" if len == 18 => None,
        "01" | "02" => Some(format!("证件号码长度错误（{len}位）")),
        other => Some(format!("不支持的证件种类：{other}")),
    }
}

async fn inquiry(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let batch = match read_batch(&body) {
        Ok(batch) => batch,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable request");
            return error_reply(&agency, mode, StatusCode::BAD_REQUEST, "E001", &reason);
        }
    };
    let answers: Vec<(&str, Answer)> = batch
        .items
        .iter()
        .map(|item| {
            let answer = agency.take_inquiry(
                mode,
                &item.request_number,
                &item.id_number,
                refusal_for(item),
            );
            (item.request_number.as_str(), answer)
        })
        .collect();
    match feedback_document(&agency, &batch.batch_number, &answers) {
        Ok(text) => xml_reply(&agency, mode, StatusCode::OK, &text),
        Err(e) => error_reply(
            &agency,
            mode,
            StatusCode::INTERNAL_SERVER_ERROR,
            "E999",
            &e.to_string(),
        ),
    }
}

type XmlWriter = Writer<Vec<u8>>;

fn text(w: &mut XmlWriter, tag: &str, content: &str) -> std::io::Result<()> {
    w.create_element(tag)
        .write_text_content(BytesText::new(content))?;
    Ok(())
}

fn new_document(agency: &Agency) -> std::io::Result<XmlWriter> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new(
        "1.0",
        Some(agency.encoding_label()),
        None,
    )))?;
    Ok(w)
}

fn finish(w: XmlWriter) -> std::io::Result<String> {
    String::from_utf8(w.into_inner()).map_err(std::io::Error::other)
}

fn feedback_document(
    agency: &Agency,
    batch_number: &str,
    answers: &[(&str, Answer)],
) -> std::io::Result<String> {
    let mut w = new_document(agency)?;
    w.create_element("CXFKPC").write_inner_content(|w| {
        text(w, "PCH", batch_number)?;
        w.create_element("CXFKLIST").write_inner_content(|w| {
            for (request_number, answer) in answers {
                feedback(w, request_number, answer)?;
            }
            Ok(())
        })?;
        Ok(())
    })?;
    finish(w)
}

fn feedback(w: &mut XmlWriter, request_number: &str, answer: &Answer) -> std::io::Result<()> {
    let (code, reason, accounts): (&str, &str, &[Account]) = match &answer.outcome {
        Outcome::Found(found) => ("1", "", found.accounts()),
        Outcome::NotFound => ("0", "", &[]),
        Outcome::Refused(reason) => ("9", reason, &[]),
    };
    w.create_element("CXFK").write_inner_content(|w| {
        text(w, "CXQQDH", request_number)?;
        text(w, "CXJG", code)?;
        text(w, "JJYY", reason)?;
        text(
            w,
            "FKSJ",
            &answer.answered_at.format("%Y%m%d%H%M%S").to_string(),
        )?;
        if accounts.is_empty() {
            w.create_element("ZHXXLIST").write_empty()?;
            return Ok(());
        }
        w.create_element("ZHXXLIST").write_inner_content(|w| {
            for a in accounts {
                account(w, a)?;
            }
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(())
}

fn account(w: &mut XmlWriter, a: &Account) -> std::io::Result<()> {
    w.create_element("ZHXX").write_inner_content(|w| {
        text(w, "KHZH", &a.account_number)?;
        text(w, "CCLB", a.kind.xml_label())?;
        text(w, "ZHZT", a.state.xml_label())?;
        text(w, "KHWD", &a.branch)?;
        text(w, "BZ", &a.currency)?;
        text(w, "YE", &money::yuan(a.balance_fen))?;
        text(w, "KYYE", &money::yuan(a.available_fen))?;
        if a.measures.is_empty() {
            w.create_element("DJXXLIST").write_empty()?;
            return Ok(());
        }
        w.create_element("DJXXLIST").write_inner_content(|w| {
            for m in &a.measures {
                w.create_element("DJXX").write_inner_content(|w| {
                    text(w, "DJJG", &m.authority)?;
                    text(w, "DJWH", &m.document_number)?;
                    text(w, "DJJE", &money::yuan(m.amount_fen))?;
                    text(w, "DJJSRQ", &m.end_date.format("%Y%m%d").to_string())?;
                    text(w, "LHBZ", if m.waiting { "1" } else { "0" })
                })?;
            }
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(())
}

/// A document in the agency's encoding, as its declaration says.
fn xml_reply(agency: &Agency, mode: FaultMode, status: StatusCode, document: &str) -> Response {
    let (bytes, _, _) = agency.encoding.encode(document);
    wire_reply(
        mode,
        status,
        &format!("application/xml; charset={}", agency.encoding_label()),
        bytes.into_owned(),
    )
}

/// An injected error (`mode: error`, `error_rate`; `E999` 系统繁忙) or
/// throttling (429; `E429` 请求过于频繁), nothing processed.
pub(crate) fn fault_reply(agency: &Agency, status: StatusCode) -> Response {
    let (code, message) = if status == StatusCode::TOO_MANY_REQUESTS {
        ("E429", "请求过于频繁，请稍后重试")
    } else {
        ("E999", "系统繁忙，请稍后重试")
    };
    error_reply(agency, FaultMode::Normal, status, code, message)
}

/// `<CWXX>`: the bank could not (or would not) read the request at all.
fn error_reply(
    agency: &Agency,
    mode: FaultMode,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    let document = new_document(agency).and_then(|mut w| {
        w.create_element("CWXX").write_inner_content(|w| {
            text(w, "CWDM", code)?;
            text(w, "CWMS", message)
        })?;
        finish(w)
    });
    match document {
        Ok(document) => xml_reply(agency, mode, status, &document),
        Err(_) => wire_reply(mode, status, "text/plain", message.as_bytes().to_vec()),
    }
}

// Control orders ------------------------------------------------------------

/// Reads and checks a `KZQQ`; the first problem makes it unreadable.
fn read_control(body: &[u8]) -> Result<ControlRequest, String> {
    let text = decode_document(body)?;
    let root = parse(&text)?;
    if root.name != "KZQQ" {
        return Err(format!("expected <KZQQ>, got <{}>", root.name));
    }
    let request_number = required(&root, "KZQQDH")?.to_owned();
    let code = required(&root, "KZCS")?;
    let action =
        Action::from_bank_code(code).ok_or_else(|| format!("不支持的控制措施：KZCS {code}"))?;
    let case_number = required(&root, "AH")?.to_owned();
    required(&root, "XM")?;
    let id_type = required(&root, "ZJZL")?;
    if !matches!(id_type, "01" | "02") {
        return Err(format!("不支持的证件种类：{id_type}"));
    }
    let id_number = required(&root, "ZJH")?;
    let account_number = required(&root, "KHZH")?.to_owned();
    let amount_fen = match root.text_of("SQKZJE") {
        None => None,
        Some(t) => {
            Some(money::parse_yuan(t).ok_or_else(|| format!("<SQKZJE> is not an amount: {t}"))?)
        }
    };
    if action.needs_amount() {
        match amount_fen {
            None => return Err("<KZQQ> lacks <SQKZJE>".into()),
            Some(fen) if fen <= 0 => return Err("<SQKZJE> must be above zero".into()),
            Some(_) => {}
        }
    }
    let start_date = date(&root, "KSRQ")?;
    let end_date = date(&root, "JSRQ")?;
    if action.needs_term() {
        required(&root, "KSRQ")?;
        required(&root, "JSRQ")?;
    }
    let prior_request_number = root.text_of("YKZQQDH").map(str::to_owned);
    if action.needs_prior() {
        required(&root, "YKZQQDH")?;
    }
    let documents = read_documents(&root)?;
    read_officers(&root)?;
    let court_name = root
        .text_of("FYMC")
        .or_else(|| root.text_of("FYDM"))
        .unwrap_or(UNNAMED_COURT)
        .to_owned();
    Ok(ControlRequest {
        request_number,
        action,
        case_number,
        court_name,
        holder_id: ids::normalise_id(id_number),
        prior_request_number,
        items: vec![ControlItem {
            target: account_number,
            amount: amount_fen,
            start_date,
            end_date,
        }],
        documents,
    })
}

/// A `yyyyMMdd` date, when the element is there and not blank.
fn date(element: &Element, tag: &str) -> Result<Option<NaiveDate>, String> {
    let Some(text) = element.text_of(tag) else {
        return Ok(None);
    };
    if text.len() == 8
        && text.bytes().all(|b| b.is_ascii_digit())
        && let Ok(date) = NaiveDate::parse_from_str(text, "%Y%m%d")
    {
        return Ok(Some(date));
    }
    Err(format!("<{tag}> is not a date yyyyMMdd: {text}"))
}

/// `WSLIST`: each `WS` complete, the ruling (`CDS`) and the assistance
/// notice (`XZTZS`) among them. The documents as received, in order.
fn read_documents(root: &Element) -> Result<Vec<Document>, String> {
    let mut kinds = Vec::new();
    let mut documents = Vec::new();
    for ws in root.children("WSLIST").flat_map(|l| l.children("WS")) {
        let kind = required(ws, "WSLX")?;
        let number = required(ws, "WSBH")?;
        let hash = required(ws, "WSHASH")?;
        if !is_sha256_hex(hash) {
            return Err(format!("<WSHASH> is not a SHA-256 in hex: {hash}"));
        }
        kinds.push(kind);
        documents.push(Document {
            number: number.to_owned(),
            sha256: hash.to_owned(),
        });
    }
    for needed in ["CDS", "XZTZS"] {
        if !kinds.contains(&needed) {
            return Err(format!("<WSLIST> lacks the {needed} document"));
        }
    }
    Ok(documents)
}

/// Two officers at least, each with both credentials (双人双证).
fn read_officers(root: &Element) -> Result<(), String> {
    let mut officers = 0;
    for officer in root.children("ZFRY") {
        for tag in ["XM", "GZZBH", "GWZBH"] {
            required(officer, tag)?;
        }
        officers += 1;
    }
    if officers < 2 {
        return Err(format!(
            "a control order needs two officers (<ZFRY>), not {officers}"
        ));
    }
    Ok(())
}

async fn control(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let request = match read_control(&body) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable control order");
            return error_reply(&agency, mode, StatusCode::BAD_REQUEST, "E001", &reason);
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
    control_reply(&agency, mode, rn, results.first(), &acknowledged)
}

async fn control_status(
    State(agency): State<Arc<Agency>>,
    Path(request_number): Path<String>,
) -> Response {
    let mode = agency.mode();
    let rn = request_number.as_str();
    if mode == FaultMode::Refuse {
        // Not controlled, for the maintenance: nothing looked up or recorded.
        let refused = ItemResult {
            reason: MAINTENANCE.into(),
            ..unknown()
        };
        return control_reply(&agency, mode, rn, Some(&refused), &[]);
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
    control_reply(&agency, mode, rn, result.as_ref(), &acknowledged)
}

/// The answer about a request number nobody sent (`KZZT` 0).
fn unknown() -> ItemResult {
    ItemResult {
        target: String::new(),
        state: ControlState::NotControlled,
        controlled: 0,
        shortfall: 0,
        reason: "无此控制请求".into(),
        start_date: None,
        end_date: None,
        queue_position: 0,
        measure_number: String::new(),
    }
}

/// `KZZT`: 1 in force, 2 not controlled (refused, or waiting with `LHXH`),
/// 3 released, 4 lapsed.
fn state_code(state: ControlState) -> &'static str {
    match state {
        ControlState::InForce => "1",
        ControlState::NotControlled | ControlState::Waiting => "2",
        ControlState::Released => "3",
        ControlState::Lapsed => "4",
    }
}

/// A `KZFK`; `None` is the answer about an unknown request number. The
/// acknowledged documents make its `WSQRLIST`, left out when there are none.
fn control_reply(
    agency: &Agency,
    mode: FaultMode,
    request_number: &str,
    result: Option<&ItemResult>,
    acknowledged: &[Document],
) -> Response {
    let (code, result) = match result {
        Some(r) => (state_code(r.state), r.clone()),
        None => ("0", unknown()),
    };
    let yyyymmdd = |d: Option<NaiveDate>| {
        d.map(|d| d.format("%Y%m%d").to_string())
            .unwrap_or_default()
    };
    let document = new_document(agency).and_then(|mut w| {
        w.create_element("KZFK").write_inner_content(|w| {
            text(w, "KZQQDH", request_number)?;
            text(w, "KZZT", code)?;
            text(w, "SKJE", &money::yuan(result.controlled))?;
            text(w, "CESKJE", &money::yuan(result.shortfall))?;
            text(w, "WNKZYY", &result.reason)?;
            text(w, "KSRQ", &yyyymmdd(result.start_date))?;
            text(w, "JSRQ", &yyyymmdd(result.end_date))?;
            text(w, "LHXH", &result.queue_position.to_string())?;
            text(w, "KZBH", &result.measure_number)?;
            if !acknowledged.is_empty() {
                w.create_element("WSQRLIST").write_inner_content(|w| {
                    for d in acknowledged {
                        w.create_element("WSQR").write_inner_content(|w| {
                            text(w, "WSBH", &d.number)?;
                            text(w, "WSHASH", &d.sha256)
                        })?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
        finish(w)
    });
    match document {
        Ok(document) => xml_reply(agency, mode, StatusCode::OK, &document),
        Err(e) => error_reply(
            agency,
            mode,
            StatusCode::INTERNAL_SERVER_ERROR,
            "E999",
            &e.to_string(),
        ),
    }
}
