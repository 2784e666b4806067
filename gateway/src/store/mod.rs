//! Durable state: inquiries, their per-agency tasks, and the audit log.
//!
//! One trait per concern, implemented once for both backends (SQLite and
//! PostgreSQL, each with its own migrations: `shared` says what differs),
//! chosen by the database URL. Nothing the gateway needs after a restart
//! lives only in memory: a task is claimed with a lease, so a crashed
//! claimant's work is taken up again when the lease runs out.

mod batches;
mod columns;
mod console;
mod decision;
mod orders;
mod postgres;
mod shared;
mod sqlite;
mod states;

use adapters::model::{Asset, AssetKind, Court, Officer, Subject};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use batches::{BatchCounts, BatchRecord, BatchSlice, BatchStore, NewBatch, RefusedLine};
pub use columns::{AssetColumns, SubjectColumns, Text};
pub use console::{ConsoleSession, ConsoleStore, TOUCH_EVERY_MS};
pub use decision::DecisionLock;
pub use postgres::{PgBackend, PgStore};
pub use shared::SqlStore;
pub use sqlite::{SqliteBackend, SqliteStore};
pub use states::{InquiryStatus, OrderPhase, OrderStatus, PlanStatus, TaskState};

use crate::audit::{AuditFilter, AuditRow, StoredAuditEvent};

pub use orders::{
    Created, MeasureEffect, OrderProgress, OrderRecord, OrderStore, OutboxOutcome, OutboxRecord,
    PlanAccount, PlanAccounts, PlanProgress, PlanRecord, SkippedAccount,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?} (use sqlite://path or postgres://user@host/db)")]
    UnsupportedUrl(String),
    /// A part of the store's machinery has stopped (a writer task,
    /// when the gateway shuts down).
    #[error("{0}")]
    Unavailable(String),
    /// A decision did not get its turn in time (`OrderStore::lock_decision`):
    /// another one on the same keys held it.
    #[error("{0}")]
    Busy(String),
}

/// An inquiry as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InquiryRecord {
    pub id: String,
    pub caller: String,
    pub case_number: String,
    #[sqlx(flatten, try_from = "SubjectColumns")]
    pub subject: Subject,
    #[sqlx(try_from = "Text")]
    pub officers: Vec<Officer>,
    #[sqlx(try_from = "Text")]
    pub asset_kinds: Vec<AssetKind>,
    /// The court the caller acts for.
    #[sqlx(try_from = "Text")]
    pub court: Court,
    #[sqlx(try_from = "Text")]
    pub warnings: Vec<String>,
    #[sqlx(try_from = "Text")]
    pub status: InquiryStatus,
    pub created_at_ms: i64,
    pub deadline_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    /// The version of the agency set the inquiry started with (absent for
    /// inquiries stored before versions were recorded).
    pub catalog_version: Option<String>,
    /// The batch the inquiry is a subject of, and its line there.
    pub batch_id: Option<String>,
    pub batch_line: Option<i64>,
}

/// One agency's part of an inquiry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TaskRecord {
    pub inquiry_id: String,
    pub agency: String,
    pub request_number: String,
    #[sqlx(try_from = "Text")]
    pub state: TaskState,
    pub detail: Option<String>,
    pub ticket: Option<String>,
    pub latency_ms: Option<i64>,
    /// The assets found, when answered.
    #[sqlx(try_from = "Text")]
    pub result: Option<Vec<Asset>>,
}

/// A task with the time its last step was stored: for a finished task,
/// when its answer came (a pushed or polled one too).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TimedTask {
    #[sqlx(flatten)]
    pub task: TaskRecord,
    /// Unix ms: when the message was sent plus the time its answer took,
    /// else when the task was last due.
    pub finished_at_ms: i64,
}

/// A task claimed for one step (send or poll).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedTask {
    pub inquiry_id: String,
    pub agency: String,
    pub request_number: String,
    #[sqlx(try_from = "Text")]
    pub state: TaskState,
    pub ticket: Option<String>,
    pub sent_at_ms: Option<i64>,
    /// How many times the task has been claimed, this claim included.
    pub attempts: i64,
}

/// A new inquiry to store: its record, one task per agency (agency,
/// request number), and the claim taken on the first tasks (see
/// `Change::Inquiry`).
#[derive(Debug, Clone)]
pub struct NewInquiry {
    pub record: InquiryRecord,
    pub tasks: Vec<(String, String)>,
    pub lease: Option<TaskLease>,
}

/// A claim taken on a new inquiry's tasks as they are stored.
#[derive(Debug, Clone)]
pub struct TaskLease {
    pub owner: String,
    pub until_ms: i64,
    /// How many of the tasks (the first ones) are claimed.
    pub count: usize,
}

impl TaskLease {
    /// The tasks as `claim_due_tasks` would have returned them.
    pub fn claimed(&self, inquiry_id: &str, tasks: &[(String, String)]) -> Vec<ClaimedTask> {
        tasks
            .iter()
            .take(self.count)
            .map(|(agency, request_number)| ClaimedTask {
                inquiry_id: inquiry_id.to_owned(),
                agency: agency.clone(),
                request_number: request_number.clone(),
                state: TaskState::Queued,
                ticket: None,
                sent_at_ms: None,
                attempts: 1,
            })
            .collect()
    }
}

/// What one step did to a task.
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub state: TaskState,
    pub detail: Option<String>,
    pub ticket: Option<String>,
    /// When the next step is due (polling), unix ms.
    pub due_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub latency_ms: Option<i64>,
    pub result: Option<Vec<Asset>>,
}

/// One step's result, for `Change::Result`.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub inquiry_id: String,
    pub agency: String,
    pub update: TaskUpdate,
}

/// Inquiries and their agency tasks: the reads and the claims. What the
/// gateway writes goes through the journal (`AuditStore::append_journal`).
#[async_trait]
pub trait JobStore: Send + Sync {
    async fn inquiry(&self, id: &str) -> Result<Option<InquiryRecord>, StoreError>;

    async fn tasks(&self, inquiry_id: &str) -> Result<Vec<TaskRecord>, StoreError>;

    /// The inquiry with its tasks (by agency), read together.
    async fn inquiry_with_tasks(
        &self,
        id: &str,
    ) -> Result<Option<(InquiryRecord, Vec<TaskRecord>)>, StoreError>;

    /// The caller's inquiries under a case, newest first.
    async fn inquiries_by_case(
        &self,
        caller: &str,
        case_number: &str,
        limit: i64,
    ) -> Result<Vec<InquiryRecord>, StoreError>;

    /// The caller's inquiries under a case, newest first, each with its
    /// tasks (by agency) and the time each task's last step was stored:
    /// read together, in one statement, so that an inquiry's status and
    /// its tasks are of one moment.
    async fn case_inquiries(
        &self,
        caller: &str,
        case_number: &str,
        limit: i64,
    ) -> Result<Vec<(InquiryRecord, Vec<TimedTask>)>, StoreError>;

    /// Claims up to `limit` due tasks for `owner` until `lease_until_ms`,
    /// leaving alone the tasks of the agencies in `skip_agencies` (those at
    /// their concurrency bound).
    async fn claim_due_tasks(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
        skip_agencies: &[String],
    ) -> Result<Vec<ClaimedTask>, StoreError>;

    /// The agency-set versions that running inquiries use.
    async fn running_catalog_versions(&self) -> Result<Vec<String>, StoreError>;

    /// Up to 1,000 running inquiries past their deadline at `now_ms`,
    /// earliest deadline first: what `Change::TimeOut` is given.
    async fn overdue_inquiries(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;

    /// The task of `agency` with `request_number` if it awaits a pushed result.
    async fn awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
    ) -> Result<Option<ClaimedTask>, StoreError>;

    /// The earliest time any unfinished task is due (for the dispatcher's
    /// sleep), leaving out the agencies in `skip_agencies`.
    async fn next_due_ms(&self, skip_agencies: &[String]) -> Result<Option<i64>, StoreError>;

    /// A cheap write-path check for /readyz.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How much work waits and runs, for the metrics' gauges: unfinished
    /// tasks, orders not done and callbacks not delivered (each claimed or
    /// not at `now_ms`), inquiries and orders by status.
    async fn queue_counts(&self, now_ms: i64) -> Result<Vec<QueueCount>, StoreError>;
}

/// One line of `JobStore::queue_counts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCount {
    /// `task` (by state), `inquiry` (by status), `order_phase` (orders not
    /// done, by phase), `order` (by status), `outbox` (callbacks to deliver).
    pub queue: String,
    pub key: String,
    /// Under a live lease (being worked on) rather than waiting.
    pub claimed: bool,
    pub count: i64,
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// The last row's sequence number and hash.
    async fn audit_tail(&self) -> Result<Option<(i64, String)>, StoreError>;

    /// Appends `rows` after the chain's tail, in one transaction that holds
    /// the chain's write lock: numbers them, chains each to the one before
    /// (`AuditRow::chain`), stores them, and returns them as stored. Several
    /// gateways writing one database thus keep one chain.
    async fn append_audit(&self, rows: Vec<NewAuditRow>) -> Result<Vec<AuditRow>, StoreError>;

    /// Appends the entries' rows as `append_audit` does and makes their
    /// changes, all in one transaction: a request's "accepted" row and the
    /// inquiry, order or plan it accepted are committed together or not at
    /// all; a result, the completion of its inquiry (at `now_ms`) and the
    /// callback `callbacks` makes of it, too.
    /// The receipts are in the entries' order.
    async fn append_journal(
        &self,
        entries: Vec<JournalEntry>,
        now_ms: i64,
        callbacks: Option<&dyn CompletionCallbacks>,
    ) -> Result<Vec<Journaled>, StoreError>;

    /// Whether the journal's writer should have a thread and a runtime of
    /// its own. Yes where each statement ends on a thread of the store's
    /// (SQLite's worker): on the gateway's shared runtime the writer's next
    /// step would wait behind every task queued on a busy worker, once a
    /// statement. No where statements end on sockets that the gateway's
    /// runtime watches (PostgreSQL): a writer elsewhere would learn of each
    /// answer only when that runtime next polls them.
    fn writer_on_own_thread(&self) -> bool {
        false
    }

    /// Makes one change, with no audit row, in a transaction of its own:
    /// `append_journal` for one entry.
    async fn apply(
        &self,
        change: Change,
        now_ms: i64,
        callbacks: Option<&dyn CompletionCallbacks>,
    ) -> Result<Applied, StoreError> {
        let entry = JournalEntry {
            row: None,
            change: Some(change),
        };
        self.append_journal(vec![entry], now_ms, callbacks)
            .await?
            .pop()
            .and_then(|j| j.applied)
            .ok_or_else(|| StoreError::Corrupt("the journal gave no receipt".into()))
    }

    async fn audit_events(&self, filter: &AuditFilter)
    -> Result<Vec<StoredAuditEvent>, StoreError>;

    /// The sequence numbers of the rows `filter` finds, in order, up to
    /// its limit: what an evidence bundle plans with before it reads a row.
    async fn audit_seqs(&self, filter: &AuditFilter) -> Result<Vec<i64>, StoreError>;

    /// The last row's sequence number and hash as a reader sees it (on a
    /// reader's connection: it waits for no writer).
    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError>;

    async fn audit_event(&self, seq: i64) -> Result<Option<StoredAuditEvent>, StoreError>;

    /// Up to `limit` rows after `after_seq` in sequence order, without
    /// bodies: what verification reads.
    async fn audit_chain(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredAuditEvent>, StoreError>;

    /// The rows (without bodies) signed checkpoints at or before row
    /// `through_seq` were signed for, in sequence order, in one read: what
    /// the console's quick verification checks again on every visit.
    async fn checkpointed_rows(
        &self,
        through_seq: i64,
    ) -> Result<Vec<StoredAuditEvent>, StoreError>;

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// Every signed checkpoint, in sequence order.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// The first signed checkpoint at row `seq` or after it.
    async fn checkpoint_at_or_after(&self, seq: i64) -> Result<Option<Checkpoint>, StoreError>;

    /// Drops the message bodies of up to `limit` rows written before
    /// `before_ms` (their digests stay, and so does the chain); returns how
    /// many were dropped.
    async fn purge_bodies(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError>;

    /// Auditors' questions: see `crate::questions`.
    async fn subjects_in_several_cases(
        &self,
        window: &Window,
        limit: i64,
    ) -> Result<Vec<SubjectCases>, StoreError>;

    /// Accepted inquiries and orders per caller, officer and case number.
    async fn officer_cases(&self, window: &Window) -> Result<Vec<OfficerCase>, StoreError>;

    /// Accepted inquiries and orders per officer and civil day (UTC+8),
    /// where the count exceeds `threshold`.
    async fn officer_daily_volume(
        &self,
        window: &Window,
        threshold: i64,
    ) -> Result<Vec<OfficerDay>, StoreError>;
}

/// A row to append: when, what, and its body's digest.
#[derive(Debug, Clone)]
pub struct NewAuditRow {
    pub at_ms: i64,
    pub record: crate::audit::AuditRecord,
}

/// A change the journal makes in the transaction of the audit row that
/// records the request asking for it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new inquiry and its tasks, the first `lease.count` of them
    /// already claimed by `lease.owner` (as `JobStore::claim_due_tasks`
    /// would claim them): the instance storing an inquiry sends its tasks
    /// at once; if it dies first, the lease runs out and any instance
    /// claims them.
    Inquiry(Box<NewInquiry>),
    /// A new control order, or the one stored earlier under the same
    /// caller and idempotency key.
    Order(Box<OrderRecord>),
    /// A new freeze plan, likewise.
    Plan(Box<PlanRecord>),
    /// A new batch with its subjects' inquiries and their "accepted" rows,
    /// or the batch stored earlier under the same caller and idempotency
    /// key (then nothing of this one is stored).
    Batch(Box<NewBatch>),
    /// A step's result for a task `owner` leases. The completion of its
    /// inquiry, when this was the last unfinished task, is made with it.
    Result { owner: String, result: TaskResult },
    /// An agency's pushed result for the task awaiting it (none when the
    /// task no longer awaits: a repeated push, or the deadline came
    /// first).
    Pushed {
        agency: String,
        request_number: String,
        update: TaskUpdate,
    },
    /// Overdue inquiries: their unfinished, unleased tasks time out, and
    /// each inquiry left with no unfinished task is completed (also one
    /// whose last results were stored but not its completion).
    TimeOut { inquiry_ids: Vec<String> },
    /// A claimed task or order given back untouched (but for its detail,
    /// when one is given), due again at `due_at_ms`, where `owner` still
    /// holds it.
    Release {
        owner: String,
        of: Leased,
        due_at_ms: i64,
        detail: Option<String>,
    },
    /// Before a control message goes out: it may reach the agency, so from
    /// now on the order's outcome is asked of the agency, never sent
    /// blindly again. Not stored when `owner` lost the lease.
    MarkSending {
        owner: String,
        id: String,
        send_attempts: i64,
        query_due_ms: i64,
    },
    /// A control order's progress, stored where `owner` still holds its
    /// lease, with its effect on the measure, its callbacks and a wake-up
    /// of its plan.
    SaveOrder(Box<SaveOrder>),
    /// A freeze plan's progress (and its callback) where `owner` still
    /// holds its lease.
    SavePlan(Box<SavePlan>),
    /// Measures in force or waiting whose end date is before `today`
    /// (`YYYY-MM-DD`) become expired, each with the callback
    /// `CompletionCallbacks::lapsed` makes, and their plans woken.
    ExpireOrders { today: String },
    /// The warning about a measure's end date, with its callback: made
    /// once per end date, by whichever gateway marks it first.
    MarkWarned {
        id: String,
        end_date: String,
        notify: Option<Box<OutboxRecord>>,
    },
    /// A completed inquiry's owed callback, queued where it is still owed.
    QueueOwed {
        inquiry_id: String,
        item: Box<OutboxRecord>,
    },
    /// A callback to deliver.
    Enqueue(Box<OutboxRecord>),
    /// The owed callbacks of every completed inquiry whose caller is not
    /// one of `callers` (it takes none) are cleared.
    DropUnwantedCallbacks { callers: Vec<String> },
    /// One delivery attempt of a callback `owner` leases.
    Attempted {
        owner: String,
        id: String,
        attempts: i64,
        outcome: OutboxOutcome,
    },
    /// A console session, opened by the sign-in its row records.
    OpenSession(Box<ConsoleSession>),
    /// A console session revoked at `at_ms` (sign-out): `Applied::Saved`
    /// says whether it was live.
    RevokeSession { id_sha256: String, at_ms: i64 },
}

/// What a claim holds.
#[derive(Debug, Clone)]
pub enum Leased {
    Task { inquiry_id: String, agency: String },
    Order { id: String },
}

/// What a [`Change`] became.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Stored, and handed back.
    Inquiry(Box<NewInquiry>),
    Order(Box<Created<OrderRecord>>),
    Plan(Box<Created<PlanRecord>>),
    Batch(Box<Created<BatchRecord>>),
    /// A result: stored (the lease was still held, or the task still
    /// awaited it), and whether it completed its inquiry (told to one
    /// result of the inquiry only). The completion is committed with it,
    /// and so is the caller's `inquiry.completed` callback.
    Finished {
        stored: bool,
        completed: bool,
    },
    /// A change made where its condition held (the lease, the owed
    /// callback, the unwarned end date), or not.
    Saved(bool),
    /// The inquiries a `TimeOut` completed.
    Completed(Vec<String>),
    /// The measures an `ExpireOrders` expired.
    Expired(Vec<OrderRecord>),
    /// How many rows a change touched.
    Count(u64),
}

/// What `Change::SaveOrder` stores: `OrderStore::save_order`'s arguments.
#[derive(Debug, Clone)]
pub struct SaveOrder {
    pub owner: String,
    pub id: String,
    pub progress: OrderProgress,
    pub effect: Option<MeasureEffect>,
    pub notify: Vec<OutboxRecord>,
}

/// One entry of the journal: an audit row, the change it records, or both.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub row: Option<NewAuditRow>,
    pub change: Option<Change>,
}

/// What the journal asks of the gateway when it completes an inquiry: the
/// caller's `inquiry.completed` callback, queued in the outbox by the same
/// transaction.
pub trait CompletionCallbacks: Send + Sync {
    /// Whether `caller` takes callbacks at all.
    fn takes(&self, caller: &str) -> bool;
    /// The callback of a completed inquiry, as it stands.
    fn completed(
        &self,
        inquiry: &InquiryRecord,
        tasks: &[TaskRecord],
        now_ms: i64,
    ) -> Option<OutboxRecord>;
    /// The callback of a measure that has just lapsed (`order.expired`).
    fn lapsed(&self, order: &OrderRecord, now_ms: i64) -> Option<OutboxRecord>;
}

/// What `Change::SavePlan` stores.
#[derive(Debug, Clone)]
pub struct SavePlan {
    pub owner: String,
    pub id: String,
    pub progress: PlanProgress,
    pub notify: Option<OutboxRecord>,
}

/// An entry as committed.
#[derive(Debug, Clone)]
pub struct Journaled {
    /// The row as chained; none when the change found its key taken by
    /// another request (nothing was accepted, so nothing says it was).
    pub row: Option<AuditRow>,
    pub applied: Option<Applied>,
}

/// A signed statement that the chain up to `seq` ends in `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at_ms: i64,
    /// Hex of the Ed25519 public key that signed.
    pub key_id: String,
    /// Hex of the Ed25519 signature over `checkpoint_message(seq, hash)`.
    pub signature: String,
}

/// A time range for auditors' questions, unix ms, `to` exclusive.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubjectCases {
    pub subject: String,
    pub cases: Vec<String>,
    pub requests: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OfficerCase {
    pub caller: String,
    pub officer: String,
    pub case_number: String,
    pub requests: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OfficerDay {
    pub officer: String,
    /// `YYYY-MM-DD` in UTC+8.
    pub day: String,
    pub requests: i64,
}

/// Every concern behind one handle.
pub trait Store: JobStore + AuditStore + OrderStore + BatchStore + ConsoleStore {}
impl<T: JobStore + AuditStore + OrderStore + BatchStore + ConsoleStore> Store for T {}

/// Opens the store a database URL names: `sqlite:` for a SQLite file,
/// `postgres:` or `postgresql:` for a PostgreSQL database.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
