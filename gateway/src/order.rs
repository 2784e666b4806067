//! Control orders: the request body, the law's checks (domain.md), how an
//! order is stored, and how it reads back.
//!
//! The checks, each refusing with a `BrokenRule` (module `rules`) that
//! names what is at fault:
//! - terms: a freeze of deposits lasts at most one year, a seal of real
//!   estate at most three; the end date is not in the past;
//! - a renewal is made before the measure's end date and runs again up to
//!   the full term, from the day after that end date;
//! - documents: the ruling and the assistance notice, each with its number
//!   and SHA-256;
//! - officers: at least `orders.min_officers` (two by default), each with a
//!   work card and a credential number, no officer twice;
//! - amounts: positive; a deduction no larger than what the measure controls
//!   (less deductions already on their way);
//! - renew, release and deduct refer to a prior order of the same case,
//!   caller, agency and asset, whose measure is still in force.
//! - nothing more is asked of a measure while a release of it is on its
//!   way, nor a second renewal while one is; these and the amounts
//!   are judged in the order's turn (`OrderStore::lock_decision`).

use adapters::control::{ASSET_FIELDS, AssetRef, ControlAction, ControlRequest, DocumentRef};
use adapters::ids::CaseNumber;
use adapters::model::{AssetKind, Court, Fen, Officer};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::agencies::AgencyRegistry;
use crate::clock::term_end;
use crate::input;
use crate::inquiry::{
    OfficerBody, SubjectBody, normalise_officers, timestamp, validate_officers, validate_subject,
};
use crate::rules::BrokenRule;
use crate::store::{OrderPhase, OrderRecord, OrderStatus};

/// `POST /v1/orders` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "case_number": "(2024)甘0503执1234号",
    "subject": {"kind": "person", "name": "张三", "id_number": "360426199101010071"},
    "officers": [
        {"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"},
        {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"}
    ],
    "action": "freeze",
    "agency": "bank-b",
    "asset": {"account_number": "6217000010001234567"},
    "amount_fen": 100000,
    "end_date": "2027-05-26",
    "documents": [
        {"kind": "ruling", "number": "(2024)甘0503执1234号之一",
         "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
        {"kind": "assist_notice", "number": "协冻-1",
         "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"}
    ]
}))]
pub struct OrderBody {
    #[schema(max_length = 64, example = "(2024)甘0503执1234号")]
    pub case_number: String,
    #[serde(deserialize_with = "input::object")]
    pub subject: SubjectBody,
    /// At least `orders.min_officers` (two by default), no officer twice.
    #[serde(default, deserialize_with = "input::objects")]
    #[schema(min_items = 1, max_items = 10)]
    pub officers: Vec<OfficerBody>,
    pub action: ControlAction,
    /// Taken from the prior order when left out.
    #[serde(default)]
    #[schema(max_length = 64, example = "bank-b")]
    pub agency: Option<String>,
    #[serde(default, deserialize_with = "input::optional_object")]
    pub asset: Option<AssetBody>,
    /// Freeze and deduct of funds (deposits, payment accounts, provident
    /// funds): the amount in fen, 1 to 10^14.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000000000000_i64)]
    pub amount_fen: Option<i64>,
    /// Freeze of securities: how many units (shares), 1 to 10^14.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000000000000_i64)]
    pub quantity: Option<i64>,
    /// Freeze, seal and renewals: the measure's last day (UTC+8),
    /// `YYYY-MM-DD`.
    #[serde(default)]
    #[schema(max_length = 10, format = Date, example = "2027-05-26")]
    pub end_date: Option<String>,
    /// Renew, release and deduct: the order of the measure acted on.
    #[serde(default)]
    #[schema(max_length = 64, example = "ord_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub prior_order: Option<String>,
    /// The ruling and the assistance notice.
    #[serde(default, deserialize_with = "input::objects")]
    #[schema(max_items = 2)]
    pub documents: Vec<DocumentBody>,
}

/// The asset acted on, named as an inquiry's answer names it: by the
/// fields of the kind of asset the agency holds.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetBody {
    /// A bank account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64, example = "6217000010001234567")]
    pub account_number: Option<String>,
    /// A real-estate unit (不动产单元号).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub unit_number: Option<String>,
    /// A vehicle, by its VIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub vin: Option<String>,
    /// Securities: the securities account and the security held in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub securities_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub security_code: Option<String>,
    /// An online payment platform's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub payment_account: Option<String>,
    /// A housing provident fund account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub fund_account: Option<String>,
    /// Equity: the credit code of the company the subject holds shares in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub company_credit_code: Option<String>,
}

impl AssetBody {
    /// The value given for one of the asset fields.
    pub fn field(&self, name: &str) -> Option<&str> {
        match name {
            "account_number" => &self.account_number,
            "unit_number" => &self.unit_number,
            "vin" => &self.vin,
            "securities_account" => &self.securities_account,
            "security_code" => &self.security_code,
            "payment_account" => &self.payment_account,
            "fund_account" => &self.fund_account,
            "company_credit_code" => &self.company_credit_code,
            _ => &None,
        }
        .as_deref()
    }

    fn fields_mut(&mut self) -> [(&'static str, &mut Option<String>); 8] {
        [
            ("asset.account_number", &mut self.account_number),
            ("asset.unit_number", &mut self.unit_number),
            ("asset.vin", &mut self.vin),
            ("asset.securities_account", &mut self.securities_account),
            ("asset.security_code", &mut self.security_code),
            ("asset.payment_account", &mut self.payment_account),
            ("asset.fund_account", &mut self.fund_account),
            ("asset.company_credit_code", &mut self.company_credit_code),
        ]
    }

    /// The asset of `kind` this body names: exactly that kind's fields,
    /// each given, and no other.
    pub fn asset_of(&self, kind: AssetKind) -> Result<AssetRef, BrokenRule> {
        let wanted = AssetRef::field_names(kind);
        let wrongly = |field: &str| BrokenRule::AssetNamedWrongly {
            kind,
            field: format!("asset.{field}"),
        };
        if let Some(extra) = ASSET_FIELDS
            .iter()
            .find(|f| !wanted.contains(f) && self.field(f).is_some())
        {
            return Err(wrongly(extra));
        }
        AssetRef::build(kind, |name| self.field(name)).map_err(wrongly)
    }
}

/// The body's form of an asset.
pub fn asset_body(asset: &AssetRef) -> AssetBody {
    let mut body = AssetBody::default();
    for (name, value) in asset.fields() {
        for (field, slot) in body.fields_mut() {
            if field.strip_prefix("asset.") == Some(name) {
                *slot = Some(value.to_owned());
            }
        }
    }
    body
}

/// A document the order carries: its kind, number and SHA-256.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentBody {
    /// `ruling` or `assist_notice`.
    #[schema(max_length = 32, example = "ruling")]
    pub kind: String,
    #[schema(min_length = 1, max_length = 100, example = "(2024)甘0503执1234号之一")]
    pub number: String,
    #[schema(min_length = 64, max_length = 64, pattern = "^[0-9a-fA-F]{64}$")]
    pub sha256: String,
}

/// Cleans documents' text in place.
pub fn normalise_documents(documents: &mut [DocumentBody]) -> Result<(), BrokenRule> {
    input::bounded("documents", documents, input::DOCUMENTS_MAX)?;
    for (i, d) in documents.iter_mut().enumerate() {
        d.kind = input::text(&format!("documents[{i}].kind"), &d.kind, 32)?;
        d.number = input::text(
            &format!("documents[{i}].number"),
            &d.number,
            input::DOCUMENT_NUMBER_MAX,
        )?;
        d.sha256 = input::text(&format!("documents[{i}].sha256"), &d.sha256, 64)?;
    }
    Ok(())
}

impl input::Normalise for OrderBody {
    fn normalise(&mut self) -> Result<(), BrokenRule> {
        self.case_number = input::text("case_number", &self.case_number, input::CASE_NUMBER_MAX)?;
        self.subject.normalise("subject")?;
        normalise_officers(&mut self.officers)?;
        input::optional_text("agency", &mut self.agency, input::ID_MAX)?;
        if let Some(asset) = &mut self.asset {
            for (field, value) in asset.fields_mut() {
                input::optional_folded(field, value, input::ASSET_NUMBER_MAX)?;
            }
        }
        if let Some(fen) = self.amount_fen {
            input::amount("amount_fen", fen)?;
        }
        if let Some(units) = self.quantity {
            input::amount("quantity", units)?;
        }
        input::optional_text("end_date", &mut self.end_date, 16)?;
        input::optional_text("prior_order", &mut self.prior_order, input::ID_MAX)?;
        normalise_documents(&mut self.documents)
    }
}

/// The document kinds every control action carries.
pub const REQUIRED_DOCUMENTS: [&str; 2] = ["ruling", "assist_notice"];

/// Checks the documents: the ruling and the assistance notice, each once,
/// with a number and a SHA-256 (normalised to lower case).
pub fn validate_documents(documents: &[DocumentBody]) -> Result<Vec<DocumentRef>, BrokenRule> {
    let mut out = Vec::new();
    for (i, d) in documents.iter().enumerate() {
        let kind = d.kind.trim();
        if !REQUIRED_DOCUMENTS.contains(&kind) {
            return Err(BrokenRule::UnknownDocumentKind {
                index: i,
                kind: kind.to_owned(),
            });
        }
        if out.iter().any(|o: &DocumentRef| o.kind == kind) {
            return Err(BrokenRule::DocumentNamedTwice {
                index: i,
                kind: kind.to_owned(),
            });
        }
        let number = d.number.trim();
        if number.is_empty() {
            return Err(BrokenRule::DocumentNumberMissing {
                index: i,
                kind: kind.to_owned(),
            });
        }
        let digest = d.sha256.trim().to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BrokenRule::DocumentDigestInvalid {
                index: i,
                kind: kind.to_owned(),
            });
        }
        out.push(DocumentRef {
            kind: kind.to_owned(),
            number: number.to_owned(),
            sha256: digest,
        });
    }
    for kind in REQUIRED_DOCUMENTS {
        if !out.iter().any(|d| d.kind == kind) {
            return Err(BrokenRule::MissingDocument { kind });
        }
    }
    Ok(out)
}

/// Checks the officers of a control action: `minimum` of them, each with
/// both numbers, no officer named twice.
pub fn validate_control_officers(
    officers: &[OfficerBody],
    minimum: usize,
) -> Result<Vec<Officer>, BrokenRule> {
    if officers.len() < minimum {
        return Err(BrokenRule::TooFewControlOfficers { minimum });
    }
    validate_officers(officers, minimum)
}

pub fn parse_date(field: &str, text: &str) -> Result<NaiveDate, BrokenRule> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| BrokenRule::InvalidDate {
        field: field.to_owned(),
    })
}

/// What the law needs to know about the order's surroundings.
pub struct RuleContext<'a> {
    pub today: NaiveDate,
    pub min_officers: usize,
    pub agencies: &'a AgencyRegistry,
    pub caller: &'a str,
    /// The order `prior_order` names, and the order of its measure.
    pub prior: Option<&'a OrderRecord>,
    pub measure: Option<&'a OrderRecord>,
    /// Deductions from the measure not yet decided, in fen.
    pub pending_deductions_fen: i64,
}

/// A checked order, ready to store.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub case_number: CaseNumber,
    pub subject: adapters::model::Subject,
    pub officers: Vec<Officer>,
    pub action: ControlAction,
    pub agency: String,
    pub asset: AssetRef,
    pub amount_fen: Option<i64>,
    pub quantity: Option<i64>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub prior_order: Option<String>,
    pub measure_order: Option<String>,
    pub prior_request_number: Option<String>,
    pub documents: Vec<DocumentRef>,
}

/// The action a renewal or release acts on.
fn measure_action(action: ControlAction) -> Option<ControlAction> {
    match action {
        ControlAction::Renew | ControlAction::Release | ControlAction::Deduct => {
            Some(ControlAction::Freeze)
        }
        ControlAction::RenewSeal | ControlAction::ReleaseSeal => Some(ControlAction::Seal),
        ControlAction::Freeze | ControlAction::Seal => None,
    }
}

impl OrderBody {
    /// The id of the prior order, when the body names one.
    pub fn prior_id(&self) -> Option<&str> {
        self.prior_order
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    pub fn validate(&self, ctx: &RuleContext<'_>) -> Result<NewOrder, BrokenRule> {
        let case_number =
            CaseNumber::parse(&self.case_number).map_err(BrokenRule::InvalidCaseNumber)?;
        let (subject, _warnings) = validate_subject(&self.subject)?;
        let officers = validate_control_officers(&self.officers, ctx.min_officers)?;
        let documents = validate_documents(&self.documents)?;
        let action = self.action;

        // The prior order: required exactly for the actions that act on a
        // standing measure.
        let (prior, measure) = match (measure_action(action), self.prior_id()) {
            (None, Some(_)) => {
                return Err(BrokenRule::PriorOrderNotAllowed { action });
            }
            (None, None) => (None, None),
            (Some(_), None) => {
                return Err(BrokenRule::PriorOrderRequired { action });
            }
            (Some(wanted), Some(id)) => {
                let unknown = || BrokenRule::UnknownPriorOrder { id: id.to_owned() };
                let (Some(prior), Some(measure)) = (ctx.prior, ctx.measure) else {
                    return Err(unknown());
                };
                if prior.caller != ctx.caller {
                    return Err(unknown());
                }
                if prior.case_number != case_number.as_str() {
                    return Err(BrokenRule::PriorOrderOtherCase {
                        prior_case: prior.case_number.clone(),
                        case: case_number.to_string(),
                    });
                }
                if measure.action != wanted {
                    return Err(BrokenRule::PriorOrderWrongAction {
                        action,
                        wanted,
                        found: measure.action,
                    });
                }
                if measure.subject.identifier() != subject.identifier() {
                    return Err(BrokenRule::PriorOrderOtherSubject);
                }
                (Some(prior), Some(measure))
            }
        };

        // The agency and the asset: named, or taken from the prior order.
        let agency = match (&self.agency, measure) {
            (Some(a), Some(m)) if a.trim() != m.agency => {
                return Err(BrokenRule::AgencyNotTheMeasures {
                    measure_agency: m.agency.clone(),
                    named: a.clone(),
                });
            }
            (Some(a), _) => a.trim().to_owned(),
            (None, Some(m)) => m.agency.clone(),
            (None, None) => {
                return Err(BrokenRule::AgencyRequired);
            }
        };
        let link = ctx
            .agencies
            .get(&agency)
            .ok_or_else(|| BrokenRule::UnknownAgency {
                field: "agency".to_owned(),
                agency: agency.clone(),
            })?;
        if !link.config().enabled {
            return Err(BrokenRule::AgencyDisabled {
                field: "agency".to_owned(),
                agency,
            });
        }
        // The kind of asset the agency holds decides what may be done to
        // it (the law's rules per kind), how the asset is named, and how
        // long a measure may run.
        let kind = link.config().asset_kind();
        let kind_rules = crate::rules::kind_rules(kind);
        if !kind_rules.actions.contains(&action) {
            return Err(BrokenRule::AgencyHoldsNoSuchAsset {
                action,
                held: kind,
                agency,
            });
        }
        let dialect = &link.agency.dialect;
        if !dialect.supports(action) {
            return Err(BrokenRule::ActionNotTaken {
                agency,
                dialect: dialect.name().to_string(),
                action,
            });
        }
        if !dialect.can_query_control() {
            return Err(BrokenRule::AgencyCannotBeQueried { agency });
        }
        let asset = match (&self.asset, measure) {
            (Some(body), Some(m)) => {
                if body.asset_of(m.asset.kind()).ok().as_ref() != Some(&m.asset) {
                    return Err(BrokenRule::AssetNotTheMeasures);
                }
                m.asset.clone()
            }
            (Some(body), None) => body.asset_of(kind)?,
            (None, Some(m)) => m.asset.clone(),
            (None, None) => {
                return Err(BrokenRule::AssetRequired);
            }
        };
        if asset.kind() != kind {
            return Err(BrokenRule::Inconsistent(format!(
                "the measure's asset is a {}, but agency {agency} holds {}",
                asset.kind().as_str(),
                kind.as_str()
            )));
        }

        // Amounts: funds are frozen and deducted by amount, securities
        // frozen by quantity, equity frozen whole.
        let (amount_fen, quantity) = match (action, kind) {
            (ControlAction::Freeze, AssetKind::Securities) => {
                if self.amount_fen.is_some() {
                    return Err(BrokenRule::AmountNotForKind { kind });
                }
                let units = self.quantity.ok_or(BrokenRule::QuantityRequired)?;
                if units <= 0 {
                    return Err(BrokenRule::QuantityNotPositive);
                }
                (None, Some(units))
            }
            (ControlAction::Freeze, AssetKind::Equity) => {
                if self.amount_fen.is_some() {
                    return Err(BrokenRule::AmountNotForKind { kind });
                }
                if self.quantity.is_some() {
                    return Err(BrokenRule::QuantityNotAllowed { action, kind });
                }
                (None, None)
            }
            (ControlAction::Freeze | ControlAction::Deduct, _) => {
                if self.quantity.is_some() {
                    return Err(BrokenRule::QuantityNotAllowed { action, kind });
                }
                let amount = self
                    .amount_fen
                    .ok_or(BrokenRule::AmountRequired { action })?;
                if amount <= 0 {
                    return Err(BrokenRule::AmountNotPositive);
                }
                (Some(amount), None)
            }
            _ => {
                if self.amount_fen.is_some() {
                    return Err(BrokenRule::AmountNotAllowed { action });
                }
                if self.quantity.is_some() {
                    return Err(BrokenRule::QuantityNotAllowed { action, kind });
                }
                (None, None)
            }
        };
        if action == ControlAction::Deduct
            && let (Some(amount), Some(m)) = (amount_fen, measure)
        {
            let controlled = m.controlled_fen.unwrap_or(0);
            let available = controlled - ctx.pending_deductions_fen;
            if !m.status.in_force() {
                return Err(BrokenRule::DeductionFromFreezeNotInForce { status: m.status });
            }
            if amount > available {
                return Err(BrokenRule::DeductionExceedsFreeze {
                    amount_fen: amount,
                    available_fen: available.max(0),
                    after_pending: ctx.pending_deductions_fen > 0,
                });
            }
        }

        // Dates and terms.
        let today = ctx.today;
        let months = kind_rules.term_months;
        let (start_date, end_date) = match action {
            ControlAction::Freeze | ControlAction::Seal => {
                let end = self
                    .end_date
                    .as_deref()
                    .ok_or(BrokenRule::EndDateRequired { action })?;
                let end = parse_date("end_date", end)?;
                check_term(action, kind, today, end, months)?;
                (Some(today), Some(end))
            }
            ControlAction::Renew | ControlAction::RenewSeal => {
                let Some(m) = measure else {
                    return Err(BrokenRule::Inconsistent(
                        "renewal without its measure".to_owned(),
                    ));
                };
                if !m.status.is_live() {
                    return Err(BrokenRule::RenewalOfMeasureNotLive { status: m.status });
                }
                let current_end = m
                    .measure_end
                    .as_deref()
                    .or(m.end_date.as_deref())
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                    .ok_or(BrokenRule::MeasureEndUnknown)?;
                if today > current_end {
                    return Err(BrokenRule::RenewalTooLate { ended: current_end });
                }
                let end = self
                    .end_date
                    .as_deref()
                    .ok_or(BrokenRule::RenewalEndDateRequired)?;
                let end = parse_date("end_date", end)?;
                let start = current_end.succ_opt().unwrap_or(current_end);
                if end < start {
                    return Err(BrokenRule::RenewalEndsTooEarly { current_end });
                }
                check_term(action, kind, start, end, months)?;
                (Some(start), Some(end))
            }
            ControlAction::Release | ControlAction::ReleaseSeal | ControlAction::Deduct => {
                if self.end_date.is_some() {
                    return Err(BrokenRule::EndDateNotAllowed { action });
                }
                if let Some(m) = measure
                    && !m.status.is_live()
                {
                    return Err(BrokenRule::MeasureNotLive { status: m.status });
                }
                (None, None)
            }
        };

        Ok(NewOrder {
            case_number,
            subject,
            officers,
            action,
            agency,
            asset,
            amount_fen,
            quantity,
            start_date,
            end_date,
            prior_order: prior.map(|p| p.id.clone()),
            measure_order: measure.map(|m| m.id.clone()),
            prior_request_number: measure.map(|m| m.request_number.clone()),
            documents,
        })
    }
}

fn check_term(
    action: ControlAction,
    kind: AssetKind,
    start: NaiveDate,
    end: NaiveDate,
    months: u32,
) -> Result<(), BrokenRule> {
    if end < start {
        return Err(BrokenRule::EndBeforeStart { start, end });
    }
    let limit = term_end(start, months).unwrap_or(start);
    if end > limit {
        return Err(BrokenRule::TermTooLong {
            action,
            kind,
            start,
            limit,
            end,
        });
    }
    Ok(())
}

/// The SHA-256 of a JSON body in canonical form (keys sorted, no spaces):
/// the same request sent with other whitespace or key order is the same.
pub fn body_digest(raw: &[u8]) -> String {
    let canonical = serde_json::from_slice::<Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok())
        .unwrap_or_else(|| raw.to_vec());
    hex::encode(Sha256::digest(canonical))
}

/// The request number of an order: stable across retries and restarts,
/// because it is made from the order's id, never from an attempt.
pub fn request_number(order_id: &str) -> String {
    format!("K{}", order_id.trim_start_matches("ord_"))
}

/// The order as stored, accepted and due at once.
#[allow(clippy::too_many_arguments)]
pub fn new_record(
    id: &str,
    caller: &str,
    idempotency_key: &str,
    body_sha256: &str,
    court: &Court,
    order: &NewOrder,
    plan_id: Option<&str>,
    now_ms: i64,
) -> OrderRecord {
    let date = |d: Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    OrderRecord {
        id: id.to_owned(),
        caller: caller.to_owned(),
        idempotency_key: idempotency_key.to_owned(),
        body_sha256: body_sha256.to_owned(),
        case_number: order.case_number.as_str().to_owned(),
        subject: order.subject.clone(),
        officers: order.officers.clone(),
        court: court.clone(),
        documents: order.documents.clone(),
        action: order.action,
        agency: order.agency.clone(),
        asset: order.asset.clone(),
        amount_fen: order.amount_fen,
        quantity: order.quantity,
        start_date: date(order.start_date),
        end_date: date(order.end_date),
        prior_order: order.prior_order.clone(),
        measure_order: order.measure_order.clone().unwrap_or_else(|| id.to_owned()),
        prior_request_number: order.prior_request_number.clone(),
        plan_id: plan_id.map(str::to_owned),
        request_number: request_number(id),
        status: OrderStatus::Accepted,
        phase: OrderPhase::Send,
        send_attempts: 0,
        steps: 0,
        ticket: None,
        controlled_fen: None,
        shortfall_fen: None,
        controlled_quantity: None,
        shortfall_quantity: None,
        deducted_fen: 0,
        reason: None,
        queue_position: None,
        measure_start: None,
        measure_end: None,
        agency_reference: None,
        detail: None,
        warned_end: None,
        due_at_ms: now_ms,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        decided_at_ms: None,
        acknowledged_documents: None,
        documents_mismatch: false,
    }
}

/// Rebuilds the message of a stored order (right away or after a restart).
pub fn stored_request(order: &OrderRecord) -> Result<(ControlRequest, Court), String> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| format!("stored order {}: {what}: {e}", order.id);
    let case_number =
        CaseNumber::parse(&order.case_number).map_err(|e| corrupt("case number", &e))?;
    let date = |d: &Option<String>| {
        d.as_deref()
            .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
            .transpose()
            .map_err(|e| corrupt("date", &e))
    };
    Ok((
        ControlRequest {
            request_number: order.request_number.clone(),
            case_number,
            subject: order.subject.clone(),
            officers: order.officers.clone(),
            action: order.action,
            asset: order.asset.clone(),
            amount_fen: order.amount_fen.map(Fen),
            quantity: order.quantity,
            start_date: date(&order.start_date)?,
            end_date: date(&order.end_date)?,
            prior_request_number: order.prior_request_number.clone(),
            documents: order.documents.clone(),
        },
        order.court.clone(),
    ))
}

/// How long a request waits for its turn (`OrderStore::lock_decision`)
/// before it is answered 503: decisions take milliseconds, so only a
/// stuck store makes one wait this long.
pub const DECISION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The turn key of an asset at an agency: every order on it (a freeze and
/// everything acting on that freeze) is decided in this turn.
pub fn asset_turn_key(agency: &str, asset: &AssetRef) -> String {
    let fields: Vec<String> = asset
        .fields()
        .into_iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    format!("asset:{}:{}", agency.trim(), fields.join(":"))
}

/// The turn key of a caller's idempotency key, for `what` ("order" or
/// "freeze_plan"): the first request under it decides, the others replay.
/// (Keys that read alike across the colons only share a turn.)
pub fn idempotency_turn_key(what: &str, caller: &str, key: &str) -> String {
    format!("key:{what}:{caller}:{key}")
}

/// The turn keys of an order: its idempotency key and its asset, which an
/// order acting on a measure takes from its prior order (as stored: the
/// measure's asset, whatever the body says).
pub fn turn_keys(
    caller: &str,
    key: &str,
    body: &OrderBody,
    prior: Option<&OrderRecord>,
) -> Vec<String> {
    let asset = match (prior, &body.agency, &body.asset) {
        (Some(p), _, _) => Some(asset_turn_key(&p.agency, &p.asset)),
        // The body's asset, by whichever kind's fields it gives (an asset
        // named wrongly is refused anyway).
        (None, Some(agency), Some(asset)) => {
            AssetRef::infer(|name| asset.field(name)).map(|a| asset_turn_key(agency, &a))
        }
        (None, _, _) => None,
    };
    let mut keys = vec![idempotency_turn_key("order", caller, key)];
    keys.extend(asset);
    keys
}

/// Deductions from a measure not yet decided, in fen.
pub fn pending_deductions_fen(measure_orders: &[OrderRecord]) -> i64 {
    measure_orders
        .iter()
        .filter(|o| o.action == ControlAction::Deduct && !o.status.is_decided())
        .filter_map(|o| o.amount_fen)
        .sum()
}

/// A release of the measure, on its way or done, ends what may be asked of
/// it: a second release, a deduction or a renewal is refused. On its way,
/// `ReleasePending` (wait for its answer: if the agency refuses it, the
/// measure stands and may be acted on again); done, `MeasureReleased`
/// (the measure is not in force). Judged in the order's turn, against the orders
/// of its measure (`measure_orders`).
pub fn check_no_release_of_measure(
    action: ControlAction,
    measure_orders: &[OrderRecord],
) -> Result<(), BrokenRule> {
    if measure_action(action).is_none() {
        return Ok(());
    }
    let releases = measure_orders.iter().filter(|o| {
        matches!(
            o.action,
            ControlAction::Release | ControlAction::ReleaseSeal
        )
    });
    for r in releases {
        if !r.status.is_decided() {
            return Err(BrokenRule::ReleasePending {
                release: r.id.clone(),
            });
        }
        if r.status.in_force() {
            return Err(BrokenRule::MeasureReleased {
                release: r.id.clone(),
            });
        }
    }
    Ok(())
}

/// One renewal of a measure at a time: a renewal runs from the measure's
/// end date as the agency last stated it, which a renewal on its way is
/// about to move. Refused (`RenewalPending`) until that one is
/// answered; then renew again from the new end date, if still needed.
pub fn check_no_renewal_on_its_way(
    action: ControlAction,
    measure_orders: &[OrderRecord],
) -> Result<(), BrokenRule> {
    if !matches!(action, ControlAction::Renew | ControlAction::RenewSeal) {
        return Ok(());
    }
    match measure_orders
        .iter()
        .find(|o| o.action == action && !o.status.is_decided())
    {
        Some(r) => Err(BrokenRule::RenewalPending {
            renewal: r.id.clone(),
        }),
        None => Ok(()),
    }
}

/// The order as the API shows it.
pub fn view(order: &OrderRecord) -> Value {
    let is_measure = order.measure_order == order.id;
    let (start, end) = if is_measure {
        (
            order.measure_start.clone().or(order.start_date.clone()),
            order.measure_end.clone().or(order.end_date.clone()),
        )
    } else {
        (order.start_date.clone(), order.end_date.clone())
    };
    let asset: serde_json::Map<String, Value> = order
        .asset
        .fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let mut v = json!({
        "id": order.id,
        "action": order.action,
        "status": order.status,
        "case_number": order.case_number,
        "subject": {"kind": order.subject.kind(), "name": order.subject.name()},
        "agency": order.agency,
        "asset_kind": order.asset.kind(),
        "asset": asset,
        "request_number": order.request_number,
        "requested_fen": order.amount_fen,
        "controlled_fen": order.controlled_fen,
        "shortfall_fen": order.shortfall_fen,
        "reason": order.reason,
        "queue_position": order.queue_position,
        "start_date": start,
        "end_date": end,
        "agency_reference": order.agency_reference,
        "prior_order": order.prior_order,
        "created_at": timestamp(order.created_at_ms),
        "updated_at": timestamp(order.updated_at_ms),
        "decided_at": order.decided_at_ms.map(timestamp),
        "detail": order.detail,
    });
    if let Some(map) = v.as_object_mut() {
        if order.action == ControlAction::Freeze {
            map.insert("deducted_fen".into(), json!(order.deducted_fen));
        }
        if let Some(plan) = &order.plan_id {
            map.insert("freeze_plan".into(), json!(plan));
        }
        if order.amount_fen.is_none() {
            map.remove("requested_fen");
        }
        if let Some(units) = order.quantity {
            map.insert("requested_quantity".into(), json!(units));
            map.insert(
                "controlled_quantity".into(),
                json!(order.controlled_quantity),
            );
            map.insert("shortfall_quantity".into(), json!(order.shortfall_quantity));
        }
        map.insert("documents".into(), json!(order.documents));
        if let Some(acked) = &order.acknowledged_documents {
            map.insert("acknowledged_documents".into(), json!(acked));
            map.insert("documents_match".into(), json!(!order.documents_mismatch));
        }
    }
    v
}
