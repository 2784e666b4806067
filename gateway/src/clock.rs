//! The civil date the law's rules are judged by: today in China Standard
//! Time (UTC+8). Tests move it forward to see measures lapse; timestamps,
//! leases and timeouts always use the real clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{Days, FixedOffset, NaiveDate, Utc};

const CST: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// Today's date in UTC+8, possibly shifted by whole days.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_days: Arc<AtomicI64>,
}

impl Clock {
    pub fn today(&self) -> NaiveDate {
        let real = Utc::now().with_timezone(&CST).date_naive();
        let offset = self.offset_days.load(Ordering::Relaxed);
        if offset >= 0 {
            real.checked_add_days(Days::new(offset as u64))
        } else {
            real.checked_sub_days(Days::new(offset.unsigned_abs()))
        }
        .unwrap_or(real)
    }

    /// Moves today forward (or back) by `days` from the real date.
    pub fn set_offset_days(&self, days: i64) {
        self.offset_days.store(days, Ordering::Relaxed);
    }
}

/// The last day of a term of `months` that starts on `start`: a one-year
/// freeze from 2026-11-27 ends on 2027-11-26.
pub fn term_end(start: NaiveDate, months: u32) -> Option<NaiveDate> {
    start
        .checked_add_months(chrono::Months::new(months))?
        .checked_sub_days(Days::new(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_ends_the_day_before_its_anniversary() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(term_end(d("2026-11-27"), 12), Some(d("2027-11-26")));
        assert_eq!(term_end(d("2026-11-27"), 36), Some(d("2029-11-26")));
        // 29 February: the anniversary falls back to the 28th.
        assert_eq!(term_end(d("2028-02-29"), 12), Some(d("2029-02-27")));
    }

    #[test]
    fn the_offset_moves_today() {
        let clock = Clock::default();
        let real = clock.today();
        clock.set_offset_days(400);
        assert_eq!(clock.today(), real + Days::new(400));
    }
}
