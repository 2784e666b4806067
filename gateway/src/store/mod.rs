//! Durable state: inquiries, their per-agency tasks, and the audit log.
//!
//! One trait per concern, one implementation per backend (SQLite and
//! PostgreSQL, each with its own migrations), chosen by the database URL. Nothing the gateway needs
//! after a restart lives only in memory: a task is claimed with a lease, so a
//! crashed claimant's work is taken up again when the lease runs out.

mod decision;
mod orders;
mod postgres;
mod postgres_orders;
mod sqlite;
mod sqlite_orders;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use decision::DecisionLock;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::audit::{AuditFilter, AuditRow, StoredAuditEvent};

pub use orders::{
    Created, MeasureEffect, OrderProgress, OrderRecord, OrderStore, OutboxOutcome, OutboxRecord,
    PHASE_DONE, PHASE_POLL, PHASE_QUERY, PHASE_SEND, PHASE_WATCH, PlanProgress, PlanRecord,
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
    /// A part of the store's machinery has stopped (the inquiry writer,
    /// when the gateway shuts down).
    #[error("{0}")]
    Unavailable(String),
    /// A decision did not get its turn in time (`OrderStore::lock_decision`):
    /// another one on the same keys held it.
    #[error("{0}")]
    Busy(String),
}

/// A task's place in its life: waiting to be sent, waiting to be polled, or
/// finished with an agency status.
pub const STATE_QUEUED: &str = "queued";
pub const STATE_POLLING: &str = "polling";
/// Sent; the agency will push its result to the callback endpoint.
pub const STATE_AWAITING: &str = "awaiting";

/// An inquiry as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InquiryRecord {
    pub id: String,
    pub caller: String,
    pub case_number: String,
    pub subject_kind: String,
    pub subject_name: String,
    pub subject_id: String,
    /// JSON array of officers.
    pub officers: String,
    /// JSON array of asset kinds.
    pub asset_kinds: String,
    /// JSON of the court the caller acts for.
    pub court: String,
    /// JSON array of warning strings.
    pub warnings: String,
    pub status: String,
    pub created_at_ms: i64,
    pub deadline_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    /// The version of the agency set the inquiry started with (absent for
    /// inquiries stored before versions were recorded).
    pub catalog_version: Option<String>,
}

/// One agency's part of an inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    pub inquiry_id: String,
    pub agency: String,
    pub request_number: String,
    pub state: String,
    pub detail: Option<String>,
    pub ticket: Option<String>,
    pub latency_ms: Option<i64>,
    /// JSON array of assets, when answered.
    pub result: Option<String>,
}

/// A task claimed for one step (send or poll).
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    pub inquiry_id: String,
    pub agency: String,
    pub request_number: String,
    pub state: String,
    pub ticket: Option<String>,
    pub sent_at_ms: Option<i64>,
    /// How many times the task has been claimed, this claim included.
    pub attempts: i64,
}

/// A new inquiry to store: its record, one task per agency (agency,
/// request number), and the claim taken on the first tasks (see
/// `JobStore::create_inquiry_claimed`).
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
                state: STATE_QUEUED.to_owned(),
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
    pub state: String,
    pub detail: Option<String>,
    pub ticket: Option<String>,
    /// When the next step is due (polling), unix ms.
    pub due_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub latency_ms: Option<i64>,
    pub result: Option<String>,
}

/// One step's result, for `JobStore::finish_tasks`.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub inquiry_id: String,
    pub agency: String,
    pub update: TaskUpdate,
}

/// What `JobStore::finish_tasks` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishedTasks {
    /// Per result, in order: stored (the lease was still held).
    pub stored: Vec<bool>,
    /// The inquiries completed by this call.
    pub completed: Vec<String>,
}

/// For `JobStore::finish_tasks`: per result, whether its (inquiry, agency)
/// is among the `stored` keys the update returned, and the inquiries those
/// keys touch, each once, in order (the completion check's input).
pub(crate) fn stored_results<'a>(
    results: &[TaskResult],
    stored: &'a std::collections::HashSet<(String, String)>,
) -> (Vec<bool>, Vec<&'a str>) {
    let flags = results
        .iter()
        .map(|r| stored.contains(&(r.inquiry_id.clone(), r.agency.clone())))
        .collect();
    let touched: std::collections::BTreeSet<&str> =
        stored.iter().map(|(inquiry, _)| inquiry.as_str()).collect();
    (flags, touched.into_iter().collect())
}

/// Inquiries and their agency tasks.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Stores the inquiry and one queued task per agency, atomically.
    async fn create_inquiry(
        &self,
        inquiry: &InquiryRecord,
        tasks: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.create_inquiry_claimed(inquiry, tasks, None).await
    }

    /// Stores the inquiry and its tasks, atomically, the first
    /// `lease.count` of them already claimed by `lease.owner` (as
    /// `claim_due_tasks` would claim them: leased until `lease.until_ms`,
    /// one attempt counted). The instance storing an inquiry sends its
    /// tasks at once, without claiming them from the store again; if it
    /// dies first, the lease runs out and any instance claims them.
    async fn create_inquiry_claimed(
        &self,
        inquiry: &InquiryRecord,
        tasks: &[(String, String)],
        lease: Option<&TaskLease>,
    ) -> Result<(), StoreError> {
        self.create_inquiries(&[NewInquiry {
            record: inquiry.clone(),
            tasks: tasks.to_vec(),
            lease: lease.cloned(),
        }])
        .await
    }

    /// Stores several new inquiries, each as `create_inquiry_claimed`
    /// does, in one transaction: all of them or none (the group commit of
    /// `InquiryWriter`).
    async fn create_inquiries(&self, new: &[NewInquiry]) -> Result<(), StoreError>;

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

    /// Gives a claimed task back untouched, due again at `due_at_ms`.
    async fn release_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        due_at_ms: i64,
    ) -> Result<(), StoreError>;

    /// Gives a claimed task back untouched but for its detail, due again at
    /// `due_at_ms` (an agency outside its business hours).
    async fn defer_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        due_at_ms: i64,
        detail: &str,
    ) -> Result<(), StoreError>;

    /// The agency-set versions that running inquiries use.
    async fn running_catalog_versions(&self) -> Result<Vec<String>, StoreError>;

    /// Marks unfinished, unleased tasks of overdue inquiries `timeout`;
    /// returns the inquiries touched, and every inquiry still running past
    /// its deadline (the caller tries to complete each).
    async fn expire_overdue(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;

    /// Completes the inquiry if none of its tasks is unfinished. True when
    /// this call completed it.
    async fn try_complete(&self, inquiry_id: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// Records many steps' results in one transaction (each only where
    /// `owner` still holds the task's lease), then completes the inquiries
    /// they leave with no unfinished task. Returns, per result, whether it
    /// was stored, and the inquiries this call completed.
    async fn finish_tasks(
        &self,
        owner: &str,
        results: &[TaskResult],
        now_ms: i64,
    ) -> Result<FinishedTasks, StoreError>;

    /// How many writers may run `finish_tasks` at once to advantage: one
    /// where the database takes one writer at a time (SQLite).
    fn concurrent_writers(&self) -> usize {
        1
    }

    /// The task of `agency` with `request_number` if it awaits a pushed result.
    async fn awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
    ) -> Result<Option<ClaimedTask>, StoreError>;

    /// Records a pushed result on a task that awaits one. False when the task
    /// no longer awaits (a repeated callback, or the deadline passed first).
    async fn finish_awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
        update: &TaskUpdate,
    ) -> Result<bool, StoreError>;

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

/// The query behind `queue_counts`, the same on both backends: per group,
/// how many rows are claimed and how many there are. Grouping by the
/// indexed column alone (the claimed ones summed, not grouped by) lets the
/// database count along the index instead of sorting every unfinished row.
/// The lease bound is a parameter, so the statement stays prepared.
fn queue_counts_sql(params: [&str; 3]) -> String {
    let claimed = |param: &str| {
        format!(
            "CAST(COALESCE(SUM(CASE WHEN COALESCE(lease_until_ms, 0) > {param} THEN 1 ELSE 0 END), 0) AS BIGINT)"
        )
    };
    let [tasks, orders, outbox] = params.map(claimed);
    format!(
        "SELECT 'task' AS queue, state AS k, {tasks} AS claimed, COUNT(*) AS n \
           FROM agency_tasks WHERE state IN ('{STATE_QUEUED}', '{STATE_POLLING}', '{STATE_AWAITING}') \
           GROUP BY state \
         UNION ALL SELECT 'inquiry', status, CAST(0 AS BIGINT), COUNT(*) FROM inquiries GROUP BY status \
         UNION ALL SELECT 'order_phase', phase, {orders}, COUNT(*) FROM orders \
           WHERE phase <> '{PHASE_DONE}' GROUP BY phase \
         UNION ALL SELECT 'order', status, CAST(0 AS BIGINT), COUNT(*) FROM orders GROUP BY status \
         UNION ALL SELECT 'outbox', 'pending', {outbox}, COUNT(*) FROM outbox \
           WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL"
    )
}

/// Runs `queue_counts_sql` on either backend.
async fn fetch_queue_counts<'c, DB, E>(
    executor: E,
    params: [&str; 3],
    now_ms: i64,
) -> Result<Vec<QueueCount>, StoreError>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB> + sqlx::Type<DB> + sqlx::Encode<'r, DB>,
    for<'a> &'a str: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::Row;
    let rows = sqlx::query(sqlx::AssertSqlSafe(queue_counts_sql(params)))
        .bind(now_ms)
        .bind(now_ms)
        .bind(now_ms)
        .fetch_all(executor)
        .await?;
    let mut counts = Vec::with_capacity(rows.len() * 2);
    for r in &rows {
        let queue: String = r.try_get("queue")?;
        let key: String = r.try_get("k")?;
        let claimed: i64 = r.try_get("claimed")?;
        let n: i64 = r.try_get("n")?;
        if matches!(queue.as_str(), "inquiry" | "order") {
            counts.push(QueueCount {
                queue,
                key,
                claimed: false,
                count: n,
            });
        } else {
            counts.push(QueueCount {
                queue: queue.clone(),
                key: key.clone(),
                claimed: true,
                count: claimed,
            });
            counts.push(QueueCount {
                queue,
                key,
                claimed: false,
                count: n - claimed,
            });
        }
    }
    Ok(counts)
}

/// Numbers and chains `new` after the row (`seq`, `prev`): what every
/// backend's `append_audit` stores.
fn chain_rows(new: Vec<NewAuditRow>, mut seq: i64, mut prev: String) -> Vec<AuditRow> {
    let mut rows = Vec::with_capacity(new.len());
    for n in new {
        seq += 1;
        let row = AuditRow::chain(seq, n.at_ms, n.record, prev);
        prev = row.hash.clone();
        rows.push(row);
    }
    rows
}

/// `JobStore::inquiry_with_tasks` in one statement (`placeholder` is the
/// backend's for the id): the inquiry's columns come with each task, by
/// agency; an inquiry without tasks comes as one row with NULL task
/// columns.
fn inquiry_with_tasks_sql(placeholder: &str) -> String {
    format!(
        "SELECT i.id, i.caller, i.case_number, i.subject_kind, i.subject_name, i.subject_id, \
         i.officers, i.asset_kinds, i.court, i.warnings, i.status, i.created_at_ms, \
         i.deadline_at_ms, i.completed_at_ms, i.catalog_version, t.agency AS t_agency, \
         t.request_number AS t_request_number, t.state AS t_state, t.detail AS t_detail, \
         t.ticket AS t_ticket, t.latency_ms AS t_latency_ms, t.result AS t_result \
         FROM inquiries i LEFT JOIN agency_tasks t ON t.inquiry_id = i.id \
         WHERE i.id = {placeholder} ORDER BY t.agency"
    )
}

/// The inquiry and its tasks from the rows of `inquiry_with_tasks_sql`,
/// the inquiry read by the backend's `inquiry_from`.
fn inquiry_with_tasks_from<R>(
    rows: &[R],
    inquiry_from: fn(&R) -> Result<InquiryRecord, sqlx::Error>,
) -> Result<Option<(InquiryRecord, Vec<TaskRecord>)>, sqlx::Error>
where
    R: sqlx::Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let record = inquiry_from(first)?;
    let mut tasks = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(agency) = r.try_get::<Option<String>, _>("t_agency")? else {
            continue;
        };
        tasks.push(TaskRecord {
            inquiry_id: record.id.clone(),
            agency,
            request_number: r.try_get("t_request_number")?,
            state: r.try_get("t_state")?,
            detail: r.try_get("t_detail")?,
            ticket: r.try_get("t_ticket")?,
            latency_ms: r.try_get("t_latency_ms")?,
            result: r.try_get("t_result")?,
        });
    }
    Ok(Some((record, tasks)))
}

/// The rows of a batch that was not appended, to be chained again.
fn unchain(rows: Vec<AuditRow>) -> Vec<NewAuditRow> {
    rows.into_iter()
        .map(|r| NewAuditRow {
            at_ms: r.at_ms,
            record: r.record,
        })
        .collect()
}

/// The audit chain's tail as a store handle last wrote it. The next batch
/// is chained after it without reading the tail first; the statement that
/// appends it checks that it is still the tail, and otherwise the batch is
/// chained again after the tail as stored, under the chain's lock.
#[derive(Debug, Clone, Default)]
struct AuditTail(std::sync::Arc<std::sync::Mutex<Option<(i64, String)>>>);

impl AuditTail {
    fn get(&self) -> Option<(i64, String)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps the last of `rows` as the tail; with none (after a failure,
    /// when the statement may or may not have been applied) the next batch
    /// reads the tail as stored.
    fn keep(&self, rows: Option<&[AuditRow]>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rows
            .and_then(|r| r.last())
            .map(|last| (last.seq, last.hash.clone()));
    }
}

/// Each row's officers as the JSON array both backends store.
fn officers_json(rows: &[AuditRow]) -> Result<Vec<String>, StoreError> {
    rows.iter()
        .map(|r| serde_json::to_string(&r.record.officers))
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
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

    async fn audit_events(&self, filter: &AuditFilter)
    -> Result<Vec<StoredAuditEvent>, StoreError>;

    async fn audit_event(&self, seq: i64) -> Result<Option<StoredAuditEvent>, StoreError>;

    /// Up to `limit` rows after `after_seq` in sequence order, without
    /// bodies: what verification reads.
    async fn audit_chain(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredAuditEvent>, StoreError>;

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// Every signed checkpoint, in sequence order.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

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

/// A signed statement that the chain up to `seq` ends in `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct OfficerCase {
    pub caller: String,
    pub officer: String,
    pub case_number: String,
    pub requests: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OfficerDay {
    pub officer: String,
    /// `YYYY-MM-DD` in UTC+8.
    pub day: String,
    pub requests: i64,
}

/// Every concern behind one handle.
pub trait Store: JobStore + AuditStore + OrderStore {}
impl<T: JobStore + AuditStore + OrderStore> Store for T {}

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
