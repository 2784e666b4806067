//! `/v1/inquiries`: start an inquiry (optionally waiting for it), read one,
//! list a case's inquiries. Role `enforcement`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::extract::{ApiJson, ApiPath, ApiQuery, case_filter, page_limit};
use crate::api::inbound;
use crate::api::schema::ErrorBody;
use crate::audit::AuditRecord;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::inquiry::{self, InquiryBody, InquiryView};
use crate::services::inquiries::accept_inquiry;
use crate::state::AppState;
use crate::store::{InquiryRecord, InquiryStatus, TaskRecord};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreateParams {
    /// Seconds to wait for every agency to answer before answering (0 to
    /// the configured `inquiries.max_wait_secs`, 30 by default): 200 when
    /// the inquiry completed within it, 202 otherwise.
    #[serde(default)]
    #[param(value_type = Option<u32>, minimum = 0, maximum = 30)]
    wait: Option<String>,
}

/// Start an asset inquiry.
///
/// Validates the case number, the subject's identifier, the officers and
/// the scope, records the request in the audit log, stores the inquiry
/// with one task per agency, and answers 202 with it (or waits up to
/// `wait` seconds and answers 200 once every agency answered).
#[utoipa::path(
    post,
    path = "/v1/inquiries",
    operation_id = "create_inquiry",
    tag = "inquiries",
    params(CreateParams),
    request_body(content = InquiryBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Completed within `wait`.", body = InquiryView),
        (status = 202, description = "Accepted and stored; read it at `GET /v1/inquiries/{id}`.", body = InquiryView,
            links(("read" = (operation_id = "get_inquiry", parameters(("id" = "$response.body#/id")))))),
        (status = 422, description = "Valid JSON, invalid content: a bad case number or identity \
            checksum, no officer, an unknown or disabled agency ... (`field` names it).", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<CreateParams>,
    body: Result<ApiJson<InquiryBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let raw = body.as_ref().map(|b| b.raw.to_vec()).ok();
    let parsed = parse_wait(params.wait.as_deref(), state.config.inquiries.max_wait_secs)
        .and_then(|wait| Ok((wait, body?)));
    let (wait, ApiJson { value, raw }) = match parsed {
        Ok(v) => v,
        Err(e) => {
            // Refused attempts are recorded too: misuse shows in failures.
            inbound(
                &state,
                &caller,
                "inquiry.create",
                e.code,
                raw,
                AuditRecord::default(),
            )
            .await?;
            return Err(e);
        }
    };
    let mut accepted = accept_inquiry(&state, &caller, value, raw, wait > Duration::ZERO).await?;
    // Completed or not, the view below says where it stands.
    accepted.until(tokio::time::Instant::now() + wait).await;
    let id = accepted.id;
    let view = load_view(&state, &id).await?;
    let status = if view.status == InquiryStatus::Completed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(view)).into_response())
}

fn parse_wait(raw: Option<&str>, max: u64) -> Result<Duration, ApiError> {
    let Some(raw) = raw else {
        return Ok(Duration::ZERO);
    };
    let secs: u64 = raw.trim().parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("wait must be a whole number of seconds, 0 to {max}"),
        )
        .with_field("wait")
    })?;
    if secs > max {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("wait must be at most {max} seconds"),
        )
        .with_field("wait"));
    }
    Ok(Duration::from_secs(secs))
}

async fn load_view(state: &AppState, id: &str) -> Result<inquiry::InquiryView, ApiError> {
    let (record, tasks) = state
        .store
        .inquiry_with_tasks(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no inquiry {id}")))?;
    view(&record, &tasks)
}

fn view(record: &InquiryRecord, tasks: &[TaskRecord]) -> Result<inquiry::InquiryView, ApiError> {
    inquiry::view(record, tasks).map_err(|e| {
        tracing::error!(error = %e, inquiry = %record.id, "stored inquiry unreadable");
        ApiError::internal("the stored inquiry cannot be read")
    })
}

/// Read an inquiry: its status, each agency's answer and the assets found.
#[utoipa::path(
    get,
    path = "/v1/inquiries/{id}",
    operation_id = "get_inquiry",
    tag = "inquiries",
    params(("id" = String, Path, max_length = 64, description = "The inquiry's id (`inq_...`).")),
    responses(
        (status = 200, description = "The inquiry.", body = InquiryView),
        (status = 404, description = "`not_found`: no inquiry with that id for this caller.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<inquiry::InquiryView>, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let found = state.store.inquiry_with_tasks(&id).await?;
    // Another caller's inquiry does not exist for this caller.
    let Some((record, tasks)) = found.filter(|(r, _)| r.caller == caller.name) else {
        inbound(
            &state,
            &caller,
            "inquiry.read",
            "not_found",
            None,
            AuditRecord {
                inquiry_id: Some(id.clone()),
                ..AuditRecord::default()
            },
        )
        .await?;
        return Err(ApiError::not_found(format!("no inquiry {id}")));
    };
    inbound(
        &state,
        &caller,
        "inquiry.read",
        "ok",
        None,
        AuditRecord {
            case_number: Some(record.case_number.clone()),
            subject: Some(record.subject.identifier().to_owned()),
            inquiry_id: Some(id.clone()),
            ..AuditRecord::default()
        },
    )
    .await?;
    Ok(Json(view(&record, &tasks)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The case whose inquiries to list (required).
    #[param(
        required = true,
        min_length = 1,
        max_length = 64,
        example = "(2024)甘0503执1234号"
    )]
    case_number: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// List a case's inquiries made by this caller.
#[utoipa::path(
    get,
    path = "/v1/inquiries",
    operation_id = "list_inquiries",
    tag = "inquiries",
    params(ListParams),
    responses(
        (status = 200, description = "The case's inquiries.", body = crate::api::schema::InquiryList),
        (status = 422, description = "`invalid_value`: the case number is not one.", body = ErrorBody),
    ),
    security(("caller_token" = []), ("caller_certificate" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Enforcement])?;
    let case = case_filter(params.case_number.as_deref())?;
    let limit = page_limit(params.limit, 100, 1000)?;
    inbound(
        &state,
        &caller,
        "inquiry.list",
        "ok",
        None,
        AuditRecord {
            case_number: Some(case.as_str().to_owned()),
            ..AuditRecord::default()
        },
    )
    .await?;
    let records = state
        .store
        .inquiries_by_case(&caller.name, case.as_str(), limit)
        .await?;
    let mut inquiries = Vec::with_capacity(records.len());
    for record in records {
        let tasks = state.store.tasks(&record.id).await?;
        let view = inquiry::view(&record, &tasks)
            .map_err(|_| ApiError::internal("a stored inquiry cannot be read"))?;
        inquiries.push(view);
    }
    Ok(Json(serde_json::json!({ "inquiries": inquiries })))
}
