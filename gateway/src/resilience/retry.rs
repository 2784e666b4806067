//! Retries of inquiry messages, for tower's `Retry` layer: a failed
//! exchange worth trying again (no answer, the agency's 5xx, its 429) is
//! sent again after a jittered exponential backoff (tower's
//! `ExponentialBackoff`: `dispatcher.retry_base_ms` doubling, plus up to as
//! much again at random), as long as the call has retries left and the
//! next attempt would start before `retry_until` (the inquiry's deadline,
//! and the end of the task's lease). Refusals, audit failures and answers
//! are final here.
//!
//! Inquiries only: they change nothing at the agency. Control orders never
//! go through this layer (`order_worker.rs`).

use std::sync::Arc;
use std::time::Duration;

use tower::retry::Policy;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::util::rng::HasherRng;

use super::call::{AgencyCall, CallError};
use crate::metrics::AgencyMetrics;
use crate::transport::{HttpReply, TransportError};

/// A failed exchange worth trying again: no answer, a server error, or
/// throttling. (A reply too large would be as large again.)
pub fn is_retriable(result: &Result<HttpReply, CallError>) -> bool {
    match result {
        Ok(reply) => reply.status >= 500 || reply.status == 429,
        Err(CallError::Transport(TransportError::TooLarge(_))) => false,
        Err(CallError::Transport(_)) => true,
        Err(CallError::Refused(_) | CallError::NotSent(_) | CallError::Unrecorded { .. }) => false,
    }
}

/// The retry policy of inquiry messages. Each call gets its own copy, with
/// a fresh backoff and a fresh random source (so calls that fail together
/// do not retry together).
#[derive(Debug)]
pub struct InquiryRetry {
    base: Duration,
    max: Duration,
    backoff: Option<ExponentialBackoff>,
    /// The agency's: each retry is counted.
    metrics: Arc<AgencyMetrics>,
}

impl InquiryRetry {
    /// First wait `base` (plus up to `base` of jitter), doubling, at most
    /// `max`.
    pub fn new(base: Duration, max: Duration, metrics: Arc<AgencyMetrics>) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self {
            base,
            max: max.max(base),
            backoff: None,
            metrics,
        }
    }

    fn next_wait(&mut self) -> tokio::time::Sleep {
        let (base, max) = (self.base, self.max);
        self.backoff
            .get_or_insert_with(|| {
                // Valid by construction (0 < base <= max); the default
                // otherwise.
                ExponentialBackoffMaker::new(base, max, 1.0, HasherRng::new())
                    .unwrap_or_default()
                    .make_backoff()
            })
            .next_backoff()
    }
}

impl Clone for InquiryRetry {
    fn clone(&self) -> Self {
        Self::new(self.base, self.max, self.metrics.clone())
    }
}

impl Policy<AgencyCall, HttpReply, CallError> for InquiryRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        call: &mut AgencyCall,
        result: &mut Result<HttpReply, CallError>,
    ) -> Option<Self::Future> {
        if call.retries == 0 || !is_retriable(result) {
            return None;
        }
        let wait = self.next_wait();
        if call
            .retry_until
            .is_some_and(|until| wait.deadline() >= until)
        {
            return None;
        }
        call.retries -= 1;
        call.attempt += 1;
        self.metrics.retried();
        tracing::debug!(attempt = call.attempt, "retrying after a failed exchange");
        Some(wait)
    }

    fn clone_request(&mut self, call: &AgencyCall) -> Option<AgencyCall> {
        Some(call.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::testing::{Script, call, reply};
    use tokio::time::Instant;
    use tower::Layer;
    use tower::ServiceExt;
    use tower::retry::RetryLayer;

    fn policy() -> InquiryRetry {
        InquiryRetry::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            AgencyMetrics::of("bank-retried"),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_with_growing_jittered_waits_until_an_answer() {
        let script = Script::new([
            Err(CallError::Transport(TransportError::Connect(
                "reset".into(),
            ))),
            Ok(reply(503)),
            Ok(reply(429)),
            Ok(reply(200)),
        ]);
        let svc = RetryLayer::new(policy()).layer(script.service());
        let mut c = call();
        c.retries = 5;
        let started = Instant::now();
        let result = svc.oneshot(c).await;
        assert_eq!(result.map(|r| r.status).ok(), Some(200));
        assert_eq!(
            script.journal.entries(),
            ["sent 1", "sent 2", "sent 3", "sent 4"],
            "each attempt numbered"
        );
        // 100..200 + 200..400 + 400..800 ms.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(700) && waited <= Duration::from_millis(1400),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_retry_budget_is_kept() {
        let script = Script::new((0..5).map(|_| Ok(reply(500))));
        let svc = RetryLayer::new(policy()).layer(script.service());
        let mut c = call();
        c.retries = 2;
        let result = svc.oneshot(c).await;
        assert_eq!(result.map(|r| r.status).ok(), Some(500));
        assert_eq!(script.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_past_the_deadline() {
        let script = Script::new((0..5).map(|_| Ok(reply(500))));
        let svc = RetryLayer::new(policy()).layer(script.service());
        let mut c = call();
        c.retries = 4;
        // The first wait is at least 100 ms.
        c.retry_until = Some(Instant::now() + Duration::from_millis(100));
        let _ = svc.oneshot(c).await;
        assert_eq!(script.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_refusals_and_audit_failures_are_final() {
        for result in [
            Ok(reply(404)),
            Ok(reply(200)),
            Err(CallError::Refused(super::super::Refusal::Busy)),
            Err(CallError::NotSent("audit".into())),
            Err(CallError::Unrecorded {
                agency_failed: true,
            }),
            Err(CallError::Transport(TransportError::TooLarge(10))),
        ] {
            let script = Script::new([result]);
            let svc = RetryLayer::new(policy()).layer(script.service());
            let mut c = call();
            c.retries = 3;
            let _ = svc.oneshot(c).await;
            assert_eq!(script.calls(), 1);
        }
    }
}
