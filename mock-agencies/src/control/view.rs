//! How the control ledger shows the book: an asset no order touched answers
//! as the book has it; one an order touched answers from its live copy (its
//! balance, and every live measure on it, other authorities' included), to
//! inquiries in the book's own records and to `GET /_mock/ledger` with
//! every measure in full (ours that ended too). Never changes anything.

use serde_json::{Value, json};

use super::ControlBook;
use super::asset::{Entry, LiveAsset, Origin};
use super::kind::{AssetKind, Measuring};
use crate::agency::Holdings;
use crate::bank_book::Account;
use crate::further_book::{Book, Filed, FurtherBook, FurtherFound, StandingMeasure};
use crate::ledger::Found;
use crate::registry_book::Unit;

impl ControlBook {
    /// The holdings at `positions` as an inquiry answers them now.
    pub fn found(&self, holdings: &Holdings, positions: &[usize]) -> Found {
        match holdings {
            Holdings::Bank(book) => Found::Accounts(
                positions
                    .iter()
                    .filter_map(|&p| book.get(p).map(|a| self.account_view(p, a)))
                    .collect(),
            ),
            Holdings::Registry(book) => Found::Units(
                positions
                    .iter()
                    .filter_map(|&p| book.get(p).map(|u| self.unit_view(p, u)))
                    .collect(),
            ),
            Holdings::Further(book) => Found::Further(self.further_view(book, positions)),
        }
    }

    /// An account of the book (at `position`) as it stands now.
    pub fn account_view(&self, position: usize, account: &Account) -> Account {
        let Some(asset) = self.assets.get(&position) else {
            return account.clone();
        };
        Account {
            balance_fen: asset.balance,
            available_fen: asset.available(),
            measures: live(asset).map(Entry::measure).collect(),
            ..account.clone()
        }
    }

    /// A unit of the book (at `position`) as it stands now.
    pub fn unit_view(&self, position: usize, unit: &Unit) -> Unit {
        let Some(asset) = self.assets.get(&position) else {
            return unit.clone();
        };
        Unit {
            seals: live(asset).map(Entry::seal).collect(),
            ..unit.clone()
        }
    }

    /// The records of a further kind at `positions` as they stand now: a
    /// live asset's balance and measures replace the book's.
    pub fn further_view(&self, book: &FurtherBook, positions: &[usize]) -> FurtherFound {
        /// Each record, with what `change` makes of it when it is live.
        fn pick<T: Filed>(
            control: &ControlBook,
            book: &Book<T>,
            positions: &[usize],
            change: impl Fn(&mut T, &LiveAsset, Vec<StandingMeasure>),
        ) -> Vec<T> {
            positions
                .iter()
                .filter_map(|&p| {
                    let mut record = book.records().get(p)?.clone();
                    if let Some(asset) = control.assets.get(&p) {
                        let measures = live(asset)
                            .map(|e| e.standing_measure(asset.kind))
                            .collect();
                        change(&mut record, asset, measures);
                    }
                    Some(record)
                })
                .collect()
        }
        match book {
            FurtherBook::Vehicles(b) => {
                FurtherFound::Vehicles(pick(self, b, positions, |v, _, m| v.seals = m))
            }
            FurtherBook::Securities(b) => {
                FurtherFound::Securities(pick(self, b, positions, |h, _, m| h.freezes = m))
            }
            FurtherBook::PaymentAccounts(b) => {
                FurtherFound::PaymentAccounts(pick(self, b, positions, |a, asset, m| {
                    a.balance_fen = asset.balance;
                    a.freezes = m;
                }))
            }
            FurtherBook::FundAccounts(b) => {
                FurtherFound::FundAccounts(pick(self, b, positions, |a, asset, m| {
                    a.balance_fen = asset.balance;
                    a.freezes = m;
                }))
            }
            FurtherBook::Equity(b) => {
                FurtherFound::Equity(pick(self, b, positions, |e, _, m| e.freezes = m))
            }
        }
    }

    /// Every measure on the asset at `position` for the ledger: the live
    /// ones, and ours that ended.
    pub fn ledger_measures(&self, holdings: &Holdings, position: usize) -> Vec<Value> {
        let fresh;
        let asset = match self.assets.get(&position) {
            Some(asset) => asset,
            None => {
                fresh = LiveAsset::fresh(holdings, position);
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
        match kind.measuring() {
            Measuring::Money => {
                v["amount_fen"] = e.held.into();
                v["asked_fen"] = e.asked.into();
                v["waiting"] = e.is_waiting().into();
            }
            Measuring::Shares => {
                v["quantity"] = e.held.into();
                v["asked_quantity"] = e.asked.into();
                v["waiting"] = e.is_waiting().into();
            }
            Measuring::Whole if kind == AssetKind::Equity => {
                v["amount_fen"] = (e.asked > 0).then_some(e.asked).into();
            }
            Measuring::Whole => {}
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
}

fn live(asset: &LiveAsset) -> impl Iterator<Item = &Entry> {
    asset.entries.iter().filter(|e| e.is_live())
}
