//! The `vehicle-soap` vehicle register (vehicle-v): SOAP 1.1 over HTTP, in
//! UTF-8, one subject per call, answered at once. `POST /vehicle/soap` with
//! `SOAPAction: "urn:example:vehicle:1#QueryVehicles"` takes a
//! `soap:Envelope` whose `soap:Body` holds one `v:QueryVehicles` and
//! answers a `v:QueryVehiclesResponse`: `Result` 1 with the subject's
//! vehicles (`Vehicle`: plate, plate type, VIN, make, first registration,
//! the state as one-letter flags, `KM` sealed and mortgaged, and the seals
//! standing on it, `Cfxx`, `Lhxh` 0 in force, 1, 2 ... waiting), or 0 with a
//! message. A request the register will not take is a `soap:Client` fault
//! with HTTP 500 and the reason in `faultstring`; its own trouble (the
//! injected errors) a `soap:Server` fault. Inquiries only: the register
//! takes no control orders here.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::agency::{Agency, wire_reply};
use crate::faults::FaultMode;
use crate::further_book::Vehicle;
use crate::ledger::{Answer, Outcome};
use crate::xml_tree::{Element, decode_document, parse};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new().route("/vehicle/soap", post(inquiry))
}

const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const VEHICLE_NS: &str = "urn:example:vehicle:1";
/// The `SOAPAction` of the query, quotes included (SOAP 1.1 quotes it).
pub(crate) const QUERY_ACTION: &str = "\"urn:example:vehicle:1#QueryVehicles\"";

/// One query, as far as the register cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub request_number: String,
    pub id_type: String,
    pub id_number: String,
}

fn required<'a>(element: &'a Element, tag: &str) -> Result<&'a str, String> {
    element
        .text_of(tag)
        .ok_or_else(|| format!("{} 缺少 {tag}", element.name))
}

/// Reads the envelope; `Err` is the client fault's reason.
pub(crate) fn read_query(headers: &HeaderMap, body: &[u8]) -> Result<Query, String> {
    let action = headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if action.trim() != QUERY_ACTION {
        return Err(format!("不支持的 SOAPAction：{action}"));
    }
    let root = parse(&decode_document(body)?)?;
    if root.name != "Envelope" || root.namespace.as_deref() != Some(SOAP_NS) {
        return Err("不是 SOAP 1.1 信封（soap:Envelope）".into());
    }
    let query = root
        .child("Body")
        .and_then(|b| b.child("QueryVehicles"))
        .filter(|q| q.namespace.as_deref() == Some(VEHICLE_NS))
        .ok_or("soap:Body 中没有 v:QueryVehicles")?;
    for tag in ["CaseNo", "Name"] {
        required(query, tag)?;
    }
    let mut officers = 0;
    for officer in query.children("Officer") {
        for tag in ["Name", "WorkCard", "Credential"] {
            required(officer, tag)?;
        }
        officers += 1;
    }
    if officers == 0 {
        return Err("未列明执行人员（Officer）".into());
    }
    Ok(Query {
        request_number: required(query, "ReqNo")?.to_owned(),
        id_type: required(query, "IdType")?.to_owned(),
        id_number: required(query, "IdNo")?.to_owned(),
    })
}

/// Why a readable query is refused, if it is.
fn refusal_for(query: &Query) -> Option<String> {
    let len = query.id_number.chars().count();
    match query.id_type.as_str() {
        "A" if len == 18 || len == 15 => None,
        "B" if len == 18 => None,
        "A" | "B" => Some(format!("证件号码长度错误（{len}位）")),
        other => Some(format!("不支持的证件类型：{other}")),
    }
}

async fn inquiry(State(agency): State<Arc<Agency>>, headers: HeaderMap, body: Bytes) -> Response {
    let mode = agency.mode();
    let query = match read_query(&headers, &body) {
        Ok(query) => query,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable query");
            return fault(
                mode,
                StatusCode::INTERNAL_SERVER_ERROR,
                "soap:Client",
                &reason,
            );
        }
    };
    let rn = query.request_number.as_str();
    let answer = agency.take_inquiry(mode, rn, &query.id_number, refusal_for(&query));
    if let Outcome::Refused(reason) = &answer.outcome {
        return fault(
            mode,
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Client",
            reason,
        );
    }
    match response_document(rn, &answer) {
        Ok(document) => soap_reply(mode, StatusCode::OK, document),
        Err(e) => fault(
            mode,
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Server",
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

/// An envelope around what `body` writes inside `soap:Body`.
fn envelope(body: impl FnOnce(&mut XmlWriter) -> std::io::Result<()>) -> std::io::Result<Vec<u8>> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("soap:Envelope")
        .with_attribute(("xmlns:soap", SOAP_NS))
        .with_attribute(("xmlns:v", VEHICLE_NS))
        .write_inner_content(|w| {
            w.create_element("soap:Body").write_inner_content(body)?;
            Ok(())
        })?;
    Ok(w.into_inner())
}

/// `v:QueryVehiclesResponse` for a subject found or not (a refusal is a
/// fault instead).
pub(crate) fn response_document(rn: &str, answer: &Answer) -> std::io::Result<Vec<u8>> {
    let vehicles: &[Vehicle] = match &answer.outcome {
        Outcome::Found(found) => found.vehicles(),
        Outcome::NotFound | Outcome::Refused(_) => &[],
    };
    envelope(|w| {
        w.create_element("v:QueryVehiclesResponse")
            .write_inner_content(|w| {
                text(w, "v:ReqNo", rn)?;
                if vehicles.is_empty() {
                    text(w, "v:Result", "0")?;
                    return text(w, "v:Message", "无车辆登记信息");
                }
                text(w, "v:Result", "1")?;
                for v in vehicles {
                    vehicle(w, v)?;
                }
                Ok(())
            })?;
        Ok(())
    })
}

fn vehicle(w: &mut XmlWriter, v: &Vehicle) -> std::io::Result<()> {
    w.create_element("v:Vehicle").write_inner_content(|w| {
        text(w, "v:Hphm", &v.plate_number)?;
        text(w, "v:Hpzl", &v.plate_type)?;
        text(w, "v:Clsbdh", &v.vin)?;
        text(w, "v:Clpp", &v.make_model)?;
        text(
            w,
            "v:Ccdjrq",
            &v.first_registered.format("%Y-%m-%d").to_string(),
        )?;
        text(w, "v:Zt", &v.state_flags())?;
        for seal in &v.seals {
            w.create_element("v:Cfxx").write_inner_content(|w| {
                text(w, "v:Cfjg", &seal.authority)?;
                text(w, "v:Cfwh", &seal.document_number)?;
                if let Some(start) = seal.start_date {
                    text(w, "v:Cfrq", &start.format("%Y-%m-%d").to_string())?;
                }
                if let Some(end) = seal.end_date {
                    text(w, "v:Jfrq", &end.format("%Y-%m-%d").to_string())?;
                }
                text(w, "v:Lhxh", &seal.queue_position.to_string())
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

fn soap_reply(mode: FaultMode, status: StatusCode, document: Vec<u8>) -> Response {
    wire_reply(mode, status, "text/xml; charset=UTF-8", document)
}

/// A `soap:Fault` (SOAP 1.1 sends it with HTTP 500; the injected errors
/// keep their own status).
fn fault(mode: FaultMode, status: StatusCode, code: &str, reason: &str) -> Response {
    let document = envelope(|w| {
        w.create_element("soap:Fault").write_inner_content(|w| {
            text(w, "faultcode", code)?;
            text(w, "faultstring", reason)
        })?;
        Ok(())
    });
    match document {
        Ok(document) => soap_reply(mode, status, document),
        Err(_) => wire_reply(mode, status, "text/plain", reason.as_bytes().to_vec()),
    }
}

/// An injected error (`soap:Server`, 系统繁忙) or throttling (429),
/// nothing processed.
pub(crate) fn fault_reply(status: StatusCode) -> Response {
    let reason = if status == StatusCode::TOO_MANY_REQUESTS {
        "请求过于频繁，请稍后重试"
    } else {
        "系统繁忙，请稍后重试"
    };
    fault(FaultMode::Normal, status, "soap:Server", reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_request() -> Vec<u8> {
        let path = format!(
            "{}/../config/conformance/vehicle-soap/found.request.xml",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).expect("the pack is there")
    }

    fn action() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("soapaction", QUERY_ACTION.parse().expect("a header value"));
        headers
    }

    #[test]
    fn the_packs_request_is_read() {
        let query = read_query(&action(), &pack_request()).expect("readable");
        assert_eq!(
            query,
            Query {
                request_number: "Q1-vehicle-x".into(),
                id_type: "A".into(),
                id_number: "62050319850615003X".into(),
            }
        );
        assert_eq!(refusal_for(&query), None);
    }

    #[test]
    fn a_query_without_its_action_or_envelope_is_a_client_fault() {
        assert!(read_query(&HeaderMap::new(), &pack_request()).is_err());
        assert!(read_query(&action(), b"<QueryVehicles/>").is_err());
    }
}
