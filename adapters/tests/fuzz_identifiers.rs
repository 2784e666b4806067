//! Fuzzing the identifier and value parsers on stable Rust: arbitrary and
//! nearly valid text to every parser through
//! `adapters::fuzzing::parse_everything` (which panics on a broken rule),
//! and the round trips that hold of valid values.
//!
//! A few hundred cases per property by default; for a long run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --release -p adapters --test fuzz_identifiers
//! ```

use adapters::fuzzing::{parse_everything, parse_everything_bytes};
use adapters::ids::{
    CaseNumber, CreditCode, ENFORCEMENT_CASE_TYPES, IdNumber, credit_check_char, id_check_char,
};
use adapters::model::{Fen, parse_civil_date};
use chrono::NaiveDate;
use proptest::prelude::*;
use proptest::sample::select;

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

const CREDIT_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

fn date_in(years: std::ops::RangeInclusive<i32>) -> impl Strategy<Value = NaiveDate> {
    (years, 1u32..=12, 1u32..=31)
        .prop_filter_map("a real date", |(y, m, d)| NaiveDate::from_ymd_opt(y, m, d))
}

fn date() -> impl Strategy<Value = NaiveDate> {
    date_in(1900..=2099)
}

/// The first 17 characters of a valid identity number: region, birth date,
/// sequence.
fn id_body() -> impl Strategy<Value = String> {
    ("[1-8][0-9]{5}", date(), "[0-9]{3}")
        .prop_map(|(region, born, seq)| format!("{region}{}{seq}", born.format("%Y%m%d")))
}

fn credit_body() -> impl Strategy<Value = String> {
    proptest::collection::vec(select(CREDIT_ALPHABET.chars().collect::<Vec<_>>()), 17)
        .prop_map(|chars| chars.into_iter().collect())
}

/// Found by cargo-fuzz: an unknown encoding name of control characters,
/// quoted with `{:?}`, makes an error six times as long as its quotation.
#[test]
fn an_encoding_name_of_control_characters_makes_a_bounded_error() {
    let mut doc = b"<?xml version=\"1.0\" encoding=\"U".to_vec();
    doc.extend([0x15; 1000]);
    doc.extend(b"\"?><a/>");
    parse_everything_bytes(&doc);
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_text_never_breaks_a_parser(text in "\\PC{0,64}") {
        parse_everything(&text);
    }

    #[test]
    fn arbitrary_bytes_never_break_a_parser(
        bytes in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        parse_everything_bytes(&bytes);
    }

    /// Text made of the characters the parsers look for, so that it gets
    /// past their first checks.
    #[test]
    fn nearly_valid_text_never_breaks_a_parser(
        text in "[ （）()0-9Xx甘京执保恢号,.\\-/A-Z]{0,24}"
    ) {
        parse_everything(&text);
    }

    #[test]
    fn a_valid_identity_number_parses_and_never_prints_its_middle(body in id_body()) {
        let check = id_check_char(&body).expect("17 digits");
        let full = format!("{body}{check}");
        let id = IdNumber::parse(&full).expect("valid by construction");
        prop_assert_eq!(id.as_str(), full.as_str());
        prop_assert!(!id.is_legacy());
        prop_assert_eq!(
            id.birth_date(),
            NaiveDate::parse_from_str(&body[6..14], "%Y%m%d").ok()
        );
        // A lowercase x and surrounding blanks are accepted and normalised.
        let typed = format!(" {} ", full.to_ascii_lowercase());
        prop_assert_eq!(IdNumber::parse(&typed), Ok(id.clone()));
        // Debug and the masked form show the first four and last two only.
        let shown = format!("{id:?}");
        prop_assert_eq!(&shown, &format!("IdNumber({}{}{})", &full[..4], "*".repeat(12), &full[16..]));
        prop_assert!(!shown.contains(&full[4..16]));
        parse_everything(&full);
        // Any other check character is refused, naming the right one.
        for other in "0123456789X".chars().filter(|c| *c != check) {
            prop_assert_eq!(
                IdNumber::parse(&format!("{body}{other}")),
                Err(adapters::ids::IdError::IdChecksum { expected: check })
            );
        }
    }

    #[test]
    fn a_legacy_identity_number_parses_and_is_flagged(
        region in "[1-8][0-9]{5}", born in date_in(1900..=1999), seq in "[0-9]{3}"
    ) {
        let full = format!("{region}{}{seq}", born.format("%y%m%d"));
        let id = IdNumber::parse(&full).expect("valid by construction");
        prop_assert!(id.is_legacy());
        prop_assert_eq!(id.birth_date(), Some(born));
        let shown = format!("{id:?}");
        prop_assert!(!shown.contains(&full[4..13]), "{}", shown);
    }

    #[test]
    fn a_valid_credit_code_parses_with_its_checksum(body in credit_body()) {
        let check = credit_check_char(&body).expect("17 characters of the alphabet");
        let full = format!("{body}{check}");
        let code = CreditCode::parse(&full.to_ascii_lowercase()).expect("valid");
        prop_assert_eq!(code.as_str(), full.as_str());
        prop_assert!(code.checksum_ok());
        // Another check character is accepted (pilot codes) but flagged.
        let other = CREDIT_ALPHABET.chars().find(|c| *c != check).expect("another");
        let pilot = CreditCode::parse(&format!("{body}{other}")).expect("legal");
        prop_assert!(!pilot.checksum_ok());
    }

    #[test]
    fn a_valid_case_number_parses_into_its_parts(
        year in 1990u16..=2100,
        province in select(vec!['甘', '京', '沪', '粤', '新']),
        court in "[0-9]{1,6}",
        case_type in select(ENFORCEMENT_CASE_TYPES.to_vec()),
        serial in 1u32..,
        full_width in any::<bool>(),
    ) {
        let (open, close) = if full_width { ('（', '）') } else { ('(', ')') };
        let text = format!("{open}{year}{close}{province}{court}{case_type}{serial}号");
        let case = CaseNumber::parse(&text).expect("valid by construction");
        prop_assert_eq!(case.year(), year);
        prop_assert_eq!(case.court_code(), format!("{province}{court}"));
        prop_assert_eq!(case.case_type(), case_type);
        prop_assert_eq!(case.serial(), serial);
        prop_assert_eq!(case.as_str(), format!("({year}){province}{court}{case_type}{serial}号"));
        prop_assert_eq!(CaseNumber::parse(case.as_str()), Ok(case.clone()));
    }

    #[test]
    fn fen_to_yuan_text_and_back_is_the_identity(fen in any::<i64>()) {
        let text = Fen(fen).to_yuan();
        prop_assert_eq!(Fen::parse_yuan(&text), Ok(Fen(fen)));
        // The same with thousands separators, as some agencies write it.
        let (sign, digits) = text.split_at(usize::from(fen < 0));
        let (whole, frac) = digits.split_once('.').expect("two decimals");
        let grouped: Vec<String> = whole
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let separated = format!("{sign}{}.{frac}", grouped.join(","));
        prop_assert_eq!(Fen::parse_yuan(&separated), Ok(Fen(fen)));
    }

    #[test]
    fn yuan_with_one_or_no_decimals_reads_as_fen(whole in 0i64..=92_233_720_368_547_757, tenth in 0i64..10) {
        prop_assert_eq!(Fen::parse_yuan(&whole.to_string()), Ok(Fen(whole * 100)));
        prop_assert_eq!(
            Fen::parse_yuan(&format!("{whole}.{tenth}")),
            Ok(Fen(whole * 100 + tenth * 10))
        );
    }

    #[test]
    fn civil_dates_read_the_same_in_every_wire_format(d in date()) {
        for format in ["%Y%m%d", "%Y/%m/%d", "%Y-%m-%d"] {
            let text = d.format(format).to_string();
            prop_assert_eq!(parse_civil_date(&text), Ok(Some(d)));
            prop_assert_eq!(parse_civil_date(&format!("  {text}\t")), Ok(Some(d)));
        }
    }
}
