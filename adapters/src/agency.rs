//! Agency files (`config/agencies/*.toml`, one per agency): what an agency is,
//! which dialect it speaks, where it is, and its limits.
//!
//! Loading collects every error of every file, each naming its file (and line
//! where the parser knows it), before refusing the set: an onboarding engineer
//! fixes them all in one go.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dialect::Dialect;
use crate::model::AssetKind;

/// What sort of institution an agency is; it decides which asset kinds the
/// agency serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgencyKind {
    Bank,
    Registry,
}

impl AgencyKind {
    pub fn asset_kind(self) -> AssetKind {
        match self {
            AgencyKind::Bank => AssetKind::BankAccount,
            AgencyKind::Registry => AssetKind::RealEstate,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AgencyKind::Bank => "bank",
            AgencyKind::Registry => "registry",
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_batch() -> usize {
    1
}
fn default_poll_interval_ms() -> u64 {
    1_000
}

/// One agency file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    /// Stable identifier, lowercase letters, digits and dashes: `bank-a`.
    pub id: String,
    /// Display name.
    pub name: String,
    pub kind: AgencyKind,
    /// The message format: the `name` of a dialect file.
    pub dialect: String,
    /// Where the agency listens; dialect paths are appended to it.
    pub base_url: String,
    /// A disabled agency is left out of fan-outs.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The text encoding of XML messages (`GB18030`, `GBK`, `UTF-8`).
    #[serde(default)]
    pub encoding: Option<String>,
    /// How long one HTTP exchange with the agency may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How many subjects one message may carry (dialects that batch).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How often to ask a submit-then-poll agency for its result.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

impl AgencyConfig {
    pub fn asset_kind(&self) -> AssetKind {
        self.kind.asset_kind()
    }

    /// Checks what serde cannot: identifier form, URL, limits. Whether the
    /// dialect exists is checked with the dialect files (`catalog`).
    fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.id.is_empty()
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            errors.push(format!(
                "id {:?} must be lowercase letters, digits and dashes",
                self.id
            ));
        }
        if self.dialect.trim().is_empty() {
            errors.push("dialect must name a dialect file".into());
        }
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => errors.push(format!(
                "base_url scheme {:?} is not http or https",
                u.scheme()
            )),
            Err(e) => errors.push(format!("base_url {:?}: {e}", self.base_url)),
        }
        if self.timeout_ms == 0 {
            errors.push("timeout_ms must be positive".into());
        }
        if self.max_batch == 0 {
            errors.push("max_batch must be at least 1".into());
        }
        if self.poll_interval_ms == 0 {
            errors.push("poll_interval_ms must be positive".into());
        }
        errors
    }
}

/// An agency the gateway can talk to: its file, and the dialect built for it
/// with that file's options (encoding, batch size).
#[derive(Debug, Clone)]
pub struct Agency {
    pub config: AgencyConfig,
    pub dialect: Arc<dyn Dialect>,
}

impl Agency {
    /// Builds the agency with its dialect from `dialects`.
    pub fn new(
        config: AgencyConfig,
        dialects: &crate::catalog::DialectSet,
    ) -> Result<Self, String> {
        let dialect = dialects.for_agency(&config)?;
        Ok(Self { config, dialect })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn asset_kind(&self) -> AssetKind {
        self.config.asset_kind()
    }
}

/// One error in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for ConfigError {
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

/// Parses one agency file's text. `file` is only used in error messages.
pub fn parse_agency(file: &Path, text: &str) -> Result<AgencyConfig, Vec<ConfigError>> {
    let err = |message: String| ConfigError {
        file: file.to_owned(),
        message,
    };
    let agency: AgencyConfig =
        toml::from_str(text).map_err(|e| vec![err(e.to_string().trim_end().to_owned())])?;
    let problems = agency.check();
    if problems.is_empty() {
        Ok(agency)
    } else {
        Err(problems.into_iter().map(err).collect())
    }
}

/// Loads every `*.toml` in `dir`, sorted by id. Refuses the whole set, with
/// every error, when any file is wrong or two files share an id.
pub fn load_agencies(dir: &Path) -> Result<Vec<AgencyConfig>, ConfigErrors> {
    load_agency_files(dir).map(|files| files.into_iter().map(|(_, a)| a).collect())
}

/// Like `load_agencies`, keeping each agency's file for later messages.
pub fn load_agency_files(dir: &Path) -> Result<Vec<(PathBuf, AgencyConfig)>, ConfigErrors> {
    let dir_error = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: dir.to_owned(),
            message,
        }])
    };
    let entries = std::fs::read_dir(dir).map_err(|e| dir_error(e.to_string()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut errors = Vec::new();
    let mut by_id: BTreeMap<String, (PathBuf, AgencyConfig)> = BTreeMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError {
                    file,
                    message: e.to_string(),
                });
                continue;
            }
        };
        match parse_agency(&file, &text) {
            Ok(agency) => {
                if let Some((first, _)) = by_id.get(&agency.id) {
                    errors.push(ConfigError {
                        message: format!(
                            "id {:?} is already used by {}",
                            agency.id,
                            first.display()
                        ),
                        file,
                    });
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
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "bank-a"
name = "Bank A"
kind = "bank"
dialect = "court-bank-xml"
base_url = "http://127.0.0.1:18101"
encoding = "GB18030"
max_batch = 20
"#;

    #[test]
    fn a_good_file_parses_with_defaults() {
        let a = parse_agency(Path::new("bank-a.toml"), GOOD).expect("valid");
        assert!(a.enabled);
        assert_eq!(a.timeout_ms, 10_000);
        assert_eq!(a.asset_kind(), AssetKind::BankAccount);
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let text = format!("{GOOD}colour = \"red\"\n");
        let errors = parse_agency(Path::new("bank-a.toml"), &text).expect_err("unknown key");
        let shown = errors[0].to_string();
        assert!(shown.contains("bank-a.toml"), "{shown}");
        assert!(shown.contains("colour"), "{shown}");
        assert!(shown.contains("line 9"), "{shown}");
    }

    #[test]
    fn every_problem_of_a_file_is_reported() {
        let text = GOOD
            .replace("bank-a\"", "Bank A\"")
            .replace("court-bank-xml", " ")
            .replace("http://127.0.0.1:18101", "ftp://x");
        let errors = parse_agency(Path::new("x.toml"), &text).expect_err("three problems");
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn a_directory_with_errors_is_refused_whole() {
        let dir = std::env::temp_dir().join(format!("agencies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("a.toml"), GOOD).expect("write");
        std::fs::write(dir.join("b.toml"), GOOD).expect("write");
        std::fs::write(dir.join("c.toml"), "id = ").expect("write");
        let errors = load_agencies(&dir).expect_err("duplicate and broken");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(errors.0.len(), 2, "{errors}");
        assert!(errors.to_string().contains("already used"));
    }
}
