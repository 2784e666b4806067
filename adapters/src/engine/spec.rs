//! The dialect file (`config/dialects/*.toml`) as written: what an onboarding
//! engineer declares about a message format. `compile` checks it against the
//! model and turns it into something the engine can run.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::control::ControlAction;

/// A whole dialect file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialectFile {
    /// The name agency files use in `dialect = "..."`.
    pub name: String,
    /// What it is, for people.
    #[serde(default)]
    pub description: String,
    /// `xml` or `json`: how replies are parsed and how template values are
    /// escaped.
    pub format: Format,
    /// `synchronous` (the reply carries the result), `submit_then_poll`
    /// (the reply carries a ticket; the result is fetched by `[poll]`) or
    /// `callback` (the agency pushes the result; `[callback]` reads it).
    pub interaction: InteractionSpec,
    /// XML text encoding when the agency file names none (`UTF-8`, `GB18030`,
    /// `GBK`). Requests are written in it; replies are read by their own
    /// declaration.
    #[serde(default)]
    pub encoding: Option<String>,
    /// How many subjects one message may carry; an agency file may lower it.
    #[serde(default = "one")]
    pub max_batch: usize,
    /// The inquiry operation: its request and the mapping of its reply.
    pub inquiry: Operation,
    /// The poll operation of submit-then-poll dialects.
    #[serde(default)]
    pub poll: Option<Operation>,
    /// Results the agency pushes (interaction `callback`): how to read them.
    #[serde(default)]
    pub callback: Option<CallbackSpec>,
    /// Control measures (freeze, seal ...), for agencies that take them.
    #[serde(default)]
    pub control: Option<ControlOperation>,
    /// Signed messages (`signing` module): every request signed and every
    /// reply checked with the agency's key.
    #[serde(default)]
    pub signing: Option<super::signing::SigningSpec>,
    /// Code tables: wire code → model value (replies), model value → wire code
    /// (requests, through the `code` template filter). `"*"` is the default.
    #[serde(default)]
    pub codes: BTreeMap<String, BTreeMap<String, String>>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Xml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionSpec {
    Synchronous,
    SubmitThenPoll,
    Callback,
}

/// One operation: the request to send and how to read its reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub request: RequestSpec,
    pub reply: ReplySpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// `GET` or `POST`.
    #[serde(default = "post")]
    pub method: String,
    /// Path appended to the agency's base URL; a template.
    pub path: String,
    /// Content type; a template (`{{ encoding }}` is the request encoding).
    #[serde(default)]
    pub content_type: Option<String>,
    /// The body; a template. XML bodies get the declaration prepended.
    #[serde(default)]
    pub body: Option<String>,
    /// Further HTTP headers, fixed text (a SOAP 1.1 `SOAPAction`, an API
    /// version). Never credentials: those come from the agency file.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

fn post() -> String {
    "POST".into()
}

/// Where the answers are in a reply and what they say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySpec {
    /// HTTP statuses that carry an answer; any other is the agency's error.
    #[serde(default = "ok_statuses")]
    pub ok_status: Vec<u16>,
    /// XML: the name the root element must have.
    #[serde(default)]
    pub root: Option<String>,
    /// Path from the root to each item (one per request number); empty: the
    /// root is the one item.
    #[serde(default)]
    pub items: String,
    /// Path in an item to its request number. Absent: a one-subject message,
    /// whose item is that subject's.
    #[serde(default)]
    pub request_number: Option<String>,
    /// Rules read in order: each reads a code at a path and looks it up in a
    /// code table whose values are `answered`, `no_record`, `refused`,
    /// `pending`, `error` or `next` (go on to the next rule).
    pub outcome: Vec<OutcomeRule>,
    /// Paths to the reason of a refusal or error; the first non-empty wins.
    #[serde(default)]
    pub reason: Vec<String>,
    /// Path to the agency's ticket, for a pending answer.
    #[serde(default)]
    pub ticket: Option<String>,
    /// How found assets are mapped, one block per record kind.
    #[serde(default)]
    pub assets: Vec<AssetSpec>,
}

fn ok_statuses() -> Vec<u16> {
    vec![200]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRule {
    pub path: String,
    pub codes: String,
}

/// The records of one asset kind in an answered item.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    /// `bank_account` or `real_estate`.
    pub kind: String,
    /// Path from the item to each record.
    pub records: String,
    /// Model field → where and how.
    pub fields: BTreeMap<String, FieldSpec>,
    /// Measures standing on the asset.
    #[serde(default)]
    pub measures: Option<RecordSpec>,
    /// Owners (real estate).
    #[serde(default)]
    pub owners: Option<RecordSpec>,
}

/// Repeated sub-records of an asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    pub records: String,
    pub fields: BTreeMap<String, FieldSpec>,
}

/// Where a model field's value is and how to convert it: a bare string is a
/// path read as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    Path(String),
    Full(FieldRule),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    pub path: String,
    /// `text`, `yuan` (yuan text → fen), `fen` (integer fen), `decimal`,
    /// `integer`, `bool`, or `date:<format>` (chrono format, e.g.
    /// `date:%Y%m%d`).
    #[serde(default)]
    pub convert: Option<String>,
    /// A code table mapping the wire value before conversion.
    #[serde(default)]
    pub codes: Option<String>,
    /// Used when the value is absent.
    #[serde(default)]
    pub default: Option<String>,
    /// Wire values that mean absent (empty text always does).
    #[serde(default)]
    pub absent_if: Vec<String>,
}

impl FieldSpec {
    pub fn rule(&self) -> FieldRule {
        match self {
            FieldSpec::Path(path) => FieldRule {
                path: path.clone(),
                convert: None,
                codes: None,
                default: None,
                absent_if: Vec::new(),
            },
            FieldSpec::Full(rule) => rule.clone(),
        }
    }
}

/// The control-measure operation: one template for every action it carries
/// (`{{ item.action | code("measure") }}` names the measure on the wire).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlOperation {
    /// The actions this dialect carries.
    pub actions: Vec<ControlAction>,
    pub request: RequestSpec,
    pub reply: ControlReplySpec,
    /// For agencies that answer later: how to ask for the result.
    #[serde(default)]
    pub poll: Option<ControlPoll>,
}

/// `[control.poll]`: the request for a control measure's result, and its
/// answer (read like `[control.reply]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPoll {
    pub request: RequestSpec,
    pub reply: ControlReplySpec,
}

/// Where the answer to a control measure is and what it says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlReplySpec {
    #[serde(default = "ok_statuses")]
    pub ok_status: Vec<u16>,
    #[serde(default)]
    pub root: Option<String>,
    /// Path from the root to the answer; empty: the root.
    #[serde(default)]
    pub item: String,
    #[serde(default)]
    pub request_number: Option<String>,
    /// Rules as for inquiries, with the values `applied`, `partial`,
    /// `waiting`, `refused`, `pending`, `error` and `next`.
    pub outcome: Vec<OutcomeRule>,
    #[serde(default)]
    pub reason: Vec<String>,
    #[serde(default)]
    pub ticket: Option<String>,
    /// `controlled_fen`, `shortfall_fen`, `start_date`, `end_date`,
    /// `queue_position`, `agency_reference`.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    /// The documents the agency acknowledges receiving (`number`, `sha256`
    /// as it computed it), one record each, from the answer item.
    #[serde(default)]
    pub documents: Option<RecordSpec>,
}

/// `[callback]`: a pushed result, read like an inquiry reply (its items name
/// their request numbers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSpec {
    pub reply: ReplySpec,
}
