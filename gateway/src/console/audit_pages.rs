//! The auditor's pages: the log searched with the API's filters (and
//! exported as the API's CSV), one row with its place in the chain and
//! its message body, the row's raw bytes, and the chain's state.
//!
//! Each reuses what the API does (`api::audit`'s filter and CSV,
//! `verify::verify`) and is recorded as the API records a read.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::body_text::{self, BodyText};
use super::{Layout, PageError, Signed, record_view};
use crate::api::audit::{DIRECTIONS, EventParams, audit_filter, csv_rows, next_cursor};
use crate::audit::{AuditFilter, GENESIS_HASH, StoredAuditEvent, row_hash};
use crate::auth::Role;
use crate::inquiry::timestamp;
use crate::state::AppState;
use crate::store::Checkpoint;

/// Rows an export reads at a time.
const EXPORT_PAGE: i64 = 1_000;

/// China Standard Time, as the courts read times.
fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// A stored time as a person in China reads it.
pub fn local_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&china())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A time from the search form: RFC 3339 as the API takes it, or a
/// date and time without a zone (what `<input type="datetime-local">`
/// sends), or a date alone (its midnight), both read in UTC+8.
fn parse_form_time(field: &str, value: &str) -> Result<i64, PageError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    let naive = [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    naive
        .and_then(|n| china().from_local_datetime(&n).single())
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| {
            PageError::bad_request(format!(
                "“{field}”不是有效时间。 {field} must be a date and time such as 2024-05-01T08:00 \
                 (UTC+8) or an RFC 3339 timestamp."
            ))
            .with_field(field)
        })
}

/// An optional time field of a form: empty is none.
pub(super) fn form_time(field: &str, value: &str) -> Result<Option<i64>, PageError> {
    given(value).map(|v| parse_form_time(field, &v)).transpose()
}

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

fn given(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
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

/// A query string that could not be read, as a page.
fn query_error(rejection: QueryRejection) -> PageError {
    PageError::bad_request(format!(
        "查询参数无法读取。 The query could not be read: {}",
        rejection.body_text()
    ))
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

/// An option of a `<select>`.
#[derive(Debug)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn choices(current: &str, options: &[(&str, &str)]) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: current.trim() == *value,
        })
        .collect()
}

/// A time the form was given, as a `datetime-local` field shows it (in
/// UTC+8), so the field and the links carry the time the filter used.
fn form_value(ms: Option<i64>) -> String {
    ms.map(|ms| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .with_timezone(&china())
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    })
    .unwrap_or_default()
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

/// A row's number from the path: digits only, else no such row.
fn row_number(path: Result<Path<String>, PathRejection>) -> Result<i64, PageError> {
    let raw = path.map(|Path(p)| p).unwrap_or_default();
    raw.parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 1 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            PageError::not_found(format!(
                "日志中没有第 {raw} 行。 There is no row {raw:?} in the log."
            ))
        })
}

/// A check the row page shows: passed or not, and what it says.
#[derive(Debug)]
pub struct Check {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug)]
pub struct FieldView {
    pub label: &'static str,
    pub value: String,
    /// A link to the rows sharing this value.
    pub link: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/audit_row.html")]
struct RowPage {
    layout: Layout,
    seq: i64,
    fields: Vec<FieldView>,
    prev_hash: String,
    hash: String,
    body_sha256: String,
    checks: Vec<Check>,
    previous: Option<i64>,
    next: Option<i64>,
    checkpoint: Option<String>,
    body: Option<BodyText>,
    body_len: usize,
    body_purged: bool,
}

/// A value as one segment of a path.
fn path_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn filter_link(name: &str, value: &Option<String>) -> Option<String> {
    value.as_ref().filter(|v| !v.is_empty()).map(|v| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair(name, v);
        format!("/console/audit?{}", q.finish())
    })
}

/// `GET /console/audit/{seq}`: one row, its hashes and place in the chain
/// (checked here: its own hash, its link to the row before, its body's
/// digest), and its message body as text.
pub async fn row(
    State(state): State<AppState>,
    signed: Signed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    let seq = row_number(path).map_err(|e| e.for_user(user.clone()))?;
    record_view(&state, &signed, "console.audit.read", json!({"seq": seq})).await?;
    let fail = |e: crate::store::StoreError| PageError::from(e).for_user(user.clone());
    let e = state
        .store
        .audit_event(seq)
        .await
        .map_err(fail)?
        .ok_or_else(|| {
            PageError::not_found(format!(
                "日志中没有第 {seq} 行。 There is no row {seq} in the log."
            ))
            .for_user(user.clone())
        })?;
    let previous = if seq > 1 {
        state.store.audit_event(seq - 1).await.map_err(fail)?
    } else {
        None
    };
    let next = state
        .store
        .audit_event(seq + 1)
        .await
        .map_err(fail)?
        .map(|n| n.seq);
    let checkpoints = state.store.checkpoints().await.map_err(fail)?;

    let mut checks = vec![if row_hash(&e.prev_hash, &e) == e.hash {
        Check {
            ok: true,
            text: "本行内容与其哈希相符。 The row's content matches its hash.".into(),
        }
    } else {
        Check {
            ok: false,
            text: "本行内容与其哈希不符：内容已被改动。 The row does not match its hash: its content was changed.".into(),
        }
    }];
    checks.push(match (&previous, seq) {
        (_, 1) if e.prev_hash == GENESIS_HASH => Check {
            ok: true,
            text: "第一行，接在全零哈希之后。 The first row, chained to the hash of zeros.".into(),
        },
        (Some(p), _) if p.hash == e.prev_hash => Check {
            ok: true,
            text: format!("接在第 {} 行之后。 It follows row {} (that row's hash is its previous hash).", p.seq, p.seq),
        },
        (Some(p), _) => Check {
            ok: false,
            text: format!("与第 {} 行的哈希不衔接。 It does not follow row {}: its previous hash is not that row's hash.", p.seq, p.seq),
        },
        (None, _) => Check {
            ok: false,
            text: format!("第 {} 行缺失。 Row {} is missing.", seq - 1, seq - 1),
        },
    });
    let mut body = None;
    let mut body_len = 0;
    let body_purged = e.body.is_none() && e.body_sha256.is_some();
    if let Some(bytes) = &e.body {
        body_len = bytes.len();
        let digest = hex::encode(Sha256::digest(bytes));
        checks.push(if Some(&digest) == e.body_sha256.as_ref() {
            Check {
                ok: true,
                text: "报文与其摘要相符。 The body matches its digest.".into(),
            }
        } else {
            Check {
                ok: false,
                text: "报文与其摘要不符。 The body does not match its digest: it was changed."
                    .into(),
            }
        });
        let registry = state.agencies.current();
        let encoding = e
            .agency
            .as_deref()
            .and_then(|a| registry.get(a))
            .and_then(|link| link.config().encoding.clone());
        body = Some(body_text::decode(bytes, encoding.as_deref()));
    }
    let checkpoint = checkpoints.iter().find(|c| c.seq >= seq).map(|c| {
        format!(
            "第 {} 行的签名检查点（{}，密钥 {}…）覆盖本行。 Covered by the checkpoint signed at row {} ({} UTC+8, key {}…).",
            c.seq,
            local_time(c.at_ms),
            key_prefix(c),
            c.seq,
            local_time(c.at_ms),
            key_prefix(c),
        )
    });
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = vec![
        FieldView {
            label: "序号 Seq",
            value: e.seq.to_string(),
            link: None,
        },
        FieldView {
            label: "时间 At",
            value: format!("{} (UTC+8) · {}", local_time(e.at_ms), timestamp(e.at_ms)),
            link: None,
        },
        FieldView {
            label: "方向 Direction",
            value: e.direction.clone(),
            link: filter_link("direction", &Some(e.direction.clone())),
        },
        FieldView {
            label: "调用方 Caller",
            value: text(&e.caller),
            link: filter_link("caller", &e.caller),
        },
        FieldView {
            label: "执行人员 Officers",
            value: e.officers.join("; "),
            link: None,
        },
        FieldView {
            label: "案号 Case number",
            value: text(&e.case_number),
            link: filter_link("case_number", &e.case_number),
        },
        FieldView {
            label: "当事人 Subject",
            value: text(&e.subject),
            link: filter_link("subject", &e.subject),
        },
        FieldView {
            label: "机构 Agency",
            value: text(&e.agency),
            link: filter_link("agency", &e.agency),
        },
        FieldView {
            label: "动作 Action",
            value: e.action.clone(),
            link: filter_link("action", &Some(e.action.clone())),
        },
        FieldView {
            label: "查询/指令 Inquiry, order or plan",
            value: text(&e.inquiry_id),
            link: e
                .inquiry_id
                .as_ref()
                .filter(|id| !id.is_empty())
                .map(|id| format!("/console/audit/timeline/{}", path_segment(id))),
        },
        FieldView {
            label: "请求单号 Request number",
            value: text(&e.request_number),
            link: None,
        },
        FieldView {
            label: "状态 Status",
            value: text(&e.status),
            link: None,
        },
        FieldView {
            label: "耗时 Latency",
            value: e.latency_ms.map(|l| format!("{l} ms")).unwrap_or_default(),
            link: None,
        },
    ];
    Ok(RowPage {
        layout: Layout::new(format!("第 {seq} 行 Row {seq}"), "audit", Some(user)),
        seq,
        fields,
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
        body_sha256: text(&e.body_sha256),
        checks,
        previous: previous.map(|p| p.seq).or((seq > 1).then_some(seq - 1)),
        next,
        checkpoint,
        body,
        body_len,
        body_purged,
    }
    .into_response())
}

fn key_prefix(c: &Checkpoint) -> &str {
    c.key_id.get(..12).unwrap_or(&c.key_id)
}

/// `GET /console/audit/{seq}/raw`: the row's message body, the bytes as
/// stored.
pub async fn raw(
    State(state): State<AppState>,
    signed: Signed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    let seq = row_number(path).map_err(|e| e.for_user(user.clone()))?;
    record_view(&state, &signed, "console.audit.raw", json!({"seq": seq})).await?;
    let e = state
        .store
        .audit_event(seq)
        .await
        .map_err(|e| PageError::from(e).for_user(user.clone()))?
        .ok_or_else(|| {
            PageError::not_found(format!(
                "日志中没有第 {seq} 行。 There is no row {seq} in the log."
            ))
            .for_user(user.clone())
        })?;
    let Some(body) = e.body else {
        let why = if e.body_sha256.is_some() {
            "本行报文已按保留期限清除，摘要仍在链中。 This row's body was purged at the end of its retention; its digest stays in the chain."
        } else {
            "本行没有报文。 This row has no body."
        };
        return Err(PageError::not_found(why).for_user(user));
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"audit-row-{seq}.bin\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[derive(Template, WebTemplate)]
#[template(path = "console/audit_chain.html")]
struct ChainPage {
    layout: Layout,
    ok: bool,
    checked: i64,
    first_bad_seq: Option<i64>,
    problem: Option<String>,
    checkpoints: usize,
    signed_through_seq: Option<i64>,
    last_checkpoint: Option<CheckpointView>,
    verified_at: String,
}

#[derive(Debug)]
pub struct CheckpointView {
    pub seq: i64,
    pub at: String,
    pub key: String,
}

/// `GET /console/audit/chain`: the whole chain verified now (as
/// `gateway audit verify` and `GET /v1/audit/verify` do): up to which row
/// it holds, the last signed checkpoint, or the first bad row and what is
/// wrong with it.
pub async fn chain(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    record_view(&state, &signed, "console.audit.verify", json!({})).await?;
    let key = state.config.audit.verifying_key().map_err(|e| {
        tracing::error!(error = %e, "audit verify key unreadable");
        PageError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "无法读取审计验证密钥。 The audit verification key cannot be read.",
        )
        .for_user(user.clone())
    })?;
    let fail = |e: crate::store::StoreError| PageError::from(e).for_user(user.clone());
    let report = crate::verify::verify(&*state.store, key.as_ref())
        .await
        .map_err(fail)?;
    let last_checkpoint = state
        .store
        .checkpoints()
        .await
        .map_err(fail)?
        .last()
        .map(|c| CheckpointView {
            seq: c.seq,
            at: local_time(c.at_ms),
            key: key_prefix(c).to_owned(),
        });
    Ok(ChainPage {
        layout: Layout::new("哈希链 Chain", "chain", Some(user)),
        ok: report.ok,
        checked: report.checked,
        first_bad_seq: report.first_bad_seq,
        problem: report.problem,
        checkpoints: report.checkpoints,
        signed_through_seq: report.signed_through_seq,
        last_checkpoint,
        verified_at: local_time(Utc::now().timestamp_millis()),
    }
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_read_in_china_standard_time() {
        let at = |v| parse_form_time("from", v).ok();
        // 2024-05-01 08:00 in UTC+8 is midnight UTC.
        let midnight_utc = 1_714_521_600_000;
        assert_eq!(at("2024-05-01T08:00"), Some(midnight_utc));
        assert_eq!(at("2024-05-01 08:00:00"), Some(midnight_utc));
        assert_eq!(at("2024-05-01T00:00:00Z"), Some(midnight_utc));
        assert_eq!(at("2024-05-01"), Some(midnight_utc - 8 * 3_600_000));
        assert_eq!(at("yesterday"), None);
        assert_eq!(at("2024-13-01"), None);
        assert_eq!(local_time(midnight_utc), "2024-05-01 08:00:00");
    }

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
