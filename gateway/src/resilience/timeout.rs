//! Bounds one exchange, reply body included, by the agency's `timeout_ms`
//! and by the call's deadline (the inquiry's), whichever comes first. It
//! stands inside the audit layer, so a timed-out exchange has its reply
//! row (`transport: no complete answer within N ms`). tower's own timeout
//! has one fixed duration; this one takes the call's deadline into account.

use std::time::Duration;

use tokio::time::Instant;

use super::call::{AgencyCall, CallError, CallFuture};
use super::layer::{Around, AroundLayer, Inner};
use crate::transport::TransportError;

#[derive(Debug, Clone, Copy)]
pub struct DeadlineTimeout {
    max: Duration,
}

impl DeadlineTimeout {
    /// `max`: the agency's `timeout_ms`.
    pub fn layer(max: Duration) -> AroundLayer<Self> {
        AroundLayer(Self { max })
    }
}

impl Around for DeadlineTimeout {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        let limit = match call.deadline {
            Some(deadline) => self
                .max
                .min(deadline.saturating_duration_since(Instant::now())),
            None => self.max,
        }
        .max(Duration::from_millis(1));
        let future = inner.call(call);
        Box::pin(async move {
            tokio::time::timeout(limit, future)
                .await
                .unwrap_or_else(|_| {
                    Err(CallError::Transport(TransportError::Timeout(
                        limit.as_millis() as u64,
                    )))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::testing::call;
    use crate::transport::HttpReply;
    use tower::{Layer, Service, ServiceExt};

    fn never()
    -> impl Service<AgencyCall, Response = HttpReply, Error = CallError, Future = CallFuture> + Clone
    {
        tower::service_fn(|_: AgencyCall| -> CallFuture { Box::pin(std::future::pending()) })
    }

    #[tokio::test(start_paused = true)]
    async fn the_agency_timeout_bounds_a_call_without_deadline() {
        let svc = DeadlineTimeout::layer(Duration::from_secs(5)).layer(never());
        let started = Instant::now();
        let result = svc.oneshot(call()).await;
        assert!(
            matches!(
                result,
                Err(CallError::Transport(TransportError::Timeout(5000)))
            ),
            "{result:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_nearer_deadline_cuts_the_call_short() {
        let svc = DeadlineTimeout::layer(Duration::from_secs(5)).layer(never());
        let started = Instant::now();
        let mut c = call();
        c.deadline = Some(started + Duration::from_secs(2));
        let result = svc.clone().oneshot(c).await;
        assert!(
            matches!(
                result,
                Err(CallError::Transport(TransportError::Timeout(2000)))
            ),
            "{result:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // A deadline already past still gives the call its millisecond,
        // and never waits the agency's whole timeout.
        let mut late = call();
        late.deadline = Some(Instant::now());
        let result = svc.oneshot(late).await;
        assert!(
            matches!(
                result,
                Err(CallError::Transport(TransportError::Timeout(1)))
            ),
            "{result:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_passes() {
        let svc = DeadlineTimeout::layer(Duration::from_secs(5)).layer(tower::service_fn(
            |_: AgencyCall| -> CallFuture {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(crate::resilience::testing::reply(200))
                })
            },
        ));
        assert_eq!(svc.oneshot(call()).await.map(|r| r.status).ok(), Some(200));
    }
}
