//! Paths into a reply, the same way for XML and JSON.
//!
//! A path is segments separated by `/` (a leading `/` is allowed, so JSON
//! pointers read naturally). XML: a segment names child elements (by local
//! name, so namespace prefixes don't matter), optionally with a predicate
//! `Bal[@Tp=CLBD]`; `@name` reads an attribute. JSON: a segment is an object
//! key (`~1` and `~0` escaped as in JSON pointers); arrays on the way are
//! expanded, so a path can reach every element. The empty path is the node
//! itself.

use std::borrow::Cow;

use serde_json::Value;

use crate::xml::Element;

/// A place in a reply.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    Xml(&'a Element),
    Attr(&'a str),
    Json(&'a Value),
}

/// One parsed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Child {
        name: String,
        predicate: Option<(String, String)>,
    },
    Attribute(String),
}

/// A compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    segments: Vec<Segment>,
}

impl Path {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let trimmed = text.trim().trim_start_matches('/');
        if trimmed.is_empty() {
            return Ok(Self { segments });
        }
        let parts: Vec<&str> = trimmed.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                return Err(format!("path {text:?} has an empty segment"));
            }
            if let Some(attr) = part.strip_prefix('@') {
                if i + 1 != parts.len() {
                    return Err(format!(
                        "path {text:?}: an attribute must be the last segment"
                    ));
                }
                segments.push(Segment::Attribute(attr.to_owned()));
                continue;
            }
            let (name, predicate) = match part.split_once('[') {
                None => (part.to_string(), None),
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix(']')
                        .and_then(|p| p.strip_prefix('@'))
                        .and_then(|p| p.split_once('='))
                        .ok_or_else(|| {
                            format!("path {text:?}: a predicate is written [@attribute=value]")
                        })?;
                    let value = inner.1.trim_matches(|c| c == '\'' || c == '"');
                    (
                        name.to_string(),
                        Some((inner.0.to_owned(), value.to_owned())),
                    )
                }
            };
            let name = name.replace("~1", "/").replace("~0", "~");
            segments.push(Segment::Child { name, predicate });
        }
        Ok(Self { segments })
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Every node the path reaches from `from`, in document order.
    pub fn select<'a>(&self, from: Node<'a>) -> Vec<Node<'a>> {
        let mut out = Vec::new();
        visit::<()>(&self.segments, from, &mut |node| {
            out.push(node);
            None
        });
        out
    }

    /// The first node's text, trimmed; `None` when absent or empty.
    pub fn text(&self, from: Node<'_>) -> Option<String> {
        self.text_ref(from).map(Cow::into_owned)
    }

    /// The same text, borrowed from the reply where it is written there:
    /// the walk stops at the first node with text, and allocates nothing.
    pub fn text_ref<'a>(&self, from: Node<'a>) -> Option<Cow<'a, str>> {
        visit(&self.segments, from, &mut text_of)
    }
}

/// Walks `segments` from `node` depth first, which is document order,
/// handing each node reached to `f` until it returns something.
fn visit<'a, T>(
    segments: &[Segment],
    node: Node<'a>,
    f: &mut dyn FnMut(Node<'a>) -> Option<T>,
) -> Option<T> {
    let Some((segment, rest)) = segments.split_first() else {
        // A JSON array at the end stands for its elements.
        return match node {
            Node::Json(Value::Array(items)) => items.iter().find_map(|i| f(Node::Json(i))),
            other => f(other),
        };
    };
    match (node, segment) {
        (Node::Xml(el), Segment::Child { name, predicate }) => {
            el.children.iter().find_map(|child| {
                if !names(&child.name, name) {
                    return None;
                }
                if let Some((attr, value)) = predicate
                    && child.attribute(attr) != Some(value.as_str())
                {
                    return None;
                }
                visit(rest, Node::Xml(child), f)
            })
        }
        (Node::Xml(el), Segment::Attribute(attr)) => el
            .attributes
            .iter()
            .find(|(k, _)| names(k, attr))
            .and_then(|(_, v)| visit(rest, Node::Attr(v.as_str()), f)),
        // Arrays on the way are expanded: the segment applies to each item.
        (Node::Json(Value::Array(items)), _) => items
            .iter()
            .find_map(|item| visit(segments, Node::Json(item), f)),
        (
            Node::Json(Value::Object(map)),
            Segment::Child {
                name,
                predicate: None,
            },
        ) => map.get(name).and_then(|v| visit(rest, Node::Json(v), f)),
        _ => None,
    }
}

/// Whether an XML name (`d:Acct`) is the one a path names (`Acct`, or
/// `d:Acct` itself): its local name, after the last colon, or the whole.
fn names(written: &str, wanted: &str) -> bool {
    written == wanted
        || written
            .strip_suffix(wanted)
            .and_then(|prefix| prefix.strip_suffix(':'))
            .is_some_and(|_| !wanted.contains(':'))
}

/// A node's text: XML element text, attribute value, JSON string, number or
/// boolean, trimmed. Empty means absent.
pub fn text_of<'a>(node: Node<'a>) -> Option<Cow<'a, str>> {
    let text: Cow<'a, str> = match node {
        Node::Xml(el) => el.text.trim().into(),
        Node::Attr(v) => v.trim().into(),
        Node::Json(Value::String(s)) => s.trim().into(),
        Node::Json(Value::Number(n)) => n.to_string().into(),
        Node::Json(Value::Bool(b)) => (if *b { "true" } else { "false" }).into(),
        Node::Json(_) => return None,
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_tree;

    #[test]
    fn xml_paths_reach_children_attributes_and_predicates() {
        let doc = parse_tree(
            r#"<d:Doc xmlns:d="urn:x"><d:Acct><Bal Tp="CLBD"><Amt Ccy="CNY">100</Amt></Bal><Bal Tp="ITAV"><Amt>90</Amt></Bal></d:Acct><d:Acct/></d:Doc>"#,
        )
        .expect("xml");
        let root = Node::Xml(&doc);
        assert_eq!(Path::parse("Acct").expect("p").select(root).len(), 2);
        let avail = Path::parse("Acct/Bal[@Tp=ITAV]/Amt").expect("p");
        assert_eq!(avail.text(root).as_deref(), Some("90"));
        let ccy = Path::parse("Acct/Bal[@Tp='CLBD']/Amt/@Ccy").expect("p");
        assert_eq!(ccy.text(root).as_deref(), Some("CNY"));
        // A name matches whole or after its prefix's colon, not as any suffix.
        let near = parse_tree(r#"<Doc><dAcct/><a:b:Acct/><Acct/></Doc>"#).expect("xml");
        assert_eq!(
            Path::parse("Acct")
                .expect("p")
                .select(Node::Xml(&near))
                .len(),
            2
        );
        assert!(Path::parse("Acct/@x/y").is_err());
        assert!(Path::parse("Acct[Tp=1]").is_err());
    }

    #[test]
    fn json_paths_are_pointers_that_expand_arrays() {
        let v: Value = serde_json::from_str(
            r#"{"accounts":[{"holds":[{"amount":"1.00"},{"amount":"2.00"}]},{"holds":[]}],"n":0,"a/b":"x"}"#,
        )
        .expect("json");
        let root = Node::Json(&v);
        assert_eq!(Path::parse("/accounts").expect("p").select(root).len(), 2);
        assert_eq!(
            Path::parse("/accounts/holds/amount")
                .expect("p")
                .select(root)
                .len(),
            2
        );
        assert_eq!(
            Path::parse("/n").expect("p").text(root).as_deref(),
            Some("0")
        );
        assert_eq!(
            Path::parse("/a~1b").expect("p").text(root).as_deref(),
            Some("x")
        );
        assert_eq!(Path::parse("").expect("p").select(root).len(), 1);
        assert_eq!(Path::parse("/missing").expect("p").text(root), None);
    }
}
