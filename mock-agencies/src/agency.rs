//! One running mock agency: its configuration, its (shared, immutable) book
//! of holdings, its mutable state behind a mutex (the request log, the
//! answers given, and the control ledger of measures placed over the book),
//! and the pieces every dialect uses: the fault mode, deduplication by
//! request number, taking a control order or a status query, and cutting
//! a reply short. The lock is never held across an await. Every agency,
//! whatever its kind of asset, keeps its control ledger over its book.
//! Result pushes (a registry's, a provident fund centre's) run as tasks of
//! their own, tracked here so that stopping the agency stops them too.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, Utc};
use encoding_rs::Encoding;
use tokio::task::JoinSet;

use crate::bank_book::BankBook;
use crate::config::{AgencySpec, MockDialect};
use crate::control::{self, ControlOutcome, ControlRequest};
use crate::fault_layer::{self, Faults, Visit};
use crate::faults::{self, FaultMode};
use crate::further_book::FurtherBook;
use crate::ledger::{AgencyState, Answer, Outcome, RequestKind, Ticket};
use crate::registry_book::RegistryBook;
use crate::{
    bank_json, bank_xml, fund_callback, inspect, iso_bank_xml, market_gbk_xml, payment_json,
    registry_json, securities_xml, vehicle_soap,
};

/// What an agency holds: control orders act on it, and the control ledger
/// keeps the measures placed.
#[derive(Debug, Clone)]
pub(crate) enum Holdings {
    /// Bank accounts.
    Bank(Arc<BankBook>),
    /// Real-estate units.
    Registry(Arc<RegistryBook>),
    /// Records of a further kind of asset (vehicles, securities, payment
    /// and provident fund accounts, equity).
    Further(Arc<FurtherBook>),
}

impl Holdings {
    pub fn bank(book: BankBook) -> Self {
        Self::Bank(Arc::new(book))
    }

    pub fn registry(book: RegistryBook) -> Self {
        Self::Registry(Arc::new(book))
    }

    pub fn further(book: FurtherBook) -> Self {
        Self::Further(Arc::new(book))
    }

    fn positions_of(&self, holder_id: &str) -> &[usize] {
        match self {
            Self::Bank(b) => b.positions_of(holder_id),
            Self::Registry(r) => r.positions_of(holder_id),
            Self::Further(f) => f.positions_of(holder_id),
        }
    }
}

/// What the `refuse` fault answers: the agency is not taking anything in.
pub(crate) const MAINTENANCE: &str = "系统维护，暂停受理（模拟）";

#[derive(Debug)]
pub(crate) struct Agency {
    pub spec: AgencySpec,
    pub holdings: Holdings,
    /// The encoding replies are written in (`court-bank-xml` and
    /// `market-gbk-xml`; the others write UTF-8).
    pub encoding: &'static Encoding,
    /// The key a signing dialect (`payment-json`) checks requests and signs
    /// replies with.
    signing_key: Option<Vec<u8>>,
    state: Mutex<AgencyState>,
    /// The HTTP client result pushes are sent with, built on first use.
    callback_client: OnceLock<Result<reqwest::Client, String>>,
    callback_tasks: Mutex<CallbackTasks>,
}

/// The result pushes in flight; none are started once the agency stopped.
#[derive(Debug, Default)]
struct CallbackTasks {
    stopped: bool,
    tasks: JoinSet<()>,
}

/// How long one attempt to push a result may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

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
        let encoding =
            Encoding::for_label(Self::label_of(&spec).as_bytes()).unwrap_or(encoding_rs::UTF_8);
        let faults = Faults {
            latency_ms: spec.latency_ms,
            result_delay_ms: spec.result_delay_ms,
            config: spec.faults,
        };
        let seed = spec
            .faults
            .seed
            .unwrap_or_else(|| faults::default_seed(&spec.id));
        let state = Mutex::new(AgencyState::new(faults, seed));
        Self {
            spec,
            holdings,
            encoding,
            signing_key: None,
            state,
            callback_client: OnceLock::new(),
            callback_tasks: Mutex::new(CallbackTasks::default()),
        }
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The label the XML declaration names: as configured, UTF-8 by default.
    pub fn encoding_label(&self) -> &str {
        Self::label_of(&self.spec)
    }

    /// The configured encoding, else the dialect's own: GBK for the market
    /// registry, UTF-8 for every other.
    fn label_of(spec: &AgencySpec) -> &str {
        match (&spec.encoding, spec.dialect) {
            (Some(label), _) => label,
            (None, MockDialect::MarketGbkXml) => "GBK",
            (None, _) => "UTF-8",
        }
    }

    /// The agency with the key its signing dialect uses.
    #[must_use]
    pub fn with_signing_key(mut self, key: Option<Vec<u8>>) -> Self {
        self.signing_key = key;
        self
    }

    /// The signing key; empty when none was configured (validation makes
    /// it required where a dialect signs).
    pub fn signing_key(&self) -> &[u8] {
        self.signing_key.as_deref().unwrap_or_default()
    }

    pub fn state(&self) -> MutexGuard<'_, AgencyState> {
        // A panic elsewhere must not make the mock unusable for the rest of
        // a test run: the state is still consistent (each update is one step).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn faults(&self) -> Faults {
        self.state().faults
    }

    /// How to behave for every request (`mode`). The other faults, latency
    /// included, are injected around the dialect's handlers
    /// ([`fault_layer`]).
    pub fn mode(&self) -> FaultMode {
        self.faults().mode()
    }

    /// Decides which faults hit a dialect request arriving now.
    pub fn visit(&self, method: &str, path: &str) -> Visit {
        let mut state = self.state();
        let faults = state.faults;
        state
            .engine
            .visit(&faults, method, path, std::time::Instant::now())
    }

    pub fn record(&self, request_number: &str, kind: RequestKind, holder_id: Option<&str>) {
        self.state().record(request_number, kind, holder_id);
    }

    /// An inquiry as every dialect takes it: recorded in the request log,
    /// logged (the subject masked), and answered from the ledger (`answer`),
    /// or refused when the injected fault mode is `refuse`.
    pub fn take_inquiry(
        &self,
        mode: FaultMode,
        request_number: &str,
        id_number: &str,
        refusal: Option<String>,
    ) -> Answer {
        let holder = crate::ids::normalise_id(id_number);
        self.record(request_number, RequestKind::Inquiry, Some(&holder));
        tracing::info!(
            agency = self.id(),
            request_number = %request_number,
            subject = %crate::ids::mask(&holder),
            "inquiry"
        );
        if mode == FaultMode::Refuse {
            Self::injected_refusal(&holder)
        } else {
            self.answer(request_number, &holder, refusal)
        }
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
                found => {
                    // The holdings as they stand now, measures placed by
                    // control orders included, lapses first.
                    let today = state.control.today();
                    state.control.sweep(today);
                    Outcome::Found(state.control.found(&self.holdings, found))
                }
            },
        };
        let answered_at = china_now();
        // An agency refusing at intake issues no ticket.
        let ticketed = self.spec.dialect.answers_later() && !matches!(outcome, Outcome::Refused(_));
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
            outcome: Outcome::Refused(MAINTENANCE.into()),
            ticket: None,
        }
    }

    pub fn stored_answer(&self, request_number: &str) -> Option<Answer> {
        self.state().answer(request_number).cloned()
    }

    /// A control order as every dialect takes it once read: under the
    /// `refuse` fault refused whole ([`MAINTENANCE`]), nothing recorded,
    /// applied or acknowledged; otherwise recorded in the request log,
    /// logged (the subject masked) and decided ([`Agency::control`]).
    pub fn take_control(&self, mode: FaultMode, request: &ControlRequest) -> ControlOutcome {
        if mode == FaultMode::Refuse {
            return ControlOutcome::refused(request, MAINTENANCE);
        }
        let rn = request.request_number.as_str();
        self.record(rn, RequestKind::Control, Some(&request.holder_id));
        tracing::info!(
            agency = self.id(),
            request_number = %rn,
            action = ?request.action,
            subject = %crate::ids::mask(&request.holder_id),
            "control order"
        );
        self.control(request)
    }

    /// A status query as every dialect takes it: the current state of what
    /// the request number did (`None`: never decided here), recorded in the
    /// request log; under the `refuse` fault every result refused
    /// ([`MAINTENANCE`]) and nothing acknowledged, nothing recorded.
    pub fn query_control(&self, mode: FaultMode, request_number: &str) -> Option<ControlOutcome> {
        let outcome = self.control_status(request_number);
        if mode != FaultMode::Refuse {
            self.record(
                request_number,
                RequestKind::ControlQuery,
                outcome.as_ref().map(|o| o.holder_id.as_str()),
            );
            return outcome;
        }
        outcome.map(|mut o| {
            o.acknowledged.clear();
            for r in &mut o.results {
                *r = control::ItemResult {
                    target: std::mem::take(&mut r.target),
                    state: control::ControlState::NotControlled,
                    controlled: 0,
                    shortfall: 0,
                    reason: MAINTENANCE.into(),
                    start_date: None,
                    end_date: None,
                    queue_position: 0,
                    measure_number: String::new(),
                };
            }
            o
        })
    }

    /// Decides a control order, or, for a request number seen before,
    /// applies nothing and tells the current state of what it did. An
    /// agency that answers control orders later (a registry, the
    /// depository) gives a ticket with its decision: it is revealed from
    /// the ticket's `ready_at`.
    pub fn control(&self, request: &ControlRequest) -> ControlOutcome {
        let mut state = self.state();
        let today = state.control.today();
        state.control.sweep(today);
        if let Some(outcome) = state.control.repeat(&request.request_number) {
            return outcome;
        }
        let ticket = self.spec.dialect.answers_control_later().then(|| Ticket {
            number: state.next_ticket_number(&china_now().format("%Y%m%d").to_string()),
            ready_at: tokio::time::Instant::now()
                + Duration::from_millis(state.faults.result_delay_ms),
        });
        state.control.apply(
            &self.holdings,
            request,
            today,
            self.measure_prefix(),
            ticket,
        )
    }

    /// The current state of what a control request number did, if it was
    /// ever decided here.
    pub fn control_status(&self, request_number: &str) -> Option<ControlOutcome> {
        let mut state = self.state();
        let today = state.control.today();
        state.control.sweep(today);
        state.control.status(request_number)
    }

    /// How the agency's own measure numbers start: `KZ` (court-bank XML),
    /// `H` (bank-json holds), `CF` (the vehicle register's seals), `ZQDJ`
    /// (the depository's freezes), `PF` (the payment platform's), `GJJDJ`
    /// (the provident fund centre's), `GQDJ` (the market registry's); a
    /// registry's business numbers (`YWH`) are bare digits.
    fn measure_prefix(&self) -> &'static str {
        match self.spec.dialect {
            MockDialect::CourtBankXml | MockDialect::IsoBankXml => "KZ",
            MockDialect::BankJson => "H",
            MockDialect::RegistryJson => "",
            MockDialect::VehicleSoap => "CF",
            MockDialect::SecuritiesXml => "ZQDJ",
            MockDialect::PaymentJson => "PF",
            MockDialect::FundCallback => "GJJDJ",
            MockDialect::MarketGbkXml => "GQDJ",
        }
    }

    /// The client result pushes are sent with: no proxy (the callback
    /// address is the court side's own), no redirects followed (a 3xx is an
    /// answer that is not 2xx), and a timeout per attempt.
    pub fn callback_client(&self) -> Result<reqwest::Client, String> {
        self.callback_client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(CALLBACK_TIMEOUT)
                    .build()
                    .map_err(|e| format!("cannot build the callback client: {e}"))
            })
            .clone()
    }

    /// Runs a result push as a task of its own. False (and nothing runs)
    /// once the agency has been stopped.
    pub fn spawn_callback(&self, push: impl Future<Output = ()> + Send + 'static) -> bool {
        let mut callbacks = self
            .callback_tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if callbacks.stopped {
            return false;
        }
        // Reap the pushes already finished so the set does not grow.
        while callbacks.tasks.try_join_next().is_some() {}
        callbacks.tasks.spawn(push);
        true
    }

    /// Cancels the pushes not yet done and refuses new ones: a stopped agency
    /// calls nobody back.
    pub fn stop_callbacks(&self) {
        let mut callbacks = self
            .callback_tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        callbacks.stopped = true;
        callbacks.tasks.abort_all();
    }
}

/// The HTTP face of one agency: its dialect's endpoints, with faults
/// injected around them, and the inspection API, never faulted.
pub(crate) fn router(agency: Arc<Agency>) -> Router {
    let dialect = match agency.spec.dialect {
        MockDialect::CourtBankXml => bank_xml::routes(),
        MockDialect::BankJson => bank_json::routes(),
        MockDialect::RegistryJson => registry_json::routes(),
        MockDialect::IsoBankXml => iso_bank_xml::routes(),
        MockDialect::VehicleSoap => vehicle_soap::routes(),
        MockDialect::SecuritiesXml => securities_xml::routes(),
        MockDialect::PaymentJson => payment_json::routes(),
        MockDialect::FundCallback => fund_callback::routes(),
        MockDialect::MarketGbkXml => market_gbk_xml::routes(),
    };
    dialect
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&agency),
            fault_layer::inject,
        ))
        .merge(inspect::routes())
        .with_state(agency)
}

/// A dialect reply, cut in half when the `malformed` fault is on.
pub(crate) fn wire_reply(
    mode: FaultMode,
    status: StatusCode,
    content_type: &str,
    mut body: Vec<u8>,
) -> Response {
    cut_if_malformed(mode, &mut body);
    let mut response = (status, body).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Cuts a body in half when the `malformed` fault is on.
pub(crate) fn cut_if_malformed(mode: FaultMode, body: &mut Vec<u8>) {
    if mode == FaultMode::Malformed {
        body.truncate(body.len() / 2);
    }
}

/// A JSON dialect body as it goes on the wire, cut in half when the
/// `malformed` fault is on: the bytes of [`json_reply`] without the response.
pub(crate) fn json_body(mode: FaultMode, body: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    cut_if_malformed(mode, &mut bytes);
    bytes
}

/// A field of a JSON object as text; empty when absent or not text.
pub(crate) fn json_text<'a>(value: &'a serde_json::Value, field: &str) -> &'a str {
    value
        .get(field)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

/// A JSON dialect reply.
pub(crate) fn json_reply(
    mode: FaultMode,
    status: StatusCode,
    body: &serde_json::Value,
) -> Response {
    // Already cut by `json_body` when it had to be.
    wire_reply(
        FaultMode::Normal,
        status,
        "application/json",
        json_body(mode, body),
    )
}
