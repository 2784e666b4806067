//! `/v1/admin/*`: operations for the `admin` role.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::inbound;
use crate::audit::AuditRecord;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::inquiry::timestamp;
use crate::metrics::recent::RecentView;
use crate::reload::{self, LastReload, ReloadError, ReloadSummary};
use crate::state::AppState;

/// `POST /v1/admin/reload`: reload the agency and dialect files. 200 with
/// the new set's summary; 422 `invalid_configuration` with every error (file
/// and line) when the files are wrong, the running set staying.
#[utoipa::path(
    post,
    path = "/v1/admin/reload",
    operation_id = "reload_agencies",
    tag = "admin",
    responses(
        (status = 200, description = "The new set is in place.", body = ReloadSummary),
        (status = 422, description = "`invalid_configuration`: the files hold errors, listed in `details` with file and line; the running set stays.", body = crate::api::schema::ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn reload(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<ReloadSummary>), ApiError> {
    caller.require(&[Role::Admin])?;
    match reload::reload(&state, &caller.name).await {
        Ok(summary) => Ok((StatusCode::OK, Json(summary))),
        Err(ReloadError::Invalid(errors)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_configuration",
            format!(
                "{} error(s) in the agency and dialect files; nothing changed, version {} keeps serving",
                errors.0.len(),
                state.agencies.current().version()
            ),
        )
        .with_details(reload::error_details(&errors))),
        Err(ReloadError::Audit(e)) => Err(e.into()),
        Err(ReloadError::Internal(e)) => {
            tracing::error!(error = %e, "reload failed");
            Err(ApiError::unavailable(
                "reload_failed",
                "the reload could not run; nothing changed, try again",
            ))
        }
    }
}

/// `GET /v1/admin/agencies`: every agency's live state on this gateway,
/// and the configuration's.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgencyPage {
    /// When the figures were read.
    #[schema(format = DateTime)]
    pub at: String,
    pub config: ConfigState,
    /// Every agency of the set in use, in id order.
    pub agencies: Vec<AgencyState>,
}

/// The agency set in use and the last reload.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigState {
    /// The agency set's version (the catalogue of agency and dialect
    /// files as loaded): new inquiries record it; each reload makes a new
    /// one.
    #[schema(example = "cfg_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub version: String,
    #[schema(format = DateTime)]
    pub loaded_at: String,
    /// Older sets that running inquiries started with and still use.
    pub retired_versions: Vec<String>,
    pub agencies: usize,
    pub dialects: usize,
    /// The last reload this gateway ran, and how it ended (null when none
    /// ran since it started).
    pub last_reload: Option<LastReload>,
}

/// One agency's state on this gateway.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgencyState {
    pub id: String,
    pub name: String,
    /// `bank`, `registry`, `vehicle_register`, ...
    pub kind: String,
    /// The kind of asset it holds (`bank_account`, `real_estate`, ...).
    pub asset_kind: String,
    pub dialect: String,
    pub enabled: bool,
    pub breaker: BreakerView,
    /// The limits its file sets.
    pub limits: LimitsView,
    /// What it did lately, as this gateway saw it.
    pub traffic: RecentView,
}

/// A circuit breaker's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct BreakerView {
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Since when: the last change, or when the breaker was made (the
    /// gateway started, or the agency's breaker settings changed).
    #[schema(format = DateTime)]
    pub since: String,
    /// Open: in how many ms a probe may go.
    pub probe_in_ms: Option<u64>,
}

/// An agency's configured limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    pub rate_per_second: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub timeout_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
}

/// `GET /v1/admin/agencies`: every agency's live state (breaker, limits,
/// traffic of the last minutes: rate, latency percentiles, errors by
/// kind, in flight) and the configuration's version and last reload.
///
/// The figures are this gateway's own, kept in memory since it started:
/// another instance on the same database has its own.
#[utoipa::path(
    get,
    path = "/v1/admin/agencies",
    operation_id = "admin_agencies",
    tag = "admin",
    responses((status = 200, description = "Every agency's state and the configuration's.", body = AgencyPage)),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn agencies(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AgencyPage>, ApiError> {
    caller.require(&[Role::Admin])?;
    inbound(
        &state,
        &caller,
        "admin.agencies",
        "ok",
        None,
        AuditRecord::default(),
    )
    .await?;
    Ok(Json(agency_page(&state)))
}

/// Every agency's live state and the configuration's, as
/// `GET /v1/admin/agencies` answers it (and the console's agencies and
/// configuration pages show it): read now, from memory, recording nothing
/// (the caller records the read).
pub fn agency_page(state: &AppState) -> AgencyPage {
    let registry = state.agencies.current();
    let mut agencies: Vec<AgencyState> = registry
        .all()
        .map(|link| {
            let a = link.config();
            let breaker = link.runtime.guard.breaker.snapshot();
            AgencyState {
                id: a.id.clone(),
                name: a.name.clone(),
                kind: a.kind.as_str().to_owned(),
                asset_kind: a.asset_kind().as_str().to_owned(),
                dialect: a.dialect.clone(),
                enabled: a.enabled,
                breaker: BreakerView {
                    state: breaker.state.to_owned(),
                    since: timestamp(breaker.since_ms),
                    probe_in_ms: breaker
                        .probe_in
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                },
                limits: LimitsView {
                    rate_per_second: a.limits.rate_per_second,
                    max_concurrency: a.limits.max_concurrency,
                    timeout_ms: a.limits.timeout_ms,
                    breaker_failures: a.limits.breaker_failures,
                    breaker_cooldown_ms: a.limits.breaker_cooldown_ms,
                },
                traffic: link.runtime.recorder.view(),
            }
        })
        .collect();
    agencies.sort_by(|x, y| x.id.cmp(&y.id));
    AgencyPage {
        at: timestamp(chrono::Utc::now().timestamp_millis()),
        config: ConfigState {
            version: registry.version().to_owned(),
            loaded_at: timestamp(registry.loaded_at_ms()),
            retired_versions: state.agencies.retired_versions(),
            agencies: registry.len(),
            dialects: registry.dialect_count(),
            last_reload: state.agencies.last_reload(),
        },
        agencies,
    }
}
