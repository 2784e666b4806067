//! A bank's accounts: the named fixtures' plus 0 to 3 generated accounts for
//! about half the population, with balances in integer fen, branch names in
//! the bank's brand, and now and then a measure standing by another court.
//! Immutable once built: measures placed and money moved by control requests
//! live in the agency's control ledger (`control`), over this book.

use std::collections::{HashMap, HashSet};

use chrono::{Days, NaiveDate};
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};

use crate::fixtures;
use crate::names::{self, BankBrand};
use crate::population::{Population, Subject, SubjectKind};

/// What kind of account it is; each dialect has its own word for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    DebitCard,
    DemandSavings,
    TimeSavings,
    /// A company's one basic settlement account.
    BasicDeposit,
    GeneralDeposit,
}

impl AccountKind {
    /// `CCLB` of `court-bank-xml`.
    pub fn xml_label(self) -> &'static str {
        match self {
            Self::DebitCard => "借记卡",
            Self::DemandSavings => "活期储蓄",
            Self::TimeSavings => "定期储蓄",
            Self::BasicDeposit => "基本存款账户",
            Self::GeneralDeposit => "一般存款账户",
        }
    }

    /// `product` of `bank-json`.
    pub fn json_product(self) -> &'static str {
        match self {
            Self::DebitCard | Self::DemandSavings => "SAVINGS",
            Self::TimeSavings => "TIME_DEPOSIT",
            Self::BasicDeposit | Self::GeneralDeposit => "CURRENT",
        }
    }

    /// `Tp Cd` of `iso-bank-xml`.
    pub fn iso_code(self) -> &'static str {
        match self {
            Self::DebitCard | Self::DemandSavings => "SVGS",
            Self::TimeSavings => "TDEP",
            Self::BasicDeposit | Self::GeneralDeposit => "CACC",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Normal,
    /// Long unused (久悬): still answerable, still freezable.
    Dormant,
}

impl AccountState {
    pub fn xml_label(self) -> &'static str {
        match self {
            Self::Normal => "正常",
            Self::Dormant => "久悬",
        }
    }

    pub fn json_status(self) -> &'static str {
        match self {
            Self::Normal => "ACTIVE",
            Self::Dormant => "DORMANT",
        }
    }
}

/// A measure another authority already has on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measure {
    pub authority: String,
    pub document_number: String,
    pub amount_fen: i64,
    pub end_date: NaiveDate,
    /// Waiting in line (轮候) behind a measure in force.
    pub waiting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_number: String,
    pub holder_id: String,
    pub holder_name: String,
    pub kind: AccountKind,
    pub state: AccountState,
    pub currency: String,
    pub balance_fen: i64,
    pub available_fen: i64,
    pub branch: String,
    pub measures: Vec<Measure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankBook {
    accounts: Vec<Account>,
    by_holder: HashMap<String, Vec<usize>>,
}

impl BankBook {
    /// The book of bank `agency_id`: the fixtures filed at that id first,
    /// then the generated accounts.
    pub fn generate(population: &Population, agency_id: &str, brand: BankBrand) -> Self {
        let mut rng = population.rng_for(agency_id);
        let mut accounts = fixtures::bank_accounts(agency_id);
        let mut numbers: HashSet<String> = fixtures::ALL_ACCOUNT_NUMBERS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for subject in population.subjects() {
            if !rng.random_bool(0.5) {
                continue;
            }
            let count = match rng.random_range(0..10) {
                0..6 => 1,
                6..9 => 2,
                _ => 3,
            };
            for n in 0..count {
                accounts.push(generated_account(&mut rng, subject, brand, n, &mut numbers));
            }
        }
        Self::from_accounts(accounts)
    }

    /// A book holding exactly these accounts, in this order.
    pub fn from_accounts(accounts: Vec<Account>) -> Self {
        let mut by_holder: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, a) in accounts.iter().enumerate() {
            by_holder.entry(a.holder_id.clone()).or_default().push(i);
        }
        Self {
            accounts,
            by_holder,
        }
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// The positions of a holder's accounts (normalised identifier).
    pub fn positions_of(&self, holder_id: &str) -> &[usize] {
        self.by_holder.get(holder_id).map_or(&[], Vec::as_slice)
    }

    pub fn get(&self, position: usize) -> Option<&Account> {
        self.accounts.get(position)
    }
}

fn digits(rng: &mut impl RngCore, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// The Luhn digit that real card numbers end with.
fn luhn_digit(body: &str) -> char {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    char::from_digit((10 - sum % 10) % 10, 10).unwrap_or('0')
}

fn account_number(rng: &mut impl RngCore, brand: BankBrand, org: bool) -> String {
    if org {
        let rest = brand
            .corporate_len
            .saturating_sub(brand.corporate_prefix.len());
        format!("{}{}", brand.corporate_prefix, digits(rng, rest))
    } else {
        let body = format!("{}{}", brand.card_prefix, digits(rng, 18 - 6));
        let check = luhn_digit(&body);
        format!("{body}{check}")
    }
}

/// One generated account of `subject` at a bank of `brand`: its `nth` at
/// that bank (a company's first is its basic account). The number is drawn
/// until it is not in `numbers`, then added to it.
pub(crate) fn generated_account(
    rng: &mut impl RngCore,
    subject: &Subject,
    brand: BankBrand,
    nth: usize,
    numbers: &mut HashSet<String>,
) -> Account {
    let org = subject.kind == SubjectKind::Organisation;
    let number = loop {
        let candidate = account_number(rng, brand, org);
        if numbers.insert(candidate.clone()) {
            break candidate;
        }
    };
    let kind = account_kind(rng, org, nth);
    let balance_fen = balance(rng, org, kind);
    let measures = if rng.random_bool(0.1) {
        standing_measures(rng, balance_fen)
    } else {
        Vec::new()
    };
    let held: i64 = measures
        .iter()
        .filter(|m| !m.waiting)
        .map(|m| m.amount_fen)
        .sum();
    Account {
        account_number: number,
        holder_id: subject.id_number.clone(),
        holder_name: subject.name.clone(),
        kind,
        state: if rng.random_bool(0.03) {
            AccountState::Dormant
        } else {
            AccountState::Normal
        },
        currency: "CNY".into(),
        balance_fen,
        available_fen: (balance_fen - held).max(0),
        branch: brand
            .branches
            .choose(rng)
            .copied()
            .unwrap_or(brand.name)
            .to_owned(),
        measures,
    }
}

fn account_kind(rng: &mut impl RngCore, org: bool, nth: usize) -> AccountKind {
    if org {
        return if nth == 0 {
            AccountKind::BasicDeposit
        } else {
            AccountKind::GeneralDeposit
        };
    }
    match rng.random_range(0..10) {
        0..5 => AccountKind::DebitCard,
        5..8 => AccountKind::DemandSavings,
        _ => AccountKind::TimeSavings,
    }
}

/// Balances spread over orders of magnitude, as real ones do: many small,
/// a few large; companies' ten times larger.
fn balance(rng: &mut impl RngCore, org: bool, kind: AccountKind) -> i64 {
    let yuan: i64 = match rng.random_range(0..100) {
        0..30 => rng.random_range(0..1_000),
        30..70 => rng.random_range(1_000..50_000),
        70..95 => rng.random_range(50_000..500_000),
        _ => rng.random_range(500_000..5_000_000),
    };
    let yuan = if kind == AccountKind::TimeSavings {
        // Time deposits are placed in round sums.
        (yuan / 1000).max(1) * 1000
    } else {
        yuan
    };
    let fen = yuan * 100
        + if kind == AccountKind::TimeSavings {
            0
        } else {
            rng.random_range(0..100)
        };
    if org { fen * 10 } else { fen }
}

/// A freeze by another court (never over the balance), sometimes with a
/// second court waiting in line behind it.
fn standing_measures(rng: &mut impl RngCore, balance_fen: i64) -> Vec<Measure> {
    let first = other_court_measure(rng, balance_fen, false);
    let mut measures = vec![first];
    if rng.random_bool(0.3) {
        measures.push(other_court_measure(rng, balance_fen, true));
    }
    measures
}

pub(crate) fn other_court_document(rng: &mut impl RngCore) -> (String, String) {
    let (court, code) = names::OTHER_COURTS
        .choose(rng)
        .copied()
        .unwrap_or(("秦州区人民法院", "甘0502"));
    let year = rng.random_range(2023..=2026);
    let serial = rng.random_range(1..3000);
    (court.to_owned(), format!("({year}){code}执{serial}号"))
}

fn other_court_measure(rng: &mut impl RngCore, balance_fen: i64, waiting: bool) -> Measure {
    let (authority, document_number) = other_court_document(rng);
    // Bank freezes last at most one year: end dates within the coming year
    // of the fixed reference date, so the population does not age with the
    // clock and stays deterministic.
    let end_date = fixtures::REFERENCE_DATE
        .checked_add_days(Days::new(rng.random_range(5..365)))
        .unwrap_or(fixtures::REFERENCE_DATE);
    let amount_fen = if balance_fen == 0 {
        0
    } else {
        rng.random_range(1..=balance_fen)
    };
    Measure {
        authority,
        document_number,
        amount_fen,
        end_date,
        waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_carry_a_luhn_digit() {
        assert_eq!(luhn_digit("7992739871"), '3');
    }
}
