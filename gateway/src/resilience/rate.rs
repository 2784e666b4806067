//! The agency's quota: a token bucket (`governor`) at the agency file's
//! `rate_per_second`. A call with no token left is refused at once
//! (`Refusal::RateLimited`, saying when the next token comes) instead of
//! waiting in memory: the caller defers its task in the store, so a wait
//! survives a restart and never holds a lease or a concurrency permit.
//! (tower's own rate limit waits, and counts per service instance.)

use std::sync::Arc;

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};

use super::call::{AgencyCall, CallError, CallFuture, Refusal};
use super::layer::{Around, AroundLayer, Inner};

/// One agency's token bucket.
pub type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

/// Keeps to the agency's quota; no bucket, no limit.
#[derive(Debug, Clone, Default)]
pub struct RateLimit {
    bucket: Option<Arc<Bucket>>,
}

impl RateLimit {
    pub fn layer(bucket: Option<Arc<Bucket>>) -> AroundLayer<Self> {
        AroundLayer(Self { bucket })
    }
}

impl Around for RateLimit {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        if let Some(bucket) = &self.bucket
            && let Err(not_until) = bucket.check()
        {
            let retry_in = not_until.wait_time_from(DefaultClock::default().now());
            return Box::pin(std::future::ready(Err(CallError::Refused(
                Refusal::RateLimited { retry_in },
            ))));
        }
        Box::pin(inner.call(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::testing::{Script, call};
    use governor::Quota;
    use std::num::NonZeroU32;
    use tower::{Layer, ServiceExt};

    #[tokio::test]
    async fn a_call_past_the_quota_is_refused_with_the_wait_and_not_sent() {
        // One an hour: the second is refused whatever the test's pace.
        let quota = Quota::per_hour(NonZeroU32::MIN);
        let bucket = Arc::new(RateLimiter::direct(quota));
        let script = Script::new([]);
        let svc = RateLimit::layer(Some(bucket)).layer(script.service());
        let first = svc.clone().oneshot(call()).await;
        assert_eq!(first.map(|r| r.status).ok(), Some(200));
        let second = svc.clone().oneshot(call()).await;
        match second {
            Err(CallError::Refused(Refusal::RateLimited { retry_in })) => {
                assert!(retry_in.as_secs() > 3_000, "{retry_in:?}")
            }
            other => panic!("expected rate_limited, got {other:?}"),
        }
        assert_eq!(script.calls(), 1);
    }

    #[tokio::test]
    async fn no_quota_no_limit() {
        let script = Script::new([]);
        let svc = RateLimit::layer(None).layer(script.service());
        for _ in 0..100 {
            assert!(svc.clone().oneshot(call()).await.is_ok());
        }
        assert_eq!(script.calls(), 100);
    }
}
