//! Strict input: the rules every piece of text a client sends passes before
//! the gateway keeps it, compares it, or puts it into an agency's message.
//!
//! - Text is normalised to Unicode NFKC and trimmed, so that full-width
//!   digits, compatibility forms and stray spaces mean what they look like.
//! - Control characters, format characters (zero-width spaces and joiners,
//!   bidirectional overrides and isolates, the byte-order mark, soft
//!   hyphens), line and paragraph separators, private-use characters and
//!   noncharacters are refused: none belongs in a name, a number or an
//!   identifier, and several make a bank's GB18030 XML invalid or make two
//!   different strings look the same to an officer.
//! - Identifiers (credentials, work cards, document numbers, account and
//!   unit numbers) are also folded to one letter case, so that two spellings
//!   of one credential compare equal.
//! - Every string and list has a bound, published in the OpenAPI document.
//!
//! What this module must never do: accept text it cannot keep as it was
//! shown to the client, or refuse anything without naming the field.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, Visitor};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::rules::BrokenRule;

/// A subject's or an officer's name, in characters.
pub const NAME_MAX: usize = 100;
/// A case number, in characters.
pub const CASE_NUMBER_MAX: usize = 64;
/// A work card or credential number, in characters.
pub const CREDENTIAL_MAX: usize = 32;
/// An identity number or credit code as sent, in characters.
pub const SUBJECT_ID_MAX: usize = 32;
/// A document number, in characters.
pub const DOCUMENT_NUMBER_MAX: usize = 100;
/// An account or unit number, in characters.
pub const ASSET_NUMBER_MAX: usize = 64;
/// An id of the gateway's own (inquiry, order, plan) or of an agency.
pub const ID_MAX: usize = 64;
/// A filter value of an audit query, in characters.
pub const FILTER_MAX: usize = 200;
/// Officers named in one request.
pub const OFFICERS_MAX: usize = 10;
/// Agencies named in one inquiry.
pub const AGENCIES_MAX: usize = 10_000;
/// Asset kinds named in one inquiry.
pub const ASSET_KINDS_MAX: usize = 16;
/// Documents carried by one order or plan: the ruling and the notice.
pub const DOCUMENTS_MAX: usize = 2;
/// The largest amount an order or a plan may state, in fen: one trillion
/// yuan, more than any single enforcement has ever frozen.
pub const AMOUNT_MAX_FEN: i64 = 100_000_000_000_000;

/// Whether a character may never appear in text the gateway takes.
pub fn is_forbidden(c: char) -> bool {
    let code = c as u32;
    let noncharacter = (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE;
    noncharacter
        || matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::PrivateUse
                | GeneralCategory::Surrogate
                | GeneralCategory::Unassigned
        )
}

/// `value` normalised (NFKC, trimmed) and checked: no forbidden character,
/// at most `max` characters. Empty text is returned as it is: whether a
/// field may be empty is its own rule.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, BrokenRule> {
    // The bound holds for the text as sent (spaces around it included),
    // as the OpenAPI document publishes it, and is checked before any
    // work on the text.
    if value.chars().count() > max {
        return Err(too_long(field, max));
    }
    let normal: Cow<'_, str> = if value.is_ascii() {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.nfkc().collect())
    };
    if let Some(bad) = normal.chars().find(|c| is_forbidden(*c)) {
        return Err(BrokenRule::InvalidCharacters {
            field: field.to_owned(),
            character: bad,
        });
    }
    Ok(normal.trim().to_owned())
}

/// Like [`text`], in one letter case (upper): for identifiers, so that
/// `zx620503001`, `ZX620503001` and `ＺＸ６２０５０３００１` are one
/// credential. Empty text is returned as it is.
pub fn folded(field: &str, value: &str, max: usize) -> Result<String, BrokenRule> {
    Ok(text(field, value, max)?.to_uppercase())
}

/// Like [`text`], and required: empty text is refused.
pub fn required(field: &str, value: &str, max: usize) -> Result<String, BrokenRule> {
    let t = text(field, value, max)?;
    if t.is_empty() {
        return Err(BrokenRule::Empty {
            field: field.to_owned(),
        });
    }
    Ok(t)
}

/// An identifier: [`required`] and [`folded`].
pub fn identifier(field: &str, value: &str, max: usize) -> Result<String, BrokenRule> {
    Ok(required(field, value, max)?.to_uppercase())
}

/// A request body that puts its own text through these rules, in place,
/// as soon as it is read: every rule after it sees clean text.
pub trait Normalise {
    fn normalise(&mut self) -> Result<(), BrokenRule>;
}

/// [`text`] on an optional field.
pub fn optional_text(
    field: &str,
    value: &mut Option<String>,
    max: usize,
) -> Result<(), BrokenRule> {
    if let Some(v) = value {
        *v = text(field, v, max)?;
    }
    Ok(())
}

/// [`folded`] on an optional field.
pub fn optional_folded(
    field: &str,
    value: &mut Option<String>,
    max: usize,
) -> Result<(), BrokenRule> {
    if let Some(v) = value {
        *v = folded(field, v, max)?;
    }
    Ok(())
}

fn too_long(field: &str, max: usize) -> BrokenRule {
    BrokenRule::TooLong {
        field: field.to_owned(),
        max,
    }
}

/// Refuses a list longer than `max`.
pub fn bounded<T>(field: &str, list: &[T], max: usize) -> Result<(), BrokenRule> {
    if list.len() > max {
        return Err(BrokenRule::TooMany {
            field: field.to_owned(),
            count: list.len(),
            max,
        });
    }
    Ok(())
}

/// Refuses an amount above [`AMOUNT_MAX_FEN`].
pub fn amount(field: &str, fen: i64) -> Result<i64, BrokenRule> {
    if fen > AMOUNT_MAX_FEN {
        return Err(BrokenRule::AmountTooLarge {
            field: field.to_owned(),
        });
    }
    Ok(fen)
}

/// Deserializes a struct from a JSON object only. serde's derived structs
/// also take a JSON array of their fields in order; a body of the wrong
/// shape must be refused, not read by position.
pub struct ObjectOnly<D>(pub D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A struct read with [`ObjectOnly`].
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(ObjectOnly(d)).map(Object)
    }
}

/// `deserialize_with` for a struct-valued field: a JSON object only.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    T::deserialize(ObjectOnly(d))
}

/// `deserialize_with` for an optional struct-valued field.
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
}

/// `deserialize_with` for a list of structs: each a JSON object.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Vec::<Object<T>>::deserialize(d)?
        .into_iter()
        .map(|o| o.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_direction_characters_are_refused() {
        for bad in [
            "李\u{200B}明",
            "李\u{202E}明",
            "李\u{2066}明",
            "\u{FEFF}李明",
            "李\u{00AD}明",
            "李\u{0007}明",
            "李\n明",
            "李\u{2028}明",
            "李\u{E000}明",
            "李\u{FDD0}明",
            "李\u{FFFF}明",
            "李\u{10FFFE}明",
        ] {
            let e = text("name", bad, NAME_MAX).expect_err(bad);
            assert!(
                matches!(&e, BrokenRule::InvalidCharacters { field, .. } if field == "name"),
                "{bad:?}: {e:?}"
            );
        }
    }

    #[test]
    fn text_is_normalised_and_trimmed() {
        assert_eq!(text("n", "  李明 ", 10).ok().as_deref(), Some("李明"));
        // Full-width letters and digits are the ASCII ones (NFKC).
        assert_eq!(
            identifier("c", "ｚｘ６２０５０３００１", 32)
                .ok()
                .as_deref(),
            Some("ZX620503001")
        );
        assert_eq!(
            identifier("c", " zx620503001", 32).ok().as_deref(),
            Some("ZX620503001")
        );
        // An ideographic space is a space: trimmed.
        assert_eq!(text("n", "\u{3000}张三", 10).ok().as_deref(), Some("张三"));
    }

    #[test]
    fn bounds_are_in_characters_and_huge_text_is_refused_early() {
        assert!(text("n", &"张".repeat(100), NAME_MAX).is_ok());
        let e = text("n", &"张".repeat(101), NAME_MAX).expect_err("too long");
        assert!(
            matches!(e, BrokenRule::TooLong { max: NAME_MAX, .. }),
            "{e:?}"
        );
        let e = text("n", &"a".repeat(200_000), NAME_MAX).expect_err("huge");
        assert!(matches!(e, BrokenRule::TooLong { .. }), "{e:?}");
        let e = required("n", "   ", 10).expect_err("empty");
        assert!(matches!(e, BrokenRule::Empty { .. }), "{e:?}");
    }

    #[test]
    fn amounts_have_a_ceiling() {
        assert!(amount("amount_fen", AMOUNT_MAX_FEN).is_ok());
        let e = amount("amount_fen", i64::MAX).expect_err("huge");
        assert!(matches!(e, BrokenRule::AmountTooLarge { .. }), "{e:?}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(deserialize_with = "object")]
        one: Inner,
        #[serde(default, deserialize_with = "optional_object")]
        maybe: Option<Inner>,
        #[serde(default, deserialize_with = "objects")]
        many: Vec<Inner>,
    }

    fn parse(json: &str) -> Result<Outer, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(json);
        let v = Outer::deserialize(ObjectOnly(&mut de))?;
        de.end()?;
        Ok(v)
    }

    #[test]
    fn structs_are_read_from_objects_only() {
        let ok = parse(r#"{"one": {"a": "x"}, "maybe": {"a": "y"}, "many": [{"a": "z"}]}"#)
            .expect("objects");
        assert_eq!(ok.one.a, "x");
        assert_eq!(ok.maybe.map(|m| m.a).as_deref(), Some("y"));
        assert_eq!(ok.many.len(), 1);
        assert!(parse(r#"{"one": {"a": "x"}, "maybe": null}"#).is_ok());
        for bad in [
            r#"[{"a": "x"}]"#,
            r#"{"one": ["x"]}"#,
            r#"{"one": {"a": "x"}, "maybe": ["y"]}"#,
            r#"{"one": {"a": "x"}, "many": [["z"]]}"#,
            r#"{"one": {"a": "x"}} {"one": {"a": "x"}}"#,
            r#"{"one": {"a": "x"}} x"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
