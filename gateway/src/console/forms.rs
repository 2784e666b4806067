//! What the console's forms send and its pages show: times in China
//! Standard Time, empty fields that mean "no filter", choices of a
//! `<select>`, values made into links.

use axum::extract::rejection::QueryRejection;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

use super::PageError;

/// China Standard Time, as the courts read times.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// A stored time as a person in China reads it.
pub fn local_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&china())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A time from the search form: RFC 3339 as the API takes it, or a
/// date and time without a zone (what `<input type="datetime-local">`
/// sends), or a date alone (its midnight), both read in UTC+8.
pub fn parse_form_time(field: &str, value: &str) -> Result<i64, PageError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    let naive = [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    naive
        .and_then(|n| china().from_local_datetime(&n).single())
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| {
            PageError::bad_request(format!(
                "“{field}”不是有效时间。 {field} must be a date and time such as 2024-05-01T08:00 \
                 (UTC+8) or an RFC 3339 timestamp."
            ))
            .with_field(field)
        })
}

/// An optional time field of a form: empty is none.
pub fn form_time(field: &str, value: &str) -> Result<Option<i64>, PageError> {
    given(value).map(|v| parse_form_time(field, &v)).transpose()
}

/// A field's value, trimmed; none when it is empty.
pub fn given(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// A query string that could not be read, as a page.
pub fn query_error(rejection: QueryRejection) -> PageError {
    PageError::bad_request(format!(
        "查询参数无法读取。 The query could not be read: {}",
        rejection.body_text()
    ))
}

/// An option of a `<select>`.
#[derive(Debug)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub fn choices(current: &str, options: &[(&str, &str)]) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: current.trim() == *value,
        })
        .collect()
}

/// A time the form was given, as a `datetime-local` field shows it (in
/// UTC+8), so the field and the links carry the time the filter used.
pub fn form_value(ms: Option<i64>) -> String {
    ms.map(|ms| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .with_timezone(&china())
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    })
    .unwrap_or_default()
}

/// A value as one segment of a path.
pub fn path_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub fn filter_link(name: &str, value: &Option<String>) -> Option<String> {
    value.as_ref().filter(|v| !v.is_empty()).map(|v| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair(name, v);
        format!("/console/audit?{}", q.finish())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_read_in_china_standard_time() {
        let at = |v| parse_form_time("from", v).ok();
        // 2024-05-01 08:00 in UTC+8 is midnight UTC.
        let midnight_utc = 1_714_521_600_000;
        assert_eq!(at("2024-05-01T08:00"), Some(midnight_utc));
        assert_eq!(at("2024-05-01 08:00:00"), Some(midnight_utc));
        assert_eq!(at("2024-05-01T00:00:00Z"), Some(midnight_utc));
        assert_eq!(at("2024-05-01"), Some(midnight_utc - 8 * 3_600_000));
        assert_eq!(at("yesterday"), None);
        assert_eq!(at("2024-13-01"), None);
        assert_eq!(local_time(midnight_utc), "2024-05-01 08:00:00");
    }
}
