//! Hedged inquiry messages, for agencies whose file asks for them
//! (`limits.hedge_percent`): once the agency's p95 latency is known (from
//! its recent answers), a message not answered within it is sent once
//! more, and the first answer is used. A hedge is a message like any other:
//! it goes through the quota, the concurrency bound, the breaker and the
//! audit layer (its own outbound row, marked `hedge`), and the copy that
//! lost is never cancelled: it runs to its end, so its reply is recorded
//! and its breaker told. At most `hedge_percent` of messages are hedged
//! (tower's `TpsBudget`). Inquiries only: control orders are never sent
//! twice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::Either;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::retry::budget::{Budget, TpsBudget};

use super::call::{AgencyCall, CallError, CallFuture};
use super::layer::{Around, AroundLayer, Inner};
use super::retry::is_retriable;
use crate::metrics::AgencyMetrics;
use crate::transport::HttpReply;

/// How many recent answers the p95 is taken over, and how many it needs.
const WINDOW: usize = 200;
const KNOWN_AFTER: usize = 20;

/// The latencies of an agency's recent answers.
#[derive(Debug, Default)]
pub struct Latencies {
    recent: Mutex<VecDeque<Duration>>,
}

impl Latencies {
    pub fn record(&self, latency: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(latency);
    }

    /// The 95th percentile of the recent answers; None until enough are
    /// known.
    pub fn p95(&self) -> Option<Duration> {
        let mut sorted: Vec<Duration> = self
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        if sorted.len() < KNOWN_AFTER {
            return None;
        }
        sorted.sort_unstable();
        sorted.get((sorted.len() * 95).div_ceil(100) - 1).copied()
    }
}

/// An answer that settles the message (not a failure worth another try).
fn is_answer(result: &Result<HttpReply, CallError>) -> bool {
    result.is_ok() && !is_retriable(result)
}

#[derive(Debug, Clone)]
pub struct Hedge {
    latencies: Arc<Latencies>,
    /// None: the agency is never hedged.
    budget: Option<Arc<TpsBudget>>,
    metrics: Arc<AgencyMetrics>,
}

impl Hedge {
    pub fn layer(
        latencies: Arc<Latencies>,
        budget: Option<Arc<TpsBudget>>,
        metrics: Arc<AgencyMetrics>,
    ) -> AroundLayer<Self> {
        AroundLayer(Self {
            latencies,
            budget,
            metrics,
        })
    }

    /// A budget for `percent` of messages (0: none).
    pub fn budget(percent: u32) -> Option<Arc<TpsBudget>> {
        (percent > 0).then(|| {
            let share = percent.min(100) as f32 / 100.0;
            Arc::new(TpsBudget::new(Duration::from_secs(10), 0, share))
        })
    }

    /// The inner call, its answer's latency recorded.
    fn timed<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        let latencies = self.latencies.clone();
        let future = inner.call(call);
        Box::pin(async move {
            let result = future.await;
            if let Ok(reply) = &result
                && reply.status < 500
            {
                latencies.record(reply.latency);
            }
            result
        })
    }
}

impl Around for Hedge {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        let after = self.budget.as_ref().and_then(|budget| {
            budget.deposit();
            self.latencies.p95()
        });
        let mut primary = self.timed(inner, call.clone());
        let (Some(after), Some(budget)) = (after, self.budget.clone()) else {
            return primary;
        };
        let this = self.clone();
        let spare = inner.clone();
        Box::pin(async move {
            tokio::select! {
                result = &mut primary => return result,
                () = tokio::time::sleep(after) => {}
            }
            if call.deadline.is_some_and(|d| Instant::now() >= d) || !budget.withdraw() {
                return primary.await;
            }
            this.metrics.hedged();
            tracing::debug!(
                after_ms = after.as_millis() as u64,
                "no answer within the agency's p95: hedging"
            );
            let mut spare = match spare.ready_oneshot().await {
                Ok(s) => s,
                Err(_) => return primary.await,
            };
            let hedge = this.timed(
                &mut spare,
                AgencyCall {
                    hedge: true,
                    ..call
                },
            );
            match futures::future::select(primary, hedge).await {
                Either::Left((first, hedge)) if !is_answer(&first) => {
                    let second = hedge.await;
                    if is_answer(&second) { second } else { first }
                }
                Either::Right((second, primary)) if !is_answer(&second) => primary.await,
                // The first answer wins; the other copy runs to its end.
                Either::Left((answer, other)) | Either::Right((answer, other)) => {
                    tokio::spawn(other);
                    answer
                }
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resilience::testing::{Journal, call, delayed};
    use tower::{Layer, ServiceExt};

    fn metrics() -> Arc<AgencyMetrics> {
        AgencyMetrics::of("bank-hedged")
    }

    pub(crate) fn known(ms: u64) -> Arc<Latencies> {
        let l = Arc::new(Latencies::default());
        for _ in 0..KNOWN_AFTER {
            l.record(Duration::from_millis(ms));
        }
        l
    }

    #[test]
    fn the_p95_needs_enough_answers() {
        let l = Latencies::default();
        for ms in 1..=19 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.p95(), None);
        for ms in 20..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.p95(), Some(Duration::from_millis(95)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_message_is_hedged_after_the_p95_and_the_first_answer_wins() {
        let journal = Journal::default();
        let svc = Hedge::layer(known(100), Hedge::budget(100), metrics())
            .layer(delayed(vec![10_000, 50], journal.clone()));
        let started = Instant::now();
        let result = svc.oneshot(call()).await;
        assert_eq!(result.map(|r| r.status).ok(), Some(200));
        assert_eq!(started.elapsed(), Duration::from_millis(150));
        assert_eq!(
            journal.entries(),
            ["sent primary", "sent hedge", "answered hedge"]
        );
        // The slower copy is not cancelled: its answer still comes (and is
        // recorded by the audit layer inside).
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            journal.entries().last().map(String::as_str),
            Some("answered primary")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_hedge_without_a_known_p95_a_budget_or_a_slow_answer() {
        for (latencies, budget, delays) in [
            (
                Arc::new(Latencies::default()),
                Hedge::budget(100),
                vec![10_000],
            ),
            (known(100), None, vec![10_000]),
            (known(100), Hedge::budget(100), vec![80]),
        ] {
            let journal = Journal::default();
            let svc =
                Hedge::layer(latencies, budget, metrics()).layer(delayed(delays, journal.clone()));
            assert!(svc.oneshot(call()).await.is_ok());
            assert_eq!(journal.entries(), ["sent primary", "answered primary"]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_the_share_of_hedged_messages() {
        let journal = Journal::default();
        let svc = Hedge::layer(known(10), Hedge::budget(10), metrics())
            .layer(delayed(vec![1_000; 100], journal.clone()));
        for _ in 0..20 {
            let _ = svc.clone().oneshot(call()).await;
        }
        let hedges = journal
            .entries()
            .iter()
            .filter(|e| *e == "sent hedge")
            .count();
        assert!((1..=2).contains(&hedges), "{hedges} of 20");
    }
}
