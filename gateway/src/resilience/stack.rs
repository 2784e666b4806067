//! An agency's tower stack, composed from the layers of this module with
//! `tower::ServiceBuilder`, outer end first:
//!
//! - `observe`: the `agency_call` span, refusals counted by layer;
//! - `retry` (inquiries only): tower's `Retry` with `InquiryRetry`;
//! - `hedge` (inquiries only, when the agency file asks): a message not
//!   answered within the agency's p95 is sent once more;
//! - `load_shed` (inquiries only): tower's; a busy agency is a refusal
//!   (`Refusal::Busy`), and the dispatcher leaves the tasks for later.
//!   Control orders wait for room instead, as they always did;
//! - `concurrency`: tower's `GlobalConcurrencyLimit` on the agency link's
//!   semaphore (`limits.max_concurrency`), shared by every stack of the
//!   agency and kept across reloads;
//! - `rate`: the agency's quota, refusing instead of waiting;
//! - `breaker`: the consecutive-failures breaker;
//! - `audit`: the outbound row before the message leaves, the reply row
//!   before it is used;
//! - `tally`: each message that leaves, told to the agency's recorder of
//!   recent traffic as it ends (latency, error kind, in flight);
//! - `timeout`: the agency's `timeout_ms` and the call's deadline;
//! - `exchange`: the HTTP exchange.
//!
//! An agency's runtime (`runtime.rs`) builds its two stacks once and keeps
//! them; a call clones one (the layers' state is shared: the guard, the
//! semaphore, the metrics) and sends through the clone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::retry::RetryLayer;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder};

use super::Guard;
use super::audit::Audit;
use super::breaker::CircuitBreaker;
use super::call::{AgencyCall, CallError, Refusal};
use super::hedge::Hedge;
use super::layer::Inner;
use super::observe::Observe;
use super::rate::RateLimit;
use super::retry::InquiryRetry;
use super::tally::Tally;
use super::timeout::DeadlineTimeout;
use crate::metrics::AgencyMetrics;
use crate::metrics::recent::Recorder;
use crate::transport::HttpReply;

/// An agency's stack, ready to take one call (and to be kept by its
/// runtime, shared between tasks).
pub type AgencyService = BoxCloneSyncService<AgencyCall, HttpReply, CallError>;

/// What a message sent through an agency's stack came to: the one reading
/// of a call's end that both workers (inquiry tasks, control orders) act on.
#[derive(Debug)]
pub enum Exchanged {
    /// The agency answered; its answer is recorded (or, for rows the audit
    /// layer defers, given to the journal to commit with the result).
    Answered(HttpReply),
    /// Sent and recorded, but no usable answer came.
    NoAnswer(crate::transport::TransportError),
    /// Nothing to use: the stack refused the message (`refusal`), or the
    /// audit log could not record it or its answer (`refusal` None). The
    /// work is due again at `due_at_ms`.
    Later {
        due_at_ms: i64,
        refusal: Option<Refusal>,
    },
}

/// How long to wait before a step the audit log could not record is tried
/// again.
pub const RETRY_AFTER_FAILURE_MS: i64 = 2_000;

/// Sends `call` through `stack` and reads how it ended. A quota refusal is
/// due when the quota has room; an open breaker when it lets a probe
/// through (a second after now when a probe is already out); a busy agency
/// at once; a step the audit log could not record after
/// `RETRY_AFTER_FAILURE_MS`.
pub async fn exchange(stack: AgencyService, call: AgencyCall) -> Exchanged {
    let result = tower::ServiceExt::oneshot(stack, call).await;
    let now = chrono::Utc::now().timestamp_millis();
    match result {
        Ok(reply) => Exchanged::Answered(reply),
        Err(CallError::Transport(e)) => Exchanged::NoAnswer(e),
        Err(CallError::Refused(refusal)) => {
            let due_at_ms = match refusal {
                Refusal::RateLimited { retry_in } => now + retry_in.as_millis() as i64,
                Refusal::CircuitOpen { retry_in } => {
                    now + retry_in.unwrap_or(Duration::from_secs(1)).as_millis() as i64 + 1
                }
                Refusal::Busy => now,
            };
            Exchanged::Later {
                due_at_ms,
                refusal: Some(refusal),
            }
        }
        Err(CallError::NotSent(_) | CallError::Unrecorded { .. }) => Exchanged::Later {
            due_at_ms: now + RETRY_AFTER_FAILURE_MS,
            refusal: None,
        },
    }
}

/// What an agency's stack is made of.
#[derive(Debug, Clone)]
pub struct StackParts {
    /// The agency's `timeout_ms`.
    pub timeout: Duration,
    pub guard: Arc<Guard>,
    /// `limits.max_concurrency`; None: no bound of the agency's own.
    pub concurrency: Option<Arc<Semaphore>>,
    pub metrics: Arc<AgencyMetrics>,
    /// This gateway's record of the agency's recent traffic.
    pub recorder: Arc<Recorder>,
}

/// The part both stacks share: concurrency, quota, breaker, audit,
/// timeout, around `inner`.
fn guarded<S: Inner>(inner: S, parts: &StackParts) -> impl Inner {
    ServiceBuilder::new()
        .option_layer(
            parts
                .concurrency
                .clone()
                .map(GlobalConcurrencyLimitLayer::with_semaphore),
        )
        .layer(RateLimit::layer(parts.guard.bucket.clone()))
        .layer(CircuitBreaker::layer(parts.guard.breaker.clone()))
        .layer(Audit::layer())
        .layer(Tally::layer(parts.recorder.clone()))
        .layer(DeadlineTimeout::layer(parts.timeout))
        .service(inner)
}

/// The load shedder's error back into ours.
fn shed(e: BoxError) -> CallError {
    match e.downcast::<CallError>() {
        Ok(e) => *e,
        Err(e) if e.is::<Overloaded>() => CallError::Refused(Refusal::Busy),
        Err(e) => CallError::NotSent(e.to_string()),
    }
}

/// The stack for inquiry messages (sends and polls): retried, and refused
/// when the agency is busy.
pub fn inquiry_stack<S: Inner + Sync>(
    inner: S,
    parts: &StackParts,
    retry: InquiryRetry,
) -> AgencyService {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(Observe::layer(
                parts.metrics.clone(),
                parts.recorder.clone(),
            ))
            .layer(RetryLayer::new(retry))
            .layer(Hedge::layer(
                parts.guard.latencies.clone(),
                parts.guard.hedges.clone(),
                parts.metrics.clone(),
            ))
            .map_err(shed)
            .load_shed()
            .service(guarded(inner, parts)),
    )
}

/// The stack for control orders: never retried, and waiting for room at a
/// busy agency.
pub fn control_stack<S: Inner + Sync>(inner: S, parts: &StackParts) -> AgencyService {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(Observe::layer(
                parts.metrics.clone(),
                parts.recorder.clone(),
            ))
            .service(guarded(inner, parts)),
    )
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::resilience::Breaker;
    use crate::resilience::testing::{FakeAudit, Journal, Script, call_with, reply};
    use governor::{Quota, RateLimiter};
    use tower::ServiceExt;

    fn parts(threshold: u32, per_hour: Option<u32>, permits: Option<usize>) -> StackParts {
        StackParts {
            timeout: Duration::from_secs(5),
            guard: Arc::new(Guard {
                breaker: Arc::new(Breaker::new(threshold, Duration::from_secs(60))),
                bucket: per_hour
                    .and_then(NonZeroU32::new)
                    .map(|n| Arc::new(RateLimiter::direct(Quota::per_hour(n)))),
                latencies: Arc::default(),
                hedges: None,
                rate: 0,
                hedge_percent: 0,
            }),
            concurrency: permits.map(|n| Arc::new(Semaphore::new(n))),
            metrics: AgencyMetrics::of("bank-stacked"),
            recorder: Arc::default(),
        }
    }

    fn retry() -> InquiryRetry {
        InquiryRetry::new(
            Duration::from_millis(10),
            Duration::from_secs(1),
            AgencyMetrics::of("bank-stacked"),
        )
    }

    fn journaled() -> (Journal, AgencyCall) {
        let audit = FakeAudit::default();
        let journal = audit.journal.clone();
        (journal, call_with(Arc::new(audit)))
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_is_audited_and_counts_against_the_breaker() {
        let (journal, mut call) = journaled();
        call.retries = 5;
        let script = Script::new((0..5).map(|_| Ok(reply(502)))).with_journal(journal.clone());
        let svc = inquiry_stack(script.service(), &parts(2, None, Some(4)), retry());
        let result = svc.oneshot(call).await;
        // Two failures open the breaker: the third attempt is refused
        // before anything is recorded or sent.
        assert!(
            matches!(result, Err(CallError::Refused(Refusal::CircuitOpen { .. }))),
            "{result:?}"
        );
        assert_eq!(
            journal.entries(),
            [
                "outbound 1",
                "sent 1",
                "reply 1 http_502",
                "outbound 2",
                "sent 2",
                "reply 2 http_502"
            ]
        );
    }

    #[tokio::test]
    async fn a_call_past_the_quota_leaves_no_audit_row() {
        let (journal, call) = journaled();
        let script = Script::new([]).with_journal(journal.clone());
        let svc = inquiry_stack(script.service(), &parts(5, Some(1), None), retry());
        assert!(svc.clone().oneshot(call.clone()).await.is_ok());
        let second = svc.oneshot(call).await;
        assert!(
            matches!(second, Err(CallError::Refused(Refusal::RateLimited { .. }))),
            "{second:?}"
        );
        assert_eq!(
            journal.entries(),
            ["outbound 1", "sent 1", "reply 1 http_200"]
        );
    }

    #[tokio::test]
    async fn a_busy_agency_refuses_inquiries_and_makes_orders_wait() -> anyhow::Result<()> {
        let parts = parts(5, None, Some(1));
        let semaphore = parts
            .concurrency
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no semaphore"))?;
        let held = semaphore.clone().try_acquire_owned()?;
        let (journal, call) = journaled();
        let script = Script::new([]).with_journal(journal.clone());
        let refused = inquiry_stack(script.service(), &parts, retry())
            .oneshot(call.clone())
            .await;
        assert!(
            matches!(refused, Err(CallError::Refused(Refusal::Busy))),
            "{refused:?}"
        );
        assert!(journal.entries().is_empty());
        let mut order = Box::pin(control_stack(script.service(), &parts).oneshot(call));
        assert!(futures::poll!(&mut order).is_pending(), "waits for room");
        assert!(journal.entries().is_empty());
        drop(held);
        assert_eq!(order.await.map(|r| r.status).ok(), Some(200));
        assert_eq!(
            journal.entries(),
            ["outbound 1", "sent 1", "reply 1 http_200"]
        );
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_hedge_goes_through_the_stack_and_each_copy_is_audited() {
        let (journal, call) = journaled();
        let mut parts = parts(5, None, Some(4));
        parts.guard = Arc::new(Guard {
            breaker: parts.guard.breaker.clone(),
            bucket: None,
            latencies: crate::resilience::hedge::tests::known(100),
            hedges: Hedge::budget(100),
            rate: 0,
            hedge_percent: 100,
        });
        let inner = crate::resilience::testing::delayed(vec![5_000, 50], journal.clone());
        let result = inquiry_stack(inner, &parts, retry()).oneshot(call).await;
        assert_eq!(result.map(|r| r.status).ok(), Some(200));
        assert_eq!(
            journal.entries(),
            [
                "outbound 1",
                "sent primary",
                "outbound 1 hedge",
                "sent hedge",
                "answered hedge",
                "reply 1 http_200",
            ]
        );
        // The first copy runs to its end: its answer is recorded too.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            journal.entries()[6..],
            ["answered primary", "reply 1 http_200"]
        );
    }
}
