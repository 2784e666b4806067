//! Audit before dispatch, as a layer: the call's outbound record commits
//! before the message goes further in (the timeout, then the wire), and
//! what came back (the reply, or the transport failure) is recorded before
//! anyone outside acts on it, the retry layer included. It stands inside
//! every layer that refuses, so a refused call leaves no outbound row, and
//! inside the retry layer, so each attempt has its own pair of rows.

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::join_all;

use super::breaker::is_agency_failure;
use super::call::{AgencyCall, CallError, CallFuture, ExchangeAudit};
use super::layer::{Around, AroundLayer, Inner};
use crate::audit::{AuditLog, AuditRecord, Direction, Ticket};
use crate::store::Change;
use crate::transport::{HttpReply, TransportError};

/// A change that must commit with the outbound rows, before the message
/// leaves (an order marks itself `query`), made for the attempt number.
/// Its receipt says whether its condition held (the lease); when it did
/// not, nothing is sent.
pub type OutboundChange = Box<dyn Fn(u32) -> Change + Send + Sync>;

/// The audit rows of one message, for the audit layer: before each attempt
/// one outbound row per record (a batch carries several inquiries), after
/// it one reply row each, with the HTTP status (or the transport failure),
/// the latency and the body. Every row shares the one buffer of the body
/// that is sent (and of the reply that came): nothing is copied.
pub struct MessageAudit {
    log: AuditLog,
    /// One base record per task or order the message is about (caller,
    /// case, subject, agency, request number, ...).
    records: Vec<AuditRecord>,
    outbound_action: String,
    reply_action: String,
    body: Bytes,
    with_outbound: Option<OutboundChange>,
    /// Answers' rows are given to the journal without waiting: the
    /// caller stores what it makes of the answer after them
    /// (`take_recorded`).
    defer_replies: bool,
    recorded: std::sync::Mutex<Vec<Ticket>>,
}

impl MessageAudit {
    pub fn new(
        log: AuditLog,
        records: Vec<AuditRecord>,
        outbound_action: &str,
        reply_action: &str,
        body: impl Into<Bytes>,
    ) -> Self {
        Self {
            log,
            records,
            outbound_action: outbound_action.to_owned(),
            reply_action: reply_action.to_owned(),
            body: body.into(),
            with_outbound: None,
            defer_replies: false,
            recorded: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The rows of an agency's answer (one that is neither a failure nor
    /// retried: a status below 400) are not waited for; the caller must
    /// store the result it makes of the answer with
    /// `AuditLog::finish_after(.., self.take_recorded())`, so that the
    /// result is committed with the rows or after them, never without.
    /// Rows of failures and of answers a retry acts on are still committed
    /// before the stack goes on.
    pub fn deferring_replies(mut self) -> Self {
        self.defer_replies = true;
        self
    }

    /// The tickets of the answer rows given without waiting.
    pub fn take_recorded(&self) -> Vec<Ticket> {
        match self.recorded.lock() {
            Ok(mut tickets) => std::mem::take(&mut *tickets),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Commits `change` with the outbound rows of each attempt, in their
    /// transaction: one commit before the message leaves, not two.
    pub fn with_outbound(mut self, change: OutboundChange) -> Self {
        self.with_outbound = Some(change);
        self
    }

    async fn record_all(&self, each: impl Fn(&AuditRecord) -> AuditRecord) -> Result<(), String> {
        let records = self.records.iter().map(|r| self.log.record(each(r)));
        if join_all(records).await.iter().all(Result::is_ok) {
            Ok(())
        } else {
            Err("the audit log cannot record it".to_owned())
        }
    }
}

/// How an exchange's outcome is recorded: a status (`http_200`, or
/// `transport: ...`), the latency and the body.
pub fn reply_fields(
    result: &Result<HttpReply, TransportError>,
) -> (String, Option<i64>, Option<Bytes>) {
    match result {
        Ok(reply) => (
            format!("http_{}", reply.status),
            Some(reply.latency.as_millis() as i64),
            Some(reply.body.clone()),
        ),
        Err(e) => (format!("transport: {e}"), None, None),
    }
}

#[async_trait]
impl ExchangeAudit for MessageAudit {
    async fn outbound(&self, attempt: u32, hedge: bool) -> Result<(), String> {
        let row = |r: &AuditRecord| AuditRecord {
            direction: Some(Direction::Outbound),
            action: self.outbound_action.clone(),
            status: hedge.then(|| "hedge".to_owned()),
            body: Some(self.body.clone()),
            ..r.clone()
        };
        let Some(change) = &self.with_outbound else {
            return self.record_all(row).await;
        };
        // The first row carries the change; the others commit beside it.
        let (first, rest) = match self.records.split_first() {
            Some(split) => split,
            None => return Err("a message with no audit record".to_owned()),
        };
        let (marked, others) = futures::join!(
            self.log.record_with_if(row(first), change(attempt)),
            join_all(rest.iter().map(|r| self.log.record(row(r))))
        );
        if others.iter().any(Result::is_err) {
            return Err("the audit log cannot record it".to_owned());
        }
        match marked {
            Ok(true) => Ok(()),
            Ok(false) => Err("the lease on it was lost; not sent".to_owned()),
            Err(e) => Err(format!("the audit log cannot record it: {e}")),
        }
    }

    async fn reply(
        &self,
        _attempt: u32,
        result: &Result<HttpReply, TransportError>,
    ) -> Result<(), String> {
        let (status, latency_ms, body) = reply_fields(result);
        let row = |r: &AuditRecord| AuditRecord {
            direction: Some(Direction::Reply),
            action: self.reply_action.clone(),
            status: Some(status.clone()),
            latency_ms,
            body: body.clone(),
            ..r.clone()
        };
        if !(self.defer_replies && matches!(result, Ok(reply) if reply.status < 400)) {
            return self.record_all(row).await;
        }
        let given = join_all(
            self.records
                .iter()
                .map(|r| self.log.record_deferred(row(r))),
        )
        .await;
        let mut tickets = Vec::with_capacity(given.len());
        for ticket in given {
            match ticket {
                Ok(t) => tickets.push(t),
                Err(_) => return Err("the audit log cannot record it".to_owned()),
            }
        }
        match self.recorded.lock() {
            Ok(mut recorded) => recorded.extend(tickets),
            Err(poisoned) => poisoned.into_inner().extend(tickets),
        }
        Ok(())
    }
}

/// Records each attempt's message before it goes further in, and what
/// came back before it goes out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Audit;

impl Audit {
    pub fn layer() -> AroundLayer<Self> {
        AroundLayer(Self)
    }
}

impl Around for Audit {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        // The service that was made ready goes into the future.
        let clone = inner.clone();
        let mut inner = std::mem::replace(inner, clone);
        Box::pin(async move {
            let audit = call.audit.clone();
            let attempt = call.attempt;
            if let Err(e) = audit.outbound(attempt, call.hedge).await {
                tracing::warn!(agency = %call.agency, action = %call.action, "audit unavailable: not sent");
                return Err(CallError::NotSent(e));
            }
            tracing::debug!(attempt, hedge = call.hedge, "sending");
            let result = match inner.call(call).await {
                Ok(reply) => Ok(reply),
                Err(CallError::Transport(e)) => Err(e),
                Err(other) => return Err(other),
            };
            if audit.reply(attempt, &result).await.is_err() {
                tracing::warn!("audit unavailable: the agency's answer is not used");
                return Err(CallError::Unrecorded {
                    agency_failed: is_agency_failure(&result),
                });
            }
            result.map_err(CallError::Transport)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::resilience::layer::AroundService;
    use crate::resilience::testing::{FakeAudit, Journal, Script, call_with, reply};
    use tower::{Layer, ServiceExt};

    fn audited(
        script: Script,
        audit: FakeAudit,
    ) -> (AroundService<Script, Audit>, AgencyCall, Journal) {
        let journal = audit.journal.clone();
        (
            Audit::layer().layer(script.with_journal(journal.clone())),
            call_with(Arc::new(audit)),
            journal,
        )
    }

    #[tokio::test]
    async fn the_outbound_row_comes_before_the_send_and_the_reply_row_after() {
        let (svc, call, journal) = audited(Script::new([Ok(reply(500))]), FakeAudit::default());
        let result = svc.oneshot(call).await;
        assert_eq!(result.map(|r| r.status).ok(), Some(500));
        assert_eq!(
            journal.entries(),
            ["outbound 1", "sent 1", "reply 1 http_500"]
        );
    }

    #[tokio::test]
    async fn a_transport_failure_is_recorded_and_passed_on() {
        let timeout = CallError::Transport(TransportError::Timeout(10));
        let (svc, call, journal) = audited(Script::new([Err(timeout)]), FakeAudit::default());
        let result = svc.oneshot(call).await;
        assert!(
            matches!(
                result,
                Err(CallError::Transport(TransportError::Timeout(10)))
            ),
            "{result:?}"
        );
        assert_eq!(
            journal.entries(),
            [
                "outbound 1",
                "sent 1",
                "reply 1 transport: no complete answer within 10 ms"
            ]
        );
    }

    #[tokio::test]
    async fn nothing_is_sent_when_the_outbound_row_cannot_be_written() {
        let audit = FakeAudit {
            fail_outbound: true,
            ..FakeAudit::default()
        };
        let (svc, call, journal) = audited(Script::new([]), audit);
        let result = svc.oneshot(call).await;
        assert!(matches!(result, Err(CallError::NotSent(_))), "{result:?}");
        assert!(journal.entries().is_empty(), "{:?}", journal.entries());
    }

    #[tokio::test]
    async fn an_answer_that_cannot_be_recorded_is_not_passed_on() {
        let audit = FakeAudit {
            fail_reply: true,
            ..FakeAudit::default()
        };
        let (svc, call, journal) = audited(Script::new([Ok(reply(503))]), audit);
        let result = svc.oneshot(call).await;
        assert!(
            matches!(
                result,
                Err(CallError::Unrecorded {
                    agency_failed: true
                })
            ),
            "{result:?}"
        );
        assert_eq!(journal.entries(), ["outbound 1", "sent 1"]);
    }

    #[tokio::test]
    async fn a_message_about_two_tasks_has_two_rows_each_way_and_its_change_with_the_first()
    -> anyhow::Result<()> {
        use crate::audit::AuditFilter;
        use crate::store::{AuditStore, SqliteStore};

        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = Arc::new(SqliteStore::open(&url).await?);
        let log = AuditLog::start(store.clone(), 16).await?;
        let records = ["Q1-bank", "Q2-bank"]
            .map(|n| AuditRecord {
                agency: Some("bank".into()),
                request_number: Some(n.into()),
                ..AuditRecord::default()
            })
            .to_vec();
        let callback = |id: &str| crate::store::OutboxRecord {
            id: id.into(),
            caller: "court".into(),
            event: "order.updated".into(),
            resource_id: "O1".into(),
            body: b"{}".to_vec(),
            attempts: 0,
            due_at_ms: 0,
            created_at_ms: 0,
        };
        let audit = MessageAudit::new(
            log.clone(),
            records.clone(),
            "inquiry.send",
            "inquiry.reply",
            b"<q/>".to_vec(),
        )
        .with_outbound(Box::new(move |attempt| {
            Change::Enqueue(Box::new(callback(&format!("E{attempt}"))))
        }));
        audit.outbound(1, false).await.map_err(anyhow::Error::msg)?;
        audit
            .reply(1, &Ok(reply(200)))
            .await
            .map_err(anyhow::Error::msg)?;
        let rows = store
            .audit_events(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await?;
        let seen: Vec<(String, Option<String>, Option<String>)> = rows
            .iter()
            .map(|r| (r.action.clone(), r.request_number.clone(), r.status.clone()))
            .collect();
        let row = |a: &str, n: Option<&str>, s: Option<&str>| {
            (a.to_owned(), n.map(str::to_owned), s.map(str::to_owned))
        };
        assert_eq!(
            seen,
            [
                row("inquiry.send", Some("Q1-bank"), None),
                row("inquiry.send", Some("Q2-bank"), None),
                row("inquiry.reply", Some("Q1-bank"), Some("http_200")),
                row("inquiry.reply", Some("Q2-bank"), Some("http_200")),
            ]
        );
        assert!(rows[0].body_sha256.is_some() && rows[3].latency_ms == Some(1));
        // The change was made with the outbound rows.
        use crate::store::OrderStore;
        let queued = store
            .claim_outbox("test", i64::MAX / 2, i64::MAX, 10)
            .await?;
        let ids: Vec<&str> = queued.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["E1"]);

        // A change whose condition does not hold (a lease this gateway
        // does not have) stops the message: nothing is to be sent.
        let lost = MessageAudit::new(
            log,
            records,
            "order.freeze",
            "order.reply",
            b"<k/>".to_vec(),
        )
        .with_outbound(Box::new(|_| Change::Release {
            owner: "test".into(),
            of: crate::store::Leased::Order { id: "none".into() },
            due_at_ms: 0,
            detail: None,
        }));
        let refused = lost.outbound(1, false).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("lease")),
            "{refused:?}"
        );
        Ok(())
    }
}
