//! Fakes for the layers' unit tests: a scripted inner service and an audit
//! hook that writes down what it is asked to record.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use adapters::dialect::{HttpMethod, WireRequest};
use async_trait::async_trait;
use bytes::Bytes;
use tower::Service;

use super::call::{AgencyCall, CallError, CallFuture, ExchangeAudit};
use crate::transport::{HttpReply, TransportError};

pub fn reply(status: u16) -> HttpReply {
    HttpReply {
        status,
        content_type: None,
        body: Bytes::from_static(b"<ok/>"),
        latency: Duration::from_millis(1),
    }
}

/// What the fakes saw, in order.
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    pub fn push(&self, entry: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }

    pub fn entries(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// An audit hook that records into a journal, and fails when told to.
#[derive(Default)]
pub struct FakeAudit {
    pub journal: Journal,
    pub fail_outbound: bool,
    pub fail_reply: bool,
}

#[async_trait]
impl ExchangeAudit for FakeAudit {
    async fn outbound(&self, attempt: u32, hedge: bool) -> Result<(), String> {
        if self.fail_outbound {
            return Err("audit unavailable".into());
        }
        let hedge = if hedge { " hedge" } else { "" };
        self.journal.push(format!("outbound {attempt}{hedge}"));
        Ok(())
    }

    async fn reply(
        &self,
        attempt: u32,
        result: &Result<HttpReply, TransportError>,
    ) -> Result<(), String> {
        if self.fail_reply {
            return Err("audit unavailable".into());
        }
        let what = match result {
            Ok(r) => format!("http_{}", r.status),
            Err(e) => format!("transport: {e}"),
        };
        self.journal.push(format!("reply {attempt} {what}"));
        Ok(())
    }
}

pub fn call_with(audit: Arc<dyn ExchangeAudit>) -> AgencyCall {
    let wire = WireRequest {
        method: HttpMethod::Post,
        path: "/inquiry".into(),
        content_type: None,
        body: Bytes::from_static(b"<q/>"),
        headers: Default::default(),
    };
    AgencyCall::new("bank-test", "inquiry.send", "P1", wire, audit)
}

pub fn call() -> AgencyCall {
    call_with(Arc::new(FakeAudit::default()))
}

/// An inner service that answers from a script (then 200s), journaling
/// each call's attempt number.
#[derive(Clone)]
pub struct Script {
    results: Arc<Mutex<VecDeque<Result<HttpReply, CallError>>>>,
    pub journal: Journal,
}

impl Script {
    pub fn new(results: impl IntoIterator<Item = Result<HttpReply, CallError>>) -> Self {
        Self {
            results: Arc::new(Mutex::new(results.into_iter().collect())),
            journal: Journal::default(),
        }
    }

    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = journal;
        self
    }

    pub fn service(&self) -> Self {
        self.clone()
    }

    /// How many calls reached it.
    pub fn calls(&self) -> usize {
        self.journal
            .entries()
            .iter()
            .filter(|e| e.starts_with("sent"))
            .count()
    }
}

impl Service<AgencyCall> for Script {
    type Response = HttpReply;
    type Error = CallError;
    type Future = CallFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), CallError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: AgencyCall) -> CallFuture {
        self.journal.push(format!("sent {}", call.attempt));
        let next = self
            .results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or_else(|| Ok(reply(200)));
        Box::pin(std::future::ready(next))
    }
}

/// An inner service that answers each call (200) after the next of its
/// delays in ms, journaling when a copy is sent and when it answers.
pub fn delayed(delays: Vec<u64>, journal: Journal) -> impl super::layer::Inner {
    let delays = Arc::new(Mutex::new(VecDeque::from(delays)));
    tower::service_fn(move |call: AgencyCall| -> CallFuture {
        let wait = delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or(0);
        let which = if call.hedge { "hedge" } else { "primary" };
        journal.push(format!("sent {which}"));
        let journal = journal.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            journal.push(format!("answered {which}"));
            let mut r = reply(200);
            r.latency = Duration::from_millis(wait);
            Ok(r)
        })
    })
}
