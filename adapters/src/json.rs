//! JSON replies, read with a nesting bound.
//!
//! Replies are untrusted. `serde_json` refuses nesting deeper than 128 to
//! protect its own stack, but everything that walks a `Value` afterwards
//! (paths into the reply, dropping it) recurses too, and no agency message
//! nests deeper than a handful of levels. So a reply is scanned once, in
//! linear time and without allocating, and refused before parsing when its
//! arrays and objects nest deeper than `MAX_DEPTH`.

use serde_json::Value;

/// Arrays and objects nested deeper than this are refused.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("JSON nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("malformed JSON: {0}")]
    Malformed(String),
}

/// The deepest nesting of arrays and objects in `bytes`, counting only
/// brackets outside strings; it stops counting (and returns `limit + 1`) as
/// soon as the nesting passes `limit`. Unbalanced or otherwise malformed
/// input gets a number too: the parser refuses it afterwards.
pub fn nesting_depth(bytes: &[u8], limit: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > limit {
                        return deepest;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses a reply, refusing nesting deeper than `MAX_DEPTH` before parsing.
pub fn parse_reply(bytes: &[u8]) -> Result<Value, JsonError> {
    if nesting_depth(bytes, MAX_DEPTH) > MAX_DEPTH {
        return Err(JsonError::TooDeep);
    }
    serde_json::from_slice(bytes).map_err(|e| JsonError::Malformed(crate::excerpt(&e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_up_to_the_limit_parses_and_one_more_is_refused() {
        assert!(parse_reply(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse_reply(nested(MAX_DEPTH + 1).as_bytes()),
            Err(JsonError::TooDeep)
        );
        let objects = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(parse_reply(objects.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(
            r#"{{"a": "{}", "b": "\"[[[", "c": ["\\", "{{"]}}"#,
            "[".repeat(1000)
        );
        assert_eq!(nesting_depth(text.as_bytes(), MAX_DEPTH), 2);
        assert!(parse_reply(text.as_bytes()).is_ok());
    }

    #[test]
    fn depth_is_the_deepest_not_the_total() {
        let wide = format!("[{}]", vec!["[[1]]"; 10_000].join(","));
        assert_eq!(nesting_depth(wide.as_bytes(), MAX_DEPTH), 3);
        assert!(parse_reply(wide.as_bytes()).is_ok());
    }

    #[test]
    fn an_unterminated_deep_reply_is_refused_before_parsing() {
        // Ten megabytes of `[`: refused by the scan, which stops at the limit.
        let deep = vec![b'['; 10 * 1024 * 1024];
        let started = std::time::Instant::now();
        assert_eq!(parse_reply(&deep), Err(JsonError::TooDeep));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Unbalanced closers neither underflow nor hide later nesting.
        let text = format!("]]]]{}", nested(MAX_DEPTH + 1));
        assert_eq!(parse_reply(text.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn errors_quote_little_of_the_reply() {
        let long = format!("\"{}", "x".repeat(100_000));
        match parse_reply(long.as_bytes()) {
            Err(JsonError::Malformed(m)) => assert!(m.chars().count() <= 200, "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
