//! Check characters of resident identity numbers and unified social credit
//! codes, the legacy 15-digit upgrade, and masking for logs. The mocks carry
//! their own copy of these rules (not the adapters'), so that the population
//! they generate is an independent check of the gateway's validation.

const RESIDENT_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_CHECK: &[u8; 11] = b"10X98765432";

/// The alphabet of GB 32100-2015: digits and capitals without I, O, Z, S, V.
pub const CREDIT_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_CODE_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// The check character of the first 17 digits of a resident identity number
/// (MOD 11-2), or `None` when they are not 17 digits.
pub fn resident_check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(RESIDENT_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(char::from(RESIDENT_CHECK[(sum % 11) as usize]))
}

/// Whether `id` is an 18-character resident identity number whose check
/// character is right (a lower-case `x` is accepted).
pub fn is_valid_resident_id(id: &str) -> bool {
    id.len() == 18
        && id.is_char_boundary(17)
        && resident_check_char(&id[..17])
            .is_some_and(|c| id[17..].eq_ignore_ascii_case(c.encode_utf8(&mut [0; 4])))
}

/// Upgrades a legacy 15-digit number (2-digit year, no check character) to
/// its 18-character form, the one the agencies file records under.
pub fn upgrade_legacy_id(id: &str) -> Option<String> {
    if id.len() != 15 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let first17 = format!("{}19{}", &id[..6], &id[6..]);
    let check = resident_check_char(&first17)?;
    Some(format!("{first17}{check}"))
}

/// The key an identity number is filed under: upper case, legacy numbers
/// upgraded, surrounding blanks removed.
pub fn normalise_id(id: &str) -> String {
    let id = id.trim();
    upgrade_legacy_id(id).unwrap_or_else(|| id.to_ascii_uppercase())
}

fn credit_value(c: u8) -> Option<u32> {
    CREDIT_ALPHABET
        .iter()
        .position(|&a| a == c)
        .and_then(|p| u32::try_from(p).ok())
}

/// The check character of the first 17 characters of a credit code, or
/// `None` when they are not 17 characters of the alphabet.
pub fn credit_check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (b, w) in first17.bytes().zip(CREDIT_WEIGHTS) {
        sum += credit_value(b)? * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(char::from(CREDIT_ALPHABET[check as usize]))
}

/// Whether `code` is an 18-character credit code whose check character is right.
pub fn is_valid_credit_code(code: &str) -> bool {
    code.len() == 18
        && code.is_char_boundary(17)
        && credit_check_char(&code[..17]).is_some_and(|c| code.ends_with(c))
}

/// The check character of an 8-digit organisation code body (GB 11714),
/// which sits inside a credit code at positions 9 to 17.
pub fn org_code_check_char(body: &str) -> Option<char> {
    if body.len() != 8 || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = body
        .bytes()
        .zip(ORG_CODE_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10)?,
    })
}

/// An identifier as logs may show it: first 4 and last 2 characters, the
/// rest as asterisks. Short values are hidden entirely.
pub fn mask(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers_pass_and_altered_ones_fail() {
        for id in [
            "360426199101010071",
            "34052419800101001X",
            "620503198812120015",
        ] {
            assert!(is_valid_resident_id(id), "{id}");
        }
        assert!(!is_valid_resident_id("360426199101010072"));
        assert!(is_valid_credit_code("91110000600037341L"));
        assert!(!is_valid_credit_code("91110000600037341M"));
        assert!(!is_valid_credit_code("91350100M0001TGQXM"));
        assert_eq!(org_code_check_char("60003734"), Some('1'));
    }

    #[test]
    fn legacy_numbers_upgrade_and_masks_hide_the_middle() {
        let upgraded = upgrade_legacy_id("360426910101007").expect("15 digits");
        assert!(is_valid_resident_id(&upgraded));
        assert!(upgraded.starts_with("36042619910101007"));
        assert_eq!(mask("360426199101010071"), "3604************71");
        assert_eq!(normalise_id(" 34052419800101001x "), "34052419800101001X");
    }
}
