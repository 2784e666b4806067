//! Durable state: inquiries, their per-agency tasks, and the audit log.
//!
//! One trait per concern, one implementation per backend (SQLite now;
//! PostgreSQL follows with its own migrations). Nothing the gateway needs
//! after a restart lives only in memory: a task is claimed with a lease, so a
//! crashed claimant's work is taken up again when the lease runs out.

mod orders;
mod sqlite;
mod sqlite_orders;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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
    #[error("unsupported database URL {0:?} (use sqlite://path)")]
    UnsupportedUrl(String),
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
#[derive(Debug, Clone)]
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

/// Inquiries and their agency tasks.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Stores the inquiry and one queued task per agency, atomically.
    async fn create_inquiry(
        &self,
        inquiry: &InquiryRecord,
        tasks: &[(String, String)],
    ) -> Result<(), StoreError>;

    async fn inquiry(&self, id: &str) -> Result<Option<InquiryRecord>, StoreError>;

    async fn tasks(&self, inquiry_id: &str) -> Result<Vec<TaskRecord>, StoreError>;

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

    /// Records a step's result and releases the lease (only if `owner` still
    /// holds it).
    async fn update_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        update: &TaskUpdate,
    ) -> Result<bool, StoreError>;

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
    /// returns the inquiries touched.
    async fn expire_overdue(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;

    /// Completes the inquiry if none of its tasks is unfinished. True when
    /// this call completed it.
    async fn try_complete(&self, inquiry_id: &str, now_ms: i64) -> Result<bool, StoreError>;

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
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// The last row's sequence number and hash, to continue the chain.
    async fn audit_tail(&self) -> Result<Option<(i64, String)>, StoreError>;

    /// Appends rows (already numbered and chained) in one transaction.
    async fn append_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError>;

    async fn audit_events(&self, filter: &AuditFilter)
    -> Result<Vec<StoredAuditEvent>, StoreError>;

    async fn audit_event(&self, seq: i64) -> Result<Option<StoredAuditEvent>, StoreError>;
}

/// Every concern behind one handle.
pub trait Store: JobStore + AuditStore + OrderStore {}
impl<T: JobStore + AuditStore + OrderStore> Store for T {}

/// Opens the store a database URL names.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
