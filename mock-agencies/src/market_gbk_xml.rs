//! The `market-gbk-xml` market-regulation registry (market-m): XML in GBK
//! (the agency's configured encoding), synchronous, up to 50 subjects a
//! message. `POST /scjg/gqcx` takes a `GQCX` batch (`CXLIST/CXXX`, one per
//! subject) and answers one `GQFK` with an `FKXX` per subject: `JG` 1 with
//! the companies the subject holds equity in (`GQLIST/GQXX`: name, credit
//! code, capital subscribed and paid in, in yuan, the ratio as written,
//! and the freezes standing on the equity, `DJLIST/DJXX`, `LHXH` 0 in force,
//! 1, 2 ... waiting), 0 with no equity, 9 refused with its reason (`YY`). A
//! batch it cannot read, or of more than 50 subjects, is answered with
//! HTTP 400 and `CWDM`/`CWMS` and nothing in it is processed.
//!
//! Control orders, one a message, answered at once: `POST /scjg/gqdj`
//! takes a `GQDJ` freezing (`DJCS` 01), renewing (02) or releasing (04) a
//! freeze of the subject's whole holding in the company `TYSHXYDM` names,
//! and answers a `GQDJFK`: `DJZT` 1 frozen (or the renewal or release
//! made), 2 not frozen (waiting in line behind another authority's freeze
//! when `LHXH` is above 0), 3 released, 4 lapsed, with the capital frozen
//! (`DJJE`), the reason (`YY`), the dates, the registry's number
//! (`DJBH`) and the documents received (`WSQRLIST`).
//! `GET /scjg/gqdj/{DJQQDH}` is the status query, `DJZT` 0 for a number
//! never received. An order it cannot read or will not take (no two
//! officers, documents missing, another measure code) is HTTP 400 with
//! `CWDM`/`CWMS`, nothing taken in.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::agency::{Agency, wire_reply};
use crate::control::{
    Action, ControlItem, ControlOutcome, ControlRequest, ControlState, check_officers, given,
    read_date, read_documents,
};
use crate::faults::FaultMode;
use crate::further_book::EquityHolding;
use crate::ledger::{Answer, Outcome};
use crate::xml_tree::{Element, decode_document, parse};
use crate::{ids, money};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/scjg/gqcx", post(inquiry))
        .route("/scjg/gqdj", post(control))
        .route("/scjg/gqdj/{request_number}", get(control_status))
}

/// Subjects a message may carry (the dialect's `max_batch`).
pub(crate) const MAX_BATCH: usize = 50;

/// One subject of a batch, as far as the registry cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub request_number: String,
    pub id_type: String,
    pub id_number: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub batch_number: String,
    pub items: Vec<Item>,
}

fn required<'a>(element: &'a Element, tag: &str) -> Result<&'a str, String> {
    element
        .text_of(tag)
        .ok_or_else(|| format!("<{}> 缺少 <{tag}>", element.name))
}

/// Reads and checks a whole batch; the first problem makes it unreadable.
pub(crate) fn read_batch(body: &[u8]) -> Result<Batch, String> {
    let root = parse(&decode_document(body)?)?;
    if root.name != "GQCX" {
        return Err(format!("expected <GQCX>, got <{}>", root.name));
    }
    let batch_number = required(&root, "PCH")?.to_owned();
    required(&root, "FYDM")?;
    required(&root, "FYMC")?;
    let list = root.child("CXLIST").ok_or("<GQCX> 缺少 <CXLIST>")?;
    let mut items = Vec::new();
    for xx in list.children("CXXX") {
        for tag in ["AH", "MC"] {
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
            return Err("<CXXX> 未列明执行人员（<ZFRY>）".into());
        }
        items.push(Item {
            request_number: required(xx, "CXQQDH")?.to_owned(),
            id_type: required(xx, "ZJLX")?.to_owned(),
            id_number: required(xx, "ZJHM")?.to_owned(),
        });
    }
    if items.is_empty() {
        return Err("<CXLIST> 中没有 <CXXX>".into());
    }
    if items.len() > MAX_BATCH {
        return Err(format!(
            "一批最多 {MAX_BATCH} 个查询对象，收到 {} 个",
            items.len()
        ));
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
        "10" if len == 18 || len == 15 => None,
        "20" if len == 18 => None,
        "10" | "20" => Some(format!("证件号码长度错误（{len}位）")),
        other => Some(format!("不支持的证件类型：{other}")),
    }
}

async fn inquiry(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let batch = match read_batch(&body) {
        Ok(batch) => batch,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable batch");
            return error_reply(
                &agency,
                mode,
                StatusCode::BAD_REQUEST,
                INQUIRY_ROOT,
                "E001",
                &reason,
            );
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
    match feedback_document(agency.encoding_label(), &batch.batch_number, &answers) {
        Ok(text) => xml_reply(&agency, mode, StatusCode::OK, &text),
        Err(e) => error_reply(
            &agency,
            mode,
            StatusCode::INTERNAL_SERVER_ERROR,
            INQUIRY_ROOT,
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

fn new_document(label: &str) -> std::io::Result<XmlWriter> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some(label), None)))?;
    Ok(w)
}

fn finish(w: XmlWriter) -> std::io::Result<String> {
    String::from_utf8(w.into_inner()).map_err(std::io::Error::other)
}

/// The `GQFK` as text, its declaration naming `label`; encoded on the way
/// out.
pub(crate) fn feedback_document(
    label: &str,
    batch_number: &str,
    answers: &[(&str, Answer)],
) -> std::io::Result<String> {
    let mut w = new_document(label)?;
    w.create_element("GQFK").write_inner_content(|w| {
        text(w, "PCH", batch_number)?;
        w.create_element("FKLIST").write_inner_content(|w| {
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
    w.create_element("FKXX").write_inner_content(|w| {
        text(w, "CXQQDH", request_number)?;
        match &answer.outcome {
            Outcome::Found(found) => {
                text(w, "JG", "1")?;
                w.create_element("GQLIST").write_inner_content(|w| {
                    for e in found.equity() {
                        equity(w, e)?;
                    }
                    Ok(())
                })?;
                Ok(())
            }
            Outcome::NotFound => {
                text(w, "JG", "0")?;
                text(w, "YY", "无股权登记信息")
            }
            Outcome::Refused(reason) => {
                text(w, "JG", "9")?;
                text(w, "YY", reason)
            }
        }
    })?;
    Ok(())
}

fn equity(w: &mut XmlWriter, e: &EquityHolding) -> std::io::Result<()> {
    w.create_element("GQXX").write_inner_content(|w| {
        text(w, "QYMC", &e.company_name)?;
        text(w, "TYSHXYDM", &e.company_credit_code)?;
        text(w, "RJCZE", &money::yuan(e.subscribed_fen))?;
        text(w, "SJCZE", &money::yuan(e.paid_in_fen))?;
        text(w, "CGBL", &e.ratio_text())?;
        if e.freezes.is_empty() {
            w.create_element("DJLIST").write_empty()?;
            return Ok(());
        }
        w.create_element("DJLIST").write_inner_content(|w| {
            for m in &e.freezes {
                w.create_element("DJXX").write_inner_content(|w| {
                    text(w, "DJJG", &m.authority)?;
                    text(w, "DJWH", &m.document_number)?;
                    text(w, "DJJE", &money::yuan(m.amount_fen.unwrap_or(0)))?;
                    if let Some(start) = m.start_date {
                        text(w, "KSRQ", &start.format("%Y%m%d").to_string())?;
                    }
                    if let Some(end) = m.end_date {
                        text(w, "JSRQ", &end.format("%Y%m%d").to_string())?;
                    }
                    text(w, "LHXH", &m.queue_position.to_string())
                })?;
            }
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(())
}

/// A document in the agency's encoding (GBK), as its declaration says.
fn xml_reply(agency: &Agency, mode: FaultMode, status: StatusCode, document: &str) -> Response {
    let (bytes, _, _) = agency.encoding.encode(document);
    wire_reply(
        mode,
        status,
        &format!("application/xml; charset={}", agency.encoding_label()),
        bytes.into_owned(),
    )
}

/// The root of an inquiry's answer, and of a control order's.
const INQUIRY_ROOT: &str = "GQFK";
const CONTROL_ROOT: &str = "GQDJFK";

/// A message as a whole could not be (or would not be) read: its answer's
/// `root` with `CWDM` and `CWMS`.
fn error_reply(
    agency: &Agency,
    mode: FaultMode,
    status: StatusCode,
    root: &str,
    code: &str,
    message: &str,
) -> Response {
    let document = new_document(agency.encoding_label()).and_then(|mut w| {
        w.create_element(root).write_inner_content(|w| {
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

/// Reads a `GQDJ` (one freeze, renewal or release of equity); `Err` is why
/// the registry will not take it.
pub(crate) fn read_control(body: &[u8]) -> Result<ControlRequest, String> {
    let root = parse(&decode_document(body)?)?;
    if root.name != "GQDJ" {
        return Err(format!("expected <GQDJ>, got <{}>", root.name));
    }
    required(&root, "FYDM")?;
    required(&root, "MC")?;
    let id_type = required(&root, "ZJLX")?;
    if !matches!(id_type, "10" | "20") {
        return Err(format!("不支持的证件类型：{id_type}"));
    }
    let code = required(&root, "DJCS")?;
    let action = match Action::from_bank_code(code) {
        Some(action @ (Action::Freeze | Action::Renew | Action::Release)) => action,
        _ => return Err(format!("不支持的冻结措施：DJCS {code}")),
    };
    let officers: Vec<[&str; 3]> = root
        .children("ZFRY")
        .map(|o| ["XM", "GZZBH", "GWZBH"].map(|tag| o.text_of(tag).unwrap_or_default()))
        .collect();
    check_officers(&officers)?;
    let documents: Vec<(&str, &str, &str)> = root
        .child("WSLIST")
        .map(|list| {
            list.children("WS")
                .map(|d| {
                    let [kind, number, sha256] =
                        ["WSLX", "WSBH", "WSHASH"].map(|tag| d.text_of(tag).unwrap_or_default());
                    (kind, number, sha256)
                })
                .collect()
        })
        .unwrap_or_default();
    let request = ControlRequest {
        request_number: required(&root, "DJQQDH")?.to_owned(),
        action,
        case_number: required(&root, "AH")?.to_owned(),
        court_name: required(&root, "FYMC")?.to_owned(),
        holder_id: ids::normalise_id(required(&root, "ZJHM")?),
        prior_request_number: given(root.text_of("YDJQQDH")).map(str::to_owned),
        items: vec![ControlItem {
            target: required(&root, "TYSHXYDM")?.to_owned(),
            amount: None,
            start_date: read_date("KSRQ", root.text_of("KSRQ"), "%Y%m%d")?,
            end_date: read_date("JSRQ", root.text_of("JSRQ"), "%Y%m%d")?,
        }],
        documents: read_documents(&documents, "CDS", "XZTZS")?,
    };
    request.check_needs(false)?;
    Ok(request)
}

async fn control(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let request = match read_control(&body) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable control order");
            return error_reply(
                &agency,
                mode,
                StatusCode::BAD_REQUEST,
                CONTROL_ROOT,
                "E001",
                &reason,
            );
        }
    };
    let outcome = agency.take_control(mode, &request);
    control_reply(&agency, mode, &request.request_number, Some(&outcome))
}

async fn control_status(
    State(agency): State<Arc<Agency>>,
    Path(request_number): Path<String>,
) -> Response {
    let mode = agency.mode();
    let outcome = agency.query_control(mode, &request_number);
    control_reply(&agency, mode, &request_number, outcome.as_ref())
}

/// `DJZT`: 1 frozen (or the renewal or release made), 2 not frozen
/// (refused, or waiting with `LHXH` above 0), 3 released, 4 lapsed.
fn freeze_state(state: ControlState) -> &'static str {
    match state {
        ControlState::InForce => "1",
        ControlState::NotControlled | ControlState::Waiting => "2",
        ControlState::Released => "3",
        ControlState::Lapsed => "4",
    }
}

/// The `GQDJFK` about an order; `None`: a number never received (`DJZT` 0).
fn control_reply(
    agency: &Agency,
    mode: FaultMode,
    rn: &str,
    outcome: Option<&ControlOutcome>,
) -> Response {
    let compact = |d: Option<chrono::NaiveDate>| {
        d.map(|d| d.format("%Y%m%d").to_string())
            .unwrap_or_default()
    };
    let document = new_document(agency.encoding_label()).and_then(|mut w| {
        w.create_element("GQDJFK").write_inner_content(|w| {
            text(w, "DJQQDH", rn)?;
            let Some(outcome) = outcome else {
                text(w, "DJZT", "0")?;
                return text(w, "YY", "无此冻结请求");
            };
            for r in &outcome.results {
                text(w, "DJZT", freeze_state(r.state))?;
                text(w, "TYSHXYDM", &r.target)?;
                text(w, "DJJE", &money::yuan(r.controlled))?;
                text(w, "YY", &r.reason)?;
                text(w, "LHXH", &r.queue_position.to_string())?;
                text(w, "KSRQ", &compact(r.start_date))?;
                text(w, "JSRQ", &compact(r.end_date))?;
                text(w, "DJBH", &r.measure_number)?;
            }
            if outcome.acknowledged.is_empty() {
                return Ok(());
            }
            w.create_element("WSQRLIST").write_inner_content(|w| {
                for d in &outcome.acknowledged {
                    w.create_element("WSQR").write_inner_content(|w| {
                        text(w, "WSBH", &d.number)?;
                        text(w, "WSHASH", &d.sha256)
                    })?;
                }
                Ok(())
            })?;
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
            CONTROL_ROOT,
            "E999",
            &e.to_string(),
        ),
    }
}

/// An injected error (`E999` 系统繁忙) or throttling (429; `E429`),
/// nothing processed: in the root of the answer the request at `path`
/// would have had.
pub(crate) fn fault_reply(agency: &Agency, status: StatusCode, path: &str) -> Response {
    let (code, message) = if status == StatusCode::TOO_MANY_REQUESTS {
        ("E429", "请求过于频繁，请稍后重试")
    } else {
        ("E999", "系统繁忙，请稍后重试")
    };
    let root = if path.starts_with("/scjg/gqdj") {
        CONTROL_ROOT
    } else {
        INQUIRY_ROOT
    };
    error_reply(agency, FaultMode::Normal, status, root, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packs_gbk_batch_is_read() {
        let path = format!(
            "{}/../config/conformance/market-gbk-xml/batch-gbk.request.xml",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(path).expect("the pack is there");
        assert!(std::str::from_utf8(&body).is_err(), "the sample is GBK");
        let batch = read_batch(&body).expect("readable");
        assert_eq!(batch.batch_number, "P20261127000000031");
        assert_eq!(
            batch.items,
            [
                Item {
                    request_number: "Q1-market".into(),
                    id_type: "20".into(),
                    id_number: "91110000600037341L".into(),
                },
                Item {
                    request_number: "Q2-market".into(),
                    id_type: "10".into(),
                    id_number: "620503198812120015".into(),
                },
            ]
        );
    }

    #[test]
    fn a_batch_over_fifty_subjects_is_refused_whole() {
        let item = "<CXXX><CXQQDH>Q</CXQQDH><AH>A</AH><MC>M</MC><ZJLX>10</ZJLX>\
                    <ZJHM>620503198812120015</ZJHM><ZFRY><XM>X</XM><GZZBH>G</GZZBH>\
                    <GWZBH>W</GWZBH></ZFRY></CXXX>";
        let batch = |n: usize| {
            format!(
                "<GQCX><PCH>P</PCH><FYDM>甘0503</FYDM><FYMC>法院</FYMC><CXLIST>{}</CXLIST></GQCX>",
                item.repeat(n)
            )
        };
        assert_eq!(
            read_batch(batch(50).as_bytes()).map(|b| b.items.len()),
            Ok(50)
        );
        assert!(read_batch(batch(51).as_bytes()).is_err());
    }
}
