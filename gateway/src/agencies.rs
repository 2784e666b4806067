//! The set of agencies the gateway talks to, by id.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use adapters::agency::Agency;
use adapters::catalog::Catalog;
use adapters::model::AssetKind;

/// Every agency, by id.
#[derive(Debug, Clone, Default)]
pub struct AgencyRegistry {
    by_id: BTreeMap<String, Arc<Agency>>,
}

impl AgencyRegistry {
    pub fn new(catalog: Catalog) -> Self {
        let by_id = catalog
            .agencies
            .into_iter()
            .map(|a| (a.config.id.clone(), Arc::new(a)))
            .collect();
        Self { by_id }
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
