//! The generated population: deterministic, valid, fast, fixture-free.

use std::collections::HashSet;
use std::time::Instant;

use mock_agencies::bank_book::BankBook;
use mock_agencies::population::{Population, SubjectKind};
use mock_agencies::registry_book::RegistryBook;
use mock_agencies::{fixtures, ids, names};

#[test]
fn the_same_seed_gives_the_same_population_and_another_seed_another() {
    let a = Population::generate(7, 500);
    let b = Population::generate(7, 500);
    let c = Population::generate(8, 500);
    assert_eq!(a, b);
    assert_ne!(a.subjects(), c.subjects());
    assert_eq!(
        BankBook::generate(&a, "bank-a", names::ICBC),
        BankBook::generate(&b, "bank-a", names::ICBC)
    );
    assert_eq!(
        RegistryBook::generate(&a, "registry-x"),
        RegistryBook::generate(&b, "registry-x")
    );
    assert_ne!(
        BankBook::generate(&a, "bank-a", names::ICBC).accounts(),
        BankBook::generate(&c, "bank-a", names::ICBC).accounts()
    );
}

#[test]
fn ten_thousand_subjects_generate_quickly_with_valid_unique_identifiers() {
    let started = Instant::now();
    let population = Population::generate(20_241_127, 10_000);
    let _ = BankBook::generate(&population, "bank-a", names::ICBC);
    let _ = BankBook::generate(&population, "bank-b", names::CCB);
    let _ = RegistryBook::generate(&population, "registry-x");
    let elapsed = started.elapsed();
    assert!(
        elapsed.as_millis() < 1000,
        "people and holdings took {elapsed:?}"
    );
    assert_eq!(population.len(), 10_000);

    let mut seen = HashSet::new();
    let mut persons = 0;
    for s in population.subjects() {
        assert!(
            seen.insert(s.id_number.clone()),
            "duplicate {}",
            s.id_number
        );
        assert!(!fixtures::ALL_SUBJECT_IDS.contains(&s.id_number.as_str()));
        assert!(!s.name.is_empty());
        match s.kind {
            SubjectKind::Person => {
                persons += 1;
                assert!(ids::is_valid_resident_id(&s.id_number), "{}", s.id_number);
                let year: i32 = s.id_number[6..10].parse().expect("a year");
                assert!((1950..=2004).contains(&year));
                let birth = chrono::NaiveDate::parse_from_str(&s.id_number[6..14], "%Y%m%d");
                assert!(birth.is_ok(), "{}", s.id_number);
            }
            SubjectKind::Organisation => {
                assert!(ids::is_valid_credit_code(&s.id_number), "{}", s.id_number);
                assert!(s.name.ends_with("公司"));
            }
        }
    }
    assert!((8_500..=9_500).contains(&persons), "{persons} persons");
}

#[test]
fn holdings_look_like_a_bank_and_a_registry() {
    let population = Population::generate(3, 2000);
    let book = BankBook::generate(&population, "bank-b", names::CCB);
    let holders: HashSet<&str> = book
        .accounts()
        .iter()
        .map(|a| a.holder_id.as_str())
        .collect();
    let share = holders.len() as f64 / population.len() as f64;
    assert!((0.4..0.6).contains(&share), "{share}");
    let mut numbers = HashSet::new();
    let mut measured = 0;
    for a in book.accounts() {
        assert!(numbers.insert(a.account_number.clone()));
        assert!(a.branch.starts_with("中国建设银行"), "{}", a.branch);
        assert!(a.balance_fen >= 0 && a.available_fen >= 0);
        assert!(a.available_fen <= a.balance_fen);
        if !a.measures.is_empty() {
            measured += 1;
        }
        for m in &a.measures {
            assert!(m.amount_fen <= a.balance_fen);
            assert!(m.document_number.contains('执'));
        }
    }
    assert!(measured > 0 && measured * 5 < book.accounts().len());
    assert_eq!(
        book.positions_of(fixtures::ZHANG_SAN_ID).len(),
        1,
        "bank-b holds one fixture account of 张三"
    );

    let registry = RegistryBook::generate(&population, "registry-x");
    assert!(registry.units().len() > 400);
    for u in registry.units() {
        assert_eq!(u.unit_number.chars().count(), 28, "{}", u.unit_number);
        assert!(u.certificate_number.starts_with("甘("));
        assert!(u.certificate_number.ends_with('号'));
        assert!(["住宅", "商业"].contains(&u.usage.as_str()));
        assert!(!u.owners.is_empty());
        for s in &u.seals {
            assert!(s.end_date > s.start_date);
        }
    }
    assert!(registry.units().iter().any(|u| !u.seals.is_empty()));
    assert!(registry.units().iter().any(|u| u.owners.len() == 2));
    assert_eq!(registry.positions_of(fixtures::ZHANG_SAN_ID).len(), 1);
    assert!(registry.positions_of(fixtures::WANG_WU_ID).is_empty());
}
