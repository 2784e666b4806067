//! Reading one agency file with every error it holds, each with its line.
//!
//! serde stops at the first problem, so the file is read in passes:
//! 1. syntax (every syntax error toml can recover from);
//! 2. structure: required keys present, then typed deserialization repeated
//!    after taking out (or, for a required key, replacing with a
//!    placeholder) each entry serde refused: unknown keys, wrong types,
//!    unknown enum values;
//! 3. values: what serde cannot check (URL, identifiers, limits, hours), and
//!    the references (environment variables and files) resolved.
//!
//! Problems in pass 3 about a key that pass 2 already refused are left out:
//! one mistake, one error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::secrets::Connection;
use super::{AgencyConfig, ConfigError, SourceLines};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value sits in an agency file: `auth.headers[0].env`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    pub fn key(key: &str) -> Self {
        Self(vec![Seg::Key(key.to_owned())])
    }

    pub fn then(mut self, key: &str) -> Self {
        self.0.push(Seg::Key(key.to_owned()));
        self
    }

    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Seg::Index(i));
        self
    }

    fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Keys a table must have, with the placeholder that stands in for a missing
/// or refused one so that the rest of the file can still be checked.
fn required_keys(table: &[Seg]) -> &'static [(&'static str, Placeholder)] {
    use Placeholder::{EmptyArray, Text};
    match table {
        [] => &[
            ("id", Text("")),
            ("name", Text("")),
            ("kind", Text("bank")),
            ("dialect", Text("")),
            ("base_url", Text("")),
        ],
        [Seg::Key(k)] if k == "business_hours" => &[
            ("days", EmptyArray),
            ("open", Text("00:00")),
            ("close", Text("23:59")),
        ],
        [Seg::Key(a), Seg::Key(h), Seg::Index(_)] if a == "auth" && h == "headers" => {
            &[("name", Text(""))]
        }
        _ => &[],
    }
}

#[derive(Debug, Clone, Copy)]
enum Placeholder {
    Text(&'static str),
    EmptyArray,
}

impl Placeholder {
    fn value(self) -> DeValue<'static> {
        match self {
            Placeholder::Text(s) => DeValue::String(Cow::Borrowed(s)),
            Placeholder::EmptyArray => DeValue::Array(DeArray::new()),
        }
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// The path of the innermost entry at `offset`: a key, or a value that is
/// not a table (array elements that are not tables stand for their array).
fn path_at(table: &DeTable<'_>, offset: usize, prefix: &[Seg]) -> Option<Vec<Seg>> {
    for (key, value) in table.iter() {
        let mut path = prefix.to_vec();
        path.push(Seg::Key(key.get_ref().to_string()));
        if contains(&key.span(), offset) {
            return Some(path);
        }
        match value.get_ref() {
            DeValue::Table(inner) => {
                if let Some(found) = path_at(inner, offset, &path) {
                    return Some(found);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        let mut at = path.clone();
                        at.push(Seg::Index(i));
                        if let Some(found) = path_at(inner, offset, &at) {
                            return Some(found);
                        }
                    }
                }
            }
            _ => {}
        }
        if contains(&value.span(), offset) {
            return Some(path);
        }
    }
    None
}

/// The table a path leads to (array elements included), for changes.
fn table_mut<'a, 'i>(table: &'a mut DeTable<'i>, path: &[Seg]) -> Option<&'a mut DeTable<'i>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(table);
    };
    let Seg::Key(key) = first else { return None };
    let value = table.get_mut(key.as_str())?.get_mut();
    match (value, rest.split_first()) {
        (DeValue::Array(items), Some((Seg::Index(i), after))) => {
            match items.get_mut(*i)?.get_mut() {
                DeValue::Table(inner) => table_mut(inner, after),
                _ => None,
            }
        }
        (DeValue::Table(inner), _) => table_mut(inner, rest),
        _ => None,
    }
}

/// The span of the key (or array element) a path names.
fn span_of(table: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let (Seg::Key(key), rest) = path.split_first()? else {
        return None;
    };
    let (k, v) = table.get_key_value(key.as_str())?;
    match (rest.split_first(), v.get_ref()) {
        (None, _) => Some(k.span()),
        (Some((Seg::Key(_), _)), DeValue::Table(inner)) => span_of(inner, rest).or(Some(k.span())),
        (Some((Seg::Index(i), after)), DeValue::Array(items)) => {
            let item = items.get(*i)?;
            match (after.is_empty(), item.get_ref()) {
                (true, _) => Some(item.span()),
                (false, DeValue::Table(inner)) => span_of(inner, after).or(Some(item.span())),
                _ => Some(item.span()),
            }
        }
        _ => Some(k.span()),
    }
}

/// Every table of the document that has required keys, with its path.
fn tables_with_required_keys(root: &DeTable<'_>) -> Vec<Vec<Seg>> {
    let mut tables = vec![Vec::new()];
    if matches!(
        root.get("business_hours").map(|v| v.get_ref()),
        Some(DeValue::Table(_))
    ) {
        tables.push(vec![Seg::Key("business_hours".into())]);
    }
    if let Some(DeValue::Table(auth)) = root.get("auth").map(|v| v.get_ref())
        && let Some(DeValue::Array(headers)) = auth.get("headers").map(|v| v.get_ref())
    {
        for (i, h) in headers.iter().enumerate() {
            if matches!(h.get_ref(), DeValue::Table(_)) {
                tables.push(vec![
                    Seg::Key("auth".into()),
                    Seg::Key("headers".into()),
                    Seg::Index(i),
                ]);
            }
        }
    }
    tables
}

/// The line of every key of a table and its sub-tables, by dotted path
/// (`limits.max_batch`; arrays of tables by index, `auth.headers[0].name`).
fn key_lines(table: &DeTable<'_>, text: &str, prefix: &str, out: &mut BTreeMap<String, usize>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.insert(path.clone(), line_of(text, key.span().start));
        match value.get_ref() {
            DeValue::Table(inner) => key_lines(inner, text, &path, out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        key_lines(inner, text, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Reads one agency file's text. `file` names it in errors and anchors its
/// relative paths (TLS files, secret files).
pub fn parse_agency(file: &Path, text: &str) -> Result<AgencyConfig, Vec<ConfigError>> {
    let error_at = |offset: Option<usize>, message: String| {
        ConfigError::at(file, offset.map(|o| line_of(text, o)), message)
    };

    // Pass 1: syntax.
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(syntax
            .into_iter()
            .map(|e| error_at(e.span().map(|s| s.start), e.message().to_owned()))
            .collect());
    }
    let root_span = root.span();
    let mut root = root.into_inner();
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut refused: Vec<KeyPath> = Vec::new();

    // Pass 2a: required keys.
    for table_path in tables_with_required_keys(&root) {
        let anchor = if table_path.is_empty() {
            Some(0)
        } else {
            span_of(&root, &table_path).map(|s| s.start)
        };
        let Some(table) = table_mut(&mut root, &table_path) else {
            continue;
        };
        for (key, placeholder) in required_keys(&table_path) {
            if table.contains_key(*key) {
                continue;
            }
            let mut path = table_path.clone();
            path.push(Seg::Key((*key).to_owned()));
            let path = KeyPath(path);
            errors.push(error_at(anchor, format!("{path}: required key is missing")));
            let span = anchor.map(|a| a..a).unwrap_or(root_span.clone());
            table.insert(
                Spanned::new(span.clone(), Cow::Owned((*key).to_owned())),
                Spanned::new(span, placeholder.value()),
            );
            refused.push(path);
        }
    }

    // Pass 2b: types and unknown keys.
    let mut config = None;
    for _ in 0..256 {
        let attempt = Spanned::new(root_span.clone(), root.clone());
        match AgencyConfig::deserialize(toml::de::Deserializer::from(attempt)) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => {
                let offset = e.span().map(|s| s.start);
                let path = offset.and_then(|o| path_at(&root, o, &[]));
                let Some(path) = path.filter(|p| !refused.iter().any(|r| r.0 == *p)) else {
                    errors.push(error_at(offset, e.message().to_owned()));
                    break;
                };
                let shown = KeyPath(path.clone());
                let message = if let Some(rest) = e.message().strip_prefix("unknown field `") {
                    let expected = rest.split_once("`").map_or("", |(_, r)| r);
                    format!("unknown key {shown}{expected}")
                } else {
                    format!("{shown}: {}", e.message())
                };
                errors.push(error_at(offset, message));
                let (parent, last) = path.split_at(path.len() - 1);
                let placeholder = match &last[0] {
                    Seg::Key(k) => required_keys(parent)
                        .iter()
                        .find(|(name, _)| name == k)
                        .map(|(_, p)| *p),
                    Seg::Index(_) => None,
                };
                match (table_mut(&mut root, parent), &last[0]) {
                    (Some(table), Seg::Key(k)) => match placeholder {
                        Some(p) => {
                            if let Some(v) = table.get_mut(k.as_str()) {
                                *v.get_mut() = p.value();
                            }
                        }
                        None => {
                            table.remove(k.as_str());
                        }
                    },
                    _ => break,
                }
                refused.push(shown);
            }
        }
    }
    let Some(mut config) = config else {
        errors.sort_by_key(ConfigError::line);
        return Err(errors);
    };

    // Pass 3: values and references.
    let base = file.parent().unwrap_or(Path::new(""));
    config.anchor_paths(base);
    let mut problems = config.problems();
    if let Err(more) = Connection::resolve(&config) {
        problems.extend(more);
    }
    for (path, message) in problems {
        if refused.iter().any(|r| path.starts_with(r)) {
            continue;
        }
        let offset = span_of(&root, &path.0).map(|s| s.start);
        errors.push(error_at(offset, message));
    }
    if !errors.is_empty() {
        // In the file's order, as an engineer reads it.
        errors.sort_by_key(ConfigError::line);
        return Err(errors);
    }
    let mut lines = BTreeMap::new();
    key_lines(&root, text, "", &mut lines);
    config.source = SourceLines::new(lines);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_read_like_toml() {
        let p = KeyPath::key("auth").then("headers").index(2).then("env");
        assert_eq!(p.to_string(), "auth.headers[2].env");
    }

    #[test]
    fn lines_count_from_one() {
        let text = "a = 1\nb = 2\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, 999), 3);
    }
}
