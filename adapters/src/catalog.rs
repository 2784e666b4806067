//! The catalog: every dialect and every agency an onboarding engineer has
//! configured, loaded and checked together. A catalog with any error is
//! refused whole, every error listed with its file (and line where known),
//! so a running gateway never swaps in half a configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::agency::{Agency, AgencyConfig, ConfigError, ConfigErrors, load_agency_files};
use crate::dialect::Dialect;
use crate::engine::{CompiledDialect, DeclaredDialect};

/// The dialects agency files may name: every dialect file of a folder,
/// compiled.
#[derive(Debug, Clone, Default)]
pub struct DialectSet {
    by_name: BTreeMap<String, Arc<CompiledDialect>>,
}

impl DialectSet {
    /// Loads and compiles every `*.toml` of `dir`. Refuses the set, with every
    /// error of every file, when any is wrong or two share a name.
    pub fn load(dir: &Path) -> Result<Self, ConfigErrors> {
        let dir_error = |message: String| {
            ConfigErrors(vec![ConfigError {
                file: dir.to_owned(),
                message,
            }])
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| dir_error(format!("cannot read the dialect folder: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut errors = Vec::new();
        let mut by_name: BTreeMap<String, (PathBuf, Arc<CompiledDialect>)> = BTreeMap::new();
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
            match CompiledDialect::from_toml(&text) {
                Ok(dialect) => {
                    if let Some((first, _)) = by_name.get(dialect.name()) {
                        errors.push(ConfigError {
                            message: format!(
                                "dialect {:?} is already defined by {}",
                                dialect.name(),
                                first.display()
                            ),
                            file,
                        });
                    } else {
                        by_name.insert(dialect.name().to_owned(), (file, Arc::new(dialect)));
                    }
                }
                Err(problems) => {
                    for message in problems {
                        let message = with_line(&text, message);
                        errors.push(ConfigError {
                            file: file.clone(),
                            message,
                        });
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Self {
            by_name: by_name.into_iter().map(|(k, (_, d))| (k, d)).collect(),
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<CompiledDialect>> {
        self.by_name.get(name)
    }

    /// Builds the dialect an agency names, with the agency's options.
    /// The dialect an agency file names, with the file's options and the
    /// agency's signing key (`auth.signing_key`, resolved).
    pub fn for_agency(
        &self,
        agency: &AgencyConfig,
        signing_key: Option<crate::agency::Secret>,
    ) -> Result<Arc<dyn Dialect>, String> {
        let dialect = self.by_name.get(&agency.dialect).ok_or_else(|| {
            format!(
                "dialect {:?} is unknown (dialect files define: {})",
                agency.dialect,
                self.names().join(", ")
            )
        })?;
        let declared = DeclaredDialect::new(
            dialect.clone(),
            agency.encoding.as_deref(),
            agency.limits.max_batch,
        )?
        .with_signing_key(signing_key)?;
        Ok(Arc::new(declared))
    }
}

/// Adds the line of the key a message names (`inquiry.reply.assets[0].fields.x: ...`)
/// when the parser did not say it already.
fn with_line(text: &str, message: String) -> String {
    if message.contains("line ") {
        return message;
    }
    let key = message.split(':').next().unwrap_or_default();
    let last = key
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .split('[')
        .next()
        .unwrap_or_default();
    if last.is_empty() {
        return message;
    }
    let line = text.lines().position(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("fields.").unwrap_or(l);
        l.strip_prefix(last)
            .is_some_and(|rest| rest.trim_start().starts_with('=') || rest.starts_with(']'))
            || l.starts_with(&format!("[{key}"))
    });
    match line {
        Some(n) => format!("line {}: {message}", n + 1),
        None => message,
    }
}

/// A checked set of agencies with their dialects.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub dialects: DialectSet,
    pub agencies: Vec<Agency>,
}

impl Catalog {
    /// Loads the dialect files of `dialects_dir` and the agency files of
    /// `agencies_dir`, then `base_urls` replaces the `base_url` of the agencies
    /// it names (the demo points agencies at in-process mocks this way).
    pub fn load(
        agencies_dir: &Path,
        dialects_dir: &Path,
        base_urls: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigErrors> {
        let dialects = DialectSet::load(dialects_dir);
        let agencies = load_agency_files(agencies_dir);
        let (dialects, files) = match (dialects, agencies) {
            (Ok(d), Ok(a)) => (d, a),
            (d, a) => {
                let mut errors = Vec::new();
                if let Err(ConfigErrors(e)) = d {
                    errors.extend(e);
                }
                if let Err(ConfigErrors(e)) = a {
                    errors.extend(e);
                }
                return Err(ConfigErrors(errors));
            }
        };
        Self::build(dialects, files, base_urls)
    }

    /// Builds the catalog from agency configurations already parsed.
    pub fn build(
        dialects: DialectSet,
        files: Vec<(PathBuf, AgencyConfig)>,
        base_urls: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut agencies = Vec::with_capacity(files.len());
        for (file, mut config) in files {
            if let Some(url) = base_urls.get(&config.id) {
                config.base_url = url.clone();
            }
            match Agency::new(config, &dialects) {
                Ok(agency) => agencies.push(agency),
                Err(message) => errors.push(ConfigError { file, message }),
            }
        }
        if errors.is_empty() {
            Ok(Self { dialects, agencies })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}
