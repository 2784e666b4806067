//! Amounts as the wire writes them: integer hundredths (fen of money,
//! hundredths of a square metre of area) rendered as text with two decimals.
//! Never floating point.

/// `12_500_000` → `"125000.00"`, `-5` → `"-0.05"`.
pub fn hundredths(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Yuan text for an amount in fen.
pub fn yuan(fen: i64) -> String {
    hundredths(fen)
}

/// Yuan text as the wire writes it (`"5000.00"`, `"12"`, `"0.5"`) → fen.
/// `None` for anything else: a sign, blanks, more than two decimals, no
/// digits, or an amount too large for fen in an `i64`.
pub fn parse_yuan(text: &str) -> Option<i64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 2 {
        return None;
    }
    let yuan: i64 = whole.parse().ok()?;
    let fen: i64 = format!("{fraction:0<2}").parse().ok()?;
    yuan.checked_mul(100)?.checked_add(fen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_text_reads_back_as_fen() {
        assert_eq!(parse_yuan("5000.00"), Some(500_000));
        assert_eq!(parse_yuan("8650.5"), Some(865_050));
        assert_eq!(parse_yuan("12"), Some(1200));
        assert_eq!(parse_yuan("0.07"), Some(7));
        for bad in [
            "",
            ".5",
            "-1.00",
            "1.234",
            "1,00",
            " 1.00",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(parse_yuan(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn amounts_keep_two_decimals() {
        assert_eq!(yuan(12_500_000), "125000.00");
        assert_eq!(yuan(865_050), "8650.50");
        assert_eq!(yuan(7), "0.07");
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(-5), "-0.05");
    }
}
