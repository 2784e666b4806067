//! One inquiry, order or freeze plan as a timeline: every row of the log
//! that names it, in order, with the time each step took after the first
//! (the request accepted, each message to an agency, each reply or pushed
//! result, the gateway's own decisions).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::forms::{filter_link, local_time};
use super::{Layout, PageError, Signed, record_view};
use crate::api::audit::{EventParams, audit_filter};
use crate::audit::StoredAuditEvent;
use crate::auth::Role;
use crate::state::AppState;

/// Rows a timeline shows; beyond, the search lists the rest.
const MAX_ROWS: usize = 2_000;

/// One step of the timeline.
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
}

impl Step {
    fn of(e: &StoredAuditEvent, first_ms: i64) -> Self {
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
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console/audit_timeline.html")]
struct TimelinePage {
    layout: Layout,
    id: String,
    case_number: String,
    subject: String,
    caller: String,
    officers: String,
    steps: Vec<Step>,
    /// The search for every row of it, when the timeline stops short.
    more: Option<String>,
    search: String,
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
    let mut filter = audit_filter(EventParams {
        inquiry: Some(id.clone()),
        limit: Some(1000),
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
    let mut events: Vec<StoredAuditEvent> = Vec::new();
    let mut more = false;
    loop {
        let page = state
            .store
            .audit_events(&filter)
            .await
            .map_err(|e| PageError::from(e).for_user(user.clone()))?;
        let full = page.len() as i64 == filter.limit;
        filter.after_seq = page.last().map(|e| e.seq);
        events.extend(page);
        if events.len() >= MAX_ROWS {
            more = full || events.len() > MAX_ROWS;
            events.truncate(MAX_ROWS);
            break;
        }
        if !full {
            break;
        }
    }
    let Some(first) = events.first() else {
        return Err(PageError::not_found(format!(
            "日志中没有关于 {id} 的记录。 No row of the log names {id:?}."
        ))
        .for_user(user));
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let search = filter_link("inquiry", &Some(id.clone())).unwrap_or_default();
    let first_ms = first.at_ms;
    Ok(TimelinePage {
        layout: Layout::new(format!("时间线 Timeline {id}"), "audit", Some(user)),
        case_number: text(&first.case_number),
        subject: text(&first.subject),
        caller: text(&first.caller),
        officers: first.officers.join("; "),
        steps: events.iter().map(|e| Step::of(e, first_ms)).collect(),
        more: more.then(|| search.clone()),
        search,
        id,
    }
    .into_response())
}
