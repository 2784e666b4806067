//! What request templates see: one context per message, built once from the
//! request and shared by every template of the message (path, content
//! type, body). Values are copied into the template engine's values once
//! here; nothing goes through an intermediate JSON tree.
//!
//! The names here are the contract the dialect files' comments describe
//! (`batch_number`, `court.code`, `items[].subject.id_number`, ...): a name
//! changed here breaks every dialect that uses it, which the rehearsal at
//! load time reports.

use minijinja::context;
use minijinja::value::Value;

use crate::control::{ControlRequest, DocumentRef};
use crate::dialect::{Envelope, InquiryRequest};
use crate::model::{Court, Officer, Subject};

/// The context of an inquiry message: `item` is the first of `items`, for
/// dialects that carry one subject a message.
pub(super) fn inquiry(envelope: &Envelope, items: &[InquiryRequest], encoding: &str) -> Value {
    // The subjects of a batch mostly share their case and their officers:
    // the values made for one item serve the next when they are the same.
    let mut last: Option<(&InquiryRequest, Value, Value)> = None;
    let items: Vec<Value> = items
        .iter()
        .map(|item| {
            let (case_number, officers) = match &last {
                Some((prev, case_number, officers)) => (
                    if prev.case_number == item.case_number {
                        case_number.clone()
                    } else {
                        Value::from(item.case_number.as_str())
                    },
                    if prev.officers == item.officers {
                        officers.clone()
                    } else {
                        Value::from(officers_of(&item.officers))
                    },
                ),
                None => (
                    Value::from(item.case_number.as_str()),
                    Value::from(officers_of(&item.officers)),
                ),
            };
            let value = context! {
                request_number => item.request_number.as_str(),
                case_number => case_number.clone(),
                subject => subject(&item.subject),
                officers => officers.clone(),
            };
            last = Some((item, case_number, officers));
            value
        })
        .collect();
    let item = items.first().cloned().unwrap_or(Value::from(()));
    context! {
        batch_number => envelope.batch_number.as_str(),
        callback_url => envelope.callback_url.as_deref(),
        court => court(&envelope.court),
        encoding,
        item,
        items,
    }
}

/// The context of a control measure's message.
pub(super) fn control(envelope: &Envelope, request: &ControlRequest, encoding: &str) -> Value {
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    let item = context! {
        request_number => request.request_number.as_str(),
        case_number => request.case_number.as_str(),
        subject => subject(&request.subject),
        officers => officers_of(&request.officers),
        action => request.action.as_str(),
        asset_kind => request.asset.kind().as_str(),
        account_number => request.asset.field("account_number"),
        unit_number => request.asset.field("unit_number"),
        vin => request.asset.field("vin"),
        securities_account => request.asset.field("securities_account"),
        security_code => request.asset.field("security_code"),
        payment_account => request.asset.field("payment_account"),
        fund_account => request.asset.field("fund_account"),
        company_credit_code => request.asset.field("company_credit_code"),
        amount_fen => request.amount_fen.map(|f| f.0),
        quantity => request.quantity,
        start_date => date(request.start_date),
        end_date => date(request.end_date),
        prior_request_number => request.prior_request_number.as_deref(),
        documents => request.documents.iter().map(document).collect::<Vec<_>>(),
    };
    context! {
        batch_number => envelope.batch_number.as_str(),
        court => court(&envelope.court),
        encoding,
        item,
    }
}

/// The context of a poll for a request number's result (inquiries and
/// control measures alike).
pub(super) fn poll(request_number: &str, ticket: Option<&str>, encoding: &str) -> Value {
    context! { request_number, ticket, encoding }
}

fn court(court: &Court) -> Value {
    context! { code => court.code.as_str(), name => court.name.as_str() }
}

fn subject(subject: &Subject) -> Value {
    let kind = match subject {
        Subject::Person { .. } => "person",
        Subject::Organization { .. } => "organization",
    };
    context! { kind, name => subject.name(), id_number => subject.identifier() }
}

fn officers_of(officers: &[Officer]) -> Vec<Value> {
    officers
        .iter()
        .map(|o| {
            context! {
                name => o.name.as_str(),
                work_card_no => o.work_card_no.as_str(),
                credential_no => o.credential_no.as_str(),
            }
        })
        .collect()
}

fn document(document: &DocumentRef) -> Value {
    context! {
        kind => document.kind.as_str(),
        number => document.number.as_str(),
        sha256 => document.sha256.as_str(),
    }
}
