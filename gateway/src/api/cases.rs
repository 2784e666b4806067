//! `/v1/cases/{case_number}`: a case's whole picture for an officer's
//! case view (`case::view`). Role `enforcement`; the caller's own
//! inquiries, orders and plans only: a case it has none under does not
//! exist for it.

use axum::Json;
use axum::extract::State;

use crate::api::extract::{ApiPath, case_filter};
use crate::api::inbound;
use crate::api::schema::ErrorBody;
use crate::audit::AuditRecord;
use crate::auth::{Caller, Role};
use crate::case::{self, CaseView};
use crate::error::ApiError;
use crate::state::AppState;

/// A case's whole picture: its inquiries with each agency's status, the
/// assets they found (one entry per asset, from the newest answer that
/// held it), its freezes and seals with what needs renewing, and its
/// freeze plans with what each of their orders controls.
///
/// Only what this caller made under the case; identity numbers masked.
/// The case number goes in the path percent-encoded (UTF-8), e.g.
/// `/v1/cases/(2024)%E7%94%980503%E6%89%A71234%E5%8F%B7`.
#[utoipa::path(
    get,
    path = "/v1/cases/{case_number}",
    operation_id = "get_case",
    tag = "cases",
    params(("case_number" = String, Path, min_length = 1, max_length = 64,
        example = "(2024)甘0503执1234号",
        description = "The case number, percent-encoded.")),
    responses(
        (status = 200, description = "The case.", body = CaseView),
        (status = 404, description = "`not_found`: this caller has no inquiry, order or plan under that case.", body = ErrorBody),
        (status = 422, description = "`invalid_value`: not a case number (`field`: `case_number`).", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<CaseView>, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let case = case_filter(Some(&raw))?;
    let number = case.as_str();
    let view = case::read(&state, &caller.name, number).await?;
    let fields = AuditRecord {
        case_number: Some(number.to_owned()),
        ..AuditRecord::default()
    };
    let Some(view) = view else {
        inbound(&state, &caller, "cases.get", "not_found", None, fields).await?;
        return Err(ApiError::not_found(format!("no case {number}")));
    };
    inbound(&state, &caller, "cases.get", "ok", None, fields).await?;
    Ok(Json(view))
}
