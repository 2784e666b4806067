//! The load generator's HTTP client: hyper's pooled HTTP/1.1 client and
//! nothing around it. No URL parsing, header maps built per request,
//! redirect policy, proxy lookup or timer per request, as a general client
//! has: on a two-core machine every microsecond the bench spends on its own
//! requests is taken from what it measures. Requests are made from parts
//! prepared before a run (the URI parsed, header values validated).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A request's fixed parts: where, how, and the headers every request to
/// that place carries.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub method: Method,
    pub uri: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Endpoint {
    /// `url` (plain `http://` only: the bench talks to processes on
    /// 127.0.0.1) with `headers`.
    pub fn new(method: Method, url: &str, headers: &[(&str, &[u8])]) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("{url} is not a URI: {e}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "{url}: the bench's client speaks plain HTTP only"
        );
        let headers = headers
            .iter()
            .map(|(name, value)| {
                Ok((
                    HeaderName::from_bytes(name.as_bytes())?,
                    HeaderValue::from_bytes(value)?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            method,
            uri,
            headers,
        })
    }
}

/// A reply, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// One pool of keep-alive connections per host, shared by every clone.
#[derive(Clone)]
pub struct Lean {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Lean {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            // Every connection a closed loop opened stays for the next
            // request (64 workers × 4 agencies to one host is 256).
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        Self { client }
    }

    /// Sends `body` to `endpoint` and reads the whole reply.
    pub async fn send(&self, endpoint: &Endpoint, body: Bytes) -> anyhow::Result<Reply> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = endpoint.method.clone();
        *request.uri_mut() = endpoint.uri.clone();
        let headers = request.headers_mut();
        for (name, value) in &endpoint.headers {
            headers.insert(name.clone(), value.clone());
        }
        let response = self.client.request(request).await?;
        let status = response.status();
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
}
