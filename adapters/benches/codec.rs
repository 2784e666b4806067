//! CPU per message of the dialect engine: rendering and encoding requests,
//! decoding replies, with the dialects of `config/dialects` and replies of
//! `config/conformance`. No I/O in the timed loops.
//!
//! `cargo bench -p adapters --bench codec` prints one line per case: the
//! median and the fastest of its rounds, in nanoseconds per message. The
//! machine may be shared: compare builds by running them in turns in the
//! same session (`scripts/codec-bench`), not with figures of another day.
//! An argument filters the cases by name.

use std::error::Error;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::catalog::DialectSet;
use adapters::control::{ControlAction, ControlRequest, DocumentRef};
use adapters::dialect::{Dialect, Envelope, InquiryRequest, WireReply};
use adapters::engine::DeclaredDialect;
use adapters::ids::{CaseNumber, IdNumber};
use adapters::model::{Court, Fen, Officer, Subject};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Rounds per case; each round runs long enough to be timed well.
const ROUNDS: usize = 15;
const ROUND_TIME: Duration = Duration::from_millis(40);

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn dialect(set: &DialectSet, name: &str, encoding: Option<&str>) -> Result<DeclaredDialect> {
    let compiled = set.get(name).ok_or(format!("no dialect {name}"))?;
    Ok(DeclaredDialect::new(compiled.clone(), encoding, None)?)
}

fn officers() -> Vec<Officer> {
    vec![
        Officer {
            name: "李明".into(),
            work_card_no: "G620503001".into(),
            credential_no: "ZX620503001".into(),
        },
        Officer {
            name: "赵强".into(),
            work_card_no: "G620503002".into(),
            credential_no: "ZX620503002".into(),
        },
    ]
}

/// `n` subjects, numbered `Q1-bank-a`...; names with `&` and `<` to make
/// the escaping work.
fn subjects(n: usize) -> Result<Vec<InquiryRequest>> {
    (1..=n)
        .map(|i| {
            Ok(InquiryRequest {
                request_number: format!("Q{i}-bank-a"),
                case_number: CaseNumber::parse("(2024)甘0503执1234号")?,
                subject: Subject::Person {
                    name: if i % 5 == 0 {
                        "张三 & <李四>".into()
                    } else {
                        "张三".into()
                    },
                    id_number: IdNumber::parse("360426199101010071")?,
                },
                officers: officers(),
            })
        })
        .collect()
}

fn envelope() -> Envelope {
    Envelope {
        court: Court {
            code: "甘0503".into(),
            name: "天水市麦积区人民法院".into(),
        },
        batch_number: "P20261127000000001".into(),
        callback_url: Some("https://gateway.example/v1/callbacks/bench".into()),
    }
}

fn freeze() -> Result<ControlRequest> {
    Ok(ControlRequest {
        request_number: "K1-bank-a".into(),
        case_number: CaseNumber::parse("(2024)甘0503执1234号")?,
        subject: Subject::Person {
            name: "李四".into(),
            id_number: IdNumber::parse("62050319850615003X")?,
        },
        officers: officers(),
        action: ControlAction::Freeze,
        asset: adapters::control::AssetRef::BankAccount {
            account_number: "6217000010005550003".into(),
        },
        quantity: None,
        amount_fen: Some(Fen(5_000_000)),
        start_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 27),
        end_date: chrono::NaiveDate::from_ymd_opt(2027, 11, 26),
        prior_request_number: None,
        documents: vec![
            DocumentRef {
                kind: "ruling".into(),
                number: "(2024)甘0503执1234号之一".into(),
                sha256: "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9".into(),
            },
            DocumentRef {
                kind: "assist_notice".into(),
                number: "协冻-1".into(),
                sha256: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809".into(),
            },
        ],
    })
}

fn answer(body: &[u8]) -> WireReply<'_> {
    WireReply {
        status: 200,
        content_type: None,
        body,
    }
}

/// Times `op` in rounds; returns the median and the fastest round, in
/// nanoseconds per call.
fn measure(mut op: impl FnMut() -> usize) -> (f64, f64) {
    // Warm up, and find how many calls fill a round.
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < ROUND_TIME {
        black_box(op());
        calls += 1;
    }
    let mut per_call: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                black_box(op());
            }
            started.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    (per_call[ROUNDS / 2], per_call[0])
}

fn main() -> Result<()> {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let set = DialectSet::load(&config().join("dialects")).map_err(|e| e.to_string())?;
    let gb = dialect(&set, "court-bank-xml", Some("GB18030"))?;
    let utf8 = dialect(&set, "court-bank-xml", None)?;
    let json = dialect(&set, "bank-json", None)?;
    let envelope = envelope();
    let batch = subjects(20)?;
    let two = subjects(2)?;
    let one = subjects(1)?;
    let freeze = freeze()?;
    let reply =
        |dir: &str, file: &str| std::fs::read(config().join("conformance").join(dir).join(file));
    let gb_reply = reply("court-bank-xml", "batch-gb18030.reply.xml")?;
    let gb_freeze_reply = reply("court-bank-xml", "freeze-partial.reply.xml")?;
    let json_reply = reply("bank-json", "found.reply.json")?;
    let json_freeze_reply = reply("bank-json", "freeze-partial.reply.json")?;
    // The conformance replies name these requests.
    let mut gb_items = two.clone();
    gb_items[1].request_number = "Q2-bank-a".into();
    let mut json_items = one.clone();
    json_items[0].request_number = "Q1-bank-b".into();
    let mut json_freeze = freeze.clone();
    json_freeze.request_number = "K1-bank-b".into();
    let gb = Arc::new(gb);
    type Case<'a> = (&'static str, Box<dyn FnMut() -> usize + 'a>);
    let len = |w: std::result::Result<adapters::dialect::WireRequest, _>| {
        w.map_or(0, |w: adapters::dialect::WireRequest| w.body.len())
    };
    let cases: Vec<Case<'_>> = vec![
        (
            "encode xml gb18030 batch of 20",
            Box::new(|| len(gb.inquiry_request(&envelope, &batch))),
        ),
        (
            "encode xml gb18030 one subject",
            Box::new(|| len(gb.inquiry_request(&envelope, &one))),
        ),
        (
            "encode xml utf-8 batch of 20",
            Box::new(|| len(utf8.inquiry_request(&envelope, &batch))),
        ),
        (
            "encode xml utf-8 one subject",
            Box::new(|| len(utf8.inquiry_request(&envelope, &one))),
        ),
        (
            "encode json one subject",
            Box::new(|| len(json.inquiry_request(&envelope, &one))),
        ),
        (
            "encode xml gb18030 freeze",
            Box::new(|| len(gb.control_request(&envelope, &freeze))),
        ),
        (
            "encode json freeze",
            Box::new(|| len(json.control_request(&envelope, &freeze))),
        ),
        (
            "decode xml gb18030 batch of 2",
            Box::new(|| {
                gb.inquiry_reply(&gb_items, answer(&gb_reply))
                    .map_or(0, |o| o.len())
            }),
        ),
        (
            "decode xml gb18030 freeze",
            Box::new(|| usize::from(gb.control_reply(&freeze, answer(&gb_freeze_reply)).is_ok())),
        ),
        (
            "decode json one subject",
            Box::new(|| {
                json.inquiry_reply(&json_items, answer(&json_reply))
                    .map_or(0, |o| o.len())
            }),
        ),
        (
            "decode json freeze",
            Box::new(|| {
                usize::from(
                    json.control_reply(&json_freeze, answer(&json_freeze_reply))
                        .is_ok(),
                )
            }),
        ),
    ];
    println!("{:<34} {:>12} {:>12}", "case", "median ns", "fastest ns");
    for (name, mut op) in cases {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        // A case that fails measures nothing: say so rather than time it.
        if op() == 0 {
            return Err(format!("{name}: the codec refused the sample").into());
        }
        let (median, fastest) = measure(op);
        println!("{name:<34} {median:>12.0} {fastest:>12.0}");
    }
    Ok(())
}
