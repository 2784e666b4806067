//! One row of the log: its fields, its hashes and place in the chain
//! (checked on the spot), its message body as text, and its raw bytes.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::body_text::{self, BodyText};
use super::forms::{filter_link, local_time, path_segment};
use super::{Layout, PageError, Signed, record_view};
use crate::audit::{GENESIS_HASH, row_hash};
use crate::auth::Role;
use crate::inquiry::timestamp;
use crate::state::AppState;
use crate::store::Checkpoint;

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

pub(super) fn key_prefix(c: &Checkpoint) -> &str {
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
