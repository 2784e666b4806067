//! Business hours: when an agency takes work. Some registries only work
//! 08:00-17:00 on working days, China Standard Time (UTC+8, no daylight
//! saving). Outside those hours their tasks wait; they do not fail.
//!
//! Pure calculation on instants: no clock is read here, the caller passes
//! "now", so every case (weekends, the close boundary) is tested exactly.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// UTC+8, the civil time of the courts and agencies.
fn china_standard_time() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("8 hours is a valid offset")
}

/// A day of the week as agency files name it: `mon` ... `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    pub fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }

    pub fn of(weekday: Weekday) -> Day {
        Day::ALL[weekday.num_days_from_monday() as usize]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Day::Mon => "mon",
            Day::Tue => "tue",
            Day::Wed => "wed",
            Day::Thu => "thu",
            Day::Fri => "fri",
            Day::Sat => "sat",
            Day::Sun => "sun",
        }
    }
}

/// A time of day, `HH:MM` (24-hour clock), in UTC+8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime {
    minutes: u16,
}

impl ClockTime {
    /// `hour` 0..=23, `minute` 0..=59.
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self {
            minutes: u16::from(hour) * 60 + u16::from(minute),
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a time of day HH:MM (00:00 to 23:59)");
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        Self::new(hour, minute).ok_or_else(bad)
    }

    fn naive(self) -> NaiveTime {
        NaiveTime::from_hms_opt(
            u32::from(self.minutes / 60),
            u32::from(self.minutes % 60),
            0,
        )
        .unwrap_or(NaiveTime::MIN)
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ClockTime::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// When an agency takes work, in UTC+8: the days it works, and its opening
/// and closing time on each of them. Open from `open` (inclusive) to `close`
/// (exclusive); hours across midnight are not supported (`open < close`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// The working days, e.g. `["mon", "tue", "wed", "thu", "fri"]`.
    pub days: Vec<Day>,
    /// Opening time, `HH:MM`, UTC+8.
    pub open: ClockTime,
    /// Closing time, `HH:MM`, UTC+8; at this minute the agency is closed.
    pub close: ClockTime,
}

impl BusinessHours {
    /// What is wrong with these hours, if anything.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.days.is_empty() {
            problems.push((
                "days",
                "business_hours.days names no day: leave business_hours out for an agency that is always open".to_owned(),
            ));
        }
        if self.open >= self.close {
            problems.push((
                "close",
                format!(
                    "business_hours.close ({}) must be after open ({}); hours across midnight are not supported",
                    self.close, self.open
                ),
            ));
        }
        problems
    }

    fn works_on(&self, weekday: Weekday) -> bool {
        self.days.contains(&Day::of(weekday))
    }

    /// Whether the agency takes work at `t`.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        self.next_opening(t) == t
    }

    /// The first instant at or after `t` when the agency is open: `t` itself
    /// when it is open then. Hours without a working day are taken as always
    /// open (validation refuses them anyway).
    pub fn next_opening(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let cst = china_standard_time();
        let local = t.with_timezone(&cst);
        let (open, close) = (self.open.naive(), self.close.naive());
        // Within a week every working day comes round again.
        for offset in 0..=7 {
            let date = local.date_naive() + Duration::days(offset);
            if !self.works_on(date.weekday()) {
                continue;
            }
            let Some(opening) = cst.from_local_datetime(&date.and_time(open)).single() else {
                continue;
            };
            if offset == 0 {
                let time = local.time();
                if time >= open && time < close {
                    return t;
                }
                if time >= close {
                    continue;
                }
            }
            return opening.with_timezone(&Utc);
        }
        t
    }

    /// `mon-fri 08:00-17:00 UTC+8`, for status details.
    pub fn describe(&self) -> String {
        let days: Vec<&str> = self.days.iter().map(|d| d.as_str()).collect();
        format!("{} {}-{} UTC+8", days.join(","), self.open, self.close)
    }
}

/// An instant as UTC+8 civil time, `2026-11-23 08:00 UTC+8`, for details
/// shown to people.
pub fn china_time_label(t: DateTime<Utc>) -> String {
    t.with_timezone(&china_standard_time())
        .format("%Y-%m-%d %H:%M UTC+8")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekdays_8_to_17() -> BusinessHours {
        BusinessHours {
            days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
            open: ClockTime::parse("08:00").expect("time"),
            close: ClockTime::parse("17:00").expect("time"),
        }
    }

    /// An instant given in UTC+8 civil time.
    fn cst(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_str(&format!("{text} +0800"), "%Y-%m-%d %H:%M %z")
            .expect("time")
            .with_timezone(&Utc)
    }

    // 2026-11-20 is a Friday; 2026-11-23 a Monday.

    #[test]
    fn during_working_hours_the_agency_is_open_now() {
        let hours = weekdays_8_to_17();
        let t = cst("2026-11-18 10:30");
        assert!(hours.is_open(t));
        assert_eq!(hours.next_opening(t), t);
        assert!(
            hours.is_open(cst("2026-11-18 08:00")),
            "opening minute is open"
        );
        assert!(hours.is_open(cst("2026-11-18 16:59")));
    }

    #[test]
    fn early_in_the_morning_it_opens_the_same_day() {
        let hours = weekdays_8_to_17();
        assert_eq!(
            hours.next_opening(cst("2026-11-18 07:59")),
            cst("2026-11-18 08:00")
        );
        // 08:00 UTC+8 is midnight UTC: the offset is applied, not ignored.
        assert_eq!(
            hours.next_opening(cst("2026-11-18 03:00")).to_rfc3339(),
            "2026-11-18T00:00:00+00:00"
        );
    }

    #[test]
    fn at_the_closing_minute_it_is_closed_until_the_next_working_day() {
        let hours = weekdays_8_to_17();
        assert!(!hours.is_open(cst("2026-11-18 17:00")));
        assert_eq!(
            hours.next_opening(cst("2026-11-18 17:00")),
            cst("2026-11-19 08:00")
        );
        assert_eq!(
            hours.next_opening(cst("2026-11-18 23:59")),
            cst("2026-11-19 08:00")
        );
    }

    #[test]
    fn friday_evening_and_the_weekend_wait_for_monday() {
        let hours = weekdays_8_to_17();
        for t in ["2026-11-20 17:00", "2026-11-21 09:00", "2026-11-22 23:00"] {
            assert!(!hours.is_open(cst(t)), "{t}");
            assert_eq!(hours.next_opening(cst(t)), cst("2026-11-23 08:00"), "{t}");
        }
    }

    #[test]
    fn the_day_follows_utc_plus_8_not_utc() {
        let hours = weekdays_8_to_17();
        // Sunday 2026-11-22 23:30 UTC is Monday 07:30 in UTC+8.
        let sunday_night_utc = DateTime::parse_from_rfc3339("2026-11-22T23:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            hours.next_opening(sunday_night_utc),
            cst("2026-11-23 08:00")
        );
        // Friday 2026-11-20 08:30 UTC is Friday 16:30 in UTC+8: open.
        let friday_utc = DateTime::parse_from_rfc3339("2026-11-20T08:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert!(hours.is_open(friday_utc));
    }

    #[test]
    fn a_single_working_day_comes_round_a_week_later() {
        let hours = BusinessHours {
            days: vec![Day::Wed],
            ..weekdays_8_to_17()
        };
        assert_eq!(
            hours.next_opening(cst("2026-11-18 17:30")),
            cst("2026-11-25 08:00")
        );
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(ClockTime::parse("08:05").expect("ok").to_string(), "08:05");
        for bad in ["8:00", "24:00", "12:60", "noon", "08-00", "0800"] {
            assert!(ClockTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hours_without_days_or_closing_before_opening_are_problems() {
        let mut hours = weekdays_8_to_17();
        hours.days.clear();
        hours.close = ClockTime::parse("07:00").expect("time");
        let keys: Vec<&str> = hours.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["days", "close"]);
        assert!(weekdays_8_to_17().problems().is_empty());
    }
}
