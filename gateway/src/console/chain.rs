//! The chain at a glance. Reading a log of a million rows takes seconds,
//! too long for a page an auditor opens often, so the gateway remembers up
//! to which row it last verified the chain (`AppState::chain`), and a
//! visit checks only what could have changed unseen since: the rows after
//! that row, chained on from its remembered hash, and every signed
//! checkpoint again (`verify::verify_after`). An edit after the
//! watermark, or at a checkpointed row, turns the page red at once; an
//! edit of an older row between checkpoints is found only by a whole pass
//! (`verify::verify`), which the first visit after the gateway starts
//! makes, and the button on the page. The page says which of them it made
//! and when the whole log was last verified, so the auditor knows what
//! green means.

use std::time::Instant;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::MutexGuard;

use super::forms::local_time;
use super::row::key_prefix;
use super::sign_in::{form_error, same_origin};
use super::{Layout, PageError, Signed, UserView, record_view};
use crate::auth::Role;
use crate::state::AppState;
use crate::verify::{Pass, Remembered};

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
    /// The rows after this one were read now (a quick check); none when
    /// this visit verified the whole log.
    quick_from: Option<i64>,
    /// When the whole log was last verified, and how long it took.
    full_at: String,
    full_took: String,
    csrf: String,
}

#[derive(Debug)]
pub struct CheckpointView {
    pub seq: i64,
    pub at: String,
    pub key: String,
}

/// Which pass a visit made, as its audit row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Quick,
    Full,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Quick => "quick",
            Kind::Full => "full",
        }
    }
}

fn key_error(user: UserView) -> impl FnOnce(String) -> PageError {
    move |e| {
        tracing::error!(error = %e, "audit verify key unreadable");
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "无法读取审计验证密钥。 The audit verification key cannot be read.",
        )
        .for_user(user)
    }
}

/// Verifies the whole log and remembers how far it holds, and when.
async fn full_pass(
    state: &AppState,
    memory: &mut MutexGuard<'_, Option<Remembered>>,
    user: &UserView,
) -> Result<Pass, PageError> {
    let key = state
        .config
        .audit
        .verifying_key()
        .map_err(key_error(user.clone()))?;
    let started_ms = Utc::now().timestamp_millis();
    let started = Instant::now();
    let pass = crate::verify::verify_pass(&*state.store, key.as_ref())
        .await
        .map_err(|e| PageError::from(e).for_user(user.clone()))?;
    **memory = Some(Remembered {
        verified_to: pass.verified_to.clone(),
        full_at_ms: started_ms,
        full_took_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
    });
    Ok(pass)
}

/// `GET /console/audit/chain`: the chain verified now: the rows after the
/// last row this gateway verified and every signed checkpoint (the whole
/// log on the first visit after the gateway starts): up to which row it
/// holds, the last signed checkpoint, or the first bad row and what is
/// wrong with it.
pub async fn chain(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    // One pass at a time: a visit during a whole pass waits for it, then
    // goes on from where it ended.
    let mut memory = state.chain.lock().await;
    let kind = if memory.is_some() {
        Kind::Quick
    } else {
        Kind::Full
    };
    record_view(
        &state,
        &signed,
        "console.audit.verify",
        json!({"pass": kind.as_str()}),
    )
    .await?;
    let (pass, quick_from) = match memory.as_ref() {
        Some(remembered) => {
            let key = state
                .config
                .audit
                .verifying_key()
                .map_err(key_error(user.clone()))?;
            let from = remembered.verified_to.clone();
            let pass = crate::verify::verify_after(&*state.store, key.as_ref(), &from)
                .await
                .map_err(|e| PageError::from(e).for_user(user.clone()))?;
            if let Some(m) = memory.as_mut() {
                m.verified_to = pass.verified_to.clone();
            }
            (pass, Some(from.seq))
        }
        None => (full_pass(&state, &mut memory, &user).await?, None),
    };
    let (full_at, full_took) = memory
        .as_ref()
        .map(|m| (local_time(m.full_at_ms), took(m.full_took_ms)))
        .unwrap_or_default();
    drop(memory);
    let last_checkpoint = state
        .store
        .checkpoints()
        .await
        .map_err(|e| PageError::from(e).for_user(user.clone()))?
        .last()
        .map(|c| CheckpointView {
            seq: c.seq,
            at: local_time(c.at_ms),
            key: key_prefix(c).to_owned(),
        });
    let report = pass.report;
    Ok(ChainPage {
        csrf: user.csrf.clone(),
        layout: Layout::new("哈希链 Chain", "chain", Some(user)),
        ok: report.ok,
        checked: report.checked,
        first_bad_seq: report.first_bad_seq,
        problem: report.problem,
        checkpoints: report.checkpoints,
        signed_through_seq: report.signed_through_seq,
        last_checkpoint,
        verified_at: local_time(Utc::now().timestamp_millis()),
        quick_from,
        full_at,
        full_took,
    }
    .into_response())
}

/// A duration as the page shows it.
fn took(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1_000.0)
    }
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    csrf: String,
}

/// `POST /console/audit/chain`: the **Verify the whole log now** button:
/// every row read and hashed again, the watermark set to where the chain
/// holds; then the page (a redirect, so reloading it does not verify
/// again). Refused from another site and without the session's token, as
/// the console's other forms are.
pub async fn verify_all(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<VerifyForm>, FormRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    let Form(form) = form.map_err(|r| form_error(r).for_user(user.clone()))?;
    let refuse = |why: String| {
        PageError::forbidden(
            user.clone(),
            format!("核验请求被拒绝：{why}。 Verification refused: {why}."),
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
    let mut memory = state.chain.lock().await;
    record_view(
        &state,
        &signed,
        "console.audit.verify",
        json!({"pass": Kind::Full.as_str()}),
    )
    .await?;
    full_pass(&state, &mut memory, &user).await?;
    Ok(Redirect::to("/console/audit/chain").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(took(12), "12 ms");
        assert_eq!(took(2_345), "2.3 s");
    }
}
