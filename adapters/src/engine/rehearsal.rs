//! The rehearsal: when a dialect loads, every request template is rendered
//! against sample requests, through the very code that renders real ones,
//! and each body is parsed back (XML from its bytes, by its declaration;
//! JSON). A template that names something the model lacks, or makes a body
//! that is not well-formed, fails the load, not the first inquiry.
//!
//! This is what lets real messages go out without being parsed again:
//! values are always escaped for the format (`template.rs`), so whether a
//! body is well-formed depends on the template's own text and branches,
//! and the samples take each branch a request can: one subject and
//! several, people and organisations, names full of characters that need
//! escaping, every control action, with and without the values a measure
//! may lack.

use minijinja::Value;

use super::body::Charset;
use super::spec::Format;
use super::{CompiledDialect, CompiledOperation, context};
use crate::control::{AssetRef, ControlAction, ControlRequest, DocumentRef};
use crate::dialect::{Envelope, InquiryRequest};
use crate::ids::{CaseNumber, CreditCode, IdNumber};
use crate::model::{Court, Fen, Officer, Subject};
use crate::xml::{decode_document, encoding_for_label, parse_tree};

/// Where the rehearsal pretends the gateway takes callbacks.
const SAMPLE_CALLBACK_URL: &str = "https://gateway.example/v1/callbacks/sample";

/// A name with every character XML and JSON escape.
const AWKWARD_NAME: &str = "张三 <&> \"O'Neil\" \\";

impl CompiledDialect {
    /// Rehearses every operation; every problem is returned.
    pub(super) fn rehearse(&self) -> Result<(), Vec<String>> {
        let label = self.encoding.as_deref().unwrap_or("UTF-8");
        let Some(encoding) = encoding_for_label(label) else {
            return Err(vec![format!("encoding {label:?} is unknown")]);
        };
        let charset = Charset::new(label, encoding);
        let (envelope, items) = match samples() {
            Ok(s) => s,
            Err(e) => return Err(vec![format!("the rehearsal's samples: {e}")]),
        };
        let mut errors = Vec::new();
        let mut note = |result: Result<(), String>, at: &str| {
            if let Err(e) = result {
                errors.push(format!("{at}{e}"));
            }
        };
        let batch = if self.max_batch > 1 { 2 } else { 1 };
        let ctx = context::inquiry(&envelope, &items[..batch], label);
        note(self.rehearse_one(&self.inquiry, &ctx, &charset, false), "");
        // One subject of each kind, alone.
        for item in &items {
            let ctx = context::inquiry(&envelope, std::slice::from_ref(item), label);
            note(self.rehearse_one(&self.inquiry, &ctx, &charset, false), "");
        }
        // A poll without the agency's ticket may not render (an agency
        // that needs one always gives one), but must not be malformed.
        if let Some(poll) = &self.poll {
            for (ticket, lenient) in [(Some("T-sample"), false), (None, true)] {
                let ctx = context::poll("Q-sample", ticket, label);
                note(self.rehearse_one(poll, &ctx, &charset, lenient), "");
            }
        }
        if let Some(poll) = self.control.as_ref().and_then(|c| c.poll.as_ref()) {
            for (ticket, lenient) in [(Some("T-sample"), false), (None, true)] {
                let ctx = context::poll("K-sample", ticket, label);
                note(self.rehearse_one(poll, &ctx, &charset, lenient), "");
            }
        }
        if let Some(control) = &self.control {
            for action in &control.actions {
                let at = format!("control ({}): ", action.as_str());
                // The dialect may serve any kind of asset: its templates
                // render for each.
                for asset in sample_assets() {
                    let full = sample_control(*action, asset, &items[0], true);
                    let ctx = context::control(&envelope, &full, label);
                    note(
                        self.rehearse_one(&control.operation, &ctx, &charset, false),
                        &at,
                    );
                }
                // Without the values a measure may lack: a template that
                // cannot render then is refused at run time, in so many
                // words; one that renders must make a well-formed body.
                let asset = AssetRef::BankAccount {
                    account_number: "6222020200112233445".into(),
                };
                let sparse = sample_control(*action, asset, &items[0], false);
                let ctx = context::control(&envelope, &sparse, label);
                note(
                    self.rehearse_one(&control.operation, &ctx, &charset, true),
                    &at,
                );
            }
        }
        errors.dedup();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Renders one request and parses its body back. `lenient`: a template
    /// that does not render is no error (only a malformed body is).
    fn rehearse_one<R>(
        &self,
        op: &CompiledOperation<R>,
        ctx: &Value,
        charset: &Charset,
        lenient: bool,
    ) -> Result<(), String> {
        let wire = match self.request(op, ctx, charset) {
            Ok(wire) => wire,
            Err(_) if lenient => return Ok(()),
            Err(e) => return Err(e),
        };
        if op.body.is_none() {
            return Ok(());
        }
        let name = op.name;
        match self.format {
            Format::Json => serde_json::from_slice::<serde::de::IgnoredAny>(&wire.body)
                .map(drop)
                .map_err(|e| format!("{name}.request.body does not render to JSON: {e}")),
            Format::Xml => decode_document(&wire.body)
                .and_then(|text| parse_tree(&text))
                .map(drop)
                .map_err(|e| format!("{name}.request.body does not render to XML: {e}")),
        }
    }
}

fn officers() -> Vec<Officer> {
    vec![
        Officer {
            name: "李明".into(),
            work_card_no: "G620503001".into(),
            credential_no: "ZX620503001".into(),
        },
        Officer {
            name: "赵强".into(),
            work_card_no: "G620503002".into(),
            credential_no: "ZX620503002".into(),
        },
    ]
}

/// A batch's envelope, and a person and an organisation to ask about.
fn samples() -> Result<(Envelope, Vec<InquiryRequest>), crate::ids::IdError> {
    let envelope = Envelope {
        court: Court {
            code: "甘0503".into(),
            name: "天水市麦积区人民法院".into(),
        },
        batch_number: "P-sample".into(),
        callback_url: Some(SAMPLE_CALLBACK_URL.into()),
    };
    let case_number = CaseNumber::parse("(2024)甘0503执1234号")?;
    let items = vec![
        InquiryRequest {
            request_number: "Q-sample-1".into(),
            case_number: case_number.clone(),
            subject: Subject::Person {
                name: AWKWARD_NAME.into(),
                id_number: IdNumber::parse("360426199101010071")?,
            },
            officers: officers(),
        },
        InquiryRequest {
            request_number: "Q-sample-2".into(),
            case_number,
            subject: Subject::Organization {
                name: "示例有限公司".into(),
                credit_code: CreditCode::parse("91110000600037341L")?,
            },
            officers: officers(),
        },
    ];
    Ok((envelope, items))
}

/// An asset of every kind.
fn sample_assets() -> [AssetRef; 7] {
    [
        AssetRef::BankAccount {
            account_number: "6222020200112233445".into(),
        },
        AssetRef::RealEstate {
            unit_number: "620503001001GB00001F00010001".into(),
        },
        AssetRef::Vehicle {
            vin: "LSVAU2180N2183294".into(),
        },
        AssetRef::Securities {
            securities_account: "A123456789".into(),
            security_code: "600519".into(),
        },
        AssetRef::PaymentAccount {
            payment_account: "2088102146225135".into(),
        },
        AssetRef::ProvidentFund {
            fund_account: "GJJ620500012345".into(),
        },
        AssetRef::Equity {
            company_credit_code: "91620503MA74XK3P2B".into(),
        },
    ]
}

/// A control measure of `action` on `item`'s subject: with every value
/// filled (`full`), or with only those every measure has.
fn sample_control(
    action: ControlAction,
    asset: AssetRef,
    item: &InquiryRequest,
    full: bool,
) -> ControlRequest {
    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).filter(|_| full);
    ControlRequest {
        request_number: "K-sample-1".into(),
        case_number: item.case_number.clone(),
        subject: item.subject.clone(),
        officers: item.officers.clone(),
        action,
        asset,
        amount_fen: full.then_some(Fen(50_000_000)),
        quantity: full.then_some(12_000),
        start_date: date(2026, 11, 27),
        end_date: date(2027, 11, 26),
        prior_request_number: full.then(|| "K-sample-0".into()),
        documents: if full {
            vec![
                DocumentRef {
                    kind: "ruling".into(),
                    number: "(2024)甘0503执1234号之一".into(),
                    sha256: "0".repeat(64),
                },
                DocumentRef {
                    kind: "assist_notice".into(),
                    number: "协冻-1".into(),
                    sha256: "1".repeat(64),
                },
            ]
        } else {
            Vec::new()
        },
    }
}
