//! XML in the agencies' encodings: strict decoding by the declared encoding,
//! a small element tree for reply mapping, and encoding of outbound messages.
//!
//! Replies are untrusted. Decoding never substitutes replacement characters
//! (a GB18030 reply that is not GB18030 is a bad reply, not mojibake), there is
//! no DTD and no entity expansion beyond XML's five predefined entities, and
//! nesting depth, element count, attributes per element and the length of an
//! attribute value are bounded. Every refusal is an `XmlError`, reached in
//! time linear in the input: `tests/hostile_xml.rs` holds the attacks.

use std::borrow::Cow;

use encoding_rs::Encoding;
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::excerpt;

/// Nesting deeper than this is refused: no agency message needs it.
pub const MAX_DEPTH: usize = 32;
/// More elements than this in one reply is refused.
pub const MAX_ELEMENTS: usize = 1_000_000;
/// More attributes than this on one element is refused. The XML parser
/// compares each attribute name with every earlier one of its element (to
/// refuse duplicates), so without a bound one element with a hundred thousand
/// attributes costs billions of comparisons.
pub const MAX_ATTRIBUTES: usize = 256;
/// An attribute value longer than this (in bytes, as written) is refused: the
/// agencies' attributes are codes, currencies and namespaces.
pub const MAX_ATTRIBUTE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the XML declaration names an unknown encoding {0:?}")]
    UnknownEncoding(String),
    #[error("the bytes are not valid {0}")]
    BadBytes(&'static str),
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("XML document type declarations are not accepted")]
    DocType,
    #[error("XML entity &{0}; is not accepted")]
    Entity(String),
    #[error("XML nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("XML with more than {MAX_ELEMENTS} elements")]
    TooLarge,
    #[error("an XML element with more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("an XML attribute value longer than {MAX_ATTRIBUTE_BYTES} bytes")]
    AttributeTooLong,
    #[error("the document has no root element")]
    Empty,
}

/// Looks up an encoding by its label (`GB18030`, `gbk`, `UTF-8`, ...).
pub fn encoding_for_label(label: &str) -> Option<&'static Encoding> {
    Encoding::for_label(label.trim().as_bytes())
}

/// Decodes an XML document to text using the encoding its declaration names
/// (UTF-8 when there is none, or a byte-order mark says otherwise). Fails on
/// any byte sequence that is invalid in that encoding. UTF-8 text is
/// borrowed, not copied.
pub fn decode_document(bytes: &[u8]) -> Result<Cow<'_, str>, XmlError> {
    let encoding = match Encoding::for_bom(bytes) {
        Some((enc, _)) => enc,
        None => declared_encoding(bytes)?.unwrap_or(encoding_rs::UTF_8),
    };
    let (text, had_errors) = encoding.decode_with_bom_removal(bytes);
    if had_errors {
        return Err(XmlError::BadBytes(encoding.name()));
    }
    Ok(text)
}

/// Reads the `encoding` pseudo-attribute of the XML declaration, if any. The
/// declaration itself is ASCII in every encoding the agencies use.
fn declared_encoding(bytes: &[u8]) -> Result<Option<&'static Encoding>, XmlError> {
    if !bytes.starts_with(b"<?xml") {
        return Ok(None);
    }
    let mut reader = Reader::from_reader(bytes);
    match reader.read_event() {
        Ok(Event::Decl(decl)) => match decl.encoding() {
            None => Ok(None),
            Some(Ok(label)) => {
                let label = String::from_utf8_lossy(&label);
                encoding_for_label(&label)
                    .map(Some)
                    .ok_or_else(|| XmlError::UnknownEncoding(excerpt(&label)))
            }
            Some(Err(e)) => Err(malformed(&e)),
        },
        Ok(_) => Ok(None),
        Err(e) => Err(malformed(&e)),
    }
}

/// An element with its text and children; attributes are kept in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of a child; `None` when the child is absent or empty
    /// (on this wire, empty means absent).
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }

    /// Follows a path of child names, taking the first match at each step.
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |el, name| el.child(name))
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a decoded document into its root element.
pub fn parse_tree(text: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| malformed(&e))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                let _ = start;
                return Err(XmlError::Malformed("content after the root element".into()));
            }
            Event::Start(start) => {
                count += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                stack.push(element_from(&start)?);
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                let el = element_from(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unexpected end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| malformed(&e))?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| malformed(&e))?;
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| malformed(&e))?
                        .ok_or_else(|| XmlError::Malformed("bad character reference".into()))?
                } else {
                    let name = r.decode().map_err(|e| malformed(&e))?;
                    match name.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(XmlError::Entity(excerpt(other))),
                    }
                };
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]))?;
            }
            Event::DocType(_) => return Err(XmlError::DocType),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed(
            "the document ends inside an element".into(),
        ));
    }
    root.ok_or(XmlError::Empty)
}

fn push_text(stack: &mut [Element], s: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(XmlError::Malformed("text outside the root element".into())),
    }
}

/// A parser's complaint, which may quote the document, cut to a readable
/// length.
fn malformed(e: &dyn std::fmt::Display) -> XmlError {
    XmlError::Malformed(excerpt(&e.to_string()))
}

fn element_from(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, XmlError> {
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|e| malformed(&e))?
        .to_owned();
    let mut attributes = Vec::new();
    for attr in start.attributes() {
        if attributes.len() >= MAX_ATTRIBUTES {
            return Err(XmlError::TooManyAttributes);
        }
        let attr = attr.map_err(|e| malformed(&e))?;
        if attr.value.len() > MAX_ATTRIBUTE_BYTES {
            return Err(XmlError::AttributeTooLong);
        }
        let key = std::str::from_utf8(attr.key.as_ref())
            .map_err(|e| malformed(&e))?
            .to_owned();
        let value = attr
            .unescape_value()
            .map_err(|e| malformed(&e))?
            .into_owned();
        attributes.push((key, value));
    }
    Ok(Element {
        name,
        attributes,
        ..Element::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gb18030(text: &str) -> Vec<u8> {
        encoding_rs::GB18030.encode(text).0.into_owned()
    }

    #[test]
    fn a_gb18030_document_is_decoded_by_its_declaration() {
        let doc =
            "<?xml version=\"1.0\" encoding=\"GB18030\"?><A><B>中国工商银行天水麦积支行</B></A>";
        let bytes = gb18030(doc);
        assert!(std::str::from_utf8(&bytes).is_err());
        let text = decode_document(&bytes).expect("decodes");
        let tree = parse_tree(&text).expect("parses");
        assert_eq!(tree.text_of("B"), Some("中国工商银行天水麦积支行"));
    }

    #[test]
    fn a_wrong_encoding_declaration_is_an_error_not_mojibake() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><A>中文</A>";
        assert_eq!(
            decode_document(&gb18030(doc)),
            Err(XmlError::BadBytes("UTF-8"))
        );
        let unknown = b"<?xml version=\"1.0\" encoding=\"KLINGON\"?><A/>";
        assert!(matches!(
            decode_document(unknown),
            Err(XmlError::UnknownEncoding(_))
        ));
    }

    #[test]
    fn entities_beyond_the_predefined_ones_and_doctypes_are_refused() {
        assert!(parse_tree("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>").is_err());
        assert_eq!(parse_tree("<a>&x;</a>"), Err(XmlError::Entity("x".into())));
        let t = parse_tree("<a>1 &lt; 2 &amp;&#x4e2d;</a>").expect("predefined entities");
        assert_eq!(t.text, "1 < 2 &中");
    }

    #[test]
    fn deep_or_truncated_documents_are_refused() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse_tree(&deep), Err(XmlError::TooDeep));
        assert!(parse_tree("<a><b>text</b>").is_err());
        assert!(parse_tree("").is_err());
        assert!(parse_tree("<a/><b/>").is_err());
    }
}
