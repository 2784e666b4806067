//! Verifying the audit log: every row's hash is recomputed from its
//! canonical encoding and the hash before it, sequence numbers must run
//! without a gap, and every signed checkpoint must verify under the
//! gateway's public key and match the chain at its row. The first row that
//! fails is named, with what is wrong with it:
//! - an edited row no longer matches its own hash;
//! - a deleted row leaves a gap (or, at the end of the log, a checkpoint
//!   beyond the last row);
//! - reordered rows carry hashes computed for other positions;
//! - a chain rewritten from an edited row onwards (every hash recomputed)
//!   no longer matches the checkpoints signed before the edit.
//!
//! Reading a log of a million rows takes seconds, too long for a page an
//! auditor opens often. `verify_after` is the quick check the console
//! makes between whole passes: the rows after a row already verified,
//! chained on from its remembered hash, and every signed checkpoint again.
//! Both walk the chain with the same per-row checks (`Walk::step`).

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;

use crate::audit::StoredAuditEvent;
use crate::audit::{GENESIS_HASH, checkpoint_message, row_hash};
use crate::store::{AuditStore, Checkpoint, StoreError};

/// Rows read per page.
const PAGE: i64 = 5_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    /// Rows checked (up to the first bad one).
    pub checked: i64,
    pub first_bad_seq: Option<i64>,
    /// What is wrong with it.
    pub problem: Option<String>,
    /// Signed checkpoints that verified.
    pub checkpoints: usize,
    /// The last row covered by a verified checkpoint.
    pub signed_through_seq: Option<i64>,
}

impl VerifyReport {
    fn bad(checked: i64, seq: i64, problem: String, checkpoints: usize) -> Self {
        Self {
            ok: false,
            checked,
            first_bad_seq: Some(seq),
            problem: Some(problem),
            checkpoints,
            signed_through_seq: None,
        }
    }
}

/// Parses a hex Ed25519 public key.
pub fn verifying_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .map_err(|e| format!("not hex: {e}"))?
        .try_into()
        .map_err(|_| "an Ed25519 public key is 32 bytes".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

pub(crate) fn check_signature(c: &Checkpoint, key: Option<&VerifyingKey>) -> Result<(), String> {
    let Some(key) = key else {
        return Err("no public key is configured to verify checkpoints with".into());
    };
    if c.key_id != hex::encode(key.to_bytes()) {
        return Err(format!(
            "the checkpoint at row {} was signed by another key ({})",
            c.seq, c.key_id
        ));
    }
    let bytes: [u8; 64] = hex::decode(&c.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("the checkpoint at row {} has a malformed signature", c.seq))?;
    key.verify_strict(
        &checkpoint_message(c.seq, &c.hash),
        &Signature::from_bytes(&bytes),
    )
    .map_err(|_| {
        format!(
            "the checkpoint at row {} has a signature that does not verify",
            c.seq
        )
    })
}

/// Where a walk along the chain stands: the next row it expects, the hash
/// that row must name as the one before it, and what it has verified so
/// far. The whole pass (`verify`) and the quick one (`verify_after`) walk
/// with it, so a row is checked the same way by both (`Walk::step`).
#[derive(Debug, Clone)]
struct Walk<'a> {
    checkpoints: &'a BTreeMap<i64, Checkpoint>,
    key: Option<&'a VerifyingKey>,
    /// The next row expected.
    expected: i64,
    /// The hash of the row before it (the genesis value before row 1).
    prev_hash: String,
    /// Rows checked by this walk.
    checked: i64,
    /// Checkpoints verified by this walk.
    verified: usize,
    signed_through: Option<i64>,
}

/// The first bad row and what is wrong with it.
type Bad = (i64, String);

impl<'a> Walk<'a> {
    fn new(
        checkpoints: &'a BTreeMap<i64, Checkpoint>,
        key: Option<&'a VerifyingKey>,
        after: &Watermark,
    ) -> Self {
        Self {
            checkpoints,
            key,
            expected: after.seq + 1,
            prev_hash: after.hash.clone(),
            checked: 0,
            verified: 0,
            signed_through: None,
        }
    }

    /// Checks the next row: its number, the hash it names as the one
    /// before, its own hash, and the checkpoint signed for it if any.
    fn step(&mut self, row: &StoredAuditEvent) -> Result<(), Bad> {
        let expected = self.expected;
        if row.seq != expected {
            return Err((
                expected,
                format!(
                    "row {expected} is missing: the log jumps from row {} to row {}",
                    expected - 1,
                    row.seq
                ),
            ));
        }
        if row.prev_hash != self.prev_hash {
            return Err((
                row.seq,
                format!(
                    "row {} does not follow row {}: it names another previous hash \
                     (rows deleted or reordered before it)",
                    row.seq,
                    row.seq - 1
                ),
            ));
        }
        check_row(row)?;
        if let Some(c) = self.checkpoints.get(&row.seq) {
            check_checkpoint(c, row, self.key)?;
            self.verified += 1;
            self.signed_through = Some(row.seq);
        }
        self.prev_hash = row.hash.clone();
        self.checked += 1;
        self.expected += 1;
        Ok(())
    }

    /// Walks to the end of the log, a page at a time.
    async fn run(&mut self, store: &dyn AuditStore) -> Result<Result<(), Bad>, StoreError> {
        loop {
            let rows = store.audit_chain(self.expected - 1, PAGE).await?;
            if rows.is_empty() {
                return Ok(Ok(()));
            }
            for row in &rows {
                if let Err(bad) = self.step(row) {
                    return Ok(Err(bad));
                }
            }
        }
    }

    /// Where the walk stands: every row before `expected` verified.
    fn position(&self) -> Watermark {
        Watermark {
            seq: self.expected - 1,
            hash: self.prev_hash.clone(),
        }
    }

    /// After the last row: a checkpoint beyond it means rows at the end
    /// were deleted.
    fn end(&self) -> Result<(), Bad> {
        let expected = self.expected;
        match self.checkpoints.range(expected..).next() {
            Some((&seq, _)) => Err((
                expected,
                format!(
                    "rows from {expected} on are missing: a checkpoint was signed for row {seq}, \
                     but the log ends at row {}",
                    expected - 1
                ),
            )),
            None => Ok(()),
        }
    }
}

/// A row matches its own hash.
fn check_row(row: &StoredAuditEvent) -> Result<(), Bad> {
    if row_hash(&row.prev_hash, row) != row.hash {
        return Err((
            row.seq,
            format!(
                "row {} does not match its hash: its content was changed, or it was \
                 moved from another position",
                row.seq
            ),
        ));
    }
    Ok(())
}

/// A checkpoint's signature verifies, and its row still ends in the hash
/// it signed.
fn check_checkpoint(
    c: &Checkpoint,
    row: &StoredAuditEvent,
    key: Option<&VerifyingKey>,
) -> Result<(), Bad> {
    check_signature(c, key).map_err(|problem| (row.seq, problem))?;
    if c.hash != row.hash {
        return Err((
            row.seq,
            format!(
                "row {} differs from the checkpoint signed for it: the chain was \
                 rewritten at or before this row",
                row.seq
            ),
        ));
    }
    Ok(())
}

/// A row up to which the chain was verified, and its hash: where a quick
/// check (`verify_after`) goes on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    pub seq: i64,
    pub hash: String,
}

impl Watermark {
    /// Before the first row.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// What a gateway remembers of its last pass over the chain (in memory,
/// per process: a gateway that starts again verifies the whole log on the
/// chain page's first visit).
#[derive(Debug, Clone)]
pub struct Remembered {
    /// Up to where the chain is known good.
    pub verified_to: Watermark,
    /// When the last whole pass began (unix ms), and how long it took.
    pub full_at_ms: i64,
    pub full_took_ms: i64,
}

/// The memory, shared by the gateway's requests; held during a pass, so
/// two visits at once do not both read the log.
pub type ChainMemory = std::sync::Arc<tokio::sync::Mutex<Option<Remembered>>>;

/// What a pass found, and the row up to which the chain is now known good
/// (the last row when it is ok, the row before the first bad one when the
/// walk found it, the watermark it started from when a checkpoint before
/// it failed): where the next quick check may go on from.
#[derive(Debug, Clone)]
pub struct Pass {
    pub report: VerifyReport,
    pub verified_to: Watermark,
}

async fn checkpoint_map(store: &dyn AuditStore) -> Result<BTreeMap<i64, Checkpoint>, StoreError> {
    Ok(store
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.seq, c))
        .collect())
}

/// Verifies the whole log. `key` verifies the checkpoints; without one,
/// checkpoints are reported unverified (and the report is not ok if there
/// are any).
pub async fn verify(
    store: &dyn AuditStore,
    key: Option<&VerifyingKey>,
) -> Result<VerifyReport, StoreError> {
    Ok(verify_pass(store, key).await?.report)
}

/// `verify`, with the row up to which the chain is known good.
pub async fn verify_pass(
    store: &dyn AuditStore,
    key: Option<&VerifyingKey>,
) -> Result<Pass, StoreError> {
    let checkpoints = checkpoint_map(store).await?;
    let mut walk = Walk::new(&checkpoints, key, &Watermark::genesis());
    let outcome = match walk.run(store).await? {
        Ok(()) => walk.end(),
        Err(bad) => Err(bad),
    };
    Ok(finish(&walk, 0, outcome))
}

/// The quick check: the rows after `after` (a row up to which an earlier
/// pass verified the chain, and its hash), continuing the chain from the
/// hash remembered, and every signed checkpoint at or before it (its
/// signature, and that its row still matches its own hash and the hash
/// signed; their rows read in one query). An edit after `after`, or at a
/// checkpointed row, is found; an edit of a row before `after` that no
/// checkpoint signs is not (only `verify` finds it), which is why the
/// console shows when the whole log was last verified.
///
/// `checked` in the report counts the rows up to the end (or the first bad
/// row) as verified, those before `after` by the earlier pass.
pub async fn verify_after(
    store: &dyn AuditStore,
    key: Option<&VerifyingKey>,
    after: &Watermark,
) -> Result<Pass, StoreError> {
    let checkpoints = checkpoint_map(store).await?;
    let mut covered = Walk::new(&checkpoints, key, &Watermark::genesis());
    let signed_rows: BTreeMap<i64, StoredAuditEvent> = store
        .checkpointed_rows(after.seq)
        .await?
        .into_iter()
        .map(|row| (row.seq, row))
        .collect();
    for (&seq, c) in checkpoints.range(..=after.seq) {
        let checked = match signed_rows.get(&seq) {
            None => Err((
                seq,
                format!("row {seq} is missing: a checkpoint was signed for it"),
            )),
            Some(row) => check_row(row).and_then(|()| check_checkpoint(c, row, key)),
        };
        if let Err(bad) = checked {
            let mut pass = finish(&covered, 0, Err(bad));
            pass.verified_to = after.clone();
            pass.report.checked = seq - 1;
            return Ok(pass);
        }
        covered.verified += 1;
        covered.signed_through = Some(seq);
    }
    // The row the earlier pass ended at is still there, as it was: rows
    // deleted from the end, or that row changed, show here.
    if after.seq > 0 {
        let row = store
            .audit_chain(after.seq - 1, 1)
            .await?
            .into_iter()
            .next()
            .filter(|row| row.seq == after.seq);
        let seq = after.seq;
        let checked = match &row {
            None => Err((
                seq,
                format!("row {seq} is missing: it was verified before, and is gone"),
            )),
            Some(row) if row.hash != after.hash => Err((
                seq,
                format!(
                    "row {seq} has another hash than when it was verified: the chain was \
                     rewritten at or before this row"
                ),
            )),
            Some(row) => check_row(row),
        };
        if let Err(bad) = checked {
            let mut pass = finish(&covered, 0, Err(bad));
            pass.verified_to = Watermark::genesis();
            pass.report.checked = seq - 1;
            return Ok(pass);
        }
    }
    let mut walk = Walk::new(&checkpoints, key, after);
    let outcome = match walk.run(store).await? {
        Ok(()) => walk.end(),
        Err(bad) => Err(bad),
    };
    walk.verified += covered.verified;
    walk.signed_through = walk.signed_through.or(covered.signed_through);
    Ok(finish(&walk, after.seq, outcome))
}

fn finish(walk: &Walk<'_>, before: i64, outcome: Result<(), Bad>) -> Pass {
    let checked = before + walk.checked;
    let report = match outcome {
        Ok(()) => VerifyReport {
            ok: true,
            checked,
            first_bad_seq: None,
            problem: None,
            checkpoints: walk.verified,
            signed_through_seq: walk.signed_through,
        },
        Err((seq, problem)) => VerifyReport::bad(checked, seq, problem, walk.verified),
    };
    Pass {
        report,
        verified_to: walk.position(),
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::audit::{AuditRecord, Direction, sign_checkpoint};
    use crate::store::NewAuditRow;
    use crate::store::SqliteStore;

    struct Log {
        _dir: tempfile::TempDir,
        url: String,
        store: SqliteStore,
        key: SigningKey,
    }

    impl Log {
        async fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("audit.db").display());
            let store = SqliteStore::open(&url).await.expect("open");
            Self {
                _dir: dir,
                url,
                store,
                key: SigningKey::from_bytes(&[7; 32]),
            }
        }

        /// Appends `n` rows, signing a checkpoint every fifth row.
        async fn append(&self, n: usize) {
            let rows = (0..n)
                .map(|i| NewAuditRow {
                    at_ms: 1_000 + i as i64,
                    record: AuditRecord {
                        direction: Some(Direction::Outbound),
                        action: "inquiry.send".into(),
                        agency: Some(format!("bank-{}", i % 3)),
                        status: Some("sent".into()),
                        body: Some(format!("<CXQQ>{i}</CXQQ>").into()),
                        ..AuditRecord::default()
                    },
                })
                .collect();
            for row in self.store.append_audit(rows).await.expect("append") {
                if row.seq % 5 == 0 {
                    let c = sign_checkpoint(&self.key, row.seq, &row.hash, row.at_ms);
                    self.store.add_checkpoint(&c).await.expect("checkpoint");
                }
            }
        }

        /// An edit behind the gateway's back.
        async fn tamper(&self, seq: i64) {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("pool");
            let changed = sqlx::query("UPDATE audit_events SET status = 'tampered' WHERE seq = ?")
                .bind(seq)
                .execute(&pool)
                .await
                .expect("update")
                .rows_affected();
            assert_eq!(changed, 1);
            pool.close().await;
        }

        fn public(&self) -> VerifyingKey {
            self.key.verifying_key()
        }

        async fn full(&self) -> Pass {
            verify_pass(&self.store, Some(&self.public()))
                .await
                .expect("verify")
        }

        async fn quick(&self, after: &Watermark) -> Pass {
            verify_after(&self.store, Some(&self.public()), after)
                .await
                .expect("verify")
        }
    }

    #[tokio::test]
    async fn the_quick_check_goes_on_from_the_watermark() {
        let log = Log::new().await;
        log.append(12).await;
        let first = log.full().await;
        assert!(first.report.ok, "{:?}", first.report);
        assert_eq!(first.report.checked, 12);
        assert_eq!(first.verified_to.seq, 12);
        assert_eq!(first.report.checkpoints, 2);

        log.append(6).await;
        let quick = log.quick(&first.verified_to).await;
        assert!(quick.report.ok, "{:?}", quick.report);
        assert_eq!(quick.report.checked, 18);
        assert_eq!(quick.report.checkpoints, 3, "two re-checked, one new");
        assert_eq!(quick.report.signed_through_seq, Some(15));
        assert_eq!(quick.verified_to, log.full().await.verified_to);
    }

    #[tokio::test]
    async fn a_row_edited_after_the_watermark_is_found() {
        let log = Log::new().await;
        log.append(12).await;
        let first = log.full().await;
        log.append(6).await;
        log.tamper(17).await;
        let quick = log.quick(&first.verified_to).await;
        assert!(!quick.report.ok);
        assert_eq!(quick.report.first_bad_seq, Some(17));
        let problem = quick.report.problem.unwrap_or_default();
        assert!(problem.contains("does not match its hash"), "{problem}");
        // The watermark stops before the trouble, and finds it again.
        assert_eq!(quick.verified_to.seq, 16);
        let again = log.quick(&quick.verified_to).await;
        assert_eq!(again.report.first_bad_seq, Some(17));
    }

    #[tokio::test]
    async fn an_edited_checkpointed_row_is_found() {
        let log = Log::new().await;
        log.append(12).await;
        let first = log.full().await;
        log.tamper(5).await;
        let quick = log.quick(&first.verified_to).await;
        assert!(!quick.report.ok);
        assert_eq!(quick.report.first_bad_seq, Some(5));
        assert_eq!(quick.verified_to, first.verified_to, "not past trouble");
    }

    #[tokio::test]
    async fn an_edit_between_checkpoints_before_the_watermark_is_found_by_the_whole_pass_only() {
        let log = Log::new().await;
        log.append(12).await;
        let first = log.full().await;
        log.tamper(3).await;
        let quick = log.quick(&first.verified_to).await;
        assert!(quick.report.ok, "the quick check does not read row 3");
        let full = log.full().await;
        assert!(!full.report.ok);
        assert_eq!(full.report.first_bad_seq, Some(3));
        assert_eq!(full.report.checked, 2);
        assert_eq!(full.verified_to.seq, 2);
        // From there on, the quick check finds it too.
        let after = log.quick(&full.verified_to).await;
        assert_eq!(after.report.first_bad_seq, Some(3));
    }

    #[tokio::test]
    async fn a_deleted_checkpointed_row_is_found() {
        let log = Log::new().await;
        log.append(12).await;
        let first = log.full().await;
        let pool = sqlx::SqlitePool::connect(&log.url).await.expect("pool");
        sqlx::query("DELETE FROM audit_events WHERE seq = 10")
            .execute(&pool)
            .await
            .expect("delete");
        pool.close().await;
        let quick = log.quick(&first.verified_to).await;
        assert_eq!(quick.report.first_bad_seq, Some(10));
        let problem = quick.report.problem.unwrap_or_default();
        assert!(problem.contains("missing"), "{problem}");
    }

    #[tokio::test]
    async fn rows_deleted_after_the_watermark_row_are_found() {
        let log = Log::new().await;
        log.append(12).await;
        let first = log.full().await;
        let pool = sqlx::SqlitePool::connect(&log.url).await.expect("pool");
        sqlx::query("DELETE FROM audit_events WHERE seq >= 11")
            .execute(&pool)
            .await
            .expect("delete");
        pool.close().await;
        let quick = log.quick(&first.verified_to).await;
        assert_eq!(quick.report.first_bad_seq, Some(12));
        let problem = quick.report.problem.unwrap_or_default();
        assert!(problem.contains("missing"), "{problem}");
    }
}
