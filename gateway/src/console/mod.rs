//! The web console at `/console`: HTML pages for the people behind the
//! callers (auditors, enforcement officers, administrators: each role its
//! own pages),
//! rendered on the server with askama, made livelier by htmx where a
//! browser runs it and usable without it.
//!
//! People sign in by pasting a caller's bearer token and get a session
//! cookie (`session.rs`); each page checks the session's role. Every page
//! a signed-in person opens leaves an inbound audit row as an API read
//! does (`record_view`), and every refusal is recorded by the API's own
//! refusal layer. The console is not part of the API's contract (it is
//! not in `/openapi.json`), but it passes the same edge layers: body and
//! URI limits, request ids, tracing (paths only, never a query string,
//! which may hold identity numbers).
//!
//! Nothing a client sends may make a page answer 500: every input error
//! is a 4xx page that says what was wrong.

mod admin;
mod assets;
mod body_text;
mod cases;
mod chain;
mod error;
mod forms;
mod questions;
mod row;
mod search;
mod session;
mod sign_in;
mod timeline;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use serde_json::json;

use crate::audit::AuditRecord;
use crate::auth::Role;
use crate::state::AppState;

pub use cases::case_url;
pub use error::PageError;
pub use session::{SESSION_COOKIE, Signed};

/// Where the console lives.
pub const PREFIX: &str = "/console";

/// The console's routes, with the headers every page carries. Merged into
/// the API's router (`api::router`), under its edge layers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(|| async { Redirect::to(PREFIX) }))
        .route(
            "/console/sign-in",
            get(sign_in::sign_in_page).post(sign_in::sign_in),
        )
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/audit", get(search::search))
        .route("/console/audit/export.csv", get(search::export))
        .route(
            "/console/audit/chain",
            get(chain::chain).post(chain::verify_all),
        )
        .route("/console/audit/questions", get(questions::index))
        .route("/console/audit/questions/{question}", get(questions::ask))
        .route("/console/audit/timeline/{id}", get(timeline::timeline))
        .route("/console/audit/{seq}", get(row::row))
        .route("/console/audit/{seq}/raw", get(row::raw))
        .route("/console/cases", get(cases::open))
        .route("/console/cases/{case_number}", get(cases::case))
        .route("/console/cases/{case_number}/live", get(cases::live))
        .route("/console/admin/agencies", get(admin::agencies))
        .route("/console/admin/agencies/live", get(admin::agencies_live))
        .route("/console/admin/config", get(admin::config))
        .route("/console/admin/reload", post(admin::reload))
        .route("/console/static/{file}", get(assets::serve))
        .route("/console/{*rest}", any(not_found))
        .layer(axum::middleware::from_fn(page_headers))
}

/// What every page's layout needs: its title, who is signed in (and the
/// token the sign-out form carries), which section it belongs to.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub user: Option<UserView>,
    /// `home`, `audit`, `chain`, `questions`, `sign-in`: the navigation
    /// marks its link as the current page.
    pub section: &'static str,
    pub css: &'static str,
    pub htmx: &'static str,
}

impl Layout {
    pub fn new(title: impl Into<String>, section: &'static str, user: Option<UserView>) -> Self {
        Self {
            title: title.into(),
            user,
            section,
            css: assets::css_path(),
            htmx: assets::HTMX_PATH,
        }
    }

    /// Whether the navigation shows the auditor's pages.
    pub fn auditor(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Auditor)
    }

    /// `aria-current="page"` for the link of this page's section.
    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// The signed-in person as pages show them.
#[derive(Debug, Clone)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub csrf: String,
}

impl UserView {
    pub fn role_label(&self) -> &'static str {
        role_label(self.role)
    }
}

/// A role as the console names it.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Enforcement => "执行 enforcement",
        Role::Auditor => "审计 auditor",
        Role::Admin => "管理 admin",
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console/home.html")]
struct HomePage {
    layout: Layout,
}

/// `/console`: what the signed-in person may do here.
async fn home(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    record_view(&state, &signed, "console.home", json!({})).await?;
    Ok(HomePage {
        layout: Layout::new("控制台 Console", "home", Some(signed.view())),
    }
    .into_response())
}

/// Records a page view as the API records a read: an inbound row with the
/// caller, the page's path and what it was asked for (`details`), and the
/// session (the first hex digits of its id's digest, so the rows of one
/// session can be told apart). If the log cannot take the row, the page
/// is not shown (503). Returns the row's sequence number.
pub async fn record_view(
    state: &AppState,
    signed: &Signed,
    action: &str,
    details: serde_json::Value,
) -> Result<i64, PageError> {
    let body = json!({
        "path": signed.path,
        "session": signed.session_label(),
        "details": details,
    });
    crate::api::inbound(
        state,
        &signed.caller,
        action,
        "ok",
        Some(body.to_string().into_bytes()),
        AuditRecord::default(),
    )
    .await
    .map_err(|e| PageError::from(e).for_user(signed.view()))
}

/// Any other path under `/console`.
async fn not_found() -> PageError {
    PageError::not_found("控制台没有这个页面 / The console has no such page.")
}

/// The headers of every console answer: a content security policy that
/// admits only the console's own script and style, no framing, no
/// sniffing, no referrer (URLs carry filters, identity numbers among
/// them), and pages kept out of caches (assets set their own).
///
/// An answer to htmx (a search or a page of results swapped in place)
/// that is not the page it asked for becomes what a whole page would have
/// been: a redirect (to sign in, when the session has ended) is made by
/// the browser itself (`HX-Redirect`) rather than followed inside htmx's
/// request, and an error page replaces the page's `<main>` rather than
/// the results it was meant for.
async fn page_headers(request: Request, next: Next) -> Response {
    let htmx = request
        .headers()
        .get("hx-request")
        .is_some_and(|v| v.as_bytes() == b"true");
    let mut response = next.run(request).await;
    if htmx {
        for_htmx(&mut response);
    }
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn for_htmx(response: &mut Response) {
    let status = response.status();
    if status.is_redirection() {
        if let Some(location) = response.headers_mut().remove(header::LOCATION) {
            *response.status_mut() = StatusCode::OK;
            response.headers_mut().insert("hx-redirect", location);
        }
    } else if status.is_client_error() || status.is_server_error() {
        let headers = response.headers_mut();
        headers.insert("hx-retarget", HeaderValue::from_static("main"));
        headers.insert("hx-reselect", HeaderValue::from_static("main"));
        headers.insert("hx-reswap", HeaderValue::from_static("outerHTML"));
    }
}
