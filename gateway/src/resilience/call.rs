//! What goes through an agency's stack: one message (`AgencyCall`), and
//! how it can end (`CallError`).

use std::sync::Arc;
use std::time::Duration;

use adapters::dialect::WireRequest;
use async_trait::async_trait;
use tokio::time::Instant;

use crate::transport::{HttpReply, TransportError};

/// The future every layer of the stack returns.
pub type CallFuture = futures::future::BoxFuture<'static, Result<HttpReply, CallError>>;

/// What must be durable around one exchange: the outbound record before a
/// message leaves, the reply (or the failure) before it is used. The audit
/// layer calls it once per attempt.
#[async_trait]
pub trait ExchangeAudit: Send + Sync {
    /// Records attempt `attempt`'s outbound message (`hedge`: a second
    /// copy sent while the first is unanswered), and whatever else must
    /// commit before it leaves. An error: nothing is sent.
    async fn outbound(&self, attempt: u32, hedge: bool) -> Result<(), String>;

    /// Records what attempt `attempt` got back. An error: the answer must
    /// not be used.
    async fn reply(
        &self,
        attempt: u32,
        result: &Result<HttpReply, TransportError>,
    ) -> Result<(), String>;
}

/// One message to an agency. Cheap to clone (the retry layer keeps a copy).
#[derive(Clone)]
pub struct AgencyCall {
    /// The agency's id (spans and metrics).
    pub agency: String,
    /// What the message is, as the audit log names it (`inquiry.send`,
    /// `inquiry.poll`, `order.freeze`, ...).
    pub action: String,
    /// Sent as `x-request-id`: the batch number of a batch of inquiries,
    /// else the request number. Stable across retries.
    pub request_id: String,
    /// The inquiry the message is about, when there is one.
    pub inquiry: Option<String>,
    /// The control order the message is about, when there is one.
    pub order: Option<String>,
    /// How many inquiries the message carries.
    pub items: usize,
    pub wire: Arc<WireRequest>,
    /// No answer is awaited past this instant (the inquiry's deadline);
    /// the agency's own `timeout_ms` applies besides.
    pub deadline: Option<Instant>,
    /// 1 for the first send; the retry layer counts on.
    pub attempt: u32,
    /// A hedge: a second copy of an attempt not answered in time.
    pub hedge: bool,
    /// How many more attempts the retry layer may make.
    pub retries: u32,
    /// No retry starts at or after this instant (the deadline, the lease).
    pub retry_until: Option<Instant>,
    pub audit: Arc<dyn ExchangeAudit>,
}

impl AgencyCall {
    /// A first attempt with no deadline, no retries.
    pub fn new(
        agency: &str,
        action: &str,
        request_id: &str,
        wire: WireRequest,
        audit: Arc<dyn ExchangeAudit>,
    ) -> Self {
        Self {
            agency: agency.to_owned(),
            action: action.to_owned(),
            request_id: request_id.to_owned(),
            inquiry: None,
            order: None,
            items: 1,
            wire: Arc::new(wire),
            deadline: None,
            attempt: 1,
            hedge: false,
            retries: 0,
            retry_until: None,
            audit,
        }
    }
}

impl std::fmt::Debug for AgencyCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the body: it carries identity numbers.
        f.debug_struct("AgencyCall")
            .field("agency", &self.agency)
            .field("action", &self.action)
            .field("request_id", &self.request_id)
            .field("attempt", &self.attempt)
            .field("hedge", &self.hedge)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// Why the stack refused a call: nothing was sent, nothing audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the agency's quota (rate_per_second) allows the next message in {} ms",
        retry_in.as_millis()
    )]
    RateLimited { retry_in: Duration },
    #[error("the agency has its max_concurrency exchanges in flight")]
    Busy,
    /// `retry_in`: when a probe may go (None: a probe is already out).
    #[error("the agency's circuit breaker is open")]
    CircuitOpen { retry_in: Option<Duration> },
}

impl Refusal {
    /// The layer that refused, as the metrics name it.
    pub fn layer(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "rate_limit",
            Refusal::Busy => "concurrency",
            Refusal::CircuitOpen { .. } => "breaker",
        }
    }
}

/// How a call through the stack can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Refused before anything was recorded or sent.
    #[error(transparent)]
    Refused(Refusal),
    /// The outbound record could not be made: nothing was sent.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Sent (and recorded), but no usable answer came.
    #[error(transparent)]
    Transport(TransportError),
    /// Sent and answered, but the answer could not be recorded: it must
    /// not be used. `agency_failed` says whether the answer was a failure
    /// of the agency's (for its breaker).
    #[error("the agency's answer could not be recorded, so it is not used")]
    Unrecorded { agency_failed: bool },
}
