//! The `court-bank-xml` bank (bank-a): `POST /ckxt/cxqq` takes a batch of
//! subjects (`CXQQ`) and answers one `CXFK` per subject in one `CXFKPC`, in
//! the agency's configured encoding (GB18030 for bank-a), exactly as
//! docs/wire-formats.md lays it out. Written with quick-xml and encoding_rs
//! directly, never with the gateway's codec, so the two check each other.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::agency::{Agency, Holdings, wire_reply};
use crate::bank_book::Account;
use crate::ledger::{Answer, FaultMode, Outcome, RequestKind};
use crate::xml_tree::{Element, decode_document, parse};
use crate::{ids, money};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new().route("/ckxt/cxqq", post(inquiry))
}

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
    let mode = agency.arrive().await;
    if mode == FaultMode::Error {
        return error_reply(
            &agency,
            mode,
            StatusCode::SERVICE_UNAVAILABLE,
            "E999",
            "系统繁忙，请稍后重试",
        );
    }
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
            let holder = ids::normalise_id(&item.id_number);
            agency.record(&item.request_number, RequestKind::Inquiry, Some(&holder));
            tracing::info!(
                agency = agency.id(),
                request_number = %item.request_number,
                subject = %ids::mask(&holder),
                "inquiry"
            );
            let answer = if mode == FaultMode::Refuse {
                Agency::injected_refusal(&holder)
            } else {
                agency.answer(&item.request_number, &holder, refusal_for(item))
            };
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
                feedback(w, agency, request_number, answer)?;
            }
            Ok(())
        })?;
        Ok(())
    })?;
    finish(w)
}

fn feedback(
    w: &mut XmlWriter,
    agency: &Agency,
    request_number: &str,
    answer: &Answer,
) -> std::io::Result<()> {
    let (code, reason, positions): (&str, &str, &[usize]) = match &answer.outcome {
        Outcome::Found(p) => ("1", "", p),
        Outcome::NotFound => ("0", "", &[]),
        Outcome::Refused(reason) => ("9", reason, &[]),
    };
    let Holdings::Bank(book) = &agency.holdings else {
        return Err(std::io::Error::other("a bank dialect on a registry"));
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
        let accounts: Vec<&Account> = positions.iter().filter_map(|&p| book.get(p)).collect();
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
