//! The holdings of the further kinds of asset (docs/domain: vehicles,
//! securities, payment accounts, provident fund accounts, equity), one book
//! per agency, each record filed under its holder. The measures on a record
//! are other authorities' standing ones, as the book has them; control
//! orders of ours are kept by the agency's control ledger, which shows a
//! record it touched as it stands now (`control`). Immutable once built; an
//! answer is a snapshot of the records.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Value, json};

use crate::money;

/// A measure another authority has standing on a record: in force
/// (`queue_position` 0) or waiting in line (1, 2, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StandingMeasure {
    pub authority: String,
    pub document_number: String,
    /// Money it holds, in fen (payment and fund accounts), or the capital
    /// it holds (equity); `None` for a vehicle's seal and a securities freeze.
    pub amount_fen: Option<i64>,
    /// Units it holds (securities, frozen by quantity).
    pub quantity: Option<i64>,
    pub start_date: Option<NaiveDate>,
    /// A waiting measure has no term yet.
    pub end_date: Option<NaiveDate>,
    pub queue_position: u32,
}

impl StandingMeasure {
    pub fn in_force(&self) -> bool {
        self.queue_position == 0
    }
}

/// What is held in force: the measures' sum of `part`, never below zero.
fn held(measures: &[StandingMeasure], part: impl Fn(&StandingMeasure) -> Option<i64>) -> i64 {
    measures
        .iter()
        .filter(|m| m.in_force())
        .filter_map(part)
        .sum::<i64>()
        .max(0)
}

/// A motor vehicle on the traffic administration's register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vehicle {
    pub holder_id: String,
    pub holder_name: String,
    /// 号牌号码, e.g. `甘E·A1234`.
    pub plate_number: String,
    /// 号牌种类: `02` small car, `01` large vehicle ...
    pub plate_type: String,
    /// 车辆识别代号: 17 characters.
    pub vin: String,
    pub make_model: String,
    pub first_registered: NaiveDate,
    pub mortgaged: bool,
    pub seals: Vec<StandingMeasure>,
}

impl Vehicle {
    /// The register's state flags: `K` sealed (a seal in force), `M`
    /// mortgaged, standing together (`KM`); `A` when neither.
    pub fn state_flags(&self) -> String {
        let mut flags = String::new();
        if self.seals.iter().any(StandingMeasure::in_force) {
            flags.push('K');
        }
        if self.mortgaged {
            flags.push('M');
        }
        if flags.is_empty() {
            flags.push('A');
        }
        flags
    }
}

/// Units of one security in one securities account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecuritiesHolding {
    pub holder_id: String,
    pub holder_name: String,
    /// `A123456789` (Shanghai) or `0123456789` (Shenzhen).
    pub securities_account: String,
    /// `SH` or `SZ`.
    pub market: String,
    pub security_code: String,
    pub security_name: String,
    pub quantity: i64,
    /// The broker's seat (托管单元).
    pub custodian: String,
    pub freezes: Vec<StandingMeasure>,
}

impl SecuritiesHolding {
    /// Units no freeze in force holds.
    pub fn free_quantity(&self) -> i64 {
        (self.quantity - held(&self.freezes, |m| m.quantity)).max(0)
    }
}

/// An account at a non-bank payment institution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentAccount {
    pub holder_id: String,
    pub holder_name: String,
    pub account_id: String,
    pub balance_fen: i64,
    /// What sits in the platform's money-market fund.
    pub fund_fen: i64,
    pub freezes: Vec<StandingMeasure>,
}

impl PaymentAccount {
    pub fn available_fen(&self) -> i64 {
        (self.balance_fen - held(&self.freezes, |m| m.amount_fen)).max(0)
    }
}

/// The state of a provident fund account, as the centre writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FundState {
    /// Contributions are being paid (`NORMAL`).
    Contributing,
    /// Sealed (`SEALED`): contributions stopped, the balance kept.
    Sealed,
    /// Closed (`CLOSED`).
    Closed,
}

impl FundState {
    pub fn wire_code(self) -> &'static str {
        match self {
            Self::Contributing => "NORMAL",
            Self::Sealed => "SEALED",
            Self::Closed => "CLOSED",
        }
    }
}

/// An account at a city's housing provident fund centre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FundAccount {
    pub holder_id: String,
    pub holder_name: String,
    pub account_no: String,
    pub balance_fen: i64,
    pub state: FundState,
    /// Whether the holder may withdraw now (retirement, leaving the city,
    /// buying a home ...): only then may a court deduct from it.
    pub withdrawable: bool,
    pub freezes: Vec<StandingMeasure>,
}

impl FundAccount {
    pub fn available_fen(&self) -> i64 {
        (self.balance_fen - held(&self.freezes, |m| m.amount_fen)).max(0)
    }
}

/// Equity a subject holds in a company, as enterprise registration has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EquityHolding {
    pub holder_id: String,
    pub holder_name: String,
    pub company_name: String,
    pub company_credit_code: String,
    pub subscribed_fen: i64,
    pub paid_in_fen: i64,
    /// The share of the company's capital in hundredths of a percent
    /// (`3500` is 35.00%).
    pub ratio_basis_points: u32,
    pub freezes: Vec<StandingMeasure>,
}

impl EquityHolding {
    /// The ratio as the registry writes it: `35.00%`.
    pub fn ratio_text(&self) -> String {
        format!("{}%", money::hundredths(i64::from(self.ratio_basis_points)))
    }
}

/// A record filed under its holder's (normalised) identifier.
pub trait Filed: Clone {
    fn holder_id(&self) -> &str;
}

macro_rules! filed {
    ($($record:ty),*) => {
        $(impl Filed for $record {
            fn holder_id(&self) -> &str {
                &self.holder_id
            }
        })*
    };
}
filed!(
    Vehicle,
    SecuritiesHolding,
    PaymentAccount,
    FundAccount,
    EquityHolding
);

/// One agency's records of one kind, and where each holder's are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book<T> {
    records: Vec<T>,
    by_holder: HashMap<String, Vec<usize>>,
}

impl<T: Filed> Book<T> {
    pub fn new(records: Vec<T>) -> Self {
        let mut by_holder: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            by_holder
                .entry(r.holder_id().to_owned())
                .or_default()
                .push(i);
        }
        Self { records, by_holder }
    }

    pub fn records(&self) -> &[T] {
        &self.records
    }

    pub fn positions_of(&self, holder_id: &str) -> &[usize] {
        self.by_holder.get(holder_id).map_or(&[], Vec::as_slice)
    }

    /// The records at `positions`, copied: an answer's snapshot.
    fn pick(&self, positions: &[usize]) -> Vec<T> {
        positions
            .iter()
            .filter_map(|&p| self.records.get(p).cloned())
            .collect()
    }
}

/// The book of an agency of a further kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FurtherBook {
    Vehicles(Book<Vehicle>),
    Securities(Book<SecuritiesHolding>),
    PaymentAccounts(Book<PaymentAccount>),
    FundAccounts(Book<FundAccount>),
    Equity(Book<EquityHolding>),
}

/// What an inquiry found at an agency of a further kind: a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FurtherFound {
    Vehicles(Vec<Vehicle>),
    Securities(Vec<SecuritiesHolding>),
    PaymentAccounts(Vec<PaymentAccount>),
    FundAccounts(Vec<FundAccount>),
    Equity(Vec<EquityHolding>),
}

impl FurtherBook {
    pub fn positions_of(&self, holder_id: &str) -> &[usize] {
        match self {
            Self::Vehicles(b) => b.positions_of(holder_id),
            Self::Securities(b) => b.positions_of(holder_id),
            Self::PaymentAccounts(b) => b.positions_of(holder_id),
            Self::FundAccounts(b) => b.positions_of(holder_id),
            Self::Equity(b) => b.positions_of(holder_id),
        }
    }

    /// The records at `positions` as an inquiry answers them.
    pub fn found(&self, positions: &[usize]) -> FurtherFound {
        match self {
            Self::Vehicles(b) => FurtherFound::Vehicles(b.pick(positions)),
            Self::Securities(b) => FurtherFound::Securities(b.pick(positions)),
            Self::PaymentAccounts(b) => FurtherFound::PaymentAccounts(b.pick(positions)),
            Self::FundAccounts(b) => FurtherFound::FundAccounts(b.pick(positions)),
            Self::Equity(b) => FurtherFound::Equity(b.pick(positions)),
        }
    }

    /// The positions of the records of the holders `wanted` says yes to.
    pub fn positions_where(&self, wanted: impl Fn(&str) -> bool) -> Vec<usize> {
        fn of<T: Filed>(book: &Book<T>, wanted: impl Fn(&str) -> bool) -> Vec<usize> {
            book.records()
                .iter()
                .enumerate()
                .filter(|(_, r)| wanted(r.holder_id()))
                .map(|(i, _)| i)
                .collect()
        }
        match self {
            Self::Vehicles(b) => of(b, wanted),
            Self::Securities(b) => of(b, wanted),
            Self::PaymentAccounts(b) => of(b, wanted),
            Self::FundAccounts(b) => of(b, wanted),
            Self::Equity(b) => of(b, wanted),
        }
    }

    /// The ledger's view of the book as it was built: see
    /// [`FurtherFound::ledger`].
    pub fn ledger(&self, wanted: impl Fn(&str) -> bool) -> (&'static str, Vec<Value>) {
        let found = self.found(&self.positions_where(wanted));
        let (key, _, records) = found.ledger();
        (key, records)
    }
}

impl FurtherFound {
    /// The ledger's view (`GET /_mock/ledger`): the key the records go
    /// under, the key of each record's measures (`seals`, `freezes`), and
    /// every record with what the wire derives from it (state flags, free
    /// units, available money).
    pub fn ledger(&self) -> (&'static str, &'static str, Vec<Value>) {
        fn view<T: Serialize>(records: &[T], derived: impl Fn(&T) -> Value) -> Vec<Value> {
            records
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    if let (Value::Object(map), Value::Object(extra)) = (&mut v, derived(r)) {
                        map.extend(extra);
                    }
                    v
                })
                .collect()
        }
        match self {
            Self::Vehicles(r) => (
                "vehicles",
                "seals",
                view(r, |v| json!({"state_flags": v.state_flags()})),
            ),
            Self::Securities(r) => (
                "securities",
                "freezes",
                view(r, |h| json!({"free_quantity": h.free_quantity()})),
            ),
            Self::PaymentAccounts(r) => (
                "payment_accounts",
                "freezes",
                view(r, |a| json!({"available_fen": a.available_fen()})),
            ),
            Self::FundAccounts(r) => (
                "fund_accounts",
                "freezes",
                view(r, |a| json!({"available_fen": a.available_fen()})),
            ),
            Self::Equity(r) => (
                "equity",
                "freezes",
                view(r, |e| json!({"share_ratio": e.ratio_text()})),
            ),
        }
    }

    pub fn vehicles(&self) -> &[Vehicle] {
        match self {
            Self::Vehicles(v) => v,
            _ => &[],
        }
    }

    pub fn securities(&self) -> &[SecuritiesHolding] {
        match self {
            Self::Securities(v) => v,
            _ => &[],
        }
    }

    pub fn payment_accounts(&self) -> &[PaymentAccount] {
        match self {
            Self::PaymentAccounts(v) => v,
            _ => &[],
        }
    }

    pub fn fund_accounts(&self) -> &[FundAccount] {
        match self {
            Self::FundAccounts(v) => v,
            _ => &[],
        }
    }

    pub fn equity(&self) -> &[EquityHolding] {
        match self {
            Self::Equity(v) => v,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(
        queue_position: u32,
        amount_fen: Option<i64>,
        quantity: Option<i64>,
    ) -> StandingMeasure {
        StandingMeasure {
            authority: "秦州区人民法院".into(),
            document_number: "(2025)甘0502执1号".into(),
            amount_fen,
            quantity,
            start_date: None,
            end_date: None,
            queue_position,
        }
    }

    #[test]
    fn only_measures_in_force_hold_anything() {
        let holding = SecuritiesHolding {
            holder_id: "x".into(),
            holder_name: "x".into(),
            securities_account: "A1".into(),
            market: "SH".into(),
            security_code: "600000".into(),
            security_name: "浦发银行".into(),
            quantity: 12_000,
            custodian: "12345".into(),
            freezes: vec![measure(0, None, Some(2_000)), measure(1, None, Some(5_000))],
        };
        assert_eq!(holding.free_quantity(), 10_000);
        let account = PaymentAccount {
            holder_id: "x".into(),
            holder_name: "x".into(),
            account_id: "2088".into(),
            balance_fen: 1_000,
            fund_fen: 0,
            freezes: vec![measure(0, Some(5_000), None)],
        };
        assert_eq!(account.available_fen(), 0, "never below zero");
    }

    #[test]
    fn a_vehicle_writes_its_state_as_flags() {
        let mut car = Vehicle {
            holder_id: "x".into(),
            holder_name: "x".into(),
            plate_number: "甘E·A1234".into(),
            plate_type: "02".into(),
            vin: "LFV2A21K8M4012345".into(),
            make_model: "一汽大众".into(),
            first_registered: NaiveDate::default(),
            mortgaged: false,
            seals: Vec::new(),
        };
        assert_eq!(car.state_flags(), "A");
        car.seals.push(measure(1, None, None));
        assert_eq!(car.state_flags(), "A", "a waiting seal does not seal");
        car.seals.push(measure(0, None, None));
        car.mortgaged = true;
        assert_eq!(car.state_flags(), "KM");
    }
}
