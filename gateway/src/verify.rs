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

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;

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

/// Verifies the whole log. `key` verifies the checkpoints; without one,
/// checkpoints are reported unverified (and the report is not ok if there
/// are any).
pub async fn verify(
    store: &dyn AuditStore,
    key: Option<&VerifyingKey>,
) -> Result<VerifyReport, StoreError> {
    let checkpoints: BTreeMap<i64, Checkpoint> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.seq, c))
        .collect();
    let mut verified = 0usize;
    let mut signed_through = None;
    let mut checked = 0i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut expected = 1i64;
    loop {
        let rows = store.audit_chain(expected - 1, PAGE).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            if row.seq != expected {
                return Ok(VerifyReport::bad(
                    checked,
                    expected,
                    format!(
                        "row {expected} is missing: the log jumps from row {} to row {}",
                        expected - 1,
                        row.seq
                    ),
                    verified,
                ));
            }
            if row.prev_hash != prev_hash {
                return Ok(VerifyReport::bad(
                    checked,
                    row.seq,
                    format!(
                        "row {} does not follow row {}: it names another previous hash \
                         (rows deleted or reordered before it)",
                        row.seq,
                        row.seq - 1
                    ),
                    verified,
                ));
            }
            if row_hash(&row.prev_hash, row) != row.hash {
                return Ok(VerifyReport::bad(
                    checked,
                    row.seq,
                    format!(
                        "row {} does not match its hash: its content was changed, or it was \
                         moved from another position",
                        row.seq
                    ),
                    verified,
                ));
            }
            if let Some(c) = checkpoints.get(&row.seq) {
                if let Err(problem) = check_signature(c, key) {
                    return Ok(VerifyReport::bad(checked, row.seq, problem, verified));
                }
                if c.hash != row.hash {
                    return Ok(VerifyReport::bad(
                        checked,
                        row.seq,
                        format!(
                            "row {} differs from the checkpoint signed for it: the chain was \
                             rewritten at or before this row",
                            row.seq
                        ),
                        verified,
                    ));
                }
                verified += 1;
                signed_through = Some(row.seq);
            }
            prev_hash = row.hash.clone();
            checked += 1;
            expected += 1;
        }
    }
    // A checkpoint beyond the last row: rows at the end were deleted.
    if let Some((&seq, _)) = checkpoints.range(expected..).next() {
        return Ok(VerifyReport::bad(
            checked,
            expected,
            format!(
                "rows from {expected} on are missing: a checkpoint was signed for row {seq}, \
                 but the log ends at row {}",
                expected - 1
            ),
            verified,
        ));
    }
    Ok(VerifyReport {
        ok: true,
        checked,
        first_bad_seq: None,
        problem: None,
        checkpoints: verified,
        signed_through_seq: signed_through,
    })
}
