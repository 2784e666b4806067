//! Bounds how much of the audit log refused API calls (401, 403) may take,
//! so a flood of bad tokens cannot drown it.
//!
//! Refusals are counted per source (a caller's name, or a fingerprint of
//! the token or certificate presented) in windows of
//! `audit.refusal_interval_secs` that open at the source's first refusal.
//! The first `audit.refusals_per_source` refusals of a window are recorded
//! one by one (`api/refusals.rs` writes them); the rest are only counted,
//! and when the window ends, or the gateway stops, one summary row says how
//! many there were, by error code. Memory is bounded: past
//! `audit.refusal_max_sources` open windows, further sources share one
//! overflow window.
//!
//! It must never hold what a client presented (a token, a query string):
//! only the source's name, which is a caller's name or a fingerprint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::audit::{AuditLog, AuditRecord, Direction};
use crate::config::AuditSettings;

/// The source named on the summary of refusals from sources beyond
/// `audit.refusal_max_sources`.
pub const OVERFLOW_SOURCE: &str = "overflow";

/// The longest interval `audit.refusal_interval_secs` may name.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// What becomes of one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Record it as a row of its own.
    Record,
    /// Only count it, for the source's summary.
    Count,
}

/// What one source's window only counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSummary {
    pub source: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Refusals recorded one by one in the window.
    pub recorded: u32,
    /// Refusals only counted, by error code.
    pub counted: BTreeMap<&'static str, u64>,
}

impl RefusalSummary {
    pub fn counted_total(&self) -> u64 {
        self.counted.values().sum()
    }

    /// The summary's audit row.
    pub fn record(&self) -> AuditRecord {
        let body = json!({
            "source": self.source,
            "from": self.from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "to": self.to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "recorded": self.recorded,
            "counted": self.counted_total(),
            "by_code": self.counted,
        });
        AuditRecord {
            direction: Some(Direction::Inbound),
            caller: Some(self.source.clone()),
            action: "auth.refused_summary".into(),
            status: Some("counted".into()),
            body: Some(body.to_string().into()),
            ..AuditRecord::default()
        }
    }
}

struct Window {
    opened: Instant,
    opened_at: DateTime<Utc>,
    recorded: u32,
    counted: BTreeMap<&'static str, u64>,
}

impl Window {
    fn open(now: Instant) -> Self {
        Self {
            opened: now,
            opened_at: Utc::now(),
            recorded: 0,
            counted: BTreeMap::new(),
        }
    }
}

#[derive(Default)]
struct Windows {
    by_source: HashMap<String, Window>,
    overflow: Option<Window>,
    /// Windows that ended while refusals still came in, not yet summarised.
    ended: Vec<(String, Window)>,
}

/// Per-source refusal windows; cheap to clone (one shared state).
#[derive(Clone)]
pub struct RefusalLimiter {
    per_source: u32,
    interval: Duration,
    max_sources: usize,
    windows: Arc<Mutex<Windows>>,
    opened: Arc<Notify>,
}

impl std::fmt::Debug for RefusalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalLimiter")
            .field("per_source", &self.per_source)
            .field("interval", &self.interval)
            .field("max_sources", &self.max_sources)
            .finish_non_exhaustive()
    }
}

impl RefusalLimiter {
    pub fn new(per_source: u32, interval: Duration, max_sources: usize) -> Self {
        Self {
            per_source,
            interval: interval.clamp(Duration::from_secs(1), MAX_INTERVAL),
            max_sources,
            windows: Arc::default(),
            opened: Arc::default(),
        }
    }

    pub fn from_config(audit: &AuditSettings) -> Self {
        Self::new(
            audit.refusals_per_source,
            Duration::from_secs(audit.refusal_interval_secs),
            audit.refusal_max_sources,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        // The state is plain counters: one a panicking thread left half
        // updated is still usable.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one refusal of `source` with error `code`, and says whether
    /// it is recorded as a row of its own.
    pub fn admit(&self, source: &str, code: &'static str) -> Admission {
        let now = Instant::now();
        let mut guard = self.lock();
        let windows = &mut *guard;
        let tracked = windows.by_source.contains_key(source);
        let (slot, name) = if tracked || windows.by_source.len() < self.max_sources {
            let slot = match windows.by_source.entry(source.to_owned()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    self.opened.notify_one();
                    e.insert(Window::open(now))
                }
            };
            (slot, source)
        } else {
            let slot = windows.overflow.get_or_insert_with(|| {
                self.opened.notify_one();
                Window::open(now)
            });
            (slot, OVERFLOW_SOURCE)
        };
        if now >= slot.opened + self.interval {
            let ended = std::mem::replace(slot, Window::open(now));
            if !ended.counted.is_empty() {
                windows.ended.push((name.to_owned(), ended));
            }
            self.opened.notify_one();
        }
        if slot.recorded < self.per_source {
            slot.recorded += 1;
            Admission::Record
        } else {
            *slot.counted.entry(code).or_default() += 1;
            Admission::Count
        }
    }

    /// When the earliest open window ends (now, if one has ended already).
    fn next_end(&self) -> Option<Instant> {
        let windows = self.lock();
        if !windows.ended.is_empty() {
            return Some(Instant::now());
        }
        windows
            .by_source
            .values()
            .chain(windows.overflow.as_ref())
            .map(|w| w.opened + self.interval)
            .min()
    }

    /// Closes every window that has ended by `now` and returns the
    /// summaries of those that only counted something.
    pub fn take_ended(&self, now: Instant) -> Vec<RefusalSummary> {
        self.take(|w| now >= w.opened + self.interval, None)
    }

    /// Closes every window, ended or not (the gateway is stopping).
    pub fn take_all(&self) -> Vec<RefusalSummary> {
        self.take(|_| true, Some(Utc::now()))
    }

    fn take(
        &self,
        done: impl Fn(&Window) -> bool,
        cut_at: Option<DateTime<Utc>>,
    ) -> Vec<RefusalSummary> {
        let mut guard = self.lock();
        let windows = &mut *guard;
        let mut closed = std::mem::take(&mut windows.ended);
        closed.extend(windows.by_source.extract_if(|_, w| done(w)));
        if windows.overflow.as_ref().is_some_and(&done)
            && let Some(w) = windows.overflow.take()
        {
            closed.push((OVERFLOW_SOURCE.to_owned(), w));
        }
        let interval = chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::MAX);
        closed
            .into_iter()
            .filter(|(_, w)| !w.counted.is_empty())
            .map(|(source, w)| {
                let end = w
                    .opened_at
                    .checked_add_signed(interval)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                RefusalSummary {
                    source,
                    from: w.opened_at,
                    to: cut_at.map_or(end, |cut| cut.min(end)),
                    recorded: w.recorded,
                    counted: w.counted,
                }
            })
            .collect()
    }

    /// Writes the summary of each window as it ends, until `stop`. The
    /// windows still open then are summarised by [`Self::flush`], once the
    /// server has answered its last request.
    pub async fn run(self, audit: AuditLog, mut stop: watch::Receiver<bool>) {
        loop {
            let opened = self.opened.notified();
            let next_end = self.next_end();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = opened, if next_end.is_none() => continue,
                _ = tokio::time::sleep_until(next_end.unwrap_or_else(Instant::now)), if next_end.is_some() => {}
            }
            write(&audit, self.take_ended(Instant::now())).await;
        }
    }

    /// Writes the summary of every window still open.
    pub async fn flush(&self, audit: &AuditLog) {
        write(audit, self.take_all()).await;
    }
}

async fn write(audit: &AuditLog, summaries: Vec<RefusalSummary>) {
    for summary in summaries {
        if let Err(e) = audit.record(summary.record()).await {
            tracing::error!(
                error = %e,
                source = %summary.source,
                counted = summary.counted_total(),
                "cannot record the summary of refused calls"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn admit_many(limiter: &RefusalLimiter, source: &str, code: &'static str, n: usize) -> usize {
        (0..n)
            .filter(|_| limiter.admit(source, code) == Admission::Record)
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_from_one_source_is_recorded_up_to_the_bound_then_counted() {
        let limiter = RefusalLimiter::new(3, MINUTE, 10);
        assert_eq!(admit_many(&limiter, "token:aa", "unauthorized", 200), 3);
        assert_eq!(limiter.take_ended(Instant::now()), vec![], "still open");

        tokio::time::advance(MINUTE).await;
        let summaries = limiter.take_ended(Instant::now());
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].source, "token:aa");
        assert_eq!(summaries[0].recorded, 3);
        assert_eq!(
            summaries[0].counted,
            BTreeMap::from([("unauthorized", 197)])
        );
        assert_eq!(
            summaries[0].to - summaries[0].from,
            chrono::Duration::minutes(1)
        );
        // The next interval starts afresh.
        assert_eq!(admit_many(&limiter, "token:aa", "unauthorized", 5), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn sources_are_bounded_apart_and_counted_by_code() {
        let limiter = RefusalLimiter::new(2, MINUTE, 10);
        assert_eq!(admit_many(&limiter, "court-a", "forbidden", 4), 2);
        assert_eq!(admit_many(&limiter, "anonymous", "unauthorized", 1), 1);
        assert_eq!(admit_many(&limiter, "court-a", "unauthorized", 3), 0);
        tokio::time::advance(MINUTE).await;
        let summaries = limiter.take_ended(Instant::now());
        // The source that stayed within its bound needs no summary.
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!(
            summaries[0].counted,
            BTreeMap::from([("forbidden", 2), ("unauthorized", 3)])
        );
        assert_eq!(summaries[0].counted_total(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_on_sources_they_share_one_overflow_window() {
        let limiter = RefusalLimiter::new(1, MINUTE, 2);
        for source in ["token:01", "token:02", "token:03", "token:04", "token:05"] {
            limiter.admit(source, "unauthorized");
        }
        {
            let windows = limiter.lock();
            assert_eq!(windows.by_source.len(), 2, "memory stays bounded");
        }
        tokio::time::advance(MINUTE).await;
        let summaries = limiter.take_ended(Instant::now());
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!(summaries[0].source, OVERFLOW_SOURCE);
        assert_eq!(summaries[0].recorded, 1);
        assert_eq!(summaries[0].counted_total(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_that_ended_unsummarised_is_kept_when_the_source_comes_back() {
        let limiter = RefusalLimiter::new(1, MINUTE, 10);
        assert_eq!(admit_many(&limiter, "token:aa", "unauthorized", 4), 1);
        tokio::time::advance(MINUTE + Duration::from_secs(1)).await;
        // The source refused again before the ended window was summarised.
        assert_eq!(admit_many(&limiter, "token:aa", "unauthorized", 2), 1);
        let summaries = limiter.take_ended(Instant::now());
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!(summaries[0].counted_total(), 3);
        // The new window is still open, with one counted.
        let rest = limiter.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].counted_total(), 1);
        assert!(rest[0].to <= rest[0].from + chrono::Duration::minutes(1));
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_every_open_window_is_summarised_once() {
        let limiter = RefusalLimiter::new(0, MINUTE, 10);
        admit_many(&limiter, "token:aa", "unauthorized", 7);
        let summaries = limiter.take_all();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].counted_total(), 7);
        assert_eq!(limiter.take_all(), vec![]);
        tokio::time::advance(MINUTE).await;
        assert_eq!(limiter.take_ended(Instant::now()), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticker_is_woken_at_the_end_of_the_earliest_window() {
        let limiter = RefusalLimiter::new(0, MINUTE, 10);
        assert_eq!(limiter.next_end(), None);
        let start = Instant::now();
        limiter.admit("a", "unauthorized");
        tokio::time::advance(Duration::from_secs(10)).await;
        limiter.admit("b", "unauthorized");
        assert_eq!(limiter.next_end(), Some(start + MINUTE));
        // A new window wakes a ticker that had nothing to wait for.
        let woken = limiter.opened.notified();
        limiter.admit("c", "unauthorized");
        tokio::time::timeout(Duration::from_millis(1), woken)
            .await
            .expect("notified");
    }

    #[test]
    fn the_summary_row_says_how_many_were_only_counted() {
        let summary = RefusalSummary {
            source: "token:0123456789abcdef".into(),
            from: DateTime::from_timestamp(0, 0).unwrap_or_default(),
            to: DateTime::from_timestamp(60, 0).unwrap_or_default(),
            recorded: 20,
            counted: BTreeMap::from([("unauthorized", 180)]),
        };
        let row = summary.record();
        assert_eq!(row.action, "auth.refused_summary");
        assert_eq!(row.caller.as_deref(), Some("token:0123456789abcdef"));
        let body: serde_json::Value =
            serde_json::from_slice(row.body.as_deref().unwrap_or_default()).unwrap_or_default();
        assert_eq!(body["counted"], 180);
        assert_eq!(body["by_code"]["unauthorized"], 180);
        assert_eq!(body["from"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["to"], "1970-01-01T00:01:00.000Z");
    }
}
