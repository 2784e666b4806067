//! The `iso-bank-xml` bank (bank-d): `POST /iso/v1/account-inquiries` takes
//! a `Document` in the namespace `urn:example:court:acctinq:001` holding an
//! `AcctInqReq` with one `Inq` per subject, and answers one `Rpt` per `Inq`
//! in an `AcctInqRpt`: status as an attribute (`Sts Cd`), amounts in integer
//! fen, dates `yyyy-MM-dd`, always UTF-8 (docs/wire-formats.md). Errors are
//! `<Err Cd="...">` documents: `FF01` for a request the bank cannot read
//! (400), `BUSY` under the `error` fault (503). Written with quick-xml
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

use crate::agency::{Agency, wire_reply};
use crate::bank_book::Account;
use crate::faults::FaultMode;
use crate::ledger::{Answer, Outcome};
use crate::xml_tree::{Element, declared_encoding, decode_document, parse};

/// The namespace of requests, replies and error documents.
const NAMESPACE: &str = "urn:example:court:acctinq:001";

const CONTENT_TYPE: &str = "application/xml; charset=UTF-8";

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new().route("/iso/v1/account-inquiries", post(inquiry))
}

/// One `Inq`, as far as the bank cares.
struct Item {
    request_number: String,
    /// `Tp` of `Pty/Id`: `NIDN` or `USCC` (anything else is refused).
    id_type: String,
    id_number: String,
}

fn required<'a>(element: &'a Element, tag: &str) -> Result<&'a str, String> {
    element
        .text_of(tag)
        .ok_or_else(|| format!("<{}> lacks <{tag}>", element.name))
}

fn child<'a>(element: &'a Element, tag: &str) -> Result<&'a Element, String> {
    element
        .child(tag)
        .ok_or_else(|| format!("<{}> lacks <{tag}>", element.name))
}

/// Reads and checks a whole request; the first problem makes it unreadable.
fn read_request(body: &[u8]) -> Result<Vec<Item>, String> {
    if let Some(label) = declared_encoding(body)
        && encoding_rs::Encoding::for_label(label.as_bytes()) != Some(encoding_rs::UTF_8)
    {
        return Err(format!("the encoding must be UTF-8, not {label:?}"));
    }
    let root = parse(&decode_document(body)?)?;
    if root.name != "Document" {
        return Err(format!("expected <Document>, got <{}>", root.name));
    }
    if let Some(stray) = root
        .descendants()
        .into_iter()
        .find(|e| e.namespace.as_deref() != Some(NAMESPACE))
    {
        return Err(format!(
            "<{}> is in namespace {:?}, expected {NAMESPACE:?}",
            stray.name,
            stray.namespace.as_deref().unwrap_or("")
        ));
    }
    let request = child(&root, "AcctInqReq")?;
    let header = child(request, "GrpHdr")?;
    required(header, "MsgId")?;
    let court = child(header, "Court")?;
    if court.attr("Cd").is_none_or(|c| c.trim().is_empty()) || court.text().is_empty() {
        return Err("<Court> needs a Cd attribute and a name".into());
    }
    let mut items = Vec::new();
    for inq in request.children("Inq") {
        required(inq, "CaseRef")?;
        let party = child(inq, "Pty")?;
        required(party, "Nm")?;
        let id = child(party, "Id")?;
        let id_type = id
            .attr("Tp")
            .ok_or("<Id> lacks its Tp attribute")?
            .trim()
            .to_owned();
        if id.text().is_empty() {
            return Err("<Id> is empty".into());
        }
        let mut officers = 0;
        for officer in inq.children("Offcr") {
            for tag in ["Nm", "WorkCard", "Cred"] {
                required(officer, tag)?;
            }
            officers += 1;
        }
        if officers == 0 {
            return Err("<Inq> names no officer (<Offcr>)".into());
        }
        items.push(Item {
            request_number: required(inq, "InqId")?.to_owned(),
            id_type,
            id_number: id.text().to_owned(),
        });
    }
    if items.is_empty() {
        return Err("<AcctInqReq> holds no <Inq>".into());
    }
    Ok(items)
}

/// Why a readable inquiry is refused, if it is.
fn refusal_for(item: &Item) -> Option<String> {
    let len = item.id_number.chars().count();
    match item.id_type.as_str() {
        "NIDN" if len == 18 || len == 15 => None,
        "USCC" if len == 18 => None,
        "NIDN" | "USCC" => Some(format!("identifier has {len} characters")),
        other => Some(format!("identifier type {other:?} is not supported")),
    }
}

async fn inquiry(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let items = match read_request(&body) {
        Ok(items) => items,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable request");
            return error_reply(mode, StatusCode::BAD_REQUEST, "FF01", &reason);
        }
    };
    let answers: Vec<(&str, Answer)> = items
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
    match report_document(&answers) {
        Ok(text) => wire_reply(mode, StatusCode::OK, CONTENT_TYPE, text.into_bytes()),
        Err(e) => error_reply(
            mode,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTL",
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

/// `<Amt Ccy="...">fen</Amt>`.
fn amount(w: &mut XmlWriter, currency: &str, fen: i64) -> std::io::Result<()> {
    w.create_element("Amt")
        .with_attribute(("Ccy", currency))
        .write_text_content(BytesText::new(&fen.to_string()))?;
    Ok(())
}

/// A whole document: the declaration and `<Document xmlns=...>` around
/// what `content` writes.
fn document(
    content: impl FnOnce(&mut XmlWriter) -> std::io::Result<()>,
) -> std::io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("Document")
        .with_attribute(("xmlns", NAMESPACE))
        .write_inner_content(content)?;
    String::from_utf8(w.into_inner()).map_err(std::io::Error::other)
}

fn report_document(answers: &[(&str, Answer)]) -> std::io::Result<String> {
    document(|w| {
        w.create_element("AcctInqRpt").write_inner_content(|w| {
            for (request_number, answer) in answers {
                let accounts: &[Account] = match &answer.outcome {
                    Outcome::Found(found) => found.accounts(),
                    Outcome::NotFound | Outcome::Refused(_) => &[],
                };
                w.create_element("Rpt").write_inner_content(|w| {
                    text(w, "InqId", request_number)?;
                    status(w, &answer.outcome)?;
                    for a in accounts {
                        account(w, a)?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
        Ok(())
    })
}

/// `<Sts Cd="FOUND"/>`, `<Sts Cd="NONE"/>` or `<Sts Cd="RJCT"><Rsn>why</Rsn></Sts>`.
fn status(w: &mut XmlWriter, outcome: &Outcome) -> std::io::Result<()> {
    let sts = w.create_element("Sts");
    match outcome {
        Outcome::Found(_) => sts.with_attribute(("Cd", "FOUND")).write_empty()?,
        Outcome::NotFound => sts.with_attribute(("Cd", "NONE")).write_empty()?,
        Outcome::Refused(reason) => sts
            .with_attribute(("Cd", "RJCT"))
            .write_inner_content(|w| text(w, "Rsn", reason))?,
    };
    Ok(())
}

fn account(w: &mut XmlWriter, a: &Account) -> std::io::Result<()> {
    w.create_element("Acct").write_inner_content(|w| {
        w.create_element("Id")
            .write_inner_content(|w| text(w, "Othr", &a.account_number))?;
        w.create_element("Tp")
            .with_attribute(("Cd", a.kind.iso_code()))
            .write_empty()?;
        text(w, "Ccy", &a.currency)?;
        w.create_element("Svcr")
            .write_inner_content(|w| text(w, "BrnchNm", &a.branch))?;
        for (kind, fen) in [("CLBD", a.balance_fen), ("ITAV", a.available_fen)] {
            w.create_element("Bal")
                .with_attribute(("Tp", kind))
                .write_inner_content(|w| amount(w, &a.currency, fen))?;
        }
        for m in &a.measures {
            w.create_element("Hold").write_inner_content(|w| {
                text(w, "Auth", &m.authority)?;
                text(w, "Ref", &m.document_number)?;
                amount(w, &a.currency, m.amount_fen)?;
                text(w, "XpryDt", &m.end_date.format("%Y-%m-%d").to_string())?;
                text(w, "Queued", if m.waiting { "true" } else { "false" })
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

/// `<Document xmlns=...><Err Cd="...">message</Err></Document>`.
/// An injected error (`mode: error`, `error_rate`; `BUSY`) or throttling
/// (429; `THROTTLED`), nothing processed.
pub(crate) fn fault_reply(status: StatusCode) -> Response {
    if status == StatusCode::TOO_MANY_REQUESTS {
        error_reply(
            FaultMode::Normal,
            status,
            "THROTTLED",
            "too many requests, retry later",
        )
    } else {
        error_reply(
            FaultMode::Normal,
            status,
            "BUSY",
            "service temporarily unavailable, retry later",
        )
    }
}

fn error_reply(mode: FaultMode, status: StatusCode, code: &str, message: &str) -> Response {
    let document = document(|w| {
        w.create_element("Err")
            .with_attribute(("Cd", code))
            .write_text_content(BytesText::new(message))?;
        Ok(())
    });
    match document {
        Ok(document) => wire_reply(mode, status, CONTENT_TYPE, document.into_bytes()),
        Err(_) => wire_reply(mode, status, "text/plain", message.as_bytes().to_vec()),
    }
}
