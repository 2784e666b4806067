//! The generated population: persons with valid resident identity numbers
//! and organisations with valid credit codes, drawn deterministically from a
//! seed. The agencies' holdings (`bank_book`, `registry_book`) are drawn from
//! it. It never contains a named fixture's identifier: fixtures must answer
//! exactly as `fixtures` says, whatever the seed.

use std::collections::HashSet;

use chrono::NaiveDate;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{fixtures, ids, names};

/// A person or an organisation the agencies may know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Person,
    Organisation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: SubjectKind,
    /// Resident identity number (persons) or unified social credit code.
    pub id_number: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Population {
    seed: u64,
    subjects: Vec<Subject>,
}

impl Population {
    /// Draws `size` subjects from `seed`: about nine in ten persons, the rest
    /// organisations, every identifier unique and none a fixture's.
    pub fn generate(seed: u64, size: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut taken: HashSet<String> = fixtures::ALL_SUBJECT_IDS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut subjects = Vec::with_capacity(size);
        while subjects.len() < size {
            let subject = if rng.random_bool(0.9) {
                person(&mut rng)
            } else {
                organisation(&mut rng)
            };
            if taken.insert(subject.id_number.clone()) {
                subjects.push(subject);
            }
        }
        Self { seed, subjects }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn subjects(&self) -> &[Subject] {
        &self.subjects
    }

    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// A generator for one agency's holdings: seeded by the population's
    /// seed and the agency id, so adding an agency changes no other's.
    pub fn rng_for(&self, agency_id: &str) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(agency_id.as_bytes()))
    }
}

/// A hash that is the same in every build (std's hasher promises no such thing).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list.choose(rng).copied().unwrap_or_default()
}

fn person(rng: &mut ChaCha8Rng) -> Subject {
    let region = pick(rng, names::PERSON_REGIONS);
    let birth = birth_date(rng);
    let sequence: u32 = rng.random_range(1..1000);
    let first17 = format!("{region}{}{sequence:03}", birth.format("%Y%m%d"));
    let check = ids::resident_check_char(&first17).unwrap_or('0');
    let given = if sequence % 2 == 1 {
        pick(rng, names::MALE_GIVEN)
    } else {
        pick(rng, names::FEMALE_GIVEN)
    };
    Subject {
        kind: SubjectKind::Person,
        id_number: format!("{first17}{check}"),
        name: format!("{}{given}", pick(rng, names::SURNAMES)),
    }
}

fn birth_date(rng: &mut ChaCha8Rng) -> NaiveDate {
    let year = rng.random_range(1950..=2004);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=31);
    // Day 31 of a short month does not exist: fall back to the 28th, which
    // every month has, rather than redraw (keeps the draw count fixed).
    NaiveDate::from_ymd_opt(year, month, day)
        .or_else(|| NaiveDate::from_ymd_opt(year, month, 28))
        .unwrap_or_default()
}

fn organisation(rng: &mut ChaCha8Rng) -> Subject {
    // 9 = market regulator, 1 = enterprise: what nearly every company has.
    let region = pick(rng, names::COMPANY_REGIONS);
    let body: String = (0..8)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    let org_check = ids::org_code_check_char(&body).unwrap_or('0');
    let first17 = format!("91{region}{body}{org_check}");
    let check = ids::credit_check_char(&first17).unwrap_or('0');
    let name = format!(
        "{}{}{}{}",
        pick(rng, names::COMPANY_PLACES),
        pick(rng, names::COMPANY_WORDS),
        pick(rng, names::COMPANY_TRADES),
        pick(rng, names::COMPANY_FORMS)
    );
    Subject {
        kind: SubjectKind::Organisation,
        id_number: format!("{first17}{check}"),
        name,
    }
}
