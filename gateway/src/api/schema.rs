//! The shapes of the API's answers that handlers build as JSON values, and
//! the error shape, described for the OpenAPI document (`openapi.rs`).
//!
//! Each type here mirrors one `view` function (`order::view`,
//! `plan::view`, the audit event, the agency list). The schema fuzzer run
//! by CI checks every answer against these descriptions, so a view that
//! drifts from its schema fails there. Nothing here is ever serialised.

#![allow(dead_code)]

use serde_json::Value;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};
use utoipa::{PartialSchema, ToSchema};

/// Every error: `{"error": {"code", "message", "field"?, "details"?}}`.
#[derive(ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_value", "message": "subject.id_number: the check character is wrong", "field": "subject.id_number"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// A stable `snake_case` code; what a client should do on each is in
    /// `docs/api.md`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The field at fault, as a path (`officers[1].credential_no`), or the
    /// header or query parameter.
    pub field: Option<String>,
    /// More structure where it helps (every error of a refused reload).
    pub details: Option<Value>,
}

/// The subject as answers show it (identity numbers only where the
/// caller sent them: inquiries).
#[derive(ToSchema)]
pub struct SubjectView {
    #[schema(inline)]
    pub kind: adapters::model::SubjectKind,
    pub name: String,
    pub id_number: Option<String>,
    pub credit_code: Option<String>,
}

/// An asset an agency reported, with the agency that holds it.
pub struct AssetView;

impl PartialSchema for AssetView {
    fn schema() -> RefOr<Schema> {
        AllOfBuilder::new()
            .item(adapters::model::Asset::schema())
            .item(
                ObjectBuilder::new()
                    .property(
                        "agency",
                        ObjectBuilder::new()
                            .schema_type(SchemaType::Type(Type::String))
                            .description(Some("The agency that reported the asset.")),
                    )
                    .required("agency"),
            )
            .into()
    }
}

impl ToSchema for AssetView {
    fn name() -> std::borrow::Cow<'static, str> {
        "AssetView".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        adapters::model::Asset::schemas(schemas);
    }
}

/// An asset a case's inquiries found (`case::view`): as the agency
/// reported it in the newest answer that held it, with the agency, when
/// and in which inquiry that answer came, whose it is, and the case's
/// measures on it.
pub struct CaseAssetView;

impl PartialSchema for CaseAssetView {
    fn schema() -> RefOr<Schema> {
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .description(Some(description.to_owned()))
        };
        AllOfBuilder::new()
            .item(adapters::model::Asset::schema())
            .item(
                ObjectBuilder::new()
                    .property("agency", text("The agency that reported the asset."))
                    .property(
                        "found_at",
                        text("When the newest answer that held it came (RFC 3339, UTC).").format(
                            Some(utoipa::openapi::SchemaFormat::KnownFormat(
                                utoipa::openapi::KnownFormat::DateTime,
                            )),
                        ),
                    )
                    .property("inquiry_id", text("The inquiry that answer belongs to."))
                    .property("subject", crate::case::SubjectLine::schema())
                    .property(
                        "case_orders",
                        utoipa::openapi::schema::ArrayBuilder::new().items(text(
                            "The id of one of the case's freezes or seals on this asset.",
                        )),
                    )
                    .required("agency")
                    .required("found_at")
                    .required("inquiry_id")
                    .required("subject")
                    .required("case_orders"),
            )
            .into()
    }
}

impl ToSchema for CaseAssetView {
    fn name() -> std::borrow::Cow<'static, str> {
        "CaseAssetView".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        adapters::model::Asset::schemas(schemas);
    }
}

/// `GET /v1/inquiries?case_number=`.
#[derive(ToSchema)]
pub struct InquiryList {
    pub inquiries: Vec<crate::inquiry::InquiryView>,
}

/// A control order (`order::view`).
#[derive(ToSchema)]
pub struct OrderView {
    #[schema(example = "ord_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub id: String,
    #[schema(value_type = adapters::control::ControlAction)]
    pub action: String,
    /// `accepted`, `dispatched`, `applied`, `partial`, `waiting`,
    /// `refused`, `failed`, `expired` or `released`.
    pub status: String,
    pub case_number: String,
    pub subject: SubjectView,
    pub agency: String,
    /// The kind of asset acted on (the agency's).
    pub asset_kind: adapters::model::AssetKind,
    /// The asset, by its kind's fields.
    pub asset: crate::order::AssetBody,
    /// The number the agency knows the order by; stable across retries.
    pub request_number: String,
    pub requested_fen: Option<i64>,
    pub controlled_fen: Option<i64>,
    pub shortfall_fen: Option<i64>,
    /// A freeze of securities: the units asked, in force, and asked but
    /// not free.
    pub requested_quantity: Option<i64>,
    pub controlled_quantity: Option<i64>,
    pub shortfall_quantity: Option<i64>,
    /// For a freeze: what deductions took from it.
    pub deducted_fen: Option<i64>,
    pub reason: Option<String>,
    pub queue_position: Option<i64>,
    #[schema(format = Date)]
    pub start_date: Option<String>,
    #[schema(format = Date)]
    pub end_date: Option<String>,
    pub agency_reference: Option<String>,
    pub prior_order: Option<String>,
    /// The freeze plan that made the order, if one did.
    pub freeze_plan: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
    pub detail: Option<String>,
    pub documents: Option<Vec<Value>>,
    /// The documents the agency acknowledged, when it says.
    pub acknowledged_documents: Option<Value>,
    pub documents_match: Option<bool>,
}

/// `GET /v1/orders?case_number=`.
#[derive(ToSchema)]
pub struct OrderList {
    pub orders: Vec<OrderView>,
}

/// An account a plan tries: a bank's, a payment platform's or a provident
/// fund centre's.
#[derive(ToSchema)]
pub struct PlanAccountView {
    pub agency: String,
    /// The account's number at its agency.
    pub account_number: String,
    pub available_fen: i64,
    /// `payment_account` or `provident_fund`; left out for a bank account.
    pub kind: Option<adapters::model::AssetKind>,
}

/// A freeze plan (`plan::view`).
#[derive(ToSchema)]
pub struct PlanView {
    #[schema(example = "fpl_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub id: String,
    /// `running`, `completed`, `partial` (the accounts could not supply
    /// the whole amount) or `failed`.
    pub status: String,
    pub case_number: String,
    pub subject: SubjectView,
    /// The inquiry whose accounts the plan freezes.
    pub inquiry: String,
    pub amount_fen: i64,
    /// What the plan's freezes control together; never above
    /// `amount_fen`.
    pub controlled_fen: i64,
    #[schema(format = Date)]
    pub end_date: String,
    pub accounts: Vec<PlanAccountView>,
    pub skipped_accounts: Vec<Value>,
    pub orders: Vec<OrderView>,
    pub detail: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
}

/// One row of the audit log.
#[derive(ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    #[schema(format = DateTime)]
    pub at: String,
    /// `inbound`, `outbound`, `reply` or `callback`.
    pub direction: String,
    pub caller: Option<String>,
    pub officers: Vec<String>,
    pub case_number: Option<String>,
    pub subject: Option<String>,
    pub agency: Option<String>,
    pub action: String,
    pub inquiry_id: Option<String>,
    pub request_number: Option<String>,
    pub status: Option<String>,
    pub latency_ms: Option<i64>,
    pub body_sha256: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// `GET /v1/audit/events/{seq}` only: the message body, where kept.
    pub body_base64: Option<String>,
    /// `GET /v1/audit/events/{seq}` only: the body decoded as text (XML in
    /// GB18030 shown as the agency meant it).
    pub body_text: Option<String>,
}

/// A page of the audit log.
#[derive(ToSchema)]
pub struct AuditEventsPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// An agency as `GET /v1/agencies` lists it.
#[derive(ToSchema)]
pub struct AgencyEntry {
    pub id: String,
    pub name: String,
    /// `bank` or `registry`.
    pub kind: String,
    pub dialect: String,
    pub enabled: bool,
    pub asset_kind: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: String,
    pub limits: Value,
    pub business_hours: Option<Value>,
    /// Whether the agency is reached with a TLS client of its own.
    pub tls: bool,
    /// The names of the headers the gateway authenticates with (never
    /// their values).
    pub auth_headers: Vec<String>,
}

/// `GET /v1/agencies`.
#[derive(ToSchema)]
pub struct AgencyList {
    /// The version of the agency set new inquiries use.
    pub version: String,
    #[schema(format = DateTime)]
    pub loaded_at: String,
    /// Older sets that running inquiries started with and still use.
    pub retired_versions: Vec<String>,
    pub dialects: i64,
    pub agencies: Vec<AgencyEntry>,
}

/// What a callback did: the request numbers it completed and those it
/// ignored (unknown, or already answered).
#[derive(ToSchema)]
pub struct CallbackAck {
    pub accepted: Vec<String>,
    pub ignored: Vec<String>,
}

/// `GET /healthz`.
#[derive(ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /readyz`.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ready`, or `not_ready` with the reason.
    pub status: String,
    pub reason: Option<String>,
}

/// An answer to one of the auditors' questions: one list, named after
/// what it holds (`subjects`, `requests`, `officer_days`, `orders`).
#[derive(ToSchema)]
pub struct QuestionAnswer {
    pub subjects: Option<Vec<Value>>,
    pub requests: Option<Vec<Value>>,
    pub threshold: Option<i64>,
    pub officer_days: Option<Vec<Value>>,
    pub orders: Option<Vec<Value>>,
}
