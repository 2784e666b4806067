//! Request templates: minijinja, with escaping that fits the message format
//! (XML text escaping, JSON values) so a subject's name can never break the
//! message, strict undefined values (a typo is a load-time error, not an
//! empty tag), and the filters dialects need (`code`, `yuan`).
//!
//! Because every value is escaped, whether a body is well-formed depends on
//! the template alone, not on the values: the rehearsal at load time checks
//! it, and bodies are not parsed again when they are sent. That is why
//! `safe`, which would let a value through unescaped, is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

use super::spec::Format;

/// Template names end in the part they render; only bodies are escaped.
pub const BODY: &str = "body";

pub fn environment(
    format: Format,
    codes: Arc<BTreeMap<String, BTreeMap<String, String>>>,
) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(move |name| {
        if !name.ends_with(BODY) {
            AutoEscape::None
        } else {
            match format {
                Format::Xml => AutoEscape::Html,
                Format::Json => AutoEscape::Json,
            }
        }
    });
    // XML bodies: escape the five XML characters and nothing else.
    env.set_formatter(|out, state, value| {
        if *state.auto_escape() == AutoEscape::Html && !value.is_safe() {
            let escaped = match value.as_str() {
                // Most values are text: escaped where they are.
                Some(text) => quick_xml::escape::escape(text),
                None if value.is_none() || value.is_undefined() => "".into(),
                None => quick_xml::escape::escape(value.to_string()),
            };
            out.write_str(&escaped)
                .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write"))
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("safe", |_: Value| -> Result<Value, Error> {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            "the safe filter is not allowed: every value is escaped for the message format",
        ))
    });
    env.add_filter(
        "code",
        // A code is short: as a template value it is held inline, not
        // allocated.
        move |value: &str, table: &str| -> Result<Value, Error> {
            let t = codes.get(table).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("no code table {table:?} in [codes]"),
                )
            })?;
            t.get(value)
                .or_else(|| t.get("*"))
                .map(|c| Value::from(c.as_str()))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("{value:?} has no code in table {table:?}"),
                    )
                })
        },
    );
    // Absent (none) amounts and dates print as nothing, so one template
    // serves actions with and without them; a name the context lacks
    // (undefined) is an error, as everywhere in strict mode.
    env.add_filter("yuan", |value: Value| -> Result<String, Error> {
        if value.is_none() {
            return Ok(String::new());
        }
        let fen = i64::try_from(defined(value)?)
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, "yuan takes an amount in fen"))?;
        Ok(crate::model::Fen(fen).to_yuan())
    });
    env.add_filter(
        "date",
        |value: Value, format: String| -> Result<String, Error> {
            if value.is_none() {
                return Ok(String::new());
            }
            let value = defined(value)?;
            let text = value.as_str().unwrap_or_default();
            let parsed = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{value} is not a yyyy-mm-dd date"),
                )
            })?;
            Ok(parsed.format(&format).to_string())
        },
    );
    env
}

fn defined(value: Value) -> Result<Value, Error> {
    if value.is_undefined() {
        Err(Error::new(
            ErrorKind::UndefinedError,
            "the value is not defined",
        ))
    } else {
        Ok(value)
    }
}

/// Renders a named template (a path or a content type) with a context.
pub fn render(env: &Environment<'static>, name: &str, ctx: &Value) -> Result<String, String> {
    let template = env.get_template(name).map_err(|e| describe(&e))?;
    template.render(ctx.clone()).map_err(|e| describe(&e))
}

/// Renders a named template (a body) into `out`.
pub fn render_into(
    env: &Environment<'static>,
    name: &str,
    ctx: &Value,
    out: &mut impl std::io::Write,
) -> Result<(), String> {
    let template = env.get_template(name).map_err(|e| describe(&e))?;
    template
        .render_captured_to(ctx.clone(), out)
        .map(drop)
        .map_err(|e| describe(&e))
}

/// An error with its template line, when minijinja knows it.
pub fn describe(e: &Error) -> String {
    let mut text = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        text.push_str(&format!(" (template line {line})"));
    }
    text
}
