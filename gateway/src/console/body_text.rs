//! A stored message body as text, for reading: decoded by the encoding it
//! declares (a byte-order mark, an XML declaration), else by the one its
//! agency is configured with, else by a guess (UTF-8, then GB18030, which
//! covers GBK). Decoding is strict: a body that is not valid in an
//! encoding is never shown in it with replacement characters; one that
//! is valid in none is left to its raw bytes.

use encoding_rs::Encoding;

/// A body's text and how its encoding was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyText {
    /// None when no encoding tried reads the bytes.
    pub text: Option<String>,
    /// The encoding's name (`UTF-8`, `GB18030`, `GBK` ...).
    pub encoding: Option<&'static str>,
    /// How it was found, as the page says it.
    pub how: &'static str,
}

fn strict(encoding: &'static Encoding, bytes: &[u8]) -> Option<String> {
    let (text, had_errors) = encoding.decode_with_bom_removal(bytes);
    (!had_errors).then(|| text.into_owned())
}

/// Decodes `bytes`; `agency_encoding` is the label the agency's file (or
/// its dialect) names, if any.
pub fn decode(bytes: &[u8], agency_encoding: Option<&str>) -> BodyText {
    if let Some((encoding, _)) = Encoding::for_bom(bytes)
        && let Some(text) = strict(encoding, bytes)
    {
        return BodyText {
            text: Some(text),
            encoding: Some(encoding.name()),
            how: "字节顺序标记 · its byte-order mark",
        };
    }
    if bytes.starts_with(b"<?xml")
        && let Ok(text) = adapters::xml::decode_document(bytes)
    {
        // The declaration's own label, as written (GBK stays GBK).
        let label = declared_label(&text);
        return BodyText {
            text: Some(text.into_owned()),
            encoding: Some(label.unwrap_or("UTF-8")),
            how: if label.is_some() {
                "XML 声明 · its XML declaration"
            } else {
                "XML 默认 · XML's default (no encoding declared)"
            },
        };
    }
    if let Some(encoding) = agency_encoding.and_then(adapters::xml::encoding_for_label)
        && let Some(text) = strict(encoding, bytes)
    {
        return BodyText {
            text: Some(text),
            encoding: Some(encoding.name()),
            how: "机构配置 · the agency's configured encoding",
        };
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return BodyText {
            text: Some(text.to_owned()),
            encoding: Some("UTF-8"),
            how: "推断 · guessed (valid UTF-8)",
        };
    }
    if let Some(text) = strict(encoding_rs::GB18030, bytes) {
        return BodyText {
            text: Some(text),
            encoding: Some("GB18030"),
            how: "推断 · guessed (valid GB18030, which covers GBK)",
        };
    }
    BodyText {
        text: None,
        encoding: None,
        how: "无法解码 · not valid UTF-8 or GB18030: see the raw bytes",
    }
}

/// The encoding label of a decoded XML declaration, when it names one we
/// know (so the page names what the agency wrote, `GBK` or `GB18030`).
fn declared_label(text: &str) -> Option<&'static str> {
    let declaration = text.strip_prefix("<?xml")?.split("?>").next()?;
    let value = declaration.split("encoding").nth(1)?;
    let value = value.trim_start().strip_prefix('=')?.trim_start();
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let label = value[1..].split(quote).next()?;
    const KNOWN: [&str; 4] = ["GB18030", "GBK", "GB2312", "UTF-8"];
    KNOWN
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(label.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gb18030(text: &str) -> Vec<u8> {
        encoding_rs::GB18030.encode(text).0.into_owned()
    }

    #[test]
    fn an_xml_body_is_read_by_its_declaration() {
        let bytes = gb18030("<?xml version=\"1.0\" encoding=\"GBK\"?>\n<XM>张三</XM>");
        let body = decode(&bytes, None);
        assert_eq!(body.encoding, Some("GBK"));
        assert!(body.text.as_deref().is_some_and(|t| t.contains("张三")));
        assert!(body.how.contains("XML"));
    }

    #[test]
    fn a_body_without_a_declaration_is_read_by_the_agency_s_encoding() {
        let bytes = gb18030("XM=张三");
        let body = decode(&bytes, Some("gb18030"));
        assert_eq!(body.encoding, Some("gb18030"));
        assert_eq!(body.text.as_deref(), Some("XM=张三"));
    }

    #[test]
    fn otherwise_utf8_then_gb18030_is_guessed() {
        let body = decode("{\"name\":\"张三\"}".as_bytes(), None);
        assert_eq!(body.encoding, Some("UTF-8"));
        let body = decode(&gb18030("张三"), None);
        assert_eq!(body.encoding, Some("GB18030"));
        assert_eq!(body.text.as_deref(), Some("张三"));
    }

    #[test]
    fn bytes_valid_in_no_encoding_are_not_shown_as_text() {
        let body = decode(&[0xff, 0xfe, 0x00, 0xd8, 0x80], None);
        // A UTF-16 byte-order mark with a lone surrogate: no encoding.
        assert_eq!(body.text, None);
        let body = decode(&[0x80, 0xff, 0x81], None);
        assert_eq!(body.text, None);
    }
}
