//! Sends a dialect's `WireRequest` to an agency over HTTP and reads the reply,
//! bounded in time and size.
//!
//! One pooled client for every agency, so connections are reused. The whole
//! exchange, body included, must fit in the agency's timeout: an agency that
//! trickles its reply is a timeout, not a hung task.

use std::time::{Duration, Instant};

use adapters::dialect::{HttpMethod, WireRequest};
use bytes::{Bytes, BytesMut};
use reqwest::header::CONTENT_TYPE;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("no complete answer within {0} ms")]
    Timeout(u64),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the reply exceeds {0} bytes")]
    TooLarge(usize),
    #[error("HTTP exchange failed: {0}")]
    Http(String),
}

/// An agency's HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub latency: Duration,
}

#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    max_reply_bytes: usize,
}

impl Transport {
    pub fn new(max_reply_bytes: usize) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("court-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            max_reply_bytes,
        })
    }

    pub async fn send(
        &self,
        base_url: &str,
        request: &WireRequest,
        timeout: Duration,
        request_id: &str,
    ) -> Result<HttpReply, TransportError> {
        let started = Instant::now();
        let url = format!("{}{}", base_url.trim_end_matches('/'), request.path);
        let exchange = async {
            let mut builder = match request.method {
                HttpMethod::Get => self.client.get(&url),
                HttpMethod::Post => self.client.post(&url).body(request.body.clone()),
            };
            if let Some(ct) = &request.content_type {
                builder = builder.header(CONTENT_TYPE, ct);
            }
            builder = builder.header("x-request-id", request_id);
            let mut response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if response
                .content_length()
                .is_some_and(|n| n > self.max_reply_bytes as u64)
            {
                return Err(TransportError::TooLarge(self.max_reply_bytes));
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > self.max_reply_bytes {
                    return Err(TransportError::TooLarge(self.max_reply_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, content_type, body.freeze()))
        };
        let (status, content_type, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout(timeout.as_millis() as u64))??;
        Ok(HttpReply {
            status,
            content_type,
            body,
            latency: started.elapsed(),
        })
    }
}

fn classify(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout(0)
    } else if e.is_connect() {
        TransportError::Connect(root_cause(&e))
    } else {
        TransportError::Http(root_cause(&e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
