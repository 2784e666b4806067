//! One inquiry, order, freeze plan or batch as a timeline: every row of
//! the log that names it, in order, with the time each step took after the
//! first (the request accepted, each message to an agency, each reply,
//! poll or pushed result, the gateway's own decisions, the callbacks to
//! the caller).
//!
//! A freeze plan's timeline takes in the rows of its orders, each step
//! naming the order it belongs to. A batch's takes in the rows of its
//! subjects' inquiries, and shows what the gateway did for many subjects
//! at once as one step: a batch message to an agency is one row per
//! subject in it (so that "who asked about this subject" finds every
//! message), stored together with one shared body, and is shown as one
//! message "× N subjects". A batch of thousands of subjects is read in
//! slices of its lines until the timeline is full.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::forms::{filter_link, local_time};
use super::{Layout, PageError, Signed, record_view};
use crate::api::audit::{EventParams, audit_filter};
use crate::audit::{AuditFilter, StoredAuditEvent};
use crate::auth::Role;
use crate::state::AppState;
use crate::store::{BatchSlice, StoreError};

/// Steps a timeline shows; beyond, the search lists the rest.
const MAX_ROWS: usize = 2_000;
/// Rows read for one timeline at most: a batch's steps each stand for
/// many rows.
const MAX_READ: usize = 20_000;
/// Ids in one read (a plan's orders, a slice of a batch's lines).
const IDS_PER_READ: i64 = 500;
/// Rows per page of a read.
const PAGE: i64 = 1_000;

/// One step of the timeline: a row, or (in a batch's) consecutive rows
/// that are one message to or from an agency for several subjects.
#[derive(Debug)]
pub struct Step {
    pub seq: i64,
    pub at: String,
    /// Milliseconds after the first row, as `+1.234 s`.
    pub after: String,
    pub direction: String,
    pub action: String,
    pub agency: String,
    pub status: String,
    pub latency: String,
    /// The order (in a plan's timeline) or inquiry (in a batch's) the
    /// row belongs to, when it is not the page's own id; empty otherwise.
    pub of: String,
    /// How many rows the step stands for (subjects of a batch message).
    pub rows: usize,
}

impl Step {
    fn of(e: &StoredAuditEvent, first_ms: i64, id: &str) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let after = e.at_ms - first_ms;
        Self {
            seq: e.seq,
            at: local_time(e.at_ms),
            after: format!("+{}.{:03} s", after / 1000, after % 1000),
            direction: e.direction.clone(),
            action: e.action.clone(),
            agency: text(&e.agency),
            status: text(&e.status),
            latency: e.latency_ms.map(|l| format!("{l} ms")).unwrap_or_default(),
            of: e.inquiry_id.clone().filter(|i| i != id).unwrap_or_default(),
            rows: 1,
        }
    }
}

/// Whether two rows are one step of a batch's timeline: next to each
/// other in the log, for different subjects' inquiries, and the same
/// exchange: one message (direction, action, agency, status and body), or
/// the batch's acceptance of its subjects (each subject's own request
/// body, accepted in one transaction).
fn same_exchange(a: &StoredAuditEvent, b: &StoredAuditEvent) -> bool {
    b.seq == a.seq + 1
        && a.inquiry_id != b.inquiry_id
        && a.direction == b.direction
        && a.action == b.action
        && a.agency == b.agency
        && a.status == b.status
        && (a.body_sha256 == b.body_sha256 || a.direction == "inbound")
}

/// The steps of a timeline: a batch's exchanges folded into one step
/// each (the largest latency among their rows shown), every other row a
/// step of its own.
fn steps(events: &[StoredAuditEvent], id: &str, fold: bool) -> Vec<Step> {
    let Some(first) = events.first() else {
        return Vec::new();
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut latest: Option<(&StoredAuditEvent, Option<i64>)> = None;
    for e in events {
        if let (true, Some((prev, latency)), Some(step)) = (fold, latest, steps.last_mut())
            && same_exchange(prev, e)
        {
            step.rows += 1;
            let max = latency.max(e.latency_ms);
            step.latency = max.map(|l| format!("{l} ms")).unwrap_or_default();
            // A step of several subjects names none of them.
            step.of.clear();
            latest = Some((e, max));
            continue;
        }
        steps.push(Step::of(e, first.at_ms, id));
        latest = Some((e, e.latency_ms));
    }
    steps
}

/// One value of a column across the rows, or how many there are.
fn common(events: &[StoredAuditEvent], value: impl Fn(&StoredAuditEvent) -> String) -> String {
    let mut seen: Vec<String> = events
        .iter()
        .map(&value)
        .filter(|v| !v.is_empty())
        .collect();
    seen.sort();
    seen.dedup();
    match seen.len() {
        0 => String::new(),
        1 => seen.remove(0),
        n => format!("{n} 个不同 / {n} different"),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console/audit_timeline.html")]
struct TimelinePage {
    layout: Layout,
    id: String,
    /// What the timeline takes in besides the id's own rows, in words.
    scope: String,
    case_number: String,
    subject: String,
    caller: String,
    officers: String,
    rows_read: usize,
    steps: Vec<Step>,
    /// The search for the id's own rows, when the timeline stops short.
    more: Option<String>,
    search: String,
}

/// What a timeline reads: the rows naming any of these ids.
struct Rows {
    events: Vec<StoredAuditEvent>,
    /// Rows were left unread (the timeline is full).
    more: bool,
}

impl Rows {
    fn full(&self) -> bool {
        self.events.len() >= MAX_READ
    }

    /// Reads the rows naming any of `ids`, in the log's order, until the
    /// timeline holds as many as it reads.
    async fn read(&mut self, state: &AppState, ids: Vec<String>) -> Result<(), StoreError> {
        let mut filter = AuditFilter {
            inquiry_ids: ids,
            limit: PAGE,
            ..AuditFilter::default()
        };
        loop {
            let page = state.store.audit_events(&filter).await?;
            let whole = page.len() as i64 == filter.limit;
            filter.after_seq = page.last().map(|e| e.seq);
            self.events.extend(page);
            if self.full() {
                self.more |= whole || self.events.len() > MAX_READ;
                self.events.truncate(MAX_READ);
                return Ok(());
            }
            if !whole {
                return Ok(());
            }
        }
    }
}

/// The rows of `id` and of what it takes in, and what that is in words.
async fn read_rows(state: &AppState, id: &str) -> Result<(Rows, String), StoreError> {
    let mut rows = Rows {
        events: Vec::new(),
        more: false,
    };
    if id.starts_with("fpl_") {
        let orders = state.store.orders_of_plan(id).await?;
        let mut ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
        let scope = if ids.is_empty() {
            String::new()
        } else {
            format!("及其 {n} 个命令 / with its {n} order(s)", n = ids.len())
        };
        ids.insert(0, id.to_owned());
        for chunk in ids.chunks(IDS_PER_READ as usize) {
            if rows.full() {
                rows.more = true;
                break;
            }
            rows.read(state, chunk.to_vec()).await?;
        }
        rows.events.sort_by_key(|e| e.seq);
        return Ok((rows, scope));
    }
    if id.starts_with("bat_")
        && let Some(batch) = state.store.batch(id).await?
    {
        let mut ids = vec![id.to_owned()];
        let mut after = 0;
        let mut subjects = 0usize;
        while after < batch.last_line {
            if rows.full() {
                rows.more = true;
                break;
            }
            let until = after + IDS_PER_READ;
            let slice = state
                .store
                .batch_inquiries(id, BatchSlice::Lines { after, until })
                .await?;
            subjects += slice.len();
            ids.extend(slice.into_iter().map(|(inquiry, _)| inquiry.id));
            after = until;
            rows.read(state, std::mem::take(&mut ids)).await?;
        }
        if ids.len() == 1 {
            // A batch that accepted no subject: its own rows.
            rows.read(state, ids).await?;
        }
        rows.events.sort_by_key(|e| e.seq);
        let scope = format!(
            "及其 {subjects} 个当事人的查询 / with the inquiries of {subjects} of its {} subject(s)",
            batch.accepted
        );
        return Ok((rows, scope));
    }
    rows.read(state, vec![id.to_owned()]).await?;
    Ok((rows, String::new()))
}

/// `GET /console/audit/timeline/{id}`.
pub async fn timeline(
    State(state): State<AppState>,
    signed: Signed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    let id = path.map(|Path(p)| p).unwrap_or_default();
    // The id is checked as the search's inquiry filter checks it.
    audit_filter(EventParams {
        inquiry: Some(id.clone()),
        ..EventParams::default()
    })
    .map_err(|e| PageError::from(e).for_user(user.clone()))?;
    record_view(
        &state,
        &signed,
        "console.audit.timeline",
        json!({"inquiry": id}),
    )
    .await?;
    let (rows, scope) = read_rows(&state, &id)
        .await
        .map_err(|e| PageError::from(e).for_user(user.clone()))?;
    let events = rows.events;
    if events.is_empty() {
        return Err(PageError::not_found(format!(
            "日志中没有关于 {id} 的记录。 No row of the log names {id:?}."
        ))
        .for_user(user));
    }
    let mut steps = steps(&events, &id, id.starts_with("bat_"));
    let more = rows.more || steps.len() > MAX_ROWS;
    steps.truncate(MAX_ROWS);
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let search = filter_link("inquiry", &Some(id.clone())).unwrap_or_default();
    Ok(TimelinePage {
        layout: Layout::new(format!("时间线 Timeline {id}"), "audit", Some(user)),
        case_number: common(&events, |e| text(&e.case_number)),
        subject: common(&events, |e| text(&e.subject)),
        caller: common(&events, |e| text(&e.caller)),
        officers: common(&events, |e| e.officers.join("; ")),
        rows_read: events.len(),
        steps,
        more: more.then(|| search.clone()),
        search,
        scope,
        id,
    }
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, direction: &str, agency: &str, inquiry: &str, body: &str) -> StoredAuditEvent {
        StoredAuditEvent {
            seq,
            at_ms: 1_000 + seq / 10 * 10,
            direction: direction.into(),
            caller: Some("court".into()),
            officers: Vec::new(),
            case_number: None,
            subject: None,
            agency: Some(agency.into()).filter(|a: &String| !a.is_empty()),
            action: "inquiry.send".into(),
            inquiry_id: Some(inquiry.into()),
            request_number: None,
            status: Some("ok".into()),
            latency_ms: Some(seq),
            body_sha256: Some(body.into()),
            body: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_batch_message_for_many_subjects_is_one_step() {
        let events = vec![
            row(1, "inbound", "", "bat_1", "a"),
            // One message to the bank for three subjects, then its reply.
            row(2, "outbound", "bank", "inq_1", "m"),
            row(3, "outbound", "bank", "inq_2", "m"),
            row(4, "outbound", "bank", "inq_3", "m"),
            row(5, "reply", "bank", "inq_1", "r"),
            row(6, "reply", "bank", "inq_2", "r"),
            // Another message to the same bank: another step.
            row(7, "outbound", "bank", "inq_4", "n"),
            // Not next to it in the log: another step though the same.
            row(9, "outbound", "bank", "inq_5", "n"),
            // The same inquiry twice: two steps.
            row(10, "outbound", "bank", "inq_5", "n"),
        ];
        let folded = steps(&events, "bat_1", true);
        let shape: Vec<(i64, usize)> = folded.iter().map(|s| (s.seq, s.rows)).collect();
        assert_eq!(shape, [(1, 1), (2, 3), (5, 2), (7, 1), (9, 1), (10, 1)]);
        assert_eq!(
            folded[1].latency, "4 ms",
            "the slowest of the message's rows"
        );
        assert_eq!(folded[1].of, "", "a step of several subjects names none");
        assert_eq!(folded[3].of, "inq_4");
        assert_eq!(folded[0].of, "", "the batch's own row");
        // An inquiry's or a plan's timeline shows every row.
        assert_eq!(steps(&events, "bat_1", false).len(), events.len());
    }

    #[test]
    fn the_summary_says_when_rows_differ() {
        let mut a = row(1, "inbound", "", "x", "a");
        let mut b = row(2, "inbound", "", "x", "a");
        a.case_number = Some("(2024)甘0503执1号".into());
        b.case_number = Some("(2024)甘0503执2号".into());
        let events = [a, b];
        assert_eq!(
            common(&events, |e| e.case_number.clone().unwrap_or_default()),
            "2 个不同 / 2 different"
        );
        assert_eq!(
            common(&events, |e| e.caller.clone().unwrap_or_default()),
            "court"
        );
        assert_eq!(
            common(&events, |e| e.subject.clone().unwrap_or_default()),
            ""
        );
    }
}
