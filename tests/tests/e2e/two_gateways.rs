//! Two gateway instances on one database, as in production: work is
//! claimed once, both deliver orders, each order reaches the bank in one
//! message whichever gateway sent it, and both extend one audit chain that
//! verifies.
//!
//! Which gateway sent what: each reaches the bank through a relay of its
//! own that passes every request on unchanged and writes down what it
//! passed (the bank cannot tell the two apart, and the gateways' metrics
//! are one registry in this one process).

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode as AxumStatus, Uri, header};
use axum::response::Response;
use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::Value;

use crate::orders::freeze;

/// Orders accepted by each gateway.
const ORDERS_EACH: usize = 20;

/// A request a relay passed on.
#[derive(Debug, Clone)]
struct Passed {
    method: Method,
    path: String,
    body: Bytes,
}

/// An HTTP relay on port 0 in front of one agency, for one gateway.
struct Relay {
    url: String,
    passed: Arc<Mutex<Vec<Passed>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Starts a relay to `target` (a base URL). Needs a tokio runtime.
    fn start(target: &str) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let url = format!("http://{}", listener.local_addr()?);
        let passed = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder().no_proxy().build()?;
        let target = target.trim_end_matches('/').to_owned();
        let log = passed.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (client, target, log) = (client.clone(), target.clone(), log.clone());
                async move {
                    let path = uri
                        .path_and_query()
                        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Passed {
                            method: method.clone(),
                            path: path.clone(),
                            body: body.clone(),
                        });
                    let mut headers = headers;
                    for h in [header::HOST, header::CONTENT_LENGTH, header::CONNECTION] {
                        headers.remove(h);
                    }
                    let reply = client
                        .request(method, format!("{target}{path}"))
                        .headers(headers)
                        .body(body)
                        .send()
                        .await;
                    let mut response = Response::new(Body::empty());
                    match reply {
                        Ok(reply) => {
                            let status = reply.status();
                            let mut headers = reply.headers().clone();
                            for h in [
                                header::CONTENT_LENGTH,
                                header::TRANSFER_ENCODING,
                                header::CONNECTION,
                            ] {
                                headers.remove(h);
                            }
                            let bytes = reply.bytes().await.unwrap_or_default();
                            *response.status_mut() = status;
                            *response.headers_mut() = headers;
                            *response.body_mut() = Body::from(bytes);
                        }
                        Err(_) => *response.status_mut() = AxumStatus::BAD_GATEWAY,
                    }
                    response
                }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, passed, task })
    }

    fn passed(&self) -> Vec<Passed> {
        self.passed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many messages carrying `request_number` in their body it passed
    /// on: control orders (questions about one carry it in the path).
    fn sent(&self, request_number: &str) -> usize {
        let needle = request_number.as_bytes();
        self.passed()
            .iter()
            .filter(|p| p.method == Method::POST)
            .filter(|p| p.body.windows(needle.len()).any(|w| w == needle))
            .count()
    }

    /// How many questions about `request_number` it passed on.
    fn asked(&self, request_number: &str) -> usize {
        self.passed()
            .iter()
            .filter(|p| p.method == Method::GET && p.path.contains(request_number))
            .count()
    }
}

async fn two_gateways_share_the_work_and_keep_one_chain(backend: Backend) -> anyhow::Result<()> {
    // The first gateway reaches bank-a through a relay of its own.
    let mut first_relay = None;
    let sys = System::start_on(backend, |config, agencies| {
        config.audit.checkpoint_every_rows = 10;
        let relay = agencies
            .iter()
            .find(|a| a.id == "bank-a")
            .ok_or_else(|| anyhow::anyhow!("no bank-a"))
            .and_then(|a| Relay::start(&a.base_url));
        if let Ok(relay) = &relay {
            config
                .agency_base_urls
                .insert("bank-a".into(), relay.url.clone());
        }
        first_relay = Some(relay);
    })
    .await?;
    let first_relay = first_relay.ok_or_else(|| anyhow::anyhow!("no relay"))??;
    // The second, on the same database, through another.
    let second_relay = Relay::start(&sys.mock_url("bank-a"))?;
    let mut config = sys.config.clone();
    config
        .agency_base_urls
        .insert("bank-a".into(), second_relay.url.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let second = gateway::Gateway::start_with_clock(config, listener, sys.clock.clone()).await?;
    let second_base = second.base_url();

    // Orders and inquiries arrive at both, at once.
    let mut tasks = Vec::new();
    for i in 0..2 * ORDERS_EACH {
        let base = if i % 2 == 0 {
            sys.base.clone()
        } else {
            second_base.clone()
        };
        let client = sys.client.clone();
        let body = freeze(&sys, zhang_san(), "bank-a", "6222020200112233445", 100);
        tasks.push(tokio::spawn(async move {
            let reply = client
                .post(format!("{base}/v1/orders"))
                .bearer_auth(ENFORCEMENT)
                .header("idempotency-key", format!("two-{i}"))
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(reply.status() == StatusCode::ACCEPTED, "order {i}");
            Ok::<Value, anyhow::Error>(reply.json().await?)
        }));
        if i % 2 == 1 {
            continue;
        }
        let inquiry = sys
            .client
            .post(format!(
                "{}/v1/inquiries?wait=10",
                if i % 4 == 0 { &second_base } else { &sys.base }
            ))
            .bearer_auth(ENFORCEMENT)
            .json(&inquiry_body(nobody()))
            .send();
        tasks.push(tokio::spawn(async move {
            let reply = inquiry.await?;
            anyhow::ensure!(reply.status() == StatusCode::OK, "inquiry");
            Ok(reply.json().await?)
        }));
    }
    let mut orders = Vec::new();
    for t in tasks {
        let v = t.await??;
        if v["id"].as_str().is_some_and(|id| id.starts_with("ord_")) {
            orders.push(v);
        }
    }
    assert_eq!(orders.len(), 2 * ORDERS_EACH);
    for o in &orders {
        sys.wait_for_order(o["id"].as_str().unwrap_or_default(), &["applied"])
            .await?;
    }
    // Each order reached the bank in one message, whichever gateway sent
    // it: the bank's receipts, and the relays' record of who sent it.
    let ledger = sys.ledger("bank-a").await?;
    let controls = ledger["controls"].as_array().map_or(0, Vec::len);
    assert_eq!(controls, 2 * ORDERS_EACH, "{ledger}");
    let (mut by_first, mut by_second, mut asked) = (0, 0, 0);
    for o in &orders {
        let rn = o["request_number"].as_str().unwrap_or_default();
        received_once(&ledger, rn)?;
        let (first, second) = (first_relay.sent(rn), second_relay.sent(rn));
        assert_eq!(
            first + second,
            1,
            "{rn}: sent by the first gateway {first} times, by the second {second} times"
        );
        by_first += first;
        by_second += second;
        asked += first_relay.asked(rn) + second_relay.asked(rn);
    }
    // Both did the work.
    assert!(
        by_first > 0 && by_second > 0,
        "one gateway sent every order: {by_first} by the first, {by_second} by the second"
    );
    println!(
        "two gateways: {by_first} orders sent by the first, {by_second} by the second, each \
         received once by the bank ({asked} questions about them)"
    );
    // One chain, written by both, verifies.
    let report = sys.get("/v1/audit/verify", AUDITOR).await?.body;
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["checked"].as_i64().unwrap_or(0) > 100, "{report}");
    second.shutdown().await;
    Ok(())
}

on_both_backends!(two_gateways_share_the_work_and_keep_one_chain);
