//! The direct baseline: the load generator itself fans an inquiry out to
//! the same mock agencies, with the same dialects the gateway uses
//! (`adapters`), and decodes every reply into the model. No store, no
//! audit, no API: the floor for latency and the ceiling for throughput.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use adapters::catalog::Catalog;
use adapters::dialect::{Dialect, Envelope, InquiryRequest, WireReply};
use adapters::ids::{CaseNumber, CreditCode, IdNumber};
use adapters::model::{Court, InquiryOutcome, Officer, Subject};
use anyhow::Context;
use futures::future::join_all;
use gateway::transport::{AgencyChannel, Transport};
use serde_json::{Value, json};

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

struct Target {
    base_url: String,
    dialect: Arc<dyn Dialect>,
    channel: AgencyChannel,
}

/// The agencies of a folder of agency files, reached directly through the
/// gateway's own HTTP transport (the same client settings, timeouts and
/// reply size bound), so the gateway's overhead is all that differs.
pub struct Direct {
    transport: Transport,
    targets: Vec<Target>,
    case: CaseNumber,
    court: Court,
    officer: Officer,
    seq: AtomicU64,
}

impl Direct {
    /// The agencies of `agencies_dir` (dialects from `dialects_dir`); with
    /// `base_url_override`, every agency is reached there instead (nginx in
    /// front of it), its path kept.
    pub fn load(
        agencies_dir: &Path,
        dialects_dir: &Path,
        base_url_override: Option<&dyn Fn(&str) -> String>,
    ) -> anyhow::Result<Self> {
        let catalog = Catalog::load(agencies_dir, dialects_dir, &BTreeMap::new())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let transport = Transport::new(8 * 1024 * 1024)?;
        let mut targets = Vec::new();
        for agency in catalog.agencies {
            let base_url = match base_url_override {
                Some(f) => f(&agency.config.base_url),
                None => agency.config.base_url.clone(),
            };
            targets.push(Target {
                base_url,
                dialect: agency.dialect.clone(),
                channel: transport
                    .channel_for(&agency.connection)
                    .map_err(anyhow::Error::msg)?,
            });
        }
        anyhow::ensure!(
            !targets.is_empty(),
            "no agency files in {}",
            agencies_dir.display()
        );
        Ok(Self {
            transport,
            targets,
            case: CaseNumber::parse(CASE)?,
            court: Court {
                code: "甘0503".into(),
                name: "天水市麦积区人民法院".into(),
            },
            officer: Officer {
                name: OFFICER_NAME.into(),
                work_card_no: "G620503001".into(),
                credential_no: "ZX620503001".into(),
            },
            seq: AtomicU64::new(0),
        })
    }

    /// One inquiry about `subject` to every agency at once; true when every
    /// reply decoded into an answer (accounts or no record).
    pub async fn inquiry(&self, subject: &Subject) -> bool {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let calls = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| self.call(t, subject, n, i));
        join_all(calls).await.into_iter().all(|ok| ok)
    }

    async fn call(&self, target: &Target, subject: &Subject, n: u64, i: usize) -> bool {
        let request = InquiryRequest {
            request_number: format!("D{n:010}-{i}"),
            case_number: self.case.clone(),
            subject: subject.clone(),
            officers: vec![self.officer.clone()],
        };
        let envelope = Envelope {
            court: self.court.clone(),
            batch_number: format!("DB{n:010}-{i}"),
            callback_url: None,
        };
        let items = [request];
        let Ok(wire) = target.dialect.inquiry_request(&envelope, &items) else {
            return false;
        };
        let Ok(reply) = self
            .transport
            .send(
                &target.channel,
                &target.base_url,
                &wire,
                Duration::from_secs(10),
                &envelope.batch_number,
            )
            .await
        else {
            return false;
        };
        let reply = WireReply {
            status: reply.status,
            content_type: reply.content_type.as_deref(),
            body: &reply.body,
        };
        match target.dialect.inquiry_reply(&items, reply) {
            Ok(outcomes) => outcomes.iter().all(|o| {
                matches!(
                    o.outcome,
                    Ok(InquiryOutcome::Answered { .. } | InquiryOutcome::NoRecord)
                )
            }),
            Err(_) => false,
        }
    }
}
