//! Taking what an agency pushes (dialects with `interaction = "callback"`):
//! the message recorded before it is read, then each result stored for
//! the task awaiting it with its own row, and the inquiry completed, in one
//! journal entry; a result no task awaits (repeated, late) is ignored.

use bytes::Bytes;

use adapters::dialect::WireReply;

use crate::agencies::AgencyLink;
use crate::audit::{AuditRecord, Direction};
use crate::dispatch::{reply_failure, update_for};
use crate::error::ApiError;
use crate::metrics::recent::ErrorKind;
use crate::state::AppState;

/// The request numbers of a push: those taken, and those ignored.
pub struct Taken {
    pub accepted: Vec<String>,
    pub ignored: Vec<String>,
}

/// Takes the message `body` (`content_type` as declared) that `link`'s
/// agency pushed.
pub async fn take_push(
    state: &AppState,
    link: &AgencyLink,
    body: Bytes,
    content_type: &str,
) -> Result<Taken, ApiError> {
    let agency_id = &link.agency.config.id;
    let reply = WireReply {
        status: 200,
        content_type: Some(content_type),
        body: &body,
    };
    let record = |action: &str, status: String| AuditRecord {
        direction: Some(Direction::Callback),
        agency: Some(agency_id.clone()),
        action: action.to_owned(),
        status: Some(status),
        body: Some(body.clone()),
        ..AuditRecord::default()
    };
    // Recorded before it is read.
    state
        .audit
        .record(record("inquiry.callback", "received".into()))
        .await?;
    let outcomes = match link.agency.dialect.callback(reply) {
        Ok(o) => o,
        Err(e) => {
            link.runtime.recorder.error(ErrorKind::Malformed);
            state
                .audit
                .record(record("inquiry.callback", "bad_reply".into()))
                .await?;
            return Err(ApiError::bad_request("bad_callback", e.to_string()));
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let (mut accepted, mut ignored) = (Vec::new(), Vec::new());
    for item in outcomes {
        let Some(task) = state
            .store
            .awaiting_task(agency_id, &item.request_number)
            .await?
        else {
            ignored.push(item.request_number);
            continue;
        };
        let Some(inquiry) = state.store.inquiry(&task.inquiry_id).await? else {
            ignored.push(item.request_number);
            continue;
        };
        let status = match &item.outcome {
            Ok(o) => serde_json::to_value(o)
                .ok()
                .and_then(|v| v["outcome"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            Err(e) => reply_failure(e).status.as_str().to_owned(),
        };
        let latency = task.sent_at_ms.map(|s| now - s);
        let outcome = item.outcome.map_err(|e| reply_failure(&e));
        let update = update_for(&link.agency, outcome, task.sent_at_ms, latency, now);
        // The row, the result and (when it was the last) the inquiry's
        // completion, committed together.
        let taken = state
            .audit
            .take_pushed(
                AuditRecord {
                    direction: Some(Direction::Callback),
                    caller: Some(inquiry.caller.clone()),
                    case_number: Some(inquiry.case_number.clone()),
                    subject: Some(inquiry.subject.identifier().to_owned()),
                    agency: Some(agency_id.clone()),
                    action: "inquiry.callback_result".into(),
                    inquiry_id: Some(inquiry.id.clone()),
                    request_number: Some(item.request_number.clone()),
                    status: Some(status),
                    ..AuditRecord::default()
                },
                agency_id,
                &item.request_number,
                update,
            )
            .await?;
        if taken.stored {
            if taken.completed {
                state.dispatcher.completed(&inquiry.id);
            }
            accepted.push(item.request_number);
        } else {
            ignored.push(item.request_number);
        }
    }
    Ok(Taken { accepted, ignored })
}
