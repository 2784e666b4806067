//! Reloading the agency and dialect files while the gateway runs
//! (`POST /v1/admin/reload`, SIGHUP).
//!
//! The new set is loaded and checked whole, away from the running one; a set
//! with any error is refused with every error and the running set stays.
//! Either outcome is recorded in the audit log (`config.reload`) before it
//! takes effect: if the log cannot take the record, nothing changes.
//! Running inquiries keep the set they started with (see `agencies`).

use adapters::agency::ConfigErrors;
use serde::Serialize;

use crate::agencies::AgencyRegistry;
use crate::audit::{AuditError, AuditRecord, Direction};
use crate::config::GatewayConfig;
use crate::runtime::RuntimeParts;
use crate::state::AppState;

/// What a successful reload put in place.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReloadSummary {
    pub status: &'static str,
    /// The new set's version; new inquiries record it.
    pub version: String,
    /// The version it replaced (still used by inquiries that started on it).
    pub previous_version: String,
    pub agencies: usize,
    pub dialects: usize,
    pub loaded_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files hold errors; the running set stays.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The outcome could not be recorded; nothing changed.
    #[error("{0}")]
    Audit(#[from] AuditError),
    #[error("the reload task failed: {0}")]
    Internal(String),
}

/// Loads and checks the agency and dialect files the configuration names,
/// and builds the agency set from them (without installing it); agencies of
/// `previous` whose limits and connection stand keep their runtimes.
pub fn load_registry(
    config: &GatewayConfig,
    parts: &RuntimeParts,
    previous: Option<&AgencyRegistry>,
) -> Result<AgencyRegistry, ConfigErrors> {
    let catalog = config.load_catalog()?;
    AgencyRegistry::build(catalog, parts, &config.agencies_dir, previous)
}

/// Every error as `{"file", "line", "message"}`, for the API.
pub fn error_details(errors: &ConfigErrors) -> serde_json::Value {
    errors
        .0
        .iter()
        .map(|e| {
            serde_json::json!({
                "file": e.file.display().to_string(),
                "line": e.line(),
                "message": e.text(),
            })
        })
        .collect()
}

/// How many of a refused reload's errors the admin's agency page shows.
const ERRORS_SHOWN: usize = 20;

/// The last reload this gateway ran, and how it ended, as the admin's
/// agency page (`GET /v1/admin/agencies`) shows it. Kept in memory: after
/// a restart there is none until the next.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastReload {
    #[schema(format = DateTime)]
    pub at: String,
    /// Who asked: an admin's name, or `signal:SIGHUP`.
    pub by: String,
    /// `ok`; `invalid_configuration` (the files hold errors: the running
    /// set stayed); or `failed` (the reload could not run, or its outcome
    /// could not be recorded in the audit log: nothing changed).
    pub result: String,
    /// `ok`: the version put in place, and the one it replaced.
    pub version: Option<String>,
    pub previous_version: Option<String>,
    /// `invalid_configuration`: how many errors, and the first 20 (file,
    /// line, message).
    pub error_count: Option<usize>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<serde_json::Value>,
    /// `failed`: what went wrong.
    pub error: Option<String>,
}

impl LastReload {
    fn of(by: &str, outcome: &Result<ReloadSummary, ReloadError>) -> Self {
        let mut last = Self {
            at: crate::inquiry::timestamp(chrono::Utc::now().timestamp_millis()),
            by: by.to_owned(),
            result: "failed".into(),
            version: None,
            previous_version: None,
            error_count: None,
            errors: None,
            error: None,
        };
        match outcome {
            Ok(summary) => {
                last.result = "ok".into();
                last.version = Some(summary.version.clone());
                last.previous_version = Some(summary.previous_version.clone());
            }
            Err(ReloadError::Invalid(errors)) => {
                last.result = "invalid_configuration".into();
                last.error_count = Some(errors.0.len());
                let mut details = error_details(errors);
                if let Some(list) = details.as_array_mut() {
                    list.truncate(ERRORS_SHOWN);
                }
                last.errors = Some(details);
            }
            Err(e) => last.error = Some(e.to_string()),
        }
        last
    }
}

/// Reloads the files; `caller` is who asked (an admin's name, or the
/// signal), for the audit log. The outcome is kept as the last reload's.
pub async fn reload(state: &AppState, caller: &str) -> Result<ReloadSummary, ReloadError> {
    let _one_at_a_time = state.reloading.lock().await;
    let outcome = run(state, caller).await;
    state
        .agencies
        .set_last_reload(LastReload::of(caller, &outcome));
    outcome
}

async fn run(state: &AppState, caller: &str) -> Result<ReloadSummary, ReloadError> {
    let previous = state.agencies.current();
    let loaded = {
        let config = state.config.clone();
        let parts = state.runtimes.clone();
        let previous = previous.clone();
        // Thousands of small files: read them off the async workers.
        tokio::task::spawn_blocking(move || load_registry(&config, &parts, Some(&previous)))
            .await
            .map_err(|e| ReloadError::Internal(e.to_string()))?
    };
    match loaded {
        Err(errors) => {
            let body = serde_json::to_vec(&error_details(&errors)).unwrap_or_default();
            record(state, caller, "invalid_configuration", body).await?;
            tracing::warn!(
                errors = errors.0.len(),
                version = previous.version(),
                "reload refused; the running agency set stays:\n{errors}"
            );
            Err(ReloadError::Invalid(errors))
        }
        Ok(next) => {
            let summary = ReloadSummary {
                status: "reloaded",
                version: next.version().to_owned(),
                previous_version: previous.version().to_owned(),
                agencies: next.len(),
                dialects: next.dialect_count(),
                loaded_at: crate::inquiry::timestamp(next.loaded_at_ms()),
            };
            let body = serde_json::to_vec(&summary).unwrap_or_default();
            record(state, caller, "ok", body).await?;
            state.agencies.replace(next);
            drop(previous);
            state.dispatcher.wake();
            tracing::info!(
                version = %summary.version,
                previous = %summary.previous_version,
                agencies = summary.agencies,
                dialects = summary.dialects,
                "agency set reloaded"
            );
            Ok(summary)
        }
    }
}

async fn record(
    state: &AppState,
    caller: &str,
    status: &str,
    body: Vec<u8>,
) -> Result<i64, AuditError> {
    state
        .audit
        .record(AuditRecord {
            direction: Some(Direction::Inbound),
            caller: Some(caller.to_owned()),
            action: "config.reload".into(),
            status: Some(status.to_owned()),
            body: Some(body.into()),
            ..AuditRecord::default()
        })
        .await
}

/// Reloads on every SIGHUP until `stop` resolves (unix only; elsewhere it
/// just waits).
pub async fn on_hangup(state: AppState, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be handled; reload through the API");
                None
            }
        };
        if let Some(hangups) = &mut hangups {
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    got = hangups.recv() => {
                        if got.is_none() {
                            break;
                        }
                        tracing::info!("SIGHUP: reloading agency and dialect files");
                        if let Err(e) = reload(&state, "signal:SIGHUP").await
                            && !matches!(e, ReloadError::Invalid(_))
                        {
                            tracing::error!(error = %e, "reload failed");
                        }
                    }
                }
            }
        }
    }
    let _ = &state;
    stop.await;
}
