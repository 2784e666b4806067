//! The OpenAPI 3.1 document of the API, generated from the handlers'
//! `#[utoipa::path]` attributes and the request and answer types: the
//! router is built from the same registrations (`api::router`), so a route
//! cannot exist without its description. Served at `GET /openapi.json`.
//!
//! The answers every operation shares (401, 403, 429, 503; 400, 408, 413
//! and 415 where a body or query is read) are added here once, in
//! [`CommonResponses`], rather than repeated on every handler.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::api::schema::ErrorBody;

/// The document's fixed parts: what it is, how callers authenticate, the
/// error shape and the shared answers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Court enforcement asset inquiry and freeze gateway",
        description = "One door between a court's enforcement case system and every agency \
            that holds a debtor's assets. Enforcement systems send asset inquiries and control \
            orders; auditors read the hash-chained request log; agencies push results to \
            their callback endpoint. Flows, error codes and what to do on each: docs/api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "inquiries", description = "Asset inquiries (role enforcement)."),
        (name = "inquiry-batches", description = "Batch inquiries: up to 10,000 subjects at once, their progress as events, their results as NDJSON or CSV (role enforcement)."),
        (name = "orders", description = "Control orders: freeze, renew, release, deduct, seal (role enforcement)."),
        (name = "freeze-plans", description = "Freeze up to an amount across the accounts an inquiry found (role enforcement)."),
        (name = "cases", description = "A case's whole picture: its inquiries, the assets found, its measures and plans (role enforcement)."),
        (name = "audit", description = "The request log, its checks and the auditors' questions (role auditor)."),
        (name = "agencies", description = "The connected agencies and their state."),
        (name = "admin", description = "Operations (role admin)."),
        (name = "callbacks", description = "Results agencies push, each with its own token."),
        (name = "operations", description = "Health, readiness, metrics and this document (no auth)."),
    )
)]
pub struct ApiDoc;

/// The security scheme of callers (enforcement systems, auditors,
/// operators).
pub const CALLER_TOKEN: &str = "caller_token";
/// A caller known by its client certificate, over TLS.
pub const CALLER_CERTIFICATE: &str = "caller_certificate";
/// An agency pushing results to its callback endpoint.
pub const AGENCY_TOKEN: &str = "agency_token";

/// Shared answers, by name in `components.responses`, with the codes each
/// carries.
const SHARED: [(&str, &str, &str); 12] = [
    (
        "400",
        "BadRequest",
        "The request is malformed: `malformed_json`, `invalid_field` (unknown, repeated or \
         mistyped field, or an array where an object belongs), `invalid_query`, `invalid_path`, \
         `invalid_characters` (NUL in the path or query), `repeated_header` (two Authorization \
         or Idempotency-Key headers), `idempotency_key_required`, `unreadable_body`. Fix the \
         request; retrying it unchanged fails again.",
    ),
    (
        "401",
        "Unauthorized",
        "`unauthorized`: no token, an unknown token, or a token without its client \
         certificate. The attempt is recorded in the audit log.",
    ),
    (
        "403",
        "Forbidden",
        "`forbidden`: the caller's role may not use this endpoint. The attempt is recorded in \
         the audit log.",
    ),
    (
        "404",
        "NotFound",
        "`not_found`: no such resource for this caller (another caller's resources do not \
         exist for it).",
    ),
    (
        "408",
        "RequestTimeout",
        "`body_timeout`: the body did not arrive within the server's body timeout.",
    ),
    (
        "409",
        "Conflict",
        "`idempotency_conflict`: the Idempotency-Key was used before with another body; \
         `release_pending`, `renewal_pending`: another order on the same measure is on its way.",
    ),
    (
        "413",
        "PayloadTooLarge",
        "`body_too_large`: the body (or its declared Content-Length) is over the limit; refused \
         before it is read.",
    ),
    (
        "414",
        "UriTooLong",
        "`uri_too_long`: the path and query are over the limit.",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "`unsupported_media_type`: the body must be sent as `Content-Type: application/json` \
         (UTF-8).",
    ),
    (
        "422",
        "Unprocessable",
        "Valid JSON, invalid content: `invalid_value`, `invalid_characters`, `too_long`, \
         `too_many`, `duplicate_officer`, `amount_too_large`, and the rules of inquiries, \
         orders and plans (`term_too_long`, `missing_document`, `deduction_exceeds_freeze` \
         ...). `field` names the field at fault.",
    ),
    (
        "429",
        "TooManyRequests",
        "`rate_limited`: the caller is over its rate; `Retry-After` says when to try again.",
    ),
    (
        "503",
        "Unavailable",
        "`store_unavailable` or `audit_unavailable`: the gateway cannot record or store the \
         request, so it did nothing; `decision_busy`: an order or plan could not take its turn \
         on the asset in time. Retry later (with the same Idempotency-Key for orders and \
         plans).",
    ),
];

/// Adds the security schemes, the shared answers, and to every operation
/// the shared answers that apply to it.
pub struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            CALLER_TOKEN.into(),
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A caller's token (`Authorization: Bearer <token>`). The configuration \
                         holds its SHA-256 and the caller's role: enforcement, auditor or admin.",
                    ))
                    .build(),
            )
            .into(),
        );
        components.security_schemes.insert(
            CALLER_CERTIFICATE.into(),
            SecurityScheme::MutualTls {
                description: Some(
                    "Over TLS, a caller whose client certificate the configuration names \
                     (docs/security.md)."
                        .into(),
                ),
                deprecated: None,
                extensions: None,
            }
            .into(),
        );
        components.security_schemes.insert(
            AGENCY_TOKEN.into(),
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The agency's own callback token; its agency file holds the SHA-256.",
                    ))
                    .build(),
            )
            .into(),
        );
        for (_, name, description) in SHARED {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            components.responses.insert(name.into(), response.into());
        }
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_shared(op);
            }
        }
    }
}

fn add_shared(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    // Every route refuses a NUL in the path or query and a repeated
    // Authorization (400), a declared body over the limit (413) and a long
    // URI (414), before its handler runs.
    let mut wanted = vec!["400", "413", "414"];
    if secured {
        wanted.extend(["401", "403", "429", "503"]);
    }
    if op.request_body.is_some() {
        wanted.extend(["408", "415"]);
    }
    for status in wanted {
        let Some((_, name, _)) = SHARED.iter().find(|(s, _, _)| *s == status) else {
            continue;
        };
        op.responses
            .responses
            .entry(status.into())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    }
}

/// The document as served, made once: with the bound of `wait` this
/// gateway's configuration sets (`inquiries.max_wait_secs`).
pub fn document(doc: &Document, max_wait_secs: u64) -> bytes::Bytes {
    let mut value = match serde_json::to_value(doc) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document cannot be written");
            return bytes::Bytes::from_static(b"{}");
        }
    };
    if let Some(params) = value
        .pointer_mut("/paths/~1v1~1inquiries/post/parameters")
        .and_then(|p| p.as_array_mut())
    {
        for param in params.iter_mut().filter(|p| p["name"] == "wait") {
            param["schema"]["maximum"] = max_wait_secs.into();
        }
    }
    bytes::Bytes::from(serde_json::to_vec_pretty(&value).unwrap_or_default())
}

/// `GET /openapi.json`: the document, without auth.
pub fn serve(document: bytes::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::input;

    fn document() -> Value {
        let doc = crate::api::openapi_document();
        serde_json::from_str(&doc.to_json().expect("document")).expect("json")
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for r in found {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn it_is_openapi_3_1_with_every_operation_answering_in_the_error_shape() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("item") {
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path}"
                );
                for status in ["400", "413", "414"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
                if op.get("security").is_some() {
                    for status in ["401", "403", "429", "503"] {
                        assert!(responses.contains_key(status), "{method} {path} {status}");
                    }
                }
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(responses.contains_key(status), "{method} {path} {status}");
                    }
                }
            }
        }
    }

    /// The bounds the document publishes are the ones `input` enforces.
    #[test]
    fn published_bounds_are_the_enforced_ones() {
        let doc = document();
        let schema = |name: &str| doc["components"]["schemas"][name].clone();
        let max_len = |s: &Value, field: &str| s["properties"][field]["maxLength"].as_u64();
        let inquiry = schema("InquiryBody");
        assert_eq!(
            max_len(&inquiry, "case_number"),
            Some(input::CASE_NUMBER_MAX as u64)
        );
        assert_eq!(
            inquiry["properties"]["officers"]["maxItems"].as_u64(),
            Some(input::OFFICERS_MAX as u64)
        );
        let subject = schema("SubjectBody");
        assert_eq!(max_len(&subject, "name"), Some(input::NAME_MAX as u64));
        let officer = schema("OfficerBody");
        assert_eq!(
            max_len(&officer, "credential_no"),
            Some(input::CREDENTIAL_MAX as u64)
        );
        let order = schema("OrderBody");
        assert_eq!(
            order["properties"]["amount_fen"]["maximum"].as_i64(),
            Some(input::AMOUNT_MAX_FEN)
        );
        assert_eq!(
            order["properties"]["documents"]["maxItems"].as_u64(),
            Some(input::DOCUMENTS_MAX as u64)
        );
        let document = schema("DocumentBody");
        assert_eq!(
            max_len(&document, "number"),
            Some(input::DOCUMENT_NUMBER_MAX as u64)
        );
        let asset = schema("AssetBody");
        assert_eq!(
            max_len(&asset, "account_number"),
            Some(input::ASSET_NUMBER_MAX as u64)
        );
        let plan = schema("PlanBody");
        assert_eq!(
            plan["properties"]["amount_fen"]["maximum"].as_i64(),
            Some(input::AMOUNT_MAX_FEN)
        );
        assert_eq!(max_len(&plan, "inquiry"), Some(input::ID_MAX as u64));
    }
}
