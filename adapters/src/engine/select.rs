//! Paths into a reply, the same way for XML and JSON.
//!
//! A path is segments separated by `/` (a leading `/` is allowed, so JSON
//! pointers read naturally). XML: a segment names child elements (by local
//! name, so namespace prefixes don't matter), optionally with a predicate
//! `Bal[@Tp=CLBD]`; `@name` reads an attribute. JSON: a segment is an object
//! key (`~1` and `~0` escaped as in JSON pointers); arrays on the way are
//! expanded, so a path can reach every element. The empty path is the node
//! itself.

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
        let mut current = vec![from];
        for segment in &self.segments {
            let mut next = Vec::new();
            for node in current {
                step(node, segment, &mut next);
            }
            current = next;
        }
        // A JSON array at the end stands for its elements.
        current
            .into_iter()
            .flat_map(|n| match n {
                Node::Json(Value::Array(items)) => items.iter().map(Node::Json).collect(),
                other => vec![other],
            })
            .collect()
    }

    /// The first node's text, trimmed; `None` when absent or empty.
    pub fn text(&self, from: Node<'_>) -> Option<String> {
        self.select(from).into_iter().find_map(text_of)
    }
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn step<'a>(node: Node<'a>, segment: &Segment, out: &mut Vec<Node<'a>>) {
    match (node, segment) {
        (Node::Xml(el), Segment::Child { name, predicate }) => {
            for child in &el.children {
                if local(&child.name) != name && child.name != *name {
                    continue;
                }
                if let Some((attr, value)) = predicate
                    && child.attribute(attr) != Some(value.as_str())
                {
                    continue;
                }
                out.push(Node::Xml(child));
            }
        }
        (Node::Xml(el), Segment::Attribute(attr)) => {
            if let Some(v) = el
                .attributes
                .iter()
                .find(|(k, _)| k == attr || local(k) == attr)
                .map(|(_, v)| v.as_str())
            {
                out.push(Node::Attr(v));
            }
        }
        (Node::Json(Value::Array(items)), _) => {
            for item in items {
                step(Node::Json(item), segment, out);
            }
        }
        (
            Node::Json(Value::Object(map)),
            Segment::Child {
                name,
                predicate: None,
            },
        ) => {
            if let Some(v) = map.get(name) {
                out.push(Node::Json(v));
            }
        }
        _ => {}
    }
}

/// A node's text: XML element text, attribute value, JSON string, number or
/// boolean. Empty means absent.
pub fn text_of(node: Node<'_>) -> Option<String> {
    let text = match node {
        Node::Xml(el) => el.text.trim().to_owned(),
        Node::Attr(v) => v.trim().to_owned(),
        Node::Json(Value::String(s)) => s.trim().to_owned(),
        Node::Json(Value::Number(n)) => n.to_string(),
        Node::Json(Value::Bool(b)) => b.to_string(),
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
