//! The audit log: every inbound call, every outbound agency message and every
//! reply, written durably before the gateway acts on it.
//!
//! One writer task owns the log. Callers hand it a record and wait for the
//! acknowledgement, which comes only after the batch holding the record has
//! committed (group commit: many waiters, one transaction). Each row carries
//! the SHA-256 of the previous row's hash and its own canonical encoding;
//! bodies enter the chain by digest, so a body can later be purged without
//! breaking it. If the log cannot write, the waiter gets an error and the
//! gateway does not go on: nothing is sent that is not recorded.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditStore, Checkpoint, NewAuditRow, StoreError};

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A call to the gateway's API.
    Inbound,
    /// A message from the gateway to an agency.
    Outbound,
    /// An agency's reply.
    Reply,
    /// A result an agency pushed to the gateway.
    Callback,
    /// Something the gateway decided on its own: a measure marked lapsed
    /// at its end date, a freeze plan's step.
    Internal,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Reply => "reply",
            Direction::Callback => "callback",
            Direction::Internal => "internal",
        }
    }
}

/// What the gateway wants recorded.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    pub direction: Option<Direction>,
    pub caller: Option<String>,
    /// Officers' names with their credential numbers.
    pub officers: Vec<String>,
    pub case_number: Option<String>,
    /// The subject's identifier (full value: the store is access-controlled).
    pub subject: Option<String>,
    pub agency: Option<String>,
    pub action: String,
    pub inquiry_id: Option<String>,
    pub request_number: Option<String>,
    pub status: Option<String>,
    pub latency_ms: Option<i64>,
    /// Shared with whoever else holds the message (the transport, the
    /// other rows of a batch): cloning it copies no byte.
    pub body: Option<bytes::Bytes>,
}

/// A record numbered and chained, ready to store.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: i64,
    pub record: AuditRecord,
    pub body_sha256: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// A row as read back.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StoredAuditEvent {
    pub seq: i64,
    pub at_ms: i64,
    pub direction: String,
    pub caller: Option<String>,
    /// Stored as a JSON array (none when NULL).
    #[sqlx(try_from = "crate::store::Text")]
    pub officers: Vec<String>,
    pub case_number: Option<String>,
    pub subject: Option<String>,
    pub agency: Option<String>,
    pub action: String,
    pub inquiry_id: Option<String>,
    pub request_number: Option<String>,
    pub status: Option<String>,
    pub latency_ms: Option<i64>,
    pub body_sha256: Option<String>,
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
    pub prev_hash: String,
    pub hash: String,
}

/// Auditor query filters; `after_seq` is the cursor.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub case_number: Option<String>,
    pub subject: Option<String>,
    pub agency: Option<String>,
    pub caller: Option<String>,
    pub officer: Option<String>,
    pub action: Option<String>,
    pub inquiry_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit store failed: {0}")]
    Store(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

/// The genesis value of the chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical encoding of a row: fixed field order, body by digest.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    at_ms: i64,
    direction: &'a str,
    caller: Option<&'a str>,
    officers: &'a [String],
    case_number: Option<&'a str>,
    subject: Option<&'a str>,
    agency: Option<&'a str>,
    action: &'a str,
    inquiry_id: Option<&'a str>,
    request_number: Option<&'a str>,
    status: Option<&'a str>,
    latency_ms: Option<i64>,
    body_sha256: Option<&'a str>,
}

/// The hash of a row: SHA-256 over the previous hash and the canonical encoding.
pub fn row_hash(prev_hash: &str, event: &StoredAuditEvent) -> String {
    let canonical = Canonical {
        seq: event.seq,
        at_ms: event.at_ms,
        direction: &event.direction,
        caller: event.caller.as_deref(),
        officers: &event.officers,
        case_number: event.case_number.as_deref(),
        subject: event.subject.as_deref(),
        agency: event.agency.as_deref(),
        action: &event.action,
        inquiry_id: event.inquiry_id.as_deref(),
        request_number: event.request_number.as_deref(),
        status: event.status.as_deref(),
        latency_ms: event.latency_ms,
        body_sha256: event.body_sha256.as_deref(),
    };
    canonical_hash(prev_hash, &canonical)
}

fn canonical_hash(prev_hash: &str, canonical: &Canonical<'_>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    // Serialising plain strings and integers cannot fail.
    let _ = serde_json::to_writer(HashWriter(&mut hasher), canonical);
    hex::encode(hasher.finalize())
}

/// Feeds what serde_json writes straight into the hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AuditRow {
    /// Numbers and chains a record after `prev_hash`.
    pub fn chain(seq: i64, at_ms: i64, record: AuditRecord, prev_hash: String) -> Self {
        let body_sha256 = record.body.as_ref().map(|b| hex::encode(Sha256::digest(b)));
        let r = &record;
        let hash = canonical_hash(
            &prev_hash,
            &Canonical {
                seq,
                at_ms,
                direction: r.direction.unwrap_or(Direction::Inbound).as_str(),
                caller: r.caller.as_deref(),
                officers: &r.officers,
                case_number: r.case_number.as_deref(),
                subject: r.subject.as_deref(),
                agency: r.agency.as_deref(),
                action: &r.action,
                inquiry_id: r.inquiry_id.as_deref(),
                request_number: r.request_number.as_deref(),
                status: r.status.as_deref(),
                latency_ms: r.latency_ms,
                body_sha256: body_sha256.as_deref(),
            },
        );
        AuditRow {
            seq,
            at_ms,
            record,
            body_sha256,
            prev_hash,
            hash,
        }
    }

    /// The row as it will read back (body left out of the hash).
    pub fn as_event(&self) -> StoredAuditEvent {
        let r = &self.record;
        StoredAuditEvent {
            seq: self.seq,
            at_ms: self.at_ms,
            direction: r
                .direction
                .unwrap_or(Direction::Inbound)
                .as_str()
                .to_owned(),
            caller: r.caller.clone(),
            officers: r.officers.clone(),
            case_number: r.case_number.clone(),
            subject: r.subject.clone(),
            agency: r.agency.clone(),
            action: r.action.clone(),
            inquiry_id: r.inquiry_id.clone(),
            request_number: r.request_number.clone(),
            status: r.status.clone(),
            latency_ms: r.latency_ms,
            body_sha256: self.body_sha256.clone(),
            body: None,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }
}

type Ack = oneshot::Sender<Result<i64, AuditError>>;

/// The handle through which everything is recorded.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<(AuditRecord, Ack)>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// Most rows one transaction takes.
const MAX_BATCH: usize = 512;

/// When the writer signs a checkpoint of the chain.
#[derive(Clone)]
pub struct CheckpointPolicy {
    pub key: Arc<ed25519_dalek::SigningKey>,
    /// After this many rows since the last checkpoint...
    pub every_rows: i64,
    /// ...or this long, whichever comes first (when rows were written).
    pub every_ms: i64,
}

impl AuditLog {
    /// Starts the writer task on `store`, continuing its chain, signing
    /// checkpoints when `checkpoints` says.
    pub async fn start(store: Arc<dyn AuditStore>, capacity: usize) -> Result<Self, StoreError> {
        Self::start_signing(store, capacity, None).await
    }

    pub async fn start_signing(
        store: Arc<dyn AuditStore>,
        capacity: usize,
        checkpoints: Option<CheckpointPolicy>,
    ) -> Result<Self, StoreError> {
        let last_checkpoint = match &checkpoints {
            Some(_) => store.checkpoints().await?.last().map(|c| (c.seq, c.at_ms)),
            None => None,
        };
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(writer(store, rx, checkpoints, last_checkpoint));
        Ok(Self { tx })
    }

    /// Records one event and waits until it is durably committed. Returns
    /// its sequence number. A full channel makes the caller wait (back-pressure),
    /// it never drops the record.
    pub async fn record(&self, record: AuditRecord) -> Result<i64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((record, ack))
            .await
            .map_err(|_| AuditError::Stopped)?;
        done.await.map_err(|_| AuditError::Stopped)?
    }
}

/// What a checkpoint's signature covers.
pub fn checkpoint_message(seq: i64, hash: &str) -> Vec<u8> {
    format!("court-gateway audit checkpoint\nseq={seq}\nhash={hash}\n").into_bytes()
}

/// Signs the chain's state at (`seq`, `hash`).
pub fn sign_checkpoint(
    key: &ed25519_dalek::SigningKey,
    seq: i64,
    hash: &str,
    at_ms: i64,
) -> Checkpoint {
    use ed25519_dalek::Signer;
    let signature = key.sign(&checkpoint_message(seq, hash));
    Checkpoint {
        seq,
        hash: hash.to_owned(),
        at_ms,
        key_id: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(signature.to_bytes()),
    }
}

async fn writer(
    store: Arc<dyn AuditStore>,
    mut rx: mpsc::Receiver<(AuditRecord, Ack)>,
    checkpoints: Option<CheckpointPolicy>,
    mut last_checkpoint: Option<(i64, i64)>,
) {
    let mut pending: Vec<(AuditRecord, Ack)> = Vec::with_capacity(MAX_BATCH);
    // Without a checkpoint yet, the time since the writer started counts.
    let started_ms = chrono::Utc::now().timestamp_millis();
    loop {
        if rx.recv_many(&mut pending, MAX_BATCH).await == 0 {
            return; // every handle dropped
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut acks = Vec::with_capacity(pending.len());
        let rows: Vec<NewAuditRow> = pending
            .drain(..)
            .map(|(record, ack)| {
                acks.push(ack);
                NewAuditRow { at_ms: now, record }
            })
            .collect();
        let count = rows.len();
        let started = std::time::Instant::now();
        let appended = store.append_audit(rows).await;
        let metrics = crate::metrics::global();
        metrics.audit_batch_rows.observe(count as f64);
        metrics
            .audit_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match appended {
            Ok(stored) => {
                for (ack, row) in acks.drain(..).zip(&stored) {
                    let _ = ack.send(Ok(row.seq));
                }
                if let (Some(policy), Some(last)) = (&checkpoints, stored.last()) {
                    let (since_seq, since_ms) = last_checkpoint.unwrap_or((0, started_ms));
                    if last.seq - since_seq >= policy.every_rows
                        || now - since_ms >= policy.every_ms
                    {
                        let c = sign_checkpoint(&policy.key, last.seq, &last.hash, now);
                        match store.add_checkpoint(&c).await {
                            Ok(()) => last_checkpoint = Some((c.seq, now)),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot store an audit checkpoint; the next batch tries again")
                            }
                        }
                    }
                }
            }
            Err(e) => {
                metrics.audit_failures.inc();
                tracing::error!(error = %e, rows = count, "audit batch failed to commit");
                for ack in acks.drain(..) {
                    let _ = ack.send(Err(AuditError::Store(e.to_string())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    async fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = SqliteStore::open(&url).await.expect("open");
        (dir, Arc::new(store))
    }

    fn record(i: usize) -> AuditRecord {
        AuditRecord {
            direction: Some(Direction::Outbound),
            action: "inquiry.send".into(),
            agency: Some(format!("bank-{}", i % 3)),
            body: Some(format!("<CXQQ>{i}</CXQQ>").into()),
            ..AuditRecord::default()
        }
    }

    #[tokio::test]
    async fn concurrent_records_form_one_unbroken_chain() {
        let (_dir, store) = store().await;
        let log = AuditLog::start(store.clone(), 64).await.expect("start");
        let waiters = (0..300).map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.record(record(i)).await })
        });
        let mut seqs: Vec<i64> = Vec::new();
        for w in waiters {
            seqs.push(w.await.expect("join").expect("recorded"));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>());

        let rows = store
            .audit_events(&AuditFilter {
                limit: 1000,
                ..AuditFilter::default()
            })
            .await
            .expect("read");
        let mut prev = GENESIS_HASH.to_owned();
        for row in &rows {
            assert_eq!(row.prev_hash, prev, "row {}", row.seq);
            assert_eq!(row_hash(&row.prev_hash, row), row.hash, "row {}", row.seq);
            let body = row.body.as_ref().expect("body kept");
            assert_eq!(
                row.body_sha256.as_deref(),
                Some(hex::encode(Sha256::digest(body)).as_str())
            );
            prev = row.hash.clone();
        }
    }

    #[tokio::test]
    async fn a_restarted_writer_continues_the_chain() {
        let (_dir, store) = store().await;
        let first = AuditLog::start(store.clone(), 8).await.expect("start");
        first.record(record(1)).await.expect("recorded");
        drop(first);
        let second = AuditLog::start(store.clone(), 8).await.expect("restart");
        assert_eq!(second.record(record(2)).await.expect("recorded"), 2);
        let rows = store
            .audit_events(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .expect("read");
        assert_eq!(rows[1].prev_hash, rows[0].hash);
    }

    #[tokio::test]
    async fn an_edited_row_no_longer_matches_its_hash() {
        let (_dir, store) = store().await;
        let log = AuditLog::start(store.clone(), 8).await.expect("start");
        log.record(record(1)).await.expect("recorded");
        sqlx::query("UPDATE audit_events SET agency = 'bank-x'")
            .execute(store.pool())
            .await
            .expect("tamper");
        let rows = store
            .audit_events(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .expect("read");
        assert_ne!(row_hash(&rows[0].prev_hash, &rows[0]), rows[0].hash);
    }
}
