//! The declarative dialect engine: a dialect file (`config/dialects/*.toml`)
//! compiled into a `Dialect`. Request bodies come from templates, replies are
//! read through paths, code tables and conversions into the model.
//!
//! Compiling checks everything an onboarding engineer can get wrong before
//! the dialect goes live: unknown keys, model fields that don't exist,
//! conversions that don't fit, missing code tables, and templates that don't
//! render or don't make a well-formed message (`rehearsal.rs`: each template
//! is rendered against sample subjects and its body parsed). A request is
//! then rendered once per message from one context (`context.rs`), straight
//! into its buffer in the agency's encoding (`body.rs`), and not parsed
//! again.

mod body;
mod context;
mod mapping;
mod rehearsal;
pub mod select;
pub mod signing;
pub mod spec;
mod template;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use minijinja::Environment;
use serde_json::Value;

use self::body::{BodyWriter, Charset, Unmappable};
use self::mapping::{RecordKind, RecordMapping, RecordSource};
use self::select::{Node, Path};
use self::spec::{
    ControlOperation, ControlReplySpec, DialectFile, Format, InteractionSpec, Operation,
    OutcomeRule, ReplySpec, RequestSpec,
};
use crate::control::{ControlAction, ControlOutcome, ControlRequest, ControlStatus, DocumentAck};
use crate::dialect::{
    Dialect, EncodeError, Envelope, HttpMethod, InquiryRequest, Interaction, ItemOutcome,
    ReplyError, WireReply, WireRequest, agency_error, match_items,
};
use crate::excerpt;
use crate::model::{Asset, AssetKind, InquiryOutcome};
use crate::xml::{decode_document, encoding_for_label, parse_tree};

/// What an outcome code table may say.
const OUTCOMES: [&str; 6] = [
    "answered",
    "no_record",
    "refused",
    "pending",
    "error",
    "next",
];

#[derive(Debug)]
struct CompiledReply {
    ok_status: Vec<u16>,
    root: Option<String>,
    items: Path,
    request_number: Option<Path>,
    outcome: Vec<(Path, BTreeMap<String, String>)>,
    reason: Vec<Path>,
    ticket: Option<Path>,
    assets: Vec<RecordMapping>,
}

/// A request to render and the reading of its reply (`R`).
#[derive(Debug)]
struct CompiledOperation<R> {
    name: &'static str,
    method: HttpMethod,
    /// The names of its templates in the dialect's environment.
    path: String,
    content_type: Option<String>,
    body: Option<String>,
    /// The path and the content type when their templates are plain text
    /// (most are): rendered once at load, not for every message.
    fixed_path: Option<String>,
    fixed_content_type: Option<String>,
    headers: Arc<[(String, String)]>,
    /// The size of the last body rendered: the next one's buffer starts
    /// that large, so it is seldom moved while it grows (and a batch's size
    /// is not kept for every lone message after it).
    body_size: AtomicUsize,
    reply: R,
}

/// How to read the answer to a control measure.
#[derive(Debug)]
struct CompiledControlReply {
    ok_status: Vec<u16>,
    root: Option<String>,
    item: Path,
    request_number: Option<Path>,
    outcome: Vec<(Path, BTreeMap<String, String>)>,
    reason: Vec<Path>,
    ticket: Option<Path>,
    fields: RecordMapping,
    /// The documents the agency acknowledges, when the dialect says where.
    documents: Option<RecordMapping>,
}

#[derive(Debug)]
struct CompiledControl {
    actions: Vec<ControlAction>,
    operation: CompiledOperation<CompiledControlReply>,
    poll: Option<CompiledOperation<CompiledControlReply>>,
}

/// A dialect file, checked and ready.
pub struct CompiledDialect {
    name: String,
    format: Format,
    interaction: InteractionSpec,
    encoding: Option<String>,
    max_batch: usize,
    env: Environment<'static>,
    inquiry: CompiledOperation<CompiledReply>,
    poll: Option<CompiledOperation<CompiledReply>>,
    control: Option<CompiledControl>,
    callback: Option<CompiledReply>,
    signing: Option<signing::Signing>,
}

impl std::fmt::Debug for CompiledDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledDialect")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("interaction", &self.interaction)
            .finish_non_exhaustive()
    }
}

impl CompiledDialect {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn default_encoding(&self) -> Option<&str> {
        self.encoding.as_deref()
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Parses and compiles a dialect file's text. Every problem is returned,
    /// each naming the TOML key it is about (and the line, where the TOML
    /// parser knows it).
    pub fn from_toml(text: &str) -> Result<Self, Vec<String>> {
        let file: DialectFile =
            toml::from_str(text).map_err(|e| vec![e.to_string().trim_end().to_owned()])?;
        Self::compile(file)
    }

    pub fn compile(file: DialectFile) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        if file.name.is_empty()
            || !file
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            errors.push(format!(
                "name {:?} must be lowercase letters, digits and dashes",
                file.name
            ));
        }
        if file.max_batch == 0 {
            errors.push("max_batch must be at least 1".into());
        }
        if let Some(label) = &file.encoding {
            if encoding_for_label(label).is_none() {
                errors.push(format!("encoding {label:?} is unknown"));
            }
            if file.format == Format::Json {
                errors.push("encoding applies to XML dialects only".into());
            }
        }
        for (table, entries) in &file.codes {
            if entries.is_empty() {
                errors.push(format!("codes.{table} is empty"));
            }
        }
        let codes = Arc::new(file.codes.clone());
        let mut env = template::environment(file.format, codes.clone());
        let mut add = |name: String, source: &str, errors: &mut Vec<String>| {
            if let Err(e) = env.add_template_owned(name.clone(), source.to_owned()) {
                errors.push(format!("{name}: {}", template::describe(&e)));
            }
        };
        let requests: Vec<(&'static str, &RequestSpec)> =
            std::iter::once(("inquiry", &file.inquiry.request))
                .chain(file.poll.as_ref().map(|p| ("poll", &p.request)))
                .chain(file.control.as_ref().map(|c| ("control", &c.request)))
                .chain(
                    file.control
                        .as_ref()
                        .and_then(|c| c.poll.as_ref())
                        .map(|p| ("control.poll", &p.request)),
                )
                .collect();
        for (op, request) in &requests {
            add(format!("{op}.request.path"), &request.path, &mut errors);
            if let Some(ct) = &request.content_type {
                add(format!("{op}.request.content_type"), ct, &mut errors);
            }
            if let Some(body) = &request.body {
                add(
                    format!("{op}.request.{}", template::BODY),
                    body,
                    &mut errors,
                );
            }
        }
        match (file.interaction, &file.poll) {
            (InteractionSpec::SubmitThenPoll, None) => {
                errors.push("interaction submit_then_poll needs a [poll] operation".into());
            }
            (InteractionSpec::Synchronous | InteractionSpec::Callback, Some(_)) => {
                errors.push("[poll] is only for interaction submit_then_poll".into());
            }
            _ => {}
        }
        match (file.interaction, &file.callback) {
            (InteractionSpec::Callback, None) => {
                errors.push("interaction callback needs a [callback] reply mapping".into());
            }
            (InteractionSpec::Synchronous | InteractionSpec::SubmitThenPoll, Some(_)) => {
                errors.push("[callback] is only for interaction callback".into());
            }
            _ => {}
        }
        let inquiry = compile_operation("inquiry", &file.inquiry, &file.codes, &env, &mut errors);
        let poll = file
            .poll
            .as_ref()
            .map(|p| compile_operation("poll", p, &file.codes, &env, &mut errors));
        let control = file
            .control
            .as_ref()
            .map(|c| compile_control(c, &file.codes, &env, &mut errors));
        let callback = file
            .callback
            .as_ref()
            .map(|c| compile_reply("callback", &c.reply, &file.codes, &mut errors));
        let signing = file
            .signing
            .as_ref()
            .map(|s| signing::Signing::compile(s, file.format == Format::Json, &mut errors));
        if !errors.is_empty() {
            return Err(errors);
        }
        let (Some(inquiry), Some(poll)) = (inquiry, poll.map_or(Some(None), |p| p.map(Some)))
        else {
            return Err(vec!["the dialect does not compile".into()]);
        };
        let dialect = Self {
            name: file.name,
            format: file.format,
            interaction: file.interaction,
            encoding: file.encoding,
            max_batch: file.max_batch,
            env,
            inquiry,
            poll,
            control: control.flatten(),
            callback: callback.flatten(),
            signing: signing.flatten(),
        };
        dialect.rehearse()?;
        Ok(dialect)
    }

    /// Renders the request of `op`: every template with the one context of
    /// the message, the body into its buffer in `charset`.
    fn request<R>(
        &self,
        op: &CompiledOperation<R>,
        ctx: &minijinja::Value,
        charset: &Charset,
    ) -> Result<WireRequest, String> {
        let name = op.name;
        let path = match &op.fixed_path {
            Some(path) => path.clone(),
            None => template::render(&self.env, &op.path, ctx)
                .map_err(|e| format!("{name}.request.path: {e}"))?,
        };
        if !path.starts_with('/') {
            return Err(format!(
                "{name}.request.path must render to a path starting with /, got {path:?}"
            ));
        }
        let content_type = match (&op.content_type, &op.body, self.format) {
            (Some(_), _, _) if op.fixed_content_type.is_some() => op.fixed_content_type.clone(),
            (Some(template), _, _) => Some(
                template::render(&self.env, template, ctx)
                    .map_err(|e| format!("{name}.request.content_type: {e}"))?,
            ),
            (None, None, _) => None,
            (None, Some(_), Format::Xml) => Some(charset.xml_content_type.clone()),
            (None, Some(_), Format::Json) => Some("application/json".into()),
        };
        let body = match &op.body {
            None => bytes::Bytes::new(),
            Some(template) => {
                let size = op.body_size.load(Ordering::Relaxed);
                let unmappable =
                    || format!("the message has characters {} cannot write", charset.label);
                let mut out = match self.format {
                    Format::Json => BodyWriter::plain(size),
                    Format::Xml => {
                        BodyWriter::xml(charset, size).map_err(|Unmappable| unmappable())?
                    }
                };
                if let Err(e) = template::render_into(&self.env, template, ctx, &mut out) {
                    return Err(if out.was_unmappable() {
                        unmappable()
                    } else {
                        format!("{name}.request.{}: {e}", template::BODY)
                    });
                }
                let body = out.finish().map_err(|Unmappable| unmappable())?;
                op.body_size.store(body.len(), Ordering::Relaxed);
                body
            }
        };
        Ok(WireRequest {
            method: op.method,
            path,
            content_type,
            body,
            headers: op.headers.clone(),
        })
    }
}

fn compile_operation(
    op: &'static str,
    spec: &Operation,
    codes: &BTreeMap<String, BTreeMap<String, String>>,
    env: &Environment<'static>,
    errors: &mut Vec<String>,
) -> Option<CompiledOperation<CompiledReply>> {
    let request = compile_request(op, &spec.request, env, errors);
    let reply = compile_reply(op, &spec.reply, codes, errors);
    Some(request?.with_reply(reply?))
}

/// Headers the gateway sets itself, or that would carry what an agency
/// file must hold: a dialect may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "content-length",
    "content-type",
    "host",
    "transfer-encoding",
    "connection",
    "x-request-id",
];

/// A header a dialect may send: a token for its name (RFC 9110), visible
/// ASCII and spaces for its value.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err("not a valid header name".into());
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(
            "the gateway sets this header itself (credentials belong in the agency file)".into(),
        );
    }
    if !value
        .chars()
        .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
    {
        return Err("a header value is visible ASCII text".into());
    }
    Ok(())
}

/// The text of a template with no expression, statement or comment in it,
/// rendered once (as every message would render it).
fn fixed(env: &Environment<'static>, name: &str, source: &str) -> Option<String> {
    if ["{{", "{%", "{#"].iter().any(|m| source.contains(m)) {
        return None;
    }
    template::render(env, name, &minijinja::Value::from(())).ok()
}

fn compile_request(
    op: &'static str,
    spec: &RequestSpec,
    env: &Environment<'static>,
    errors: &mut Vec<String>,
) -> Option<CompiledOperation<()>> {
    let method = match spec.method.to_ascii_uppercase().as_str() {
        "GET" => Some(HttpMethod::Get),
        "POST" => Some(HttpMethod::Post),
        other => {
            errors.push(format!("{op}.request.method {other:?} is not GET or POST"));
            None
        }
    };
    if method == Some(HttpMethod::Get) && spec.body.is_some() {
        errors.push(format!("{op}.request: a GET has no body"));
    }
    let path = format!("{op}.request.path");
    let content_type = spec
        .content_type
        .as_ref()
        .map(|_| format!("{op}.request.content_type"));
    let fixed_path = fixed(env, &path, &spec.path);
    let headers = spec
        .headers
        .iter()
        .filter_map(|(name, value)| match check_header(name, value) {
            Ok(()) => Some((name.clone(), value.clone())),
            Err(e) => {
                errors.push(format!("{op}.request.headers.{name}: {e}"));
                None
            }
        })
        .collect();
    let fixed_content_type = spec
        .content_type
        .as_ref()
        .zip(content_type.as_ref())
        .and_then(|(source, name)| fixed(env, name, source));
    Some(CompiledOperation {
        name: op,
        method: method?,
        fixed_path,
        fixed_content_type,
        headers,
        path,
        content_type,
        body: spec
            .body
            .as_ref()
            .map(|_| format!("{op}.request.{}", template::BODY)),
        body_size: AtomicUsize::new(0),
        reply: (),
    })
}

impl CompiledOperation<()> {
    fn with_reply<R>(self, reply: R) -> CompiledOperation<R> {
        CompiledOperation {
            name: self.name,
            method: self.method,
            path: self.path,
            content_type: self.content_type,
            body: self.body,
            fixed_path: self.fixed_path,
            fixed_content_type: self.fixed_content_type,
            headers: self.headers,
            body_size: self.body_size,
            reply,
        }
    }
}

/// The outcome rules of a reply, each table checked against `allowed`.
fn compile_outcome(
    at: &str,
    rules: &[OutcomeRule],
    allowed: &[&str],
    codes: &BTreeMap<String, BTreeMap<String, String>>,
    errors: &mut Vec<String>,
) -> Vec<(Path, BTreeMap<String, String>)> {
    if rules.is_empty() {
        errors.push(format!("{at}.outcome: at least one rule is needed"));
    }
    let mut outcome = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let key = format!("{at}.outcome[{i}]");
        let Some(table) = codes.get(&rule.codes) else {
            errors.push(format!("{key}: no code table {:?} in [codes]", rule.codes));
            continue;
        };
        for (code, value) in table {
            if !allowed.contains(&value.as_str()) {
                errors.push(format!(
                    "codes.{}.{code:?} = {value:?}: an outcome here is one of {}",
                    rule.codes,
                    allowed.join(", ")
                ));
            }
        }
        match Path::parse(&rule.path) {
            Ok(p) => outcome.push((p, table.clone())),
            Err(e) => errors.push(format!("{key}.path: {e}")),
        }
    }
    outcome
}

/// What a control answer's outcome table may say.
const CONTROL_OUTCOMES: [&str; 10] = [
    "applied", "partial", "waiting", "refused", "pending", "released", "lapsed", "unknown",
    "error", "next",
];

fn compile_control(
    spec: &ControlOperation,
    codes: &BTreeMap<String, BTreeMap<String, String>>,
    env: &Environment<'static>,
    errors: &mut Vec<String>,
) -> Option<CompiledControl> {
    let before = errors.len();
    if spec.actions.is_empty() {
        errors.push("control.actions: name the actions this dialect carries".into());
    }
    let request = compile_request("control", &spec.request, env, errors);
    let reply = compile_control_reply("control.reply", &spec.reply, codes, errors);
    let poll = spec.poll.as_ref().map(|p| {
        let request = compile_request("control.poll", &p.request, env, errors);
        let reply = compile_control_reply("control.poll.reply", &p.reply, codes, errors);
        request.zip(reply).map(|(r, reply)| r.with_reply(reply))
    });
    if errors.len() > before {
        return None;
    }
    Some(CompiledControl {
        actions: spec.actions.clone(),
        operation: request?.with_reply(reply?),
        poll: poll.flatten(),
    })
}

fn compile_control_reply(
    at: &str,
    r: &ControlReplySpec,
    codes: &BTreeMap<String, BTreeMap<String, String>>,
    errors: &mut Vec<String>,
) -> Option<CompiledControlReply> {
    let before = errors.len();
    let path = |key: &str, text: &str, errors: &mut Vec<String>| {
        Path::parse(text)
            .map_err(|e| errors.push(format!("{at}.{key}: {e}")))
            .ok()
    };
    let item = path("item", &r.item, errors);
    let request_number = r
        .request_number
        .as_ref()
        .and_then(|p| path("request_number", p, errors));
    let ticket = r.ticket.as_ref().and_then(|p| path("ticket", p, errors));
    let reason: Vec<Path> = r
        .reason
        .iter()
        .filter_map(|p| path("reason", p, errors))
        .collect();
    let outcome = compile_outcome(at, &r.outcome, &CONTROL_OUTCOMES, codes, errors);
    let source = RecordSource {
        records: "",
        fields: &r.fields,
        measures: None,
        owners: None,
    };
    let fields = RecordMapping::compile(RecordKind::ControlResult, source, codes, at, errors);
    let documents = r.documents.as_ref().and_then(|d| {
        let source = RecordSource {
            records: &d.records,
            fields: &d.fields,
            measures: None,
            owners: None,
        };
        RecordMapping::compile(
            RecordKind::DocumentAck,
            source,
            codes,
            &format!("{at}.documents"),
            errors,
        )
    });
    if errors.len() > before {
        return None;
    }
    Some(CompiledControlReply {
        ok_status: r.ok_status.clone(),
        root: r.root.clone(),
        item: item?,
        request_number,
        outcome,
        reason,
        ticket,
        fields: fields?,
        documents,
    })
}

fn compile_reply(
    op: &str,
    spec: &ReplySpec,
    codes: &BTreeMap<String, BTreeMap<String, String>>,
    errors: &mut Vec<String>,
) -> Option<CompiledReply> {
    let before = errors.len();
    let at = format!("{op}.reply");
    let path = |key: &str, text: &str, errors: &mut Vec<String>| {
        Path::parse(text)
            .map_err(|e| errors.push(format!("{at}.{key}: {e}")))
            .ok()
    };
    let items = path("items", &spec.items, errors);
    let request_number = spec
        .request_number
        .as_ref()
        .and_then(|p| path("request_number", p, errors));
    let ticket = spec.ticket.as_ref().and_then(|p| path("ticket", p, errors));
    let reason: Vec<Path> = spec
        .reason
        .iter()
        .filter_map(|p| path("reason", p, errors))
        .collect();
    let outcome = compile_outcome(&at, &spec.outcome, &OUTCOMES, codes, errors);
    let mut assets = Vec::new();
    for (i, asset) in spec.assets.iter().enumerate() {
        let key = format!("{at}.assets[{i}]");
        let Some(kind) = AssetKind::parse(&asset.kind) else {
            let known: Vec<&str> = AssetKind::ALL.iter().map(|k| k.as_str()).collect();
            errors.push(format!(
                "{key}.kind {:?} is not a kind of asset ({})",
                asset.kind,
                known.join(", ")
            ));
            continue;
        };
        let kind = RecordKind::Asset(kind);
        let source = RecordSource {
            records: &asset.records,
            fields: &asset.fields,
            measures: asset.measures.as_ref(),
            owners: asset.owners.as_ref(),
        };
        if let Some(m) = RecordMapping::compile(kind, source, codes, &key, errors) {
            assets.push(m);
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(CompiledReply {
        ok_status: spec.ok_status.clone(),
        root: spec.root.clone(),
        items: items?,
        request_number,
        outcome,
        reason,
        ticket,
        assets,
    })
}

/// A compiled dialect with one agency's options.
#[derive(Debug)]
pub struct DeclaredDialect {
    dialect: Arc<CompiledDialect>,
    charset: Charset,
    max_batch: usize,
    /// The agency's key, for a dialect that signs its messages.
    signing_key: Option<crate::agency::Secret>,
    /// A fixed timestamp and nonce instead of the clock's and a random one:
    /// conformance packs compare signed requests byte for byte.
    fixed_signing: Option<(i64, String)>,
}

impl DeclaredDialect {
    /// `encoding` and `max_batch` come from the agency file; absent, the
    /// dialect's own apply. An agency may not batch more than its dialect.
    pub fn new(
        dialect: Arc<CompiledDialect>,
        encoding: Option<&str>,
        max_batch: Option<usize>,
    ) -> Result<Self, String> {
        let label = encoding
            .or(dialect.encoding.as_deref())
            .unwrap_or("UTF-8")
            .to_owned();
        if dialect.format == Format::Json && encoding.is_some() {
            return Err(format!(
                "the {} dialect is JSON: it takes no encoding",
                dialect.name
            ));
        }
        let encoding =
            encoding_for_label(&label).ok_or_else(|| format!("unknown encoding {label:?}"))?;
        let max_batch = max_batch.unwrap_or(dialect.max_batch);
        if max_batch == 0 || max_batch > dialect.max_batch {
            return Err(format!(
                "max_batch {max_batch} is outside 1..={} that the {} dialect allows",
                dialect.max_batch, dialect.name
            ));
        }
        Ok(Self {
            dialect,
            charset: Charset::new(&label, encoding),
            max_batch,
            signing_key: None,
            fixed_signing: None,
        })
    }

    /// Gives a dialect that signs its messages (`[signing]`) the agency's
    /// key; a key for a dialect that does not sign is a mistake too.
    pub fn with_signing_key(mut self, key: Option<crate::agency::Secret>) -> Result<Self, String> {
        match (&self.dialect.signing, key) {
            (Some(_), None) => Err(format!(
                "the {} dialect signs its messages: the agency file needs auth.signing_key",
                self.dialect.name
            )),
            (None, Some(_)) => Err(format!(
                "the {} dialect does not sign its messages: auth.signing_key has no use",
                self.dialect.name
            )),
            (_, key) => {
                self.signing_key = key;
                Ok(self)
            }
        }
    }

    /// Signs with this timestamp and nonce instead of the clock's and a
    /// random one (conformance packs).
    pub fn with_fixed_signing(mut self, unix_seconds: i64, nonce: &str) -> Self {
        self.fixed_signing = Some((unix_seconds, nonce.to_owned()));
        self
    }

    /// Whether the dialect signs its messages.
    pub fn signs(&self) -> bool {
        self.dialect.signing.is_some()
    }

    /// The key of a signing dialect, or why there is none.
    fn signing_key(&self) -> Result<&[u8], String> {
        self.signing_key
            .as_ref()
            .map(crate::agency::Secret::expose)
            .ok_or_else(|| "no signing key is known for this agency".to_owned())
    }

    /// Reads the answer to a control measure (or to a poll for its result).
    fn read_control(
        &self,
        spec: &CompiledControlReply,
        request: &ControlRequest,
        reply: WireReply<'_>,
    ) -> Result<ControlOutcome, ReplyError> {
        if !spec.ok_status.contains(&reply.status) {
            return Err(agency_error(reply));
        }
        let parsed = self.parse(reply.body, spec.root.as_deref())?;
        let root = parsed.node();
        let item = if spec.item.is_empty() {
            Some(root)
        } else {
            spec.item.select(root).into_iter().next()
        }
        .ok_or_else(|| ReplyError::Malformed("the answer item is missing".into()))?;
        if let Some(path) = &spec.request_number
            && path.text_ref(item).as_deref() != Some(request.request_number.as_str())
        {
            return Err(ReplyError::Malformed(format!(
                "the answer is not for {}",
                request.request_number
            )));
        }
        let reason = spec.reason.iter().find_map(|p| p.text(item));
        let (code, verdict) = verdict(&spec.outcome, item)?;
        let status = match verdict {
            "applied" => ControlStatus::Applied,
            "partial" => ControlStatus::Partial,
            "waiting" => ControlStatus::Waiting,
            "refused" => ControlStatus::Refused,
            "pending" => ControlStatus::Pending,
            "released" => ControlStatus::Released,
            "lapsed" => ControlStatus::Lapsed,
            "unknown" => ControlStatus::Unknown,
            _ => {
                return Err(ReplyError::Agency {
                    status: reply.status,
                    detail: reason.map_or_else(|| code.to_string(), |r| format!("{code} {r}")),
                });
            }
        };
        let mut fields = spec.fields.map_one(item).map_err(ReplyError::Malformed)?;
        if let Some(map) = fields.as_object_mut() {
            map.insert(
                "status".into(),
                serde_json::to_value(status).map_err(ReplyError::malformed)?,
            );
            if let Some(t) = spec.ticket.as_ref().and_then(|p| p.text(item)) {
                map.insert("ticket".into(), t.into());
            }
        }
        let mut outcome: ControlOutcome =
            serde_json::from_value(fields).map_err(ReplyError::malformed)?;
        if let Some(documents) = &spec.documents {
            let records = documents
                .map_all(item)
                .map_err(|e| ReplyError::Malformed(format!("a document acknowledgement: {e}")))?;
            for record in records {
                let mut ack: DocumentAck =
                    serde_json::from_value(record).map_err(ReplyError::malformed)?;
                // Digests compare as lower-case hex, whatever case the agency writes.
                ack.sha256.make_ascii_lowercase();
                outcome.acknowledged_documents.push(ack);
            }
        }
        // An agency that controls less than asked, or queues the measure,
        // says so in its figures even when its status code says "controlled".
        if matches!(
            outcome.status,
            ControlStatus::Applied | ControlStatus::Partial | ControlStatus::Refused
        ) && outcome.queue_position.is_some_and(|p| p > 0)
        {
            outcome.status = ControlStatus::Waiting;
        } else if outcome.status == ControlStatus::Applied
            && (outcome.shortfall_fen.is_some_and(|s| s.0 > 0)
                || outcome.shortfall_quantity.is_some_and(|s| s > 0))
        {
            outcome.status = ControlStatus::Partial;
        }
        // A reason explains a measure not (fully) in force; an acceptance
        // message ("已受理") is not one.
        if !matches!(
            outcome.status,
            ControlStatus::Applied | ControlStatus::Pending | ControlStatus::Unknown
        ) {
            outcome.reason = reason;
        }
        Ok(outcome)
    }

    fn encode_error(&self, reason: String) -> EncodeError {
        EncodeError {
            dialect: self.dialect.name.clone(),
            reason,
        }
    }

    fn wire<R>(
        &self,
        op: &CompiledOperation<R>,
        ctx: &minijinja::Value,
    ) -> Result<WireRequest, EncodeError> {
        let mut wire = self
            .dialect
            .request(op, ctx, &self.charset)
            .map_err(|e| self.encode_error(e))?;
        if let Some(signing) = &self.dialect.signing
            && !wire.body.is_empty()
        {
            let (unix_seconds, nonce) = match &self.fixed_signing {
                Some((t, n)) => (*t, n.clone()),
                None => (
                    chrono::Utc::now().timestamp(),
                    hex::encode(rand::random::<[u8; 16]>()),
                ),
            };
            let key = self.signing_key().map_err(|e| self.encode_error(e))?;
            let signed = signing
                .sign_body(key, &wire.body, unix_seconds, &nonce)
                .map_err(|e| self.encode_error(e))?;
            wire.body = signed.into();
        }
        Ok(wire)
    }

    /// Parses a reply and hands its items (with their request numbers, where
    /// the dialect says where they are) to `each`.
    fn read<T>(
        &self,
        reply_spec: &CompiledReply,
        reply: WireReply<'_>,
        each: impl FnMut(Option<String>, Node<'_>) -> T,
    ) -> Result<Vec<T>, ReplyError> {
        if !reply_spec.ok_status.contains(&reply.status) {
            return Err(agency_error(reply));
        }
        let parsed = self.parse(reply.body, reply_spec.root.as_deref())?;
        Ok(items_of(reply_spec, parsed.node(), each))
    }

    /// Parses a reply in the dialect's format (XML by its declared encoding),
    /// checking the root element's name when the dialect names one.
    fn parse(&self, body: &[u8], root_name: Option<&str>) -> Result<Parsed, ReplyError> {
        match self.dialect.format {
            Format::Xml => {
                let text = decode_document(body).map_err(ReplyError::malformed)?;
                let root = parse_tree(&text).map_err(ReplyError::malformed)?;
                if let Some(expected) = root_name {
                    let local = root.name.rsplit(':').next().unwrap_or(&root.name);
                    if local != expected {
                        return Err(ReplyError::Malformed(format!(
                            "expected <{expected}>, got <{}>",
                            excerpt(&root.name)
                        )));
                    }
                }
                Ok(Parsed::Xml(root))
            }
            Format::Json => {
                let value = crate::json::parse_reply(body).map_err(ReplyError::malformed)?;
                // A signed dialect's reply is used only when its signature
                // holds.
                if let Some(signing) = &self.dialect.signing {
                    let key = self.signing_key().map_err(ReplyError::Malformed)?;
                    signing.verify(key, &value).map_err(ReplyError::Malformed)?;
                }
                Ok(Parsed::Json(value))
            }
        }
    }

    fn outcome(
        &self,
        spec: &CompiledReply,
        item: Node<'_>,
        status: u16,
    ) -> Result<InquiryOutcome, ReplyError> {
        let reason = || spec.reason.iter().find_map(|p| p.text(item));
        let (code, verdict) = verdict(&spec.outcome, item)?;
        Ok(match verdict {
            "answered" => {
                let mut assets = Vec::new();
                for mapping in &spec.assets {
                    for value in mapping.map_all(item).map_err(ReplyError::Malformed)? {
                        let asset = serde_json::from_value::<Asset>(value);
                        assets.push(asset.map_err(ReplyError::malformed)?);
                    }
                }
                InquiryOutcome::Answered { assets }
            }
            "no_record" => InquiryOutcome::NoRecord,
            "refused" => InquiryOutcome::Refused {
                reason: reason().unwrap_or_else(|| format!("refused ({code})")),
            },
            "pending" => {
                if self.dialect.interaction == InteractionSpec::Synchronous {
                    return Err(ReplyError::Malformed(
                        "a synchronous agency answered \"pending\"".into(),
                    ));
                }
                InquiryOutcome::Pending {
                    ticket: spec.ticket.as_ref().and_then(|p| p.text(item)),
                }
            }
            _ => {
                return Err(ReplyError::Agency {
                    status,
                    detail: reason().map_or_else(|| code.to_string(), |r| format!("{code} {r}")),
                });
            }
        })
    }
}

/// The first verdict of the outcome rules that is not `next`, with the code
/// that gave it.
fn verdict<'t, 'a>(
    rules: &'t [(Path, BTreeMap<String, String>)],
    item: Node<'a>,
) -> Result<(Cow<'a, str>, &'t str), ReplyError> {
    for (path, table) in rules {
        // An absent code reads as the table's `""` entry, when it has one
        // (a SOAP fault's code, present only in a fault, says `"" = "next"`).
        let code = match path.text_ref(item) {
            Some(code) => code,
            None if table.contains_key("") => Cow::Borrowed(""),
            None => return Err(ReplyError::Malformed("the outcome code is missing".into())),
        };
        let verdict = table
            .get(code.as_ref())
            .or_else(|| table.get("*"))
            .ok_or_else(|| {
                ReplyError::Malformed(format!(
                    "outcome code {:?} is not in the dialect's table",
                    excerpt(&code)
                ))
            })?;
        if verdict != "next" {
            return Ok((code, verdict.as_str()));
        }
    }
    Err(ReplyError::Malformed(
        "no outcome rule decided the answer".into(),
    ))
}

/// A parsed reply.
enum Parsed {
    Xml(crate::xml::Element),
    Json(Value),
}

impl Parsed {
    fn node(&self) -> Node<'_> {
        match self {
            Parsed::Xml(e) => Node::Xml(e),
            Parsed::Json(v) => Node::Json(v),
        }
    }
}

fn items_of<T>(
    spec: &CompiledReply,
    root: Node<'_>,
    mut each: impl FnMut(Option<String>, Node<'_>) -> T,
) -> Vec<T> {
    let items = if spec.items.is_empty() {
        vec![root]
    } else {
        spec.items.select(root)
    };
    items
        .into_iter()
        .map(|item| {
            let rn = spec.request_number.as_ref().and_then(|p| p.text(item));
            each(rn, item)
        })
        .collect()
}

impl Dialect for DeclaredDialect {
    fn name(&self) -> &str {
        &self.dialect.name
    }

    fn interaction(&self) -> Interaction {
        match self.dialect.interaction {
            InteractionSpec::Synchronous => Interaction::Synchronous,
            InteractionSpec::SubmitThenPoll => Interaction::SubmitThenPoll,
            InteractionSpec::Callback => Interaction::Callback,
        }
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn inquiry_request(
        &self,
        envelope: &Envelope,
        items: &[InquiryRequest],
    ) -> Result<WireRequest, EncodeError> {
        if items.is_empty() || items.len() > self.max_batch {
            return Err(self.encode_error(format!(
                "a message holds 1 to {} subjects, got {}",
                self.max_batch,
                items.len()
            )));
        }
        if self.dialect.interaction == InteractionSpec::Callback && envelope.callback_url.is_none()
        {
            return Err(self.encode_error(
                "this agency pushes its results, but no callback address is known".into(),
            ));
        }
        let ctx = context::inquiry(envelope, items, &self.charset.label);
        self.wire(&self.dialect.inquiry, &ctx)
    }

    fn inquiry_reply(
        &self,
        items: &[InquiryRequest],
        reply: WireReply<'_>,
    ) -> Result<Vec<ItemOutcome>, ReplyError> {
        let spec = &self.dialect.inquiry.reply;
        let lone = (items.len() == 1).then(|| items[0].request_number.clone());
        let decoded = self
            .read(spec, reply, |rn, item| {
                let rn = match (&spec.request_number, rn) {
                    (Some(_), Some(rn)) => Some(rn),
                    (Some(_), None) => None,
                    (None, _) => lone.clone(),
                };
                rn.map(|rn| (rn, self.outcome(spec, item, reply.status)))
            })
            .map_err(ReplyError::clamped)?;
        let decoded: Vec<_> = decoded
            .into_iter()
            .flatten()
            .map(|(rn, outcome)| (rn, outcome.map_err(ReplyError::clamped)))
            .collect();
        Ok(match_items(items, decoded))
    }

    fn callback(&self, reply: WireReply<'_>) -> Result<Vec<ItemOutcome>, ReplyError> {
        let Some(spec) = &self.dialect.callback else {
            return Err(ReplyError::Malformed(
                "this dialect takes no callbacks".into(),
            ));
        };
        if spec.request_number.is_none() {
            return Err(ReplyError::Malformed(
                "the dialect does not say where a callback names its request".into(),
            ));
        }
        let decoded = self
            .read(spec, reply, |rn, item| {
                rn.map(|rn| ItemOutcome {
                    request_number: rn,
                    outcome: self
                        .outcome(spec, item, reply.status)
                        .map_err(ReplyError::clamped),
                })
            })
            .map_err(ReplyError::clamped)?;
        Ok(decoded.into_iter().flatten().collect())
    }

    fn supports(&self, action: ControlAction) -> bool {
        self.dialect
            .control
            .as_ref()
            .is_some_and(|c| c.actions.contains(&action))
    }

    fn control_request(
        &self,
        envelope: &Envelope,
        request: &ControlRequest,
    ) -> Result<WireRequest, EncodeError> {
        let Some(control) = self
            .dialect
            .control
            .as_ref()
            .filter(|_| self.supports(request.action))
        else {
            return Err(self.encode_error(format!(
                "this dialect does not carry {}",
                request.action.as_str()
            )));
        };
        let ctx = context::control(envelope, request, &self.charset.label);
        self.wire(&control.operation, &ctx)
    }

    fn control_reply(
        &self,
        request: &ControlRequest,
        reply: WireReply<'_>,
    ) -> Result<ControlOutcome, ReplyError> {
        let Some(control) = &self.dialect.control else {
            return Err(ReplyError::Malformed(
                "this dialect has no control replies".into(),
            ));
        };
        self.read_control(&control.operation.reply, request, reply)
            .map_err(ReplyError::clamped)
    }

    fn control_poll_request(
        &self,
        request_number: &str,
        ticket: Option<&str>,
    ) -> Result<WireRequest, EncodeError> {
        let Some(poll) = self.dialect.control.as_ref().and_then(|c| c.poll.as_ref()) else {
            return Err(self.encode_error("this dialect answers control measures at once".into()));
        };
        let ctx = context::poll(request_number, ticket, &self.charset.label);
        self.wire(poll, &ctx)
    }

    fn can_query_control(&self) -> bool {
        self.dialect
            .control
            .as_ref()
            .is_some_and(|c| c.poll.is_some())
    }

    fn control_poll_reply(
        &self,
        request: &ControlRequest,
        reply: WireReply<'_>,
    ) -> Result<ControlOutcome, ReplyError> {
        let Some(poll) = self.dialect.control.as_ref().and_then(|c| c.poll.as_ref()) else {
            return Err(ReplyError::Malformed(
                "this dialect has no control polls".into(),
            ));
        };
        self.read_control(&poll.reply, request, reply)
            .map_err(ReplyError::clamped)
    }

    fn poll_request(
        &self,
        request_number: &str,
        ticket: Option<&str>,
    ) -> Result<WireRequest, EncodeError> {
        let Some(poll) = &self.dialect.poll else {
            return Err(
                self.encode_error("this dialect answers synchronously and cannot be polled".into())
            );
        };
        let ctx = context::poll(request_number, ticket, &self.charset.label);
        self.wire(poll, &ctx)
    }

    fn poll_reply(
        &self,
        request_number: &str,
        reply: WireReply<'_>,
    ) -> Result<InquiryOutcome, ReplyError> {
        let Some(poll) = &self.dialect.poll else {
            return Err(ReplyError::Malformed("this dialect has no poll".into()));
        };
        let spec = &poll.reply;
        let mut found = self
            .read(spec, reply, |rn, item| {
                (rn, self.outcome(spec, item, reply.status))
            })
            .map_err(ReplyError::clamped)?;
        let position = found
            .iter()
            .position(|(rn, _)| match (&spec.request_number, rn) {
                (None, _) => true,
                (Some(_), Some(rn)) => rn == request_number,
                (Some(_), None) => false,
            });
        match position {
            Some(i) => found.swap_remove(i).1.map_err(ReplyError::clamped),
            None => Err(ReplyError::Malformed(format!(
                "the answer is not for {request_number}"
            ))),
        }
    }
}
