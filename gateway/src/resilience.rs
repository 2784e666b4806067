//! Per-agency protection: a circuit breaker that stops asking an agency
//! that keeps failing, and a rate limiter that keeps to the agency's quota.
//!
//! The breaker counts consecutive failures (no answer, or the agency's own
//! 5xx): at `breaker_failures` it opens, and inquiries to the agency are
//! answered `circuit_open` at once instead of waiting for timeouts. After
//! `breaker_cooldown_ms` one probe may go (half-open); its success closes
//! the breaker, its failure opens it again. (linkerd2-proxy's
//! consecutive-failures breaker is the model.) Control orders never fail on
//! an open breaker: they wait for it.
//!
//! The rate limiter is a token bucket per agency (`governor`) at the agency
//! file's `rate_per_second`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everything else is refused until it answers.
    HalfOpen,
}

/// A consecutive-failures circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

/// Why a request may not go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// When a probe may try again (None: a probe is already out).
    pub retry_in: Option<Duration>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May a request go now? An open breaker past its cooldown lets exactly
    /// one probe through.
    pub fn try_acquire(&self) -> Result<(), Open> {
        self.try_acquire_at(Instant::now())
    }

    pub fn try_acquire_at(&self, now: Instant) -> Result<(), Open> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                Ok(())
            }
            State::Open { until } => Err(Open {
                retry_in: Some(until - now),
            }),
            State::HalfOpen => Err(Open { retry_in: None }),
        }
    }

    /// Records how a request that was let through ended.
    pub fn record(&self, success: bool) {
        self.record_at(success, Instant::now());
    }

    pub fn record_at(&self, success: bool, now: Instant) {
        let mut state = self.lock();
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            // The threshold reached, or the probe failed: open (again).
            (State::Closed { .. } | State::HalfOpen, false) => State::Open {
                until: now + self.cooldown,
            },
            // A late answer from before the breaker opened changes nothing.
            (open @ State::Open { .. }, false) => open,
        };
    }

    /// `closed`, `open` or `half_open`.
    pub fn state_name(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half_open",
        }
    }
}

type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

/// One agency's protection.
#[derive(Debug)]
pub struct Guard {
    pub breaker: Breaker,
    bucket: Option<(u32, Bucket)>,
}

impl Guard {
    /// How long to wait before the agency's quota allows one more message
    /// (zero: now; the token is taken).
    pub fn rate_wait(&self) -> Duration {
        match &self.bucket {
            None => Duration::ZERO,
            Some((_, bucket)) => match bucket.check() {
                Ok(()) => Duration::ZERO,
                Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
            },
        }
    }
}

/// Every agency's guard, by id, kept across reloads while the agency's
/// limits stay the same.
#[derive(Debug, Default, Clone)]
pub struct Guards {
    by_agency: Arc<Mutex<HashMap<String, Arc<Guard>>>>,
}

impl Guards {
    /// The guard of agency `id` with these limits (a changed limit gets a
    /// fresh guard).
    pub fn get(&self, id: &str, limits: &adapters::agency::Limits) -> Arc<Guard> {
        let mut map = self
            .by_agency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rate = limits.rate_per_second.unwrap_or(0);
        if let Some(g) = map.get(id)
            && g.breaker.threshold == limits.breaker_failures.max(1)
            && g.breaker.cooldown == Duration::from_millis(limits.breaker_cooldown_ms)
            && g.bucket.as_ref().map_or(0, |(r, _)| *r) == rate
        {
            return g.clone();
        }
        let bucket =
            NonZeroU32::new(rate).map(|r| (rate, RateLimiter::direct(Quota::per_second(r))));
        let guard = Arc::new(Guard {
            breaker: Breaker::new(
                limits.breaker_failures,
                Duration::from_millis(limits.breaker_cooldown_ms),
            ),
            bucket,
        });
        map.insert(id.to_owned(), guard.clone());
        guard
    }

    /// The breaker state of every agency that has a guard.
    pub fn states(&self) -> Vec<(String, &'static str)> {
        let map = self
            .by_agency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, &'static str)> = map
            .iter()
            .map(|(id, g)| (id.clone(), g.breaker.state_name()))
            .collect();
        out.sort();
        out
    }

    pub fn state_of(&self, id: &str) -> &'static str {
        let map = self
            .by_agency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(id).map_or("closed", |g| g.breaker.state_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_open_the_breaker_and_a_probe_closes_it() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(b.try_acquire_at(t0).is_ok());
            b.record_at(false, t0);
        }
        // A success in between resets the count.
        b.record_at(true, t0);
        for _ in 0..3 {
            assert!(b.try_acquire_at(t0).is_ok());
            b.record_at(false, t0);
        }
        assert_eq!(b.state_name(), "open");
        let refused = b.try_acquire_at(t0 + Duration::from_secs(1));
        assert_eq!(
            refused,
            Err(Open {
                retry_in: Some(Duration::from_secs(9))
            })
        );
        // After the cooldown, exactly one probe goes.
        let later = t0 + Duration::from_secs(10);
        assert!(b.try_acquire_at(later).is_ok());
        assert_eq!(b.state_name(), "half_open");
        assert_eq!(b.try_acquire_at(later), Err(Open { retry_in: None }));
        b.record_at(true, later);
        assert_eq!(b.state_name(), "closed");
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_again() {
        let b = Breaker::new(1, Duration::from_secs(5));
        let t0 = Instant::now();
        b.record_at(false, t0);
        assert_eq!(b.state_name(), "open");
        let later = t0 + Duration::from_secs(5);
        assert!(b.try_acquire_at(later).is_ok());
        b.record_at(false, later);
        assert_eq!(b.state_name(), "open");
        assert!(b.try_acquire_at(later + Duration::from_secs(4)).is_err());
    }

    #[test]
    fn the_bucket_keeps_to_the_quota() {
        let limits = adapters::agency::Limits {
            rate_per_second: Some(5),
            ..adapters::agency::Limits::default()
        };
        let guards = Guards::default();
        let g = guards.get("bank-a", &limits);
        let now: Vec<Duration> = (0..5).map(|_| g.rate_wait()).collect();
        assert!(now.iter().all(|w| w.is_zero()), "{now:?}");
        assert!(!g.rate_wait().is_zero(), "the sixth within a second waits");
        // The same limits keep the same guard; other limits a fresh one.
        assert!(Arc::ptr_eq(&g, &guards.get("bank-a", &limits)));
        let other = adapters::agency::Limits::default();
        assert!(!Arc::ptr_eq(&g, &guards.get("bank-a", &other)));
    }
}
