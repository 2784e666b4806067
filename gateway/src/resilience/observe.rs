//! The outer end of an agency's stack: a tracing span per agency call
//! (`agency_call`: the agency, the action, the request id, the inquiry or
//! the order; never an identity number or a name, never a body), and the
//! count of calls the stack refused, by the layer that refused them.

use tracing::Instrument;

use super::call::{AgencyCall, CallError, CallFuture};
use super::layer::{Around, AroundLayer, Inner};

#[derive(Debug, Clone, Copy, Default)]
pub struct Observe;

impl Observe {
    pub fn layer() -> AroundLayer<Self> {
        AroundLayer(Self)
    }
}

impl Around for Observe {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        let span = tracing::info_span!(
            "agency_call",
            agency = %call.agency,
            action = %call.action,
            request_id = %call.request_id,
            inquiry = call.inquiry.as_deref(),
            order = call.order.as_deref(),
            items = call.items,
        );
        let agency = call.agency.clone();
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
                        crate::metrics::rejected(&agency, refusal.layer());
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
        let svc = Observe::layer().layer(script.service());
        for _ in 0..4 {
            let mut c = call();
            c.agency = "bank-observed".into();
            let _ = svc.clone().oneshot(c).await;
        }
        assert_eq!(
            crate::metrics::rejections("bank-observed", "concurrency"),
            2
        );
        assert_eq!(crate::metrics::rejections("bank-observed", "breaker"), 1);
        assert_eq!(crate::metrics::rejections("bank-observed", "rate_limit"), 0);
    }
}
