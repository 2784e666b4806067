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
//!
//! A row may also be given without waiting for it (`record_deferred`): an
//! agency's answer, whose row need only be committed before the result
//! made of it. The result's entry names the row's `Ticket`; the journal
//! commits the two in one transaction, or the row first, and refuses the
//! result when the row could not be recorded.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{
    Applied, AuditStore, Change, Checkpoint, CompletionCallbacks, JournalEntry, Journaled,
    NewAuditRow, SaveOrder, StoreError, TaskResult, TaskUpdate,
};

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
    /// Rows naming any of these inquiries, orders, plans or batches (a
    /// plan with its orders, a batch with its subjects' inquiries), at
    /// most a few thousand; none is no filter.
    pub inquiry_ids: Vec<String>,
    /// `inbound`, `outbound`, `reply`, `callback` or `internal`.
    pub direction: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub after_seq: Option<i64>,
    /// Rows up to this one only (an evidence bundle stops at the chain's
    /// head as it read it).
    pub through_seq: Option<i64>,
    /// Rows before this one only (an export stops at its own row).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit store failed: {0}")]
    Store(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

impl From<AuditError> for crate::store::StoreError {
    fn from(e: AuditError) -> Self {
        crate::store::StoreError::Unavailable(e.to_string())
    }
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
    lower_hex(&hasher.finalize())
}

/// A digest in lower-case hex, written into its buffer in one pass
/// (`hex::encode` pushes it into a `String` one `char` at a time, a cost
/// the journal's writer paid twice a row).
pub fn lower_hex(digest: &[u8]) -> String {
    let mut out = vec![0; digest.len() * 2];
    match hex::encode_to_slice(digest, &mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| hex::encode(digest)),
        Err(_) => hex::encode(digest),
    }
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
        let body_sha256 = record.body.as_ref().map(|b| lower_hex(&Sha256::digest(b)));
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

type Ack = oneshot::Sender<Result<Journaled, AuditError>>;

/// One entry waiting for the writer.
struct Pending {
    record: Option<AuditRecord>,
    change: Option<Change>,
    waiter: Waiter,
}

/// Who is told what became of an entry.
struct Waiter {
    ack: Ack,
    /// A deferred row's ticket, set when the entry is resolved.
    ticket: Option<watch::Sender<u8>>,
    /// Rows the entry must not be stored without.
    after: Vec<Ticket>,
}

impl Waiter {
    fn resolve(self, result: Result<Journaled, AuditError>) {
        if let Some(ticket) = &self.ticket {
            ticket.send_replace(if result.is_ok() { STORED } else { FAILED });
        }
        let _ = self.ack.send(result);
    }

    /// A row this entry depends on was not recorded (one resolved before
    /// it; one still pending is in the same transaction).
    fn orphaned(&self) -> bool {
        self.after.iter().any(|t| *t.0.borrow() == FAILED)
    }
}

const PENDING: u8 = 0;
const STORED: u8 = 1;
const FAILED: u8 = 2;

/// A row given to the journal without waiting for it
/// (`AuditLog::record_deferred`): an entry that must not be stored without
/// the row names it, and is refused if the row could not be recorded.
#[derive(Debug, Clone)]
pub struct Ticket(watch::Receiver<u8>);

impl Ticket {
    /// Waits until the row is committed; an error if it could not be.
    pub async fn recorded(&self) -> Result<(), AuditError> {
        let mut rx = self.0.clone();
        match rx.wait_for(|s| *s != PENDING).await {
            Ok(s) if *s == STORED => Ok(()),
            Ok(_) => Err(AuditError::Store("the row was not recorded".into())),
            Err(_) => Err(AuditError::Stopped),
        }
    }
}

fn orphan_error() -> AuditError {
    AuditError::Store("a row the entry depends on could not be recorded".into())
}

/// The handle through which everything is recorded: the journal. Audit
/// rows, and the new inquiries, orders and plans whose acceptance they
/// record, are committed by one writer task, whatever has gathered in one
/// transaction.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// Most rows one transaction takes.
const MAX_BATCH: usize = 512;
/// Most tasks of new inquiries one transaction takes (an inquiry to a whole
/// fleet has thousands); an inquiry with more goes alone.
const MAX_BATCH_TASKS: usize = 16_384;

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
        Self::start_signing(store, capacity, None, None).await
    }

    /// Starts the writer, signing checkpoints when `checkpoints` says, and
    /// queuing the `inquiry.completed` callbacks `callbacks` makes in the
    /// transactions that complete inquiries.
    pub async fn start_signing(
        store: Arc<dyn AuditStore>,
        capacity: usize,
        checkpoints: Option<CheckpointPolicy>,
        callbacks: Option<Arc<dyn CompletionCallbacks>>,
    ) -> Result<Self, StoreError> {
        let last_checkpoint = match &checkpoints {
            Some(_) => store.checkpoints().await?.last().map(|c| (c.seq, c.at_ms)),
            None => None,
        };
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let own_thread = store.writer_on_own_thread();
        let work = writer(store, rx, checkpoints, last_checkpoint, callbacks);
        if !own_thread {
            tokio::spawn(work);
            return Ok(Self { tx });
        }
        // Each statement of a cycle ends on the store's thread; on a
        // thread and runtime of its own the writer takes its next step at
        // once (`AuditStore::writer_on_own_thread`).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("journal")
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the journal's runtime: {e}"))
            })?;
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || runtime.block_on(work))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the journal's thread: {e}"))
            })?;
        Ok(Self { tx })
    }

    /// Records one event and waits until it is durably committed. Returns
    /// its sequence number. A full channel makes the caller wait (back-pressure),
    /// it never drops the record.
    pub async fn record(&self, record: AuditRecord) -> Result<i64, AuditError> {
        match self.journal(Some(record), None, Vec::new()).await?.row {
            Some(row) => Ok(row.seq),
            None => Err(AuditError::Store("the journal left a plain row out".into())),
        }
    }

    /// Gives the journal a row without waiting for its commit (only for
    /// the channel's room). The ticket says what became of it; an entry
    /// that names it in `after` is stored with it or after it, never
    /// without it.
    pub async fn record_deferred(&self, record: AuditRecord) -> Result<Ticket, AuditError> {
        let (ack, _) = oneshot::channel();
        let (ticket, rx) = watch::channel(PENDING);
        self.tx
            .send(Pending {
                record: Some(record),
                change: None,
                waiter: Waiter {
                    ack,
                    ticket: Some(ticket),
                    after: Vec::new(),
                },
            })
            .await
            .map_err(|_| AuditError::Stopped)?;
        Ok(Ticket(rx))
    }

    /// Records a request's acceptance and makes the change it accepted (a
    /// new inquiry, order or plan) in the same transaction: both are
    /// committed, or neither. Returns the row's sequence number (none when
    /// an order's or plan's key was taken meanwhile: nothing was accepted)
    /// and what the change became.
    pub async fn accept(
        &self,
        record: AuditRecord,
        change: Change,
    ) -> Result<(Option<i64>, Applied), AuditError> {
        let journaled = self.journal(Some(record), Some(change), Vec::new()).await?;
        match journaled.applied {
            Some(applied) => Ok((journaled.row.map(|r| r.seq), applied)),
            None => Err(no_receipt()),
        }
    }

    /// Stores a step's result for a task `owner` leases, and completes its
    /// inquiry in the same transaction when it was the last unfinished
    /// task. Committed with whatever else the journal gathered.
    pub async fn finish(&self, owner: &str, result: TaskResult) -> Result<Finished, AuditError> {
        self.finish_after(owner, result, Vec::new()).await
    }

    /// As `finish`, for a result made of answers whose rows were given
    /// without waiting (`after`): stored in the same transaction as those
    /// rows or after them, and refused when one could not be recorded.
    pub async fn finish_after(
        &self,
        owner: &str,
        result: TaskResult,
        after: Vec<Ticket>,
    ) -> Result<Finished, AuditError> {
        let change = Change::Result {
            owner: owner.to_owned(),
            result,
        };
        finished(self.journal(None, Some(change), after).await?)
    }

    /// Stores a control order's progress (`OrderStore::save_order`) with
    /// whatever else the journal gathered. False when the lease was lost.
    pub async fn save_order(&self, save: SaveOrder) -> Result<bool, AuditError> {
        self.save_order_after(save, Vec::new()).await
    }

    /// As `save_order`, for progress made of answers whose rows were given
    /// without waiting (`after`): stored in the same transaction as those
    /// rows or after them, and refused when one could not be recorded.
    pub async fn save_order_after(
        &self,
        save: SaveOrder,
        after: Vec<Ticket>,
    ) -> Result<bool, AuditError> {
        let change = Change::SaveOrder(Box::new(save));
        saved(self.journal(None, Some(change), after).await?.applied)
    }

    /// Times out the overdue inquiries' unfinished tasks and completes
    /// each inquiry left with none, queuing its callback in the same
    /// transaction. Returns the inquiries this call completed.
    pub async fn time_out(&self, inquiry_ids: Vec<String>) -> Result<Vec<String>, AuditError> {
        match self.update(Change::TimeOut { inquiry_ids }).await? {
            Applied::Completed(ids) => Ok(ids),
            _ => Err(no_receipt()),
        }
    }

    /// Makes a change (a lease given back, an order marked sending, a
    /// plan's progress, expiries, a callback queued or attempted) with
    /// whatever else the journal gathered, and says what it became.
    pub async fn update(&self, change: Change) -> Result<Applied, AuditError> {
        self.journal(None, Some(change), Vec::new())
            .await?
            .applied
            .ok_or_else(no_receipt)
    }

    /// Records a row and makes the change it records, in one transaction.
    pub async fn record_with(&self, record: AuditRecord, change: Change) -> Result<(), AuditError> {
        self.journal(Some(record), Some(change), Vec::new())
            .await?
            .applied
            .map(drop)
            .ok_or_else(no_receipt)
    }

    /// As `record_with`, for a change whose receipt is whether its
    /// condition held: the row is recorded either way.
    pub async fn record_with_if(
        &self,
        record: AuditRecord,
        change: Change,
    ) -> Result<bool, AuditError> {
        saved(
            self.journal(Some(record), Some(change), Vec::new())
                .await?
                .applied,
        )
    }

    /// As `update`, for a change whose receipt is whether its condition
    /// held (the lease, the owed callback, the end date not yet warned of).
    pub async fn update_if(&self, change: Change) -> Result<bool, AuditError> {
        saved(Some(self.update(change).await?))
    }

    /// Records an agency's pushed result (`record`) and stores it for the
    /// task awaiting it, completing its inquiry when it was the last
    /// unfinished task: all in one transaction. The row is recorded also
    /// when no task awaits the result.
    pub async fn take_pushed(
        &self,
        record: AuditRecord,
        agency: &str,
        request_number: &str,
        update: TaskUpdate,
    ) -> Result<Finished, AuditError> {
        let change = Change::Pushed {
            agency: agency.to_owned(),
            request_number: request_number.to_owned(),
            update,
        };
        finished(self.journal(Some(record), Some(change), Vec::new()).await?)
    }

    async fn journal(
        &self,
        record: Option<AuditRecord>,
        change: Option<Change>,
        after: Vec<Ticket>,
    ) -> Result<Journaled, AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Pending {
                record,
                change,
                waiter: Waiter {
                    ack,
                    ticket: None,
                    after,
                },
            })
            .await
            .map_err(|_| AuditError::Stopped)?;
        done.await.map_err(|_| AuditError::Stopped)?
    }
}

/// What became of a result given to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Stored: the lease was still this gateway's (or the task still
    /// awaited a pushed result).
    pub stored: bool,
    /// This result completed its inquiry (told to one result of the
    /// inquiry only).
    pub completed: bool,
}

fn finished(journaled: Journaled) -> Result<Finished, AuditError> {
    match journaled.applied {
        Some(Applied::Finished { stored, completed }) => Ok(Finished { stored, completed }),
        _ => Err(no_receipt()),
    }
}

/// The receipt of a conditional change: whether its condition held.
fn saved(applied: Option<Applied>) -> Result<bool, AuditError> {
    match applied {
        Some(Applied::Saved(done)) => Ok(done),
        _ => Err(no_receipt()),
    }
}

fn no_receipt() -> AuditError {
    AuditError::Store("the journal stored a change without its receipt".into())
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
    mut rx: mpsc::Receiver<Pending>,
    checkpoints: Option<CheckpointPolicy>,
    mut last_checkpoint: Option<(i64, i64)>,
    callbacks: Option<Arc<dyn CompletionCallbacks>>,
) {
    let callbacks = callbacks.as_deref();
    let mut pending: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    // Without a checkpoint yet, the time since the writer started counts.
    let started_ms = chrono::Utc::now().timestamp_millis();
    loop {
        if pending.is_empty() && rx.recv_many(&mut pending, MAX_BATCH).await == 0 {
            return; // every handle dropped
        }
        // The longest run from the front that stays under the task bound
        // (at least one entry); the rest waits for the next transaction.
        let mut tasks = 0;
        let take = pending
            .iter()
            .take_while(|p| {
                if let Some(Change::Inquiry(new)) = &p.change {
                    tasks += new.tasks.len();
                }
                tasks <= MAX_BATCH_TASKS
            })
            .count()
            .max(1);
        let now = chrono::Utc::now().timestamp_millis();
        let mut entries: Vec<JournalEntry> = Vec::with_capacity(take);
        let mut waiters: Vec<Waiter> = Vec::with_capacity(take);
        for p in pending.drain(..take) {
            if p.waiter.orphaned() {
                p.waiter.resolve(Err(orphan_error()));
                continue;
            }
            entries.push(JournalEntry {
                row: p.record.map(|record| NewAuditRow { at_ms: now, record }),
                change: p.change,
            });
            waiters.push(p.waiter);
        }
        if entries.is_empty() {
            continue;
        }
        let count = entries.len();
        let started = std::time::Instant::now();
        // A batch that fails is tried again entry by entry: one entry that
        // cannot be written (a new request whose id is taken, a row the
        // audit table refuses) does not fail the others, such as a lease
        // given back, which would otherwise hold its work until the lease
        // runs out.
        let retry = (count > 1).then(|| entries.clone());
        let appended = store.append_journal(entries, now, callbacks).await;
        let metrics = crate::metrics::global();
        metrics.audit_batch_rows.observe(count as f64);
        metrics
            .audit_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        // The last row stored, for the checkpoint.
        let last: Option<(i64, String)> = match (appended, retry) {
            (Ok(stored), _) => {
                let last = stored
                    .iter()
                    .rev()
                    .find_map(|j| j.row.as_ref())
                    .map(|r| (r.seq, r.hash.clone()));
                for (waiter, journaled) in waiters.into_iter().zip(stored) {
                    waiter.resolve(Ok(journaled));
                }
                last
            }
            (Err(e), Some(entries)) => {
                tracing::warn!(error = %e, entries = count, "a journal batch failed; committing each entry alone");
                let mut last = None;
                for (waiter, entry) in waiters.into_iter().zip(entries) {
                    if waiter.orphaned() {
                        waiter.resolve(Err(orphan_error()));
                        continue;
                    }
                    match store.append_journal(vec![entry], now, callbacks).await {
                        Ok(mut one) if one.len() == 1 => {
                            let journaled = one.remove(0);
                            if let Some(r) = &journaled.row {
                                last = Some((r.seq, r.hash.clone()));
                            }
                            waiter.resolve(Ok(journaled));
                        }
                        Ok(_) => waiter.resolve(Err(AuditError::Store(
                            "the journal returned no receipt".into(),
                        ))),
                        Err(e) => {
                            metrics.audit_failures.inc();
                            waiter.resolve(Err(AuditError::Store(e.to_string())));
                        }
                    }
                }
                last
            }
            (Err(e), None) => {
                metrics.audit_failures.inc();
                tracing::error!(error = %e, rows = count, "audit batch failed to commit");
                for waiter in waiters {
                    waiter.resolve(Err(AuditError::Store(e.to_string())));
                }
                None
            }
        };
        if let (Some(policy), Some((seq, hash))) = (&checkpoints, last) {
            let (since_seq, since_ms) = last_checkpoint.unwrap_or((0, started_ms));
            if seq - since_seq >= policy.every_rows || now - since_ms >= policy.every_ms {
                let c = sign_checkpoint(&policy.key, seq, &hash, now);
                match store.add_checkpoint(&c).await {
                    Ok(()) => last_checkpoint = Some((c.seq, now)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot store an audit checkpoint; the next batch tries again")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn digests_read_in_lower_case_hex_as_hex_writes_them() {
        for data in [&b""[..], b"\x00\x0f\xf0\xff", b"court gateway"] {
            let digest = Sha256::digest(data);
            assert_eq!(lower_hex(&digest), hex::encode(digest));
            assert_eq!(lower_hex(data), hex::encode(data));
        }
    }

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

    fn inquiry(id: &str, agencies: &[&str]) -> crate::store::NewInquiry {
        crate::store::NewInquiry {
            record: crate::store::InquiryRecord {
                id: id.to_owned(),
                caller: "court".into(),
                case_number: "(2024)京0105执1号".into(),
                subject: adapters::model::Subject::Person {
                    name: "张三".into(),
                    id_number: adapters::ids::IdNumber::parse("360426199101010071")
                        .expect("an identity number"),
                },
                officers: Vec::new(),
                asset_kinds: vec![adapters::model::AssetKind::BankAccount],
                court: adapters::model::Court {
                    code: "甘0503".into(),
                    name: "天水市麦积区人民法院".into(),
                },
                warnings: Vec::new(),
                status: crate::store::InquiryStatus::Running,
                created_at_ms: 1_000,
                deadline_at_ms: 61_000,
                completed_at_ms: None,
                catalog_version: None,
                batch_id: None,
                batch_line: None,
            },
            tasks: agencies
                .iter()
                .map(|a| (a.to_string(), format!("{id}-{a}")))
                .collect(),
            lease: Some(crate::store::TaskLease {
                owner: "gw-test".into(),
                until_ms: 31_000,
                count: 1,
            }),
        }
    }

    fn accepted(id: &str) -> AuditRecord {
        AuditRecord {
            direction: Some(Direction::Inbound),
            action: "inquiry.create".into(),
            status: Some("accepted".into()),
            inquiry_id: Some(id.to_owned()),
            ..AuditRecord::default()
        }
    }

    /// The rows naming `id`.
    async fn rows_of(store: &SqliteStore, id: &str) -> Vec<StoredAuditEvent> {
        store
            .audit_events(&AuditFilter {
                inquiry_id: Some(id.to_owned()),
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .expect("read")
    }

    #[tokio::test]
    async fn acceptances_are_stored_with_their_inquiries_and_claims() {
        use crate::store::JobStore;
        let (_dir, store) = store().await;
        let log = AuditLog::start(store.clone(), 64).await.expect("start");
        let accepted = futures::future::join_all((0..200).map(|i| {
            let log = log.clone();
            async move {
                let id = format!("inq-{i}");
                log.accept(
                    accepted(&id),
                    Change::Inquiry(Box::new(inquiry(&id, &["bank-a", "bank-b"]))),
                )
                .await
            }
        }))
        .await;
        for (i, a) in accepted.into_iter().enumerate() {
            let (seq, applied) = a.expect("accepted");
            let Applied::Inquiry(back) = applied else {
                panic!("inq-{i}: {applied:?}");
            };
            assert_eq!(back.record.id, format!("inq-{i}"));
            assert_eq!(store.tasks(&back.record.id).await.expect("tasks").len(), 2);
            let rows = rows_of(&store, &back.record.id).await;
            assert_eq!(rows.len(), 1, "inq-{i}");
            assert_eq!(Some(rows[0].seq), seq);
        }
        // The first task of each was stored claimed, the second not: a
        // claim round finds only the second ones.
        let claimed = store
            .claim_due_tasks("gw-other", 2_000, 40_000, 1_000, &[])
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 200);
        assert!(claimed.iter().all(|t| t.agency == "bank-b"));
    }

    /// An acceptance whose request cannot be stored leaves no row; the
    /// acceptances committed with it in one batch are stored alone.
    #[tokio::test]
    async fn an_acceptance_that_cannot_be_stored_leaves_neither_row_nor_request() {
        use crate::store::JobStore;
        let (_dir, store) = store().await;
        store
            .apply(
                Change::Inquiry(Box::new(inquiry("inq-taken", &[]))),
                0,
                None,
            )
            .await
            .expect("first");
        // On the test's one-thread runtime the writer runs only once all
        // three are queued: they go in one batch, which fails.
        let log = AuditLog::start(store.clone(), 64).await.expect("start");
        let (a, b, c) = tokio::join!(
            log.accept(
                accepted("inq-1"),
                Change::Inquiry(Box::new(inquiry("inq-1", &["bank-a"])))
            ),
            log.accept(
                accepted("inq-taken"),
                Change::Inquiry(Box::new(inquiry("inq-taken", &["bank-a"])))
            ),
            log.accept(
                accepted("inq-2"),
                Change::Inquiry(Box::new(inquiry("inq-2", &["bank-a"])))
            ),
        );
        assert!(a.is_ok(), "{a:?}");
        assert!(b.is_err(), "the id is taken");
        assert!(c.is_ok(), "{c:?}");
        assert!(store.inquiry("inq-2").await.expect("read").is_some());
        assert!(store.tasks("inq-taken").await.expect("read").is_empty());
        assert_eq!(rows_of(&store, "inq-1").await.len(), 1);
        assert_eq!(rows_of(&store, "inq-2").await.len(), 1);
        assert!(
            rows_of(&store, "inq-taken").await.is_empty(),
            "no acceptance row for a request that was not stored"
        );
        // The chain has no gap where the failed entry was.
        let rows = store
            .audit_events(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .expect("read");
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rows[1].prev_hash, rows[0].hash);
    }

    fn result(inquiry: &str, agency: &str) -> TaskResult {
        TaskResult {
            inquiry_id: inquiry.into(),
            agency: agency.into(),
            update: TaskUpdate {
                state: crate::store::TaskState::Finished(adapters::model::AgencyStatus::NoRecord),
                detail: None,
                ticket: None,
                due_at_ms: 0,
                sent_at_ms: Some(0),
                latency_ms: Some(1),
                result: None,
            },
        }
    }

    /// Results given to the journal at once, with audit rows between them:
    /// each stored, each inquiry completed by the transaction of its last
    /// result and told so once.
    #[tokio::test]
    async fn concurrent_results_are_stored_and_each_completion_told_once() {
        use crate::store::{InquiryStatus, JobStore, TaskState};
        let (_dir, store) = store().await;
        let agencies: Vec<String> = (0..8).map(|i| format!("bank-{i}")).collect();
        for n in 0..50 {
            let id = format!("inq-{n}");
            let mut new = inquiry(&id, &[]);
            new.tasks = agencies
                .iter()
                .map(|a| (a.clone(), format!("Q{n}-{a}")))
                .collect();
            new.lease = None;
            store
                .apply(Change::Inquiry(Box::new(new)), 0, None)
                .await
                .expect("create");
        }
        let claimed = store
            .claim_due_tasks("gw", 2_000, i64::MAX, 1_000, &[])
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 400);
        assert!(claimed.iter().all(|t| t.state == TaskState::Queued));
        let log = AuditLog::start(store.clone(), 64).await.expect("start");
        let writes = claimed.iter().map(|t| {
            let log = log.clone();
            let r = result(&t.inquiry_id, &t.agency);
            let row = record(t.attempts as usize);
            async move {
                let (written, recorded) = tokio::join!(log.finish("gw", r), log.record(row));
                recorded.expect("recorded");
                written
            }
        });
        let written = futures::future::join_all(writes).await;
        let written: Vec<Finished> = written.into_iter().map(|w| w.expect("written")).collect();
        assert!(written.iter().all(|w| w.stored));
        assert_eq!(written.iter().filter(|w| w.completed).count(), 50);
        for n in 0..50 {
            let i = store
                .inquiry(&format!("inq-{n}"))
                .await
                .expect("read")
                .expect("found");
            assert_eq!(i.status, InquiryStatus::Completed);
        }
        // A result whose lease is gone is answered, not stored.
        let again = log
            .finish("gw", result("inq-0", "bank-0"))
            .await
            .expect("written");
        assert_eq!(
            again,
            Finished {
                stored: false,
                completed: false
            }
        );
        // The rows between them form one chain.
        let rows = store
            .audit_events(&AuditFilter {
                limit: 1000,
                ..AuditFilter::default()
            })
            .await
            .expect("read");
        assert_eq!(rows.len(), 400);
        for pair in rows.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
            assert_eq!(pair[1].seq, pair[0].seq + 1);
        }
    }

    /// A store holding inquiry `inq-1` with a task per agency, each claimed
    /// by `gw`, whose audit table refuses the rows of action `poison` as a
    /// failing disk would.
    async fn refusing_poison_with_claimed_tasks(
        agencies: &[&str],
    ) -> (tempfile::TempDir, Arc<SqliteStore>) {
        use crate::store::JobStore;
        let (dir, store) = store().await;
        let mut new = inquiry("inq-1", agencies);
        new.lease = None;
        store
            .apply(Change::Inquiry(Box::new(new)), 0, None)
            .await
            .expect("create");
        let claimed = store
            .claim_due_tasks("gw", 2_000, i64::MAX, 10, &[])
            .await
            .expect("claim");
        assert_eq!(claimed.len(), agencies.len());
        sqlx::query(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_events \
             WHEN NEW.action = 'poison' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
        )
        .execute(store.pool())
        .await
        .expect("trigger");
        (dir, store)
    }

    /// A result made of an answer whose row was given without waiting is
    /// stored with that row or after it: refused when the row could not be
    /// recorded, whether in the same transaction or in an earlier one.
    #[tokio::test]
    async fn a_result_is_never_stored_without_the_answer_row_it_was_made_of() {
        use crate::store::{JobStore, TaskState};
        let (_dir, store) = refusing_poison_with_claimed_tasks(&["bank-a", "bank-b"]).await;
        let poison = || AuditRecord {
            action: "poison".into(),
            ..record(0)
        };
        let log = AuditLog::start(store.clone(), 64).await.expect("start");
        let state = |agency: &'static str| {
            let store = store.clone();
            async move {
                store
                    .tasks("inq-1")
                    .await
                    .expect("read")
                    .into_iter()
                    .find(|t| t.agency == agency)
                    .map(|t| t.state)
            }
        };

        // The row and the result in one transaction (on the test's
        // one-thread runtime the writer runs only once both are queued).
        let bad = log.record_deferred(poison()).await.expect("queued");
        let same = log
            .finish_after("gw", result("inq-1", "bank-a"), vec![bad.clone()])
            .await;
        assert!(same.is_err(), "{same:?}");
        assert!(bad.recorded().await.is_err());
        assert_ne!(
            state("bank-a").await,
            Some(TaskState::Finished(adapters::model::AgencyStatus::NoRecord))
        );

        // The row failed in an earlier transaction: the result is refused
        // though its own transaction would commit.
        let later = log
            .finish_after("gw", result("inq-1", "bank-a"), vec![bad])
            .await;
        assert!(later.is_err(), "{later:?}");
        assert_ne!(
            state("bank-a").await,
            Some(TaskState::Finished(adapters::model::AgencyStatus::NoRecord))
        );

        // A recorded row lets its result through, committed together.
        let good = log.record_deferred(record(1)).await.expect("queued");
        let stored = log
            .finish_after("gw", result("inq-1", "bank-b"), vec![good.clone()])
            .await
            .expect("stored");
        assert!(stored.stored);
        good.recorded().await.expect("the row is committed");
        assert_eq!(
            state("bank-b").await,
            Some(TaskState::Finished(adapters::model::AgencyStatus::NoRecord))
        );
        let rows = store
            .audit_events(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .expect("read");
        assert_eq!(rows.len(), 1, "only the recorded row");
    }

    /// An entry the store refuses fails alone: the other entries of its
    /// batch are committed (here a lease given back, which would otherwise
    /// hold its task until the lease ran out).
    #[tokio::test]
    async fn an_entry_the_store_refuses_does_not_fail_the_rest_of_its_batch() {
        use crate::store::{JobStore, Leased};
        let (_dir, store) = refusing_poison_with_claimed_tasks(&["bank-a"]).await;
        let log = AuditLog::start(store.clone(), 64).await.expect("start");
        // On the test's one-thread runtime the writer runs only once both
        // are queued: one batch.
        let bad = log
            .record_deferred(AuditRecord {
                action: "poison".into(),
                ..record(0)
            })
            .await
            .expect("queued");
        let released = log
            .update_if(Change::Release {
                owner: "gw".into(),
                of: Leased::Task {
                    inquiry_id: "inq-1".into(),
                    agency: "bank-a".into(),
                },
                due_at_ms: 5_000,
                detail: None,
            })
            .await;
        assert!(matches!(released, Ok(true)), "{released:?}");
        assert!(bad.recorded().await.is_err());
        // Given back: due at its time, claimable by anyone.
        assert!(
            store
                .claim_due_tasks("gw-2", 4_999, i64::MAX, 10, &[])
                .await
                .expect("claim")
                .is_empty()
        );
        assert_eq!(
            store
                .claim_due_tasks("gw-2", 5_000, i64::MAX, 10, &[])
                .await
                .expect("claim")
                .len(),
            1
        );
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
