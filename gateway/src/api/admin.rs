//! `/v1/admin/*`: operations for the `admin` role.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::reload::{self, ReloadError, ReloadSummary};
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
