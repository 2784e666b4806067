//! Harnesses for fuzzing: hostile bytes to every reply decoder of every
//! dialect, hostile text to every identifier and value parser.
//!
//! The property tests (`adapters/tests/fuzz_*.rs`, stable Rust) and the
//! cargo-fuzz targets (`fuzz/`, nightly) call the same two entry points,
//! [`Harness::decode_everything`] and [`parse_everything`], so both exercise
//! the same code; `docs/fuzzing.md` says how to run them.
//!
//! Besides "no panic", each entry point checks what must hold of any answer
//! however hostile the input, and panics (which both kinds of fuzzer report)
//! when it does not: an inquiry answer has one outcome per item in the
//! items' order, a control outcome obeys the status rules, every result
//! serialises to JSON, error texts stay short, a parsed identifier reads
//! back as itself and never prints in full, and an amount reads back as the
//! same number of fen.

use std::path::Path;
use std::sync::OnceLock;

use crate::catalog::DialectSet;
use crate::conformance::{Case, load_cases};
use crate::control::{AssetRef, ControlAction, ControlOutcome, ControlRequest, ControlStatus};
use crate::dialect::{Dialect, ItemOutcome, MAX_ERROR_CHARS, ReplyError, WireReply};
use crate::engine::DeclaredDialect;
use crate::ids::{CaseNumber, CreditCode, IdNumber};
use crate::model::{Fen, InquiryOutcome, Officer, Subject, parse_civil_date};
use crate::{MAX_QUOTE_CHARS, json, xml};

/// How many decodings gave an answer and how many an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub ok: usize,
    pub err: usize,
}

impl Tally {
    fn count<T, E>(&mut self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.ok += 1,
            Err(_) => self.err += 1,
        }
    }

    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.err += other.err;
    }
}

/// One dialect, with the request numbers its conformance pack uses (so that
/// mutated samples still name a request the decoder is asked about, and the
/// decoding goes past the request-number check into the mapping).
struct Target {
    name: String,
    dialect: DeclaredDialect,
    items: Vec<crate::dialect::InquiryRequest>,
    controls: Vec<ControlRequest>,
}

/// Every dialect of a configuration, ready to decode anything.
pub struct Harness {
    targets: Vec<Target>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("dialects", &self.dialects())
            .finish()
    }
}

/// The repository's `config/` folder, as this crate was built from it.
pub fn shipped_config() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"))
}

impl Harness {
    /// The dialects of `config/dialects` with the request numbers of
    /// `config/conformance`, of the repository this crate was built from.
    /// Panics when they do not load: a harness has nothing to fuzz then.
    pub fn shipped() -> Self {
        Self::load(shipped_config()).unwrap_or_else(|e| panic!("the shipped dialects: {e}"))
    }

    /// The dialects of `<config>/dialects` with the request numbers of
    /// `<config>/conformance`.
    pub fn load(config: &Path) -> Result<Self, String> {
        let dialects = DialectSet::load(&config.join("dialects")).map_err(|e| e.to_string())?;
        let cases = load_cases(&config.join("conformance"), None).map_err(|e| e.to_string())?;
        Self::new(&dialects, &cases)
    }

    pub fn new(dialects: &DialectSet, cases: &[Case]) -> Result<Self, String> {
        let subject = Subject::Person {
            name: "张三".into(),
            id_number: IdNumber::parse("360426199101010071").map_err(|e| e.to_string())?,
        };
        let case_number = CaseNumber::parse("(2024)甘0503执1234号").map_err(|e| e.to_string())?;
        let officers = vec![Officer {
            name: "李明".into(),
            work_card_no: "G620503001".into(),
            credential_no: "ZX620503001".into(),
        }];
        let mut targets = Vec::new();
        for name in dialects.names() {
            let compiled = dialects
                .get(&name)
                .ok_or_else(|| format!("dialect {name} vanished"))?;
            let mut dialect = DeclaredDialect::new(compiled.clone(), None, None)?;
            if dialect.signs() {
                // The packs' test key: signed samples verify, and mutated
                // ones reach the signature check.
                let key = cases
                    .iter()
                    .filter(|c| c.dialect == name)
                    .find_map(|c| c.spec.signing_key.clone())
                    .ok_or_else(|| format!("the pack of {name} gives no signing_key"))?;
                dialect =
                    dialect.with_signing_key(Some(crate::agency::Secret::new(key.into_bytes())))?;
            }
            let mut numbers: Vec<String> = cases
                .iter()
                .filter(|c| c.dialect == name)
                .flat_map(|c| {
                    c.spec
                        .subjects
                        .iter()
                        .map(|s| s.request_number.clone())
                        .chain(c.spec.request_number.clone())
                })
                .collect();
            numbers.sort();
            numbers.dedup();
            if numbers.is_empty() {
                numbers.push("Q-fuzz".into());
            }
            let items = numbers
                .iter()
                .map(|rn| crate::dialect::InquiryRequest {
                    request_number: rn.clone(),
                    case_number: case_number.clone(),
                    subject: subject.clone(),
                    officers: officers.clone(),
                })
                .collect();
            let action = ControlAction::ALL
                .into_iter()
                .find(|a| dialect.supports(*a))
                .unwrap_or(ControlAction::Freeze);
            let controls = numbers
                .iter()
                .map(|rn| ControlRequest {
                    request_number: rn.clone(),
                    case_number: case_number.clone(),
                    subject: subject.clone(),
                    officers: officers.clone(),
                    action,
                    asset: AssetRef::BankAccount {
                        account_number: "6222020200112233445".into(),
                    },
                    quantity: None,
                    amount_fen: Some(Fen(50_000_000)),
                    start_date: None,
                    end_date: None,
                    prior_request_number: None,
                    documents: Vec::new(),
                })
                .collect();
            targets.push(Target {
                name,
                dialect,
                items,
                controls,
            });
        }
        Ok(Self { targets })
    }

    pub fn dialects(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }

    /// Hands `bytes` to every decoder of every dialect, checking every
    /// answer and error (panics when one breaks a rule).
    pub fn decode_everything(&self, bytes: &[u8]) -> Tally {
        let mut tally = Tally::default();
        for target in &self.targets {
            tally.add(decode(target, bytes));
        }
        tally
    }

    /// Hands `bytes` to every decoder of one dialect; `None` when there is
    /// no dialect of that name.
    pub fn decode_as(&self, dialect: &str, bytes: &[u8]) -> Option<Tally> {
        self.targets
            .iter()
            .find(|t| t.name == dialect)
            .map(|t| decode(t, bytes))
    }
}

fn reply(status: u16, body: &[u8]) -> WireReply<'_> {
    WireReply {
        status,
        content_type: None,
        body,
    }
}

fn decode(target: &Target, bytes: &[u8]) -> Tally {
    let mut tally = Tally::default();
    let dialect = &target.dialect;
    let at = target.name.as_str();

    // Inquiry replies: the whole batch, a lone item (dialects whose replies
    // do not repeat the request number), and an agency's error status.
    let lone = &target.items[..1];
    for (items, status) in [(&target.items[..], 200), (lone, 200), (lone, 503)] {
        let result = dialect.inquiry_reply(items, reply(status, bytes));
        tally.count(&result);
        match &result {
            Ok(outcomes) => {
                assert_eq!(
                    outcomes.len(),
                    items.len(),
                    "{at}: an inquiry answer must have one outcome per item"
                );
                for (outcome, item) in outcomes.iter().zip(items) {
                    assert_eq!(
                        outcome.request_number, item.request_number,
                        "{at}: inquiry outcomes must come in the items' order"
                    );
                    check_item(at, dialect, outcome);
                }
            }
            Err(e) => check_error(at, e),
        }
    }

    for item in &target.items {
        let result = dialect.poll_reply(&item.request_number, reply(200, bytes));
        tally.count(&result);
        match &result {
            Ok(outcome) => check_outcome(at, dialect, outcome),
            Err(e) => check_error(at, e),
        }
    }

    let result = dialect.callback(reply(200, bytes));
    tally.count(&result);
    match &result {
        Ok(outcomes) => {
            for outcome in outcomes {
                assert!(
                    !outcome.request_number.trim().is_empty(),
                    "{at}: a callback outcome names its request"
                );
                check_item(at, dialect, outcome);
            }
        }
        Err(e) => check_error(at, e),
    }

    for request in &target.controls {
        for result in [
            dialect.control_reply(request, reply(200, bytes)),
            dialect.control_poll_reply(request, reply(200, bytes)),
            dialect.control_poll_reply(request, reply(404, bytes)),
        ] {
            tally.count(&result);
            match &result {
                Ok(outcome) => check_control(at, outcome),
                Err(e) => check_error(at, e),
            }
        }
    }
    tally
}

fn check_item(at: &str, dialect: &DeclaredDialect, item: &ItemOutcome) {
    match &item.outcome {
        Ok(outcome) => check_outcome(at, dialect, outcome),
        Err(e) => check_error(at, e),
    }
}

fn check_outcome(at: &str, dialect: &DeclaredDialect, outcome: &InquiryOutcome) {
    match outcome {
        InquiryOutcome::Pending { .. } => assert_ne!(
            dialect.interaction(),
            crate::dialect::Interaction::Synchronous,
            "{at}: a synchronous dialect never gives a pending outcome"
        ),
        InquiryOutcome::Refused { reason } => {
            assert!(!reason.trim().is_empty(), "{at}: a refusal gives a reason");
        }
        InquiryOutcome::Answered { .. } | InquiryOutcome::NoRecord => {}
    }
    if let Err(e) = serde_json::to_value(outcome) {
        panic!("{at}: an outcome must serialise ({e}): {outcome:?}");
    }
}

fn check_control(at: &str, outcome: &ControlOutcome) {
    let s = outcome.status;
    assert!(
        !(s == ControlStatus::Applied && outcome.shortfall_fen.is_some_and(|f| f.0 > 0)),
        "{at}: a measure with a shortfall is partial, not applied: {outcome:?}"
    );
    assert!(
        !(matches!(
            s,
            ControlStatus::Applied | ControlStatus::Partial | ControlStatus::Refused
        ) && outcome.queue_position.is_some_and(|p| p > 0)),
        "{at}: a queued measure is waiting: {outcome:?}"
    );
    assert!(
        !(matches!(
            s,
            ControlStatus::Applied | ControlStatus::Pending | ControlStatus::Unknown
        ) && outcome.reason.is_some()),
        "{at}: only a measure not in force carries a reason: {outcome:?}"
    );
    for ack in &outcome.acknowledged_documents {
        assert!(
            !ack.sha256.bytes().any(|b| b.is_ascii_uppercase()),
            "{at}: acknowledged digests are lower case: {outcome:?}"
        );
    }
    if let Err(e) = serde_json::to_value(outcome) {
        panic!("{at}: a control outcome must serialise ({e}): {outcome:?}");
    }
}

fn check_error(at: &str, e: &ReplyError) {
    let text = match e {
        ReplyError::Malformed(m) => m,
        ReplyError::Agency { detail, .. } => detail,
    };
    // The cut adds one `…`.
    assert!(
        text.chars().count() <= MAX_ERROR_CHARS + 1,
        "{at}: an error text of {} characters: {:?}…",
        text.chars().count(),
        text.chars().take(80).collect::<String>()
    );
}

/// How long a parser's error text may be: a fixed sentence and a quotation
/// of at most `MAX_QUOTE_CHARS` characters, each of which `{:?}` may write
/// as an escape of up to ten (`\u{10ffff}`).
const MAX_PARSE_ERROR_CHARS: usize = 200 + 10 * MAX_QUOTE_CHARS;

fn check_parse_error(what: &str, e: &dyn std::fmt::Display) {
    let text = e.to_string();
    assert!(
        text.chars().count() <= MAX_PARSE_ERROR_CHARS,
        "{what}: an error text of {} characters: {:?}…",
        text.chars().count(),
        text.chars().take(80).collect::<String>()
    );
}

/// Hands `text` to every identifier and value parser and checks what holds
/// of whatever they accept.
pub fn parse_everything(text: &str) -> Tally {
    let mut tally = Tally::default();

    let id = IdNumber::parse(text);
    tally.count(&id);
    if let Ok(id) = &id {
        check_id_number(id);
    }

    let credit = CreditCode::parse(text);
    tally.count(&credit);
    if let Ok(code) = &credit {
        assert_eq!(code.as_str().len(), 18, "a credit code has 18 characters");
        assert_eq!(
            CreditCode::parse(code.as_str()).as_ref(),
            Ok(code),
            "a credit code reads back as itself"
        );
    }

    let case = CaseNumber::parse(text);
    tally.count(&case);
    match &case {
        Ok(case) => {
            assert_eq!(
                CaseNumber::parse(case.as_str()).as_ref(),
                Ok(case),
                "a case number reads back as itself"
            );
            assert!(case.serial() > 0 && (1990..=2100).contains(&case.year()));
        }
        Err(e) => check_parse_error("CaseNumber", e),
    }

    let fen = Fen::parse_yuan(text);
    tally.count(&fen);
    if let Ok(fen) = fen {
        assert_eq!(
            Fen::parse_yuan(&fen.to_yuan()),
            Ok(fen),
            "an amount reads back as the same fen"
        );
    }

    let date = parse_civil_date(text);
    tally.count(&date);
    if let Ok(Some(date)) = date {
        let printed = date.format("%Y-%m-%d").to_string();
        if printed.len() == 10 {
            assert_eq!(parse_civil_date(&printed), Ok(Some(date)));
        }
    }

    let tree = xml::parse_tree(text);
    tally.count(&tree);
    if let Err(e) = &tree {
        check_parse_error("parse_tree", e);
    }
    tally.add(parse_bytes(text.as_bytes()));
    tally
}

/// Hands `bytes` to the parsers that read bytes: XML documents by their
/// declared encoding, JSON replies.
fn parse_bytes(bytes: &[u8]) -> Tally {
    let mut tally = Tally::default();
    let document = xml::decode_document(bytes);
    tally.count(&document);
    match &document {
        Ok(text) => {
            let tree = xml::parse_tree(text);
            tally.count(&tree);
            if let Err(e) = &tree {
                check_parse_error("parse_tree", e);
            }
        }
        Err(e) => check_parse_error("decode_document", e),
    }
    let value = json::parse_reply(bytes);
    tally.count(&value);
    if let Err(e) = &value {
        check_parse_error("json::parse_reply", e);
    }
    tally
}

/// Hands arbitrary bytes to every parser: the byte parsers always, the text
/// parsers when the bytes are UTF-8 (the cargo-fuzz target's entry point).
pub fn parse_everything_bytes(bytes: &[u8]) -> Tally {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_everything(text),
        Err(_) => parse_bytes(bytes),
    }
}

fn check_id_number(id: &IdNumber) {
    let full = id.as_str();
    assert!(full.len() == 18 || full.len() == 15, "{id:?}");
    assert_eq!(
        IdNumber::parse(full).as_ref(),
        Ok(id),
        "an identity number reads back as itself"
    );
    assert!(id.birth_date().is_some(), "{id:?} has a birth date");
    let masked = id.masked();
    assert_eq!(masked.len(), full.len());
    assert_eq!(&masked[..4], &full[..4]);
    assert_eq!(&masked[full.len() - 2..], &full[full.len() - 2..]);
    assert!(
        masked[4..full.len() - 2].bytes().all(|b| b == b'*'),
        "the middle of {masked} is masked"
    );
    let shown = format!("{id:?}");
    assert!(
        !shown.contains(&full[4..full.len() - 2]),
        "Debug shows the middle digits: {shown}"
    );
}

/// The dialects shipped in this repository, shared by every test of one
/// process (compiling them takes a few milliseconds).
pub fn shipped() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(Harness::shipped)
}
