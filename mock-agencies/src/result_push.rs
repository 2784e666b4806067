//! Results pushed to a callback address, as a registry with `HDDZ` and a
//! provident fund centre with `notify_url` do: once the result is ready
//! (the answer's ticket's `ready_at`), the agency `POST`s it as JSON, with
//! its bearer token when it has one, as a task of its own that tries up to
//! three times until one attempt is answered with a 2xx. Each request
//! number is pushed once; every attempt is logged in the ledger. The
//! `malformed` fault cuts the body of an attempt made while it is on; a
//! stopped agency pushes nothing more.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use crate::agency::{Agency, json_body};
use crate::ids;
use crate::ledger::{Answer, CallbackOutcome};

/// Waits before the second and third attempt of a push.
const CALLBACK_BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];

/// A callback address as a request gives it: an absolute URL with a host,
/// `http` (or `https` when allowed). `None` when it is not one.
pub(crate) fn callback_url(text: &str, allow_https: bool) -> Option<Url> {
    let url = Url::parse(text.trim()).ok()?;
    let scheme_ok = url.scheme() == "http" || (allow_https && url.scheme() == "https");
    (scheme_ok && url.host().is_some()).then_some(url)
}

/// Schedules the push of the result of `rn` (an answer with a ticket) to
/// `callback`, with the body `render` makes of the stored answer. Nothing
/// is scheduled when it already was, or when the answer has no ticket.
pub(crate) fn schedule(
    agency: &Arc<Agency>,
    rn: &str,
    answer: &Answer,
    callback: Url,
    render: fn(&Agency, &str, &Answer) -> Value,
) {
    let Some(ticket) = &answer.ticket else {
        return;
    };
    if !agency.state().claim_callback(rn) {
        return;
    }
    let task = push(
        Arc::clone(agency),
        rn.to_owned(),
        callback,
        ticket.ready_at,
        render,
    );
    if !agency.spawn_callback(task) {
        tracing::info!(agency = agency.id(), request_number = %rn, "stopped: no result push");
    }
}

/// Pushes the result of `rn` to `callback` once it is ready: up to three
/// attempts, until one is answered with a 2xx, each logged in the ledger.
async fn push(
    agency: Arc<Agency>,
    rn: String,
    callback: Url,
    ready_at: tokio::time::Instant,
    render: fn(&Agency, &str, &Answer) -> Value,
) {
    tokio::time::sleep_until(ready_at).await;
    let Some(answer) = agency.stored_answer(&rn) else {
        return;
    };
    let body = render(&agency, &rn, &answer);
    let mut waits = CALLBACK_BACKOFF.iter();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let bytes = json_body(agency.faults().mode(), &body);
        let at = chrono::Utc::now();
        let outcome = send(&agency, &callback, bytes).await;
        let delivered =
            matches!(outcome, CallbackOutcome::Status(status) if (200..300).contains(&status));
        tracing::info!(
            agency = agency.id(),
            request_number = %rn,
            subject = %ids::mask(&answer.holder_id),
            attempt,
            ?outcome,
            "result push"
        );
        agency
            .state()
            .record_callback(&rn, &answer.holder_id, attempt, at, outcome);
        if delivered {
            return;
        }
        match waits.next() {
            Some(wait) => tokio::time::sleep(*wait).await,
            None => return,
        }
    }
}

/// One attempt: `POST` the body as JSON, with the agency's bearer token when
/// it has one.
async fn send(agency: &Agency, callback: &Url, body: Vec<u8>) -> CallbackOutcome {
    let client = match agency.callback_client() {
        Ok(client) => client,
        Err(e) => return CallbackOutcome::Error(e),
    };
    let mut request = client
        .post(callback.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(token) = &agency.spec.callback_token {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) => CallbackOutcome::Status(response.status().as_u16()),
        Err(e) => CallbackOutcome::Error(error_chain(&e)),
    }
}

/// An error with its causes: reqwest's own message rarely says what failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
