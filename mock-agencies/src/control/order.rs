//! A control order as the dialects read it off their wire, and what the
//! ledger answers about it, dialect-neutral: the action, the subject, the
//! asset and its amount, the term, the documents, and per asset the state
//! reached. The checks every agency of a further kind makes of an order
//! (two officers with both credentials, the ruling and the notice, the
//! values its action needs) are here once, so each dialect's handler only
//! reads its own field names. Nothing here decides an order (`control`
//! does).

use chrono::NaiveDate;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ledger::Ticket;

/// What a control order asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Freeze,
    Renew,
    Release,
    Deduct,
    Seal,
    RenewSeal,
    ReleaseSeal,
}

impl Action {
    /// `KZCS` of `court-bank-xml`, `DJCS` of `market-gbk-xml` (domain.md's
    /// codes).
    pub fn from_bank_code(code: &str) -> Option<Self> {
        match code {
            "01" => Some(Self::Freeze),
            "02" => Some(Self::Renew),
            "04" => Some(Self::Release),
            "06" => Some(Self::Deduct),
            _ => None,
        }
    }

    /// `KZCS` of `registry-json`, `Kzcs` of `vehicle-soap`.
    pub fn from_registry_code(code: &str) -> Option<Self> {
        match code {
            "11" => Some(Self::Seal),
            "12" => Some(Self::RenewSeal),
            "14" => Some(Self::ReleaseSeal),
            _ => None,
        }
    }

    /// The word of the JSON and XML dialects that spell measures out
    /// (`FREEZE`, `RENEW`, `RELEASE`, `DEDUCT`).
    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "FREEZE" => Some(Self::Freeze),
            "RENEW" => Some(Self::Renew),
            "RELEASE" => Some(Self::Release),
            "DEDUCT" => Some(Self::Deduct),
            _ => None,
        }
    }

    /// A freeze or a seal: places a new measure.
    pub fn places(self) -> bool {
        matches!(self, Self::Freeze | Self::Seal)
    }

    /// Needs an amount (on money: fen; on securities, a freeze: shares).
    pub fn needs_amount(self) -> bool {
        matches!(self, Self::Freeze | Self::Deduct)
    }

    /// Needs a start and an end date.
    pub fn needs_term(self) -> bool {
        matches!(
            self,
            Self::Freeze | Self::Renew | Self::Seal | Self::RenewSeal
        )
    }

    /// Names an earlier control request (the measure it acts on).
    pub fn needs_prior(self) -> bool {
        !self.places()
    }
}

/// A control order as the dialects read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlRequest {
    pub request_number: String,
    pub action: Action,
    pub case_number: String,
    /// The ordering court's name: the authority of the measure.
    pub court_name: String,
    /// The subject's identifier, normalised.
    pub holder_id: String,
    pub prior_request_number: Option<String>,
    /// One per asset (most dialects: exactly one).
    pub items: Vec<ControlItem>,
    /// The documents as the order carries them, in its order.
    pub documents: Vec<Document>,
}

impl ControlRequest {
    /// Checks that the order has what its action needs: an amount above
    /// zero (when `amount` says the kind is counted), the dates, the prior
    /// request number. `Err` is why not, as the agency words it.
    pub fn check_needs(&self, counted: bool) -> Result<(), String> {
        let action = self.action;
        for item in &self.items {
            if counted && action.needs_amount() && item.amount.is_none_or(|a| a <= 0) {
                return Err("缺少金额或数量，或不大于零".into());
            }
            if action.needs_term() && (item.start_date.is_none() || item.end_date.is_none()) {
                return Err("缺少控制起止日期".into());
            }
        }
        if action.needs_prior() && self.prior_request_number.is_none() {
            return Err("缺少原控制请求号".into());
        }
        Ok(())
    }
}

/// A document as an order carries it (number and SHA-256 hex), or as the
/// agency acknowledges it (number and the digest it computed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    pub number: String,
    pub sha256: String,
}

/// A document number ending in this is acknowledged with another digest
/// than the one sent: the test fault of an agency holding another file.
pub(crate) const TAMPERED_SUFFIX: &str = "-TAMPERED";

impl Document {
    /// What the agency acknowledges for a document it received: the digest
    /// as sent, or, for a number ending in [`TAMPERED_SUFFIX`], the SHA-256
    /// (hex) of the sent digest's text.
    pub fn acknowledged(&self) -> Document {
        let sha256 = if self.number.ends_with(TAMPERED_SUFFIX) {
            Sha256::digest(self.sha256.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        } else {
            self.sha256.clone()
        };
        Document {
            number: self.number.clone(),
            sha256,
        }
    }
}

/// The documents an order carries (kind, number, SHA-256 as written),
/// checked the way every agency of a further kind checks them: each with
/// a number and 64 hex digits, the ruling (`ruling`) and the assistance
/// notice (`notice`) among them.
pub(crate) fn read_documents(
    documents: &[(&str, &str, &str)],
    ruling: &str,
    notice: &str,
) -> Result<Vec<Document>, String> {
    if documents
        .iter()
        .any(|(_, number, sha256)| number.trim().is_empty() || !is_sha256_hex(sha256))
    {
        return Err("文书须有编号和 64 位十六进制的 SHA-256".into());
    }
    for needed in [ruling, notice] {
        if !documents.iter().any(|(kind, _, _)| *kind == needed) {
            return Err(format!("缺少 {needed} 文书"));
        }
    }
    Ok(documents
        .iter()
        .map(|(_, number, sha256)| Document {
            number: (*number).to_owned(),
            sha256: (*sha256).to_owned(),
        })
        .collect())
}

/// The officers an order names (name, work card, credential): a control
/// measure needs two, each with both credentials (双人双证).
pub(crate) fn check_officers(officers: &[[&str; 3]]) -> Result<(), String> {
    if officers.len() < 2 {
        return Err(format!("控制须有两名执行人员，只有{}名", officers.len()));
    }
    if officers
        .iter()
        .any(|o| o.iter().any(|field| field.trim().is_empty()))
    {
        return Err("执行人员须有姓名、工作证号和执行公务证号".into());
    }
    Ok(())
}

/// A date of an order, written in `format`; blank or absent is none.
/// `Err` names the field.
pub(crate) fn read_date(
    field: &str,
    text: Option<&str>,
    format: &str,
) -> Result<Option<NaiveDate>, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => NaiveDate::parse_from_str(text, format)
            .map(Some)
            .map_err(|_| format!("{field} 不是日期：{text}")),
    }
}

/// Present and not blank, trimmed.
pub(crate) fn given(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// One asset of a control order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlItem {
    /// The asset's key: account number, unit number, VIN, the securities
    /// account and code ([`securities_target`](super::securities_target)),
    /// payment or fund account, or the company's credit code (equity).
    pub target: String,
    /// On money: fen; on securities: shares; none on a whole asset.
    pub amount: Option<i64>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

/// Where a control order stands, as the dialects report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlState {
    /// Applied: the measure is in force (or the renewal, release or
    /// deduction was made).
    InForce,
    /// Refused, with a reason.
    NotControlled,
    /// Waiting in line behind another authority's measure.
    Waiting,
    Released,
    Lapsed,
}

impl ControlState {
    pub fn ledger_name(self) -> &'static str {
        match self {
            Self::InForce => "in_force",
            Self::NotControlled => "not_controlled",
            Self::Waiting => "waiting",
            Self::Released => "released",
            Self::Lapsed => "lapsed",
        }
    }
}

/// What a control order did to one asset, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemResult {
    pub target: String,
    pub state: ControlState,
    /// Actually controlled (a deduction: moved; a release: released), in
    /// the asset's measure: fen, shares, or an equity holding's capital.
    pub controlled: i64,
    /// Asked but not controlled, in the same measure.
    pub shortfall: i64,
    /// Why not (or why only part), empty when there is nothing to say.
    pub reason: String,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    /// Place in line, 0 when not waiting.
    pub queue_position: u32,
    /// The agency's own number of the measure, empty when none.
    pub measure_number: String,
}

impl ItemResult {
    pub(super) fn refused(item: &ControlItem, reason: &str) -> Self {
        Self {
            target: item.target.clone(),
            state: ControlState::NotControlled,
            controlled: 0,
            shortfall: item.amount.unwrap_or(0),
            reason: reason.to_owned(),
            start_date: None,
            end_date: None,
            queue_position: 0,
            measure_number: String::new(),
        }
    }
}

/// The answer to an order refused as a whole (the `refuse` fault): every
/// item not controlled, for `reason`.
pub(crate) fn refusal(request: &ControlRequest, reason: &str) -> Vec<ItemResult> {
    request
        .items
        .iter()
        .map(|item| ItemResult::refused(item, reason))
        .collect()
}

/// A document digest as orders carry it: SHA-256, 64 hex digits.
pub(crate) fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The answer to a control order or a question about one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlOutcome {
    pub holder_id: String,
    pub results: Vec<ItemResult>,
    /// A receipt for an answer given later (registry, depository): the
    /// results show from its `ready_at`.
    pub ticket: Option<Ticket>,
    /// The documents the agency acknowledges, with the digests it
    /// computed, in the order's order.
    pub acknowledged: Vec<Document>,
}

impl ControlOutcome {
    /// The outcome of an order refused as a whole, acknowledging nothing.
    pub fn refused(request: &ControlRequest, reason: &str) -> Self {
        Self {
            holder_id: request.holder_id.clone(),
            results: refusal(request, reason),
            ticket: None,
            acknowledged: Vec::new(),
        }
    }

    /// Whether the results are not to be shown yet (a ticket not ready).
    pub fn pending(&self) -> bool {
        self.ticket
            .as_ref()
            .is_some_and(|t| tokio::time::Instant::now() < t.ready_at)
    }
}
