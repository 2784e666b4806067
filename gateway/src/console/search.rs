//! The log searched with the API's filters (`api::audit::audit_filter`),
//! page by page, and every filtered row exported as the API's CSV
//! (`api::audit::csv_rows`). Each search and export is recorded as the
//! API records a read.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::forms::{Choice, choices, form_time, form_value, given, local_time, query_error};
use super::{Layout, PageError, Signed, record_view};
use crate::api::audit::{DIRECTIONS, EventParams, audit_filter, csv_rows, next_cursor};
use crate::audit::{AuditFilter, StoredAuditEvent};
use crate::auth::Role;
use crate::state::AppState;

/// Rows an export reads at a time.
const EXPORT_PAGE: i64 = 1_000;
/// The search form's fields, as the browser sends them: empty fields are
/// no filter. The names are the API's (`GET /v1/audit/events`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    #[serde(default)]
    case_number: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    agency: String,
    #[serde(default)]
    caller: String,
    #[serde(default)]
    officer: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    inquiry: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    limit: String,
    #[serde(default)]
    cursor: String,
}

impl SearchQuery {
    /// The API's filter for these fields, checked as the API checks it.
    fn filter(&self) -> Result<AuditFilter, PageError> {
        let limit = given(&self.limit)
            .map(|l| {
                l.parse::<i64>().map_err(|_| {
                    PageError::bad_request("每页行数须为数字。 Rows per page must be a number.")
                        .with_field("limit")
                })
            })
            .transpose()?;
        let mut filter = audit_filter(EventParams {
            case_number: given(&self.case_number),
            subject: given(&self.subject),
            agency: given(&self.agency),
            caller: given(&self.caller),
            officer: given(&self.officer),
            action: given(&self.action),
            inquiry: given(&self.inquiry),
            direction: given(&self.direction),
            from: None,
            to: None,
            limit: Some(limit.unwrap_or(50)),
            cursor: given(&self.cursor),
        })?;
        filter.from_ms = form_time("from", &self.from)?;
        filter.to_ms = form_time("to", &self.to)?;
        Ok(filter)
    }

    /// The query string of these filters (without page or cursor, or with
    /// the cursor given), for links.
    fn query_string(&self, cursor: Option<&str>, with_limit: bool) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("case_number", &self.case_number),
            ("subject", &self.subject),
            ("agency", &self.agency),
            ("caller", &self.caller),
            ("officer", &self.officer),
            ("action", &self.action),
            ("inquiry", &self.inquiry),
            ("direction", &self.direction),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = given(value) {
                q.append_pair(name, &v);
            }
        }
        if with_limit && let Some(l) = given(&self.limit) {
            q.append_pair("limit", &l);
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        q.finish()
    }

    fn any_filter(&self) -> bool {
        !self.query_string(None, false).is_empty()
    }
}

/// One row as the search page lists it.
#[derive(Debug)]
pub struct RowView {
    pub seq: i64,
    pub at: String,
    pub direction: String,
    pub caller: String,
    pub officers: String,
    pub case_number: String,
    pub subject: String,
    pub agency: String,
    pub action: String,
    pub status: String,
}

impl RowView {
    fn of(e: &StoredAuditEvent) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            seq: e.seq,
            at: local_time(e.at_ms),
            direction: e.direction.clone(),
            caller: text(&e.caller),
            officers: e.officers.join("; "),
            case_number: text(&e.case_number),
            subject: text(&e.subject),
            agency: text(&e.agency),
            action: e.action.clone(),
            status: text(&e.status),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console/audit_search.html")]
struct SearchPage {
    layout: Layout,
    q: SearchQuery,
    direction_options: Vec<Choice>,
    limit_options: Vec<Choice>,
    rows: Vec<RowView>,
    /// The link to the next page, when this one was full.
    next_page: Option<String>,
    /// The link to the first page, when this is a later one.
    first_page: Option<String>,
    export: String,
    filtered: bool,
}

/// `GET /console/audit`: the log searched with the API's filters.
pub async fn search(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    let Query(mut q) = query.map_err(|r| query_error(r).for_user(user.clone()))?;
    let filter = q.filter().map_err(|e| e.for_user(user.clone()))?;
    q.from = form_value(filter.from_ms);
    q.to = form_value(filter.to_ms);
    record_view(
        &state,
        &signed,
        "console.audit.query",
        json!({"filter": format!("{filter:?}")}),
    )
    .await?;
    let events = state
        .store
        .audit_events(&filter)
        .await
        .map_err(|e| PageError::from(e).for_user(user.clone()))?;
    let next_page = next_cursor(&events, filter.limit)
        .map(|c| format!("/console/audit?{}", q.query_string(Some(&c), true)));
    let first_page =
        given(&q.cursor).map(|_| format!("/console/audit?{}", q.query_string(None, true)));
    let export = format!("/console/audit/export.csv?{}", q.query_string(None, false));
    Ok(SearchPage {
        layout: Layout::new("审计日志 Audit log", "audit", Some(user)),
        direction_options: choices(
            &q.direction,
            &[
                ("", "任意 any"),
                (DIRECTIONS[0], "inbound 调用"),
                (DIRECTIONS[1], "outbound 发出"),
                (DIRECTIONS[2], "reply 回复"),
                (DIRECTIONS[3], "callback 推送"),
                (DIRECTIONS[4], "internal 内部"),
            ],
        ),
        limit_options: choices(
            given(&q.limit).as_deref().unwrap_or("50"),
            &[
                ("20", "20"),
                ("50", "50"),
                ("100", "100"),
                ("500", "500"),
                ("1000", "1000"),
            ],
        ),
        rows: events.iter().map(RowView::of).collect(),
        next_page,
        first_page,
        export,
        filtered: q.any_filter(),
        q,
    }
    .into_response())
}

/// `GET /console/audit/export.csv`: every row the filters match (not one
/// page), as the API's CSV, up to the export's own row in the log: the
/// file is the log as it stood when it was asked for.
pub async fn export(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    let Query(q) = query.map_err(|r| query_error(r).for_user(user.clone()))?;
    let mut filter = q.filter().map_err(|e| e.for_user(user.clone()))?;
    filter.after_seq = None;
    filter.limit = EXPORT_PAGE;
    let own_row = record_view(
        &state,
        &signed,
        "console.audit.export",
        json!({"filter": format!("{filter:?}")}),
    )
    .await?;
    filter.before_seq = Some(own_row);
    let store = state.store.clone();
    // Page after page, each written as it is read: memory stays one page
    // whatever the export's size. A store failure midway ends the body
    // short (the browser reports the download failed), never a file
    // that looks whole.
    let pages = futures::stream::unfold(Some((filter, true)), move |next| {
        let store = store.clone();
        async move {
            let (mut filter, first) = next?;
            let events = match store.audit_events(&filter).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, "console export failed midway");
                    return Some((Err(std::io::Error::other("the store failed")), None));
                }
            };
            if events.is_empty() && !first {
                return None;
            }
            let chunk = match csv_rows(&events, None, first) {
                Ok(bytes) => Bytes::from(bytes),
                Err(e) => return Some((Err(std::io::Error::other(e.message)), None)),
            };
            let more = events.len() as i64 == filter.limit;
            filter.after_seq = events.last().map(|e| e.seq);
            Some((Ok(chunk), more.then_some((filter, false))))
        }
    });
    let mut response = Body::from_stream(pages).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"audit-log-until-{own_row}.csv\""
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_no_filter_and_bad_ones_are_named() {
        let q = SearchQuery {
            subject: " 36042619910101007x ".into(),
            direction: String::new(),
            ..SearchQuery::default()
        };
        let f = q.filter().expect("a filter");
        assert_eq!(f.subject.as_deref(), Some("36042619910101007X"));
        assert_eq!(f.direction, None);
        assert_eq!(f.limit, 50);
        let bad = SearchQuery {
            direction: "sideways".into(),
            ..SearchQuery::default()
        };
        assert_eq!(
            bad.filter().err().as_ref().and_then(|e| e.field()),
            Some("direction")
        );
        let bad = SearchQuery {
            limit: "lots".into(),
            ..SearchQuery::default()
        };
        assert_eq!(
            bad.filter().err().as_ref().and_then(|e| e.field()),
            Some("limit")
        );
        let bad = SearchQuery {
            limit: "5000".into(),
            ..SearchQuery::default()
        };
        assert_eq!(bad.filter().err().map(|e| e.status().as_u16()), Some(400));
        let bad = SearchQuery {
            cursor: "x".into(),
            ..SearchQuery::default()
        };
        assert_eq!(
            bad.filter().err().as_ref().and_then(|e| e.field()),
            Some("cursor")
        );
    }

    #[test]
    fn links_keep_the_filters_and_leave_out_empty_ones() {
        let q = SearchQuery {
            case_number: "(2024)甘0503执1234号".into(),
            limit: "20".into(),
            ..SearchQuery::default()
        };
        assert_eq!(
            q.query_string(Some("41"), true),
            "case_number=%282024%29%E7%94%980503%E6%89%A71234%E5%8F%B7&limit=20&cursor=41"
        );
        assert!(q.any_filter());
        assert!(!SearchQuery::default().any_filter());
    }
}
