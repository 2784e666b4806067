//! Each message that really leaves, told to the agency's recorder of
//! recent traffic (`metrics::recent`) as it ends: sent, its answer's
//! latency, the error it was (a timeout, no connection, a 5xx, a 4xx or
//! 429, an oversize reply), and in flight while it runs. It stands inside
//! the audit layer (only messages whose outbound row committed get here)
//! and outside the timeout (which it sees end a message).

use std::sync::Arc;

use super::call::{AgencyCall, CallError, CallFuture};
use super::layer::{Around, AroundLayer, Inner};
use crate::metrics::recent::{ErrorKind, Recorder};
use crate::transport::{HttpReply, TransportError};

#[derive(Debug, Clone)]
pub struct Tally {
    recorder: Arc<Recorder>,
}

impl Tally {
    pub fn layer(recorder: Arc<Recorder>) -> AroundLayer<Self> {
        AroundLayer(Self { recorder })
    }
}

/// What an exchange's end was: its answer's latency, and its error.
fn reading(
    result: &Result<HttpReply, CallError>,
) -> (Option<std::time::Duration>, Option<ErrorKind>) {
    match result {
        Ok(reply) => (Some(reply.latency), ErrorKind::of_status(reply.status)),
        Err(CallError::Transport(e)) => (
            None,
            Some(match e {
                TransportError::Timeout(_) => ErrorKind::Timeout,
                TransportError::TooLarge(_) => ErrorKind::Oversize,
                TransportError::Connect(_) | TransportError::Http(_) => ErrorKind::Connect,
            }),
        ),
        // Nothing further in refuses or fails to record: no exchange.
        Err(CallError::Refused(_) | CallError::NotSent(_) | CallError::Unrecorded { .. }) => {
            (None, None)
        }
    }
}

impl Around for Tally {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        let recorder = self.recorder.clone();
        let future = inner.call(call);
        Box::pin(async move {
            let result = {
                let _flying = recorder.started();
                future.await
            };
            let (latency, error) = reading(&result);
            if latency.is_some() || error.is_some() {
                recorder.exchanged(latency, error);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::testing::{Script, call, reply};
    use tower::{Layer, ServiceExt};

    #[tokio::test]
    async fn each_exchange_is_told_with_its_latency_or_its_error() {
        let recorder = Arc::new(Recorder::new());
        let script = Script::new([
            Ok(reply(200)),
            Ok(reply(503)),
            Ok(reply(429)),
            Err(CallError::Transport(TransportError::Timeout(100))),
            Err(CallError::Transport(TransportError::Connect(
                "refused".into(),
            ))),
            Err(CallError::Transport(TransportError::TooLarge(10))),
        ]);
        let svc = Tally::layer(recorder.clone()).layer(script.service());
        for _ in 0..6 {
            let _ = svc.clone().oneshot(call()).await;
        }
        let v = recorder.view();
        assert_eq!(v.sent_since_start, 6);
        assert_eq!(v.latency.samples, 3, "the answers, whatever their status");
        let e = v.errors_recent;
        assert_eq!(
            (e.http_5xx, e.throttled, e.timeout, e.connect, e.oversize),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(v.in_flight, 0);
    }
}
