//! One running mock agency: its configuration, its (shared, immutable) book
//! of holdings, its mutable state behind a mutex, and the pieces every
//! dialect uses: latency and fault handling, deduplication by request
//! number, and cutting a reply short. The lock is never held across an await.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, Utc};
use encoding_rs::Encoding;

use crate::bank_book::BankBook;
use crate::config::{AgencySpec, MockDialect};
use crate::ledger::{AgencyState, Answer, FaultMode, Faults, Outcome, RequestKind, Ticket};
use crate::registry_book::RegistryBook;
use crate::{bank_json, bank_xml, inspect, iso_bank_xml, registry_json};

/// What an agency holds.
#[derive(Debug, Clone)]
pub(crate) enum Holdings {
    Bank(Arc<BankBook>),
    Registry(Arc<RegistryBook>),
}

impl Holdings {
    fn positions_of(&self, holder_id: &str) -> &[usize] {
        match self {
            Self::Bank(b) => b.positions_of(holder_id),
            Self::Registry(r) => r.positions_of(holder_id),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Agency {
    pub spec: AgencySpec,
    pub holdings: Holdings,
    /// The encoding replies are written in (`court-bank-xml` only).
    pub encoding: &'static Encoding,
    state: Mutex<AgencyState>,
}

/// China Standard Time: legal times on the wire are in it.
const CST: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

pub(crate) fn china_now() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&CST)
}

impl Agency {
    pub fn new(spec: AgencySpec, holdings: Holdings) -> Self {
        let encoding = spec
            .encoding
            .as_deref()
            .and_then(|l| Encoding::for_label(l.as_bytes()))
            .unwrap_or(encoding_rs::UTF_8);
        let state = Mutex::new(AgencyState::new(spec.latency_ms, spec.result_delay_ms));
        Self {
            spec,
            holdings,
            encoding,
            state,
        }
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The label the XML declaration names: as configured, UTF-8 by default.
    pub fn encoding_label(&self) -> &str {
        self.spec.encoding.as_deref().unwrap_or("UTF-8")
    }

    pub fn state(&self) -> MutexGuard<'_, AgencyState> {
        // A panic elsewhere must not make the mock unusable for the rest of
        // a test run: the state is still consistent (each update is one step).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn faults(&self) -> Faults {
        self.state().faults
    }

    /// Waits the configured latency, then says how to behave for this request.
    pub async fn arrive(&self) -> FaultMode {
        let faults = self.faults();
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        faults.mode
    }

    pub fn record(&self, request_number: &str, kind: RequestKind, holder_id: Option<&str>) {
        self.state().record(request_number, kind, holder_id);
    }

    /// The answer to a request number: the one given the first time if there
    /// was one, else a new one, remembered. `refusal` (a reason) replaces the
    /// lookup when the request is well-formed but unacceptable.
    pub fn answer(&self, request_number: &str, holder_id: &str, refusal: Option<String>) -> Answer {
        let mut state = self.state();
        if let Some(previous) = state.answer(request_number) {
            return previous.clone();
        }
        let outcome = match refusal {
            Some(reason) => Outcome::Refused(reason),
            None => match self.holdings.positions_of(holder_id) {
                [] => Outcome::NotFound,
                found => Outcome::Found(found.to_vec()),
            },
        };
        let answered_at = china_now();
        // A registry refusing at intake issues no ticket.
        let ticketed = self.spec.dialect == MockDialect::RegistryJson
            && !matches!(outcome, Outcome::Refused(_));
        let ticket = ticketed.then(|| Ticket {
            number: state.next_ticket_number(&answered_at.format("%Y%m%d").to_string()),
            ready_at: tokio::time::Instant::now()
                + Duration::from_millis(state.faults.result_delay_ms),
        });
        let answer = Answer {
            holder_id: holder_id.to_owned(),
            answered_at,
            outcome,
            ticket,
        };
        state.remember(request_number, answer.clone());
        answer
    }

    /// A refusal injected by the `refuse` fault: not remembered, so the same
    /// request number is answered properly once the fault is lifted.
    pub fn injected_refusal(holder_id: &str) -> Answer {
        Answer {
            holder_id: holder_id.to_owned(),
            answered_at: china_now(),
            outcome: Outcome::Refused("系统维护，暂停受理（模拟）".into()),
            ticket: None,
        }
    }

    pub fn stored_answer(&self, request_number: &str) -> Option<Answer> {
        self.state().answer(request_number).cloned()
    }
}

/// The HTTP face of one agency: its dialect's endpoints and the inspection API.
pub(crate) fn router(agency: Arc<Agency>) -> Router {
    routes(agency.spec.dialect).with_state(agency)
}

/// The endpoints of a dialect and the inspection API, for any agency.
pub(crate) fn routes(dialect: MockDialect) -> Router<Arc<Agency>> {
    let dialect = match dialect {
        MockDialect::CourtBankXml => bank_xml::routes(),
        MockDialect::BankJson => bank_json::routes(),
        MockDialect::RegistryJson => registry_json::routes(),
        MockDialect::IsoBankXml => iso_bank_xml::routes(),
    };
    dialect.merge(inspect::routes())
}

/// A dialect reply, cut in half when the `malformed` fault is on.
pub(crate) fn wire_reply(
    mode: FaultMode,
    status: StatusCode,
    content_type: &str,
    mut body: Vec<u8>,
) -> Response {
    if mode == FaultMode::Malformed {
        body.truncate(body.len() / 2);
    }
    let mut response = (status, body).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// A JSON dialect reply.
pub(crate) fn json_reply(
    mode: FaultMode,
    status: StatusCode,
    body: &serde_json::Value,
) -> Response {
    wire_reply(
        mode,
        status,
        "application/json",
        serde_json::to_vec(body).unwrap_or_default(),
    )
}
