//! One asset as the control ledger keeps it once an order touched it:
//! what it holds and every measure on it, other authorities' and ours, in
//! one line of waiting measures. The line moves, measures take effect and
//! lapse here, by the rules of the asset's kind (`kind`); this module never
//! decides an order (`control` does).

use chrono::NaiveDate;

use super::kind::{AssetKind, Measuring, NOT_MONEY, NOT_WITHDRAWABLE};
use crate::agency::Holdings;
use crate::bank_book::{Account, Measure};
use crate::further_book::{
    EquityHolding, FundAccount, FurtherBook, PaymentAccount, SecuritiesHolding, StandingMeasure,
    Vehicle,
};
use crate::registry_book::{Seal, Unit};

/// Who placed a measure: another authority (in the book), or a control
/// order of ours (the id of its measure record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Standing,
    Ours(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    InForce,
    /// Place in line, from 1.
    Waiting(u32),
    Released,
    Lapsed,
}

impl Phase {
    pub fn name(self) -> &'static str {
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
/// Amounts are in the asset's measure: fen, shares, or for a whole asset
/// what it stands for (an equity holding's subscribed capital; 0 for a
/// unit or a vehicle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub origin: Origin,
    pub authority: String,
    pub document_number: String,
    /// What was asked (for a standing measure: what it holds).
    pub asked: i64,
    /// Held now: 0 while waiting.
    pub held: i64,
    /// Held when it took effect: `asked - effective` could not be
    /// controlled.
    pub effective: i64,
    pub start_date: Option<NaiveDate>,
    /// A standing waiting measure may have no term yet; ours always have.
    pub end_date: Option<NaiveDate>,
    pub phase: Phase,
    /// Why it waits, while it does.
    pub wait_reason: String,
}

impl Entry {
    pub fn is_live(&self) -> bool {
        matches!(self.phase, Phase::InForce | Phase::Waiting(_))
    }

    pub fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Waiting(_))
    }

    pub fn queue_position(&self) -> u32 {
        match self.phase {
            Phase::Waiting(p) => p,
            _ => 0,
        }
    }

    /// What it shows: held, or while waiting what it asks.
    pub fn shown(&self) -> i64 {
        if self.is_waiting() {
            self.asked
        } else {
            self.held
        }
    }

    /// Another authority's measure as the book has it.
    fn standing(
        authority: &str,
        document_number: &str,
        amount: i64,
        (start_date, end_date): (Option<NaiveDate>, Option<NaiveDate>),
        queue_position: u32,
    ) -> Self {
        let (phase, held) = if queue_position == 0 {
            (Phase::InForce, amount)
        } else {
            (Phase::Waiting(queue_position), 0)
        };
        Self {
            origin: Origin::Standing,
            authority: authority.to_owned(),
            document_number: document_number.to_owned(),
            asked: amount,
            held,
            effective: held,
            start_date,
            end_date,
            phase,
            wait_reason: String::new(),
        }
    }

    /// As a bank's inquiry answer shows it.
    pub fn measure(&self) -> Measure {
        Measure {
            authority: self.authority.clone(),
            document_number: self.document_number.clone(),
            amount_fen: self.shown(),
            end_date: self.end_date.unwrap_or_default(),
            waiting: self.is_waiting(),
        }
    }

    /// As a registry's inquiry answer shows it.
    pub fn seal(&self) -> Seal {
        let end_date = self.end_date.unwrap_or_default();
        Seal {
            authority: self.authority.clone(),
            document_number: self.document_number.clone(),
            start_date: self.start_date.unwrap_or(end_date),
            end_date,
            queue_position: self.queue_position(),
        }
    }

    /// As an agency of a further kind shows it: money (fen), shares, an
    /// equity holding's frozen capital, or nothing (a vehicle's seal).
    pub fn standing_measure(&self, kind: AssetKind) -> StandingMeasure {
        let (amount_fen, quantity) = match kind.measuring() {
            Measuring::Money => (Some(self.shown()), None),
            Measuring::Shares => (None, Some(self.shown())),
            Measuring::Whole => ((self.asked > 0).then_some(self.asked), None),
        };
        StandingMeasure {
            authority: self.authority.clone(),
            document_number: self.document_number.clone(),
            amount_fen,
            quantity,
            start_date: self.start_date,
            end_date: self.end_date,
            queue_position: self.queue_position(),
        }
    }
}

/// An asset a control order touched: what it holds and every measure on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LiveAsset {
    pub kind: AssetKind,
    /// Counted kinds: the balance (fen) or quantity (shares). Equity: the
    /// subscribed capital the holding stands for. Units, vehicles: 0.
    pub balance: i64,
    /// Why money may not be deducted from it, when it may not.
    pub no_deduction: Option<&'static str>,
    pub entries: Vec<Entry>,
}

impl LiveAsset {
    /// The asset at `position` of the book, as the book has it.
    pub fn fresh(holdings: &Holdings, position: usize) -> Option<Self> {
        match holdings {
            Holdings::Bank(book) => book.get(position).map(Self::from_account),
            Holdings::Registry(book) => book.get(position).map(Self::from_unit),
            Holdings::Further(book) => match book.as_ref() {
                FurtherBook::Vehicles(b) => b.records().get(position).map(Self::from_vehicle),
                FurtherBook::Securities(b) => b.records().get(position).map(Self::from_securities),
                FurtherBook::PaymentAccounts(b) => {
                    b.records().get(position).map(Self::from_payment_account)
                }
                FurtherBook::FundAccounts(b) => {
                    b.records().get(position).map(Self::from_fund_account)
                }
                FurtherBook::Equity(b) => b.records().get(position).map(Self::from_equity),
            },
        }
    }

    fn new(kind: AssetKind, balance: i64, entries: Vec<Entry>) -> Self {
        let no_deduction = (kind.measuring() != Measuring::Money).then_some(NOT_MONEY);
        Self {
            kind,
            balance,
            no_deduction,
            entries,
        }
    }

    fn from_account(a: &Account) -> Self {
        let mut line = 0;
        let entries = a
            .measures
            .iter()
            .map(|m| {
                let place = if m.waiting {
                    line += 1;
                    line
                } else {
                    0
                };
                Entry::standing(
                    &m.authority,
                    &m.document_number,
                    m.amount_fen,
                    (None, Some(m.end_date)),
                    place,
                )
            })
            .collect();
        Self::new(AssetKind::BankAccount, a.balance_fen, entries)
    }

    fn from_unit(u: &Unit) -> Self {
        let entries = u
            .seals
            .iter()
            .map(|s| {
                Entry::standing(
                    &s.authority,
                    &s.document_number,
                    0,
                    (Some(s.start_date), Some(s.end_date)),
                    s.queue_position,
                )
            })
            .collect();
        Self::new(AssetKind::RealEstate, 0, entries)
    }

    fn from_standing(
        kind: AssetKind,
        balance: i64,
        measures: &[StandingMeasure],
        part: impl Fn(&StandingMeasure) -> Option<i64>,
    ) -> Self {
        let entries = measures
            .iter()
            .map(|m| {
                Entry::standing(
                    &m.authority,
                    &m.document_number,
                    part(m).unwrap_or(0),
                    (m.start_date, m.end_date),
                    m.queue_position,
                )
            })
            .collect();
        Self::new(kind, balance, entries)
    }

    fn from_vehicle(v: &Vehicle) -> Self {
        Self::from_standing(AssetKind::Vehicle, 0, &v.seals, |_| None)
    }

    fn from_securities(h: &SecuritiesHolding) -> Self {
        Self::from_standing(AssetKind::Securities, h.quantity, &h.freezes, |m| {
            m.quantity
        })
    }

    fn from_payment_account(a: &PaymentAccount) -> Self {
        Self::from_standing(AssetKind::PaymentAccount, a.balance_fen, &a.freezes, |m| {
            m.amount_fen
        })
    }

    fn from_fund_account(a: &FundAccount) -> Self {
        let mut asset =
            Self::from_standing(AssetKind::ProvidentFund, a.balance_fen, &a.freezes, |m| {
                m.amount_fen
            });
        asset.no_deduction = (!a.withdrawable).then_some(NOT_WITHDRAWABLE);
        asset
    }

    fn from_equity(e: &EquityHolding) -> Self {
        Self::from_standing(AssetKind::Equity, e.subscribed_fen, &e.freezes, |m| {
            m.amount_fen
        })
    }

    pub fn held(&self) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.phase == Phase::InForce)
            .map(|e| e.held)
            .sum()
    }

    /// Counted kinds: the balance less the measures in force, never below
    /// zero.
    pub fn available(&self) -> i64 {
        (self.balance - self.held()).max(0)
    }

    /// Whether any measure is in force on it.
    pub fn bound(&self) -> bool {
        self.entries.iter().any(|e| e.phase == Phase::InForce)
    }

    pub fn waiting_count(&self) -> u32 {
        let count = self.entries.iter().filter(|e| e.is_waiting()).count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// The first measure in force by another authority than `case_number`'s.
    pub fn blocker(&self, case_number: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.phase == Phase::InForce
                && (e.origin == Origin::Standing || e.document_number != case_number)
        })
    }

    /// Whether a live measure of ours of `case_number` is on it.
    pub fn ours_of(&self, case_number: &str) -> bool {
        self.entries.iter().any(|e| {
            e.is_live() && matches!(e.origin, Origin::Ours(_)) && e.document_number == case_number
        })
    }

    /// Ends the measure at `index` (a standing one is removed); the line
    /// behind it moves up when it was waiting.
    pub fn end(&mut self, index: usize, phase: Phase) {
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

    /// The first in line takes effect, if it can: on a counted asset with
    /// what is available (at most what it asked; nothing available, it
    /// keeps waiting), on a whole asset when no measure is in force any
    /// more. Returns its index.
    pub fn promote(&mut self) -> Option<usize> {
        let counted = self.kind.measuring().counted();
        let available = self.available();
        let bound = self.bound();
        let index = self
            .entries
            .iter()
            .position(|e| e.phase == Phase::Waiting(1))?;
        if (counted && available == 0) || (!counted && bound) {
            return None;
        }
        let entry = self.entries.get_mut(index)?;
        entry.held = if counted {
            entry.asked.min(available)
        } else {
            entry.asked
        };
        entry.effective = entry.held;
        entry.phase = Phase::InForce;
        entry.wait_reason.clear();
        self.move_up_behind(1);
        Some(index)
    }

    /// Lapses every measure of ours whose end date is before `today`, each
    /// letting the line move on.
    pub fn lapse(&mut self, today: NaiveDate) {
        while let Some(index) = self.entries.iter().position(|e| {
            matches!(e.origin, Origin::Ours(_))
                && e.is_live()
                && e.end_date.is_some_and(|end| end < today)
        }) {
            let was_in_force = self.entries.get(index).map(|e| e.phase) == Some(Phase::InForce);
            self.end(index, Phase::Lapsed);
            if was_in_force {
                self.promote();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    fn entry(origin: Origin, amount: i64, phase: Phase) -> Entry {
        let held = if phase == Phase::InForce { amount } else { 0 };
        Entry {
            origin,
            authority: "某法院".into(),
            document_number: "(2023)甘0502执1号".into(),
            asked: amount,
            held,
            effective: held,
            start_date: None,
            end_date: Some(d(2027, 1, 1)),
            phase,
            wait_reason: String::new(),
        }
    }

    #[test]
    fn the_line_moves_up_and_the_first_takes_what_is_available() {
        let mut asset = LiveAsset::new(
            AssetKind::BankAccount,
            1000,
            vec![
                entry(Origin::Standing, 1000, Phase::InForce),
                entry(Origin::Ours(0), 600, Phase::Waiting(1)),
                entry(Origin::Ours(1), 800, Phase::Waiting(2)),
            ],
        );
        assert_eq!(asset.available(), 0);
        assert_eq!(asset.promote(), None, "nothing available yet");
        asset.end(0, Phase::Released);
        assert_eq!(asset.entries.len(), 2, "a standing measure is removed");
        assert_eq!(asset.promote(), Some(0));
        assert_eq!(asset.entries[0].held, 600);
        assert_eq!(asset.entries[1].phase, Phase::Waiting(1));
        assert_eq!(asset.available(), 400);
        // Our first measure lapses: the second takes what is left, 800 of 1000.
        asset.entries[0].end_date = Some(d(2026, 1, 1));
        asset.lapse(d(2026, 6, 1));
        assert_eq!(asset.entries[0].phase, Phase::Lapsed);
        assert_eq!(asset.entries[1].phase, Phase::InForce);
        assert_eq!(asset.entries[1].held, 800);
    }

    #[test]
    fn a_whole_asset_promotes_only_once_nothing_is_in_force() {
        let mut asset = LiveAsset::new(
            AssetKind::Vehicle,
            0,
            vec![
                entry(Origin::Standing, 0, Phase::InForce),
                entry(Origin::Ours(0), 0, Phase::Waiting(1)),
            ],
        );
        assert_eq!(asset.promote(), None);
        asset.end(0, Phase::Released);
        assert_eq!(asset.promote(), Some(0));
        assert!(asset.bound());
        assert_eq!(asset.no_deduction, Some(NOT_MONEY));
    }

    #[test]
    fn a_standing_measure_shows_as_the_book_had_it() {
        let standing = StandingMeasure {
            authority: "秦州区人民法院".into(),
            document_number: "(2025)甘0502执1号".into(),
            amount_fen: None,
            quantity: Some(2_000),
            start_date: Some(d(2025, 3, 1)),
            end_date: Some(d(2028, 2, 29)),
            queue_position: 0,
        };
        let waiting = StandingMeasure {
            quantity: Some(500),
            end_date: None,
            queue_position: 1,
            ..standing.clone()
        };
        let asset = LiveAsset::from_standing(
            AssetKind::Securities,
            12_000,
            &[standing.clone(), waiting.clone()],
            |m| m.quantity,
        );
        let shown: Vec<StandingMeasure> = asset
            .entries
            .iter()
            .map(|e| e.standing_measure(AssetKind::Securities))
            .collect();
        assert_eq!(shown, [standing, waiting]);
        assert_eq!(asset.available(), 10_000);
    }
}
