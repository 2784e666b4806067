//! Reading an incoming XML request: decode the bytes by the encoding their
//! declaration names (UTF-8 when none), then parse them into a small element
//! tree of local names, each with the namespace it is in and its attributes.
//! Anything unreadable is an error with a reason, never a panic: the bank
//! answers it with its dialect's error body.

use quick_xml::NsReader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// The local name (without a prefix).
    pub name: String,
    /// The namespace the element is in, `None` when it is in none.
    pub namespace: Option<String>,
    /// Attributes as written (qualified names), namespace declarations left out.
    attributes: Vec<(String, String)>,
    text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The value of an attribute, when present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// This element and every element inside it, depth first.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        let mut i = 0;
        while let Some(e) = out.get(i).copied() {
            out.extend(e.children.iter());
            i += 1;
        }
        out
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element's own text, blanks around it removed.
    pub fn text(&self) -> &str {
        self.text.trim()
    }

    /// The text of the first child called `name`, when present and not blank.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(Element::text)
            .filter(|t| !t.is_empty())
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The encoding label in `<?xml ... encoding="..."?>`, if the document
/// starts with a declaration naming one. The declaration is ASCII in every
/// encoding we accept, so it can be read before knowing the encoding.
pub(crate) fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = bytes.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = String::from_utf8_lossy(&head[..end]);
    let after = &decl[decl.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &after[1..];
    Some(value[..value.find(quote)?].to_owned())
}

/// The document as text, decoded strictly: a byte sequence that is not valid
/// in the declared encoding makes the request unreadable.
pub(crate) fn decode_document(bytes: &[u8]) -> Result<String, String> {
    if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
        return String::from_utf8(rest.to_vec()).map_err(|_| "not valid UTF-8".to_owned());
    }
    let encoding = match declared_encoding(bytes) {
        None => encoding_rs::UTF_8,
        Some(label) => encoding_rs::Encoding::for_label(label.as_bytes())
            .filter(|e| e.is_ascii_compatible())
            .ok_or_else(|| format!("unsupported encoding {label:?}"))?,
    };
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|text| text.into_owned())
        .ok_or_else(|| format!("the body is not valid {}", encoding.name()))
}

/// Parses a whole document into its root element.
pub(crate) fn parse(text: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (namespace, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (namespace_of(&ns), event),
            Err(e) => {
                return Err(format!(
                    "XML error at byte {}: {e}",
                    reader.error_position()
                ));
            }
        };
        match event {
            Event::Start(start) => {
                if stack.is_empty() && root.is_some() {
                    return Err("more than one root element".into());
                }
                stack.push(element(&start, namespace?)?);
            }
            Event::Empty(empty) => {
                let element = element(&empty, namespace?)?;
                close(element, &mut stack, &mut root)?;
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("an end tag without a start tag")?;
                close(element, &mut stack, &mut root)?;
            }
            Event::Text(t) => {
                let content = t.decode().map_err(|e| e.to_string())?;
                push_text(&mut stack, &content)?;
            }
            Event::CData(c) => {
                let content = c.decode().map_err(|e| e.to_string())?;
                push_text(&mut stack, &content)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("the document ends inside <{}>", open.name));
    }
    root.ok_or_else(|| "no root element".to_owned())
}

/// The namespace an element is in; a prefix nobody declared is an error.
fn namespace_of(resolved: &ResolveResult<'_>) -> Result<Option<String>, String> {
    match resolved {
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unknown(prefix) => Err(format!(
            "the prefix {:?} is not declared",
            String::from_utf8_lossy(prefix)
        )),
    }
}

fn element(start: &BytesStart<'_>, namespace: Option<String>) -> Result<Element, String> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| e.to_string())?;
        if attribute.key.as_namespace_binding().is_some() {
            continue;
        }
        let value = attribute.unescape_value().map_err(|e| e.to_string())?;
        attributes.push((
            String::from_utf8_lossy(attribute.key.as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        namespace,
        attributes,
        ..Element::default()
    })
}

fn close(
    element: Element,
    stack: &mut [Element],
    root: &mut Option<Element>,
) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}

fn push_text(stack: &mut [Element], content: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(open) => open.text.push_str(content),
        None if content.trim().is_empty() => {}
        None => return Err("text outside the root element".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_encodings_are_honoured() {
        let (bytes, _, _) = encoding_rs::GB18030
            .encode("<?xml version=\"1.0\" encoding=\"GB18030\"?><A><B>张三 &amp; 李四</B></A>");
        let text = decode_document(&bytes).expect("decodes");
        let root = parse(&text).expect("parses");
        assert_eq!(root.text_of("B"), Some("张三 & 李四"));
        assert_eq!(
            declared_encoding(b"<?xml version='1.0' encoding = 'gbk' ?>"),
            Some("gbk".into())
        );
    }

    #[test]
    fn namespaces_and_attributes_are_kept() {
        let root =
            parse(r#"<p:A xmlns:p="urn:x" xmlns="urn:y"><B Tp="N&amp;1"/><p:C>t</p:C></p:A>"#)
                .expect("parses");
        assert_eq!(root.name, "A");
        assert_eq!(root.namespace.as_deref(), Some("urn:x"));
        let b = root.child("B").expect("B");
        assert_eq!(b.namespace.as_deref(), Some("urn:y"));
        assert_eq!(b.attr("Tp"), Some("N&1"));
        assert_eq!(b.attr("xmlns"), None);
        assert_eq!(root.text_of("C"), Some("t"));
        assert_eq!(root.descendants().len(), 3);
        assert!(parse("<q:A/>").is_err(), "an undeclared prefix");
        assert_eq!(parse("<A/>").expect("parses").namespace, None);
    }

    #[test]
    fn broken_documents_are_errors() {
        assert!(parse("<A><B></A>").is_err());
        assert!(parse("<A><B>x</B>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<A/><B/>").is_err());
        assert!(decode_document(b"<?xml version=\"1.0\"?><A>\xFF</A>").is_err());
        assert!(decode_document(b"<?xml version=\"1.0\" encoding=\"nope\"?><A/>").is_err());
    }
}
