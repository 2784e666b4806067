//! Accepting a batch inquiry: the idempotency key's replay, the batch
//! checked against the current agency set, and the batch stored with every
//! accepted subject's inquiry, its tasks and its "accepted" audit row in
//! one journal entry. The dispatcher then claims the tasks and packs them
//! into each agency's batch messages.

use bytes::Bytes;

use crate::api::{accept, inbound};
use crate::audit::{AuditRecord, Direction};
use crate::auth::Caller;
use crate::batch::{self, ParsedBatch};
use crate::error::ApiError;
use crate::inquiry::{self, officer_labels};
use crate::order::body_digest;
use crate::services::orders::{Decided, conflict, detached};
use crate::state::AppState;
use crate::store::{Applied, BatchRecord, Change, Created, NewAuditRow, NewBatch, NewInquiry};

/// Accepts a batch sent under `key` (`raw`: its body as sent), or replays
/// what the key stored before. Runs to its end even when the client goes
/// away.
pub async fn accept_batch(
    state: AppState,
    caller: Caller,
    key: String,
    parsed: ParsedBatch,
    raw: Bytes,
) -> Result<Decided<BatchRecord>, ApiError> {
    detached(decide(state, caller, key, parsed, raw)).await
}

async fn decide(
    state: AppState,
    caller: Caller,
    key: String,
    parsed: ParsedBatch,
    raw: Bytes,
) -> Result<Decided<BatchRecord>, ApiError> {
    let digest = body_digest(&raw);
    if let Some(existing) = state.store.batch_by_key(&caller.name, &key).await? {
        return replay(&state, &caller, existing, &digest, raw).await;
    }
    let agencies = state.agencies.current();
    let checked = match batch::check(parsed, &agencies) {
        Ok(c) => c,
        Err(e) => {
            // Refused attempts are recorded too: misuse shows in failures.
            inbound(
                &state,
                &caller,
                "inquiry_batch.create",
                e.code,
                Some(raw.to_vec()),
                AuditRecord::default(),
            )
            .await?;
            return Err(e);
        }
    };
    let court = caller
        .court
        .clone()
        .ok_or_else(|| ApiError::forbidden("this caller has no court configured"))?;
    let id = format!("bat_{}", uuid::Uuid::now_v7().simple());
    let now = chrono::Utc::now().timestamp_millis();
    let deadline = now + state.config.inquiries.deadline_secs as i64 * 1000;
    let labels = officer_labels(&checked.officers);
    let mut inquiries = Vec::with_capacity(checked.accepted.len());
    let mut rows = Vec::with_capacity(checked.accepted.len());
    for (line, new) in &checked.accepted {
        let inquiry_id = format!("inq_{}", uuid::Uuid::now_v7().simple());
        let mut record = inquiry::new_record(
            &inquiry_id,
            &caller.name,
            &court,
            new,
            now,
            deadline,
            agencies.version(),
        );
        record.batch_id = Some(id.clone());
        record.batch_line = Some(*line);
        let tasks = new
            .agencies
            .iter()
            .map(|a| (a.clone(), inquiry::request_number(&inquiry_id, a)))
            .collect();
        // Each subject's own "accepted" row: the audit log answers "who
        // asked about this subject" for a batch's subjects as for single
        // inquiries (and the misuse questions count them).
        let body = serde_json::json!({ "batch": id, "line": line }).to_string();
        rows.push(NewAuditRow {
            at_ms: now,
            record: AuditRecord {
                direction: Some(Direction::Inbound),
                caller: Some(caller.name.clone()),
                action: "inquiry.create".to_owned(),
                status: Some("accepted".to_owned()),
                body: Some(body.into_bytes().into()),
                officers: labels.clone(),
                case_number: Some(new.case_number.as_str().to_owned()),
                subject: Some(new.subject.identifier().to_owned()),
                inquiry_id: Some(inquiry_id.clone()),
                ..AuditRecord::default()
            },
        });
        inquiries.push(NewInquiry {
            record,
            tasks,
            lease: None,
        });
    }
    let record = BatchRecord {
        id: id.clone(),
        caller: caller.name.clone(),
        idempotency_key: key,
        body_sha256: digest.clone(),
        court,
        officers: checked.officers,
        asset_kinds: checked.asset_kinds,
        lines: checked.lines,
        last_line: checked.last_line,
        accepted: checked.accepted.len() as i64,
        refused: checked.refused,
        created_at_ms: now,
    };
    let fields = AuditRecord {
        officers: labels,
        inquiry_id: Some(id.clone()),
        ..AuditRecord::default()
    };
    let subjects = inquiries.len();
    let applied = accept(
        &state,
        &caller,
        "inquiry_batch.create",
        Some(raw.to_vec()),
        fields,
        Change::Batch(Box::new(NewBatch {
            record,
            inquiries,
            rows,
        })),
    )
    .await?;
    drop(agencies);
    let Applied::Batch(created) = applied else {
        return Err(ApiError::internal(
            "the journal stored something else than the batch",
        ));
    };
    match *created {
        Created::New(stored) => {
            crate::metrics::global()
                .inquiries_accepted
                .inc_by(subjects as u64);
            tracing::info!(
                batch = %stored.id,
                subjects,
                refused = stored.refused.len(),
                "batch accepted"
            );
            state.dispatcher.wake();
            Ok(Decided::New(stored))
        }
        // Another request under the same key won meanwhile.
        Created::Existing(existing) => replay(&state, &caller, existing, &digest, raw).await,
    }
}

/// The batch a key stored before: the same body gets it back, another body
/// is a conflict. Either way the attempt is recorded.
async fn replay(
    state: &AppState,
    caller: &Caller,
    existing: BatchRecord,
    digest: &str,
    raw: Bytes,
) -> Result<Decided<BatchRecord>, ApiError> {
    let same = existing.body_sha256 == digest;
    let status = if same {
        "replayed"
    } else {
        "idempotency_conflict"
    };
    inbound(
        state,
        caller,
        "inquiry_batch.create",
        status,
        Some(raw.to_vec()),
        AuditRecord {
            inquiry_id: Some(existing.id.clone()),
            ..AuditRecord::default()
        },
    )
    .await?;
    if same {
        Ok(Decided::Replayed(existing))
    } else {
        Err(conflict())
    }
}
