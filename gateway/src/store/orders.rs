//! Durable state of control orders, freeze plans and the outbox of signed
//! callbacks to callers.
//!
//! An order's `phase` says what the order worker does with it next, and is
//! what makes delivery exactly-once: `send` (never sent, or the agency said
//! it has never seen the request number), `query` (a send may have reached
//! the agency; ask it before anything else), `poll` (accepted, the result
//! comes later), `watch` (waiting in line behind another authority's
//! measure), `done`. The worker claims orders with a lease, as the
//! dispatcher claims inquiry tasks.

use adapters::control::{AssetRef, ControlAction, DocumentAck, DocumentRef};
use adapters::model::{AssetKind, Court, Officer, Subject};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    AssetColumns, DecisionLock, OrderPhase, OrderStatus, PlanStatus, StoreError, SubjectColumns,
    Text,
};

/// An order as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OrderRecord {
    pub id: String,
    pub caller: String,
    pub idempotency_key: String,
    pub body_sha256: String,
    pub case_number: String,
    #[sqlx(flatten, try_from = "SubjectColumns")]
    pub subject: Subject,
    #[sqlx(try_from = "Text")]
    pub officers: Vec<Officer>,
    #[sqlx(try_from = "Text")]
    pub court: Court,
    #[sqlx(try_from = "Text")]
    pub documents: Vec<DocumentRef>,
    #[sqlx(try_from = "Text")]
    pub action: ControlAction,
    pub agency: String,
    #[sqlx(flatten, try_from = "AssetColumns")]
    pub asset: AssetRef,
    pub amount_fen: Option<i64>,
    /// Securities: how many units a freeze asks for.
    pub quantity: Option<i64>,
    /// As sent, `YYYY-MM-DD`.
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub prior_order: Option<String>,
    /// The freeze or seal whose measure this order acts on (itself for one).
    pub measure_order: String,
    pub prior_request_number: Option<String>,
    pub plan_id: Option<String>,
    pub request_number: String,
    #[sqlx(try_from = "Text")]
    pub status: OrderStatus,
    #[sqlx(try_from = "Text")]
    pub phase: OrderPhase,
    pub send_attempts: i64,
    pub steps: i64,
    pub ticket: Option<String>,
    pub controlled_fen: Option<i64>,
    pub shortfall_fen: Option<i64>,
    pub controlled_quantity: Option<i64>,
    pub shortfall_quantity: Option<i64>,
    pub deducted_fen: i64,
    pub reason: Option<String>,
    pub queue_position: Option<i64>,
    /// The measure's dates as the agency states them (a renewal moves the
    /// end of its measure's order).
    pub measure_start: Option<String>,
    pub measure_end: Option<String>,
    pub agency_reference: Option<String>,
    pub detail: Option<String>,
    /// The end date an expiry warning was last sent for.
    pub warned_end: Option<String>,
    pub due_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    /// The documents the agency acknowledged (number and the digest it
    /// computed), when it did.
    #[sqlx(try_from = "Text")]
    pub acknowledged_documents: Option<Vec<DocumentAck>>,
    /// The acknowledgement differs from the documents sent.
    pub documents_mismatch: bool,
}

/// What one step of the worker changed on an order.
#[derive(Debug, Clone, Default)]
pub struct OrderProgress {
    pub status: OrderStatus,
    pub phase: OrderPhase,
    pub send_attempts: i64,
    pub ticket: Option<String>,
    pub controlled_fen: Option<i64>,
    pub shortfall_fen: Option<i64>,
    pub controlled_quantity: Option<i64>,
    pub shortfall_quantity: Option<i64>,
    pub reason: Option<String>,
    pub queue_position: Option<i64>,
    pub measure_start: Option<String>,
    pub measure_end: Option<String>,
    pub agency_reference: Option<String>,
    pub detail: Option<String>,
    pub due_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    pub acknowledged_documents: Option<Vec<DocumentAck>>,
    pub documents_mismatch: bool,
}

impl OrderProgress {
    /// The order's progress as it stands, to change a field or two.
    pub fn of(order: &OrderRecord) -> Self {
        Self {
            status: order.status,
            phase: order.phase,
            send_attempts: order.send_attempts,
            ticket: order.ticket.clone(),
            controlled_fen: order.controlled_fen,
            shortfall_fen: order.shortfall_fen,
            controlled_quantity: order.controlled_quantity,
            shortfall_quantity: order.shortfall_quantity,
            reason: order.reason.clone(),
            queue_position: order.queue_position,
            measure_start: order.measure_start.clone(),
            measure_end: order.measure_end.clone(),
            agency_reference: order.agency_reference.clone(),
            detail: order.detail.clone(),
            due_at_ms: order.due_at_ms,
            decided_at_ms: order.decided_at_ms,
            acknowledged_documents: order.acknowledged_documents.clone(),
            documents_mismatch: order.documents_mismatch,
        }
    }
}

/// What an applied renewal, release or deduction does to the order of the
/// measure it acts on, stored with the step that learnt of it.
#[derive(Debug, Clone, PartialEq)]
pub enum MeasureEffect {
    Renewed { end_date: String },
    Released,
    Deducted { amount_fen: i64 },
}

/// A freeze plan as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PlanRecord {
    pub id: String,
    pub caller: String,
    pub idempotency_key: String,
    pub body_sha256: String,
    pub case_number: String,
    #[sqlx(flatten, try_from = "SubjectColumns")]
    pub subject: Subject,
    #[sqlx(try_from = "Text")]
    pub officers: Vec<Officer>,
    #[sqlx(try_from = "Text")]
    pub court: Court,
    #[sqlx(try_from = "Text")]
    pub documents: Vec<DocumentRef>,
    pub inquiry_id: String,
    pub amount_fen: i64,
    pub end_date: String,
    #[sqlx(try_from = "Text")]
    pub accounts: PlanAccounts,
    pub next_index: i64,
    #[sqlx(try_from = "Text")]
    pub status: PlanStatus,
    pub controlled_fen: i64,
    pub detail: Option<String>,
    pub due_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub completed_at_ms: Option<i64>,
}

/// The accounts a plan tries, in order, and those it leaves out. Stored as
/// `{"skipped": [...], "try": [...]}`; the fields are declared in the
/// order of the stored text (keys sorted, as it was first written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanAccounts {
    #[serde(default)]
    pub skipped: Vec<SkippedAccount>,
    #[serde(rename = "try", default)]
    pub tried: Vec<PlanAccount>,
}

/// One account a plan may freeze: a bank's, a payment platform's or a
/// provident fund centre's (`kind`, left out for a bank account, as
/// plans stored before the other kinds were).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanAccount {
    /// The account's number at its agency.
    pub account_number: String,
    pub agency: String,
    pub available_fen: i64,
    #[serde(default = "bank_account", skip_serializing_if = "is_bank_account")]
    pub kind: AssetKind,
}

/// An account an inquiry found that a plan does not try, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedAccount {
    pub account_number: String,
    pub agency: String,
    #[serde(default = "bank_account", skip_serializing_if = "is_bank_account")]
    pub kind: AssetKind,
    pub reason: String,
}

fn bank_account() -> AssetKind {
    AssetKind::BankAccount
}

fn is_bank_account(kind: &AssetKind) -> bool {
    *kind == AssetKind::BankAccount
}

#[derive(Debug, Clone, Default)]
pub struct PlanProgress {
    pub next_index: i64,
    pub status: PlanStatus,
    pub controlled_fen: i64,
    pub detail: Option<String>,
    pub due_at_ms: i64,
    pub completed_at_ms: Option<i64>,
}

/// A callback to a caller, waiting to be delivered.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct OutboxRecord {
    pub id: String,
    pub caller: String,
    pub event: String,
    pub resource_id: String,
    pub body: Vec<u8>,
    pub attempts: i64,
    pub due_at_ms: i64,
    pub created_at_ms: i64,
}

/// The result of storing something under an idempotency key.
#[derive(Debug, Clone)]
pub enum Created<T> {
    /// Stored now.
    New(T),
    /// The key was used before: what it stored then.
    Existing(T),
}

#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Waits (at most `wait`, else `StoreError::Busy`) for a turn on `keys`
    /// and holds it until the lock is released or dropped: of the holders
    /// of a key, in this process or in any gateway on the same database,
    /// one at a time. What a decision reads, checks and writes inside its
    /// turn cannot be outrun by another decision on one of its keys (see
    /// `decision`).
    async fn lock_decision(
        &self,
        keys: &[String],
        wait: std::time::Duration,
    ) -> Result<DecisionLock, StoreError>;

    async fn order(&self, id: &str) -> Result<Option<OrderRecord>, StoreError>;

    /// The order a caller stored under an idempotency key.
    async fn order_by_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<OrderRecord>, StoreError>;

    /// The caller's orders under a case (newest first); with
    /// `expiring_before`, only measures in force or waiting whose end date
    /// is before that date.
    async fn orders_by_case(
        &self,
        caller: &str,
        case_number: &str,
        expiring_before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError>;

    /// The caller's measures under a case (freezes and seals: the orders
    /// that are their own measure), newest first.
    async fn measures_by_case(
        &self,
        caller: &str,
        case_number: &str,
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError>;

    /// The caller's freeze plans under a case, newest first.
    async fn plans_by_case(
        &self,
        caller: &str,
        case_number: &str,
        limit: i64,
    ) -> Result<Vec<PlanRecord>, StoreError>;

    /// The orders of several plans (at most a few hundred ids), by plan
    /// and in the order they were made.
    async fn orders_of_plans(&self, plan_ids: &[String]) -> Result<Vec<OrderRecord>, StoreError>;

    /// The orders acting on one measure (its own order first).
    async fn orders_of_measure(&self, measure_order: &str) -> Result<Vec<OrderRecord>, StoreError>;

    async fn orders_of_plan(&self, plan_id: &str) -> Result<Vec<OrderRecord>, StoreError>;

    /// Claims up to `limit` orders with work due.
    async fn claim_due_orders(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError>;

    /// Measures in force or waiting that end before `before` and have not
    /// been warned about for their current end date.
    async fn orders_to_warn(
        &self,
        before: &str,
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError>;

    async fn plan(&self, id: &str) -> Result<Option<PlanRecord>, StoreError>;

    async fn plan_by_key(&self, caller: &str, key: &str) -> Result<Option<PlanRecord>, StoreError>;

    async fn claim_due_plans(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<PlanRecord>, StoreError>;

    /// Completed inquiries of `callers` whose completion callback is owed
    /// and not yet queued, completed at or before `completed_before_ms`,
    /// oldest first.
    async fn inquiries_owing_callbacks(
        &self,
        callers: &[String],
        completed_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;

    async fn claim_outbox(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRecord>, StoreError>;

    /// Orders whose agency acknowledged other documents (or digests) than
    /// were sent, newest first, created within the window.
    async fn orders_with_document_mismatch(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError>;

    /// The earliest time any order, plan or callback has work due.
    async fn next_order_work_ms(&self) -> Result<Option<i64>, StoreError>;
}

/// What one delivery attempt of a callback came to.
#[derive(Debug, Clone)]
pub enum OutboxOutcome {
    Delivered,
    Retry { due_at_ms: i64, error: String },
    GaveUp { error: String },
}
