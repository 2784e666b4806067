//! The `securities-xml` securities depository (securities-s): XML in UTF-8,
//! one subject per query, submit then poll. `POST /sec/v1/queries` takes a
//! `SecQuery` and answers a `SecAck` at once: `Code` 0 with a ticket
//! (`SQ…`), or a refusal code with its reason (`Msg`). The result, settled
//! at submission, shows `result_delay_ms` later at
//! `GET /sec/v1/results/{ReqNo}`: a `SecResult` with `Code` `P` while
//! pending, then `F` with the holdings (`Holding acct= mkt=`: code, name,
//! quantity, free units, custodian, and the freezes standing on it by
//! quantity, `Frozen queue=` 0 in force, 1, 2 ... waiting), `N` when the
//! subject has no account, `R` when refused. A request number never
//! submitted is a 404.
//!
//! Control orders go the same way: `POST /sec/v1/controls` takes a
//! `SecControl` (freeze, renew or release a freeze of shares of one
//! security in one account, `Position acct= code= qty=`), decides it at
//! once (`control`: frozen are at most the free shares, the rest a
//! shortfall; none free behind another authority's freeze, it waits in
//! line) and acknowledges it with a ticket (`SC…`), or refuses it at intake
//! (`E12`, nothing taken in; unreadable: HTTP 400, `E01`).
//! `GET /sec/v1/control-results/{ReqNo}` is the poll and the status query:
//! `Code` `P` until `result_delay_ms` has passed, then `D` with the freeze
//! as it stands now (`State`, `Frozen`, `Short`, `Queue`, dates, `FreezeNo`,
//! `Msg`, and `DocAck` per document received); a number never received is
//! a 404 with `Code` `U`.

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
    read_date, read_documents, securities_target,
};
use crate::faults::FaultMode;
use crate::further_book::SecuritiesHolding;
use crate::ids;
use crate::ledger::{Answer, Outcome, RequestKind};
use crate::xml_tree::{Element, decode_document, parse};

pub(crate) fn routes() -> Router<Arc<Agency>> {
    Router::new()
        .route("/sec/v1/queries", post(submit))
        .route("/sec/v1/results/{request_number}", get(poll))
        .route("/sec/v1/controls", post(control_submit))
        .route(
            "/sec/v1/control-results/{request_number}",
            get(control_poll),
        )
}

const RESULTS_PREFIXES: [&str; 2] = ["/sec/v1/results/", "/sec/v1/control-results/"];

/// One query, as far as the depository cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub request_number: String,
    pub id_type: String,
    pub id_number: String,
}

fn required<'a>(element: &'a Element, tag: &str) -> Result<&'a str, String> {
    element
        .text_of(tag)
        .ok_or_else(|| format!("<{}> 缺少 <{tag}>", element.name))
}

/// Reads a `SecQuery`; `Err` is why it is unreadable.
pub(crate) fn read_query(body: &[u8]) -> Result<Query, String> {
    let root = parse(&decode_document(body)?)?;
    if root.name != "SecQuery" {
        return Err(format!("expected <SecQuery>, got <{}>", root.name));
    }
    required(&root, "CaseNo")?;
    let court = root.child("Court").ok_or("<SecQuery> 缺少 <Court>")?;
    if court.attr("code").is_none_or(str::is_empty) || court.text().is_empty() {
        return Err("<Court> 须有 code 和法院名称".into());
    }
    let holder = root.child("Holder").ok_or("<SecQuery> 缺少 <Holder>")?;
    required(holder, "Name")?;
    let mut officers = 0;
    for officer in root.children("Officer") {
        for tag in ["Name", "WorkCard", "Credential"] {
            required(officer, tag)?;
        }
        officers += 1;
    }
    if officers == 0 {
        return Err("未列明执行人员（<Officer>）".into());
    }
    Ok(Query {
        request_number: required(&root, "ReqNo")?.to_owned(),
        id_type: required(holder, "IdType")?.to_owned(),
        id_number: required(holder, "IdNo")?.to_owned(),
    })
}

/// Why a readable query is refused, if it is.
fn refusal_for(query: &Query) -> Option<String> {
    let len = query.id_number.chars().count();
    match query.id_type.as_str() {
        "ID" if len == 18 || len == 15 => None,
        "USCC" if len == 18 => None,
        "ID" | "USCC" => Some(format!("证件号码长度错误（{len}位）")),
        other => Some(format!("不支持的证件类型：{other}")),
    }
}

async fn submit(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let query = match read_query(&body) {
        Ok(query) => query,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "unreadable query");
            return ack(
                mode,
                StatusCode::BAD_REQUEST,
                None,
                "E01",
                None,
                Some(&reason),
            );
        }
    };
    let rn = query.request_number.as_str();
    let answer = agency.take_inquiry(mode, rn, &query.id_number, refusal_for(&query));
    match (&answer.ticket, &answer.outcome) {
        (Some(ticket), _) => ack(
            mode,
            StatusCode::OK,
            Some(rn),
            "0",
            Some(&ticket_text(&ticket.number)),
            None,
        ),
        (None, Outcome::Refused(reason)) => {
            ack(mode, StatusCode::OK, Some(rn), "E12", None, Some(reason))
        }
        (None, _) => ack(mode, StatusCode::OK, Some(rn), "E12", None, Some("未受理")),
    }
}

fn ticket_text(number: &str) -> String {
    format!("SQ{number}")
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
        return xml_reply(mode, StatusCode::NOT_FOUND, unknown(rn));
    };
    let document = if mode == FaultMode::Refuse {
        result_document(rn, &Agency::injected_refusal(&answer.holder_id))
    } else if answer
        .ticket
        .as_ref()
        .is_some_and(|t| tokio::time::Instant::now() < t.ready_at)
    {
        pending(rn, &answer)
    } else {
        result_document(rn, &answer)
    };
    xml_reply(mode, StatusCode::OK, document)
}

type XmlWriter = Writer<Vec<u8>>;

fn text(w: &mut XmlWriter, tag: &str, content: &str) -> std::io::Result<()> {
    w.create_element(tag)
        .write_text_content(BytesText::new(content))?;
    Ok(())
}

/// A document whose root `root` holds what `inner` writes.
fn document(
    root: &str,
    inner: impl FnOnce(&mut XmlWriter) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element(root).write_inner_content(inner)?;
    Ok(w.into_inner())
}

fn xml_reply(mode: FaultMode, status: StatusCode, document: std::io::Result<Vec<u8>>) -> Response {
    match document {
        Ok(bytes) => wire_reply(mode, status, "application/xml; charset=UTF-8", bytes),
        Err(e) => wire_reply(
            mode,
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string().into_bytes(),
        ),
    }
}

/// A `SecAck`: the intake's answer.
fn ack(
    mode: FaultMode,
    status: StatusCode,
    rn: Option<&str>,
    code: &str,
    ticket: Option<&str>,
    message: Option<&str>,
) -> Response {
    let bytes = document("SecAck", |w| {
        if let Some(rn) = rn {
            text(w, "ReqNo", rn)?;
        }
        text(w, "Code", code)?;
        if let Some(ticket) = ticket {
            text(w, "Ticket", ticket)?;
        }
        if let Some(message) = message {
            text(w, "Msg", message)?;
        }
        Ok(())
    });
    xml_reply(mode, status, bytes)
}

fn unknown(rn: &str) -> std::io::Result<Vec<u8>> {
    document("SecResult", |w| {
        text(w, "ReqNo", rn)?;
        text(w, "Code", "U")?;
        text(w, "Msg", "无此查询")
    })
}

fn pending(rn: &str, answer: &Answer) -> std::io::Result<Vec<u8>> {
    document("SecResult", |w| {
        text(w, "ReqNo", rn)?;
        text(w, "Code", "P")?;
        if let Some(ticket) = &answer.ticket {
            text(w, "Ticket", &ticket_text(&ticket.number))?;
        }
        Ok(())
    })
}

/// The `SecResult` once the result is ready.
pub(crate) fn result_document(rn: &str, answer: &Answer) -> std::io::Result<Vec<u8>> {
    document("SecResult", |w| {
        text(w, "ReqNo", rn)?;
        match &answer.outcome {
            Outcome::Found(found) => {
                text(w, "Code", "F")?;
                for h in found.securities() {
                    holding(w, h)?;
                }
                Ok(())
            }
            Outcome::NotFound => text(w, "Code", "N"),
            Outcome::Refused(reason) => {
                text(w, "Code", "R")?;
                text(w, "Msg", reason)
            }
        }
    })
}

fn holding(w: &mut XmlWriter, h: &SecuritiesHolding) -> std::io::Result<()> {
    w.create_element("Holding")
        .with_attribute(("acct", h.securities_account.as_str()))
        .with_attribute(("mkt", h.market.as_str()))
        .write_inner_content(|w| {
            text(w, "Code", &h.security_code)?;
            text(w, "Name", &h.security_name)?;
            text(w, "Qty", &h.quantity.to_string())?;
            text(w, "Free", &h.free_quantity().to_string())?;
            text(w, "Custodian", &h.custodian)?;
            for m in &h.freezes {
                let quantity = m.quantity.unwrap_or(0).to_string();
                let queue = m.queue_position.to_string();
                let from = m.start_date.map(|d| d.format("%Y-%m-%d").to_string());
                let until = m.end_date.map(|d| d.format("%Y-%m-%d").to_string());
                let mut frozen = w
                    .create_element("Frozen")
                    .with_attribute(("qty", quantity.as_str()))
                    .with_attribute(("by", m.authority.as_str()))
                    .with_attribute(("doc", m.document_number.as_str()));
                if let Some(from) = &from {
                    frozen = frozen.with_attribute(("from", from.as_str()));
                }
                if let Some(until) = &until {
                    frozen = frozen.with_attribute(("until", until.as_str()));
                }
                frozen
                    .with_attribute(("queue", queue.as_str()))
                    .write_empty()?;
            }
            Ok(())
        })?;
    Ok(())
}

// Control orders ------------------------------------------------------------

/// Reads a `SecControl`; `Err` is why the depository will not take it.
pub(crate) fn read_control(body: &[u8]) -> Result<ControlRequest, String> {
    let root = parse(&decode_document(body)?)?;
    if root.name != "SecControl" {
        return Err(format!("expected <SecControl>, got <{}>", root.name));
    }
    let court = root.child("Court").ok_or("<SecControl> 缺少 <Court>")?;
    if court.attr("code").is_none_or(str::is_empty) || court.text().is_empty() {
        return Err("<Court> 须有 code 和法院名称".into());
    }
    let holder = root.child("Holder").ok_or("<SecControl> 缺少 <Holder>")?;
    required(holder, "Name")?;
    let id_type = required(holder, "IdType")?;
    if !matches!(id_type, "ID" | "USCC") {
        return Err(format!("不支持的证件类型：{id_type}"));
    }
    let word = required(&root, "Action")?;
    let action = match Action::from_word(word) {
        Some(action @ (Action::Freeze | Action::Renew | Action::Release)) => action,
        _ => return Err(format!("不支持的控制措施：{word}")),
    };
    let position = root
        .child("Position")
        .ok_or("<SecControl> 缺少 <Position>")?;
    let account = given(position.attr("acct")).ok_or("<Position> 缺少 acct")?;
    let code = given(position.attr("code")).ok_or("<Position> 缺少 code")?;
    let quantity = given(position.attr("qty"))
        .map(|q| {
            q.parse::<i64>()
                .map_err(|_| format!("<Position> qty 不是整数：{q}"))
        })
        .transpose()?;
    let term = root.child("Term");
    let officers: Vec<[&str; 3]> = root
        .children("Officer")
        .map(|o| ["Name", "WorkCard", "Credential"].map(|tag| o.text_of(tag).unwrap_or_default()))
        .collect();
    check_officers(&officers)?;
    let documents: Vec<(&str, &str, &str)> = root
        .children("Doc")
        .map(|d| {
            let [kind, number, sha256] =
                ["kind", "no", "sha256"].map(|a| d.attr(a).unwrap_or_default());
            (kind, number, sha256)
        })
        .collect();
    let request = ControlRequest {
        request_number: required(&root, "ReqNo")?.to_owned(),
        action,
        case_number: required(&root, "CaseNo")?.to_owned(),
        court_name: court.text().to_owned(),
        holder_id: ids::normalise_id(required(holder, "IdNo")?),
        prior_request_number: given(root.text_of("Prior")).map(str::to_owned),
        items: vec![ControlItem {
            target: securities_target(account, code),
            amount: quantity,
            start_date: read_date("from", term.and_then(|t| t.attr("from")), "%Y-%m-%d")?,
            end_date: read_date("until", term.and_then(|t| t.attr("until")), "%Y-%m-%d")?,
        }],
        documents: read_documents(&documents, "RULING", "ASSIST_NOTICE")?,
    };
    request.check_needs(true)?;
    Ok(request)
}

/// A control order: decided at once, its result shown to a poll
/// `result_delay_ms` later; acknowledged with a ticket (`SC…`), or refused
/// at intake with nothing taken in.
async fn control_submit(State(agency): State<Arc<Agency>>, body: Bytes) -> Response {
    let mode = agency.mode();
    let request = match read_control(&body) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(agency = agency.id(), %reason, "control order refused at intake");
            let rn = parse(&decode_document(&body).unwrap_or_default())
                .ok()
                .and_then(|root| root.text_of("ReqNo").map(str::to_owned));
            let status = if rn.is_some() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            let code = if rn.is_some() { "E12" } else { "E01" };
            return ack(mode, status, rn.as_deref(), code, None, Some(&reason));
        }
    };
    let rn = request.request_number.as_str();
    let outcome = agency.take_control(mode, &request);
    match &outcome.ticket {
        Some(ticket) => ack(
            mode,
            StatusCode::OK,
            Some(rn),
            "0",
            Some(&control_ticket(&ticket.number)),
            None,
        ),
        None => {
            let reason = outcome
                .results
                .first()
                .map_or("未受理", |r| r.reason.as_str());
            ack(mode, StatusCode::OK, Some(rn), "E12", None, Some(reason))
        }
    }
}

fn control_ticket(number: &str) -> String {
    format!("SC{number}")
}

async fn control_poll(
    State(agency): State<Arc<Agency>>,
    Path(request_number): Path<String>,
) -> Response {
    let mode = agency.mode();
    let rn = request_number.as_str();
    let Some(outcome) = agency.query_control(mode, rn) else {
        let unknown = document("SecControlResult", |w| {
            text(w, "ReqNo", rn)?;
            text(w, "Code", "U")?;
            text(w, "Msg", "无此控制请求")
        });
        return xml_reply(mode, StatusCode::NOT_FOUND, unknown);
    };
    xml_reply(mode, StatusCode::OK, control_result(rn, &outcome))
}

/// `State`: 1 frozen (or the renewal or release made), 2 not frozen
/// (refused, or waiting with `Queue` above 0), 3 released, 4 lapsed.
fn freeze_state(state: ControlState) -> &'static str {
    match state {
        ControlState::InForce => "1",
        ControlState::NotControlled | ControlState::Waiting => "2",
        ControlState::Released => "3",
        ControlState::Lapsed => "4",
    }
}

/// The `SecControlResult` of a decided order: pending (`P`) until its
/// ticket is ready, then decided (`D`) as it stands now.
fn control_result(rn: &str, outcome: &ControlOutcome) -> std::io::Result<Vec<u8>> {
    let ticket = outcome.ticket.as_ref().map(|t| control_ticket(&t.number));
    document("SecControlResult", |w| {
        text(w, "ReqNo", rn)?;
        if outcome.pending() {
            text(w, "Code", "P")?;
            if let Some(ticket) = &ticket {
                text(w, "Ticket", ticket)?;
            }
            return Ok(());
        }
        text(w, "Code", "D")?;
        if let Some(ticket) = &ticket {
            text(w, "Ticket", ticket)?;
        }
        let iso = |d: Option<chrono::NaiveDate>| {
            d.map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        for r in &outcome.results {
            let (account, code) = r.target.split_once(':').unwrap_or((&r.target, ""));
            text(w, "State", freeze_state(r.state))?;
            w.create_element("Position")
                .with_attribute(("acct", account))
                .with_attribute(("code", code))
                .write_empty()?;
            text(w, "Frozen", &r.controlled.to_string())?;
            text(w, "Short", &r.shortfall.to_string())?;
            text(w, "Queue", &r.queue_position.to_string())?;
            text(w, "From", &iso(r.start_date))?;
            text(w, "Until", &iso(r.end_date))?;
            text(w, "FreezeNo", &r.measure_number)?;
            text(w, "Msg", &r.reason)?;
        }
        for d in &outcome.acknowledged {
            w.create_element("DocAck")
                .with_attribute(("no", d.number.as_str()))
                .with_attribute(("sha256", d.sha256.as_str()))
                .write_empty()?;
        }
        Ok(())
    })
}

/// An injected error (`E99` 系统繁忙) or throttling (429, `E29`), nothing
/// processed; a poll's answer names its request number.
pub(crate) fn fault_reply(status: StatusCode, path: &str) -> Response {
    let (code, message) = if status == StatusCode::TOO_MANY_REQUESTS {
        ("E29", "请求过于频繁，请稍后重试")
    } else {
        ("E99", "系统繁忙，请稍后重试")
    };
    let rn = RESULTS_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix));
    ack(FaultMode::Normal, status, rn, code, None, Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packs_request_is_read() {
        let path = format!(
            "{}/../config/conformance/securities-xml/submit.request.xml",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(path).expect("the pack is there");
        let query = read_query(&body).expect("readable");
        assert_eq!(
            query,
            Query {
                request_number: "Q1-depository".into(),
                id_type: "ID".into(),
                id_number: "360426199101010071".into(),
            }
        );
        assert_eq!(refusal_for(&query), None);
        assert!(read_query(b"<SecQuery><ReqNo>Q</ReqNo></SecQuery>").is_err());
    }
}
