//! The generated population's holdings of the further kinds, drawn from the
//! agency's own generator (`Population::rng_for`), so a seed gives the same
//! records on every run and adding an agency changes no other's. Cheap on
//! purpose: a few draws per subject.
//!
//! - vehicles: one person in five has a car, one car in twenty of those is
//!   sealed by another court, one in four mortgaged;
//! - securities: one person in eight holds one to three securities, in a
//!   Shanghai or Shenzhen account, now and then partly frozen;
//! - payment accounts: one person in two, a few with a freeze;
//! - provident fund accounts: two persons in five, mostly contributing,
//!   one in five eligible for withdrawal;
//! - equity: one organisation in four holds a share of another
//!   organisation of the population, now and then partly frozen.
//!
//! The named fixtures' records come first (`fixtures`); generated ones never
//! reuse a fixture's identifiers.

use std::collections::HashSet;

use chrono::{Days, Months, NaiveDate};
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};

use crate::bank_book::other_court_document;
use crate::config::MockDialect;
use crate::fixtures;
use crate::further_book::{
    Book, EquityHolding, FundAccount, FundState, FurtherBook, PaymentAccount, SecuritiesHolding,
    StandingMeasure, Vehicle,
};
use crate::population::{Population, Subject, SubjectKind};

/// The book of an agency speaking `dialect`, when it is one of the further
/// kinds' (`None` for banks and real-estate registries).
pub fn generate(
    population: &Population,
    agency_id: &str,
    dialect: MockDialect,
) -> Option<FurtherBook> {
    let mut rng = population.rng_for(agency_id);
    let persons: Vec<&Subject> = population
        .subjects()
        .iter()
        .filter(|s| s.kind == SubjectKind::Person)
        .collect();
    let organisations: Vec<&Subject> = population
        .subjects()
        .iter()
        .filter(|s| s.kind == SubjectKind::Organisation)
        .collect();
    let book = match dialect {
        MockDialect::VehicleSoap => {
            let mut records = fixtures::vehicles(agency_id);
            let mut vins: HashSet<String> =
                fixtures::ALL_VINS.iter().map(|v| (*v).to_owned()).collect();
            for subject in &persons {
                if rng.random_bool(0.2) {
                    records.push(vehicle(&mut rng, subject, &mut vins));
                }
            }
            FurtherBook::Vehicles(Book::new(records))
        }
        MockDialect::SecuritiesXml => {
            let mut records = fixtures::securities(agency_id);
            for subject in &persons {
                if rng.random_bool(0.125) {
                    records.extend(securities(&mut rng, subject));
                }
            }
            FurtherBook::Securities(Book::new(records))
        }
        MockDialect::PaymentJson => {
            let mut records = fixtures::payment_accounts(agency_id);
            for subject in &persons {
                if rng.random_bool(0.5) {
                    records.push(payment_account(&mut rng, subject));
                }
            }
            FurtherBook::PaymentAccounts(Book::new(records))
        }
        MockDialect::FundCallback => {
            let mut records = fixtures::fund_accounts(agency_id);
            for subject in &persons {
                if rng.random_bool(0.4) {
                    records.push(fund_account(&mut rng, subject));
                }
            }
            FurtherBook::FundAccounts(Book::new(records))
        }
        MockDialect::MarketGbkXml => {
            let mut records = fixtures::equity(agency_id);
            for subject in &organisations {
                if rng.random_bool(0.25)
                    && let Some(company) = organisations.choose(&mut rng)
                    && company.id_number != subject.id_number
                {
                    records.push(equity(&mut rng, subject, company));
                }
            }
            FurtherBook::Equity(Book::new(records))
        }
        MockDialect::CourtBankXml
        | MockDialect::BankJson
        | MockDialect::RegistryJson
        | MockDialect::IsoBankXml => return None,
    };
    Some(book)
}

/// A measure of another court dated around the fixed reference date (so
/// the population does not age with the clock), lasting `months`.
fn other_court(rng: &mut impl RngCore, months: u32) -> StandingMeasure {
    let (authority, document_number) = other_court_document(rng);
    let start = fixtures::REFERENCE_DATE
        .checked_sub_days(Days::new(rng.random_range(30..300)))
        .unwrap_or(fixtures::REFERENCE_DATE);
    let end = start
        .checked_add_months(Months::new(months))
        .and_then(|d| d.pred_opt());
    StandingMeasure {
        authority,
        document_number,
        amount_fen: None,
        quantity: None,
        start_date: Some(start),
        end_date: end,
        queue_position: 0,
    }
}

/// VIN characters: digits and capitals but I, O and Q.
const VIN_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";
const PLATE_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const MAKES: &[&str] = &[
    "大众 朗逸",
    "丰田 卡罗拉",
    "本田 雅阁",
    "吉利 帝豪",
    "比亚迪 秦",
    "长安 CS75",
    "五菱 宏光",
];

fn draw(rng: &mut impl RngCore, chars: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(chars.choose(rng).copied().unwrap_or(b'0')))
        .collect()
}

fn vehicle(rng: &mut impl RngCore, subject: &Subject, vins: &mut HashSet<String>) -> Vehicle {
    let vin = loop {
        let candidate = format!("L{}", draw(rng, VIN_CHARS, 16));
        if vins.insert(candidate.clone()) {
            break candidate;
        }
    };
    let first_registered = NaiveDate::from_ymd_opt(
        rng.random_range(2010..=2025),
        rng.random_range(1..=12),
        rng.random_range(1..=28),
    )
    .unwrap_or(fixtures::REFERENCE_DATE);
    let seals = if rng.random_bool(0.05) {
        vec![other_court(rng, 24)]
    } else {
        Vec::new()
    };
    Vehicle {
        holder_id: subject.id_number.clone(),
        holder_name: subject.name.clone(),
        plate_number: format!("甘E·{}", draw(rng, PLATE_CHARS, 5)),
        plate_type: "02".into(),
        vin,
        make_model: MAKES.choose(rng).copied().unwrap_or("大众 朗逸").into(),
        first_registered,
        mortgaged: rng.random_bool(0.25),
        seals,
    }
}

const SECURITIES: &[(&str, &str, &str)] = &[
    ("600000", "浦发银行", "SH"),
    ("600036", "招商银行", "SH"),
    ("601318", "中国平安", "SH"),
    ("600519", "贵州茅台", "SH"),
    ("000001", "平安银行", "SZ"),
    ("000002", "万科A", "SZ"),
    ("000858", "五粮液", "SZ"),
];

fn securities(rng: &mut impl RngCore, subject: &Subject) -> Vec<SecuritiesHolding> {
    let digits: String = (0..9)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    let custodian = format!("{:05}", rng.random_range(10_000..100_000));
    let count = rng.random_range(1..=3);
    let chosen: Vec<_> = SECURITIES.choose_multiple(rng, count).copied().collect();
    chosen
        .into_iter()
        .map(|(code, name, market)| {
            let quantity = rng.random_range(1..=200) * 100;
            let freezes = if rng.random_bool(0.05) {
                vec![StandingMeasure {
                    quantity: Some(rng.random_range(1..=quantity / 100) * 100),
                    ..other_court(rng, 36)
                }]
            } else {
                Vec::new()
            };
            SecuritiesHolding {
                holder_id: subject.id_number.clone(),
                holder_name: subject.name.clone(),
                securities_account: if market == "SH" {
                    format!("A{digits}")
                } else {
                    format!("0{digits}")
                },
                market: market.into(),
                security_code: code.into(),
                security_name: name.into(),
                quantity,
                custodian: custodian.clone(),
                freezes,
            }
        })
        .collect()
}

/// A freeze of some of `balance_fen` (one in twenty), by another court.
fn money_freezes(rng: &mut impl RngCore, balance_fen: i64) -> Vec<StandingMeasure> {
    if balance_fen == 0 || !rng.random_bool(0.05) {
        return Vec::new();
    }
    vec![StandingMeasure {
        amount_fen: Some(rng.random_range(1..=balance_fen)),
        ..other_court(rng, 12)
    }]
}

fn payment_account(rng: &mut impl RngCore, subject: &Subject) -> PaymentAccount {
    let balance_fen = rng.random_range(0..2_000_000);
    PaymentAccount {
        holder_id: subject.id_number.clone(),
        holder_name: subject.name.clone(),
        // 2088 and twelve digits, the first not 0: never the fixture's.
        account_id: format!(
            "2088{:012}",
            rng.random_range(100_000_000_000u64..1_000_000_000_000)
        ),
        balance_fen,
        fund_fen: rng.random_range(0..500_000),
        freezes: money_freezes(rng, balance_fen),
    }
}

fn fund_account(rng: &mut impl RngCore, subject: &Subject) -> FundAccount {
    let balance_fen = rng.random_range(100_000..20_000_000);
    let state = match rng.random_range(0..20) {
        0 => FundState::Closed,
        1 | 2 => FundState::Sealed,
        _ => FundState::Contributing,
    };
    FundAccount {
        holder_id: subject.id_number.clone(),
        holder_name: subject.name.clone(),
        // Five digits from 10000: never the fixture's 00042.
        account_no: format!("GJJ-620503-{}", rng.random_range(10_000..100_000)),
        balance_fen,
        state,
        withdrawable: rng.random_bool(0.2),
        freezes: money_freezes(rng, balance_fen),
    }
}

fn equity(rng: &mut impl RngCore, subject: &Subject, company: &Subject) -> EquityHolding {
    let subscribed_fen = rng.random_range(1..=500) * 10_000_000;
    let paid_in_fen = subscribed_fen / 100 * rng.random_range(0..=100);
    let ratio_basis_points = rng.random_range(100..=10_000);
    let freezes = if rng.random_bool(0.08) {
        vec![StandingMeasure {
            amount_fen: Some(subscribed_fen / 100 * rng.random_range(1..=100)),
            ..other_court(rng, 36)
        }]
    } else {
        Vec::new()
    };
    EquityHolding {
        holder_id: subject.id_number.clone(),
        holder_name: subject.name.clone(),
        company_name: company.name.clone(),
        company_credit_code: company.id_number.clone(),
        subscribed_fen,
        paid_in_fen,
        ratio_basis_points,
        freezes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_books_with_the_fixtures_first_and_some_of_the_population() {
        let population = Population::generate(7, 500);
        for (id, dialect) in [
            (fixtures::VEHICLE_V, MockDialect::VehicleSoap),
            (fixtures::SECURITIES_S, MockDialect::SecuritiesXml),
            (fixtures::PAYMENT_P, MockDialect::PaymentJson),
            (fixtures::FUND_F, MockDialect::FundCallback),
            (fixtures::MARKET_M, MockDialect::MarketGbkXml),
        ] {
            let book = generate(&population, id, dialect);
            assert_eq!(book, generate(&population, id, dialect), "{id}");
            let Some(book) = book else {
                panic!("{id} has a book");
            };
            let (_, records) = book.ledger(|_| true);
            let fixture_records = book.ledger(|h| fixtures::ALL_SUBJECT_IDS.contains(&h)).1;
            assert!(!fixture_records.is_empty(), "{id}: the fixtures");
            assert_eq!(
                records[..fixture_records.len()],
                fixture_records[..],
                "{id}"
            );
            assert!(
                records.len() > fixture_records.len(),
                "{id}: generated records"
            );
        }
        assert!(generate(&population, "bank-a", MockDialect::CourtBankXml).is_none());
    }
}
