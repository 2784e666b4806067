//! The plan of a bank fleet ([`crate::MockBankFleet`]): what bank number
//! `n` of `N` is called, which dialect it speaks, which bank it looks like,
//! and which accounts of the population it holds. Everything follows from
//! the numbers and the seed, so the fleet and the agency files written for
//! the gateway ([`crate::fleet_agency_files`]) agree without talking.
//!
//! Dialect by bank number `n` (1-based), `n % 4`:
//! 0 → `bank-json`, 1 → `court-bank-xml` in GB18030,
//! 2 → `court-bank-xml` in UTF-8, 3 → `iso-bank-xml`.
//! The look (branch names, account prefixes) by `(n / 4) % 4`: 中国工商银行,
//! 中国建设银行, 中国农业银行, 中国银行.
//!
//! Holdings are drawn per subject, not per bank: each subject's own
//! generator (seed and identifier) picks 0 to 3 banks of the fleet and its
//! accounts there, so the work and memory grow with the population, not
//! with population × banks.

use std::collections::HashSet;

use rand::Rng;
use rand::seq::index;

use crate::bank_book::{self, Account, BankBook};
use crate::config::{self, AgencySpec, MockDialect};
use crate::faults::FaultConfig;
use crate::fixtures;
use crate::names::BankBrand;
use crate::population::Population;

/// The most banks a fleet may have.
pub const MAX_FLEET_BANKS: usize = 100_000;

/// The id of bank `number` (1-based) of a fleet of `banks`: `fleet-0042`,
/// zero-padded to four digits, or to as many as `banks` has when more.
pub fn fleet_bank_id(number: usize, banks: usize) -> String {
    let width = banks.to_string().len().max(4);
    format!("fleet-{number:0width$}")
}

/// The dialect of bank `number` and, for `court-bank-xml`, its encoding.
pub fn fleet_dialect(number: usize) -> (MockDialect, Option<&'static str>) {
    match number % 4 {
        0 => (MockDialect::BankJson, None),
        1 => (MockDialect::CourtBankXml, Some("GB18030")),
        2 => (MockDialect::CourtBankXml, Some("UTF-8")),
        _ => (MockDialect::IsoBankXml, None),
    }
}

/// The bank that bank `number` looks like.
pub fn fleet_brand(number: usize) -> BankBrand {
    BankBrand::ALL[(number / 4) % BankBrand::ALL.len()]
}

/// Bank `number` of a fleet of `banks` as an agency: id, dialect, encoding
/// and a display name naming its brand (`中国农业银行（模拟 fleet-0042）`).
/// No listen address: the fleet serves it under `/banks/{id}`.
pub fn fleet_bank_spec(number: usize, banks: usize) -> AgencySpec {
    let id = fleet_bank_id(number, banks);
    let (dialect, encoding) = fleet_dialect(number);
    AgencySpec {
        name: format!("{}（模拟 {id}）", fleet_brand(number).name),
        id,
        dialect,
        listen: None,
        encoding: encoding.map(str::to_owned),
        latency_ms: 0,
        result_delay_ms: config::default_result_delay_ms(),
        callback_token: None,
        signing_key_file: None,
        faults: FaultConfig::default(),
    }
}

/// The books of banks 1 to `banks` (index `n - 1`): the fixtures filed at
/// each bank's id, then the accounts the population holds there. Account
/// numbers are unique across the whole fleet.
pub fn fleet_books(population: &Population, banks: usize) -> Vec<BankBook> {
    let mut books: Vec<Vec<Account>> = (1..=banks)
        .map(|n| fixtures::bank_accounts(&fleet_bank_id(n, banks)))
        .collect();
    let mut numbers: HashSet<String> = fixtures::ALL_ACCOUNT_NUMBERS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for subject in population.subjects() {
        let mut rng = population.rng_for(&format!("fleet/{}", subject.id_number));
        let wanted = match rng.random_range(0..20) {
            0..5 => 0,
            5..13 => 1,
            13..18 => 2,
            _ => 3,
        };
        let mut nth = 0;
        for bank in index::sample(&mut rng, banks, wanted.min(banks)) {
            let count = if rng.random_bool(0.8) { 1 } else { 2 };
            let brand = fleet_brand(bank + 1);
            for _ in 0..count {
                let account =
                    bank_book::generated_account(&mut rng, subject, brand, nth, &mut numbers);
                if let Some(book) = books.get_mut(bank) {
                    book.push(account);
                }
                nth += 1;
            }
        }
    }
    books.into_iter().map(BankBook::from_accounts).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_widen_only_beyond_four_digits() {
        assert_eq!(fleet_bank_id(1, 50), "fleet-0001");
        assert_eq!(fleet_bank_id(42, 4000), "fleet-0042");
        assert_eq!(fleet_bank_id(9999, 9999), "fleet-9999");
        assert_eq!(fleet_bank_id(42, 12_000), "fleet-00042");
    }

    #[test]
    fn zhang_sans_fleet_bank_is_number_42_and_looks_like_abc() {
        assert_eq!(fleet_bank_id(42, 50), fixtures::FLEET_ZHANG_SAN_BANK);
        assert_eq!(
            fleet_dialect(42),
            (MockDialect::CourtBankXml, Some("UTF-8"))
        );
        let brand = fleet_brand(42);
        assert!(brand.branches.contains(&fixtures::FLEET_ZHANG_SAN_BRANCH));
    }

    #[test]
    fn the_population_spreads_thinly_and_deterministically() {
        let population = Population::generate(5, 1000);
        let books = fleet_books(&population, 200);
        assert_eq!(books, fleet_books(&population, 200));
        assert_eq!(books.len(), 200);
        let accounts: usize = books.iter().map(|b| b.accounts().len()).sum();
        // 0-3 banks a subject, 1-2 accounts a bank: about 1.5 a subject.
        assert!((1000..2500).contains(&accounts), "{accounts}");
        let mut numbers = HashSet::new();
        for (i, book) in books.iter().enumerate() {
            for a in book.accounts() {
                assert!(numbers.insert(a.account_number.clone()));
                assert!(a.branch.starts_with(fleet_brand(i + 1).name));
            }
        }
        assert_eq!(books[41].positions_of(fixtures::ZHANG_SAN_ID).len(), 1);
        assert!(
            books
                .iter()
                .all(|b| b.positions_of(fixtures::WANG_WU_ID).is_empty())
        );
    }
}
