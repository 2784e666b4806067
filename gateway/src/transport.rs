//! Sends a dialect's `WireRequest` to an agency over HTTP and reads the reply,
//! bounded in time and size.
//!
//! One pooled client for every agency without TLS settings of its own, so
//! connections are reused; an agency with a private CA or a client
//! certificate gets a client of its own. Auth headers travel marked
//! sensitive and are never logged. The whole exchange, body included, must
//! fit in the agency's timeout: an agency that trickles its reply is a
//! timeout, not a hung task.

use std::time::{Duration, Instant};

use adapters::agency::Connection;
use adapters::dialect::{HttpMethod, WireRequest};
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

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

/// How to reach one agency: the client (shared, or its own for TLS
/// settings) and the auth headers to send.
#[derive(Clone)]
pub struct AgencyChannel {
    client: reqwest::Client,
    headers: HeaderMap,
    own_client: bool,
}

impl AgencyChannel {
    /// Whether the agency has a client of its own (TLS settings).
    pub fn has_own_client(&self) -> bool {
        self.own_client
    }

    /// The names of the auth headers sent (never their values).
    pub fn header_names(&self) -> Vec<String> {
        self.headers.keys().map(|k| k.as_str().to_owned()).collect()
    }
}

impl std::fmt::Debug for AgencyChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgencyChannel")
            .field("headers", &self.header_names())
            .field("own_client", &self.own_client)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    max_reply_bytes: usize,
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("court-gateway/", env!("CARGO_PKG_VERSION")))
}

impl Transport {
    pub fn new(max_reply_bytes: usize) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: client_builder().build()?,
            max_reply_bytes,
        })
    }

    /// The channel for an agency's resolved connection: its auth headers,
    /// and the shared client unless it has TLS settings. An error says what
    /// is wrong (a PEM that does not parse, ...) without any secret.
    pub fn channel_for(&self, connection: &Connection) -> Result<AgencyChannel, String> {
        let mut headers = HeaderMap::new();
        for header in &connection.headers {
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| format!("auth header name {:?} is not valid", header.name))?;
            let mut value = HeaderValue::from_bytes(header.value.expose()).map_err(|_| {
                format!(
                    "the value of auth header {:?} is not a valid header value",
                    header.name
                )
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let Some(tls) = &connection.tls else {
            return Ok(AgencyChannel {
                client: self.client.clone(),
                headers,
                own_client: false,
            });
        };
        let mut builder = client_builder();
        if let Some(ca) = &tls.ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| format!("tls.ca is not a usable PEM certificate: {e}"))?;
            builder = builder.tls_certs_only(roots);
        }
        if let Some(identity) = &tls.identity_pem {
            let identity = reqwest::Identity::from_pem(identity.expose()).map_err(|_| {
                "tls.client_cert and tls.client_key do not form a usable PEM identity".to_owned()
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| format!("the TLS settings cannot be used: {}", root_cause(&e)))?;
        Ok(AgencyChannel {
            client,
            headers,
            own_client: true,
        })
    }

    /// Sends `request` and reads the whole reply, bounded by `timeout`.
    pub async fn send(
        &self,
        channel: &AgencyChannel,
        base_url: &str,
        request: &WireRequest,
        timeout: Duration,
        request_id: &str,
    ) -> Result<HttpReply, TransportError> {
        tokio::time::timeout(
            timeout,
            self.exchange(channel, base_url, request, request_id),
        )
        .await
        .map_err(|_| TransportError::Timeout(timeout.as_millis() as u64))?
    }

    /// Sends `request` and reads the whole reply, with no bound in time:
    /// the caller bounds it (the agency stack's timeout layer, `send`).
    pub async fn exchange(
        &self,
        channel: &AgencyChannel,
        base_url: &str,
        request: &WireRequest,
        request_id: &str,
    ) -> Result<HttpReply, TransportError> {
        let started = Instant::now();
        let url = format!("{}{}", base_url.trim_end_matches('/'), request.path);
        let client = &channel.client;
        let mut builder = match request.method {
            HttpMethod::Get => client.get(&url),
            HttpMethod::Post => client.post(&url).body(request.body.clone()),
        };
        if let Some(ct) = &request.content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        // The dialect's own headers (checked when the dialect loaded).
        for (name, value) in request.headers.iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = builder
            .headers(channel.headers.clone())
            .header("x-request-id", request_id);
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
        // Most replies come in one chunk: that chunk is the body, uncopied.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut size = 0;
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            size += chunk.len();
            if size > self.max_reply_bytes {
                return Err(TransportError::TooLarge(self.max_reply_bytes));
            }
            chunks.push(chunk);
        }
        let body = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.swap_remove(0),
            _ => chunks.concat().into(),
        };
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A dialect's further headers (a SOAP 1.1 `SOAPAction`) reach the
    /// agency with its message.
    #[tokio::test]
    async fn a_dialects_headers_go_with_its_message() -> anyhow::Result<()> {
        crate::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/soap",
            axum::routing::post(|headers: axum::http::HeaderMap| async move {
                headers
                    .get("soapaction")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("no SOAPAction")
                    .to_owned()
            }),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let transport = Transport::new(1 << 20)?;
        let channel = transport
            .channel_for(&Connection::default())
            .map_err(anyhow::Error::msg)?;
        let request = WireRequest {
            method: HttpMethod::Post,
            path: "/soap".into(),
            content_type: Some("text/xml; charset=UTF-8".into()),
            body: Bytes::from_static(b"<x/>"),
            headers: Arc::from(vec![(
                "SOAPAction".to_owned(),
                "\"urn:example:vehicle:1#QueryVehicles\"".to_owned(),
            )]),
        };
        let reply = transport
            .send(
                &channel,
                &format!("http://{addr}"),
                &request,
                Duration::from_secs(5),
                "r-1",
            )
            .await?;
        server.abort();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body.as_ref(),
            b"\"urn:example:vehicle:1#QueryVehicles\""
        );
        Ok(())
    }
}
