//! Agency files (`config/agencies/*.toml`, one per agency): what an agency is,
//! which dialect it speaks, where it is and how to reach it (TLS, auth
//! headers), its limits and its business hours.
//!
//! Loading collects every error of every file, each naming its file and line,
//! before refusing the set: an onboarding engineer fixes them all in one go.
//! Secrets are given by reference (environment variable or file), resolved at
//! load time, and never shown (see [`secrets`]).

mod hours;
pub mod secrets;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dialect::Dialect;
use crate::model::AssetKind;

pub use hours::{BusinessHours, ClockTime, Day, china_time_label};
pub use secrets::{AuthHeaderValue, Connection, Secret, TlsMaterial};
pub use validate::{KeyPath, line_of, parse_agency};

/// What sort of institution an agency is; it decides which asset kind the
/// agency serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgencyKind {
    Bank,
    /// A real-estate registry.
    Registry,
    /// The traffic administration's vehicle register.
    VehicleRegistry,
    /// The securities depository and clearing house.
    SecuritiesDepository,
    /// A non-bank payment institution.
    PaymentPlatform,
    /// A city's housing provident fund centre.
    ProvidentFundCentre,
    /// Market regulation: enterprise registration and its equity.
    MarketRegistry,
}

impl AgencyKind {
    pub const ALL: [AgencyKind; 7] = [
        AgencyKind::Bank,
        AgencyKind::Registry,
        AgencyKind::VehicleRegistry,
        AgencyKind::SecuritiesDepository,
        AgencyKind::PaymentPlatform,
        AgencyKind::ProvidentFundCentre,
        AgencyKind::MarketRegistry,
    ];

    pub fn asset_kind(self) -> AssetKind {
        match self {
            AgencyKind::Bank => AssetKind::BankAccount,
            AgencyKind::Registry => AssetKind::RealEstate,
            AgencyKind::VehicleRegistry => AssetKind::Vehicle,
            AgencyKind::SecuritiesDepository => AssetKind::Securities,
            AgencyKind::PaymentPlatform => AssetKind::PaymentAccount,
            AgencyKind::ProvidentFundCentre => AssetKind::ProvidentFund,
            AgencyKind::MarketRegistry => AssetKind::Equity,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AgencyKind::Bank => "bank",
            AgencyKind::Registry => "registry",
            AgencyKind::VehicleRegistry => "vehicle_registry",
            AgencyKind::SecuritiesDepository => "securities_depository",
            AgencyKind::PaymentPlatform => "payment_platform",
            AgencyKind::ProvidentFundCentre => "provident_fund_centre",
            AgencyKind::MarketRegistry => "market_registry",
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_poll_interval_ms() -> u64 {
    1_000
}

/// One agency file. Unknown keys are errors. Keys in order of appearance in
/// a typical file: the scalars first, then the `[limits]`, `[tls]`,
/// `[business_hours]` and `[[auth.headers]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    /// Stable identifier, lowercase letters, digits and dashes: `bank-a`.
    /// It names the agency in the API, the audit log and request numbers.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `bank` (serves `bank_account`) or `registry` (serves `real_estate`).
    pub kind: AgencyKind,
    /// The message format: the `name` of a dialect file.
    pub dialect: String,
    /// Where the agency listens (`http://` or `https://`); dialect paths are
    /// appended to it.
    pub base_url: String,
    /// A disabled agency is left out of fan-outs. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The text encoding of XML messages (`GB18030`, `GBK`, `UTF-8`);
    /// absent, the dialect's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// How often to ask a submit-then-poll agency for its result, in ms.
    /// Default 1000.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// For agencies that push their results (`interaction = "callback"`):
    /// the hex SHA-256 of the bearer token the agency presents on
    /// `POST /v1/callbacks/{id}`. The token itself is never stored here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_token_sha256: Option<String>,
    /// Time, rate, concurrency and batch limits of the agency.
    #[serde(default)]
    pub limits: Limits,
    /// The TLS files for an `https://` agency with a private CA or mutual
    /// TLS. Absent: the system's roots, no client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// When the agency takes work (UTC+8). Absent: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<BusinessHours>,
    /// Headers sent with every message, e.g. an API key, each value given by
    /// reference.
    #[serde(default, skip_serializing_if = "Auth::is_empty")]
    pub auth: Auth,
    /// Where each key was in the file (for error lines found after
    /// parsing, e.g. an unknown dialect).
    #[serde(skip)]
    source: SourceLines,
}

/// `[limits]` of an agency file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// How long one HTTP exchange with the agency may take, body included,
    /// in ms. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How many subjects one message may carry (dialects that batch);
    /// absent, the dialect's own maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<usize>,
    /// Messages per second the agency accepts: the gateway sends no faster
    /// (a message that would have to wait beyond its deadline is
    /// `rate_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Exchanges in flight with this agency at once; absent, only the
    /// dispatcher's global bound applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Consecutive failures (no answer, or the agency's 5xx) that open the
    /// agency's circuit breaker: while open, inquiries are not sent to it
    /// (`circuit_open`). Default 5.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe may try again, in
    /// ms. Default 30000.
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// Hedged inquiries: once the agency's p95 latency is known, an inquiry
    /// message not answered within it is sent once more (same request
    /// number, audited like any message) and the first answer is used; at
    /// most this percent of messages. 0 (the default): never.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hedge_percent: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_breaker_cooldown_ms() -> u64 {
    30_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: default_timeout_ms(),
            max_batch: None,
            rate_per_second: None,
            max_concurrency: None,
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_breaker_cooldown_ms(),
            hedge_percent: 0,
        }
    }
}

/// `tls = { ca = "...", client_cert = "...", client_key = "..." }`. Paths
/// are relative to the agency file's folder, or absolute; loading makes them
/// absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM of the CA that signed the agency's server certificate. When set,
    /// only this CA is trusted for this agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS; needs `client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

/// `[auth]`: headers sent with every message to the agency, and the key
/// its messages are signed with when its dialect signs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// `[[auth.headers]]`, one table per header.
    #[serde(default)]
    pub headers: Vec<AuthHeader>,
    /// `[auth.signing_key]`: the key of a dialect that signs its messages
    /// (`[signing]`), by reference: exactly one of `env` and `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SecretSource>,
}

impl Auth {
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.signing_key.is_none()
    }
}

/// A secret by reference: exactly one of `env` and `file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The environment variable holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The file holding it (surrounding whitespace trimmed); relative to
    /// the agency file's folder, or absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// A literal value is refused (secrets never inline).
    #[serde(default, skip_serializing)]
    value: Option<InlineValue>,
}

impl SecretSource {
    pub(crate) fn has_inline_value(&self) -> bool {
        self.value.is_some()
    }
}

/// One header, its value by reference: exactly one of `env` and `file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthHeader {
    /// The header's name, e.g. `X-Api-Key`.
    pub name: String,
    /// The environment variable holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The file holding the value (surrounding whitespace trimmed); relative
    /// to the agency file's folder, or absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// A literal value is refused (secrets never inline); the key is known
    /// only to say so plainly.
    #[serde(default, skip_serializing)]
    value: Option<InlineValue>,
}

impl AuthHeader {
    /// A header whose value comes from environment variable `var`.
    pub fn from_env(name: &str, var: &str) -> Self {
        Self {
            name: name.to_owned(),
            env: Some(var.to_owned()),
            file: None,
            value: None,
        }
    }

    /// A header whose value is in `path`.
    pub fn from_file(name: &str, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            env: None,
            file: Some(path.into()),
            value: None,
        }
    }

    pub(crate) fn has_inline_value(&self) -> bool {
        self.value.is_some()
    }
}

/// Stands for a literal header value; what it was is dropped unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InlineValue;

impl<'de> Deserialize<'de> for InlineValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(InlineValue)
    }
}

/// Lines of the keys of the file an agency came from, by dotted path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SourceLines(Option<Arc<BTreeMap<String, usize>>>);

impl SourceLines {
    fn new(lines: BTreeMap<String, usize>) -> Self {
        Self(Some(Arc::new(lines)))
    }
}

impl AgencyConfig {
    pub fn asset_kind(&self) -> AssetKind {
        self.kind.asset_kind()
    }

    /// The line of a key (dotted path: `dialect`, `limits.max_batch`) in the
    /// file this configuration was read from, when it was read from one.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.source.0.as_ref()?.get(key).copied()
    }

    /// Prefixes `message` with the line of `key` (`line 5: ...`), the form
    /// [`ConfigError::line`] reads back. A key not in the file falls back
    /// to its table (`limits.max_batch` to `limits`).
    pub fn at_key(&self, key: &str, message: impl fmt::Display) -> String {
        let line = self.line_of(key).or_else(|| {
            key.rsplit_once('.')
                .and_then(|(table, _)| self.line_of(table))
        });
        match line {
            Some(line) => format!("line {line}: {message}"),
            None => message.to_string(),
        }
    }

    /// The key a dialect's complaint about this agency is about: the
    /// options the agency file gives it, or else the dialect's name.
    fn dialect_key(message: &str) -> &'static str {
        if message.contains("signing_key") {
            "auth.signing_key"
        } else if message.contains("max_batch") {
            "limits.max_batch"
        } else if message.contains("encoding") {
            "encoding"
        } else {
            "dialect"
        }
    }

    /// Makes relative paths (TLS files, secret files) relative to `dir`, the
    /// folder of the agency file.
    pub fn anchor_paths(&mut self, dir: &Path) {
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(tls) = &mut self.tls {
            for p in [&mut tls.ca, &mut tls.client_cert, &mut tls.client_key]
                .into_iter()
                .flatten()
            {
                anchor(p);
            }
        }
        for header in &mut self.auth.headers {
            if let Some(p) = &mut header.file {
                anchor(p);
            }
        }
        if let Some(p) = self.auth.signing_key.as_mut().and_then(|k| k.file.as_mut()) {
            anchor(p);
        }
    }

    /// Checks what serde cannot: identifier form, URL, limits, hours.
    /// Whether the dialect exists is checked with the dialect files
    /// (`catalog`); references (env, files) by [`Connection::resolve`].
    pub fn problems(&self) -> Vec<(KeyPath, String)> {
        let mut problems = Vec::new();
        let mut problem = |path: KeyPath, message: String| problems.push((path, message));
        if self.id.is_empty()
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            problem(
                KeyPath::key("id"),
                format!(
                    "id {:?} must be lowercase letters, digits and dashes",
                    self.id
                ),
            );
        }
        if self.name.trim().is_empty() {
            problem(KeyPath::key("name"), "name must not be empty".into());
        }
        if self.dialect.trim().is_empty() {
            problem(
                KeyPath::key("dialect"),
                "dialect must name a dialect file".into(),
            );
        }
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => problem(
                KeyPath::key("base_url"),
                format!("base_url scheme {:?} is not http or https", u.scheme()),
            ),
            Err(e) => problem(
                KeyPath::key("base_url"),
                format!("base_url {:?}: {e}", self.base_url),
            ),
        }
        if self.poll_interval_ms == 0 {
            problem(
                KeyPath::key("poll_interval_ms"),
                "poll_interval_ms must be positive".into(),
            );
        }
        if let Some(digest) = &self.callback_token_sha256
            && (digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            problem(
                KeyPath::key("callback_token_sha256"),
                "callback_token_sha256 must be 64 hex digits (the SHA-256 of the token, never the token)".into(),
            );
        }
        let limit = |k: &str| KeyPath::key("limits").then(k);
        if self.limits.timeout_ms == 0 {
            problem(
                limit("timeout_ms"),
                "limits.timeout_ms must be positive".into(),
            );
        }
        if self.limits.max_batch == Some(0) {
            problem(
                limit("max_batch"),
                "limits.max_batch must be at least 1".into(),
            );
        }
        if self.limits.rate_per_second == Some(0) {
            problem(
                limit("rate_per_second"),
                "limits.rate_per_second must be positive".into(),
            );
        }
        if self.limits.max_concurrency == Some(0) {
            problem(
                limit("max_concurrency"),
                "limits.max_concurrency must be positive".into(),
            );
        }
        if self.limits.hedge_percent > 100 {
            problem(
                limit("hedge_percent"),
                "limits.hedge_percent is a percentage of messages: at most 100".into(),
            );
        }
        if let Some(hours) = &self.business_hours {
            for (key, message) in hours.problems() {
                problem(KeyPath::key("business_hours").then(key), message);
            }
        }
        problems
    }
}

/// An agency the gateway can talk to: its file, the dialect built for it
/// with that file's options (encoding, batch size), and its resolved
/// connection (auth header values, TLS material).
#[derive(Debug, Clone)]
pub struct Agency {
    pub config: AgencyConfig,
    pub dialect: Arc<dyn Dialect>,
    pub connection: Connection,
}

impl Agency {
    /// Builds the agency with its dialect from `dialects`, and resolves its
    /// references (environment variables, secret and TLS files).
    pub fn new(
        config: AgencyConfig,
        dialects: &crate::catalog::DialectSet,
    ) -> Result<Self, String> {
        let connection = Connection::resolve(&config).map_err(|problems| {
            let first = problems
                .first()
                .map(|(path, _)| path.to_string())
                .unwrap_or_default();
            let messages: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
            config.at_key(&first, messages.join("; "))
        })?;
        let dialect = dialects
            .for_agency(&config, connection.signing_key.clone())
            .map_err(|e| config.at_key(AgencyConfig::dialect_key(&e), e))?;
        Ok(Self {
            config,
            dialect,
            connection,
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn asset_kind(&self) -> AssetKind {
        self.config.asset_kind()
    }
}

/// One error in one configuration file. A message that starts with
/// `line N: ` carries the line of the mistake (see [`ConfigError::at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

impl ConfigError {
    /// An error at `line` of `file` (when known).
    pub fn at(file: &Path, line: Option<usize>, message: impl fmt::Display) -> Self {
        Self {
            file: file.to_owned(),
            message: match line {
                Some(line) => format!("line {line}: {message}"),
                None => message.to_string(),
            },
        }
    }

    /// The line of the mistake, when known.
    pub fn line(&self) -> Option<usize> {
        let rest = self.message.strip_prefix("line ")?;
        let (n, _) = rest.split_once(": ")?;
        n.parse().ok()
    }

    /// The message without its line.
    pub fn text(&self) -> &str {
        match self.line() {
            Some(_) => self
                .message
                .split_once(": ")
                .map_or(self.message.as_str(), |(_, m)| m),
            None => &self.message,
        }
    }
}

impl fmt::Display for ConfigError {
    /// `config/agencies/bank-a.toml: line 9: unknown key colour ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// Every error found in a set of files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Loads every `*.toml` in `dir`, sorted by id. Refuses the whole set, with
/// every error, when any file is wrong or two files share an id.
pub fn load_agencies(dir: &Path) -> Result<Vec<AgencyConfig>, ConfigErrors> {
    load_agency_files(dir).map(|files| files.into_iter().map(|(_, a)| a).collect())
}

/// Like `load_agencies`, keeping each agency's file for later messages.
pub fn load_agency_files(dir: &Path) -> Result<Vec<(PathBuf, AgencyConfig)>, ConfigErrors> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigErrors(vec![ConfigError::at(
            dir,
            None,
            format!("cannot read the agency folder: {e}"),
        )])
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut errors = Vec::new();
    let mut by_id: BTreeMap<String, (PathBuf, AgencyConfig)> = BTreeMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError::at(&file, None, e));
                continue;
            }
        };
        match parse_agency(&file, &text) {
            Ok(agency) => {
                if let Some((first, _)) = by_id.get(&agency.id) {
                    errors.push(ConfigError::at(
                        &file,
                        agency.line_of("id"),
                        format!("id {:?} is already used by {}", agency.id, first.display()),
                    ));
                } else {
                    by_id.insert(agency.id.clone(), (file, agency));
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(by_id.into_values().collect())
}

#[cfg(test)]
mod tests;
