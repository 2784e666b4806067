//! The rules a request breaks: what the law (domain.md) and the gateway's
//! input rules refuse in an inquiry, a control order or a freeze plan, each
//! with the values that make it what it is.
//!
//! A broken rule is a fact about the request, not an HTTP answer: the API
//! turns it into its status, `code`, `field` and details
//! (`api/domain_errors.rs`); the message is this type's `Display`. What
//! this module must never do: know about status codes or response bodies.

use adapters::control::ControlAction;
use adapters::ids::IdError;
use adapters::model::{AssetKind, Fen};
use chrono::NaiveDate;

use crate::input::AMOUNT_MAX_FEN;
use crate::store::{OrderStatus, SkippedAccount};

/// Why a request was refused by a rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BrokenRule {
    // Text and lists (module `input`).
    #[error(
        "{field} contains the character U+{:04X}, which text here may not contain \
         (control, invisible, direction-changing or unassigned characters)",
        u32::from(*.character)
    )]
    InvalidCharacters { field: String, character: char },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: String, max: usize },
    #[error("{field} must not be empty")]
    Empty { field: String },
    #[error("{field} names {count} items; at most {max} are allowed")]
    TooMany {
        field: String,
        count: usize,
        max: usize,
    },
    #[error("{field} may be at most {AMOUNT_MAX_FEN} fen")]
    AmountTooLarge { field: String },
    #[error("{field} must be a date, YYYY-MM-DD")]
    InvalidDate { field: String },

    // The case and the subject.
    #[error("{0}")]
    InvalidCaseNumber(IdError),
    #[error("the subject's name is required")]
    SubjectNameRequired,
    #[error("a person is identified by id_number, not credit_code")]
    PersonWithCreditCode,
    #[error("a person needs an id_number")]
    IdNumberRequired,
    #[error("{0}")]
    InvalidIdNumber(IdError),
    #[error("an organization is identified by credit_code, not id_number")]
    OrganizationWithIdNumber,
    #[error("an organization needs a credit_code")]
    CreditCodeRequired,
    #[error("{0}")]
    InvalidCreditCode(IdError),

    // Officers.
    #[error("at least {minimum} officer(s) must be named, with work card and credential numbers")]
    TooFewOfficers { minimum: usize },
    #[error(
        "a control measure needs {minimum} officers, each with a work card number and an \
         enforcement credential number"
    )]
    TooFewControlOfficers { minimum: usize },
    /// `number` is `credential_no` or `work_card_no`.
    #[error(
        "officers[{index}] is an officer named before (the same {number}); each officer acts \
         once, on their own credential"
    )]
    DuplicateOfficer { index: usize, number: &'static str },

    // Documents.
    #[error("document kind {kind:?} is unknown; use ruling or assist_notice")]
    UnknownDocumentKind { index: usize, kind: String },
    #[error("the {kind} is named twice")]
    DocumentNamedTwice { index: usize, kind: String },
    #[error("the {kind} needs its document number")]
    DocumentNumberMissing { index: usize, kind: String },
    #[error("the {kind}'s sha256 must be 64 hexadecimal digits")]
    DocumentDigestInvalid { index: usize, kind: String },
    /// `kind` is one of `order::REQUIRED_DOCUMENTS`.
    #[error(
        "a control order must carry {}, with its number and sha256",
        document_title(.kind)
    )]
    MissingDocument { kind: &'static str },

    // Agencies and asset kinds (`field` is `agency` in an order,
    // `agencies[i]` in an inquiry).
    #[error("no agency {agency:?} is configured")]
    UnknownAgency { field: String, agency: String },
    #[error("agency {agency:?} is disabled")]
    AgencyDisabled { field: String, agency: String },
    #[error("name at least one asset kind, or leave it out")]
    NoAssetKinds,
    #[error("agency {agency:?} does not hold the requested asset kinds")]
    AgencyHoldsOtherKinds { index: usize, agency: String },
    #[error("no enabled agency serves the requested asset kinds")]
    NoAgencyServes,

    // An order's prior order.
    #[error("a {} starts a measure and names no prior order", .action.as_str())]
    PriorOrderNotAllowed { action: ControlAction },
    #[error("a {} must name the prior order of the measure it acts on", .action.as_str())]
    PriorOrderRequired { action: ControlAction },
    #[error("no order {id:?} of this caller exists")]
    UnknownPriorOrder { id: String },
    #[error("the prior order belongs to case {prior_case}, not {case}")]
    PriorOrderOtherCase { prior_case: String, case: String },
    #[error(
        "a {} acts on a {}, but the prior order is a {}",
        .action.as_str(),
        .wanted.as_str(),
        .found.as_str()
    )]
    PriorOrderWrongAction {
        action: ControlAction,
        wanted: ControlAction,
        found: ControlAction,
    },
    #[error("the prior order's measure is on another subject")]
    PriorOrderOtherSubject,

    // An order's agency and asset.
    #[error("the prior order's measure is at {measure_agency}, not {named}")]
    AgencyNotTheMeasures {
        measure_agency: String,
        named: String,
    },
    #[error("name the agency to act at")]
    AgencyRequired,
    #[error("the asset differs from the prior order's")]
    AssetNotTheMeasures,
    #[error(
        "name the asset as an inquiry's answer names it: {{\"account_number\"}} at a bank, \
         {{\"unit_number\"}} at a real-estate registry, {{\"vin\"}} at a vehicle registry, \
         {{\"securities_account\", \"security_code\"}} at the depository, \
         {{\"payment_account\"}} at a payment platform, {{\"fund_account\"}} at a provident fund \
         centre, {{\"company_credit_code\"}} at a market-regulation registry"
    )]
    AssetRequired,
    #[error(
        "agency {agency:?} holds {}, which takes {}, not a {}",
        .held.as_str(),
        action_list(kind_rules(*.held).actions),
        .action.as_str()
    )]
    AgencyHoldsNoSuchAsset {
        action: ControlAction,
        held: AssetKind,
        agency: String,
    },
    #[error("agency {agency:?} (dialect {dialect}) takes no {} orders", .action.as_str())]
    ActionNotTaken {
        agency: String,
        dialect: String,
        action: ControlAction,
    },
    #[error(
        "agency {agency:?} cannot be asked about a measure's state, so an order to it could not \
         be delivered exactly once"
    )]
    AgencyCannotBeQueried { agency: String },
    /// `field` is the asset field missing, or given but not the kind's
    /// (`asset.vin` ...).
    #[error(
        "an asset of kind {} is named by {} (and nothing else); {field} is wrong or missing",
        .kind.as_str(),
        adapters::control::AssetRef::field_names(*.kind).join(" and ")
    )]
    AssetNamedWrongly { kind: AssetKind, field: String },

    // Amounts.
    #[error("a {} states its amount in fen", .action.as_str())]
    AmountRequired { action: ControlAction },
    #[error("amount_fen must be positive")]
    AmountNotPositive,
    #[error("a {} states no amount", .action.as_str())]
    AmountNotAllowed { action: ControlAction },
    #[error("{}", amount_rule(*.kind))]
    AmountNotForKind { kind: AssetKind },
    #[error("a freeze of securities states its quantity (how many units, shares) to freeze")]
    QuantityRequired,
    #[error("quantity must be positive")]
    QuantityNotPositive,
    #[error(
        "only a freeze of securities states a quantity, not a {} of {}",
        .action.as_str(),
        .kind.as_str()
    )]
    QuantityNotAllowed {
        action: ControlAction,
        kind: AssetKind,
    },
    #[error("only funds a freeze holds can be deducted; that freeze is {status}")]
    DeductionFromFreezeNotInForce { status: OrderStatus },
    /// `available` is what the freeze controls less the deductions on
    /// their way (`after_pending` when there are any), never below zero.
    #[error(
        "the deduction ({}) is larger than what the freeze controls ({}{})",
        Fen(*.amount_fen),
        Fen(*.available_fen),
        if *.after_pending { ", after deductions already on their way" } else { "" }
    )]
    DeductionExceedsFreeze {
        amount_fen: i64,
        available_fen: i64,
        after_pending: bool,
    },

    // Dates and terms.
    #[error("a {} states its end date", .action.as_str())]
    EndDateRequired { action: ControlAction },
    #[error("a renewal states its new end date")]
    RenewalEndDateRequired,
    #[error("a {} states no end date", .action.as_str())]
    EndDateNotAllowed { action: ControlAction },
    #[error("the end date {end} is before {start}")]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error("the end date {end} is before today, {today}")]
    EndBeforeToday { today: NaiveDate, end: NaiveDate },
    /// `limit` is the last day the term allows from `start`.
    #[error(
        "{}: from {start} it may end on {limit} at the latest, not {end}",
        term_rule(*.action, *.kind)
    )]
    TermTooLong {
        action: ControlAction,
        kind: AssetKind,
        start: NaiveDate,
        limit: NaiveDate,
        end: NaiveDate,
    },

    // The measure acted on.
    #[error("only a measure in force or waiting can be renewed; this one is {status}")]
    RenewalOfMeasureNotLive { status: OrderStatus },
    #[error("the measure's end date is not known yet; wait for the agency's answer")]
    MeasureEndUnknown,
    #[error("a renewal must be made before the measure ends; it ended on {ended}")]
    RenewalTooLate { ended: NaiveDate },
    #[error("a renewal must end after the current end date, {current_end}")]
    RenewalEndsTooEarly { current_end: NaiveDate },
    #[error("that measure is {status} and cannot be acted on")]
    MeasureNotLive { status: OrderStatus },
    #[error("the measure was released by order {release}")]
    MeasureReleased { release: String },
    #[error(
        "the release {release} of this measure is on its way to the agency; nothing more can be \
         asked of the measure until it is answered (GET /v1/orders/{release}): if it is refused \
         or fails, send this order again"
    )]
    ReleasePending { release: String },
    #[error(
        "the renewal {renewal} of this measure is on its way to the agency; wait for its answer \
         (GET /v1/orders/{renewal}), then renew from the end date it set, if still needed"
    )]
    RenewalPending { renewal: String },

    // A freeze plan's inquiry.
    #[error("no inquiry {id:?} of this caller exists")]
    UnknownInquiry { id: String },
    #[error("the inquiry belongs to case {inquiry_case}, not {case}")]
    InquiryOtherCase { inquiry_case: String, case: String },
    #[error("the inquiry was about another subject")]
    InquiryOtherSubject,
    #[error("the inquiry is still running; plan once every agency has answered")]
    InquiryRunning,
    #[error("the inquiry found no account a freeze could be placed on")]
    NoAccounts { skipped: Vec<SkippedAccount> },

    /// Not the request's fault: what the rules read is inconsistent (a bug
    /// or a damaged store), found while checking it.
    #[error("{0}")]
    Inconsistent(String),
}

/// How a missing document is named to the officer.
fn document_title(kind: &str) -> &'static str {
    match kind {
        "ruling" => "the ruling (裁定书)",
        _ => "the assistance notice (协助执行通知书)",
    }
}

/// What the law lets a court do online to one kind of asset, and how long a
/// measure on it may run at most (SPC provisions on seizure, 2020, Art. 29;
/// Civil Procedure Law interpretation Art. 487): funds one year, movables
/// two, real estate and other property rights three. A renewal runs at most
/// a full term again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRules {
    /// The control actions the kind takes.
    pub actions: &'static [ControlAction],
    /// The longest term of one measure, in months.
    pub term_months: u32,
}

const FUNDS: &[ControlAction] = &[
    ControlAction::Freeze,
    ControlAction::Renew,
    ControlAction::Release,
    ControlAction::Deduct,
];
const PROPERTY_RIGHTS: &[ControlAction] = &[
    ControlAction::Freeze,
    ControlAction::Renew,
    ControlAction::Release,
];
const SEALS: &[ControlAction] = &[
    ControlAction::Seal,
    ControlAction::RenewSeal,
    ControlAction::ReleaseSeal,
];

/// The rules of one kind of asset.
pub fn kind_rules(kind: AssetKind) -> KindRules {
    let (actions, term_months) = match kind {
        // Funds: frozen, renewed, released, and deducted to the court.
        AssetKind::BankAccount | AssetKind::PaymentAccount | AssetKind::ProvidentFund => {
            (FUNDS, 12)
        }
        // Registered property: sealed (the registry refuses transfers).
        AssetKind::RealEstate => (SEALS, 36),
        AssetKind::Vehicle => (SEALS, 24),
        // Other property rights: frozen, never deducted online.
        AssetKind::Securities | AssetKind::Equity => (PROPERTY_RIGHTS, 36),
    };
    KindRules {
        actions,
        term_months,
    }
}

/// The term a measure may run, as the law puts it.
fn term_rule(action: ControlAction, kind: AssetKind) -> String {
    let measure = if action.on_freezes() {
        "a freeze"
    } else {
        "a seal"
    };
    let (of, years) = match kind {
        AssetKind::BankAccount => ("bank deposits", "one year (funds)"),
        AssetKind::PaymentAccount => ("a payment account's funds", "one year (funds)"),
        AssetKind::ProvidentFund => ("provident fund deposits", "one year (funds)"),
        AssetKind::Vehicle => ("a vehicle", "two years (movable property)"),
        AssetKind::RealEstate => ("real estate", "three years"),
        AssetKind::Securities => ("securities", "three years (other property rights)"),
        AssetKind::Equity => ("equity", "three years (other property rights)"),
    };
    format!("{measure} of {of} lasts at most {years}")
}

/// Why a freeze of `kind` states no amount.
fn amount_rule(kind: AssetKind) -> &'static str {
    match kind {
        AssetKind::Securities => {
            "securities are frozen by quantity: state quantity (units), not amount_fen"
        }
        AssetKind::Equity => "a freeze of equity holds the whole holding and states no amount",
        _ => "this kind of asset is not controlled by an amount",
    }
}

/// `freeze, renew and release`.
fn action_list(actions: &[ControlAction]) -> String {
    let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "nothing".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_takes_its_actions_for_its_term() {
        let table: Vec<(AssetKind, Vec<&str>, u32)> = AssetKind::ALL
            .into_iter()
            .map(|k| {
                let r = kind_rules(k);
                (
                    k,
                    r.actions.iter().map(|a| a.as_str()).collect(),
                    r.term_months,
                )
            })
            .collect();
        let funds = vec!["freeze", "renew", "release", "deduct"];
        let rights = vec!["freeze", "renew", "release"];
        let seals = vec!["seal", "renew_seal", "release_seal"];
        assert_eq!(
            table,
            vec![
                (AssetKind::BankAccount, funds.clone(), 12),
                (AssetKind::RealEstate, seals.clone(), 36),
                (AssetKind::Vehicle, seals, 24),
                (AssetKind::Securities, rights.clone(), 36),
                (AssetKind::PaymentAccount, funds.clone(), 12),
                (AssetKind::ProvidentFund, funds, 12),
                (AssetKind::Equity, rights, 36),
            ]
        );
        // Every action is taken by some kind.
        for action in ControlAction::ALL {
            assert!(
                AssetKind::ALL
                    .iter()
                    .any(|k| kind_rules(*k).actions.contains(&action))
            );
        }
    }
}
