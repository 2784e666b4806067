//! A consecutive-failures circuit breaker, and the layer that applies it.
//!
//! The breaker counts consecutive failures (no answer, or the agency's own
//! 5xx): at `breaker_failures` it opens, and calls are refused at once
//! (`Refusal::CircuitOpen`) instead of waiting for timeouts. After
//! `breaker_cooldown_ms` one probe may go (half-open); its success closes
//! the breaker, its failure opens it again. A probe that never reached the
//! agency (refused further in, its audit record failed, dropped) gives its
//! turn back. linkerd2-proxy's consecutive-failures breaker is the model.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::call::{AgencyCall, CallError, CallFuture, Refusal};
use super::layer::{Around, AroundLayer, Inner};
use crate::transport::{HttpReply, TransportError};

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

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// The state and when it was entered (unix ms, wall clock).
#[derive(Debug, Clone, Copy)]
struct Current {
    state: State,
    since_ms: i64,
}

impl Current {
    /// Moves to `next`; the time changes only when the state's name does
    /// (a failure counted while closed is no change).
    fn set(&mut self, next: State) {
        if next.name() != self.state.name() {
            self.since_ms = chrono::Utc::now().timestamp_millis();
        }
        self.state = next;
    }
}

/// A consecutive-failures circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<Current>,
    threshold: u32,
    cooldown: Duration,
}

/// A breaker's state as the admin's agency page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerState {
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// When it entered that state (unix ms): when the breaker was made
    /// (the gateway started, or the agency's breaker settings changed)
    /// if it never changed.
    pub since_ms: i64,
    /// Open: how long until a probe may go.
    pub probe_in: Option<Duration>,
}

/// Why a request may not go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// When a probe may try again (None: a probe is already out).
    pub retry_in: Option<Duration>,
}

/// A request the breaker let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// It is the half-open breaker's one probe.
    pub probe: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(Current {
                state: State::Closed { failures: 0 },
                since_ms: chrono::Utc::now().timestamp_millis(),
            }),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// Whether this breaker was made with these settings.
    pub fn has_settings(&self, threshold: u32, cooldown: Duration) -> bool {
        self.threshold == threshold.max(1) && self.cooldown == cooldown
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May a request go now? An open breaker past its cooldown lets exactly
    /// one probe through.
    pub fn try_acquire_at(&self, now: Instant) -> Result<Admitted, Open> {
        let mut current = self.lock();
        match current.state {
            State::Closed { .. } => Ok(Admitted { probe: false }),
            State::Open { until } if now >= until => {
                current.set(State::HalfOpen);
                Ok(Admitted { probe: true })
            }
            State::Open { until } => Err(Open {
                retry_in: Some(until - now),
            }),
            State::HalfOpen => Err(Open { retry_in: None }),
        }
    }

    /// Records how a request that was let through ended.
    pub fn record_at(&self, success: bool, now: Instant) {
        let mut current = self.lock();
        let next = match (current.state, success) {
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
        current.set(next);
    }

    /// A probe that never reached the agency: the next request may probe.
    pub fn cancel_probe_at(&self, now: Instant) {
        let mut current = self.lock();
        if current.state == State::HalfOpen {
            current.set(State::Open { until: now });
        }
    }

    /// `closed`, `open` or `half_open`.
    pub fn state_name(&self) -> &'static str {
        self.lock().state.name()
    }

    /// The state, since when, and when a probe may go.
    pub fn snapshot(&self) -> BreakerState {
        let current = *self.lock();
        BreakerState {
            state: current.state.name(),
            since_ms: current.since_ms,
            probe_in: match current.state {
                State::Open { until } => Some(until.saturating_duration_since(Instant::now())),
                _ => None,
            },
        }
    }
}

/// An exchange that counts against the agency's breaker: no answer, or
/// the agency's own server error.
pub fn is_agency_failure(result: &Result<HttpReply, TransportError>) -> bool {
    match result {
        Err(_) => true,
        Ok(reply) => reply.status >= 500,
    }
}

/// What a call's end says of the agency: Some(true) it failed, Some(false)
/// it answered, None the call never reached it.
fn verdict(result: &Result<HttpReply, CallError>) -> Option<bool> {
    match result {
        Ok(reply) => Some(reply.status >= 500),
        Err(CallError::Transport(_)) => Some(true),
        Err(CallError::Unrecorded { agency_failed }) => Some(*agency_failed),
        Err(CallError::Refused(_) | CallError::NotSent(_)) => None,
    }
}

/// Refuses calls while the agency's breaker is open, and tells it how
/// each call it let through ended.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    breaker: Arc<Breaker>,
}

impl CircuitBreaker {
    pub fn layer(breaker: Arc<Breaker>) -> AroundLayer<Self> {
        AroundLayer(Self { breaker })
    }
}

/// Gives a probe's turn back if its call ends without a verdict (or is
/// dropped).
struct Pass {
    breaker: Arc<Breaker>,
    probe: bool,
}

impl Pass {
    fn settle(mut self, verdict: Option<bool>) {
        if let Some(failed) = verdict {
            self.breaker.record_at(!failed, Instant::now());
            self.probe = false;
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.cancel_probe_at(Instant::now());
        }
    }
}

impl Around for CircuitBreaker {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture {
        let admitted = match self.breaker.try_acquire_at(Instant::now()) {
            Ok(a) => a,
            Err(Open { retry_in }) => {
                let refused = CallError::Refused(Refusal::CircuitOpen { retry_in });
                return Box::pin(std::future::ready(Err(refused)));
            }
        };
        let pass = Pass {
            breaker: self.breaker.clone(),
            probe: admitted.probe,
        };
        let future = inner.call(call);
        Box::pin(async move {
            let result = future.await;
            pass.settle(verdict(&result));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::testing::{Script, call, reply};
    use tower::{Layer, ServiceExt};

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
        assert_eq!(b.try_acquire_at(later), Ok(Admitted { probe: true }));
        assert_eq!(b.state_name(), "half_open");
        assert_eq!(b.try_acquire_at(later), Err(Open { retry_in: None }));
        b.record_at(true, later);
        assert_eq!(b.state_name(), "closed");
    }

    #[test]
    fn the_snapshot_tells_since_when_and_when_a_probe_may_go() {
        let b = Breaker::new(2, Duration::from_secs(600));
        let made = b.snapshot();
        assert_eq!((made.state, made.probe_in), ("closed", None));
        // A failure counted while closed is no change of state.
        b.record_at(false, Instant::now());
        assert_eq!(b.snapshot().since_ms, made.since_ms);
        std::thread::sleep(Duration::from_millis(5));
        b.record_at(false, Instant::now());
        let open = b.snapshot();
        assert_eq!(open.state, "open");
        assert!(open.since_ms > made.since_ms, "{open:?} after {made:?}");
        assert!(open.probe_in.is_some_and(|d| d > Duration::from_secs(590)));
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

    #[tokio::test(start_paused = true)]
    async fn the_layer_opens_on_failures_refuses_without_calling_and_a_probe_closes_it() {
        let breaker = Arc::new(Breaker::new(2, Duration::from_secs(10)));
        let script = Script::new([
            Err(CallError::Transport(TransportError::Connect(
                "refused".into(),
            ))),
            Ok(reply(503)),
            Ok(reply(200)),
        ]);
        let svc = CircuitBreaker::layer(breaker.clone()).layer(script.service());
        for _ in 0..2 {
            let _ = svc.clone().oneshot(call()).await;
        }
        assert_eq!(breaker.state_name(), "open");
        let refused = svc.clone().oneshot(call()).await;
        assert!(
            matches!(
                refused,
                Err(CallError::Refused(Refusal::CircuitOpen {
                    retry_in: Some(_)
                }))
            ),
            "{refused:?}"
        );
        assert_eq!(script.calls(), 2, "an open breaker calls nothing");
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = svc.clone().oneshot(call()).await;
        assert_eq!(probe.map(|r| r.status).ok(), Some(200));
        assert_eq!(breaker.state_name(), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_reached_the_agency_gives_its_turn_back() {
        let breaker = Arc::new(Breaker::new(1, Duration::from_secs(1)));
        breaker.record_at(false, Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        let script = Script::new([
            Err(CallError::NotSent("audit unavailable".into())),
            Ok(reply(200)),
        ]);
        let svc = CircuitBreaker::layer(breaker.clone()).layer(script.service());
        let first = svc.clone().oneshot(call()).await;
        assert!(matches!(first, Err(CallError::NotSent(_))), "{first:?}");
        assert_eq!(breaker.state_name(), "open", "no verdict: still open");
        let second = svc.clone().oneshot(call()).await;
        assert_eq!(second.map(|r| r.status).ok(), Some(200));
        assert_eq!(breaker.state_name(), "closed");
    }
}
