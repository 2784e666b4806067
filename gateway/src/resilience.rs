//! Per-agency protection: every message to an agency goes through that
//! agency's tower stack, each concern a small layer of its own, tested on
//! its own over a fake inner service (`resilience/*.rs`; each concern is an
//! `layer::Around`, made a tower `Layer` by `AroundLayer`; the concurrency
//! bound, the load shedding and the retries are tower's own), composed in
//! `stack.rs`:
//!
//! ```text
//! observe ─▶ retry ─▶ hedge ─▶ load shed ─▶ concurrency ─▶ rate ─▶ breaker ─▶ audit ─▶ tally ─▶ timeout ─▶ exchange
//! (span,     (inquiries only)  (inquiries:  (max_         (quota,  (consecutive (outbound  (recent    (agency's   (HTTP)
//!  refusals)                    busy, not    concurrency)  refuses) failures)    row first, traffic)   timeout_ms,
//!                               waiting)                                        reply row)            deadline)
//! ```
//!
//! The layers that refuse (load shed, rate, breaker) stand outside the
//! audit layer: a refused call leaves no outbound audit row, and every
//! message that really leaves (each retry included) has its outbound row
//! committed first. A refusal is an error (`CallError::Refused`) that the
//! dispatcher and the order worker turn into their durable behaviour: a
//! quota refusal defers the task, a busy agency leaves it for later, an
//! open breaker is `circuit_open` for inquiries and a wait for polls and
//! orders. Control orders get the same stack without retry and without
//! load shedding: they are never retried blindly (`order_worker.rs`).
//!
//! An agency's runtime (`runtime.rs`) builds its two stacks once, from
//! its guard (`Guards` keeps each agency's breaker and token bucket across
//! reloads while the agency's limits stay the same), its concurrency
//! semaphore and its metric handles; a call clones a stack.

pub mod audit;
pub mod breaker;
pub mod call;
pub mod exchange;
pub mod hedge;
pub mod layer;
pub mod observe;
pub mod rate;
pub mod retry;
pub mod stack;
pub mod tally;
pub mod timeout;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tower::retry::budget::TpsBudget;

pub use breaker::{Breaker, Open};
pub use call::{AgencyCall, CallError, ExchangeAudit, Refusal};
pub use rate::Bucket;

use crate::metrics::recent::Recorder;

/// One agency's protection state, shared by every stack built for it.
#[derive(Debug)]
pub struct Guard {
    pub breaker: Arc<Breaker>,
    /// The agency's quota (`rate_per_second`), when it has one.
    pub bucket: Option<Arc<Bucket>>,
    /// Its recent answers' latencies, for hedging.
    pub latencies: Arc<hedge::Latencies>,
    /// The share of messages that may be hedged (`hedge_percent`).
    pub hedges: Option<Arc<TpsBudget>>,
    rate: u32,
    hedge_percent: u32,
}

/// Every agency's guard, by id, kept across reloads while the agency's
/// limits stay the same; and every agency's recorder of recent traffic
/// (`metrics::recent`), kept for as long as the gateway runs.
#[derive(Debug, Default, Clone)]
pub struct Guards {
    by_agency: Arc<Mutex<HashMap<String, Arc<Guard>>>>,
    recorders: Arc<Mutex<HashMap<String, Arc<Recorder>>>>,
}

impl Guards {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Guard>>> {
        self.by_agency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The guard of agency `id` with these limits (a changed limit gets a
    /// fresh guard).
    pub fn get(&self, id: &str, limits: &adapters::agency::Limits) -> Arc<Guard> {
        let mut map = self.map();
        let rate = limits.rate_per_second.unwrap_or(0);
        let cooldown = Duration::from_millis(limits.breaker_cooldown_ms);
        if let Some(g) = map.get(id)
            && g.breaker.has_settings(limits.breaker_failures, cooldown)
            && g.rate == rate
            && g.hedge_percent == limits.hedge_percent
        {
            return g.clone();
        }
        let guard = Arc::new(Guard {
            breaker: Arc::new(Breaker::new(limits.breaker_failures, cooldown)),
            bucket: NonZeroU32::new(rate)
                .map(|r| Arc::new(RateLimiter::direct(Quota::per_second(r)))),
            latencies: Arc::default(),
            hedges: hedge::Hedge::budget(limits.hedge_percent),
            rate,
            hedge_percent: limits.hedge_percent,
        });
        map.insert(id.to_owned(), guard.clone());
        guard
    }

    /// The recorder of agency `id`'s recent traffic: the same one for the
    /// gateway's life, whatever reloads change.
    pub fn recorder(&self, id: &str) -> Arc<Recorder> {
        self.recorders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// The breaker state of every agency that has a guard.
    pub fn states(&self) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> = self
            .map()
            .iter()
            .map(|(id, g)| (id.clone(), g.breaker.state_name()))
            .collect();
        out.sort();
        out
    }

    pub fn state_of(&self, id: &str) -> &'static str {
        self.map()
            .get(id)
            .map_or("closed", |g| g.breaker.state_name())
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_is_kept_while_the_limits_stay_the_same() {
        let limits = adapters::agency::Limits {
            rate_per_second: Some(5),
            ..adapters::agency::Limits::default()
        };
        let guards = Guards::default();
        let g = guards.get("bank-a", &limits);
        assert!(g.bucket.is_some());
        assert!(Arc::ptr_eq(&g, &guards.get("bank-a", &limits)));
        let other = adapters::agency::Limits::default();
        let fresh = guards.get("bank-a", &other);
        assert!(!Arc::ptr_eq(&g, &fresh));
        assert!(fresh.bucket.is_none(), "no quota, no bucket");
        assert_eq!(guards.states(), vec![("bank-a".to_owned(), "closed")]);
        assert_eq!(guards.state_of("unknown"), "closed");
    }
}
