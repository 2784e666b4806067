//! The control ledger of one agency: the measures courts place with control
//! orders (a bank's freeze, renewal, release and deduction; a registry's
//! seal, renewal and release), kept beside the agency's immutable book and
//! shown through it: an account or unit that a control order touched is
//! copied into a live asset (its balance and every measure on it, the
//! standing ones of other authorities included) and from then on answers
//! from that copy.
//!
//! The rules (domain.md), dialect-neutral; each dialect only reads the
//! order from its wire and writes the [`ItemResult`]s back:
//! - A control request number is decided once. A repeat applies nothing and
//!   answers the current state of what it did.
//! - Freeze: the account must exist and be the subject's, the term at most
//!   one year. Controlled is what is asked, at most what is available
//!   (balance less the measures in force). With nothing available and a
//!   measure in force by another authority (a standing one, or ours of
//!   another case) it waits in line instead.
//! - Renew: a measure in force or waiting gets a new end date.
//! - Release: the measure leaves; if it was in force, the first waiting one
//!   takes effect with what is then available.
//! - Deduct: money leaves the account for the court's, out of a measure in
//!   force; a measure deducted to nothing ends as released.
//! - Seal (registries): the unit must exist and be the subject's, the term
//!   at most three years; a unit sealed by another authority makes it wait.
//! - Lapse: a measure of ours whose end date is before the mock's today is
//!   lapsed, leaves, and lets the first waiting one take effect. Evaluated
//!   lazily ([`ControlBook::sweep`]) before every answer. Standing measures
//!   of other authorities never lapse (the fixtures must not age with the
//!   clock); they leave only when lifted ([`ControlBook::lift`]).
//!
//! Waiting measures, standing or ours, hold a place in one line per asset
//! (1, 2, ...); when one leaves the line, those behind move up.
//!
//! Documents (文书确认): an order carries its documents by reference, each
//! with a number and a SHA-256. The agency acknowledges the documents it
//! received, with the digest it computed of each, in every answer about the
//! request number (the first, repeats, status queries), as the order first
//! arrived. The mock holds no document content, so it acknowledges the
//! digest as sent, except for a deliberate fault: a document whose number
//! ends in [`TAMPERED_SUFFIX`] is acknowledged with another digest (the
//! SHA-256 of the sent digest's text, hex), as if the agency had received
//! another file. The `refuse` fault's refusals take nothing in and
//! acknowledge nothing.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;

use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::agency::{Controlled, china_now};
use crate::bank_book::{Account, Measure};
use crate::ledger::{Found, Ticket};
use crate::registry_book::{Seal, Unit};

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
    /// `KZCS` of `court-bank-xml` (domain.md's codes).
    pub fn from_bank_code(code: &str) -> Option<Self> {
        match code {
            "01" => Some(Self::Freeze),
            "02" => Some(Self::Renew),
            "04" => Some(Self::Release),
            "06" => Some(Self::Deduct),
            _ => None,
        }
    }

    /// `KZCS` of `registry-json`.
    pub fn from_registry_code(code: &str) -> Option<Self> {
        match code {
            "11" => Some(Self::Seal),
            "12" => Some(Self::RenewSeal),
            "14" => Some(Self::ReleaseSeal),
            _ => None,
        }
    }

    /// A freeze or a seal: places a new measure.
    pub fn places(self) -> bool {
        matches!(self, Self::Freeze | Self::Seal)
    }

    /// Needs an amount (banks only).
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
    /// One per account (banks: exactly one) or unit.
    pub items: Vec<ControlItem>,
    /// The documents as the order carries them, in its order.
    pub documents: Vec<Document>,
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

/// One account or unit of a control order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlItem {
    /// Account number or unit number.
    pub target: String,
    pub amount_fen: Option<i64>,
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

/// What a control order did to one account or unit, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemResult {
    pub target: String,
    pub state: ControlState,
    /// Actually controlled (a deduction: moved; a release: released), fen.
    pub controlled_fen: i64,
    /// Asked but not controlled, fen.
    pub shortfall_fen: i64,
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
    fn refused(item: &ControlItem, reason: &str) -> Self {
        Self {
            target: item.target.clone(),
            state: ControlState::NotControlled,
            controlled_fen: 0,
            shortfall_fen: item.amount_fen.unwrap_or(0),
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
    /// A registry's receipt: the results show from its `ready_at`.
    pub ticket: Option<Ticket>,
    /// The documents the agency acknowledges, with the digests it
    /// computed, in the order's order.
    pub acknowledged: Vec<Document>,
}

/// Money a deduction moved to the court's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Transfer {
    pub request_number: String,
    pub case_number: String,
    pub from_account: String,
    pub holder_id: String,
    pub amount_fen: i64,
    pub at: DateTime<Utc>,
}

/// Another authority's standing measure lifted by `POST /_mock/lift`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lifted {
    pub authority: String,
    pub document_number: String,
    /// The request number (ours) or document number (standing) of the
    /// waiting measure that took effect, if one did.
    pub promoted: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AssetKind {
    Account,
    Unit,
}

fn kind_of(holdings: &Controlled) -> AssetKind {
    match holdings {
        Controlled::Bank(_) => AssetKind::Account,
        Controlled::Registry(_) => AssetKind::Unit,
    }
}

/// Who placed a measure: another authority (in the book), or a control
/// order of ours (the id of its measure record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Standing,
    Ours(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    InForce,
    /// Place in line, from 1.
    Waiting(u32),
    Released,
    Lapsed,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::InForce => "in_force",
            Self::Waiting(_) => "waiting",
            Self::Released => "released",
            Self::Lapsed => "lapsed",
        }
    }
}

/// One measure on a live asset. Ours stay after they ended (released,
/// lapsed) so their state can still be told; standing ones are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    origin: Origin,
    authority: String,
    document_number: String,
    /// What was asked (for a standing measure: its amount).
    asked_fen: i64,
    /// Held now: 0 while waiting.
    amount_fen: i64,
    /// Held when it took effect: `asked_fen - effective_fen` could not be
    /// controlled.
    effective_fen: i64,
    start_date: Option<NaiveDate>,
    end_date: NaiveDate,
    phase: Phase,
    /// Why it waits, while it does.
    wait_reason: String,
}

impl Entry {
    fn is_live(&self) -> bool {
        matches!(self.phase, Phase::InForce | Phase::Waiting(_))
    }

    fn queue_position(&self) -> u32 {
        match self.phase {
            Phase::Waiting(p) => p,
            _ => 0,
        }
    }

    /// As an inquiry shows it: a waiting measure by the amount it asks.
    fn measure(&self) -> Measure {
        let waiting = matches!(self.phase, Phase::Waiting(_));
        Measure {
            authority: self.authority.clone(),
            document_number: self.document_number.clone(),
            amount_fen: if waiting {
                self.asked_fen
            } else {
                self.amount_fen
            },
            end_date: self.end_date,
            waiting,
        }
    }

    fn seal(&self) -> Seal {
        Seal {
            authority: self.authority.clone(),
            document_number: self.document_number.clone(),
            start_date: self.start_date.unwrap_or(self.end_date),
            end_date: self.end_date,
            queue_position: self.queue_position(),
        }
    }
}

/// An account or unit a control order touched: its balance (accounts) and
/// every measure on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveAsset {
    kind: AssetKind,
    balance_fen: i64,
    entries: Vec<Entry>,
}

impl LiveAsset {
    fn from_account(a: &Account) -> Self {
        let mut line = 0;
        let entries = a
            .measures
            .iter()
            .map(|m| {
                let phase = if m.waiting {
                    line += 1;
                    Phase::Waiting(line)
                } else {
                    Phase::InForce
                };
                let held = if m.waiting { 0 } else { m.amount_fen };
                Entry {
                    origin: Origin::Standing,
                    authority: m.authority.clone(),
                    document_number: m.document_number.clone(),
                    asked_fen: m.amount_fen,
                    amount_fen: held,
                    effective_fen: held,
                    start_date: None,
                    end_date: m.end_date,
                    phase,
                    wait_reason: String::new(),
                }
            })
            .collect();
        Self {
            kind: AssetKind::Account,
            balance_fen: a.balance_fen,
            entries,
        }
    }

    fn from_unit(u: &Unit) -> Self {
        let entries = u
            .seals
            .iter()
            .map(|s| Entry {
                origin: Origin::Standing,
                authority: s.authority.clone(),
                document_number: s.document_number.clone(),
                asked_fen: 0,
                amount_fen: 0,
                effective_fen: 0,
                start_date: Some(s.start_date),
                end_date: s.end_date,
                phase: if s.queue_position == 0 {
                    Phase::InForce
                } else {
                    Phase::Waiting(s.queue_position)
                },
                wait_reason: String::new(),
            })
            .collect();
        Self {
            kind: AssetKind::Unit,
            balance_fen: 0,
            entries,
        }
    }

    fn held(&self) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.phase == Phase::InForce)
            .map(|e| e.amount_fen)
            .sum()
    }

    /// Balance less the measures in force, never below zero.
    fn available(&self) -> i64 {
        (self.balance_fen - self.held()).max(0)
    }

    fn waiting_count(&self) -> u32 {
        let count = self
            .entries
            .iter()
            .filter(|e| matches!(e.phase, Phase::Waiting(_)))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// The first measure in force by another authority than `case_number`'s.
    fn blocker(&self, case_number: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.phase == Phase::InForce
                && (e.origin == Origin::Standing || e.document_number != case_number)
        })
    }

    /// Ends the measure at `index` (a standing one is removed); the line
    /// behind it moves up when it was waiting.
    fn end(&mut self, index: usize, phase: Phase) {
        let Some(entry) = self.entries.get_mut(index) else {
            return;
        };
        let left = entry.queue_position();
        if entry.origin == Origin::Standing {
            self.entries.remove(index);
        } else {
            entry.phase = phase;
            entry.wait_reason.clear();
        }
        if left > 0 {
            self.move_up_behind(left);
        }
    }

    fn move_up_behind(&mut self, place: u32) {
        for e in &mut self.entries {
            if let Phase::Waiting(p) = e.phase
                && p > place
            {
                e.phase = Phase::Waiting(p - 1);
            }
        }
    }

    /// The first in line takes effect, if it can: on an account with what is
    /// available (at most what it asked; nothing available, it keeps
    /// waiting), on a unit when no seal is in force any more. Returns its
    /// index.
    fn promote(&mut self) -> Option<usize> {
        let available = self.available();
        let sealed = self.entries.iter().any(|e| e.phase == Phase::InForce);
        let index = self
            .entries
            .iter()
            .position(|e| e.phase == Phase::Waiting(1))?;
        match self.kind {
            AssetKind::Account if available == 0 => return None,
            AssetKind::Unit if sealed => return None,
            _ => {}
        }
        let entry = self.entries.get_mut(index)?;
        if self.kind == AssetKind::Account {
            entry.amount_fen = entry.asked_fen.min(available);
            entry.effective_fen = entry.amount_fen;
        }
        entry.phase = Phase::InForce;
        entry.wait_reason.clear();
        self.move_up_behind(1);
        Some(index)
    }

    /// Lapses every measure of ours whose end date is before `today`, each
    /// letting the line move on.
    fn lapse(&mut self, today: NaiveDate) {
        while let Some(index) = self
            .entries
            .iter()
            .position(|e| matches!(e.origin, Origin::Ours(_)) && e.is_live() && e.end_date < today)
        {
            let was_in_force = self.entries.get(index).map(|e| e.phase) == Some(Phase::InForce);
            self.end(index, Phase::Lapsed);
            if was_in_force {
                self.promote();
            }
        }
    }
}

/// A measure placed by one of our control orders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MeasureRecord {
    /// The agency's own number for it (`KZBH`, `hold_id`, `YWH`).
    number: String,
    /// The freeze or seal that placed it.
    request_number: String,
    case_number: String,
    /// Position of its account or unit in the book.
    position: usize,
    target: String,
}

/// What a control order decided for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decided {
    /// A measure it placed: its state is told as it is now.
    Measure(usize),
    /// Anything else (a refusal, a renewal, a release, a deduction): as
    /// answered at the time.
    Fixed(ItemResult),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ControlRecord {
    request_number: String,
    action: Action,
    holder_id: String,
    case_number: String,
    received_at: DateTime<Utc>,
    received_count: u32,
    applied_count: u32,
    items: Vec<Decided>,
    ticket: Option<Ticket>,
    /// The order's documents as acknowledged when it first arrived.
    acknowledged: Vec<Document>,
}

/// One agency's control ledger. Kept in the agency's state, behind its lock.
#[derive(Debug, Default)]
pub(crate) struct ControlBook {
    /// The mock's today when set by `POST /_mock/clock`.
    today_override: Option<NaiveDate>,
    /// Touched accounts or units, by position in the book.
    assets: HashMap<usize, LiveAsset>,
    /// Account or unit number → position, built on the first control order.
    index: Option<HashMap<String, usize>>,
    /// Our measures, by id.
    measures: Vec<MeasureRecord>,
    /// Control request number → the measures it placed or acted on.
    by_request: HashMap<String, Vec<usize>>,
    controls: Vec<ControlRecord>,
    control_index: HashMap<String, usize>,
    transfers: Vec<Transfer>,
}

/// The term a measure may have: `end ≤ start + limit − 1 day`.
fn check_term(
    kind: AssetKind,
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), &'static str> {
    let (Some(start), Some(end)) = (start, end) else {
        return Err("缺少控制起止日期");
    };
    if end < start {
        return Err("结束日期早于开始日期");
    }
    let (months, too_long) = match kind {
        AssetKind::Account => (12, "冻结期限超过一年"),
        AssetKind::Unit => (36, "查封期限超过三年"),
    };
    match start
        .checked_add_months(Months::new(months))
        .and_then(|d| d.pred_opt())
    {
        Some(limit) if end <= limit => Ok((start, end)),
        _ => Err(too_long),
    }
}

fn fresh_asset(holdings: &Controlled, position: usize) -> Option<LiveAsset> {
    match holdings {
        Controlled::Bank(book) => book.get(position).map(LiveAsset::from_account),
        Controlled::Registry(book) => book.get(position).map(LiveAsset::from_unit),
    }
}

impl ControlBook {
    /// The mock's today: as set, or the civil date in UTC+8.
    pub fn today(&self) -> NaiveDate {
        self.today_override
            .unwrap_or_else(|| china_now().date_naive())
    }

    pub fn clock_overridden(&self) -> bool {
        self.today_override.is_some()
    }

    /// Sets the mock's today; `None` goes back to the real date.
    pub fn set_today(&mut self, today: Option<NaiveDate>) {
        self.today_override = today;
    }

    /// Lapses what has run out by `today`.
    pub fn sweep(&mut self, today: NaiveDate) {
        for asset in self.assets.values_mut() {
            asset.lapse(today);
        }
    }

    /// A control request number seen before: counted as received again,
    /// and answered with the current state of what it did.
    pub fn repeat(&mut self, request_number: &str) -> Option<ControlOutcome> {
        let i = *self.control_index.get(request_number)?;
        if let Some(record) = self.controls.get_mut(i) {
            record.received_count = record.received_count.saturating_add(1);
        }
        self.outcome_of(i)
    }

    /// The current state of what a control request number did.
    pub fn status(&self, request_number: &str) -> Option<ControlOutcome> {
        self.outcome_of(*self.control_index.get(request_number)?)
    }

    /// Decides a control order never seen before and remembers it.
    pub fn apply(
        &mut self,
        holdings: &Controlled,
        request: &ControlRequest,
        today: NaiveDate,
        number_prefix: &str,
        ticket: Option<Ticket>,
    ) -> ControlOutcome {
        let mut items = Vec::with_capacity(request.items.len());
        for item in &request.items {
            let decided = match request.action {
                Action::Freeze | Action::Seal => {
                    self.place(holdings, request, item, today, number_prefix)
                }
                Action::Renew | Action::RenewSeal => self.renew(holdings, request, item),
                Action::Release | Action::ReleaseSeal => self.release(holdings, request, item),
                Action::Deduct => self.deduct(request, item),
            };
            items.push(decided);
        }
        let i = self.controls.len();
        self.controls.push(ControlRecord {
            request_number: request.request_number.clone(),
            action: request.action,
            holder_id: request.holder_id.clone(),
            case_number: request.case_number.clone(),
            received_at: Utc::now(),
            received_count: 1,
            applied_count: 1,
            items,
            ticket,
            acknowledged: request
                .documents
                .iter()
                .map(Document::acknowledged)
                .collect(),
        });
        self.control_index.insert(request.request_number.clone(), i);
        self.outcome_of(i).unwrap_or_else(|| ControlOutcome {
            holder_id: request.holder_id.clone(),
            results: Vec::new(),
            ticket: None,
            acknowledged: Vec::new(),
        })
    }

    fn outcome_of(&self, i: usize) -> Option<ControlOutcome> {
        let record = self.controls.get(i)?;
        let results = record
            .items
            .iter()
            .map(|d| match d {
                Decided::Fixed(result) => result.clone(),
                Decided::Measure(id) => self.measure_result(*id),
            })
            .collect();
        Some(ControlOutcome {
            holder_id: record.holder_id.clone(),
            results,
            ticket: record.ticket.clone(),
            acknowledged: record.acknowledged.clone(),
        })
    }

    /// The state of one of our measures, now.
    fn measure_result(&self, id: usize) -> ItemResult {
        let record = self.measures.get(id);
        let entry = self.locate(id).and_then(|(position, index)| {
            self.assets
                .get(&position)
                .and_then(|a| a.entries.get(index))
        });
        let (Some(record), Some(entry)) = (record, entry) else {
            // Cannot happen: a measure is never forgotten.
            return ItemResult {
                target: record.map(|r| r.target.clone()).unwrap_or_default(),
                state: ControlState::NotControlled,
                controlled_fen: 0,
                shortfall_fen: 0,
                reason: "无此控制措施".into(),
                start_date: None,
                end_date: None,
                queue_position: 0,
                measure_number: String::new(),
            };
        };
        let shortfall = (entry.asked_fen - entry.effective_fen).max(0);
        let (state, controlled_fen, shortfall_fen, reason) = match entry.phase {
            Phase::InForce => (
                ControlState::InForce,
                entry.amount_fen,
                shortfall,
                if shortfall > 0 { "余额不足" } else { "" }.to_owned(),
            ),
            Phase::Waiting(_) => (
                ControlState::Waiting,
                0,
                entry.asked_fen,
                entry.wait_reason.clone(),
            ),
            Phase::Released => (ControlState::Released, entry.amount_fen, 0, String::new()),
            Phase::Lapsed => (ControlState::Lapsed, entry.amount_fen, 0, String::new()),
        };
        ItemResult {
            target: record.target.clone(),
            state,
            controlled_fen,
            shortfall_fen,
            reason,
            start_date: entry.start_date,
            end_date: Some(entry.end_date),
            queue_position: entry.queue_position(),
            measure_number: record.number.clone(),
        }
    }

    /// Where one of our measures is: its asset's position and its index there.
    fn locate(&self, id: usize) -> Option<(usize, usize)> {
        let record = self.measures.get(id)?;
        let asset = self.assets.get(&record.position)?;
        let index = asset
            .entries
            .iter()
            .position(|e| e.origin == Origin::Ours(id))?;
        Some((record.position, index))
    }

    /// The position of an account or unit by its number.
    fn position(&mut self, holdings: &Controlled, target: &str) -> Option<usize> {
        let index = self.index.get_or_insert_with(|| match holdings {
            Controlled::Bank(book) => book
                .accounts()
                .iter()
                .enumerate()
                .map(|(i, a)| (a.account_number.clone(), i))
                .collect(),
            Controlled::Registry(book) => book
                .units()
                .iter()
                .enumerate()
                .map(|(i, u)| (u.unit_number.clone(), i))
                .collect(),
        });
        index.get(target).copied()
    }

    fn asset_mut(&mut self, holdings: &Controlled, position: usize) -> Option<&mut LiveAsset> {
        if let MapEntry::Vacant(vacant) = self.assets.entry(position) {
            vacant.insert(fresh_asset(holdings, position)?);
        }
        self.assets.get_mut(&position)
    }

    fn next_number(&self, prefix: &str, today: NaiveDate) -> String {
        format!(
            "{prefix}{}{:05}",
            today.format("%Y%m%d"),
            self.measures.len() + 1
        )
    }

    /// A freeze or a seal.
    fn place(
        &mut self,
        holdings: &Controlled,
        request: &ControlRequest,
        item: &ControlItem,
        today: NaiveDate,
        number_prefix: &str,
    ) -> Decided {
        let kind = kind_of(holdings);
        let refused = |reason: &str| Decided::Fixed(ItemResult::refused(item, reason));
        let Some(position) = self.position(holdings, &item.target) else {
            return refused(match kind {
                AssetKind::Account => "账号不存在",
                AssetKind::Unit => "不动产单元不存在",
            });
        };
        let (owned, not_owned) = match holdings {
            Controlled::Bank(book) => (
                book.get(position)
                    .is_some_and(|a| a.holder_id == request.holder_id),
                "账户与被执行人不符",
            ),
            Controlled::Registry(book) => (
                book.get(position)
                    .is_some_and(|u| u.owners.iter().any(|o| o.id_number == request.holder_id)),
                "不动产权利人与被执行人不符",
            ),
        };
        if !owned {
            return refused(not_owned);
        }
        let (start, end) = match check_term(kind, item.start_date, item.end_date) {
            Ok(term) => term,
            Err(reason) => return refused(reason),
        };
        let id = self.measures.len();
        let Some(asset) = self.asset_mut(holdings, position) else {
            return refused("账号不存在");
        };
        let asked = item.amount_fen.unwrap_or(0);
        let mut entry = Entry {
            origin: Origin::Ours(id),
            authority: request.court_name.clone(),
            document_number: request.case_number.clone(),
            asked_fen: asked,
            amount_fen: 0,
            effective_fen: 0,
            start_date: Some(start),
            end_date: end,
            phase: Phase::InForce,
            wait_reason: String::new(),
        };
        let blocker = asset
            .blocker(&request.case_number)
            .map(|e| e.authority.clone());
        match kind {
            AssetKind::Account => {
                let available = asset.available();
                match blocker {
                    Some(authority) if available == 0 => {
                        entry.phase = Phase::Waiting(asset.waiting_count() + 1);
                        entry.wait_reason = format!("已被{authority}冻结，轮候");
                    }
                    _ => {
                        let controlled = asked.min(available);
                        if controlled <= 0 {
                            return refused("账户可用余额为零");
                        }
                        entry.amount_fen = controlled;
                        entry.effective_fen = controlled;
                    }
                }
            }
            AssetKind::Unit => {
                let ours_already = asset.entries.iter().any(|e| {
                    e.is_live()
                        && matches!(e.origin, Origin::Ours(_))
                        && e.document_number == request.case_number
                });
                if ours_already {
                    return refused("该不动产已被本案查封");
                }
                if let Some(authority) = blocker {
                    entry.phase = Phase::Waiting(asset.waiting_count() + 1);
                    entry.wait_reason = format!("已被{authority}查封，轮候");
                }
            }
        }
        asset.entries.push(entry);
        let number = self.next_number(number_prefix, today);
        self.measures.push(MeasureRecord {
            number,
            request_number: request.request_number.clone(),
            case_number: request.case_number.clone(),
            position,
            target: item.target.clone(),
        });
        self.by_request
            .entry(request.request_number.clone())
            .or_default()
            .push(id);
        Decided::Measure(id)
    }

    /// The measure an order names by its prior request number, on the
    /// order's account or unit (any, when the order names none), and where
    /// it is. `Err` is why not.
    fn prior(
        &self,
        request: &ControlRequest,
        item: &ControlItem,
    ) -> Result<(usize, usize, usize), PriorProblem> {
        let prior = request
            .prior_request_number
            .as_deref()
            .ok_or(PriorProblem::Unknown)?;
        let ids = self.by_request.get(prior).ok_or(PriorProblem::Unknown)?;
        let id = ids
            .iter()
            .copied()
            .find(|&id| {
                self.measures
                    .get(id)
                    .is_some_and(|m| item.target.is_empty() || m.target == item.target)
            })
            .ok_or(PriorProblem::Unknown)?;
        if self
            .measures
            .get(id)
            .is_some_and(|m| m.case_number != request.case_number)
        {
            return Err(PriorProblem::OtherCase);
        }
        let (position, index) = self.locate(id).ok_or(PriorProblem::Unknown)?;
        Ok((id, position, index))
    }

    fn remember_act(&mut self, request: &ControlRequest, id: usize) {
        self.by_request
            .entry(request.request_number.clone())
            .or_default()
            .push(id);
    }

    fn number_of(&self, id: usize) -> String {
        self.measures
            .get(id)
            .map(|m| m.number.clone())
            .unwrap_or_default()
    }

    /// A renewal: the measure, in force or waiting, gets the new end date.
    fn renew(
        &mut self,
        holdings: &Controlled,
        request: &ControlRequest,
        item: &ControlItem,
    ) -> Decided {
        let kind = kind_of(holdings);
        let gone = match kind {
            AssetKind::Account => "原冻结已失效或已解除，不能续冻",
            AssetKind::Unit => "原查封已失效或已解除，不能续封",
        };
        let refused = |reason: &str| Decided::Fixed(ItemResult::refused(item, reason));
        let (id, position, index) = match self.prior(request, item) {
            Ok(found) => found,
            Err(problem) => return refused(problem.reason(gone)),
        };
        let number = self.number_of(id);
        let Some(entry) = self
            .assets
            .get_mut(&position)
            .and_then(|a| a.entries.get_mut(index))
        else {
            return refused(gone);
        };
        if !entry.is_live() {
            return refused(gone);
        }
        let (start, end) = match check_term(kind, item.start_date, item.end_date) {
            Ok(term) => term,
            Err(reason) => return refused(reason),
        };
        entry.end_date = end;
        let result = ItemResult {
            target: item.target.clone(),
            state: ControlState::InForce,
            controlled_fen: entry.amount_fen,
            shortfall_fen: 0,
            reason: String::new(),
            start_date: Some(start),
            end_date: Some(end),
            queue_position: entry.queue_position(),
            measure_number: number,
        };
        self.remember_act(request, id);
        Decided::Fixed(result)
    }

    /// A release: the measure leaves; the line moves on if it was in force.
    fn release(
        &mut self,
        holdings: &Controlled,
        request: &ControlRequest,
        item: &ControlItem,
    ) -> Decided {
        let gone = match kind_of(holdings) {
            AssetKind::Account => "原冻结不存在或已解除",
            AssetKind::Unit => "原查封不存在或已解除",
        };
        let refused = |reason: &str| Decided::Fixed(ItemResult::refused(item, reason));
        let (id, position, index) = match self.prior(request, item) {
            Ok(found) => found,
            Err(problem) => return refused(problem.reason(gone)),
        };
        let number = self.number_of(id);
        let Some(asset) = self.assets.get_mut(&position) else {
            return refused(gone);
        };
        let Some(entry) = asset.entries.get(index).filter(|e| e.is_live()).cloned() else {
            return refused(gone);
        };
        asset.end(index, Phase::Released);
        if entry.phase == Phase::InForce {
            asset.promote();
        }
        self.remember_act(request, id);
        Decided::Fixed(ItemResult {
            target: item.target.clone(),
            state: ControlState::InForce,
            controlled_fen: entry.amount_fen,
            shortfall_fen: 0,
            reason: String::new(),
            start_date: entry.start_date,
            end_date: Some(entry.end_date),
            queue_position: 0,
            measure_number: number,
        })
    }

    /// A deduction: money moves from the account to the court's, out of a
    /// measure in force.
    fn deduct(&mut self, request: &ControlRequest, item: &ControlItem) -> Decided {
        let not_in_force = "原冻结未生效或已解除，不能划拨";
        let refused = |reason: &str| Decided::Fixed(ItemResult::refused(item, reason));
        let (id, position, index) = match self.prior(request, item) {
            Ok(found) => found,
            Err(problem) => return refused(problem.reason(not_in_force)),
        };
        let number = self.number_of(id);
        let from_account = self
            .measures
            .get(id)
            .map(|m| m.target.clone())
            .unwrap_or_default();
        let amount = item.amount_fen.unwrap_or(0);
        let Some(asset) = self.assets.get_mut(&position) else {
            return refused(not_in_force);
        };
        let Some(entry) = asset
            .entries
            .get_mut(index)
            .filter(|e| e.phase == Phase::InForce)
        else {
            return refused(not_in_force);
        };
        if amount > entry.amount_fen {
            return refused("划拨金额超过冻结金额");
        }
        entry.amount_fen -= amount;
        let (start_date, end_date, emptied) =
            (entry.start_date, entry.end_date, entry.amount_fen == 0);
        asset.balance_fen -= amount;
        if emptied {
            asset.end(index, Phase::Released);
            asset.promote();
        }
        self.transfers.push(Transfer {
            request_number: request.request_number.clone(),
            case_number: request.case_number.clone(),
            from_account,
            holder_id: request.holder_id.clone(),
            amount_fen: amount,
            at: Utc::now(),
        });
        self.remember_act(request, id);
        Decided::Fixed(ItemResult {
            target: item.target.clone(),
            state: ControlState::InForce,
            controlled_fen: amount,
            shortfall_fen: 0,
            reason: String::new(),
            start_date,
            end_date: Some(end_date),
            queue_position: 0,
            measure_number: number,
        })
    }

    /// Another authority lifts its standing measure (by document number) on
    /// an account or unit; the first in line takes effect if it can.
    pub fn lift(
        &mut self,
        holdings: &Controlled,
        target: &str,
        document_number: &str,
    ) -> Result<Lifted, String> {
        let Some(position) = self.position(holdings, target) else {
            return Err(format!("no account or unit {target:?}"));
        };
        let Some(asset) = self.asset_mut(holdings, position) else {
            return Err(format!("no account or unit {target:?}"));
        };
        let Some(index) = asset
            .entries
            .iter()
            .position(|e| e.origin == Origin::Standing && e.document_number == document_number)
        else {
            return Err(format!(
                "no measure of another authority with document number {document_number:?} on {target:?}"
            ));
        };
        let Some(entry) = asset.entries.get(index).cloned() else {
            return Err("the measure vanished".into());
        };
        asset.end(index, Phase::Released);
        let promoted = if entry.phase == Phase::InForce {
            asset
                .promote()
                .and_then(|i| asset.entries.get(i))
                .map(|e| (e.origin, e.document_number.clone()))
        } else {
            None
        };
        let promoted = match promoted {
            Some((Origin::Ours(id), _)) => self.measures.get(id).map(|m| m.request_number.clone()),
            Some((Origin::Standing, document_number)) => Some(document_number),
            None => None,
        };
        Ok(Lifted {
            authority: entry.authority,
            document_number: entry.document_number,
            promoted,
        })
    }

    /// The holdings at `positions` as an inquiry answers them now.
    pub fn found(&self, holdings: &Controlled, positions: &[usize]) -> Found {
        match holdings {
            Controlled::Bank(book) => Found::Accounts(
                positions
                    .iter()
                    .filter_map(|&p| book.get(p).map(|a| self.account_view(p, a)))
                    .collect(),
            ),
            Controlled::Registry(book) => Found::Units(
                positions
                    .iter()
                    .filter_map(|&p| book.get(p).map(|u| self.unit_view(p, u)))
                    .collect(),
            ),
        }
    }

    /// An account of the book (at `position`) as it stands now.
    pub fn account_view(&self, position: usize, account: &Account) -> Account {
        let Some(asset) = self.assets.get(&position) else {
            return account.clone();
        };
        Account {
            balance_fen: asset.balance_fen,
            available_fen: asset.available(),
            measures: asset
                .entries
                .iter()
                .filter(|e| e.is_live())
                .map(Entry::measure)
                .collect(),
            ..account.clone()
        }
    }

    /// A unit of the book (at `position`) as it stands now.
    pub fn unit_view(&self, position: usize, unit: &Unit) -> Unit {
        let Some(asset) = self.assets.get(&position) else {
            return unit.clone();
        };
        Unit {
            seals: asset
                .entries
                .iter()
                .filter(|e| e.is_live())
                .map(Entry::seal)
                .collect(),
            ..unit.clone()
        }
    }

    /// Every measure on the account or unit at `position` for the ledger:
    /// the live ones, and ours that ended.
    pub fn ledger_measures(&self, holdings: &Controlled, position: usize) -> Vec<Value> {
        let fresh;
        let asset = match self.assets.get(&position) {
            Some(asset) => asset,
            None => {
                fresh = fresh_asset(holdings, position);
                match &fresh {
                    Some(asset) => asset,
                    None => return Vec::new(),
                }
            }
        };
        asset
            .entries
            .iter()
            .map(|e| self.ledger_measure(asset.kind, e))
            .collect()
    }

    fn ledger_measure(&self, kind: AssetKind, e: &Entry) -> Value {
        let mut v = json!({
            "authority": e.authority,
            "document_number": e.document_number,
            "start_date": e.start_date,
            "end_date": e.end_date,
            "state": e.phase.name(),
            "queue_position": e.queue_position(),
        });
        if kind == AssetKind::Account {
            v["amount_fen"] = e.amount_fen.into();
            v["asked_fen"] = e.asked_fen.into();
            v["waiting"] = matches!(e.phase, Phase::Waiting(_)).into();
        }
        match e.origin {
            Origin::Standing => v["origin"] = "standing".into(),
            Origin::Ours(id) => {
                v["origin"] = "control".into();
                if let Some(m) = self.measures.get(id) {
                    v["request_number"] = m.request_number.clone().into();
                    v["case_number"] = m.case_number.clone().into();
                    v["measure_number"] = m.number.clone().into();
                }
            }
        }
        v
    }

    /// Every control request number decided, with how often it was
    /// received (`received_count`: what shows whether a sender repeated
    /// itself) and applied (always once: the mock deduplicates by request
    /// number), and what it did, now.
    pub fn ledger_controls(&self, wanted: impl Fn(&str) -> bool) -> Vec<Value> {
        self.controls
            .iter()
            .enumerate()
            .filter(|(_, c)| wanted(&c.holder_id))
            .map(|(i, c)| {
                let results: Vec<Value> = self
                    .outcome_of(i)
                    .map(|o| o.results)
                    .unwrap_or_default()
                    .iter()
                    .map(|r| {
                        json!({
                            "target": r.target,
                            "state": r.state.ledger_name(),
                            "controlled_fen": r.controlled_fen,
                            "reason": r.reason,
                            "measure_number": r.measure_number,
                        })
                    })
                    .collect();
                json!({
                    "request_number": c.request_number,
                    "action": c.action,
                    "holder_id": c.holder_id,
                    "case_number": c.case_number,
                    "received_at": c.received_at,
                    "received_count": c.received_count,
                    "applied_count": c.applied_count,
                    "results": results,
                })
            })
            .collect()
    }

    /// Money moved to courts' accounts by deductions.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }
}

/// Why the measure an order names cannot be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PriorProblem {
    /// No such prior request number, or it placed no measure on this
    /// account or unit.
    Unknown,
    /// The measure is another case's.
    OtherCase,
}

impl PriorProblem {
    fn reason(self, unknown: &'static str) -> &'static str {
        match self {
            Self::Unknown => unknown,
            Self::OtherCase => "原控制措施不属于本案",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    #[test]
    fn documents_are_acknowledged_as_sent_unless_their_number_says_tampered() {
        let sent = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let plain = Document {
            number: "协冻-1".into(),
            sha256: sent.into(),
        };
        assert_eq!(plain.acknowledged(), plain);
        let tampered = Document {
            number: "协冻-1-TAMPERED".into(),
            sha256: sent.into(),
        };
        let ack = tampered.acknowledged();
        assert_eq!(ack.number, "协冻-1-TAMPERED");
        assert_ne!(ack.sha256, sent);
        assert!(is_sha256_hex(&ack.sha256));
        // The SHA-256 of the text "9f86...0a08", hex.
        let expected: String = Sha256::digest(sent.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ack.sha256, expected);
    }

    #[test]
    fn terms_end_the_day_before_the_anniversary() {
        let start = Some(d(2026, 11, 27));
        assert!(check_term(AssetKind::Account, start, Some(d(2027, 11, 26))).is_ok());
        assert_eq!(
            check_term(AssetKind::Account, start, Some(d(2027, 11, 27))),
            Err("冻结期限超过一年")
        );
        assert!(check_term(AssetKind::Unit, start, Some(d(2029, 11, 26))).is_ok());
        assert_eq!(
            check_term(AssetKind::Unit, start, Some(d(2029, 11, 27))),
            Err("查封期限超过三年")
        );
        assert!(check_term(AssetKind::Account, start, Some(d(2026, 11, 26))).is_err());
        assert!(check_term(AssetKind::Account, None, Some(d(2026, 11, 26))).is_err());
    }

    fn entry(origin: Origin, amount: i64, phase: Phase) -> Entry {
        Entry {
            origin,
            authority: "某法院".into(),
            document_number: "(2023)甘0502执1号".into(),
            asked_fen: amount,
            amount_fen: if phase == Phase::InForce { amount } else { 0 },
            effective_fen: if phase == Phase::InForce { amount } else { 0 },
            start_date: None,
            end_date: d(2027, 1, 1),
            phase,
            wait_reason: String::new(),
        }
    }

    #[test]
    fn the_line_moves_up_and_the_first_takes_what_is_available() {
        let mut asset = LiveAsset {
            kind: AssetKind::Account,
            balance_fen: 1000,
            entries: vec![
                entry(Origin::Standing, 1000, Phase::InForce),
                entry(Origin::Ours(0), 600, Phase::Waiting(1)),
                entry(Origin::Ours(1), 800, Phase::Waiting(2)),
            ],
        };
        assert_eq!(asset.available(), 0);
        assert_eq!(asset.promote(), None, "nothing available yet");
        asset.end(0, Phase::Released);
        assert_eq!(asset.entries.len(), 2, "a standing measure is removed");
        assert_eq!(asset.promote(), Some(0));
        assert_eq!(asset.entries[0].amount_fen, 600);
        assert_eq!(asset.entries[1].phase, Phase::Waiting(1));
        assert_eq!(asset.available(), 400);
        // Our first measure lapses: the second takes what is left, 800 of 1000.
        asset.entries[0].end_date = d(2026, 1, 1);
        asset.lapse(d(2026, 6, 1));
        assert_eq!(asset.entries[0].phase, Phase::Lapsed);
        assert_eq!(asset.entries[1].phase, Phase::InForce);
        assert_eq!(asset.entries[1].amount_fen, 800);
    }
}
