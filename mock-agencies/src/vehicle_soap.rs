//! The `vehicle-soap` vehicle register (vehicle-v): SOAP 1.1 over HTTP, in
//! UTF-8, one subject per call, answered at once. Everything goes to
//! `POST /vehicle/soap`; the `SOAPAction` says what the envelope holds.
//!
//! `"urn:example:vehicle:1#QueryVehicles"`: a `v:QueryVehicles` is answered
//! with a `v:QueryVehiclesResponse`: `Result` 1 with the subject's vehicles
//! (`Vehicle`: plate, plate type, VIN, make, first registration, the state
//! as one-letter flags, `KM` sealed and mortgaged, and the seals standing
//! on it, `Cfxx`, `Lhxh` 0 in force, 1, 2 ... waiting), or 0 with a
//! message.
//!
//! `"urn:example:vehicle:1#ControlVehicle"`: a `v:ControlVehicle` seals
//! (`Kzcs` 11), renews (12) or releases (14) a seal on one vehicle by its
//! VIN (`control` decides), answered at once with a
//! `v:ControlVehicleResponse`: `Kzzt` 1 in force (or the renewal or
//! release made), 2 not sealed (waiting in line when `Lhxh` is above 0), 3
//! released, 4 lapsed; the reason (`Yy`), the seal's dates, the register's
//! number of it (`Kzbh`) and the documents it received (`Wsqr`).
//! `"urn:example:vehicle:1#QueryControl"`: a `v:QueryControl` naming a
//! request number is answered with a `v:QueryControlResponse` of the same
//! fields as it stands now, `Kzzt` 0 for a number never received.
//!
//! A request the register will not take (unreadable, an unknown action, an
//! order without two officers or its documents, the `refuse` fault) is a
//! `soap:Client` fault with HTTP 500 and the reason in `faultstring`,
//! nothing taken in; its own trouble (the injected errors) a `soap:Server`
//! fault.

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
use crate::control::{
    Action, ControlItem, ControlOutcome, ControlRequest, ControlState, check_officers, given,
    read_date, read_documents,
};
use crate::faults::FaultMode;
use crate::further_book::Vehicle;
use crate::ids;
use crate::ledger::{Answer, Outcome};
use crate::xml_tree::{Element, decode_document, parse};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new().route("/vehicle/soap", post(soap))
}

const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const VEHICLE_NS: &str = "urn:example:vehicle:1";
/// The `SOAPAction` of the query, quotes included (SOAP 1.1 quotes it).
pub(crate) const QUERY_ACTION: &str = "\"urn:example:vehicle:1#QueryVehicles\"";
/// The `SOAPAction` of a control order.
pub(crate) const CONTROL_ACTION: &str = "\"urn:example:vehicle:1#ControlVehicle\"";
/// The `SOAPAction` of a status query about a control order.
pub(crate) const STATUS_ACTION: &str = "\"urn:example:vehicle:1#QueryControl\"";

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

fn soap_action(headers: &HeaderMap) -> &str {
    headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
}

/// A SOAP 1.1 envelope, parsed.
fn envelope_of(body: &[u8]) -> Result<Element, String> {
    let root = parse(&decode_document(body)?)?;
    if root.name != "Envelope" || root.namespace.as_deref() != Some(SOAP_NS) {
        return Err("不是 SOAP 1.1 信封（soap:Envelope）".into());
    }
    Ok(root)
}

/// The register's element `name` in the envelope's body.
fn body_part<'a>(root: &'a Element, name: &str) -> Result<&'a Element, String> {
    root.child("Body")
        .and_then(|b| b.child(name))
        .filter(|q| q.namespace.as_deref() == Some(VEHICLE_NS))
        .ok_or_else(|| format!("soap:Body 中没有 v:{name}"))
}

/// Reads the envelope; `Err` is the client fault's reason.
pub(crate) fn read_query(headers: &HeaderMap, body: &[u8]) -> Result<Query, String> {
    let action = soap_action(headers);
    if action != QUERY_ACTION {
        return Err(format!("不支持的 SOAPAction：{action}"));
    }
    let root = envelope_of(body)?;
    let query = body_part(&root, "QueryVehicles")?;
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

/// Every call: what the `SOAPAction` asks for (anything else is read as a
/// query, and faulted for its action).
async fn soap(State(agency): State<Arc<Agency>>, headers: HeaderMap, body: Bytes) -> Response {
    match soap_action(&headers) {
        CONTROL_ACTION => control(&agency, &body),
        STATUS_ACTION => control_status(&agency, &body),
        _ => inquiry(&agency, &headers, &body),
    }
}

fn inquiry(agency: &Agency, headers: &HeaderMap, body: &[u8]) -> Response {
    let mode = agency.mode();
    let query = match read_query(headers, body) {
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

// Control orders ------------------------------------------------------------

/// Reads a `v:ControlVehicle`; `Err` is the client fault's reason.
pub(crate) fn read_control(body: &[u8]) -> Result<ControlRequest, String> {
    let root = envelope_of(body)?;
    let court_name = root
        .child("Header")
        .and_then(|h| h.child("Auth"))
        .and_then(|a| a.text_of("DeptName"))
        .ok_or("soap:Header 中没有 v:Auth/v:DeptName")?;
    let order = body_part(&root, "ControlVehicle")?;
    let code = required(order, "Kzcs")?;
    let action =
        Action::from_registry_code(code).ok_or_else(|| format!("不支持的控制措施：Kzcs {code}"))?;
    required(order, "Name")?;
    let id_type = required(order, "IdType")?;
    if !matches!(id_type, "A" | "B") {
        return Err(format!("不支持的证件类型：{id_type}"));
    }
    let officers: Vec<[&str; 3]> = order
        .children("Officer")
        .map(|o| ["Name", "WorkCard", "Credential"].map(|tag| o.text_of(tag).unwrap_or_default()))
        .collect();
    check_officers(&officers)?;
    let documents: Vec<(&str, &str, &str)> = order
        .children("Document")
        .map(|d| {
            let [kind, number, sha256] =
                ["Kind", "Number", "Sha256"].map(|tag| d.text_of(tag).unwrap_or_default());
            (kind, number, sha256)
        })
        .collect();
    let request = ControlRequest {
        request_number: required(order, "ReqNo")?.to_owned(),
        action,
        case_number: required(order, "CaseNo")?.to_owned(),
        court_name: court_name.to_owned(),
        holder_id: ids::normalise_id(required(order, "IdNo")?),
        prior_request_number: given(order.text_of("PriorReqNo")).map(str::to_owned),
        items: vec![ControlItem {
            target: required(order, "Clsbdh")?.to_owned(),
            amount: None,
            start_date: read_date("StartDate", order.text_of("StartDate"), "%Y-%m-%d")?,
            end_date: read_date("EndDate", order.text_of("EndDate"), "%Y-%m-%d")?,
        }],
        documents: read_documents(&documents, "CDS", "XZTZS")?,
    };
    request.check_needs(false)?;
    Ok(request)
}

/// Reads a `v:QueryControl`: the request number asked about.
pub(crate) fn read_status_query(body: &[u8]) -> Result<String, String> {
    let root = envelope_of(body)?;
    let query = body_part(&root, "QueryControl")?;
    Ok(required(query, "ReqNo")?.to_owned())
}

fn control(agency: &Agency, body: &[u8]) -> Response {
    let mode = agency.mode();
    let request = match read_control(body) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "control order refused at intake");
            return client_fault(mode, &reason);
        }
    };
    if mode == FaultMode::Refuse {
        return client_fault(mode, crate::agency::MAINTENANCE);
    }
    let outcome = agency.take_control(mode, &request);
    control_reply(
        mode,
        "v:ControlVehicleResponse",
        &request.request_number,
        Some(&outcome),
    )
}

fn control_status(agency: &Agency, body: &[u8]) -> Response {
    let mode = agency.mode();
    let rn = match read_status_query(body) {
        Ok(rn) => rn,
        Err(reason) => return client_fault(mode, &reason),
    };
    if mode == FaultMode::Refuse {
        return client_fault(mode, crate::agency::MAINTENANCE);
    }
    let outcome = agency.query_control(mode, &rn);
    control_reply(mode, "v:QueryControlResponse", &rn, outcome.as_ref())
}

/// `Kzzt`: 1 in force (or the renewal or release made), 2 not sealed
/// (refused, or waiting with `Lhxh` above 0), 3 released, 4 lapsed.
fn seal_state(state: ControlState) -> &'static str {
    match state {
        ControlState::InForce => "1",
        ControlState::NotControlled | ControlState::Waiting => "2",
        ControlState::Released => "3",
        ControlState::Lapsed => "4",
    }
}

/// The answer about an order (`None`: a request number never received,
/// `Kzzt` 0).
fn control_reply(
    mode: FaultMode,
    element: &str,
    rn: &str,
    outcome: Option<&ControlOutcome>,
) -> Response {
    let iso = |d: Option<chrono::NaiveDate>| {
        d.map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let document = envelope(|w| {
        w.create_element(element).write_inner_content(|w| {
            text(w, "v:ReqNo", rn)?;
            let Some(outcome) = outcome else {
                text(w, "v:Kzzt", "0")?;
                return text(w, "v:Yy", "无此控制请求");
            };
            for r in &outcome.results {
                text(w, "v:Kzzt", seal_state(r.state))?;
                text(w, "v:Clsbdh", &r.target)?;
                text(w, "v:Yy", &r.reason)?;
                text(w, "v:Lhxh", &r.queue_position.to_string())?;
                text(w, "v:Cfrq", &iso(r.start_date))?;
                text(w, "v:Jfrq", &iso(r.end_date))?;
                text(w, "v:Kzbh", &r.measure_number)?;
            }
            for d in &outcome.acknowledged {
                w.create_element("v:Wsqr").write_inner_content(|w| {
                    text(w, "v:Number", &d.number)?;
                    text(w, "v:Sha256", &d.sha256)
                })?;
            }
            Ok(())
        })?;
        Ok(())
    });
    match document {
        Ok(document) => soap_reply(mode, StatusCode::OK, document),
        Err(e) => fault(
            mode,
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Server",
            &e.to_string(),
        ),
    }
}

/// A `soap:Client` fault: the register will not take the request.
fn client_fault(mode: FaultMode, reason: &str) -> Response {
    fault(
        mode,
        StatusCode::INTERNAL_SERVER_ERROR,
        "soap:Client",
        reason,
    )
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
