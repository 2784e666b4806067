//! The control ledger of one agency: the measures courts place with control
//! orders (a bank's or payment platform's or provident fund centre's
//! freeze, renewal, release and deduction; a registry's or vehicle
//! register's seal, renewal and release; the securities depository's
//! freeze of shares; the market registry's freeze of equity), kept beside
//! the agency's immutable book and shown through it: an asset that a
//! control order touched is copied into a live asset (what it holds and
//! every measure on it, the standing ones of other authorities included)
//! and from then on answers from that copy (`view`).
//!
//! The rules (domain.md), dialect-neutral and the same for every kind of
//! asset; what differs per kind (how it is measured, the longest term, the
//! words of a refusal) is `asset`'s. Each dialect only reads the order
//! from its wire and writes the [`ItemResult`]s back:
//! - A control request number is decided once. A repeat applies nothing and
//!   answers the current state of what it did.
//! - Freeze or seal: the asset must exist and be the subject's, the term
//!   at most the kind's (funds one year, vehicles two, real estate,
//!   securities and equity three). A counted asset (money, shares) is
//!   controlled for what is asked, at most what is free (what it holds
//!   less the measures in force): less than asked is a shortfall. With
//!   nothing free and a measure in force by another authority (a standing
//!   one, or ours of another case) it waits in line instead. A whole asset
//!   (a unit, a vehicle, an equity holding) waits in line behind any
//!   other authority's measure in force.
//! - Renew: a measure in force or waiting gets a new end date.
//! - Release: the measure leaves; if it was in force, the first waiting one
//!   takes effect with what is then free.
//! - Deduct (money only): money leaves the account for the court's, out of
//!   a measure in force; a measure deducted to nothing ends as released. A
//!   provident fund account not eligible for withdrawal refuses it.
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
//! ends in [`TAMPERED_SUFFIX`](order::TAMPERED_SUFFIX) is acknowledged with another digest (the
//! SHA-256 of the sent digest's text, hex), as if the agency had received
//! another file. The `refuse` fault's refusals take nothing in and
//! acknowledge nothing.

mod asset;
mod kind;
mod order;
mod view;

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value, json};

pub(crate) use kind::{AssetKind, Measuring, securities_target};
pub(crate) use order::{
    Action, ControlItem, ControlOutcome, ControlRequest, ControlState, Document, ItemResult,
    check_officers, given, is_sha256_hex, read_date, read_documents, refusal,
};

use crate::agency::{Holdings, china_now};
use crate::ledger::Ticket;
use asset::{Entry, LiveAsset, Origin, Phase};
use kind::{owned_by, targets};

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

/// A measure placed by one of our control orders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MeasureRecord {
    /// The agency's own number for it (`KZBH`, `hold_id`, `YWH` ...).
    number: String,
    /// The freeze or seal that placed it.
    request_number: String,
    case_number: String,
    /// Position of its asset in the book.
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
    /// Touched assets, by position in the book.
    assets: HashMap<usize, LiveAsset>,
    /// An asset's key → its positions (equity in one company may be held
    /// by several), built on the first control order.
    index: Option<HashMap<String, Vec<usize>>>,
    /// Our measures, by id.
    measures: Vec<MeasureRecord>,
    /// Control request number → the measures it placed or acted on.
    by_request: HashMap<String, Vec<usize>>,
    controls: Vec<ControlRecord>,
    control_index: HashMap<String, usize>,
    transfers: Vec<Transfer>,
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
        holdings: &Holdings,
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
        let found = self.locate(id).and_then(|(position, index)| {
            let asset = self.assets.get(&position)?;
            Some((asset.kind, asset.entries.get(index)?))
        });
        let (Some(record), Some((kind, entry))) = (record, found) else {
            // Cannot happen: a measure is never forgotten.
            return ItemResult {
                target: record.map(|r| r.target.clone()).unwrap_or_default(),
                state: ControlState::NotControlled,
                controlled: 0,
                shortfall: 0,
                reason: "无此控制措施".into(),
                start_date: None,
                end_date: None,
                queue_position: 0,
                measure_number: String::new(),
            };
        };
        let shortfall = (entry.asked - entry.effective).max(0);
        let (state, controlled, shortfall, reason) = match entry.phase {
            Phase::InForce => (
                ControlState::InForce,
                entry.held,
                shortfall,
                if shortfall > 0 {
                    kind.words().short
                } else {
                    ""
                }
                .to_owned(),
            ),
            Phase::Waiting(_) => (
                ControlState::Waiting,
                0,
                entry.asked,
                entry.wait_reason.clone(),
            ),
            Phase::Released => (ControlState::Released, entry.held, 0, String::new()),
            Phase::Lapsed => (ControlState::Lapsed, entry.held, 0, String::new()),
        };
        ItemResult {
            target: record.target.clone(),
            state,
            controlled,
            shortfall,
            reason,
            start_date: entry.start_date,
            end_date: entry.end_date,
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

    /// The positions of the assets with this key.
    fn positions(&mut self, holdings: &Holdings, target: &str) -> Vec<usize> {
        let index = self.index.get_or_insert_with(|| {
            let mut index: HashMap<String, Vec<usize>> = HashMap::new();
            for (key, position) in targets(holdings) {
                index.entry(key).or_default().push(position);
            }
            index
        });
        index.get(target).cloned().unwrap_or_default()
    }

    fn asset_mut(&mut self, holdings: &Holdings, position: usize) -> Option<&mut LiveAsset> {
        if let MapEntry::Vacant(vacant) = self.assets.entry(position) {
            vacant.insert(LiveAsset::fresh(holdings, position)?);
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
        holdings: &Holdings,
        request: &ControlRequest,
        item: &ControlItem,
        today: NaiveDate,
        number_prefix: &str,
    ) -> Decided {
        let kind = AssetKind::of(holdings);
        let words = kind.words();
        let refused = |reason: &str| Decided::Fixed(ItemResult::refused(item, reason));
        let positions = self.positions(holdings, &item.target);
        if positions.is_empty() {
            return refused(words.missing);
        }
        let Some(position) = positions
            .into_iter()
            .find(|&p| owned_by(holdings, p, &request.holder_id))
        else {
            return refused(words.not_owned);
        };
        let (start, end) = match kind.check_term(item.start_date, item.end_date) {
            Ok(term) => term,
            Err(reason) => return refused(reason),
        };
        let id = self.measures.len();
        let Some(asset) = self.asset_mut(holdings, position) else {
            return refused(words.missing);
        };
        let counted = kind.measuring().counted();
        let mut entry = Entry {
            origin: Origin::Ours(id),
            authority: request.court_name.clone(),
            document_number: request.case_number.clone(),
            // A whole asset is asked for whole: what it stands for.
            asked: if counted {
                item.amount.unwrap_or(0)
            } else {
                asset.balance
            },
            held: 0,
            effective: 0,
            start_date: Some(start),
            end_date: Some(end),
            phase: Phase::InForce,
            wait_reason: String::new(),
        };
        let blocker = asset
            .blocker(&request.case_number)
            .map(|e| e.authority.clone());
        let waits = |authority: &str| format!("已被{authority}{}，轮候", words.measure);
        if counted {
            let available = asset.available();
            match blocker {
                Some(authority) if available == 0 => {
                    entry.phase = Phase::Waiting(asset.waiting_count() + 1);
                    entry.wait_reason = waits(&authority);
                }
                _ => {
                    let controlled = entry.asked.min(available);
                    if controlled <= 0 {
                        return refused(words.nothing_free);
                    }
                    entry.held = controlled;
                    entry.effective = controlled;
                }
            }
        } else {
            if asset.ours_of(&request.case_number) {
                return refused(words.already_ours);
            }
            match blocker {
                Some(authority) => {
                    entry.phase = Phase::Waiting(asset.waiting_count() + 1);
                    entry.wait_reason = waits(&authority);
                }
                None => {
                    entry.held = entry.asked;
                    entry.effective = entry.asked;
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
    /// order's asset (any, when the order names none), and where it is.
    /// `Err` is why not.
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
        holdings: &Holdings,
        request: &ControlRequest,
        item: &ControlItem,
    ) -> Decided {
        let kind = AssetKind::of(holdings);
        let gone = kind.words().renew_gone;
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
        let (start, end) = match kind.check_term(item.start_date, item.end_date) {
            Ok(term) => term,
            Err(reason) => return refused(reason),
        };
        entry.end_date = Some(end);
        let result = ItemResult {
            target: item.target.clone(),
            state: ControlState::InForce,
            controlled: entry.held,
            shortfall: 0,
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
        holdings: &Holdings,
        request: &ControlRequest,
        item: &ControlItem,
    ) -> Decided {
        let gone = AssetKind::of(holdings).words().release_gone;
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
            controlled: entry.held,
            shortfall: 0,
            reason: String::new(),
            start_date: entry.start_date,
            end_date: entry.end_date,
            queue_position: 0,
            measure_number: number,
        })
    }

    /// A deduction: money moves from the account to the court's, out of a
    /// measure in force, when the account allows it.
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
        let amount = item.amount.unwrap_or(0);
        let Some(asset) = self.assets.get_mut(&position) else {
            return refused(not_in_force);
        };
        if let Some(reason) = asset.no_deduction {
            return refused(reason);
        }
        let Some(entry) = asset
            .entries
            .get_mut(index)
            .filter(|e| e.phase == Phase::InForce)
        else {
            return refused(not_in_force);
        };
        if amount > entry.held {
            return refused("划拨金额超过冻结金额");
        }
        entry.held -= amount;
        let (start_date, end_date, emptied) = (entry.start_date, entry.end_date, entry.held == 0);
        asset.balance -= amount;
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
            controlled: amount,
            shortfall: 0,
            reason: String::new(),
            start_date,
            end_date,
            queue_position: 0,
            measure_number: number,
        })
    }

    /// Another authority lifts its standing measure (by document number) on
    /// the asset with this key; the first in line takes effect if it can.
    pub fn lift(
        &mut self,
        holdings: &Holdings,
        target: &str,
        document_number: &str,
    ) -> Result<Lifted, String> {
        let positions = self.positions(holdings, target);
        if positions.is_empty() {
            return Err(format!("no asset {target:?}"));
        }
        let standing =
            |e: &Entry| e.origin == Origin::Standing && e.document_number == document_number;
        // Of the assets with the key (equity: several holders), the one the
        // measure stands on.
        let found = positions.into_iter().find_map(|position| {
            let asset = self.asset_mut(holdings, position)?;
            let index = asset.entries.iter().position(standing)?;
            Some((position, index))
        });
        let Some((position, index)) = found else {
            return Err(format!(
                "no measure of another authority with document number {document_number:?} on {target:?}"
            ));
        };
        let Some(asset) = self.assets.get_mut(&position) else {
            return Err("the asset vanished".into());
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

    /// Every control request number decided, with how often it was
    /// received (`received_count`: what shows whether a sender repeated
    /// itself) and applied (always once: the mock deduplicates by request
    /// number), and what it did, now: `controlled_quantity` on securities,
    /// `controlled_fen` on anything else.
    pub fn ledger_controls(&self, kind: AssetKind, wanted: impl Fn(&str) -> bool) -> Vec<Value> {
        let controlled_key = match kind.measuring() {
            Measuring::Shares => "controlled_quantity",
            Measuring::Money | Measuring::Whole => "controlled_fen",
        };
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
                        let mut v = json!({
                            "target": r.target,
                            "state": r.state.ledger_name(),
                            "reason": r.reason,
                            "queue_position": r.queue_position,
                            "measure_number": r.measure_number,
                        });
                        v[controlled_key] = r.controlled.into();
                        v
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
    /// asset.
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
mod tests;
