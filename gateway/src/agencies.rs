//! The agencies the gateway talks to: a versioned set (`AgencyRegistry`)
//! built from the catalog, and the swappable holder of the current set and
//! of the older ones that running inquiries still use (`AgencySets`).
//!
//! A reload builds a whole new registry and swaps it in atomically; readers
//! never take a lock (arc-swap). An inquiry records the version it started
//! with and is dispatched on that version as long as the process keeps it;
//! a version no running inquiry uses is dropped. After a restart only the
//! current set exists, and older inquiries fall back to it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

pub use adapters::agency::Agency;
use adapters::agency::{AgencyConfig, ConfigError, ConfigErrors};
use adapters::catalog::Catalog;
use adapters::model::AssetKind;
use arc_swap::ArcSwap;

use crate::runtime::{AgencyRuntime, RuntimeParts};

/// An agency ready to be sent to: its configuration and dialect (the
/// codec), and its runtime (channel, guard, bound, metrics, stacks), which
/// versions of the set share while the agency's limits and connection
/// stand (`runtime.rs`).
#[derive(Debug)]
pub struct AgencyLink {
    pub agency: Arc<Agency>,
    pub runtime: Arc<AgencyRuntime>,
}

impl AgencyLink {
    pub fn config(&self) -> &AgencyConfig {
        &self.agency.config
    }

    pub fn id(&self) -> &str {
        &self.agency.config.id
    }
}

/// One version of the agency set, by id.
#[derive(Debug)]
pub struct AgencyRegistry {
    version: String,
    loaded_at_ms: i64,
    dialects: usize,
    by_id: BTreeMap<String, Arc<AgencyLink>>,
    /// The longest exchange timeout of any agency in the set.
    max_timeout_ms: Option<u64>,
}

impl AgencyRegistry {
    /// Builds the set from a checked catalog: one runtime per agency (a TLS
    /// file that does not parse is refused here, with the agency's line).
    /// An agency of `previous` whose runtime still fits keeps it.
    pub fn build(
        catalog: Catalog,
        parts: &RuntimeParts,
        agencies_dir: &Path,
        previous: Option<&AgencyRegistry>,
    ) -> Result<Self, ConfigErrors> {
        let dialects = catalog.dialects.names().len();
        let mut errors = Vec::new();
        let mut by_id = BTreeMap::new();
        for agency in catalog.agencies {
            let before = previous
                .and_then(|p| p.get(agency.id()))
                .map(|l| &l.runtime);
            let runtime = match AgencyRuntime::for_agency(&agency, parts, before) {
                Ok(r) => r,
                Err(message) => {
                    let key = if message.starts_with("tls") {
                        "tls"
                    } else {
                        "auth"
                    };
                    errors.push(ConfigError::at(
                        agencies_dir,
                        None,
                        agency
                            .config
                            .at_key(key, format!("agency {}: {message}", agency.id())),
                    ));
                    continue;
                }
            };
            by_id.insert(
                agency.config.id.clone(),
                Arc::new(AgencyLink {
                    agency: Arc::new(agency),
                    runtime,
                }),
            );
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let max_timeout_ms = by_id.values().map(|a| a.config().limits.timeout_ms).max();
        Ok(Self {
            version: format!("cfg_{}", uuid::Uuid::now_v7().simple()),
            loaded_at_ms: chrono::Utc::now().timestamp_millis(),
            dialects,
            by_id,
            max_timeout_ms,
        })
    }

    /// This set's version id, recorded on every inquiry started with it.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn loaded_at_ms(&self) -> i64 {
        self.loaded_at_ms
    }

    /// How many dialects the catalog of this set held.
    pub fn dialect_count(&self) -> usize {
        self.dialects
    }

    pub fn get(&self, id: &str) -> Option<&Arc<AgencyLink>> {
        self.by_id.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<AgencyLink>> {
        self.by_id.values()
    }

    /// Enabled agencies that serve any of `kinds`, in id order.
    pub fn serving(&self, kinds: &[AssetKind]) -> Vec<&Arc<AgencyLink>> {
        self.by_id
            .values()
            .filter(|a| a.config().enabled && kinds.contains(&a.config().asset_kind()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The current set and the retired ones still in use.
#[derive(Debug)]
struct Sets {
    current: Arc<AgencyRegistry>,
    retired: BTreeMap<String, Arc<AgencyRegistry>>,
}

/// The swappable agency sets. Reads are lock-free; reloads are serialised
/// by the caller (`reload::reload`).
#[derive(Debug)]
pub struct AgencySets {
    sets: ArcSwap<Sets>,
    /// The last reload this gateway ran (`reload::reload`), if any.
    last_reload: std::sync::Mutex<Option<crate::reload::LastReload>>,
}

impl AgencySets {
    pub fn new(registry: AgencyRegistry) -> Self {
        Self {
            sets: ArcSwap::from_pointee(Sets {
                current: Arc::new(registry),
                retired: BTreeMap::new(),
            }),
            last_reload: std::sync::Mutex::new(None),
        }
    }

    /// The last reload this gateway ran, and how it ended.
    pub fn last_reload(&self) -> Option<crate::reload::LastReload> {
        self.last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_last_reload(&self, last: crate::reload::LastReload) {
        *self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
    }

    /// The set new inquiries fan out to.
    pub fn current(&self) -> Arc<AgencyRegistry> {
        self.sets.load().current.clone()
    }

    /// The set an inquiry started with; the current one when that version
    /// is gone (after a restart, or on another instance).
    pub fn for_version(&self, version: Option<&str>) -> Arc<AgencyRegistry> {
        let sets = self.sets.load();
        match version {
            Some(v) if v != sets.current.version => sets
                .retired
                .get(v)
                .cloned()
                .unwrap_or_else(|| sets.current.clone()),
            _ => sets.current.clone(),
        }
    }

    /// The longest exchange timeout of any agency in any set kept (`None`
    /// with no agency at all).
    pub fn max_timeout_ms(&self) -> Option<u64> {
        let sets = self.sets.load();
        std::iter::once(&sets.current)
            .chain(sets.retired.values())
            .filter_map(|r| r.max_timeout_ms)
            .max()
    }

    /// Every agency link of every set kept, the current one first.
    pub fn all_links(&self) -> Vec<Arc<AgencyLink>> {
        let sets = self.sets.load();
        std::iter::once(&sets.current)
            .chain(sets.retired.values())
            .flat_map(|r| r.all().cloned())
            .collect()
    }

    /// Makes `next` current; the previous set is kept until no running
    /// inquiry uses it (see `prune`). Returns the previous set.
    pub fn replace(&self, next: AgencyRegistry) -> Arc<AgencyRegistry> {
        let next = Arc::new(next);
        let previous = self.current();
        self.sets.rcu(|sets| {
            let mut retired = sets.retired.clone();
            retired.insert(sets.current.version.clone(), sets.current.clone());
            retired.remove(&next.version);
            Sets {
                current: next.clone(),
                retired,
            }
        });
        previous
    }

    /// Versions kept besides the current one.
    pub fn retired_versions(&self) -> Vec<String> {
        self.sets.load().retired.keys().cloned().collect()
    }

    /// Retired sets nobody holds right now: candidates for `prune`. Taken
    /// before asking the store which versions running inquiries use, so an
    /// inquiry being created on a set (which holds it) is never missed.
    pub fn unheld_retired(&self) -> Vec<String> {
        let sets = self.sets.load();
        sets.retired
            .iter()
            // Held by the map alone (a reader's snapshot may add one more
            // for a moment: then the set is merely kept a little longer).
            .filter(|(_, r)| Arc::strong_count(r) <= 1)
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// Drops the `candidates` that no running inquiry uses.
    pub fn prune(&self, candidates: &[String], in_use: &HashSet<String>) -> usize {
        let drop: Vec<&String> = candidates.iter().filter(|v| !in_use.contains(*v)).collect();
        if drop.is_empty() {
            return 0;
        }
        self.sets.rcu(|sets| {
            let mut retired = sets.retired.clone();
            for v in &drop {
                retired.remove(*v);
            }
            Sets {
                current: sets.current.clone(),
                retired,
            }
        });
        drop.len()
    }
}
