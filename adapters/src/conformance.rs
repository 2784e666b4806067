//! Conformance packs: for each dialect, sample requests and agency replies
//! with the normalised result they must give (`config/conformance/<dialect>/
//! *.toml`, each case beside its sample files). `gateway agencies test` runs
//! them for an onboarding engineer; the workspace tests run every pack.
//!
//! Reply samples are the agency's bytes as sent (a GB18030 bank's sample is a
//! GB18030 file), so a pack tests the decoding as much as the mapping.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use chrono::NaiveDate;

use crate::agency::{ConfigError, ConfigErrors};
use crate::catalog::DialectSet;
use crate::control::{AssetRef, ControlAction, ControlRequest, DocumentRef};
use crate::dialect::{Dialect, Envelope, InquiryRequest, ReplyError, WireReply};
use crate::engine::DeclaredDialect;
use crate::ids::{CaseNumber, CreditCode, IdNumber};
use crate::model::{Court, Fen, InquiryOutcome, Officer, Subject};
use crate::xml::{Element, decode_document, parse_tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseOperation {
    Inquiry,
    Poll,
    Control,
    ControlPoll,
    /// A result the agency pushes: only the reply is read.
    Callback,
}

/// One case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub description: String,
    pub operation: CaseOperation,
    /// The agency option the case runs with (XML encoding).
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub batch_number: Option<String>,
    #[serde(default)]
    pub court: Option<Court>,
    /// Inquiry: the subjects of the message, in order.
    #[serde(default)]
    pub subjects: Vec<CaseSubject>,
    /// Poll: the request number and ticket polled for.
    #[serde(default)]
    pub request_number: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Control: the measure (its subject is the first of `subjects`).
    #[serde(default)]
    pub control: Option<CaseControl>,
    /// File holding the request body the dialect must produce (compared as
    /// XML trees or JSON values, so layout does not matter).
    #[serde(default)]
    pub request: Option<String>,
    /// The request path the dialect must produce.
    #[serde(default)]
    pub request_path: Option<String>,
    /// The further headers the dialect must send (name, value), exactly.
    #[serde(default)]
    pub request_headers: Option<std::collections::BTreeMap<String, String>>,
    /// A signing dialect's key for the case (a test key, not a secret),
    /// with the timestamp and nonce its requests are signed with, so that
    /// a signed request is the same on every run.
    #[serde(default)]
    pub signing_key: Option<String>,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub nonce: Option<String>,
    /// File holding the agency's reply, byte for byte.
    pub reply: String,
    #[serde(default = "ok")]
    pub reply_status: u16,
    /// File holding the expected normalised result (JSON).
    pub expected: String,
}

fn ok() -> u16 {
    200
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSubject {
    pub request_number: String,
    #[serde(default = "default_case")]
    pub case_number: String,
    pub kind: String,
    pub name: String,
    pub id_number: String,
    #[serde(default)]
    pub officers: Vec<Officer>,
}

/// The measure of a control case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseControl {
    pub action: ControlAction,
    /// The asset, by its kind's fields (`account_number`, `unit_number`,
    /// `vin`, `securities_account` and `security_code`, `payment_account`,
    /// `fund_account`, `company_credit_code`).
    #[serde(default)]
    pub account_number: Option<String>,
    #[serde(default)]
    pub unit_number: Option<String>,
    #[serde(default)]
    pub vin: Option<String>,
    #[serde(default)]
    pub securities_account: Option<String>,
    #[serde(default)]
    pub security_code: Option<String>,
    #[serde(default)]
    pub payment_account: Option<String>,
    #[serde(default)]
    pub fund_account: Option<String>,
    #[serde(default)]
    pub company_credit_code: Option<String>,
    #[serde(default)]
    pub amount_fen: Option<i64>,
    #[serde(default)]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub start_date: Option<NaiveDate>,
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
    #[serde(default)]
    pub prior_request_number: Option<String>,
    #[serde(default)]
    pub documents: Vec<DocumentRef>,
}

impl CaseControl {
    fn asset(&self) -> Option<AssetRef> {
        AssetRef::infer(|name| {
            match name {
                "account_number" => &self.account_number,
                "unit_number" => &self.unit_number,
                "vin" => &self.vin,
                "securities_account" => &self.securities_account,
                "security_code" => &self.security_code,
                "payment_account" => &self.payment_account,
                "fund_account" => &self.fund_account,
                "company_credit_code" => &self.company_credit_code,
                _ => &None,
            }
            .as_deref()
        })
    }
}

fn default_case() -> String {
    "(2024)甘0503执1234号".into()
}

/// A case with where it lives.
#[derive(Debug, Clone)]
pub struct Case {
    pub dialect: String,
    pub name: String,
    pub file: PathBuf,
    pub spec: CaseFile,
}

/// What a case gave.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub dialect: String,
    pub name: String,
    pub description: String,
    pub problems: Vec<String>,
    pub expected: Value,
    pub actual: Value,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Loads every case under `dir/<dialect>/*.toml`; `only` limits it to one
/// dialect.
pub fn load_cases(dir: &Path, only: Option<&str>) -> Result<Vec<Case>, ConfigErrors> {
    let error = |file: &Path, message: String| ConfigError {
        file: file.to_owned(),
        message,
    };
    let mut errors = Vec::new();
    let mut cases = Vec::new();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ConfigErrors(vec![error(dir, e.to_string())]))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let dialect = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if only.is_some_and(|o| o != dialect) {
            continue;
        }
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&folder) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => {
                errors.push(error(&folder, e.to_string()));
                continue;
            }
        };
        files.sort();
        for file in files {
            let parsed = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| toml::from_str::<CaseFile>(&t).map_err(|e| e.to_string()));
            match parsed {
                Ok(spec) => cases.push(Case {
                    dialect: dialect.clone(),
                    name: file
                        .file_stem()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    file,
                    spec,
                }),
                Err(e) => errors.push(error(&file, e)),
            }
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(ConfigErrors(errors))
    }
}

impl Case {
    fn sibling(&self, name: &str) -> Result<Vec<u8>, String> {
        let path = self.file.parent().unwrap_or(Path::new(".")).join(name);
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Runs the case against the dialect of that name in `dialects`.
    pub fn run(&self, dialects: &DialectSet) -> CaseResult {
        let mut result = CaseResult {
            dialect: self.dialect.clone(),
            name: self.name.clone(),
            description: self.spec.description.clone(),
            problems: Vec::new(),
            expected: Value::Null,
            actual: Value::Null,
        };
        if let Err(problem) = self.run_into(dialects, &mut result) {
            result.problems.push(problem);
        }
        result
    }

    fn run_into(&self, dialects: &DialectSet, result: &mut CaseResult) -> Result<(), String> {
        let compiled = dialects
            .get(&self.dialect)
            .ok_or_else(|| format!("no dialect {:?} is defined", self.dialect))?;
        let mut dialect =
            DeclaredDialect::new(compiled.clone(), self.spec.encoding.as_deref(), None)?;
        if dialect.signs() {
            let key = self
                .spec
                .signing_key
                .as_ref()
                .ok_or("a case of a signing dialect needs its signing_key")?;
            dialect = dialect
                .with_signing_key(Some(crate::agency::Secret::new(key.as_bytes())))?
                .with_fixed_signing(
                    self.spec.timestamp.unwrap_or(1_764_230_400),
                    self.spec
                        .nonce
                        .as_deref()
                        .unwrap_or("00000000000000000000000000000000"),
                );
        }
        result.expected = serde_json::from_slice(&self.sibling(&self.spec.expected)?)
            .map_err(|e| format!("{}: {e}", self.spec.expected))?;
        let reply_bytes = self.sibling(&self.spec.reply)?;
        let reply = WireReply {
            status: self.spec.reply_status,
            content_type: None,
            body: &reply_bytes,
        };
        let envelope = Envelope {
            court: self.spec.court.clone().unwrap_or(Court {
                code: "甘0503".into(),
                name: "天水市麦积区人民法院".into(),
            }),
            batch_number: self
                .spec
                .batch_number
                .clone()
                .unwrap_or_else(|| "P-conformance".into()),
            callback_url: Some(format!(
                "https://gateway.example/v1/callbacks/{}",
                self.dialect
            )),
        };
        let (wire, actual) = match self.spec.operation {
            CaseOperation::Control | CaseOperation::ControlPoll => {
                let measure = self
                    .spec
                    .control
                    .as_ref()
                    .ok_or("a control case needs [control]")?;
                let item = self
                    .items()?
                    .into_iter()
                    .next()
                    .ok_or("a control case needs a subject")?;
                let request = ControlRequest {
                    request_number: item.request_number,
                    case_number: item.case_number,
                    subject: item.subject,
                    officers: item.officers,
                    action: measure.action,
                    asset: measure.asset().ok_or(
                        "[control] names no asset (account_number, unit_number, vin, \
                         securities_account and security_code, payment_account, fund_account \
                         or company_credit_code)",
                    )?,
                    amount_fen: measure.amount_fen.map(Fen),
                    quantity: measure.quantity,
                    start_date: measure.start_date,
                    end_date: measure.end_date,
                    prior_request_number: measure.prior_request_number.clone(),
                    documents: measure.documents.clone(),
                };
                let (wire, answer) = if self.spec.operation == CaseOperation::Control {
                    let wire = dialect.control_request(&envelope, &request);
                    (wire, dialect.control_reply(&request, reply))
                } else {
                    let ticket = self.spec.ticket.as_deref();
                    let wire = dialect.control_poll_request(&request.request_number, ticket);
                    (wire, dialect.control_poll_reply(&request, reply))
                };
                let wire = wire.map_err(|e| e.to_string())?;
                let actual = match answer {
                    Ok(outcome) => serde_json::to_value(&outcome).unwrap_or(Value::Null),
                    Err(e) => error_json(&e),
                };
                (wire, actual)
            }
            CaseOperation::Callback => {
                let actual = match dialect.callback(reply) {
                    Err(e) => error_json(&e),
                    Ok(outcomes) => Value::Array(outcomes.into_iter().map(item_json).collect()),
                };
                // Nothing is sent: the request checks below find no request.
                let none = crate::dialect::WireRequest {
                    method: crate::dialect::HttpMethod::Post,
                    path: String::new(),
                    content_type: None,
                    body: bytes::Bytes::new(),
                    headers: Default::default(),
                };
                (none, actual)
            }
            CaseOperation::Inquiry => {
                let items = self.items()?;
                let wire = dialect
                    .inquiry_request(&envelope, &items)
                    .map_err(|e| e.to_string())?;
                let actual = match dialect.inquiry_reply(&items, reply) {
                    Err(e) => error_json(&e),
                    Ok(outcomes) => Value::Array(outcomes.into_iter().map(item_json).collect()),
                };
                (wire, actual)
            }
            CaseOperation::Poll => {
                let rn = self
                    .spec
                    .request_number
                    .clone()
                    .ok_or("a poll case needs request_number")?;
                let wire = dialect
                    .poll_request(&rn, self.spec.ticket.as_deref())
                    .map_err(|e| e.to_string())?;
                let actual = match dialect.poll_reply(&rn, reply) {
                    Ok(outcome) => outcome_json(&outcome),
                    Err(e) => error_json(&e),
                };
                (wire, actual)
            }
        };
        result.actual = actual;
        if result.actual != result.expected {
            result
                .problems
                .push("the normalised result differs from the expected one".into());
        }
        if let Some(path) = &self.spec.request_path
            && *path != wire.path
        {
            result
                .problems
                .push(format!("request path {:?}, expected {path:?}", wire.path));
        }
        if let Some(expected) = &self.spec.request_headers {
            let sent: std::collections::BTreeMap<String, String> =
                wire.headers.iter().cloned().collect();
            if sent != *expected {
                result
                    .problems
                    .push(format!("request headers {sent:?}, expected {expected:?}"));
            }
        }
        if let Some(sample) = &self.spec.request {
            let expected = self.sibling(sample)?;
            if let Some(difference) = compare_bodies(&wire.body, &expected) {
                result.problems.push(format!("request body: {difference}"));
            }
        }
        Ok(())
    }

    fn items(&self) -> Result<Vec<InquiryRequest>, String> {
        if self.spec.subjects.is_empty() {
            return Err("an inquiry case needs [[subjects]]".into());
        }
        self.spec
            .subjects
            .iter()
            .map(|s| {
                let subject = match s.kind.as_str() {
                    "person" => Subject::Person {
                        name: s.name.clone(),
                        id_number: IdNumber::parse(&s.id_number).map_err(|e| e.to_string())?,
                    },
                    "organization" => Subject::Organization {
                        name: s.name.clone(),
                        credit_code: CreditCode::parse(&s.id_number).map_err(|e| e.to_string())?,
                    },
                    other => return Err(format!("subject kind {other:?}")),
                };
                let officers = if s.officers.is_empty() {
                    vec![Officer {
                        name: "李明".into(),
                        work_card_no: "G620503001".into(),
                        credential_no: "ZX620503001".into(),
                    }]
                } else {
                    s.officers.clone()
                };
                Ok(InquiryRequest {
                    request_number: s.request_number.clone(),
                    case_number: CaseNumber::parse(&s.case_number).map_err(|e| e.to_string())?,
                    subject,
                    officers,
                })
            })
            .collect()
    }
}

/// The normalised form of an outcome, as packs write it.
pub fn outcome_json(outcome: &InquiryOutcome) -> Value {
    serde_json::to_value(outcome).unwrap_or(Value::Null)
}

/// One item's normalised outcome with its request number.
fn item_json(item: crate::dialect::ItemOutcome) -> Value {
    let mut v = match item.outcome {
        Ok(outcome) => outcome_json(&outcome),
        Err(e) => error_json(&e),
    };
    if let Some(map) = v.as_object_mut() {
        map.insert("request_number".into(), item.request_number.into());
    }
    v
}

fn error_json(e: &ReplyError) -> Value {
    match e {
        ReplyError::Agency { status, .. } => json!({"outcome": "agency_error", "status": status}),
        ReplyError::Malformed(_) => json!({"outcome": "bad_reply"}),
    }
}

/// Compares two message bodies as XML trees (whitespace between elements
/// ignored) or JSON values; `None` when they are the same message.
fn compare_bodies(actual: &[u8], expected: &[u8]) -> Option<String> {
    if let (Ok(a), Ok(e)) = (
        serde_json::from_slice::<Value>(actual),
        serde_json::from_slice::<Value>(expected),
    ) {
        return (a != e).then(|| format!("JSON differs:\n  got      {a}\n  expected {e}"));
    }
    let tree = |bytes: &[u8]| {
        decode_document(bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_tree(&t).map_err(|e| e.to_string()))
    };
    match (tree(actual), tree(expected)) {
        (Ok(a), Ok(e)) => same_tree(&a, &e, ""),
        (Err(e), _) => Some(format!("the produced body is unreadable: {e}")),
        (_, Err(e)) => Some(format!("the sample body is unreadable: {e}")),
    }
}

fn same_tree(a: &Element, e: &Element, at: &str) -> Option<String> {
    let here = format!("{at}/{}", e.name);
    if a.name != e.name {
        return Some(format!("at {here}: element <{}>", a.name));
    }
    if a.text.trim() != e.text.trim() {
        return Some(format!(
            "at {here}: text {:?}, expected {:?}",
            a.text.trim(),
            e.text.trim()
        ));
    }
    if a.attributes != e.attributes {
        return Some(format!(
            "at {here}: attributes {:?}, expected {:?}",
            a.attributes, e.attributes
        ));
    }
    if a.children.len() != e.children.len() {
        return Some(format!(
            "at {here}: {} child elements, expected {}",
            a.children.len(),
            e.children.len()
        ));
    }
    a.children
        .iter()
        .zip(&e.children)
        .find_map(|(a, e)| same_tree(a, e, &here))
}
