//! The classic attacks on XML and JSON parsers, each refused with a clean
//! error, quickly, and without allocating much more than the input.
//!
//! One test runs them all in turn, so that the memory it measures (the
//! process's peak resident size, reset before each case; Linux only) is its
//! own: tests of one binary run in parallel threads.

use std::time::{Duration, Instant};

use adapters::catalog::DialectSet;
use adapters::dialect::{Dialect, InquiryRequest, ReplyError, WireReply};
use adapters::engine::DeclaredDialect;
use adapters::fuzzing;
use adapters::ids::{CaseNumber, IdNumber};
use adapters::model::{InquiryOutcome, Subject};
use adapters::xml::{
    MAX_ATTRIBUTE_BYTES, MAX_ATTRIBUTES, MAX_DEPTH, MAX_ELEMENTS, XmlError, decode_document,
    parse_tree,
};

/// Kilobytes of a line of /proc/self/status.
fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `attack`, checking it takes under five seconds (debug build,
/// shared machine) and raises the peak resident size by at most
/// `budget_mb` megabytes; returns what it returned.
fn within<T>(name: &str, budget_mb: u64, attack: impl FnOnce() -> T) -> T {
    // Writing 5 to clear_refs resets the peak resident size (Linux).
    let measured = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_kb("VmRSS:");
    let started = Instant::now();
    let result = attack();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{name}: took {took:?}");
    if let (true, Some(before), Some(peak)) = (measured, before, status_kb("VmHWM:")) {
        let grew_mb = peak.saturating_sub(before) / 1024;
        assert!(
            grew_mb <= budget_mb,
            "{name}: the peak resident size grew by {grew_mb} MB (budget {budget_mb} MB)"
        );
    }
    result
}

fn xml(name: &str, budget_mb: u64, doc: &[u8]) -> Result<(), XmlError> {
    within(name, budget_mb, || {
        let text = decode_document(doc)?;
        parse_tree(&text).map(|_| ())
    })
}

/// A bank-json inquiry reply decoded for one item: its outcome.
fn json_reply(body: &[u8]) -> Result<InquiryOutcome, ReplyError> {
    let set = DialectSet::load(&fuzzing::shipped_config().join("dialects")).expect("dialects");
    let compiled = set.get("bank-json").expect("bank-json").clone();
    let dialect = DeclaredDialect::new(compiled, None, None).expect("declared");
    let request = InquiryRequest {
        request_number: "Q1-bank-b".into(),
        case_number: CaseNumber::parse("(2024)甘0503执1234号").expect("case"),
        subject: Subject::Person {
            name: "张三".into(),
            id_number: IdNumber::parse("360426199101010071").expect("id"),
        },
        officers: Vec::new(),
    };
    let reply = WireReply {
        status: 200,
        content_type: None,
        body,
    };
    let mut outcomes = dialect.inquiry_reply(&[request], reply)?;
    outcomes.remove(0).outcome
}

#[test]
fn every_classic_attack_is_a_clean_fast_error() {
    // Billion laughs: ten entities of ten references each. No DTD is read.
    let mut laughs =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    for i in 1..=9 {
        let previous = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        let refs = format!("&{previous};").repeat(10);
        laughs.push_str(&format!("<!ENTITY lol{i} \"{refs}\">\n"));
    }
    laughs.push_str("]>\n<lolz>&lol9;</lolz>");
    assert_eq!(
        xml("billion laughs", 8, laughs.as_bytes()),
        Err(XmlError::DocType)
    );

    // External entities, with and without a declaration.
    let xxe = b"<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><foo>&xxe;</foo>";
    assert_eq!(xml("external entity", 8, xxe), Err(XmlError::DocType));
    assert_eq!(
        xml("undeclared entity", 8, b"<foo>&xxe;</foo>"),
        Err(XmlError::Entity("xxe".into()))
    );
    assert_eq!(
        xml("entity in an attribute", 8, b"<foo a=\"&xxe;\"/>")
            .map_err(|e| matches!(e, XmlError::Malformed(_))),
        Err(true)
    );
    assert_eq!(
        xml(
            "external DTD",
            8,
            b"<!DOCTYPE a SYSTEM \"http://example.invalid/a.dtd\"><a/>"
        ),
        Err(XmlError::DocType)
    );
    assert_eq!(
        xml(
            "parameter entity",
            8,
            b"<!DOCTYPE a [<!ENTITY % p SYSTEM \"x\"> %p;]><a/>"
        ),
        Err(XmlError::DocType)
    );

    // Deep nesting, closed or not, is refused at MAX_DEPTH.
    let deep = "<a>".repeat(10_000) + &"</a>".repeat(10_000);
    assert_eq!(
        xml("10,000 deep", 8, deep.as_bytes()),
        Err(XmlError::TooDeep)
    );
    let deeper = "<a>".repeat(1_000_000);
    assert_eq!(
        xml("a million deep, unclosed", 16, deeper.as_bytes()),
        Err(XmlError::TooDeep)
    );
    let just = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
    assert!(xml("just deep enough", 8, just.as_bytes()).is_ok());

    // A huge attribute value, closed or not; a huge number of attributes
    // (which used to take minutes: the parser compares each name with every
    // earlier one of its element).
    let huge = format!("<a v=\"{}\"/>", "x".repeat(8 * 1024 * 1024));
    assert_eq!(
        xml("8 MiB attribute", 24, huge.as_bytes()),
        Err(XmlError::AttributeTooLong)
    );
    let unclosed = format!("<a v=\"{}", "x".repeat(8 * 1024 * 1024));
    assert!(matches!(
        xml("8 MiB unclosed attribute", 24, unclosed.as_bytes()),
        Err(XmlError::Malformed(_))
    ));
    let limit = format!("<a v=\"{}\"/>", "x".repeat(MAX_ATTRIBUTE_BYTES));
    assert!(xml("an attribute at the limit", 8, limit.as_bytes()).is_ok());
    let many: String = (0..100_000).map(|i| format!(" a{i}=\"\"")).collect();
    let many = format!("<a{many}/>");
    assert_eq!(
        xml("100,000 attributes", 16, many.as_bytes()),
        Err(XmlError::TooManyAttributes)
    );
    let enough: String = (0..MAX_ATTRIBUTES).map(|i| format!(" a{i}=\"\"")).collect();
    assert!(
        xml(
            "attributes at the limit",
            8,
            format!("<a{enough}/>").as_bytes()
        )
        .is_ok()
    );
    let twice = b"<a x=\"1\" x=\"2\"/>";
    assert!(matches!(
        xml("a duplicated attribute", 8, twice),
        Err(XmlError::Malformed(_))
    ));

    // Bytes invalid in the declared encoding are an error, not mojibake.
    let gb = b"<?xml version=\"1.0\" encoding=\"GB18030\"?><a>\xFF\xFF</a>";
    assert_eq!(
        xml("bad GB18030", 8, gb),
        Err(XmlError::BadBytes("gb18030"))
    );
    let utf8 = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>\xD6\xD0\xCE\xC4</a>";
    assert_eq!(
        xml("GB18030 bytes declared UTF-8", 8, utf8),
        Err(XmlError::BadBytes("UTF-8"))
    );
    let odd_utf16 = b"\xFF\xFE<\x00a\x00/\x00>\x00\x00";
    assert_eq!(
        xml("odd UTF-16", 8, odd_utf16),
        Err(XmlError::BadBytes("UTF-16LE"))
    );
    let replacement = b"<?xml version=\"1.0\" encoding=\"ISO-2022-KR\"?><a/>";
    assert!(xml("the replacement encoding", 8, replacement).is_err());
    let unknown = format!(
        "<?xml version=\"1.0\" encoding=\"{}\"?><a/>",
        "K".repeat(100_000)
    );
    match xml("a 100,000-character encoding name", 8, unknown.as_bytes()) {
        Err(XmlError::UnknownEncoding(label)) => assert!(label.chars().count() <= 121),
        other => panic!("{other:?}"),
    }

    // Mismatched, unclosed and stray tags.
    for (name, doc) in [
        ("mismatched", "<a><b></a></b>"),
        ("unclosed", "<a><b>text</b>"),
        ("stray end", "</a>"),
        ("two roots", "<a/><b/>"),
        ("text after the root", "<a/>text"),
        ("unclosed comment", "<a><!-- "),
        ("unclosed CDATA", "<a><![CDATA[x"),
        ("empty", ""),
        ("blank", "  \n"),
        ("not XML", "{\"a\": 1}"),
    ] {
        assert!(xml(name, 8, doc.as_bytes()).is_err(), "{name}");
    }
    let long_names = format!("<{0}></{0}x>", "n".repeat(1_000_000));
    match xml(
        "mismatched million-character names",
        16,
        long_names.as_bytes(),
    ) {
        Err(XmlError::Malformed(m)) => assert!(m.chars().count() <= 121, "{} characters", m.len()),
        other => panic!("{other:?}"),
    }

    // More elements than MAX_ELEMENTS.
    let wide = format!("<r>{}</r>", "<a/>".repeat(MAX_ELEMENTS + 1));
    assert_eq!(
        xml("too many elements", 256, wide.as_bytes()),
        Err(XmlError::TooLarge)
    );

    // JSON: deep nesting is refused before parsing, however deep.
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    match within("100,000-deep JSON", 8, || json_reply(deep_json.as_bytes())) {
        Err(ReplyError::Malformed(m)) => assert!(m.contains("nesting deeper than 64"), "{m}"),
        other => panic!("{other:?}"),
    }
    let open = vec![b'{'; 8 * 1024 * 1024];
    assert!(within("8 MiB of {", 8, || json_reply(&open)).is_err());
    let nested = format!("{}{}", "{\"a\":".repeat(65), "}".repeat(65));
    match within("65 nested objects", 8, || json_reply(nested.as_bytes())) {
        Err(ReplyError::Malformed(m)) => assert!(m.contains("nesting deeper than 64"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Megabytes where a code or a reason belongs make a short error.
    for body in [
        format!(
            r#"{{"request_number": "Q1-bank-b", "outcome": "{}"}}"#,
            "9".repeat(8 << 20)
        ),
        format!(
            r#"{{"request_number": "Q1-bank-b", "outcome": "FOUND", "accounts": [{{"account_number": "1", "ledger_balance": "1.00", "available_balance": "{}"}}]}}"#,
            "1".repeat(8 << 20)
        ),
    ] {
        match within("megabytes in a field", 64, || json_reply(body.as_bytes())) {
            Err(e) => assert!(
                e.to_string().chars().count() <= 500,
                "an error text of {} characters",
                e.to_string().len()
            ),
            Ok(outcome) => panic!("an answer: {outcome:?}"),
        }
    }
}
