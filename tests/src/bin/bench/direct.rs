//! The direct baseline: the load generator itself fans an inquiry out to
//! the same mock agencies the gateway asks, with the messages the
//! gateway's dialects make (`adapters`). It must measure the agencies, not
//! itself: every message is rendered before the run, once per subject and
//! agency, and a call only writes its own request number into a copy of
//! those bytes, sends them with the lean client (`http.rs`), and checks
//! what tells success: HTTP 200 and the reply naming that request number.
//! That every rendered message is answered with an answer or "no record"
//! is checked once, before the run, by decoding the reply in full with the
//! dialect. No store, no audit, no API: the floor for latency and the
//! ceiling for throughput.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use adapters::catalog::Catalog;
use adapters::dialect::{Dialect, Envelope, HttpMethod, InquiryRequest, WireReply};
use adapters::ids::{CaseNumber, CreditCode, IdNumber};
use adapters::model::{Court, InquiryOutcome, Officer, Subject};
use anyhow::Context;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::join_all;
use hyper::Method;
use serde_json::{Value, json};

use crate::http::{Endpoint, Lean};

pub const CASE: &str = "(2024)甘0503执1234号";
pub const OFFICER_NAME: &str = "李明";

/// The subjects inquiries are made about: the mock population's (the
/// fleet's standard seed and size), so agencies answer with accounts for
/// some and "no record" for most, as real banks do.
pub struct Subjects {
    pub bodies: Vec<Value>,
    pub model: Vec<Subject>,
}

impl Subjects {
    pub fn standard() -> anyhow::Result<Self> {
        let standard = mock_agencies::MockConfig::standard();
        let population =
            mock_agencies::population::Population::generate(standard.seed, standard.population);
        let mut bodies = Vec::new();
        let mut model = Vec::new();
        for s in population.subjects() {
            match s.kind {
                mock_agencies::population::SubjectKind::Person => {
                    bodies
                        .push(json!({"kind": "person", "name": s.name, "id_number": s.id_number}));
                    model.push(Subject::Person {
                        name: s.name.clone(),
                        id_number: IdNumber::parse(&s.id_number)
                            .with_context(|| format!("population id {}", s.id_number))?,
                    });
                }
                mock_agencies::population::SubjectKind::Organisation => {
                    bodies.push(
                        json!({"kind": "organization", "name": s.name, "credit_code": s.id_number}),
                    );
                    model.push(Subject::Organization {
                        name: s.name.clone(),
                        credit_code: CreditCode::parse(&s.id_number)
                            .with_context(|| format!("population code {}", s.id_number))?,
                    });
                }
            }
        }
        anyhow::ensure!(!bodies.is_empty(), "the mock population is empty");
        Ok(Self { bodies, model })
    }

    pub fn len(&self) -> usize {
        self.bodies.len()
    }
}

pub fn officer_json() -> Value {
    json!({"name": OFFICER_NAME, "work_card_no": "G620503001", "credential_no": "ZX620503001"})
}

/// The body of `POST /v1/inquiries` about `subject`, to `agencies` (all
/// of the gateway's when empty).
pub fn inquiry_body(subject: &Value, agencies: &[String]) -> Vec<u8> {
    let mut body = json!({"case_number": CASE, "subject": subject, "officers": [officer_json()]});
    if !agencies.is_empty() {
        body["agencies"] = json!(agencies);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Digits of a call's number in its request and batch numbers
/// (`D0000000042-1`, `DB0000000042-1`).
const DIGITS: usize = 10;

/// A call's number as its `DIGITS` decimal digits, zero-padded.
fn digits(n: u64) -> [u8; DIGITS] {
    let mut out = [b'0'; DIGITS];
    let mut rest = n;
    for d in out.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out
}

/// A message rendered before the run, with the places where a call's own
/// number goes.
struct Stencil {
    body: Bytes,
    /// Offsets of the number's digits (in the request number and in the
    /// batch number).
    holes: Vec<usize>,
}

impl Stencil {
    /// Renders the message twice, with two numbers, and keeps the first
    /// with the places its digits took: only if writing the second
    /// number's digits there gives the second rendering byte for byte (so
    /// the number appears nowhere else, in no other form).
    fn make(render: impl Fn(u64) -> anyhow::Result<Bytes>) -> anyhow::Result<Self> {
        const A: u64 = 9_081_726_354;
        const B: u64 = 1_029_384_756;
        let (a, b) = (render(A)?, render(B)?);
        let holes = places(&a, &digits(A));
        anyhow::ensure!(!holes.is_empty(), "the message does not carry its number");
        let stencil = Self { body: a, holes };
        anyhow::ensure!(
            stencil.fill(B) == b,
            "the message carries its number in another form too"
        );
        Ok(stencil)
    }

    /// The message with number `n` in its places.
    fn fill(&self, n: u64) -> Bytes {
        let digits = digits(n);
        let mut body = BytesMut::from(&self.body[..]);
        for &at in &self.holes {
            body[at..at + DIGITS].copy_from_slice(&digits);
        }
        body.freeze()
    }
}

struct Target {
    id: String,
    endpoint: Endpoint,
    /// One message for each subject of the population.
    stencils: Vec<Stencil>,
}

/// The agencies of a folder of agency files, each with its messages
/// rendered for every subject.
pub struct Direct {
    http: Lean,
    targets: Vec<Target>,
    subjects: Arc<Subjects>,
    dialects: Vec<Arc<dyn Dialect>>,
    seq: AtomicU64,
}

/// The request items of a call to agency `i` about `subject` as number `n`.
fn items(subject: &Subject, n: u64, i: usize) -> anyhow::Result<[InquiryRequest; 1]> {
    Ok([InquiryRequest {
        request_number: request_number(n, i),
        case_number: CaseNumber::parse(CASE)?,
        subject: subject.clone(),
        officers: vec![Officer {
            name: OFFICER_NAME.into(),
            work_card_no: "G620503001".into(),
            credential_no: "ZX620503001".into(),
        }],
    }])
}

fn request_number(n: u64, i: usize) -> String {
    format!("D{n:010}-{i}")
}

fn envelope(n: u64, i: usize) -> Envelope {
    Envelope {
        court: Court {
            code: "甘0503".into(),
            name: "天水市麦积区人民法院".into(),
        },
        batch_number: format!("DB{n:010}-{i}"),
        callback_url: None,
    }
}

/// Calls in flight at once while every message is checked before a run.
const CHECK_CONCURRENCY: usize = 64;

impl Direct {
    /// The agencies of `agencies_dir` (dialects from `dialects_dir`), with
    /// a message rendered for each of `subjects`; with `base_url_override`,
    /// every agency is reached there instead (nginx in front of it), its
    /// path kept. Then every message is sent once and its reply decoded in
    /// full: the run sends only messages known to be answered.
    pub async fn load(
        agencies_dir: &Path,
        dialects_dir: &Path,
        subjects: Arc<Subjects>,
        base_url_override: Option<&dyn Fn(&str) -> String>,
    ) -> anyhow::Result<Self> {
        let catalog = Catalog::load(agencies_dir, dialects_dir, &BTreeMap::new())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut targets = Vec::new();
        let mut dialects = Vec::new();
        for (i, agency) in catalog.agencies.into_iter().enumerate() {
            let id = agency.config.id.clone();
            let base_url = match base_url_override {
                Some(f) => f(&agency.config.base_url),
                None => agency.config.base_url.clone(),
            };
            anyhow::ensure!(
                agency.connection.tls.is_none(),
                "agency {id} needs TLS: the direct baseline speaks plain HTTP"
            );
            let dialect = agency.dialect.clone();
            // The path, method and content type do not depend on the
            // subject: the first subject's message gives them.
            let first = subjects.model.first().context("no subjects")?;
            let wire = dialect
                .inquiry_request(&envelope(0, i), &items(first, 0, i)?)
                .map_err(|e| anyhow::anyhow!("agency {id}: {e}"))?;
            let mut headers: Vec<(&str, &[u8])> = agency
                .connection
                .headers
                .iter()
                .map(|h| (h.name.as_str(), h.value.expose()))
                .collect();
            if let Some(ct) = &wire.content_type {
                headers.push(("content-type", ct.as_bytes()));
            }
            let method = match wire.method {
                HttpMethod::Get => Method::GET,
                HttpMethod::Post => Method::POST,
            };
            let url = format!("{}{}", base_url.trim_end_matches('/'), wire.path);
            let endpoint =
                Endpoint::new(method, &url, &headers).with_context(|| format!("agency {id}"))?;
            let stencils = subjects
                .model
                .iter()
                .map(|subject| {
                    Stencil::make(|n| {
                        Ok(dialect
                            .inquiry_request(&envelope(n, i), &items(subject, n, i)?)
                            .map_err(|e| anyhow::anyhow!("{e}"))?
                            .body)
                    })
                    .with_context(|| format!("agency {id}, a subject's message"))
                })
                .collect::<anyhow::Result<_>>()?;
            targets.push(Target {
                id,
                endpoint,
                stencils,
            });
            dialects.push(dialect);
        }
        anyhow::ensure!(
            !targets.is_empty(),
            "no agency files in {}",
            agencies_dir.display()
        );
        let direct = Self {
            http: Lean::new(),
            targets,
            subjects,
            dialects,
            seq: AtomicU64::new(1),
        };
        direct.check_every_message().await?;
        Ok(direct)
    }

    /// Sends every rendered message once and decodes each reply in full
    /// with the dialect: each must be an answer or "no record", and name
    /// its request number where the run looks for it.
    async fn check_every_message(&self) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let calls = (0..self.subjects.len())
            .flat_map(|s| (0..self.targets.len()).map(move |i| (s, i)))
            .map(|(s, i)| self.check(s, i));
        let mut results = futures::stream::iter(calls).buffer_unordered(CHECK_CONCURRENCY);
        let mut checked = 0usize;
        while let Some(check) = results.next().await {
            check?;
            checked += 1;
        }
        println!(
            "  {checked} messages ({} subjects, {} agency files) answered as expected, checked in {:.1} s",
            self.subjects.len(),
            self.targets.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    async fn check(&self, s: usize, i: usize) -> anyhow::Result<()> {
        let target = &self.targets[i];
        let subject = &self.subjects.model[s];
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let reply = self
            .http
            .send(&target.endpoint, target.stencils[s].fill(n))
            .await
            .with_context(|| format!("agency {}", target.id))?;
        let items = items(subject, n, i)?;
        let wire = WireReply {
            status: reply.status.as_u16(),
            content_type: reply.content_type.as_ref().and_then(|v| v.to_str().ok()),
            body: &reply.body,
        };
        let outcomes = self.dialects[i]
            .inquiry_reply(&items, wire)
            .map_err(|e| anyhow::anyhow!("agency {}: {e}", target.id))?;
        let answered = !outcomes.is_empty()
            && outcomes.iter().all(|o| {
                matches!(
                    o.outcome,
                    Ok(InquiryOutcome::Answered { .. } | InquiryOutcome::NoRecord)
                )
            });
        anyhow::ensure!(
            answered && succeeded(reply.status, &reply.body, n),
            "agency {} did not answer the message about subject {s} as the run expects (HTTP {})",
            target.id,
            reply.status
        );
        Ok(())
    }

    /// One inquiry about subject `n` (modulo the population) to every
    /// agency at once; true when every agency answered it.
    pub async fn inquiry(&self, n: u64) -> bool {
        let s = (n as usize) % self.subjects.len();
        let number = self.seq.fetch_add(1, Ordering::Relaxed);
        let calls = self.targets.iter().map(|t| self.call(t, s, number));
        match tokio::time::timeout(Duration::from_secs(10), join_all(calls)).await {
            Ok(all) => all.into_iter().all(|ok| ok),
            Err(_) => false,
        }
    }

    async fn call(&self, target: &Target, s: usize, n: u64) -> bool {
        match self
            .http
            .send(&target.endpoint, target.stencils[s].fill(n))
            .await
        {
            Ok(reply) => succeeded(reply.status, &reply.body, n),
            Err(_) => false,
        }
    }
}

/// What tells a call's success: HTTP 200, and the reply names the call's
/// number (its request number's digits), so it is this call's answer. The
/// mocks answer a message they cannot take with another status or with a
/// refusal; the messages are those checked before the run.
fn succeeded(status: hyper::StatusCode, body: &[u8], n: u64) -> bool {
    let digits = digits(n);
    status == hyper::StatusCode::OK && body.windows(DIGITS).any(|w| w == digits)
}

/// Where `needle` starts in `haystack`, each place.
fn places(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(at, _)| at)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_ten_zero_padded_digits() {
        assert_eq!(&digits(42), b"0000000042");
        assert_eq!(&digits(9_999_999_999), b"9999999999");
    }

    #[test]
    fn a_stencil_filled_is_the_message_rendered_with_that_number() {
        let render = |n: u64| {
            Ok(format!("<Q><PCH>DB{n:010}-1</PCH><DH>D{n:010}-1</DH></Q>")
                .into_bytes()
                .into())
        };
        let stencil = Stencil::make(render).expect("a stencil");
        assert_eq!(stencil.holes.len(), 2);
        assert_eq!(&stencil.fill(77)[..], &render(77).expect("rendered")[..]);
    }

    #[test]
    fn a_message_that_carries_its_number_in_another_form_is_refused() {
        // The number also reversed: writing digits into the places found
        // cannot make the second rendering.
        let render = |n: u64| {
            let reversed: String = format!("{n:010}").chars().rev().collect();
            Ok(format!("<DH>D{n:010}</DH><X>{reversed}</X>")
                .into_bytes()
                .into())
        };
        assert!(Stencil::make(render).is_err());
        assert!(Stencil::make(|_| Ok(Bytes::from_static(b"no number"))).is_err());
    }

    #[test]
    fn success_is_a_200_naming_the_call() {
        let ok = hyper::StatusCode::OK;
        assert!(succeeded(ok, b"{\"request_number\":\"D0000000042-3\"}", 42));
        assert!(!succeeded(
            ok,
            b"{\"request_number\":\"D0000000043-3\"}",
            42
        ));
        assert!(!succeeded(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            b"D0000000042",
            42
        ));
    }
}
