//! The enforcement system's side of the API, as a careful client behaves:
//! a request that got no answer (the gateway was killed, the connection
//! reset) or a 503 is sent again, with the same `Idempotency-Key`, to the
//! same or the other instance, until it gets an answer or a deadline passes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ENFORCEMENT: &str = "demo-enforcement-token";

/// How long a client keeps retrying one request.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub attempts: AtomicU64,
    pub no_answer: AtomicU64,
    pub unavailable: AtomicU64,
    pub throttled: AtomicU64,
    pub gave_up: AtomicU64,
    /// Answers 500 or any 5xx but 503: never allowed.
    pub server_errors: AtomicU64,
    /// The first few such answers, for the report.
    pub server_error_samples: Mutex<Vec<String>>,
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub struct Api {
    pub http: reqwest::Client,
    pub bases: Vec<String>,
    pub counters: Counters,
}

/// What a request finally got.
#[derive(Debug)]
pub enum Answer {
    Got(StatusCode, Value),
    /// No answer within the retry deadline.
    GaveUp,
}

impl Answer {
    pub fn ok(&self) -> Option<&Value> {
        match self {
            Answer::Got(s, v) if s.is_success() => Some(v),
            _ => None,
        }
    }
}

impl Api {
    pub fn new(bases: Vec<String>) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            bases,
            counters: Counters::default(),
        })
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Answer {
        self.send(Method::POST, path, key, Some(body)).await
    }

    /// Sends until an answer other than "none", 503 or 429 arrives, or
    /// [`GIVE_UP_AFTER`] passes. Each attempt picks an instance at random.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        add(&self.counters.requests);
        let deadline = Instant::now() + GIVE_UP_AFTER;
        let mut pause = Duration::from_millis(100);
        loop {
            add(&self.counters.attempts);
            let base = {
                let i = rand::rng().random_range(0..self.bases.len());
                &self.bases[i]
            };
            let mut request = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(ENFORCEMENT);
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            match request.send().await {
                Err(_) => add(&self.counters.no_answer),
                Ok(reply) => {
                    let status = reply.status();
                    let text = reply.text().await.unwrap_or_default();
                    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    match status.as_u16() {
                        503 => add(&self.counters.unavailable),
                        429 => add(&self.counters.throttled),
                        500..=599 => {
                            add(&self.counters.server_errors);
                            if let Ok(mut s) = self.counters.server_error_samples.lock()
                                && s.len() < 10
                            {
                                s.push(format!("{method} {path}: {status} {value}"));
                            }
                        }
                        _ => return Answer::Got(status, value),
                    }
                }
            }
            if Instant::now() > deadline {
                add(&self.counters.gave_up);
                return Answer::GaveUp;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Reads `path` until `done` holds (the value then), or `within` passes
    /// (`None`).
    pub async fn wait_until(
        &self,
        path: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(v) = self.get(path).await.ok()
                && done(v)
            {
                return Some(v.clone());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}
