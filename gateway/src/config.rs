//! The gateway's own settings (`config/gateway.toml`): where it listens, its
//! database, where the agency files are, who may call it, and its timing.
//!
//! Tokens never appear here, only their SHA-256 digests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use adapters::model::Court;
use serde::Deserialize;

use crate::auth::Role;

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_database_url() -> String {
    "sqlite://data/gateway.db".into()
}
fn default_agencies_dir() -> PathBuf {
    PathBuf::from("config/agencies")
}
fn default_dialects_dir() -> PathBuf {
    PathBuf::from("config/dialects")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address of the HTTP API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite://path/to/file.db` (created when missing).
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Directory of agency files, one `*.toml` per agency.
    #[serde(default = "default_agencies_dir")]
    pub agencies_dir: PathBuf,
    /// Directory of dialect files, one `*.toml` per message format.
    #[serde(default = "default_dialects_dir")]
    pub dialects_dir: PathBuf,
    /// The gateway's address as agencies reach it (for results they push to
    /// `/v1/callbacks/{agency}`). Default: `http://` and the listen address.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Replaces the `base_url` of the agencies named here, on every load and
    /// reload (the demo points agencies at its in-process mocks this way).
    #[serde(default)]
    pub agency_base_urls: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub inquiries: InquirySettings,
    #[serde(default)]
    pub dispatcher: DispatcherSettings,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub orders: OrderSettings,
    #[serde(default)]
    pub callbacks: CallbackSettings,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub console: ConsoleSettings,
    /// Who may call the API.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
    /// Serve the API over TLS (and optionally require client certificates).
    /// Absent: plain HTTP, for a gateway behind a TLS-terminating proxy or
    /// on one machine.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InquirySettings {
    /// After this long, agencies that have not answered are marked `timeout`
    /// and the inquiry completes.
    pub deadline_secs: u64,
    /// Upper bound of `?wait=`.
    pub max_wait_secs: u64,
}

impl Default for InquirySettings {
    fn default() -> Self {
        Self {
            deadline_secs: 600,
            max_wait_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherSettings {
    /// Agency exchanges in flight at once, across all agencies.
    pub max_in_flight: usize,
    /// How long a claimed task stays ours beyond its agency timeout (times
    /// `max_attempts`, with the retry waits); after a crash, another
    /// instance (or the restarted one) may claim it then.
    pub lease_grace_secs: u64,
    /// How often the dispatcher looks for due work when nothing wakes it.
    pub idle_tick_ms: u64,
    /// Sends of one inquiry message that got no answer, a server error or
    /// a 429, before the agency's status is final (inquiries only: control
    /// orders are never retried blindly).
    pub max_attempts: i64,
    /// The wait before the second attempt; it doubles for each next one,
    /// with jitter, and never passes the inquiry's deadline.
    pub retry_base_ms: u64,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            lease_grace_secs: 30,
            idle_tick_ms: 1_000,
            max_attempts: 3,
            retry_base_ms: 200,
        }
    }
}

/// Control orders and freeze plans.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderSettings {
    /// Officers a control order must name, each with both credentials
    /// ("two officers, two credentials").
    pub min_officers: usize,
    /// How many times a measure is sent while the agency keeps saying it has
    /// never seen it (it refused the message each time); then the order
    /// fails.
    pub max_send_attempts: i64,
    /// First wait before asking again about an order whose outcome is not
    /// known (doubles each time, up to `max_retry_ms`).
    pub retry_ms: u64,
    pub max_retry_ms: u64,
    /// How often a result the agency produces later is fetched.
    pub poll_interval_ms: u64,
    /// How often a waiting measure is looked at again, to learn of its
    /// promotion when the measure ahead of it is lifted.
    pub waiting_poll_ms: u64,
    /// Measures ending within this many days are reported to their caller.
    pub expiry_warning_days: u32,
    /// How often lapsed measures and coming expiries are looked for.
    pub expiry_sweep_ms: u64,
    /// Agency exchanges for orders in flight at once.
    pub max_in_flight: usize,
    /// In what order a freeze plan tries the accounts an inquiry found.
    pub plan_account_order: PlanAccountOrder,
}

impl Default for OrderSettings {
    fn default() -> Self {
        Self {
            min_officers: 2,
            max_send_attempts: 5,
            retry_ms: 1_000,
            max_retry_ms: 60_000,
            poll_interval_ms: 2_000,
            waiting_poll_ms: 300_000,
            expiry_warning_days: 14,
            expiry_sweep_ms: 60_000,
            max_in_flight: 64,
            plan_account_order: PlanAccountOrder::LargestAvailableFirst,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAccountOrder {
    /// The account with the most available money first: fewest messages,
    /// fewest accounts disturbed.
    LargestAvailableFirst,
    /// As the inquiry listed them.
    AsFound,
}

/// The audit log: signed checkpoints and retention of message bodies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The Ed25519 key checkpoints are signed with: a file holding the
    /// 32-byte seed in hex. Without it no checkpoints are signed.
    pub signing_key_file: Option<PathBuf>,
    /// The public key (hex) checkpoints are verified with; by default the
    /// signing key's. Auditors verify with this alone.
    pub verify_key: Option<String>,
    /// A checkpoint after this many rows...
    pub checkpoint_every_rows: i64,
    /// ...or this many seconds, whichever comes first.
    pub checkpoint_every_secs: u64,
    /// Message bodies older than this many days are purged (their digests
    /// and the chain stay). None keeps them forever.
    pub body_retention_days: Option<u32>,
    /// How often the retention job runs.
    pub retention_sweep_secs: u64,
    /// Bound of the writer's queue: beyond it, recording waits.
    pub queue_capacity: usize,
    /// Refused calls (401, 403) of one source (a caller, or a token's or
    /// client certificate's fingerprint) recorded one by one per interval;
    /// beyond, they are only counted (`refusals.rs`).
    pub refusals_per_source: u32,
    /// That interval; when it ends, one summary row per source says how
    /// many refusals were only counted.
    pub refusal_interval_secs: u64,
    /// Sources counted at once; refusals of further sources share one
    /// overflow count.
    pub refusal_max_sources: usize,
    /// An evidence bundle (`GET /v1/audit/bundle`) holds at most this many
    /// rows matching its filter; more is refused (422 `too_many_rows`).
    pub bundle_max_rows: usize,
    /// ...and at most this many further rows its chain proofs pass
    /// through (rows of other cases between a matching row and the
    /// checkpoint that signs it).
    pub bundle_max_links: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            verify_key: None,
            checkpoint_every_rows: 1_000,
            checkpoint_every_secs: 60,
            body_retention_days: None,
            retention_sweep_secs: 3_600,
            queue_capacity: 4_096,
            refusals_per_source: 20,
            refusal_interval_secs: 60,
            refusal_max_sources: 1_024,
            bundle_max_rows: 100_000,
            bundle_max_links: 1_000_000,
        }
    }
}

impl AuditSettings {
    /// The checkpoint signing key, when one is configured.
    pub fn signing_key(&self) -> Result<Option<ed25519_dalek::SigningKey>, String> {
        let Some(path) = &self.signing_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "audit.signing_key_file: cannot read {}: {e}",
                path.display()
            )
        })?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "audit.signing_key_file: {} must hold a 32-byte Ed25519 seed in hex",
                    path.display()
                )
            })?;
        Ok(Some(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The key checkpoints are verified with: `verify_key`, else the
    /// signing key's public half.
    pub fn verifying_key(&self) -> Result<Option<ed25519_dalek::VerifyingKey>, String> {
        if let Some(hex_key) = &self.verify_key {
            return crate::verify::verifying_key(hex_key)
                .map(Some)
                .map_err(|e| format!("audit.verify_key: {e}"));
        }
        Ok(self.signing_key()?.map(|k| k.verifying_key()))
    }
}

/// The web console (`/console`): people sign in with a caller's token and
/// get a session cookie.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Serve the console at all.
    pub enabled: bool,
    /// A session unused this long ends (measured to the minute).
    pub session_idle_minutes: u64,
    /// A session ends this long after sign-in, however busy.
    pub session_absolute_minutes: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle_minutes: 30,
            session_absolute_minutes: 8 * 60,
        }
    }
}

impl ConsoleSettings {
    pub fn idle_ms(&self) -> i64 {
        i64::try_from(self.session_idle_minutes * 60_000).unwrap_or(i64::MAX)
    }

    pub fn absolute_ms(&self) -> i64 {
        i64::try_from(self.session_absolute_minutes * 60_000).unwrap_or(i64::MAX)
    }
}

/// Signed callbacks to callers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackSettings {
    /// Attempts before a callback is given up (each is audited).
    pub max_attempts: i64,
    /// Wait before the second attempt; doubles up to `max_retry_ms`, with
    /// jitter.
    pub retry_ms: u64,
    pub max_retry_ms: u64,
    pub timeout_ms: u64,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            retry_ms: 1_000,
            max_retry_ms: 600_000,
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body the API accepts (413 beyond).
    pub max_request_bytes: usize,
    /// Largest agency reply the gateway reads (a bigger one is `bad_reply`).
    pub max_reply_bytes: usize,
    /// Longest path and query a request may have (414 beyond).
    pub max_uri_bytes: usize,
    /// How long a client has to send a request's line and headers: on a
    /// new connection from its opening, on a kept-alive one from the first
    /// byte of the next request. Then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// How long a request body may take to arrive once the gateway starts
    /// reading it (408 beyond).
    pub body_read_timeout_ms: u64,
    /// How long a kept-alive connection may wait for its next request with
    /// nothing in flight before the gateway closes it.
    pub idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 256 * 1024,
            max_reply_bytes: 8 * 1024 * 1024,
            max_uri_bytes: 8 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// One caller of the API: a court's enforcement system, an auditor, or an
/// operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the bearer token. A caller needs a token, a client
    /// certificate, or both.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Hex SHA-256 of the caller's client certificate (DER), as
    /// `openssl x509 -noout -fingerprint -sha256` prints it (colons allowed).
    /// The caller is then known by that certificate, over TLS with a
    /// `tls.client_ca_file`; its token alone no longer admits it.
    #[serde(default)]
    pub client_cert_sha256: Option<String>,
    /// The court an enforcement caller acts for; agencies see it on every
    /// message.
    #[serde(default)]
    pub court: Option<Court>,
    /// Requests per second this caller may make (429 beyond); absent, no
    /// limit.
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// Requests it may make at once above that rate (default: one second's
    /// worth).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Where the gateway POSTs the caller's resources when they reach a
    /// final state (and expiry warnings), signed with HMAC-SHA256.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The signing secret, from this environment variable...
    #[serde(default)]
    pub callback_secret_env: Option<String>,
    /// ...or this file (never inline).
    #[serde(default)]
    pub callback_secret_file: Option<PathBuf>,
}

impl CallerConfig {
    /// The client certificate's fingerprint, normalised (lower-case hex, no
    /// colons), when one is configured.
    pub fn client_cert_fingerprint(&self) -> Option<Result<String, String>> {
        let raw = self.client_cert_sha256.as_ref()?;
        let hex: String = raw
            .chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Some(
            if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                Ok(hex)
            } else {
                Err(format!(
                    "caller {:?}: client_cert_sha256 must be 64 hex digits (colons allowed)",
                    self.name
                ))
            },
        )
    }

    /// The callback signing secret, read from where the configuration says.
    pub fn callback_secret(&self) -> Result<Option<Vec<u8>>, String> {
        match (&self.callback_secret_env, &self.callback_secret_file) {
            (Some(_), Some(_)) => Err(format!(
                "caller {:?}: name callback_secret_env or callback_secret_file, not both",
                self.name
            )),
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().as_bytes().to_vec())),
                _ => Err(format!(
                    "caller {:?}: environment variable {var} (callback_secret_env) is not set",
                    self.name
                )),
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().as_bytes().to_vec())),
                Ok(_) => Err(format!(
                    "caller {:?}: {} (callback_secret_file) is empty",
                    self.name,
                    path.display()
                )),
                Err(e) => Err(format!(
                    "caller {:?}: cannot read {} (callback_secret_file): {e}",
                    self.name,
                    path.display()
                )),
            },
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl GatewayConfig {
    /// Loads the agencies and dialects this configuration names.
    pub fn load_catalog(
        &self,
    ) -> Result<adapters::catalog::Catalog, adapters::agency::ConfigErrors> {
        adapters::catalog::Catalog::load(
            &self.agencies_dir,
            &self.dialects_dir,
            &self.agency_base_urls,
        )
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: GatewayConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let client_certs = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        for c in &self.callers {
            if let Some(token) = &c.token_sha256
                && (token.len() != 64 || hex::decode(token).is_err())
            {
                problems.push(format!(
                    "caller {:?}: token_sha256 must be 64 hex digits",
                    c.name
                ));
            }
            match c.client_cert_fingerprint() {
                Some(Err(e)) => problems.push(e),
                Some(Ok(_)) if !client_certs => problems.push(format!(
                    "caller {:?}: client_cert_sha256 needs [tls] with a client_ca_file",
                    c.name
                )),
                None if c.token_sha256.is_none() => problems.push(format!(
                    "caller {:?}: needs token_sha256, client_cert_sha256 or both",
                    c.name
                )),
                _ => {}
            }
            if c.role == Role::Enforcement && c.court.is_none() {
                problems.push(format!(
                    "caller {:?}: an enforcement caller needs its [callers.court]",
                    c.name
                ));
            }
        }
        for c in &self.callers {
            if let Some(url) = &c.callback_url {
                match reqwest::Url::parse(url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                    _ => problems.push(format!(
                        "caller {:?}: callback_url must be an absolute http(s) URL",
                        c.name
                    )),
                }
                match c.callback_secret() {
                    Ok(Some(_)) => {}
                    Ok(None) => problems.push(format!(
                        "caller {:?}: a callback_url needs callback_secret_env or \
                         callback_secret_file to sign with",
                        c.name
                    )),
                    Err(e) => problems.push(e),
                }
            }
        }
        if self.audit.checkpoint_every_rows < 1 || self.audit.queue_capacity == 0 {
            problems.push(
                "audit.checkpoint_every_rows and audit.queue_capacity must be positive".into(),
            );
        }
        if self.audit.bundle_max_rows == 0 || self.audit.bundle_max_links == 0 {
            problems
                .push("audit.bundle_max_rows and audit.bundle_max_links must be positive".into());
        }
        if !(1..=crate::refusals::MAX_INTERVAL.as_secs())
            .contains(&self.audit.refusal_interval_secs)
        {
            problems.push("audit.refusal_interval_secs is 1 to 86400".into());
        }
        if self.orders.min_officers == 0 || self.orders.max_in_flight == 0 {
            problems.push("orders.min_officers and orders.max_in_flight must be positive".into());
        }
        if self.orders.max_send_attempts < 1 || self.callbacks.max_attempts < 1 {
            problems.push(
                "orders.max_send_attempts and callbacks.max_attempts must be at least 1".into(),
            );
        }
        if self.inquiries.max_wait_secs > 300 {
            problems.push("inquiries.max_wait_secs is at most 300".into());
        }
        if let Some(tls) = &self.tls
            && let Err(e) = tls.server_config()
        {
            problems.push(e);
        }
        let limits = &self.limits;
        if [
            limits.header_read_timeout_ms,
            limits.body_read_timeout_ms,
            limits.idle_timeout_ms,
        ]
        .contains(&0)
            || limits.max_uri_bytes == 0
        {
            problems.push("limits.max_uri_bytes and limits.*_timeout_ms must be positive".into());
        }
        let console = &self.console;
        if !(1..=24 * 60).contains(&console.session_idle_minutes)
            || !(console.session_idle_minutes..=7 * 24 * 60)
                .contains(&console.session_absolute_minutes)
        {
            problems.push(
                "console.session_idle_minutes is 1 to 1440, and \
                 console.session_absolute_minutes from it to 10080 (a week)"
                    .into(),
            );
        }
        if self.dispatcher.max_in_flight == 0 {
            problems.push("dispatcher.max_in_flight must be positive".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
