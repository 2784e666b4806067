//! The chain at a glance: the whole log verified now (`verify::verify`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::forms::local_time;
use super::row::key_prefix;
use super::{Layout, PageError, Signed, record_view};
use crate::auth::Role;
use crate::state::AppState;

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
