//! Fuzzing the reply decoders on stable Rust: arbitrary bytes, and mutations
//! of every sample reply in `config/conformance/*/` (bit flips, truncations,
//! insertions of bytes and of tokens the samples use, deletions,
//! duplications, other encodings and other declared encodings), handed to
//! every decoder of every shipped dialect through
//! `adapters::fuzzing::Harness::decode_everything`, which panics on any
//! broken rule.
//!
//! A few hundred cases per property by default; for a long run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --release -p adapters --test fuzz_decoders
//! ```
//!
//! (`scripts/fuzz` does that, bounded in time; `docs/fuzzing.md`.)

use std::path::PathBuf;
use std::sync::OnceLock;

use adapters::fuzzing::{self, shipped_config};
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// Default cases per property, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// One sample reply: its dialect and its bytes.
struct Sample {
    dialect: String,
    name: String,
    bytes: Vec<u8>,
}

fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let root = shipped_config().join("conformance");
        let mut samples = Vec::new();
        let mut folders: Vec<PathBuf> = std::fs::read_dir(&root)
            .expect("config/conformance")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        for folder in folders {
            let dialect = folder
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
                .expect("a pack")
                .map(|e| e.expect("entry").path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().contains(".reply."))
                })
                .collect();
            files.sort();
            for file in files {
                samples.push(Sample {
                    dialect: dialect.clone(),
                    name: file
                        .file_name()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned(),
                    bytes: std::fs::read(&file).expect("a sample"),
                });
            }
        }
        assert!(samples.len() >= 20, "only {} samples", samples.len());
        samples
    })
}

/// Tokens worth inserting: the samples' own words (element names, keys,
/// codes, request numbers) and the syntax and values that break parsers.
fn dictionary() -> &'static [Vec<u8>] {
    static WORDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    WORDS.get_or_init(|| {
        let mut words: Vec<Vec<u8>> = [
            "<",
            ">",
            "</",
            "/>",
            "\"",
            "'",
            "=",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "&",
            ";",
            "&lt;",
            "&amp;",
            "&#0;",
            "&#x110000;",
            "&#xD800;",
            "&x;",
            "<!DOCTYPE a>",
            "<!DOCTYPE a [<!ENTITY x \"y\">]>",
            "<![CDATA[",
            "]]>",
            "<!--",
            "-->",
            "<?pi?>",
            "<?xml version=\"1.0\" encoding=\"GB18030\"?>",
            "xmlns:a=\"urn:x\"",
            "a:",
            "\\u0000",
            "\\ud800",
            "\\",
            "null",
            "true",
            "false",
            "[]",
            "{}",
            "0",
            "-1",
            "-0.01",
            "0.001",
            "1e400",
            "-1e400",
            "NaN",
            "99999999999999999999",
            "92233720368547758.08",
            "-92233720368547758.08",
            "4294967296",
            "00000000",
            "20270230",
            "2027-13-01",
            "1,2,3",
            " ",
            "\t",
            "\r\n",
            "\u{0}",
            "\u{feff}",
            "\u{fffd}",
            "中",
            "X",
            "x",
        ]
        .iter()
        .map(|w| w.as_bytes().to_vec())
        .collect();
        for sample in samples() {
            let text = String::from_utf8_lossy(&sample.bytes);
            for word in text.split(|c: char| "<>\"{}[],:=/ \n\r\t".contains(c)) {
                if !word.is_empty() && word.len() <= 64 {
                    words.push(word.as_bytes().to_vec());
                }
            }
        }
        words.sort();
        words.dedup();
        words
    })
}

/// Encodings a mutated sample may be re-encoded in or may declare.
const LABELS: [&str; 9] = [
    "UTF-8",
    "GB18030",
    "GBK",
    "UTF-16",
    "UTF-16BE",
    "ISO-8859-1",
    "Shift_JIS",
    "KLINGON",
    "",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    InsertWord(Index, Index),
    Delete(Index, usize),
    Duplicate(Index, usize),
    /// Decode as UTF-8 (lossily) and write in another encoding, keeping the
    /// declaration.
    Reencode(usize),
    /// Replace the declared encoding's name.
    Redeclare(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(i, w)| Mutation::InsertWord(i, w)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), 1usize..256).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => (0..LABELS.len()).prop_map(Mutation::Reencode),
        1 => (0..LABELS.len()).prop_map(Mutation::Redeclare),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    // Positions are taken among len + 1 places, so the end is one too.
    let at = |i: &Index, len: usize| i.index(len + 1);
    match mutation {
        Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::SetByte(i, b) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::FlipBit(..) | Mutation::SetByte(..) => {}
        Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
        Mutation::Insert(i, new) => {
            let i = at(i, bytes.len());
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::InsertWord(i, w) => {
            let i = at(i, bytes.len());
            let word = w.get(dictionary());
            bytes.splice(i..i, word.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(i, bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate(i, n) => {
            let i = at(i, bytes.len());
            let end = (i + n).min(bytes.len());
            let copy = bytes[i..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::Reencode(label) => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            if let Some(encoding) = adapters::xml::encoding_for_label(LABELS[*label]) {
                // encoding_rs writes UTF-16 as UTF-8; UTF-16 by hand, with a BOM.
                *bytes = match encoding.name() {
                    "UTF-16LE" => [0xFF, 0xFE]
                        .into_iter()
                        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
                        .collect(),
                    "UTF-16BE" => [0xFE, 0xFF]
                        .into_iter()
                        .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
                        .collect(),
                    _ => encoding.encode(&text).0.into_owned(),
                };
            }
        }
        Mutation::Redeclare(label) => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            if let Some(start) = text.find("encoding=\"") {
                let value = start + "encoding=\"".len();
                if let Some(len) = text[value..].find('"') {
                    let mut out = text.as_bytes()[..value].to_vec();
                    out.extend_from_slice(LABELS[*label].as_bytes());
                    out.extend_from_slice(&text.as_bytes()[value + len..]);
                    *bytes = out;
                }
            }
        }
    }
}

fn mutated_sample() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (
        0..samples().len(),
        proptest::collection::vec(mutation(), 1..6),
    )
        .prop_map(|(i, mutations)| {
            let mut bytes = samples()[i].bytes.clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            (i, bytes)
        })
}

/// Every sample decodes through the harness, and every pack has a sample
/// that its dialect answers (not only errors), so the mutations below reach
/// the mapping, not just the parsers.
#[test]
fn the_harness_reaches_the_mapping_of_every_dialect() {
    let harness = fuzzing::shipped();
    let mut answered = std::collections::BTreeSet::new();
    for sample in samples() {
        harness.decode_everything(&sample.bytes);
        let tally = harness
            .decode_as(&sample.dialect, &sample.bytes)
            .unwrap_or_else(|| panic!("{}: no such dialect", sample.dialect));
        if tally.ok > 0 {
            answered.insert(sample.dialect.clone());
        }
    }
    for dialect in harness.dialects() {
        assert!(
            answered.contains(dialect),
            "no sample of {dialect} gets an answer through the harness"
        );
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_break_a_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        fuzzing::shipped().decode_everything(&bytes);
    }

    #[test]
    fn mutated_samples_never_break_a_decoder((i, bytes) in mutated_sample()) {
        let sample = &samples()[i];
        let harness = fuzzing::shipped();
        // Its own dialect first, so a failure names the likeliest culprit.
        prop_assert!(harness.decode_as(&sample.dialect, &bytes).is_some(), "{}", sample.name);
        harness.decode_everything(&bytes);
    }

    #[test]
    fn arbitrary_text_never_breaks_a_decoder(text in "\\PC{0,512}") {
        fuzzing::shipped().decode_everything(text.as_bytes());
    }

    #[test]
    fn xml_shaped_text_never_breaks_a_decoder(
        parts in proptest::collection::vec(
            prop_oneof![
                select(vec!["<", ">", "</", "/>", "=\"", "\"", "&", ";", "<?xml version=\"1.0\"?>"])
                    .prop_map(str::to_owned),
                any::<Index>().prop_map(|w| String::from_utf8_lossy(w.get::<Vec<u8>>(dictionary())).into_owned()),
                "[a-zA-Z0-9 ]{0,8}",
            ],
            0..128,
        )
    ) {
        fuzzing::shipped().decode_everything(parts.concat().as_bytes());
    }
}
