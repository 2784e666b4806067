//! Evidence bundles: the rows of the audit log about one case, or about
//! one subject under every case, as one JSON file that anyone can check
//! offline, with nothing but the file and the gateway's public key
//! (`docs/audit.md`, "Evidence bundles").
//!
//! A bundle holds each matching row with every field its hash is computed
//! from, its message body (base64 of the exact bytes, where the body is
//! still kept), and a chain proof from the row to the nearest signed
//! checkpoint at or after it.
//!
//! What the proof holds, and why: a row's hash is
//! `SHA-256(prev_hash ‖ canonical JSON of the row)`, so the hash of row
//! `n + 1` can only be recomputed from the hash of row `n` with the whole
//! canonical encoding of row `n + 1`. The hashes of the rows in between
//! alone prove nothing (they could be any 64 hex digits); their hash inputs
//! are the least that lets a verifier recompute the chain from a matching
//! row to the checkpoint's row and compare it with the signed hash. So a
//! bundle also holds those rows ("links"): their hash inputs (the same
//! fields as a row's, never their bodies, which enter the hash by digest
//! only). Rows of one checkpoint interval share one run of links: the
//! links of the first matching row of the interval are the others'.
//!
//! Rows written after the last checkpoint are proven up to the chain's
//! head as it was when the bundle was made, and marked unsigned: nothing
//! signed vouches for them yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::audit::{AuditFilter, GENESIS_HASH, StoredAuditEvent, lower_hex, row_hash};
use crate::inquiry::timestamp;
use crate::store::{AuditStore, Checkpoint, StoreError};

/// The bundle's `format`.
pub const FORMAT: &str = "court-gateway-audit-bundle";
/// The bundle's `version`.
pub const VERSION: u32 = 1;

const ABOUT: &str = "Rows of the gateway's audit log matching `filter`, each with every field \
its hash covers and its message body (base64; null where the row has none or retention purged \
it, its digest staying in the chain). hash = SHA-256(prev_hash as 64 hex digits, then the \
row's canonical JSON: seq, at_ms, direction, caller, officers, case_number, subject, agency, \
action, inquiry_id, request_number, status, latency_ms, body_sha256 in that order, compact). \
Each row's proof runs through rows seq+1 ..= proof.through_seq, each found in `rows` or \
`links`, to the Ed25519-signed checkpoint at through_seq (signed) or to the chain's head \
(unsigned). A checkpoint signs the text \"court-gateway audit checkpoint\\nseq=<seq>\\nhash=<hash>\\n\". \
Verify with `gateway audit verify-bundle FILE --public-key HEX`; docs/audit.md, \"Evidence bundles\".";

/// Rows read a page at a time while the bundle streams: with their
/// bodies, few at a time.
const ROW_PAGE: i64 = 200;
/// Links read a page at a time (no bodies).
const LINK_PAGE: i64 = 2_000;

/// What a bundle was asked for: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BundleFilter {
    /// The case whose rows the bundle holds.
    pub case_number: Option<String>,
    /// The subject (identity number or credit code, in upper case) whose
    /// rows, under every case, the bundle holds.
    pub subject: Option<String>,
}

impl BundleFilter {
    pub fn case(case_number: String) -> Self {
        Self {
            case_number: Some(case_number),
            subject: None,
        }
    }

    pub fn subject(subject: String) -> Self {
        Self {
            case_number: None,
            subject: Some(subject),
        }
    }

    fn well_formed(&self) -> bool {
        self.case_number.is_some() != self.subject.is_some()
    }

    /// Whether a row is one the filter asks for.
    pub fn matches(&self, row: &ChainRow) -> bool {
        match (&self.case_number, &self.subject) {
            (Some(case), None) => row.case_number.as_ref() == Some(case),
            (None, Some(subject)) => row.subject.as_ref() == Some(subject),
            _ => false,
        }
    }

    /// The store's filter for the rows up to `through_seq`, after `after`.
    fn audit_filter(&self, through_seq: i64, after: Option<i64>, limit: i64) -> AuditFilter {
        AuditFilter {
            case_number: self.case_number.clone(),
            subject: self.subject.clone(),
            after_seq: after,
            through_seq: Some(through_seq),
            limit,
            ..AuditFilter::default()
        }
    }

    /// What is printed of it: the case number, or the subject masked.
    pub fn described(&self) -> String {
        match (&self.case_number, &self.subject) {
            (Some(case), _) => format!("case {case}"),
            (None, Some(subject)) => format!("subject {}", adapters::ids::mask(subject)),
            (None, None) => "nothing".into(),
        }
    }
}

/// A row of the log as its hash covers it: every field the hash is
/// computed from, with the previous row's hash and its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainRow {
    pub seq: i64,
    /// Unix milliseconds (UTC), as hashed.
    pub at_ms: i64,
    pub direction: String,
    pub caller: Option<String>,
    pub officers: Vec<String>,
    pub case_number: Option<String>,
    pub subject: Option<String>,
    pub agency: Option<String>,
    pub action: String,
    pub inquiry_id: Option<String>,
    pub request_number: Option<String>,
    pub status: Option<String>,
    pub latency_ms: Option<i64>,
    /// SHA-256 (hex) of the message body: the body enters the hash by it.
    pub body_sha256: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl ChainRow {
    fn of(e: &StoredAuditEvent) -> Self {
        Self {
            seq: e.seq,
            at_ms: e.at_ms,
            direction: e.direction.clone(),
            caller: e.caller.clone(),
            officers: e.officers.clone(),
            case_number: e.case_number.clone(),
            subject: e.subject.clone(),
            agency: e.agency.clone(),
            action: e.action.clone(),
            inquiry_id: e.inquiry_id.clone(),
            request_number: e.request_number.clone(),
            status: e.status.clone(),
            latency_ms: e.latency_ms,
            body_sha256: e.body_sha256.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }

    /// The hash recomputed from the row's fields and its `prev_hash`.
    pub fn recomputed_hash(&self) -> String {
        let event = StoredAuditEvent {
            seq: self.seq,
            at_ms: self.at_ms,
            direction: self.direction.clone(),
            caller: self.caller.clone(),
            officers: self.officers.clone(),
            case_number: self.case_number.clone(),
            subject: self.subject.clone(),
            agency: self.agency.clone(),
            action: self.action.clone(),
            inquiry_id: self.inquiry_id.clone(),
            request_number: self.request_number.clone(),
            status: self.status.clone(),
            latency_ms: self.latency_ms,
            body_sha256: self.body_sha256.clone(),
            body: None,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        };
        row_hash(&self.prev_hash, &event)
    }
}

/// A row matching the bundle's filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BundleRow {
    #[serde(flatten)]
    pub row: ChainRow,
    /// `at_ms` in RFC 3339 (UTC), for reading; verification checks that
    /// the two agree.
    #[schema(format = DateTime)]
    pub at: String,
    /// The message body: base64 of its exact bytes, whose SHA-256 is
    /// `body_sha256`. Null when the row has no body, or when retention
    /// purged it (its digest stays in the chain).
    pub body_base64: Option<String>,
    pub proof: Proof,
}

/// A row's chain proof: rows `seq + 1 ..= through_seq`, each in `rows` or
/// `links`, lead from the row to the checkpoint at `through_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Proof {
    /// Where the proof ends: the nearest signed checkpoint at or after the
    /// row, or, when there is none yet, the chain's head.
    pub through_seq: i64,
    /// True: `checkpoints` holds the signed checkpoint at `through_seq`.
    /// False: `through_seq` is the chain's head, which no checkpoint had
    /// signed when the bundle was made; the row is proven only up to it.
    pub signed: bool,
}

/// A signed checkpoint: the gateway's Ed25519 signature over
/// `court-gateway audit checkpoint\nseq=<seq>\nhash=<hash>\n`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BundleCheckpoint {
    pub seq: i64,
    /// The chain's hash at `seq`, as signed.
    pub hash: String,
    #[schema(format = DateTime)]
    pub at: String,
    pub at_ms: i64,
    /// Hex of the Ed25519 public key that signed.
    pub key_id: String,
    /// Hex of the 64-byte signature.
    pub signature: String,
}

impl BundleCheckpoint {
    fn of(c: &Checkpoint) -> Self {
        Self {
            seq: c.seq,
            hash: c.hash.clone(),
            at: timestamp(c.at_ms),
            at_ms: c.at_ms,
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.seq,
            hash: self.hash.clone(),
            at_ms: self.at_ms,
            key_id: self.key_id.clone(),
            signature: self.signature.clone(),
        }
    }
}

/// The chain's last row when the bundle was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// What the bundle holds, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BundleSummary {
    /// Rows matching the filter.
    pub rows: usize,
    /// Of them, proven up to a signed checkpoint.
    pub signed_rows: usize,
    /// Of them, proven only up to the chain's head (no checkpoint yet).
    pub unsigned_rows: usize,
    /// Further rows the proofs pass through.
    pub links: usize,
    pub checkpoints: usize,
}

/// Everything in a bundle but its rows and links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BundleHeader {
    /// `court-gateway-audit-bundle`.
    pub format: String,
    /// The format's version: 1.
    pub version: u32,
    /// How to read and check the bundle, in one paragraph.
    pub about: String,
    pub filter: BundleFilter,
    #[schema(format = DateTime)]
    pub exported_at: String,
    /// The caller (auditor) who exported it.
    pub exported_by: String,
    /// Hex of the Ed25519 public key the checkpoints verify with (the
    /// gateway's `audit.verify_key`, or its signing key's public half);
    /// null when none is configured.
    pub public_key: Option<String>,
    /// The chain's last row when the bundle was made (null: the log was
    /// empty).
    pub head: Option<ChainHead>,
    pub summary: BundleSummary,
    /// The signed checkpoints the proofs end at.
    pub checkpoints: Vec<BundleCheckpoint>,
}

/// An evidence bundle (`GET /v1/audit/bundle`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Bundle {
    #[serde(flatten)]
    pub header: BundleHeader,
    /// The rows matching the filter, in sequence order.
    pub rows: Vec<BundleRow>,
    /// The other rows the proofs pass through (their hash inputs, never
    /// their bodies), in sequence order.
    pub links: Vec<ChainRow>,
}

/// The rows of one checkpoint interval that match: the proof of each runs
/// to `through`; together they need the links `first + 1 ..= through`
/// that do not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Its first matching row.
    pub first: i64,
    pub through: i64,
    pub signed: bool,
    /// Matching rows in it.
    pub rows: usize,
}

/// How big a bundle may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Matching rows (`audit.bundle_max_rows`).
    pub max_rows: usize,
    /// Links (`audit.bundle_max_links`).
    pub max_links: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "more than {max} rows of the audit log match; a bundle holds at most {max} \
         (audit.bundle_max_rows)"
    )]
    TooManyRows { max: usize },
    #[error(
        "the proofs of the {rows} matching rows pass through {links} other rows of the log, \
         more than a bundle holds ({max}, audit.bundle_max_links): the rows are far from \
         the checkpoints that sign them, or no checkpoint signs them"
    )]
    TooManyLinks { rows: usize, links: u64, max: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a bundle will hold, worked out from sequence numbers and
/// checkpoints before a row is read.
#[derive(Debug, Clone)]
pub struct Plan {
    pub filter: BundleFilter,
    pub head: Option<ChainHead>,
    /// The matching rows' sequence numbers, ascending.
    pub matched: Vec<i64>,
    pub segments: Vec<Segment>,
    /// The checkpoints the signed segments end at.
    pub checkpoints: Vec<Checkpoint>,
}

impl Plan {
    /// Plans the bundle of `filter` on the log as it stands: refuses one
    /// over `limits` before anything is read but sequence numbers.
    pub async fn make(
        store: &dyn AuditStore,
        filter: BundleFilter,
        limits: Limits,
    ) -> Result<Self, PlanError> {
        let head = store.audit_head().await?;
        let mut plan = Plan {
            filter,
            head: None,
            matched: Vec::new(),
            segments: Vec::new(),
            checkpoints: Vec::new(),
        };
        let Some((head_seq, head_hash)) = head else {
            return Ok(plan);
        };
        plan.head = Some(ChainHead {
            seq: head_seq,
            hash: head_hash,
        });
        let wanted = i64::try_from(limits.max_rows)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        plan.matched = store
            .audit_seqs(&plan.filter.audit_filter(head_seq, None, wanted))
            .await?;
        if plan.matched.len() > limits.max_rows {
            return Err(PlanError::TooManyRows {
                max: limits.max_rows,
            });
        }
        let mut i = 0;
        while let Some(&first) = plan.matched.get(i) {
            let checkpoint = store
                .checkpoint_at_or_after(first)
                .await?
                .filter(|c| c.seq <= head_seq);
            let (through, signed) = match &checkpoint {
                Some(c) => (c.seq, true),
                None => (head_seq, false),
            };
            let end = i + plan.matched[i..].partition_point(|&s| s <= through);
            plan.segments.push(Segment {
                first,
                through,
                signed,
                rows: end - i,
            });
            plan.checkpoints.extend(checkpoint);
            i = end;
        }
        let links = plan.links();
        if links > limits.max_links as u64 {
            return Err(PlanError::TooManyLinks {
                rows: plan.matched.len(),
                links,
                max: limits.max_links,
            });
        }
        Ok(plan)
    }

    /// Links the proofs need.
    pub fn links(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| ((s.through - s.first + 1).max(0) as u64).saturating_sub(s.rows as u64))
            .sum()
    }

    fn is_matched(&self, seq: i64) -> bool {
        self.matched.binary_search(&seq).is_ok()
    }

    /// The proof of matching row `seq`.
    fn proof(&self, seq: i64) -> Option<Proof> {
        let at = self.segments.partition_point(|s| s.first <= seq);
        let s = self.segments.get(at.checked_sub(1)?)?;
        (seq <= s.through).then_some(Proof {
            through_seq: s.through,
            signed: s.signed,
        })
    }

    pub fn summary(&self) -> BundleSummary {
        let signed_rows = self
            .segments
            .iter()
            .filter(|s| s.signed)
            .map(|s| s.rows)
            .sum();
        BundleSummary {
            rows: self.matched.len(),
            signed_rows,
            unsigned_rows: self.matched.len() - signed_rows,
            links: usize::try_from(self.links()).unwrap_or(usize::MAX),
            checkpoints: self.checkpoints.len(),
        }
    }

    /// The bundle's header: what was asked, by whom and when, the key,
    /// the head, the counts and the checkpoints.
    pub fn header(
        &self,
        exported_by: &str,
        now_ms: i64,
        key: Option<&VerifyingKey>,
    ) -> BundleHeader {
        BundleHeader {
            format: FORMAT.into(),
            version: VERSION,
            about: ABOUT.into(),
            filter: self.filter.clone(),
            exported_at: timestamp(now_ms),
            exported_by: exported_by.to_owned(),
            public_key: key.map(|k| hex::encode(k.to_bytes())),
            head: self.head.clone(),
            summary: self.summary(),
            checkpoints: self.checkpoints.iter().map(BundleCheckpoint::of).collect(),
        }
    }
}

/// The bundle as JSON, a page at a time: the header, the rows read with
/// their bodies page by page, then each segment's links. What it holds in
/// memory is the plan (a number per matching row) and one page.
pub fn stream(
    store: Arc<dyn AuditStore>,
    plan: Plan,
    header: BundleHeader,
) -> impl futures::Stream<Item = Result<Bytes, StoreError>> + Send {
    let pages = Pages {
        store,
        plan,
        header: Some(header),
        stage: Stage::Rows { after: 0 },
        written: false,
        failed: false,
    };
    futures::stream::unfold(pages, |mut p| async move {
        p.next().await.map(|chunk| (chunk, p))
    })
}

/// Makes a whole bundle in memory: for tests and small logs.
pub async fn collect(
    store: Arc<dyn AuditStore>,
    plan: Plan,
    header: BundleHeader,
) -> Result<Vec<u8>, StoreError> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut chunks = std::pin::pin!(stream(store, plan, header));
    while let Some(chunk) = chunks.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

enum Stage {
    Rows { after: i64 },
    Links { segment: usize, after: i64 },
    End,
    Done,
}

struct Pages {
    store: Arc<dyn AuditStore>,
    plan: Plan,
    header: Option<BundleHeader>,
    stage: Stage,
    /// An item was written in the current array (the next needs a comma).
    written: bool,
    failed: bool,
}

impl Pages {
    async fn next(&mut self) -> Option<Result<Bytes, StoreError>> {
        if self.failed {
            return None;
        }
        match self.step().await {
            Ok(chunk) => chunk.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }

    fn item(&mut self, out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), StoreError> {
        out.extend_from_slice(if self.written { b",\n" } else { b"\n" });
        self.written = true;
        serde_json::to_writer(&mut *out, value)
            .map_err(|e| StoreError::Corrupt(format!("cannot write a bundle's row: {e}")))
    }

    async fn step(&mut self) -> Result<Option<Bytes>, StoreError> {
        if let Some(header) = self.header.take() {
            // The header object, left open for the rows and links.
            let mut text = serde_json::to_vec(&header)
                .map_err(|e| StoreError::Corrupt(format!("cannot write a bundle: {e}")))?;
            text.pop();
            text.extend_from_slice(b",\"rows\":[");
            return Ok(Some(text.into()));
        }
        let head = self.plan.head.as_ref().map_or(0, |h| h.seq);
        loop {
            match self.stage {
                Stage::Rows { after } => {
                    let page = if self.plan.matched.is_empty() {
                        Vec::new()
                    } else {
                        let filter = self.plan.filter.audit_filter(head, Some(after), ROW_PAGE);
                        self.store.audit_events(&filter).await?
                    };
                    let Some(last) = page.last().map(|e| e.seq) else {
                        self.stage = Stage::Links {
                            segment: 0,
                            after: 0,
                        };
                        self.written = false;
                        return Ok(Some(Bytes::from_static(b"\n],\"links\":[")));
                    };
                    self.stage = Stage::Rows { after: last };
                    let mut out = Vec::new();
                    for e in &page {
                        let proof = self.plan.proof(e.seq);
                        let Some(proof) = proof.filter(|_| self.plan.is_matched(e.seq)) else {
                            continue;
                        };
                        let row = BundleRow {
                            row: ChainRow::of(e),
                            at: timestamp(e.at_ms),
                            body_base64: e
                                .body
                                .as_ref()
                                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                            proof,
                        };
                        self.item(&mut out, &row)?;
                    }
                    if !out.is_empty() {
                        return Ok(Some(out.into()));
                    }
                }
                Stage::Links { segment, after } => {
                    let Some(s) = self.plan.segments.get(segment).copied() else {
                        self.stage = Stage::End;
                        continue;
                    };
                    let after = after.max(s.first);
                    if after >= s.through {
                        self.stage = Stage::Links {
                            segment: segment + 1,
                            after,
                        };
                        continue;
                    }
                    let page = self
                        .store
                        .audit_chain(after, LINK_PAGE.min(s.through - after))
                        .await?;
                    let Some(last) = page.last().map(|e| e.seq) else {
                        // The log ends before the segment: a proof that
                        // cannot be completed; verification names it.
                        self.stage = Stage::Links {
                            segment: segment + 1,
                            after,
                        };
                        continue;
                    };
                    self.stage = Stage::Links {
                        segment,
                        after: last,
                    };
                    let mut out = Vec::new();
                    for e in page.iter().filter(|e| e.seq <= s.through) {
                        if !self.plan.is_matched(e.seq) {
                            self.item(&mut out, &ChainRow::of(e))?;
                        }
                    }
                    if !out.is_empty() {
                        return Ok(Some(out.into()));
                    }
                }
                Stage::End => {
                    self.stage = Stage::Done;
                    return Ok(Some(Bytes::from_static(b"\n]}\n")));
                }
                Stage::Done => return Ok(None),
            }
        }
    }
}

/// What is wrong with a bundle that does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Not a bundle of this format, or inconsistent in itself.
    Malformed,
    /// The bundle's key is not the pinned one, or none verifies.
    KeyMismatch,
    /// A body's bytes are not the ones its row's digest names.
    BodyAltered,
    /// A row's fields do not match its hash.
    FieldAltered,
    /// A row does not follow the row before it.
    LinkBroken,
    /// A checkpoint's signature does not verify with the key.
    SignatureBad,
    /// A row's hash is not the one its checkpoint signed.
    CheckpointMismatch,
    /// A proof lacks a row, or its checkpoint.
    ProofIncomplete,
    /// A row does not match the bundle's filter.
    FilterMismatch,
    /// A link matches the filter: a matching row left out of `rows`.
    HiddenRow,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::Malformed => "malformed bundle",
            Fault::KeyMismatch => "key mismatch",
            Fault::BodyAltered => "body altered",
            Fault::FieldAltered => "field altered",
            Fault::LinkBroken => "link broken",
            Fault::SignatureBad => "signature bad",
            Fault::CheckpointMismatch => "checkpoint mismatch",
            Fault::ProofIncomplete => "proof incomplete",
            Fault::FilterMismatch => "row outside the filter",
            Fault::HiddenRow => "matching row hidden",
        })
    }
}

/// The result of verifying a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// Everything in the bundle verifies (rows may still be unsigned).
    pub ok: bool,
    pub rows: usize,
    pub links: usize,
    /// Rows whose body is in the bundle and matches its digest.
    pub bodies: usize,
    /// Rows whose body was purged: only its digest is proven.
    pub purged_bodies: usize,
    /// Checkpoints whose signature verified.
    pub checkpoints: usize,
    /// Rows proven up to a signed checkpoint.
    pub signed_rows: usize,
    /// Rows proven only up to the chain's head, which no checkpoint signed.
    pub unsigned_rows: Vec<i64>,
    pub head_seq: Option<i64>,
    /// The key the checkpoints were verified with (hex).
    pub public_key: Option<String>,
    /// Whether that key was given by the verifier (`--public-key`) rather
    /// than taken from the bundle.
    pub key_pinned: bool,
    /// The first row (by sequence number) that does not verify.
    pub first_bad_seq: Option<i64>,
    pub fault: Option<Fault>,
    pub problem: Option<String>,
}

impl BundleReport {
    /// Every row verifies and is covered by a signed checkpoint.
    pub fn fully_signed(&self) -> bool {
        self.ok && self.unsigned_rows.is_empty()
    }

    fn fail(mut self, seq: Option<i64>, fault: Fault, problem: String) -> Self {
        self.ok = false;
        self.first_bad_seq = seq;
        self.fault = Some(fault);
        self.problem = Some(problem);
        self
    }
}

/// Reads a bundle.
pub fn parse(bytes: &[u8]) -> Result<Bundle, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not an evidence bundle: {e}"))
}

/// One entry of the chain a bundle holds: a matching row or a link.
#[derive(Clone, Copy)]
enum Entry<'a> {
    Row(&'a BundleRow),
    Link(&'a ChainRow),
}

impl<'a> Entry<'a> {
    fn fields(self) -> &'a ChainRow {
        match self {
            Entry::Row(r) => &r.row,
            Entry::Link(l) => l,
        }
    }
}

/// Verifies a bundle offline: every row's body against its digest and its
/// fields against its hash, each row's link to the row before it where the
/// bundle holds both, each proof up to its checkpoint or the head, and each
/// checkpoint's signature, with `pinned` when given (it must then be the
/// bundle's key), else with the key in the bundle. Names the first row, by
/// sequence number, that does not verify, and what is wrong with it.
pub fn verify(bundle: &Bundle, pinned: Option<&VerifyingKey>) -> BundleReport {
    let h = &bundle.header;
    let mut report = BundleReport {
        ok: true,
        rows: bundle.rows.len(),
        links: bundle.links.len(),
        bodies: 0,
        purged_bodies: 0,
        checkpoints: 0,
        signed_rows: 0,
        unsigned_rows: Vec::new(),
        head_seq: h.head.as_ref().map(|h| h.seq),
        public_key: pinned
            .map(|k| hex::encode(k.to_bytes()))
            .or_else(|| h.public_key.clone()),
        key_pinned: pinned.is_some(),
        first_bad_seq: None,
        fault: None,
        problem: None,
    };
    if h.format != FORMAT || h.version != VERSION {
        let problem = format!(
            "this is {:?} version {}, not {FORMAT} version {VERSION}",
            h.format, h.version
        );
        return report.fail(None, Fault::Malformed, problem);
    }
    if !h.filter.well_formed() {
        let problem = "the filter names neither a case nor a subject, or both".into();
        return report.fail(None, Fault::Malformed, problem);
    }
    // The key: the pinned one, which must be the bundle's; else the bundle's.
    let bundled = match h.public_key.as_deref().map(crate::verify::verifying_key) {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => {
            let problem = format!("the bundle's public key is unusable: {e}");
            return report.fail(None, Fault::Malformed, problem);
        }
    };
    if let (Some(pinned), Some(bundled)) = (pinned, &bundled)
        && pinned != bundled
    {
        let problem = format!(
            "the bundle's key {} is not the pinned key {}",
            hex::encode(bundled.to_bytes()),
            hex::encode(pinned.to_bytes())
        );
        return report.fail(None, Fault::KeyMismatch, problem);
    }
    let key = pinned.copied().or(bundled);

    let mut entries: BTreeMap<i64, Entry<'_>> = BTreeMap::new();
    let rows = bundle.rows.iter().map(Entry::Row);
    for entry in rows.chain(bundle.links.iter().map(Entry::Link)) {
        let seq = entry.fields().seq;
        if entries.insert(seq, entry).is_some() {
            let problem = format!("row {seq} appears twice in the bundle");
            return report.fail(Some(seq), Fault::Malformed, problem);
        }
    }
    let mut checkpoints: BTreeMap<i64, &BundleCheckpoint> = BTreeMap::new();
    for c in &h.checkpoints {
        if checkpoints.insert(c.seq, c).is_some() {
            let problem = format!("the checkpoint at row {} appears twice", c.seq);
            return report.fail(Some(c.seq), Fault::Malformed, problem);
        }
    }
    // Where each run of consecutive rows ends: a proof is whole when its
    // row's run reaches its end.
    let mut run_end: BTreeMap<i64, i64> = BTreeMap::new();
    let mut end = None;
    for &seq in entries.keys().rev() {
        let e = match end {
            Some((next, e)) if next == seq + 1 => e,
            _ => seq,
        };
        run_end.insert(seq, e);
        end = Some((seq, e));
    }
    for (&seq, &entry) in &entries {
        let row = entry.fields();
        if let Entry::Row(r) = entry {
            match (&r.body_base64, &row.body_sha256) {
                (Some(b64), Some(digest)) => {
                    let body = base64::engine::general_purpose::STANDARD.decode(b64);
                    let Ok(body) = body else {
                        let problem = format!("row {seq}'s body is not base64: it was altered");
                        return report.fail(Some(seq), Fault::BodyAltered, problem);
                    };
                    if lower_hex(&Sha256::digest(&body)) != *digest {
                        let problem = format!(
                            "row {seq}'s body does not match the digest its row records \
                             (body_sha256): the body was altered"
                        );
                        return report.fail(Some(seq), Fault::BodyAltered, problem);
                    }
                    report.bodies += 1;
                }
                (Some(_), None) => {
                    let problem =
                        format!("row {seq} carries a body, but its row records none: altered");
                    return report.fail(Some(seq), Fault::BodyAltered, problem);
                }
                (None, Some(_)) => report.purged_bodies += 1,
                (None, None) => {}
            }
            if r.at != timestamp(row.at_ms) {
                let problem = format!(
                    "row {seq}'s time `at` ({}) is not its hashed time at_ms ({}): a field \
                     was altered",
                    r.at, row.at_ms
                );
                return report.fail(Some(seq), Fault::FieldAltered, problem);
            }
        }
        if row.recomputed_hash() != row.hash {
            let what = if matches!(entry, Entry::Row(_)) {
                "row"
            } else {
                "row (a link of a proof)"
            };
            let problem = format!(
                "{what} {seq} does not match its hash: one of its fields (or its body digest) \
                 was altered"
            );
            return report.fail(Some(seq), Fault::FieldAltered, problem);
        }
        if seq == 1 && row.prev_hash != GENESIS_HASH {
            let problem = "row 1 does not start the chain (its prev_hash is not 64 zeros)".into();
            return report.fail(Some(seq), Fault::LinkBroken, problem);
        }
        if let Some(before) = entries.get(&(seq - 1))
            && before.fields().hash != row.prev_hash
        {
            let problem = format!(
                "row {seq} does not follow row {}: it names another previous hash (row {} or \
                 row {seq} was altered and its hash recomputed)",
                seq - 1,
                seq - 1
            );
            return report.fail(Some(seq), Fault::LinkBroken, problem);
        }
        match entry {
            Entry::Row(_) if !h.filter.matches(row) => {
                let problem = format!(
                    "row {seq} does not match the bundle's filter ({})",
                    h.filter.described()
                );
                return report.fail(Some(seq), Fault::FilterMismatch, problem);
            }
            Entry::Link(_) if h.filter.matches(row) => {
                let problem = format!(
                    "row {seq} matches the bundle's filter but is given only as a link: a \
                     matching row was left out of `rows`"
                );
                return report.fail(Some(seq), Fault::HiddenRow, problem);
            }
            _ => {}
        }
        if let Some(c) = checkpoints.get(&seq) {
            if let Err(problem) = crate::verify::check_signature(&c.checkpoint(), key.as_ref()) {
                return report.fail(Some(seq), Fault::SignatureBad, problem);
            }
            if c.hash != row.hash {
                let problem = format!(
                    "row {seq} differs from the checkpoint signed for it: the chain was \
                     rewritten at or before this row"
                );
                return report.fail(Some(seq), Fault::CheckpointMismatch, problem);
            }
            report.checkpoints += 1;
        }
        if let Entry::Row(r) = entry {
            let through = r.proof.through_seq;
            if through < seq {
                let problem = format!("row {seq}'s proof ends before it, at row {through}");
                return report.fail(Some(seq), Fault::Malformed, problem);
            }
            let reached = run_end.get(&seq).copied().unwrap_or(seq);
            if reached < through {
                let problem = format!(
                    "the proof of row {seq} lacks row {}: it cannot be followed to row {through}",
                    reached + 1
                );
                return report.fail(Some(seq), Fault::ProofIncomplete, problem);
            }
            if r.proof.signed {
                if !checkpoints.contains_key(&through) {
                    let problem = format!(
                        "the proof of row {seq} ends at a checkpoint at row {through} that \
                         the bundle does not hold"
                    );
                    return report.fail(Some(seq), Fault::ProofIncomplete, problem);
                }
                report.signed_rows += 1;
            } else {
                if h.head.as_ref().map(|h| h.seq) != Some(through) {
                    let problem = format!(
                        "row {seq}'s unsigned proof ends at row {through}, not at the chain's \
                         head"
                    );
                    return report.fail(Some(seq), Fault::Malformed, problem);
                }
                report.unsigned_rows.push(seq);
            }
        }
    }
    if let Some(head) = &h.head
        && let Some(row) = entries.get(&head.seq)
        && row.fields().hash != head.hash
    {
        let problem = format!(
            "row {} is the chain's head, but its hash is not the head's",
            head.seq
        );
        return report.fail(Some(head.seq), Fault::LinkBroken, problem);
    }
    if let Some((&seq, _)) = checkpoints.iter().find(|(s, _)| !entries.contains_key(s)) {
        let problem = format!("the checkpoint at row {seq} names a row the bundle does not hold");
        return report.fail(Some(seq), Fault::ProofIncomplete, problem);
    }
    let counted = BundleSummary {
        rows: report.rows,
        signed_rows: report.signed_rows,
        unsigned_rows: report.unsigned_rows.len(),
        links: report.links,
        checkpoints: h.checkpoints.len(),
    };
    if counted != h.summary {
        let problem = format!(
            "the bundle's summary ({:?}) does not count what it holds ({counted:?})",
            h.summary
        );
        return report.fail(None, Fault::Malformed, problem);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, AuditRecord, CheckpointPolicy, Direction};
    use crate::store::SqliteStore;

    const CASE_A: &str = "(2024)甘0503执1号";
    const CASE_B: &str = "(2024)甘0503执2号";
    const SUBJECT: &str = "360426199101010071";

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
    }

    fn record(i: usize) -> AuditRecord {
        // Rows 1, 4, 7 ... of case A; 2, 5, 8 ... of case B; the others of none.
        let case = match i % 3 {
            1 => Some(CASE_A.to_owned()),
            2 => Some(CASE_B.to_owned()),
            _ => None,
        };
        AuditRecord {
            direction: Some(Direction::Outbound),
            action: "inquiry.send".into(),
            agency: Some(format!("bank-{}", i % 2)),
            subject: case.as_ref().map(|_| SUBJECT.to_owned()),
            case_number: case,
            status: Some("sent".into()),
            body: (i % 2 == 1).then(|| format!("<CXQQ>{i}</CXQQ>").into()),
            ..AuditRecord::default()
        }
    }

    /// A log of `rows` rows (one a batch), a checkpoint signed every
    /// `every` rows; the last rows beyond a multiple of `every` unsigned.
    async fn log(rows: usize, every: i64) -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = Arc::new(SqliteStore::open(&url).await.expect("open"));
        let policy = CheckpointPolicy {
            key: Arc::new(key()),
            every_rows: every,
            every_ms: i64::MAX,
        };
        let log = AuditLog::start_signing(store.clone(), 8, Some(policy), None)
            .await
            .expect("start");
        for i in 1..=rows {
            log.record(record(i)).await.expect("recorded");
        }
        // The writer signs after a batch's waiters are told: the last
        // checkpoint may come a moment after the last row.
        drop(log);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let want = (rows as i64 / every) * every;
        while store
            .checkpoints()
            .await
            .expect("checkpoints")
            .last()
            .map_or(0, |c| c.seq)
            < want
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint at {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        (dir, store)
    }

    const LIMITS: Limits = Limits {
        max_rows: 1_000,
        max_links: 1_000,
    };

    async fn export(store: &Arc<SqliteStore>, filter: BundleFilter) -> Bundle {
        let plan = Plan::make(&**store, filter, LIMITS).await.expect("plan");
        let header = plan.header("auditor", 1_700_000_000_000, Some(&key().verifying_key()));
        let bytes = collect(store.clone(), plan, header).await.expect("bundle");
        parse(&bytes).expect("a bundle")
    }

    fn seqs(rows: &[BundleRow]) -> Vec<i64> {
        rows.iter().map(|r| r.row.seq).collect()
    }

    #[tokio::test]
    async fn proofs_end_at_the_nearest_checkpoint_at_or_after_each_row() {
        // Checkpoints at 4, 8, 12; rows 13 and 14 unsigned.
        let (_dir, store) = log(14, 4).await;
        let plan = Plan::make(&*store, BundleFilter::case(CASE_A.into()), LIMITS)
            .await
            .expect("plan");
        assert_eq!(plan.matched, [1, 4, 7, 10, 13]);
        let through: Vec<(i64, bool)> = plan
            .segments
            .iter()
            .map(|s| (s.through, s.signed))
            .collect();
        assert_eq!(through, [(4, true), (8, true), (12, true), (14, false)]);
        // A row at a checkpoint needs no link; 1 needs 2, 3 (4 is a row).
        assert_eq!(plan.proof(4).map(|p| p.through_seq), Some(4));
        assert_eq!(plan.proof(7).map(|p| p.through_seq), Some(8));
        // Links: 2, 3 | 8 | 11, 12 | 14.
        assert_eq!(plan.links(), 6);
        let summary = plan.summary();
        assert_eq!((summary.signed_rows, summary.unsigned_rows), (4, 1));

        let bundle = export(&store, BundleFilter::case(CASE_A.into())).await;
        assert_eq!(seqs(&bundle.rows), [1, 4, 7, 10, 13]);
        let links: Vec<i64> = bundle.links.iter().map(|l| l.seq).collect();
        assert_eq!(links, [2, 3, 8, 11, 12, 14]);
        assert_eq!(bundle.header.checkpoints.len(), 3);
        // Bodies of the odd rows, as base64 of the exact bytes.
        let row7 = &bundle.rows[2];
        assert_eq!(
            row7.body_base64.as_deref(),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode("<CXQQ>7</CXQQ>")
                    .as_str()
            )
        );
        assert_eq!(bundle.rows[1].body_base64, None);
        let report = verify(&bundle, None);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.unsigned_rows, [13]);
        assert_eq!((report.signed_rows, report.checkpoints), (4, 3));
        assert!(!report.fully_signed());
        assert!(!report.key_pinned);
    }

    #[tokio::test]
    async fn a_bundle_by_subject_holds_the_rows_of_every_case_about_it() {
        let (_dir, store) = log(12, 3).await;
        let bundle = export(&store, BundleFilter::subject(SUBJECT.into())).await;
        assert_eq!(seqs(&bundle.rows), [1, 2, 4, 5, 7, 8, 10, 11]);
        let report = verify(&bundle, Some(&key().verifying_key()));
        assert!(report.fully_signed(), "{report:?}");
        assert!(report.key_pinned);
    }

    #[tokio::test]
    async fn nothing_to_prove_is_an_empty_bundle_that_verifies() {
        let (_dir, store) = log(3, 3).await;
        let bundle = export(&store, BundleFilter::case("(2024)甘0503执9号".into())).await;
        assert!(bundle.rows.is_empty() && bundle.links.is_empty());
        assert!(verify(&bundle, None).fully_signed());
    }

    /// The bundle of case A over 12 rows signed every 4: rows 1, 4, 7, 10.
    async fn signed_bundle() -> (tempfile::TempDir, Bundle) {
        let (dir, store) = log(12, 4).await;
        let bundle = export(&store, BundleFilter::case(CASE_A.into())).await;
        assert!(verify(&bundle, None).fully_signed());
        (dir, bundle)
    }

    fn failed(bundle: &Bundle) -> (Option<i64>, Option<Fault>, String) {
        let report = verify(bundle, None);
        assert!(!report.ok, "{report:?}");
        (
            report.first_bad_seq,
            report.fault,
            report.problem.unwrap_or_default(),
        )
    }

    fn row(bundle: &mut Bundle, seq: i64) -> &mut BundleRow {
        bundle
            .rows
            .iter_mut()
            .find(|r| r.row.seq == seq)
            .expect("the row")
    }

    #[tokio::test]
    async fn an_altered_field_is_named_at_its_row() {
        let (_dir, mut bundle) = signed_bundle().await;
        row(&mut bundle, 7).row.status = Some("refused".into());
        let (seq, fault, _) = failed(&bundle);
        assert_eq!((seq, fault), (Some(7), Some(Fault::FieldAltered)));
    }

    #[tokio::test]
    async fn an_altered_body_is_named_at_its_row() {
        let (_dir, mut bundle) = signed_bundle().await;
        let r = row(&mut bundle, 7);
        let engine = base64::engine::general_purpose::STANDARD;
        let mut body = engine
            .decode(r.body_base64.as_deref().unwrap_or(""))
            .expect("b64");
        body[1] ^= 1;
        r.body_base64 = Some(engine.encode(body));
        let (seq, fault, _) = failed(&bundle);
        assert_eq!((seq, fault), (Some(7), Some(Fault::BodyAltered)));
    }

    #[tokio::test]
    async fn an_altered_link_is_named_at_its_row() {
        let (_dir, mut bundle) = signed_bundle().await;
        let link = bundle
            .links
            .iter_mut()
            .find(|l| l.seq == 3)
            .expect("link 3");
        link.agency = Some("bank-x".into());
        let (seq, fault, _) = failed(&bundle);
        assert_eq!((seq, fault), (Some(3), Some(Fault::FieldAltered)));
    }

    #[tokio::test]
    async fn a_row_altered_with_its_hash_recomputed_is_caught_by_the_next_link_or_checkpoint() {
        let (_dir, bundle) = signed_bundle().await;
        // The row after it names the old hash.
        let mut altered = bundle.clone();
        let r = row(&mut altered, 1);
        r.row.action = "inquiry.nothing".into();
        r.row.hash = r.row.recomputed_hash();
        let (seq, fault, problem) = failed(&altered);
        assert_eq!(
            (seq, fault),
            (Some(2), Some(Fault::LinkBroken)),
            "{problem}"
        );
        // A row at its checkpoint: the signed hash catches it.
        let mut altered = bundle;
        let r = row(&mut altered, 4);
        r.row.action = "inquiry.nothing".into();
        r.row.hash = r.row.recomputed_hash();
        let (seq, fault, problem) = failed(&altered);
        assert_eq!(
            (seq, fault),
            (Some(4), Some(Fault::CheckpointMismatch)),
            "{problem}"
        );
    }

    #[tokio::test]
    async fn a_tampered_signature_is_named_at_its_checkpoint() {
        let (_dir, mut bundle) = signed_bundle().await;
        let c = &mut bundle.header.checkpoints[1];
        let flipped = if c.signature.starts_with('0') {
            "1"
        } else {
            "0"
        };
        c.signature.replace_range(0..1, flipped);
        let seq = c.seq;
        let (bad, fault, problem) = failed(&bundle);
        assert_eq!((bad, fault), (Some(seq), Some(Fault::SignatureBad)));
        assert!(problem.contains("signature"), "{problem}");
    }

    #[tokio::test]
    async fn a_missing_link_leaves_a_proof_incomplete() {
        let (_dir, mut bundle) = signed_bundle().await;
        bundle.links.retain(|l| l.seq != 8);
        bundle.header.summary.links -= 1;
        let (seq, fault, problem) = failed(&bundle);
        assert_eq!((seq, fault), (Some(7), Some(Fault::ProofIncomplete)));
        assert!(problem.contains("lacks row 8"), "{problem}");
    }

    #[tokio::test]
    async fn a_matching_row_given_as_a_link_is_found() {
        let (_dir, mut bundle) = signed_bundle().await;
        let hidden = bundle.rows.remove(1);
        bundle.links.push(hidden.row);
        bundle.header.summary.rows -= 1;
        bundle.header.summary.signed_rows -= 1;
        bundle.header.summary.links += 1;
        let (seq, fault, _) = failed(&bundle);
        assert_eq!((seq, fault), (Some(4), Some(Fault::HiddenRow)));
    }

    #[tokio::test]
    async fn another_key_than_the_pinned_one_fails() {
        let (_dir, bundle) = signed_bundle().await;
        let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        let report = verify(&bundle, Some(&other));
        assert_eq!(report.fault, Some(Fault::KeyMismatch), "{report:?}");
        // A bundle whose key was swapped for the forger's: its checkpoints
        // do not verify with it.
        let mut swapped = bundle.clone();
        swapped.header.public_key = Some(hex::encode(other.to_bytes()));
        let (seq, fault, _) = failed(&swapped);
        assert_eq!((seq, fault), (Some(4), Some(Fault::SignatureBad)));
    }

    #[tokio::test]
    async fn a_bundle_over_its_bounds_is_refused_before_a_row_is_read() {
        let (_dir, store) = log(12, 4).await;
        let filter = BundleFilter::case(CASE_A.into());
        let rows = Limits {
            max_rows: 3,
            max_links: 1_000,
        };
        let refused = Plan::make(&*store, filter.clone(), rows).await;
        assert!(
            matches!(refused, Err(PlanError::TooManyRows { max: 3 })),
            "{refused:?}"
        );
        let links = Limits {
            max_rows: 10,
            max_links: 4,
        };
        let refused = Plan::make(&*store, filter, links).await;
        assert!(
            matches!(refused, Err(PlanError::TooManyLinks { links: 5, .. })),
            "{refused:?}"
        );
    }
}
