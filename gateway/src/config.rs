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
    /// Who may call the API.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
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
    /// How long a claimed task stays ours beyond its agency timeout; after a
    /// crash, another instance (or the restarted one) may claim it then.
    pub lease_grace_secs: u64,
    /// How often the dispatcher looks for due work when nothing wakes it.
    pub idle_tick_ms: u64,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            lease_grace_secs: 30,
            idle_tick_ms: 1_000,
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 256 * 1024,
            max_reply_bytes: 8 * 1024 * 1024,
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
    /// Hex SHA-256 of the bearer token.
    pub token_sha256: String,
    /// The court an enforcement caller acts for; agencies see it on every
    /// message.
    #[serde(default)]
    pub court: Option<Court>,
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
        for c in &self.callers {
            if c.token_sha256.len() != 64 || hex::decode(&c.token_sha256).is_err() {
                problems.push(format!(
                    "caller {:?}: token_sha256 must be 64 hex digits",
                    c.name
                ));
            }
            if c.role == Role::Enforcement && c.court.is_none() {
                problems.push(format!(
                    "caller {:?}: an enforcement caller needs its [callers.court]",
                    c.name
                ));
            }
        }
        if self.inquiries.max_wait_secs > 300 {
            problems.push("inquiries.max_wait_secs is at most 300".into());
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
