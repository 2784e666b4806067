//! Checked identifiers of the domain: case numbers, resident identity numbers,
//! unified social credit codes.
//!
//! A value of these types exists only if it passed its checks, so code inside
//! the gateway trusts it. Parsing happens once, at the edge. An identity number
//! never prints in full through `Debug`: logs get the masked form.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was refused. Messages are written for the officer who
/// typed the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("a resident identity number has 18 characters (or 15 for the legacy form), got {0}")]
    IdLength(usize),
    #[error("a resident identity number holds digits only, with an optional final X")]
    IdCharacters,
    #[error("the birth date inside the identity number is not a real date")]
    IdBirthDate,
    #[error("the identity number's check character is wrong (expected {expected})")]
    IdChecksum { expected: char },
    #[error("a unified social credit code has 18 characters, got {0}")]
    CreditLength(usize),
    #[error(
        "a unified social credit code uses only 0-9 and A-Y without I, O, S, V, Z; found {0:?}"
    )]
    CreditCharacter(char),
    #[error(
        "a case number looks like (2024)甘0503执1234号: (year) court code, case type, serial, 号"
    )]
    CaseFormat,
    #[error(
        "the case type {0:?} is not an enforcement case type (执, 执保, 执恢, 执异, 执复, 执监)"
    )]
    CaseType(String),
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// The check character of the first 17 digits of a resident identity number.
pub fn id_check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(ID_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(char::from(ID_CHECK[(sum % 11) as usize]))
}

/// A resident identity number (居民身份证号码): 18 characters with a valid
/// MOD 11-2 check character, or a legacy 15-digit number (accepted, flagged).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdNumber(String);

impl IdNumber {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let value = input.trim().to_ascii_uppercase();
        let len = value.chars().count();
        if !value.is_ascii() {
            return Err(IdError::IdCharacters);
        }
        match len {
            18 => {
                let (body, check) = value.split_at(17);
                if !body.bytes().all(|b| b.is_ascii_digit())
                    || !check.bytes().all(|b| b.is_ascii_digit() || b == b'X')
                {
                    return Err(IdError::IdCharacters);
                }
                birth_date(&body[6..14]).ok_or(IdError::IdBirthDate)?;
                let expected = id_check_char(body).ok_or(IdError::IdCharacters)?;
                if !check.starts_with(expected) {
                    return Err(IdError::IdChecksum { expected });
                }
                Ok(Self(value))
            }
            15 => {
                if !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(IdError::IdCharacters);
                }
                birth_date(&format!("19{}", &value[6..12])).ok_or(IdError::IdBirthDate)?;
                Ok(Self(value))
            }
            n => Err(IdError::IdLength(n)),
        }
    }

    /// Old 15-digit numbers still circulate; agencies may index them
    /// differently, so callers are warned.
    pub fn is_legacy(&self) -> bool {
        self.0.len() == 15
    }

    pub fn birth_date(&self) -> Option<NaiveDate> {
        if self.is_legacy() {
            birth_date(&format!("19{}", &self.0[6..12]))
        } else {
            birth_date(&self.0[6..14])
        }
    }

    /// The full value, for the wire and the access-controlled store only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form that may appear in logs and printed output.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks everything but the first four and the last two characters.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..4].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - 6));
    out.extend(&chars[chars.len() - 2..]);
    out
}

fn birth_date(yyyymmdd: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(yyyymmdd, "%Y%m%d").ok()
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

const CREDIT_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// The check character of the first 17 characters of a unified social credit
/// code (GB 32100-2015).
pub fn credit_check_char(first17: &str) -> Option<char> {
    let mut sum = 0u32;
    let mut n = 0;
    for (c, w) in first17.chars().zip(CREDIT_WEIGHTS) {
        sum += credit_value(c)? * w;
        n += 1;
    }
    if n != 17 || first17.chars().count() != 17 {
        return None;
    }
    let index = (31 - sum % 31) % 31;
    CREDIT_ALPHABET.chars().nth(index as usize)
}

fn credit_value(c: char) -> Option<u32> {
    CREDIT_ALPHABET.find(c).map(|i| i as u32)
}

/// A unified social credit code (统一社会信用代码). Some early pilot codes fail
/// the checksum yet are legally valid, so a checksum failure is a warning
/// (`checksum_ok() == false`), not a rejection.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CreditCode {
    value: String,
    checksum_ok: bool,
}

impl CreditCode {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let value = input.trim().to_ascii_uppercase();
        let len = value.chars().count();
        if len != 18 {
            return Err(IdError::CreditLength(len));
        }
        if let Some(bad) = value.chars().find(|c| credit_value(*c).is_none()) {
            return Err(IdError::CreditCharacter(bad));
        }
        let checksum_ok = credit_check_char(&value[..17]) == value.chars().last();
        Ok(Self { value, checksum_ok })
    }

    pub fn checksum_ok(&self) -> bool {
        self.checksum_ok
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// The enforcement case types an inquiry or order may be made under.
pub const ENFORCEMENT_CASE_TYPES: [&str; 6] = ["执保", "执恢", "执异", "执复", "执监", "执"];

/// A case number (案号) such as `(2024)甘0503执1234号`. Full-width parentheses
/// are accepted and normalised to ASCII ones.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CaseNumber {
    value: String,
    year: u16,
    court_code: String,
    case_type: &'static str,
    serial: u32,
}

impl CaseNumber {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim().replace('（', "(").replace('）', ")");
        let rest = s.strip_prefix('(').ok_or(IdError::CaseFormat)?;
        let (year, rest) = rest.split_once(')').ok_or(IdError::CaseFormat)?;
        if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::CaseFormat);
        }
        let year: u16 = year.parse().map_err(|_| IdError::CaseFormat)?;
        if !(1990..=2100).contains(&year) {
            return Err(IdError::CaseFormat);
        }
        let rest = rest.strip_suffix('号').ok_or(IdError::CaseFormat)?;
        // Court code: one province abbreviation followed by digits, e.g. 甘0503.
        let mut chars = rest.char_indices();
        let (_, province) = chars.next().ok_or(IdError::CaseFormat)?;
        if province.is_ascii() {
            return Err(IdError::CaseFormat);
        }
        let digits_end = rest[province.len_utf8()..]
            .find(|c: char| !c.is_ascii_digit())
            .map(|i| i + province.len_utf8())
            .ok_or(IdError::CaseFormat)?;
        let court_code = &rest[..digits_end];
        if digits_end == province.len_utf8() {
            return Err(IdError::CaseFormat);
        }
        let after_court = &rest[digits_end..];
        let serial_start = after_court
            .find(|c: char| c.is_ascii_digit())
            .ok_or(IdError::CaseFormat)?;
        let (case_type, serial) = after_court.split_at(serial_start);
        if case_type.is_empty() || serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(IdError::CaseFormat);
        }
        let case_type = ENFORCEMENT_CASE_TYPES
            .into_iter()
            .find(|t| *t == case_type)
            .ok_or_else(|| IdError::CaseType(case_type.to_owned()))?;
        let serial: u32 = serial.parse().map_err(|_| IdError::CaseFormat)?;
        if serial == 0 {
            return Err(IdError::CaseFormat);
        }
        Ok(Self {
            value: format!("({year}){court_code}{case_type}{serial}号"),
            year,
            court_code: court_code.to_owned(),
            case_type,
            serial,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }
    pub fn year(&self) -> u16 {
        self.year
    }
    /// The court code, e.g. `甘0503` for the Maiji district court.
    pub fn court_code(&self) -> &str {
        &self.court_code
    }
    pub fn case_type(&self) -> &str {
        self.case_type
    }
    pub fn serial(&self) -> u32 {
        self.serial
    }
}

impl fmt::Display for CaseNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

macro_rules! string_serde {
    ($ty:ty, $accessor:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.$accessor())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(IdNumber, as_str);
string_serde!(CreditCode, as_str);
string_serde!(CaseNumber, as_str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_examples_of_identity_numbers_are_valid() {
        for id in [
            "360426199101010071",
            "34052419800101001X",
            "620503198812120015",
        ] {
            let parsed = IdNumber::parse(id).expect(id);
            assert!(!parsed.is_legacy());
            assert_eq!(parsed.as_str(), id);
        }
    }

    #[test]
    fn a_lowercase_x_is_accepted_and_normalised() {
        let id = IdNumber::parse("34052419800101001x").expect("lowercase x");
        assert_eq!(id.as_str(), "34052419800101001X");
    }

    #[test]
    fn a_wrong_check_character_names_the_expected_one() {
        assert_eq!(
            IdNumber::parse("360426199101010072"),
            Err(IdError::IdChecksum { expected: '1' })
        );
        assert!(matches!(
            IdNumber::parse("34052419800101001"),
            Err(IdError::IdLength(17))
        ));
        assert_eq!(
            IdNumber::parse("3604261991010100X1"),
            Err(IdError::IdCharacters)
        );
        assert_eq!(
            IdNumber::parse("36042619910230007X"),
            Err(IdError::IdBirthDate)
        );
        assert!(IdNumber::parse("").is_err());
        assert!(IdNumber::parse("３６０４２６１９９１０１０１００７１").is_err());
    }

    #[test]
    fn legacy_fifteen_digit_numbers_are_accepted_and_flagged() {
        let id = IdNumber::parse("360426910101007").expect("legacy");
        assert!(id.is_legacy());
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1991, 1, 1));
        assert_eq!(
            IdNumber::parse("360426911301007"),
            Err(IdError::IdBirthDate)
        );
        assert_eq!(
            IdNumber::parse("36042691010100X"),
            Err(IdError::IdCharacters)
        );
    }

    #[test]
    fn debug_output_never_shows_the_full_number() {
        let id = IdNumber::parse("360426199101010071").expect("valid");
        let shown = format!("{id:?}");
        assert!(!shown.contains("360426199101010071"), "{shown}");
        assert_eq!(id.masked(), "3604************71");
    }

    #[test]
    fn credit_codes_check_their_checksum_but_only_warn() {
        let ok = CreditCode::parse("91110000600037341L").expect("valid");
        assert!(ok.checksum_ok());
        let pilot = CreditCode::parse("91350100M0001TGQXM").expect("pilot code is legal");
        assert!(!pilot.checksum_ok());
        assert_eq!(credit_check_char("91110000600037341"), Some('L'));
    }

    #[test]
    fn credit_codes_with_forbidden_characters_or_length_are_refused() {
        assert_eq!(
            CreditCode::parse("91110000600037341I"),
            Err(IdError::CreditCharacter('I'))
        );
        assert_eq!(
            CreditCode::parse("9111000060003734"),
            Err(IdError::CreditLength(16))
        );
        assert_eq!(
            CreditCode::parse("91110000600O37341L"),
            Err(IdError::CreditCharacter('O'))
        );
    }

    #[test]
    fn case_numbers_are_split_into_their_parts() {
        let c = CaseNumber::parse("(2024)甘0503执1234号").expect("valid");
        assert_eq!(c.year(), 2024);
        assert_eq!(c.court_code(), "甘0503");
        assert_eq!(c.case_type(), "执");
        assert_eq!(c.serial(), 1234);
        let c = CaseNumber::parse("（2023）甘0502执恢88号").expect("full-width parentheses");
        assert_eq!(c.as_str(), "(2023)甘0502执恢88号");
        assert_eq!(c.case_type(), "执恢");
        let c = CaseNumber::parse("(2025)京0105执保7号").expect("preservation case");
        assert_eq!(c.case_type(), "执保");
    }

    #[test]
    fn malformed_or_non_enforcement_case_numbers_are_refused() {
        for bad in [
            "",
            "2024甘0503执1234号",
            "(24)甘0503执1234号",
            "(2024)甘0503执1234",
            "(2024)0503执1234号",
            "(2024)甘执1234号",
            "(2024)甘0503执号",
            "(2024)甘0503执0号",
            "(2024)甘0503执12a4号",
        ] {
            assert!(CaseNumber::parse(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            CaseNumber::parse("(2024)甘0503民初12号"),
            Err(IdError::CaseType("民初".into()))
        );
    }
}
