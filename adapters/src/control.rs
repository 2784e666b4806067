//! Control measures as agencies see them: what the gateway asks (freeze,
//! renew, release, deduct; seal, renew, release a seal) and what an agency
//! answers. The rules of the law about them (terms, documents, officers) are
//! checked before a request gets here; this is the wire-facing model that
//! dialect files fill.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::CaseNumber;
use crate::model::{Asset, AssetKind, Fen, Officer, Subject};

/// A control action, named as in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    Freeze,
    Renew,
    Release,
    Deduct,
    Seal,
    RenewSeal,
    ReleaseSeal,
}

impl ControlAction {
    pub const ALL: [ControlAction; 7] = [
        ControlAction::Freeze,
        ControlAction::Renew,
        ControlAction::Release,
        ControlAction::Deduct,
        ControlAction::Seal,
        ControlAction::RenewSeal,
        ControlAction::ReleaseSeal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Freeze => "freeze",
            ControlAction::Renew => "renew",
            ControlAction::Release => "release",
            ControlAction::Deduct => "deduct",
            ControlAction::Seal => "seal",
            ControlAction::RenewSeal => "renew_seal",
            ControlAction::ReleaseSeal => "release_seal",
        }
    }

    /// Freezes and what acts on them (funds, securities, equity); the
    /// others are seals and what acts on them (real estate, vehicles).
    pub fn on_freezes(self) -> bool {
        matches!(
            self,
            ControlAction::Freeze
                | ControlAction::Renew
                | ControlAction::Release
                | ControlAction::Deduct
        )
    }
}

/// The one asset a control measure acts on, named as an inquiry's answer
/// names it: each kind by its own fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AssetRef {
    BankAccount {
        account_number: String,
    },
    RealEstate {
        unit_number: String,
    },
    Vehicle {
        vin: String,
    },
    Securities {
        securities_account: String,
        security_code: String,
    },
    PaymentAccount {
        payment_account: String,
    },
    ProvidentFund {
        fund_account: String,
    },
    /// Equity in the company with this unified social credit code.
    Equity {
        company_credit_code: String,
    },
}

/// Every field name that names an asset, of any kind.
pub const ASSET_FIELDS: [&str; 8] = [
    "account_number",
    "unit_number",
    "vin",
    "securities_account",
    "security_code",
    "payment_account",
    "fund_account",
    "company_credit_code",
];

impl AssetRef {
    pub fn kind(&self) -> AssetKind {
        match self {
            AssetRef::BankAccount { .. } => AssetKind::BankAccount,
            AssetRef::RealEstate { .. } => AssetKind::RealEstate,
            AssetRef::Vehicle { .. } => AssetKind::Vehicle,
            AssetRef::Securities { .. } => AssetKind::Securities,
            AssetRef::PaymentAccount { .. } => AssetKind::PaymentAccount,
            AssetRef::ProvidentFund { .. } => AssetKind::ProvidentFund,
            AssetRef::Equity { .. } => AssetKind::Equity,
        }
    }

    /// The fields that name an asset of `kind`, in order.
    pub fn field_names(kind: AssetKind) -> &'static [&'static str] {
        match kind {
            AssetKind::BankAccount => &["account_number"],
            AssetKind::RealEstate => &["unit_number"],
            AssetKind::Vehicle => &["vin"],
            AssetKind::Securities => &["securities_account", "security_code"],
            AssetKind::PaymentAccount => &["payment_account"],
            AssetKind::ProvidentFund => &["fund_account"],
            AssetKind::Equity => &["company_credit_code"],
        }
    }

    /// The asset's fields, by name, in the order of `field_names`.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        match self {
            AssetRef::BankAccount { account_number } => vec![("account_number", account_number)],
            AssetRef::RealEstate { unit_number } => vec![("unit_number", unit_number)],
            AssetRef::Vehicle { vin } => vec![("vin", vin)],
            AssetRef::Securities {
                securities_account,
                security_code,
            } => vec![
                ("securities_account", securities_account),
                ("security_code", security_code),
            ],
            AssetRef::PaymentAccount { payment_account } => {
                vec![("payment_account", payment_account)]
            }
            AssetRef::ProvidentFund { fund_account } => vec![("fund_account", fund_account)],
            AssetRef::Equity {
                company_credit_code,
            } => vec![("company_credit_code", company_credit_code)],
        }
        .into_iter()
        .map(|(k, v)| (k, v.as_str()))
        .collect()
    }

    /// The value of one of the asset's fields.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields()
            .into_iter()
            .find_map(|(k, v)| (k == name).then_some(v))
    }

    /// The asset of `kind` whose fields `value` gives; `Err` names the
    /// first field missing or empty.
    pub fn build<'a>(
        kind: AssetKind,
        value: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, &'static str> {
        let names = Self::field_names(kind);
        let mut got = Vec::with_capacity(names.len());
        for name in names {
            match value(name).map(str::trim) {
                Some(v) if !v.is_empty() => got.push(v.to_owned()),
                _ => return Err(name),
            }
        }
        let mut got = got.into_iter();
        let mut next = || got.next().unwrap_or_default();
        Ok(match kind {
            AssetKind::BankAccount => AssetRef::BankAccount {
                account_number: next(),
            },
            AssetKind::RealEstate => AssetRef::RealEstate {
                unit_number: next(),
            },
            AssetKind::Vehicle => AssetRef::Vehicle { vin: next() },
            AssetKind::Securities => AssetRef::Securities {
                securities_account: next(),
                security_code: next(),
            },
            AssetKind::PaymentAccount => AssetRef::PaymentAccount {
                payment_account: next(),
            },
            AssetKind::ProvidentFund => AssetRef::ProvidentFund {
                fund_account: next(),
            },
            AssetKind::Equity => AssetRef::Equity {
                company_credit_code: next(),
            },
        })
    }

    /// The kind whose first field `value` gives (a conformance case or a
    /// stored row names its asset by its fields alone).
    pub fn infer<'a>(value: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        AssetKind::ALL
            .into_iter()
            .find(|k| value(Self::field_names(*k)[0]).is_some())
            .and_then(|k| Self::build(k, &value).ok())
    }

    /// The asset an inquiry's answer reports, named by its kind's fields:
    /// what a control order on it names, and what tells two answers'
    /// reports of one asset apart from reports of two.
    pub fn of(asset: &Asset) -> Self {
        match asset {
            Asset::BankAccount(a) => AssetRef::BankAccount {
                account_number: a.account_number.clone(),
            },
            Asset::RealEstate(u) => AssetRef::RealEstate {
                unit_number: u.unit_number.clone(),
            },
            Asset::Vehicle(v) => AssetRef::Vehicle { vin: v.vin.clone() },
            Asset::Securities(h) => AssetRef::Securities {
                securities_account: h.securities_account.clone(),
                security_code: h.security_code.clone(),
            },
            Asset::PaymentAccount(p) => AssetRef::PaymentAccount {
                payment_account: p.payment_account.clone(),
            },
            Asset::ProvidentFund(f) => AssetRef::ProvidentFund {
                fund_account: f.fund_account.clone(),
            },
            Asset::Equity(e) => AssetRef::Equity {
                company_credit_code: e.company_credit_code.clone(),
            },
        }
    }

    /// One line for people: `vin LSVAU2180N2183294`.
    pub fn describe(&self) -> String {
        self.fields()
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A document carried by reference: its number and content digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRef {
    /// `ruling` or `assist_notice`.
    pub kind: String,
    pub number: String,
    pub sha256: String,
}

/// A document as the agency acknowledged receiving it: its number and the
/// SHA-256 the agency computed of what it received (lower-case hex). A
/// digest that differs from the one the order carried means the agency
/// holds another file than the court sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentAck {
    pub number: String,
    pub sha256: String,
}

/// One control measure to send to one agency.
#[derive(Debug, Clone)]
pub struct ControlRequest {
    /// Stable across retries and restarts: the agency deduplicates by it.
    pub request_number: String,
    pub case_number: CaseNumber,
    pub subject: Subject,
    pub officers: Vec<Officer>,
    pub action: ControlAction,
    /// The asset acted on.
    pub asset: AssetRef,
    pub amount_fen: Option<Fen>,
    /// Securities: how many units a freeze holds.
    pub quantity: Option<i64>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    /// The request number of the measure this one renews, releases or
    /// deducts from.
    pub prior_request_number: Option<String>,
    pub documents: Vec<DocumentRef>,
}

/// What became of a control measure at the agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlStatus {
    /// In force for the whole amount asked.
    Applied,
    /// In force for less than asked (`shortfall_fen` says how much less).
    Partial,
    /// Queued behind measures of other authorities (`queue_position`).
    Waiting,
    /// Not applied; `reason` says why.
    Refused,
    /// Accepted; the result comes later.
    Pending,
    /// Lifted by a release (the answer to a status query about a measure
    /// released since).
    Released,
    /// Lapsed at its end date without a renewal.
    Lapsed,
    /// The agency has never seen this request number (the answer to a
    /// status query): sending it is safe.
    Unknown,
}

impl ControlStatus {
    /// Whether the agency has decided the measure (anything but pending or
    /// unknown).
    pub fn is_decided(self) -> bool {
        !matches!(self, ControlStatus::Pending | ControlStatus::Unknown)
    }
}

/// An agency's answer to a control measure, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlOutcome {
    pub status: ControlStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controlled_fen: Option<Fen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall_fen: Option<Fen>,
    /// Securities: the units in force, and those asked but not free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controlled_quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall_quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// The agency's own reference (business number) for the measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The documents the agency acknowledged receiving, with the digests it
    /// computed, in its order; empty when its answer acknowledges none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged_documents: Vec<DocumentAck>,
}
