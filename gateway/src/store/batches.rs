//! Batch inquiries as stored: what is common to a batch's subjects, the
//! lines it refused, and the reads that follow a batch (its counts, its
//! subjects in line order, those completed since a moment). Each accepted
//! subject is an inquiry of its own, marked with its batch and line.

use adapters::model::{AssetKind, Court, Officer};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{InquiryRecord, InquiryStatus, StoreError, TaskRecord, TaskState, Text};

/// A batch as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRecord {
    pub id: String,
    pub caller: String,
    pub idempotency_key: String,
    pub body_sha256: String,
    #[sqlx(try_from = "Text")]
    pub court: Court,
    #[sqlx(try_from = "Text")]
    pub officers: Vec<Officer>,
    #[sqlx(try_from = "Text")]
    pub asset_kinds: Vec<AssetKind>,
    /// Subjects the request named.
    pub lines: i64,
    /// The number of the last of them (lines of a CSV file are numbered
    /// as in the file, header block included).
    pub last_line: i64,
    /// Subjects accepted (each an inquiry).
    pub accepted: i64,
    #[sqlx(try_from = "Text")]
    pub refused: Vec<RefusedLine>,
    pub created_at_ms: i64,
}

/// A subject the batch refused: its line (of the CSV file, or its place
/// in `subjects`, from 1) and why, as a single request's error says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefusedLine {
    #[schema(example = 7)]
    pub line: i64,
    #[schema(example = "invalid_id_number")]
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "subject.id_number")]
    pub field: Option<String>,
}

/// A batch's subjects by status, and its agencies' parts by state.
#[derive(Debug, Clone, Default)]
pub struct BatchCounts {
    pub inquiries: Vec<(InquiryStatus, i64)>,
    /// (agency, state, count), by agency.
    pub tasks: Vec<(String, TaskState, i64)>,
}

/// Which of a batch's subjects to read.
#[derive(Debug, Clone, Copy)]
pub enum BatchSlice {
    /// Lines after `after` up to `until` (inclusive), in line order.
    Lines { after: i64, until: i64 },
    /// Those completed after (`at_ms`, `after_line`), in the order they
    /// completed (and by line within one millisecond): up to `limit`.
    CompletedAfter {
        at_ms: i64,
        after_line: i64,
        limit: i64,
    },
}

/// The batches' own reads (what they write goes through the journal:
/// `Change::Batch`).
#[async_trait]
pub trait BatchStore: Send + Sync {
    async fn batch(&self, id: &str) -> Result<Option<BatchRecord>, StoreError>;

    /// The batch `caller` stored under an idempotency key.
    async fn batch_by_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<BatchRecord>, StoreError>;

    async fn batch_counts(&self, id: &str) -> Result<BatchCounts, StoreError>;

    /// A slice of the batch's subjects, each with its tasks (by agency).
    async fn batch_inquiries(
        &self,
        id: &str,
        slice: BatchSlice,
    ) -> Result<Vec<(InquiryRecord, Vec<TaskRecord>)>, StoreError>;
}

/// A new batch: its record, its subjects' inquiries (with their tasks)
/// and the "accepted" audit row of each subject, all stored with the
/// batch's own row in one transaction.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub record: BatchRecord,
    pub inquiries: Vec<super::NewInquiry>,
    pub rows: Vec<super::NewAuditRow>,
}
