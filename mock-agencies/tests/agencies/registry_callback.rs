//! registry-x calling the court side back: a submission naming a callback
//! address (`HDDZ`) has its result pushed there once ready. A tiny axum
//! server on an ephemeral port stands in for the court side.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use chrono::{DateTime, Utc};
use mock_agencies::config::DEMO_CALLBACK_TOKEN;
use mock_agencies::{MockConfig, MockFleet, fixtures};
use serde_json::{Value, json};

use crate::common::*;
use crate::registry::{poll_url, registry_with_delay, submission, submit_url};

/// One push as the court side received it.
#[derive(Debug, Clone)]
struct Push {
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Push {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON push")
    }
}

#[derive(Clone, Default)]
struct CourtSide {
    pushes: Arc<Mutex<Vec<Push>>>,
    /// Statuses to answer with, in order; 200 once they are used up.
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl CourtSide {
    fn pushes(&self) -> Vec<Push> {
        self.pushes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The pushes for one request number (bodies that are not JSON skipped).
    fn pushes_for(&self, request_number: &str) -> Vec<Push> {
        self.pushes()
            .into_iter()
            .filter(|p| {
                serde_json::from_slice::<Value>(&p.body)
                    .is_ok_and(|v| v["CXQQDH"] == request_number)
            })
            .collect()
    }

    /// Waits until `n` pushes arrived in all, and returns them.
    async fn wait_for(&self, n: usize) -> Vec<Push> {
        eventually(Duration::from_secs(10), || async move {
            let pushes = self.pushes();
            (pushes.len() >= n).then_some(pushes)
        })
        .await
    }
}

async fn take(State(court): State<CourtSide>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    court
        .pushes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Push {
            authorization: text(header::AUTHORIZATION),
            content_type: text(header::CONTENT_TYPE),
            body: body.to_vec(),
        });
    let status = court
        .statuses
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front()
        .unwrap_or(200);
    StatusCode::from_u16(status).expect("a valid status")
}

/// Starts the court side on 127.0.0.1:0, answering `statuses` in order and
/// 200 after them; returns its callback URL. It stops with the test's runtime.
async fn court_side(statuses: &[u16]) -> (String, CourtSide) {
    let court = CourtSide::default();
    court
        .statuses
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(statuses);
    let app = Router::new()
        .route("/court/callback", post(take))
        .with_state(court.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serves");
    });
    (format!("http://{addr}/court/callback"), court)
}

fn with_callback(mut body: Value, callback: &str) -> Value {
    body["HDDZ"] = json!(callback);
    body
}

fn zhang_san_to(request_number: &str, callback: &str) -> Value {
    with_callback(
        submission(
            request_number,
            fixtures::ZHANG_SAN_NAME,
            fixtures::ZHANG_SAN_ID,
        ),
        callback,
    )
}

fn wang_wu_to(request_number: &str, callback: &str) -> Value {
    with_callback(
        submission(request_number, fixtures::WANG_WU_NAME, fixtures::WANG_WU_ID),
        callback,
    )
}

/// The registry's log entries of kind `callback` for a request number.
async fn callback_attempts(fleet: &MockFleet, request_number: &str) -> Vec<Value> {
    let (_, ledger) = get_json(&url(fleet, fixtures::REGISTRY_X, "/_mock/ledger")).await;
    ledger["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["kind"] == "callback" && r["request_number"] == request_number)
        .cloned()
        .collect()
}

async fn poll_bytes(fleet: &MockFleet, request_number: &str) -> Vec<u8> {
    let response = client()
        .get(poll_url(fleet, request_number))
        .send()
        .await
        .expect("the registry answers");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("a body").to_vec()
}

fn at(record: &Value) -> DateTime<Utc> {
    record["received_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("an RFC 3339 time")
}

#[tokio::test]
async fn zhang_sans_result_is_pushed_once_with_the_bearer_token_and_equals_the_poll_answer() {
    let fleet = registry_with_delay(300).await;
    let (callback, court) = court_side(&[]).await;
    let (status, accepted) =
        post_json(&submit_url(&fleet), &zhang_san_to("Q-cb-1", &callback)).await;
    assert_eq!(status, 200);
    assert_eq!(accepted["RESULT"], "0000");
    let ticket = accepted["SLBH"].as_str().expect("a ticket").to_owned();

    let pushes = court.wait_for(1).await;
    let push = &pushes[0];
    assert_eq!(
        push.authorization.as_deref(),
        Some(format!("Bearer {DEMO_CALLBACK_TOKEN}").as_str())
    );
    assert_eq!(push.content_type.as_deref(), Some("application/json"));
    // Byte for byte what a poll answers now that the result is ready.
    let polled = poll_bytes(&fleet, "Q-cb-1").await;
    assert_eq!(push.body, polled);
    let pushed = push.json();
    assert_eq!(pushed["RESULT"], "0000");
    assert_eq!(pushed["CXQQDH"], "Q-cb-1");
    assert_eq!(pushed["SLBH"], ticket.as_str());
    assert_eq!(pushed["CXJG"], "1");
    let units = pushed["BDCLIST"].as_array().expect("units");
    assert_eq!(units.len(), 1);
    assert_eq!(units[0]["BDCDYH"], fixtures::ZHANG_SAN_UNIT_NUMBER);

    let attempts = callback_attempts(&fleet, "Q-cb-1").await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let a = &attempts[0];
    assert_eq!(a["holder_id"], fixtures::ZHANG_SAN_ID);
    assert_eq!(a["callback_status"], 200);
    assert_eq!(a["callback_attempt"], 1);
    assert!(a.get("callback_error").is_none());
    assert!(a["received_at"].is_string());

    // The same submission again: same ticket, no second push. Its result is
    // ready already, so a second push would go out at once; a later request
    // pushed to the same place shows that it did not.
    let (_, again) = post_json(&submit_url(&fleet), &zhang_san_to("Q-cb-1", &callback)).await;
    assert_eq!(again["SLBH"], ticket.as_str());
    set_faults(&fleet, fixtures::REGISTRY_X, json!({"result_delay_ms": 0})).await;
    let (_, marker) = post_json(&submit_url(&fleet), &wang_wu_to("Q-cb-marker", &callback)).await;
    assert_eq!(marker["RESULT"], "0000");
    eventually(Duration::from_secs(10), || async {
        (!court.pushes_for("Q-cb-marker").is_empty()).then_some(())
    })
    .await;
    assert_eq!(court.pushes_for("Q-cb-1").len(), 1);
    assert_eq!(court.pushes().len(), 2);
    assert_eq!(callback_attempts(&fleet, "Q-cb-1").await.len(), 1);
    let marker_push = &court.pushes_for("Q-cb-marker")[0];
    assert_eq!(marker_push.json()["CXJG"], "0");
    assert_eq!(marker_push.json()["BDCLIST"], json!([]));
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_callback_is_tried_three_times_and_the_result_stays_pollable() {
    let fleet = registry_with_delay(0).await;
    // A port nobody listens on any more: connections are refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = closed.local_addr().expect("an address");
    drop(closed);
    let callback = format!("http://{addr}/court/callback");
    let (_, accepted) = post_json(&submit_url(&fleet), &zhang_san_to("Q-cb-down", &callback)).await;
    assert_eq!(accepted["RESULT"], "0000");

    let fleet_ref = &fleet;
    let attempts = eventually(Duration::from_secs(10), || async move {
        let attempts = callback_attempts(fleet_ref, "Q-cb-down").await;
        (attempts.len() >= 3).then_some(attempts)
    })
    .await;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["callback_attempt"], i + 1);
        assert_eq!(a["holder_id"], fixtures::ZHANG_SAN_ID);
        assert!(a.get("callback_status").is_none(), "{a}");
        assert!(
            a["callback_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{a}"
        );
    }
    // Backing off between attempts (200 ms, then 400 ms).
    let gaps: Vec<i64> = attempts
        .windows(2)
        .map(|w| (at(&w[1]) - at(&w[0])).num_milliseconds())
        .collect();
    assert!(gaps[0] >= 190 && gaps[1] >= 390, "gaps {gaps:?}");

    let (status, done) = get_json(&poll_url(&fleet, "Q-cb-down")).await;
    assert_eq!(status, 200);
    assert_eq!(done["RESULT"], "0000");
    assert_eq!(done["CXJG"], "1");
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_answer_that_is_not_2xx_is_retried() {
    let fleet = registry_with_delay(0).await;
    let (callback, court) = court_side(&[503, 404]).await;
    let (_, accepted) =
        post_json(&submit_url(&fleet), &zhang_san_to("Q-cb-retry", &callback)).await;
    assert_eq!(accepted["RESULT"], "0000");
    let pushes = court.wait_for(3).await;
    assert!(pushes.windows(2).all(|w| w[0].body == w[1].body));
    let fleet_ref = &fleet;
    let attempts = eventually(Duration::from_secs(10), || async move {
        let attempts = callback_attempts(fleet_ref, "Q-cb-retry").await;
        (attempts.len() >= 3).then_some(attempts)
    })
    .await;
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["callback_status"]).collect();
    assert_eq!(statuses, [&json!(503), &json!(404), &json!(200)]);
    fleet.shutdown().await;
}

#[tokio::test]
async fn without_hddz_nothing_is_pushed() {
    let fleet = registry_with_delay(0).await;
    let (callback, court) = court_side(&[]).await;
    let (_, accepted) = post_json(
        &submit_url(&fleet),
        &submission(
            "Q-cb-none",
            fixtures::ZHANG_SAN_NAME,
            fixtures::ZHANG_SAN_ID,
        ),
    )
    .await;
    assert_eq!(accepted["RESULT"], "0000");
    // A blank HDDZ is no callback address either.
    let (_, blank) = post_json(&submit_url(&fleet), &wang_wu_to("Q-cb-blank", " ")).await;
    assert_eq!(blank["RESULT"], "0000");
    let poll = &poll_url(&fleet, "Q-cb-none");
    let done = eventually(Duration::from_secs(10), || async move {
        let (_, reply) = get_json(poll).await;
        (reply["RESULT"] == "0000").then_some(reply)
    })
    .await;
    assert_eq!(done["CXJG"], "1");

    // A later request with a callback address is pushed, and only it.
    let (_, marker) = post_json(&submit_url(&fleet), &wang_wu_to("Q-cb-marker", &callback)).await;
    assert_eq!(marker["RESULT"], "0000");
    let pushes = court.wait_for(1).await;
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].json()["CXQQDH"], "Q-cb-marker");
    assert!(callback_attempts(&fleet, "Q-cb-none").await.is_empty());
    assert!(callback_attempts(&fleet, "Q-cb-blank").await.is_empty());
    fleet.shutdown().await;
}

#[tokio::test]
async fn without_a_token_no_authorization_header_is_sent() {
    let mut config = MockConfig::standard();
    for a in &mut config.agencies {
        a.result_delay_ms = 0;
        a.callback_token = None;
    }
    let fleet = start(&config).await;
    let (callback, court) = court_side(&[]).await;
    let (_, accepted) = post_json(&submit_url(&fleet), &zhang_san_to("Q-cb-anon", &callback)).await;
    assert_eq!(accepted["RESULT"], "0000");
    let pushes = court.wait_for(1).await;
    assert_eq!(pushes[0].authorization, None);
    assert_eq!(pushes[0].json()["CXQQDH"], "Q-cb-anon");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_callback_address_that_is_not_an_absolute_http_url_is_a_400() {
    let fleet = standard().await;
    for bad in ["/court/callback", "ftp://127.0.0.1/x", "not a url"] {
        let (status, reply) = post_json(&submit_url(&fleet), &zhang_san_to("Q-cb-bad", bad)).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(reply["RESULT"], "0400");
        assert_eq!(reply["CXQQDH"], "Q-cb-bad");
        assert!(reply["MSG"].as_str().is_some_and(|m| m.contains("HDDZ")));
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn refused_at_intake_nothing_is_pushed_and_malformed_cuts_the_push() {
    let fleet = registry_with_delay(0).await;
    let (callback, court) = court_side(&[]).await;

    set_faults(&fleet, fixtures::REGISTRY_X, json!({"mode": "refuse"})).await;
    let (_, refused) = post_json(&submit_url(&fleet), &zhang_san_to("Q-cb-ref", &callback)).await;
    assert_eq!(refused["RESULT"], "1001");

    set_faults(&fleet, fixtures::REGISTRY_X, json!({"mode": "malformed"})).await;
    let response = client()
        .post(submit_url(&fleet))
        .json(&zhang_san_to("Q-cb-cut", &callback))
        .send()
        .await
        .expect("the registry answers");
    assert_eq!(response.status(), 200);
    let pushes = court.wait_for(1).await;
    let cut = pushes[0].body.clone();
    assert!(
        serde_json::from_slice::<Value>(&cut).is_err(),
        "cut in half"
    );
    assert!(!cut.is_empty());

    set_faults(&fleet, fixtures::REGISTRY_X, json!({"mode": "normal"})).await;
    let whole = poll_bytes(&fleet, "Q-cb-cut").await;
    assert_eq!(cut.len(), whole.len() / 2);
    assert_eq!(&whole[..cut.len()], &cut[..], "the same body, cut");

    // The refused request was not pushed then, nor later: only the cut one was.
    assert!(callback_attempts(&fleet, "Q-cb-ref").await.is_empty());
    assert_eq!(court.pushes().len(), 1);
    fleet.shutdown().await;
}

#[test]
fn the_standard_registry_has_the_demo_token_and_only_registries_take_one() {
    let standard = MockConfig::standard();
    let tokens: Vec<(&str, Option<&str>)> = standard
        .agencies
        .iter()
        .map(|a| (a.id.as_str(), a.callback_token.as_deref()))
        .collect();
    assert_eq!(
        tokens,
        [
            (fixtures::BANK_A, None),
            (fixtures::BANK_B, None),
            (fixtures::REGISTRY_X, Some(DEMO_CALLBACK_TOKEN)),
        ]
    );
    let mut wrong = standard;
    wrong.agencies[1].callback_token = Some("t".into());
    wrong.agencies[2].callback_token = Some("has blanks".into());
    let error = wrong.validate().expect_err("invalid").to_string();
    assert!(error.contains("only for registry-json"), "{error}");
    assert!(error.contains("printable ASCII"), "{error}");
}
