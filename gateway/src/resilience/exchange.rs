//! The inner end of an agency's stack: the HTTP exchange itself, through
//! `transport.rs`, counted in the agency's in-flight gauge while it is on
//! the wire. Everything around it (the audit record, the timeout) is the
//! layers' business.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::call::{AgencyCall, CallError, CallFuture};
use crate::metrics::AgencyMetrics;
use crate::transport::{AgencyChannel, HttpReply, Transport};

/// Cloned with every call (the stack is cloned for each): one pointer.
#[derive(Debug, Clone)]
pub struct Exchange(Arc<Target>);

#[derive(Debug)]
struct Target {
    transport: Transport,
    channel: AgencyChannel,
    base_url: String,
    metrics: Arc<AgencyMetrics>,
}

impl Exchange {
    pub fn new(
        transport: Transport,
        channel: AgencyChannel,
        base_url: &str,
        metrics: Arc<AgencyMetrics>,
    ) -> Self {
        Self(Arc::new(Target {
            transport,
            channel,
            base_url: base_url.to_owned(),
            metrics,
        }))
    }
}

impl Service<AgencyCall> for Exchange {
    type Response = HttpReply;
    type Error = CallError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: AgencyCall) -> CallFuture {
        let this = self.0.clone();
        Box::pin(async move {
            let _in_flight = this.metrics.in_flight();
            this.transport
                .exchange(&this.channel, &this.base_url, &call.wire, &call.request_id)
                .await
                .map_err(CallError::Transport)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::testing::call;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    #[tokio::test]
    async fn an_exchange_is_counted_in_flight_while_on_the_wire() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (arrived_tx, arrived) = tokio::sync::oneshot::channel::<()>();
        let (answer, answer_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await?;
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            // Headers and the 4-byte body.
            while !seen.windows(4).any(|w| w == b"<q/>") {
                let n = socket.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let _ = arrived_tx.send(());
            let _ = answer_rx.await;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n<ok/>")
                .await?;
            anyhow::Ok(String::from_utf8_lossy(&seen).into_owned())
        });
        let transport = Transport::new(1024)?;
        let channel = transport
            .channel_for(&adapters::agency::Connection::default())
            .map_err(anyhow::Error::msg)?;
        let metrics = crate::metrics::AgencyMetrics::of("bank-in-flight");
        let svc = Exchange::new(transport, channel, &format!("http://{addr}"), metrics);
        let pending = tokio::spawn(svc.oneshot(call()));
        arrived.await?;
        assert_eq!(crate::metrics::in_flight("bank-in-flight"), 1);
        let _ = answer.send(());
        let reply = pending.await??;
        assert_eq!((reply.status, &reply.body[..]), (200, &b"<ok/>"[..]));
        assert_eq!(crate::metrics::in_flight("bank-in-flight"), 0);
        let request = server.await??;
        assert!(request.contains("x-request-id: P1"), "{request}");
        Ok(())
    }
}
