//! The checks every request passes before its handler, on what the client
//! declared rather than on what it sent: a path and query longer than
//! `limits.max_uri_bytes` is 414 `uri_too_long`; a `Content-Length` over
//! `limits.max_request_bytes` is 413 `body_too_large` before a byte of the
//! body is read (so no `100 Continue` goes out to a client that asked
//! first; a batch inquiry may be as large as `batch::MAX_BODY_BYTES`); a
//! body that has not all arrived `limits.body_read_timeout_ms`
//! after its handler began reading it is 408 `body_timeout`.
//!
//! It never reads a body itself, and answers nothing but those three.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use crate::config::Limits;
use crate::error::ApiError;

/// Where batch inquiries are posted: their bodies have a bound of their own.
pub const BATCH_PATH: &str = "/v1/inquiry-batches";

/// The bounds `guard` holds requests to.
#[derive(Debug, Clone)]
pub struct Edge {
    max_uri_bytes: usize,
    max_request_bytes: u64,
    body_read_timeout: Duration,
}

impl Edge {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_uri_bytes: limits.max_uri_bytes,
            max_request_bytes: u64::try_from(limits.max_request_bytes).unwrap_or(u64::MAX),
            body_read_timeout: Duration::from_millis(limits.body_read_timeout_ms),
        }
    }
}

pub async fn guard(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let version = request.version();
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > edge.max_uri_bytes {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the path and query may be at most {} bytes",
                edge.max_uri_bytes
            ),
        )
        .into_response();
    }
    let max = if request.uri().path() == BATCH_PATH {
        edge.max_request_bytes
            .max(crate::batch::MAX_BODY_BYTES as u64)
    } else {
        edge.max_request_bytes
    };
    if declared_length(request.headers()).is_some_and(|length| length > max) {
        return closing(
            version,
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than the gateway accepts",
            ),
        );
    }
    let late = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            limit: edge.body_read_timeout,
            deadline: None,
            late: late.clone(),
        })
    });
    let response = next.run(request).await;
    // Whatever the handler made of the failed read, the client was late.
    if late.load(Ordering::Relaxed) {
        return closing(
            version,
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} ms",
                    edge.body_read_timeout.as_millis()
                ),
            ),
        );
    }
    response
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The error, telling an HTTP/1 client that the connection ends with it:
/// the rest of its body will not be read.
fn closing(version: Version, error: ApiError) -> Response {
    let mut response = error.into_response();
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A body that must have arrived in full `limit` after it is first read.
/// tower-http's `TimeoutBody` restarts its timer on every frame, so a client
/// sending a byte now and then would never run out of time.
struct DeadlineBody {
    inner: Body,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    late: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        // What has arrived is taken even at the deadline.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::post;
    use futures::StreamExt;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_request_bytes: 1_000,
            max_uri_bytes: 100,
            body_read_timeout_ms: 1_000,
            ..Limits::default()
        }
    }

    /// A route that reads its whole body, as the JSON handlers do.
    fn app() -> Router {
        Router::new()
            .route(
                "/v1/things",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Edge::new(&limits()),
                guard,
            ))
    }

    async fn error_code(response: Response) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn post_to(uri: &str, body: Body) -> Request {
        let mut request = Request::new(body);
        *request.method_mut() = axum::http::Method::POST;
        *request.uri_mut() = uri.parse().unwrap_or_default();
        request
    }

    #[tokio::test]
    async fn a_long_query_is_414() -> anyhow::Result<()> {
        let uri = format!("/v1/things?pad={}", "x".repeat(100));
        let response = app().oneshot(post_to(&uri, Body::empty())).await?;
        assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(error_code(response).await, "uri_too_long");
        Ok(())
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_413_without_reading_the_body() -> anyhow::Result<()>
    {
        // A body that never comes: reading it would hang the test.
        let never = Body::from_stream(futures::stream::pending::<Result<Bytes, axum::Error>>());
        let mut request = post_to("/v1/things", never);
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1001"));
        let response = app().oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(error_code(response).await, "body_too_large");
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_trickling_in_past_the_deadline_is_408() -> anyhow::Result<()> {
        // A byte every 300 ms: each frame is on time, the whole is not.
        let trickle = futures::stream::unfold(0, |sent| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            (sent < 10).then(|| (Ok::<_, axum::Error>(Bytes::from_static(b"x")), sent + 1))
        });
        let started = tokio::time::Instant::now();
        let response = app()
            .oneshot(post_to("/v1/things", Body::from_stream(trickle)))
            .await?;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_millis(1_000));
        assert_eq!(error_code(response).await, "body_timeout");
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_read() -> anyhow::Result<()> {
        let chunks =
            futures::stream::iter([b"ab".as_slice(), b"cd".as_slice()]).then(|chunk| async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok::<_, axum::Error>(Bytes::from_static(chunk))
            });
        let response = app()
            .oneshot(post_to("/v1/things", Body::from_stream(chunks)))
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        Ok(())
    }
}
