//! The set of agencies the gateway talks to, by id.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use adapters::agency::Agency;
use adapters::agency::AgencyConfig;
use adapters::model::AssetKind;

/// Every agency, by id.
#[derive(Debug, Clone, Default)]
pub struct AgencyRegistry {
    by_id: BTreeMap<String, Arc<Agency>>,
}

impl AgencyRegistry {
    /// Builds the registry; fails with every agency whose dialect cannot be
    /// built.
    pub fn new(configs: Vec<AgencyConfig>) -> Result<Self, Vec<String>> {
        let mut by_id = BTreeMap::new();
        let mut errors = Vec::new();
        for config in configs {
            let id = config.id.clone();
            match Agency::new(config) {
                Ok(agency) => {
                    by_id.insert(id, Arc::new(agency));
                }
                Err(e) => errors.push(format!("agency {id}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(Self { by_id })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Agency>> {
        self.by_id.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Agency>> {
        self.by_id.values()
    }

    /// Enabled agencies that serve any of `kinds`, in id order.
    pub fn serving(&self, kinds: &[AssetKind]) -> Vec<&Arc<Agency>> {
        self.by_id
            .values()
            .filter(|a| a.config.enabled && kinds.contains(&a.config.asset_kind()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
