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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_two_decimals() {
        assert_eq!(yuan(12_500_000), "125000.00");
        assert_eq!(yuan(865_050), "8650.50");
        assert_eq!(yuan(7), "0.07");
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(-5), "-0.05");
    }
}
