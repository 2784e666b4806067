//! Control measures as agencies see them: what the gateway asks (freeze,
//! renew, release, deduct; seal, renew, release a seal) and what an agency
//! answers. The rules of the law about them (terms, documents, officers) are
//! checked before a request gets here; this is the wire-facing model that
//! dialect files fill.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::CaseNumber;
use crate::model::{Fen, Officer, Subject};

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

    /// Actions on bank accounts; the others act on real-estate units.
    pub fn on_accounts(self) -> bool {
        matches!(
            self,
            ControlAction::Freeze
                | ControlAction::Renew
                | ControlAction::Release
                | ControlAction::Deduct
        )
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
    /// The account (bank actions) or unit (registry actions) acted on.
    pub account_number: Option<String>,
    pub unit_number: Option<String>,
    pub amount_fen: Option<Fen>,
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
