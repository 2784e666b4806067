//! A real-estate registry's units: the named fixtures' plus one or two units
//! for about three persons in ten, some jointly owned with another person of
//! the population, some mortgaged, a few sealed by another court (with now
//! and then a second seal waiting in line). Immutable once built: seals
//! placed by control requests live in the agency's control ledger.

use std::collections::{HashMap, HashSet};

use chrono::{Days, Months, NaiveDate};
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};

use crate::bank_book::other_court_document;
use crate::fixtures;
use crate::names;
use crate::population::{Population, SubjectKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub id_number: String,
    /// Share as the registry writes it: `1/1`, `1/2`.
    pub share: String,
}

/// A seal standing on a unit; `queue_position` 0 is in force, 1, 2, ... wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub authority: String,
    pub document_number: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub queue_position: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// 不动产单元号: 28 characters.
    pub unit_number: String,
    /// 不动产权证号.
    pub certificate_number: String,
    pub location: String,
    /// Area in hundredths of a square metre.
    pub area_centi_m2: i64,
    /// 住宅 or 商业.
    pub usage: String,
    /// The first owner is the one the unit is filed under.
    pub owners: Vec<Owner>,
    pub mortgaged: bool,
    pub seals: Vec<Seal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryBook {
    units: Vec<Unit>,
    by_owner: HashMap<String, Vec<usize>>,
}

impl RegistryBook {
    pub fn generate(population: &Population, agency_id: &str) -> Self {
        let mut rng = population.rng_for(agency_id);
        let mut units = fixtures::registry_units(agency_id);
        let mut numbers: HashSet<String> = units.iter().map(|u| u.unit_number.clone()).collect();
        numbers.extend(fixtures::ALL_UNIT_NUMBERS.iter().map(|n| (*n).to_owned()));
        let persons: Vec<_> = population
            .subjects()
            .iter()
            .filter(|s| s.kind == SubjectKind::Person)
            .collect();
        for subject in &persons {
            if !rng.random_bool(0.3) {
                continue;
            }
            let count = if rng.random_bool(0.8) { 1 } else { 2 };
            for _ in 0..count {
                let (region, district) = names::DISTRICTS
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or(("620503", "麦积区"));
                let unit_number = loop {
                    let candidate = unit_number(&mut rng, region);
                    if numbers.insert(candidate.clone()) {
                        break candidate;
                    }
                };
                let residential = rng.random_bool(0.85);
                let mut owners = vec![Owner {
                    name: subject.name.clone(),
                    id_number: subject.id_number.clone(),
                    share: "1/1".into(),
                }];
                if rng.random_bool(0.25)
                    && let Some(partner) = persons.choose(&mut rng)
                    && partner.id_number != subject.id_number
                {
                    owners[0].share = "1/2".into();
                    owners.push(Owner {
                        name: partner.name.clone(),
                        id_number: partner.id_number.clone(),
                        share: "1/2".into(),
                    });
                }
                units.push(Unit {
                    unit_number,
                    certificate_number: certificate_number(&mut rng, district),
                    location: location(&mut rng, district, residential),
                    area_centi_m2: if residential {
                        rng.random_range(4_500..18_000)
                    } else {
                        rng.random_range(2_000..30_000)
                    },
                    usage: if residential { "住宅" } else { "商业" }.into(),
                    owners,
                    mortgaged: rng.random_bool(0.35),
                    seals: if rng.random_bool(0.08) {
                        seals(&mut rng)
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        let mut by_owner: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, u) in units.iter().enumerate() {
            for o in &u.owners {
                by_owner.entry(o.id_number.clone()).or_default().push(i);
            }
        }
        Self { units, by_owner }
    }

    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// The positions of the units an owner (normalised identifier) has a share in.
    pub fn positions_of(&self, owner_id: &str) -> &[usize] {
        self.by_owner.get(owner_id).map_or(&[], Vec::as_slice)
    }

    pub fn get(&self, position: usize) -> Option<&Unit> {
        self.units.get(position)
    }
}

/// Region (6), subdistrict (3), block (3), `GB` + parcel (5), `F` + building
/// (4) + room (4): the 28-character 不动产单元号.
fn unit_number(rng: &mut impl RngCore, region: &str) -> String {
    format!(
        "{region}{:03}{:03}GB{:05}F{:04}{:04}",
        rng.random_range(1..=12),
        rng.random_range(1..=20),
        rng.random_range(1..=3000),
        rng.random_range(1..=40),
        rng.random_range(1..=300),
    )
}

fn certificate_number(rng: &mut impl RngCore, district: &str) -> String {
    format!(
        "甘({}){district}不动产权第{:07}号",
        rng.random_range(2016..=2025),
        rng.random_range(1..10_000_000)
    )
}

fn location(rng: &mut impl RngCore, district: &str, residential: bool) -> String {
    let road = names::ROADS.choose(rng).copied().unwrap_or("建设路");
    let number = rng.random_range(1..400);
    if residential {
        format!(
            "{district}{road}{number}号{}单元{}{:02}室",
            rng.random_range(1..=6),
            rng.random_range(1..=25),
            rng.random_range(1..=4)
        )
    } else {
        format!(
            "{district}{road}{number}号{}层{}号商铺",
            rng.random_range(1..=3),
            rng.random_range(1..=30)
        )
    }
}

/// Seals last at most three years; they are dated around the fixed
/// reference date so the population stays the same whatever the clock says.
fn seals(rng: &mut impl RngCore) -> Vec<Seal> {
    let mut out = Vec::new();
    let start = fixtures::REFERENCE_DATE
        .checked_sub_days(Days::new(rng.random_range(30..900)))
        .unwrap_or(fixtures::REFERENCE_DATE);
    out.push(seal(rng, start, 0));
    if rng.random_bool(0.3) {
        let later = start
            .checked_add_days(Days::new(rng.random_range(1..200)))
            .unwrap_or(start);
        out.push(seal(rng, later, 1));
    }
    out
}

fn seal(rng: &mut impl RngCore, start_date: NaiveDate, queue_position: u32) -> Seal {
    let (authority, document_number) = other_court_document(rng);
    let end_date = start_date
        .checked_add_months(Months::new(36))
        .and_then(|d| d.pred_opt())
        .unwrap_or(start_date);
    Seal {
        authority,
        document_number,
        start_date,
        end_date,
        queue_position,
    }
}
