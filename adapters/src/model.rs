//! The one asset model every agency's reply is normalised into.
//!
//! Money is integer fen, legal dates are civil dates in China Standard Time,
//! and nothing here does I/O. Serialised field names are the API's (api.md).

use std::fmt;

use chrono::{FixedOffset, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CreditCode, IdNumber};

/// An amount of money in fen (1/100 yuan). Never a float.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Fen(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an amount in yuan with at most two decimals")]
pub struct MoneyError(pub String);

impl Fen {
    /// Parses yuan as written on the wire: `125000.00`, `8650.5`, `300`,
    /// optionally with thousands separators (`1,250.00`) or a leading minus.
    pub fn parse_yuan(text: &str) -> Result<Self, MoneyError> {
        let err = || MoneyError(text.to_owned());
        let t: String = text.trim().chars().filter(|c| *c != ',').collect();
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest.to_owned()),
            None => (false, t),
        };
        let (whole, frac) = t.split_once('.').unwrap_or((t.as_str(), ""));
        if whole.is_empty()
            || frac.len() > 2
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        // In i128, so that the most negative amount (whose magnitude is one
        // more than the largest positive one) reads back too.
        let whole: i128 = whole.parse().map_err(|_| err())?;
        let frac: i128 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i128>().map_err(|_| err())? * 10,
            _ => frac.parse().map_err(|_| err())?,
        };
        let fen = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac))
            .ok_or_else(err)?;
        let fen = if negative { -fen } else { fen };
        i64::try_from(fen).map(Fen).map_err(|_| err())
    }

    /// Yuan with two decimals, as the wire wants it.
    pub fn to_yuan(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_yuan())
    }
}

/// China Standard Time, in which legal dates are reckoned.
pub fn china_standard_time() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Today's civil date in UTC+8.
pub fn today_cst() -> NaiveDate {
    Utc::now()
        .with_timezone(&china_standard_time())
        .date_naive()
}

/// Parses a civil date in any of the wire's formats: `yyyyMMdd`, `yyyy/MM/dd`,
/// `yyyy-MM-dd`. Empty text means absent.
pub fn parse_civil_date(text: &str) -> Result<Option<NaiveDate>, DateError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    for format in ["%Y%m%d", "%Y/%m/%d", "%Y-%m-%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, format) {
            return Ok(Some(d));
        }
    }
    Err(DateError(t.to_owned()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date in yyyyMMdd, yyyy/MM/dd or yyyy-MM-dd form")]
pub struct DateError(pub String);

/// Whom an inquiry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Person {
        name: String,
        id_number: IdNumber,
    },
    Organization {
        name: String,
        credit_code: CreditCode,
    },
}

impl Subject {
    pub fn name(&self) -> &str {
        match self {
            Subject::Person { name, .. } | Subject::Organization { name, .. } => name,
        }
    }

    /// The identifier's full value (wire and store only; never log it).
    pub fn identifier(&self) -> &str {
        match self {
            Subject::Person { id_number, .. } => id_number.as_str(),
            Subject::Organization { credit_code, .. } => credit_code.as_str(),
        }
    }

    /// The identifier as it may appear in logs and printed output.
    pub fn masked_identifier(&self) -> String {
        match self {
            Subject::Person { id_number, .. } => id_number.masked(),
            // A credit code identifies an organisation, not a person's data.
            Subject::Organization { credit_code, .. } => credit_code.as_str().to_owned(),
        }
    }

    pub fn kind(&self) -> SubjectKind {
        match self {
            Subject::Person { .. } => SubjectKind::Person,
            Subject::Organization { .. } => SubjectKind::Organization,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Person,
    Organization,
}

/// An enforcement officer acting in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Officer {
    pub name: String,
    /// Work card number (工作证号).
    pub work_card_no: String,
    /// Official enforcement credential number (执行公务证号).
    pub credential_no: String,
}

/// The requesting court, as agencies need it on every message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Court {
    /// Court code as in case numbers, e.g. `甘0503`.
    pub code: String,
    /// Full name, e.g. `天水市麦积区人民法院`.
    pub name: String,
}

/// The kinds of asset the gateway reaches, each held by one kind of
/// agency (`agency::AgencyKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// Deposits at a bank.
    BankAccount,
    /// Real-estate units at a registry.
    RealEstate,
    /// Motor vehicles at the traffic administration.
    Vehicle,
    /// Securities holdings at the depository.
    Securities,
    /// Balances at an online payment platform.
    PaymentAccount,
    /// Housing provident fund accounts at a city's fund centre.
    ProvidentFund,
    /// Equity in companies at the market-regulation registry.
    Equity,
}

impl AssetKind {
    pub const ALL: [AssetKind; 7] = [
        AssetKind::BankAccount,
        AssetKind::RealEstate,
        AssetKind::Vehicle,
        AssetKind::Securities,
        AssetKind::PaymentAccount,
        AssetKind::ProvidentFund,
        AssetKind::Equity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::BankAccount => "bank_account",
            AssetKind::RealEstate => "real_estate",
            AssetKind::Vehicle => "vehicle",
            AssetKind::Securities => "securities",
            AssetKind::PaymentAccount => "payment_account",
            AssetKind::ProvidentFund => "provident_fund",
            AssetKind::Equity => "equity",
        }
    }

    /// The kind an API name (`bank_account`, `vehicle` ...) stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A measure already standing on an asset (a freeze or a seal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StandingMeasure {
    pub authority: String,
    pub document_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_fen: Option<Fen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
    /// A waiting measure (轮候) takes effect when those ahead of it lift.
    pub waiting: bool,
    /// Place in the waiting line, when the agency tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// How many units a freeze of securities holds (they are frozen by
    /// quantity, not by amount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BankAccount {
    pub account_number: String,
    pub account_type: String,
    pub currency: String,
    pub balance_fen: Fen,
    pub available_fen: Fen,
    pub branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub measures: Vec<StandingMeasure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Owner {
    pub name: String,
    /// Share as the registry writes it, e.g. `1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RealEstateUnit {
    /// 不动产单元号
    pub unit_number: String,
    /// 不动产权证号
    pub certificate_number: String,
    pub location: String,
    /// Area in square metres; the registry's own figure (not money, so a
    /// decimal is fine here).
    pub area_m2: f64,
    #[serde(rename = "use")]
    pub use_: String,
    pub owners: Vec<Owner>,
    pub mortgaged: bool,
    pub measures: Vec<StandingMeasure>,
}

/// A motor vehicle on the traffic administration's register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Vehicle {
    /// 车辆识别代号: what a seal names.
    pub vin: String,
    /// 号牌号码, e.g. `甘E·A1234`.
    pub plate_number: String,
    /// 号牌种类 as the register codes it, e.g. `02` (small car).
    pub plate_type: String,
    /// 品牌型号
    pub make_model: String,
    /// 初次登记日期
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_registered: Option<NaiveDate>,
    /// The register's state in words (`normal`, `sealed`, `scrapped` ...).
    pub state: String,
    pub mortgaged: bool,
    pub measures: Vec<StandingMeasure>,
}

/// One security held in one securities account at the depository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecuritiesHolding {
    pub securities_account: String,
    /// The exchange the account trades on, e.g. `SH` or `SZ`.
    pub market: String,
    pub security_code: String,
    pub security_name: String,
    /// Units held.
    pub quantity: i64,
    /// Units not frozen by anyone, when the depository tells it: a freeze
    /// of more is partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_quantity: Option<i64>,
    /// The broker that keeps the holding (托管单元).
    pub custodian: String,
    pub measures: Vec<StandingMeasure>,
}

/// An account at an online payment platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentAccount {
    pub payment_account: String,
    pub holder: String,
    pub balance_fen: Fen,
    /// What is not frozen, when the platform tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_fen: Option<Fen>,
    /// The balance held in the platform's money-market fund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fund_balance_fen: Option<Fen>,
    pub measures: Vec<StandingMeasure>,
}

/// A housing provident fund account at a city's fund centre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProvidentFundAccount {
    pub fund_account: String,
    pub balance_fen: Fen,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_fen: Option<Fen>,
    /// `contributing`, `sealed` or `closed`.
    pub state: String,
    /// Whether the account may be withdrawn from: a deduction is refused
    /// unless it may.
    pub withdrawable: bool,
    pub measures: Vec<StandingMeasure>,
}

/// A subject's share in a company, as the market-regulation registry
/// records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EquityHolding {
    pub company_name: String,
    /// The company's unified social credit code: what a freeze names.
    pub company_credit_code: String,
    pub subscribed_capital_fen: Fen,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_in_capital_fen: Option<Fen>,
    /// The share as the registry writes it, e.g. `35.00%`.
    pub share_ratio: String,
    pub measures: Vec<StandingMeasure>,
}

/// One asset found at one agency, tagged with its kind as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Asset {
    BankAccount(BankAccount),
    RealEstate(RealEstateUnit),
    Vehicle(Vehicle),
    Securities(SecuritiesHolding),
    PaymentAccount(PaymentAccount),
    ProvidentFund(ProvidentFundAccount),
    Equity(EquityHolding),
}

impl Asset {
    pub fn kind(&self) -> AssetKind {
        match self {
            Asset::BankAccount(_) => AssetKind::BankAccount,
            Asset::RealEstate(_) => AssetKind::RealEstate,
            Asset::Vehicle(_) => AssetKind::Vehicle,
            Asset::Securities(_) => AssetKind::Securities,
            Asset::PaymentAccount(_) => AssetKind::PaymentAccount,
            Asset::ProvidentFund(_) => AssetKind::ProvidentFund,
            Asset::Equity(_) => AssetKind::Equity,
        }
    }
}

/// What an agency said about one subject of an inquiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum InquiryOutcome {
    Answered {
        assets: Vec<Asset>,
    },
    NoRecord,
    /// A refusal with a reason is a normal answer, not an error.
    Refused {
        reason: String,
    },
    /// The agency accepted the request and will answer later; poll with the
    /// ticket (or the request number).
    Pending {
        ticket: Option<String>,
    },
}

/// An agency's status within an inquiry (api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgencyStatus {
    Answered,
    NoRecord,
    Pending,
    Refused,
    Timeout,
    CircuitOpen,
    RateLimited,
    BadReply,
    Error,
}

impl AgencyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgencyStatus::Answered => "answered",
            AgencyStatus::NoRecord => "no_record",
            AgencyStatus::Pending => "pending",
            AgencyStatus::Refused => "refused",
            AgencyStatus::Timeout => "timeout",
            AgencyStatus::CircuitOpen => "circuit_open",
            AgencyStatus::RateLimited => "rate_limited",
            AgencyStatus::BadReply => "bad_reply",
            AgencyStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "answered" => AgencyStatus::Answered,
            "no_record" => AgencyStatus::NoRecord,
            "pending" => AgencyStatus::Pending,
            "refused" => AgencyStatus::Refused,
            "timeout" => AgencyStatus::Timeout,
            "circuit_open" => AgencyStatus::CircuitOpen,
            "rate_limited" => AgencyStatus::RateLimited,
            "bad_reply" => AgencyStatus::BadReply,
            "error" => AgencyStatus::Error,
            _ => return None,
        })
    }

    /// The agency gave its answer (whatever it was).
    pub fn is_answer(self) -> bool {
        matches!(
            self,
            AgencyStatus::Answered | AgencyStatus::NoRecord | AgencyStatus::Refused
        )
    }

    pub fn is_final(self) -> bool {
        self != AgencyStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_text_becomes_integer_fen() {
        assert_eq!(Fen::parse_yuan("125000.00"), Ok(Fen(12_500_000)));
        assert_eq!(Fen::parse_yuan("8650.5"), Ok(Fen(865_050)));
        assert_eq!(Fen::parse_yuan("300"), Ok(Fen(30_000)));
        assert_eq!(Fen::parse_yuan(" 1,250.07 "), Ok(Fen(125_007)));
        assert_eq!(Fen::parse_yuan("-0.01"), Ok(Fen(-1)));
        assert_eq!(Fen::parse_yuan("0.10"), Ok(Fen(10)));
        for bad in [
            "",
            ".5",
            "1.234",
            "1e3",
            "abc",
            "12.3.4",
            "--1",
            "99999999999999999999",
            "92233720368547758.08",
            "-92233720368547758.09",
            "-",
            "-.5",
        ] {
            assert!(Fen::parse_yuan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fen_prints_as_yuan_with_two_decimals() {
        assert_eq!(Fen(12_500_000).to_yuan(), "125000.00");
        assert_eq!(Fen(5).to_yuan(), "0.05");
        assert_eq!(Fen(-150).to_yuan(), "-1.50");
        for fen in [0, 1, 99, 100, 865_050, i64::MAX, -1, -865_050, i64::MIN] {
            assert_eq!(Fen::parse_yuan(&Fen(fen).to_yuan()), Ok(Fen(fen)));
        }
    }

    #[test]
    fn civil_dates_in_every_wire_format() {
        let d = NaiveDate::from_ymd_opt(2027, 1, 5);
        assert_eq!(parse_civil_date("20270105"), Ok(d));
        assert_eq!(parse_civil_date("2027/01/05"), Ok(d));
        assert_eq!(parse_civil_date("2027-01-05"), Ok(d));
        assert_eq!(parse_civil_date(" "), Ok(None));
        assert!(parse_civil_date("2027-02-30").is_err());
        assert!(parse_civil_date("05/01/2027").is_err());
    }
}
