//! Accepting an inquiry: its checks against the current agency set, the
//! acceptance row and the inquiry with its tasks stored in one journal
//! entry, and the tasks claimed and handed to this instance's dispatcher
//! when it has room (otherwise its next round claims them).

use bytes::Bytes;

use crate::api::{accept, inbound};
use crate::audit::AuditRecord;
use crate::auth::Caller;
use crate::dispatch::Completion;
use crate::error::ApiError;
use crate::inquiry::{self, InquiryBody, officer_labels};
use crate::state::AppState;
use crate::store::{Applied, Change, NewInquiry};

/// An inquiry accepted and stored.
pub struct AcceptedInquiry {
    pub id: String,
    completion: Option<Completion>,
}

impl AcceptedInquiry {
    /// Waits until the inquiry completes, or until `deadline`; true when
    /// it completed (false at once when nobody asked to wait).
    pub async fn until(&mut self, deadline: tokio::time::Instant) -> bool {
        match self.completion.as_mut() {
            Some(c) => c.until(deadline).await,
            None => false,
        }
    }
}

/// Accepts `body` (`raw`: as sent) from `caller`. A body the rules refuse
/// is recorded as refused and answered with the rule's error. `wait`: the
/// caller will wait for the completion (`AcceptedInquiry::until`), which is
/// then watched from before the inquiry is stored.
pub async fn accept_inquiry(
    state: &AppState,
    caller: &Caller,
    body: InquiryBody,
    raw: Bytes,
    wait: bool,
) -> Result<AcceptedInquiry, ApiError> {
    // The set the inquiry fans out to, held until it is stored with the
    // set's version: a reload meanwhile cannot drop it.
    let agencies = state.agencies.current();
    let new = match body.validate(&agencies) {
        Ok(new) => new,
        Err(broken) => {
            let e = ApiError::from(broken);
            // Refused attempts are recorded too: misuse shows in failures.
            inbound(
                state,
                caller,
                "inquiry.create",
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
    let id = format!("inq_{}", uuid::Uuid::now_v7().simple());
    let fields = AuditRecord {
        officers: officer_labels(&new.officers),
        case_number: Some(new.case_number.as_str().to_owned()),
        subject: Some(new.subject.identifier().to_owned()),
        inquiry_id: Some(id.clone()),
        ..AuditRecord::default()
    };
    let now = chrono::Utc::now().timestamp_millis();
    let deadline = now + state.config.inquiries.deadline_secs as i64 * 1000;
    let record = inquiry::new_record(
        &id,
        &caller.name,
        &court,
        &new,
        now,
        deadline,
        agencies.version(),
    );
    let tasks: Vec<(String, String)> = new
        .agencies
        .iter()
        .map(|a| (a.clone(), inquiry::request_number(&id, a)))
        .collect();
    let completion = wait.then(|| state.dispatcher.completion(&id));
    // This instance claims the tasks as it stores them and sends them at
    // once, when it has room; otherwise the dispatcher's next round
    // claims them.
    let offer = state.dispatcher.offer(tasks.len(), now);
    let applied = accept(
        state,
        caller,
        "inquiry.create",
        Some(raw.to_vec()),
        fields,
        Change::Inquiry(Box::new(NewInquiry {
            record,
            tasks,
            lease: offer.as_ref().map(|o| o.lease.clone()),
        })),
    )
    .await?;
    let Applied::Inquiry(stored) = applied else {
        return Err(ApiError::internal(
            "the journal stored something else than the inquiry",
        ));
    };
    let NewInquiry { record, tasks, .. } = *stored;
    crate::metrics::global().inquiries_accepted.inc();
    drop(agencies);
    tracing::info!(
        inquiry = %id,
        case = %new.case_number,
        subject = %new.subject.masked_identifier(),
        agencies = tasks.len(),
        "inquiry accepted"
    );
    state.dispatcher.hand_over(record, &tasks, offer);
    Ok(AcceptedInquiry { id, completion })
}
