//! The administrators' pages: every agency's live state, and the agency
//! set's version with the last reload and a button that reloads.
//!
//! Both read what `GET /v1/admin/agencies` answers
//! (`api::admin::agency_page`), so the console and the API never tell two
//! stories; the Reload button runs what `POST /v1/admin/reload` runs
//! (`reload::reload`), which records its outcome (`config.reload`) as the
//! API's call does. The console adds a row of its own for the press
//! (`console.admin.reload`, with the session), as for every page it shows.
//!
//! The agencies' table refreshes itself every few seconds where htmx runs
//! (a fragment, `/console/admin/agencies/live`); without JavaScript the
//! page is whole and a reload shows the figures of that moment.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::forms::{filter_link, local_time};
use super::sign_in::{form_error, same_origin};
use super::{Layout, PageError, Signed, record_view};
use crate::api::admin::{AgencyPage, AgencyState, ConfigState, agency_page};
use crate::auth::Role;
use crate::reload::{self, LastReload, ReloadError};
use crate::state::AppState;

/// How often the agencies' table asks for fresh figures, in seconds
/// (htmx's `every`): about as often as a breaker's state is worth
/// watching, rarely enough to keep the log's page views few.
pub const REFRESH_SECS: u32 = 5;

impl Layout {
    /// Whether the navigation shows the administrators' pages.
    pub fn admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Admin)
    }
}

/// A time the API gives (RFC 3339) as a person in China reads it; the
/// text itself if it is not one.
fn local(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| local_time(t.timestamp_millis()))
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// Milliseconds as a person reads a latency: `12.3 ms`, `—` for none.
fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.1} ms"))
}

/// The link to the auditor's search for one agency's rows, for a viewer
/// who may open it (an auditor); none for anyone else: the console links
/// only to pages the role can open.
fn audit_link(viewer: Role, agency: &str) -> Option<String> {
    (viewer == Role::Auditor)
        .then(|| filter_link("agency", &Some(agency.to_owned())))
        .flatten()
}

/// Errors of one kind, as the API names the kind.
#[derive(Debug)]
pub struct ErrorLine {
    pub kind: String,
    pub count: u64,
}

/// The kinds with errors, named as the API names them (read from its own
/// JSON, so a kind it comes to count shows without a change here).
fn errors(counts: &impl serde::Serialize) -> Vec<ErrorLine> {
    match serde_json::to_value(counts) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(kind, n)| {
                n.as_u64()
                    .filter(|n| *n > 0)
                    .map(|count| ErrorLine { kind, count })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One agency as its row shows it.
#[derive(Debug)]
pub struct AgencyRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub asset_kind: String,
    pub dialect: String,
    pub enabled: bool,
    /// `closed`, `open`, `half-open`: the row's and the label's class.
    pub breaker: &'static str,
    pub breaker_label: &'static str,
    pub breaker_since: String,
    pub probe_in_ms: Option<u64>,
    pub rate_limit: String,
    pub rate_now: String,
    pub sent_last_minute: u64,
    pub sent_since_start: u64,
    pub in_flight: i64,
    pub max_concurrency: String,
    pub timeout_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    pub window_secs: u64,
    pub samples: u64,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    pub max: String,
    pub errors_recent: Vec<ErrorLine>,
    pub errors_since_start: Vec<ErrorLine>,
    pub audit_link: Option<String>,
}

impl AgencyRow {
    fn of(a: &AgencyState, viewer: Role) -> Self {
        let (breaker, breaker_label) = match a.breaker.state.as_str() {
            "open" => ("open", "断开 open"),
            "half_open" => ("half-open", "半开 half-open"),
            "closed" => ("closed", "闭合 closed"),
            _ => ("unknown", "未知 unknown"),
        };
        let t = &a.traffic;
        Self {
            id: a.id.clone(),
            name: a.name.clone(),
            kind: a.kind.clone(),
            asset_kind: a.asset_kind.clone(),
            dialect: a.dialect.clone(),
            enabled: a.enabled,
            breaker,
            breaker_label,
            breaker_since: local(&a.breaker.since),
            probe_in_ms: a.breaker.probe_in_ms,
            rate_limit: a
                .limits
                .rate_per_second
                .map_or_else(|| "—".to_owned(), |r| format!("{r}/s")),
            rate_now: format!("{:.2}/s", t.rate_per_second),
            sent_last_minute: t.sent_last_minute,
            sent_since_start: t.sent_since_start,
            in_flight: t.in_flight,
            max_concurrency: a
                .limits
                .max_concurrency
                .map_or_else(|| "—".to_owned(), |c| c.to_string()),
            timeout_ms: a.limits.timeout_ms,
            breaker_failures: a.limits.breaker_failures,
            breaker_cooldown_ms: a.limits.breaker_cooldown_ms,
            window_secs: t.window_secs,
            samples: t.latency.samples,
            p50: ms(t.latency.p50_ms),
            p95: ms(t.latency.p95_ms),
            p99: ms(t.latency.p99_ms),
            max: ms(t.latency.max_ms),
            errors_recent: errors(&t.errors_recent),
            errors_since_start: errors(&t.errors_since_start),
            audit_link: audit_link(viewer, &a.id),
        }
    }
}

/// The agencies' table: the page's part that refreshes.
#[derive(Debug)]
pub struct AgenciesTable {
    rows: Vec<AgencyRow>,
    open: usize,
    read_at: String,
    version: String,
    refresh_secs: u32,
}

impl AgenciesTable {
    fn of(page: &AgencyPage, viewer: Role) -> Self {
        let rows: Vec<AgencyRow> = page
            .agencies
            .iter()
            .map(|a| AgencyRow::of(a, viewer))
            .collect();
        Self {
            open: rows.iter().filter(|r| r.breaker != "closed").count(),
            rows,
            read_at: local(&page.at),
            version: page.config.version.clone(),
            refresh_secs: REFRESH_SECS,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console/admin_agencies.html")]
struct AgenciesPage {
    layout: Layout,
    table: AgenciesTable,
}

/// The table alone, as htmx asks for it.
#[derive(Template, WebTemplate)]
#[template(path = "console/admin_agencies_table.html")]
struct AgenciesFragment {
    table: AgenciesTable,
}

/// `GET /console/admin/agencies`: every agency's live state.
pub async fn agencies(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<Response, PageError> {
    signed.require(Role::Admin)?;
    record_view(&state, &signed, "console.admin.agencies", json!({})).await?;
    let page = agency_page(&state);
    Ok(AgenciesPage {
        layout: Layout::new("机构 Agencies", "agencies", Some(signed.view())),
        table: AgenciesTable::of(&page, signed.caller.role),
    }
    .into_response())
}

/// `GET /console/admin/agencies/live`: the agencies' table alone, as the
/// page's htmx asks for it every few seconds. Each look is a read of the
/// same figures, recorded as the page is (`"refresh": true`).
pub async fn agencies_live(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<Response, PageError> {
    signed.require(Role::Admin)?;
    record_view(
        &state,
        &signed,
        "console.admin.agencies",
        json!({"refresh": true}),
    )
    .await?;
    let page = agency_page(&state);
    Ok(AgenciesFragment {
        table: AgenciesTable::of(&page, signed.caller.role),
    }
    .into_response())
}

/// A file's error in a refused reload.
#[derive(Debug)]
pub struct FileError {
    pub file: String,
    pub line: Option<u64>,
    pub message: String,
}

/// The last reload as the configuration page shows it.
#[derive(Debug)]
pub struct ReloadView {
    pub at: String,
    pub by: String,
    /// `ok`, `invalid_configuration`, `failed`.
    pub result: String,
    pub ok: bool,
    pub version: Option<String>,
    pub previous_version: Option<String>,
    pub error_count: usize,
    pub errors: Vec<FileError>,
    pub error: Option<String>,
}

impl ReloadView {
    fn of(last: &LastReload) -> Self {
        let errors: Vec<FileError> = last
            .errors
            .as_ref()
            .and_then(|e| e.as_array())
            .map(|list| {
                list.iter()
                    .map(|e| FileError {
                        file: e["file"].as_str().unwrap_or_default().to_owned(),
                        line: e["line"].as_u64(),
                        message: e["message"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            at: local(&last.at),
            by: last.by.clone(),
            result: last.result.clone(),
            ok: last.result == "ok",
            version: last.version.clone(),
            previous_version: last.previous_version.clone(),
            error_count: last.error_count.unwrap_or(errors.len()),
            errors,
            error: last.error.clone(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console/admin_config.html")]
struct ConfigPage {
    layout: Layout,
    csrf: String,
    version: String,
    loaded_at: String,
    retired_versions: Vec<String>,
    agencies: usize,
    dialects: usize,
    last_reload: Option<ReloadView>,
}

/// `GET /console/admin/config`: the agency set's version, the last
/// reload's outcome, and the Reload button.
pub async fn config(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    signed.require(Role::Admin)?;
    record_view(&state, &signed, "console.admin.config", json!({})).await?;
    let AgencyPage { config, .. } = agency_page(&state);
    let ConfigState {
        version,
        loaded_at,
        retired_versions,
        agencies,
        dialects,
        last_reload,
    } = config;
    let user = signed.view();
    Ok(ConfigPage {
        csrf: user.csrf.clone(),
        layout: Layout::new("配置 Configuration", "config", Some(user)),
        version,
        loaded_at: local(&loaded_at),
        retired_versions,
        agencies,
        dialects,
        last_reload: last_reload.as_ref().map(ReloadView::of),
    }
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ReloadForm {
    /// Missing is refused as a wrong token is (403), not as a form that
    /// could not be read.
    #[serde(default)]
    csrf: String,
}

/// `POST /console/admin/reload`: reloads the agency and dialect files as
/// `POST /v1/admin/reload` does, then shows the configuration page with
/// the outcome (a redirect, so that reloading that page does not reload
/// the files again).
///
/// Refused (403, recorded as `auth.refused`) for another role, from
/// another site, or without the session's CSRF token. The press is
/// recorded first (`console.admin.reload`): if the log cannot take it,
/// nothing is reloaded.
pub async fn reload(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<ReloadForm>, FormRejection>,
) -> Result<Response, PageError> {
    signed.require(Role::Admin)?;
    let Form(form) = form.map_err(|r| form_error(r).for_user(signed.view()))?;
    let refuse = |why: String| {
        PageError::forbidden(
            signed.view(),
            format!("重新加载被拒绝：{why}。 Reload refused: {why}."),
        )
    };
    same_origin(&headers, &uri).map_err(refuse)?;
    let matches: bool = form
        .csrf
        .as_bytes()
        .ct_eq(signed.session.csrf_token.as_bytes())
        .into();
    if !matches {
        return Err(refuse(
            "the form does not carry this session's token (CSRF)".into(),
        ));
    }
    record_view(&state, &signed, "console.admin.reload", json!({})).await?;
    match reload::reload(&state, &signed.caller.name).await {
        // Either way the outcome is the last reload's, which the
        // configuration page shows.
        Ok(_) | Err(ReloadError::Invalid(_)) => {}
        Err(ReloadError::Audit(e)) => return Err(PageError::from(e).for_user(signed.view())),
        Err(ReloadError::Internal(e)) => {
            tracing::error!(error = %e, "reload failed");
        }
    }
    Ok(Redirect::to("/console/admin/config").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_viewer_who_may_open_the_search_gets_a_link_to_it() {
        assert_eq!(
            audit_link(Role::Auditor, "bank-a").as_deref(),
            Some("/console/audit?agency=bank-a")
        );
        assert_eq!(audit_link(Role::Admin, "bank-a"), None);
        assert_eq!(audit_link(Role::Enforcement, "bank-a"), None);
    }

    #[test]
    fn only_kinds_with_errors_are_listed_in_the_api_s_words() {
        let counts = crate::metrics::recent::ErrorCounts {
            http_5xx: 2,
            breaker_open: 1,
            ..Default::default()
        };
        let mut lines: Vec<(String, u64)> = errors(&counts)
            .into_iter()
            .map(|e| (e.kind, e.count))
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            vec![("breaker_open".into(), 1), ("http_5xx".into(), 2)]
        );
        assert_eq!(ms(Some(12.345)), "12.3 ms");
        assert_eq!(ms(None), "—");
        assert_eq!(local("2024-05-01T00:00:00.000Z"), "2024-05-01 08:00:00");
    }
}
