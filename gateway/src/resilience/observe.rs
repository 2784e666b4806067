//! The outer end of an agency's stack: a tracing span per agency call
//! (`agency_call`: the agency, the action, the request id, the inquiry or
//! the order; never an identity number or a name, never a body), and the
//! count of calls the stack refused, by the layer that refused them.
//!
//! The span is at debug level: at the default level a call costs no span
//! and no formatted fields. What an operator follows at info level is the
//! inquiry (one event when it is accepted), not each message of it.

use std::sync::Arc;

use tracing::Instrument;

use super::call::{AgencyCall, CallError, CallFuture};
use super::layer::{Around, AroundLayer, Inner};
use crate::metrics::AgencyMetrics;
use crate::metrics::recent::{ErrorKind, Recorder};

#[derive(Debug, Clone)]
pub struct Observe {
    metrics: Arc<AgencyMetrics>,
    recorder: Arc<Recorder>,
}

impl Observe {
    pub fn layer(metrics: Arc<AgencyMetrics>, recorder: Arc<Recorder>) -> AroundLayer<Self> {
        AroundLayer(Self { metrics, recorder })
    }
}

impl Around for Observe {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        let span = tracing::debug_span!(
            "agency_call",
            agency = %call.agency,
            action = %call.action,
            request_id = %call.request_id,
            inquiry = call.inquiry.as_deref(),
            order = call.order.as_deref(),
            items = call.items,
        );
        let metrics = self.metrics.clone();
        let recorder = self.recorder.clone();
        let future = span.in_scope(|| inner.call(call));
        Box::pin(
            async move {
                let result = future.await;
                match &result {
                    Ok(reply) => tracing::debug!(
                        status = reply.status,
                        latency_ms = reply.latency.as_millis() as u64,
                        "agency answered"
                    ),
                    Err(CallError::Refused(refusal)) => {
                        metrics.rejected(refusal.layer());
                        if let Some(kind) = ErrorKind::of_layer(refusal.layer()) {
                            recorder.error(kind);
                        }
                        tracing::debug!(layer = refusal.layer(), "{refusal}");
                    }
                    Err(e) => tracing::debug!(error = %e, "agency call failed"),
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::Refusal;
    use crate::resilience::testing::{Script, call};
    use tower::{Layer, ServiceExt};

    #[tokio::test]
    async fn refusals_are_counted_by_the_layer_that_refused() {
        let script = Script::new([
            Err(CallError::Refused(Refusal::Busy)),
            Err(CallError::Refused(Refusal::CircuitOpen { retry_in: None })),
            Err(CallError::Refused(Refusal::Busy)),
            Ok(crate::resilience::testing::reply(200)),
        ]);
        let metrics = crate::metrics::AgencyMetrics::of("bank-observed");
        let recorder = Arc::new(Recorder::new());
        let svc = Observe::layer(metrics, recorder.clone()).layer(script.service());
        for _ in 0..4 {
            let _ = svc.clone().oneshot(call()).await;
        }
        assert_eq!(
            crate::metrics::rejections("bank-observed", "concurrency"),
            2
        );
        assert_eq!(crate::metrics::rejections("bank-observed", "breaker"), 1);
        assert_eq!(crate::metrics::rejections("bank-observed", "rate_limit"), 0);
        let errors = recorder.view().errors_recent;
        assert_eq!((errors.busy, errors.breaker_open), (2, 1));
        assert_eq!(errors.rate_limited, 0);
    }
}
