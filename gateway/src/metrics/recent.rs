//! What one agency did lately, kept in memory for the admin's agency page
//! (`GET /v1/admin/agencies`): messages sent, the latency of their
//! answers, errors by kind and exchanges in flight, over the last few
//! minutes and since the gateway started.
//!
//! Bounded and cheap: one-minute slots in a ring of [`SLOTS`], each with
//! a count of messages, a count per error kind and a latency histogram of
//! log-linear buckets (four to each power of two of microseconds, so a
//! percentile is known within about 12 %, as hdrhistogram does with two
//! significant bits), about 2.5 KB an agency, allocated at its first
//! message. Recording one exchange takes one uncontended lock and a few
//! additions; reading takes the same lock once.
//!
//! Each gateway keeps its own (`Guards::recorder`): the figures are this
//! instance's, never mixed with another's sharing the database.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

/// One slot's width.
const SLOT: Duration = Duration::from_secs(60);
/// Slots kept: the recent window is the current slot and the ones before
/// it, `SLOTS` in all (four to five minutes).
pub const SLOTS: usize = 5;

/// Sub-buckets to each power of two.
const SUB_BITS: u32 = 2;
const SUBS: usize = 1 << SUB_BITS;
/// The largest power of two of microseconds told apart (2^26 µs, 67 s);
/// slower answers share the last bucket.
const MAX_EXP: u32 = 26;
/// Bucket 0 holds 0 µs; then `SUBS` buckets for each exponent 0..=MAX_EXP;
/// then the overflow bucket.
const BUCKETS: usize = 1 + (MAX_EXP as usize + 1) * SUBS + 1;

/// The kinds of error counted, each an index into the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No complete answer within the agency's timeout (or the inquiry's
    /// deadline).
    Timeout,
    /// No connection, or the exchange broke off.
    Connect,
    /// The agency answered with a server error (5xx).
    Http5xx,
    /// The agency said it is over its own rate (429).
    Throttled,
    /// Any other client error (4xx) the agency answered.
    Http4xx,
    /// A reply over `limits.max_reply_bytes`.
    Oversize,
    /// A reply the agency's dialect could not read.
    Malformed,
    /// An inquiry the agency refused, with its reason (a normal answer,
    /// but worth seeing when it rises).
    Refused,
    /// Refused by the gateway before sending: the breaker was open.
    BreakerOpen,
    /// Refused by the gateway before sending: the agency's quota
    /// (`rate_per_second`) had no room.
    RateLimited,
    /// Refused by the gateway before sending: `max_concurrency` exchanges
    /// were in flight.
    Busy,
}

impl ErrorKind {
    const ALL: [ErrorKind; 11] = [
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Http5xx,
        ErrorKind::Throttled,
        ErrorKind::Http4xx,
        ErrorKind::Oversize,
        ErrorKind::Malformed,
        ErrorKind::Refused,
        ErrorKind::BreakerOpen,
        ErrorKind::RateLimited,
        ErrorKind::Busy,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The kind of a refusal by the stack's layer (`Refusal::layer`).
    pub fn of_layer(layer: &str) -> Option<Self> {
        match layer {
            "breaker" => Some(ErrorKind::BreakerOpen),
            "rate_limit" => Some(ErrorKind::RateLimited),
            "concurrency" => Some(ErrorKind::Busy),
            _ => None,
        }
    }

    /// The kind of an HTTP status the agency answered, if an error.
    pub fn of_status(status: u16) -> Option<Self> {
        match status {
            429 => Some(ErrorKind::Throttled),
            400..=499 => Some(ErrorKind::Http4xx),
            500..=599 => Some(ErrorKind::Http5xx),
            _ => None,
        }
    }
}

const KINDS: usize = ErrorKind::ALL.len();

/// Errors by kind, as the API shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorCounts {
    /// No complete answer within the timeout or the deadline.
    pub timeout: u64,
    /// No connection, or the exchange broke off.
    pub connect: u64,
    /// Server errors (5xx) the agency answered.
    pub http_5xx: u64,
    /// 429s: the agency's own rate limit.
    pub throttled: u64,
    /// Other client errors (4xx) the agency answered.
    pub http_4xx: u64,
    /// Replies over the size bound.
    pub oversize: u64,
    /// Replies the dialect could not read.
    pub malformed: u64,
    /// Inquiries the agency refused with a reason.
    pub refused: u64,
    /// Messages not sent because the breaker was open.
    pub breaker_open: u64,
    /// Messages not sent because the agency's quota had no room.
    pub rate_limited: u64,
    /// Messages not sent because `max_concurrency` were in flight.
    pub busy: u64,
}

impl ErrorCounts {
    fn from_array(a: &[u64; KINDS]) -> Self {
        let at = |k: ErrorKind| a[k.index()];
        Self {
            timeout: at(ErrorKind::Timeout),
            connect: at(ErrorKind::Connect),
            http_5xx: at(ErrorKind::Http5xx),
            throttled: at(ErrorKind::Throttled),
            http_4xx: at(ErrorKind::Http4xx),
            oversize: at(ErrorKind::Oversize),
            malformed: at(ErrorKind::Malformed),
            refused: at(ErrorKind::Refused),
            breaker_open: at(ErrorKind::BreakerOpen),
            rate_limited: at(ErrorKind::RateLimited),
            busy: at(ErrorKind::Busy),
        }
    }
}

/// One minute of an agency's traffic.
#[derive(Debug, Clone)]
struct Slot {
    /// Which minute since the recorder began it holds.
    minute: u64,
    sent: u64,
    errors: [u64; KINDS],
    latency: [u32; BUCKETS],
    max_us: u64,
}

impl Slot {
    fn empty(minute: u64) -> Self {
        Self {
            minute,
            sent: 0,
            errors: [0; KINDS],
            latency: [0; BUCKETS],
            max_us: 0,
        }
    }
}

#[derive(Debug)]
struct Window {
    slots: Vec<Slot>,
    sent_total: u64,
    errors_total: [u64; KINDS],
}

impl Window {
    fn new() -> Self {
        Self {
            // Slot i holds a minute m with m % SLOTS == i; none yet.
            slots: (0..SLOTS).map(|_| Slot::empty(u64::MAX)).collect(),
            sent_total: 0,
            errors_total: [0; KINDS],
        }
    }

    /// The slot of `minute`, emptied first if it held an older one.
    fn slot(&mut self, minute: u64) -> &mut Slot {
        let slot = &mut self.slots[(minute % SLOTS as u64) as usize];
        if slot.minute != minute {
            *slot = Slot::empty(minute);
        }
        slot
    }
}

/// One agency's recent traffic.
#[derive(Debug)]
pub struct Recorder {
    began: Instant,
    in_flight: AtomicI64,
    /// None until the first event.
    window: Mutex<Option<Box<Window>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// The recent figures, as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecentView {
    /// Exchanges on the wire now.
    pub in_flight: i64,
    /// Messages sent over about the last minute, and that as a rate.
    pub sent_last_minute: u64,
    pub rate_per_second: f64,
    /// Messages sent since the gateway started.
    pub sent_since_start: u64,
    /// How many seconds the recent window covers (up to five minutes;
    /// less just after a start).
    pub window_secs: u64,
    pub latency: LatencyView,
    /// Errors in the recent window, and since the gateway started.
    pub errors_recent: ErrorCounts,
    pub errors_since_start: ErrorCounts,
}

/// Latency of the answered exchanges in the recent window, in ms (to the
/// microsecond); the percentiles are null with no answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LatencyView {
    pub samples: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            began: Instant::now(),
            in_flight: AtomicI64::new(0),
            window: Mutex::new(None),
        }
    }

    fn minute(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.began).as_secs() / SLOT.as_secs()
    }

    fn with_window(&self, f: impl FnOnce(&mut Window)) {
        let mut guard = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.get_or_insert_with(|| Box::new(Window::new())));
    }

    /// An exchange leaves: counted in flight until the guard is dropped.
    pub fn started(&self) -> Flying<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Flying(&self.in_flight)
    }

    /// One message sent and how it ended: its answer's latency (when an
    /// answer came) and the error it was, if any.
    pub fn exchanged(&self, latency: Option<Duration>, error: Option<ErrorKind>) {
        self.exchanged_at(Instant::now(), latency, error);
    }

    fn exchanged_at(&self, now: Instant, latency: Option<Duration>, error: Option<ErrorKind>) {
        let minute = self.minute(now);
        self.with_window(|window| {
            window.sent_total += 1;
            if let Some(kind) = error {
                window.errors_total[kind.index()] += 1;
            }
            let slot = window.slot(minute);
            slot.sent += 1;
            if let Some(kind) = error {
                slot.errors[kind.index()] += 1;
            }
            if let Some(latency) = latency {
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                slot.latency[bucket(us)] += 1;
                slot.max_us = slot.max_us.max(us);
            }
        });
    }

    /// An error that is no exchange of its own (a refusal before sending,
    /// an unreadable reply, an agency's refusal).
    pub fn error(&self, kind: ErrorKind) {
        self.error_at(Instant::now(), kind);
    }

    fn error_at(&self, now: Instant, kind: ErrorKind) {
        let minute = self.minute(now);
        self.with_window(|window| {
            window.errors_total[kind.index()] += 1;
            window.slot(minute).errors[kind.index()] += 1;
        });
    }

    /// The figures as they stand.
    pub fn view(&self) -> RecentView {
        self.view_at(Instant::now())
    }

    fn view_at(&self, now: Instant) -> RecentView {
        let elapsed = now.saturating_duration_since(self.began);
        let minute = self.minute(now);
        let into_minute = elapsed.as_secs_f64() - (minute * SLOT.as_secs()) as f64;
        let window_secs = elapsed
            .as_secs()
            .min((SLOTS as u64 - 1) * SLOT.as_secs() + into_minute as u64);
        let in_flight = self.in_flight.load(Ordering::Relaxed).max(0);
        let guard = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(window) = guard.as_deref() else {
            return RecentView {
                in_flight,
                sent_last_minute: 0,
                rate_per_second: 0.0,
                sent_since_start: 0,
                window_secs,
                latency: LatencyView {
                    samples: 0,
                    p50_ms: None,
                    p95_ms: None,
                    p99_ms: None,
                    max_ms: None,
                },
                errors_recent: ErrorCounts::default(),
                errors_since_start: ErrorCounts::default(),
            };
        };
        let of = |m: Option<u64>| {
            m.and_then(|m| {
                window
                    .slots
                    .iter()
                    .find(|s| s.minute == m && s.minute != u64::MAX)
            })
        };
        let current = of(Some(minute));
        let previous = of(minute.checked_sub(1));
        // A sliding minute: all of this one, and the part of the last one
        // the last sixty seconds still cover.
        let share = 1.0 - (into_minute / SLOT.as_secs_f64()).clamp(0.0, 1.0);
        let last_minute = current.map_or(0.0, |s| s.sent as f64)
            + previous.map_or(0.0, |s| s.sent as f64) * share;
        let mut latency = [0u64; BUCKETS];
        let mut errors = [0u64; KINDS];
        let mut max_us = 0;
        for slot in window
            .slots
            .iter()
            .filter(|s| s.minute != u64::MAX && s.minute + SLOTS as u64 > minute)
        {
            for (total, n) in latency.iter_mut().zip(slot.latency) {
                *total += u64::from(n);
            }
            for (total, n) in errors.iter_mut().zip(slot.errors) {
                *total += n;
            }
            max_us = max_us.max(slot.max_us);
        }
        let samples: u64 = latency.iter().sum();
        let ms = |us: f64| us.min(max_us as f64).round() / 1000.0;
        let at = |q: f64| (samples > 0).then(|| ms(percentile(&latency, samples, q)));
        RecentView {
            in_flight,
            sent_last_minute: last_minute.round() as u64,
            rate_per_second: (last_minute / SLOT.as_secs_f64() * 1000.0).round() / 1000.0,
            sent_since_start: window.sent_total,
            window_secs,
            latency: LatencyView {
                samples,
                p50_ms: at(0.50),
                p95_ms: at(0.95),
                p99_ms: at(0.99),
                max_ms: (samples > 0).then(|| ms(max_us as f64)),
            },
            errors_recent: ErrorCounts::from_array(&errors),
            errors_since_start: ErrorCounts::from_array(&window.errors_total),
        }
    }
}

/// One exchange in flight, counted until dropped (a timed-out exchange is
/// dropped by the timeout).
#[derive(Debug)]
pub struct Flying<'a>(&'a AtomicI64);

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us == 0 {
        return 0;
    }
    let exp = 63 - us.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = if exp >= SUB_BITS {
        (us >> (exp - SUB_BITS)) as usize & (SUBS - 1)
    } else {
        (us << (SUB_BITS - exp)) as usize & (SUBS - 1)
    };
    1 + exp as usize * SUBS + sub
}

/// The latencies a bucket holds, in µs: from its lower bound, up to but
/// not including its upper one.
fn bounds(index: usize) -> (f64, f64) {
    if index == 0 {
        return (0.0, 1.0);
    }
    if index >= BUCKETS - 1 {
        let top = (1u64 << (MAX_EXP + 1)) as f64;
        return (top, top);
    }
    let exp = ((index - 1) / SUBS) as i32;
    let sub = ((index - 1) % SUBS) as f64;
    let unit = 2f64.powi(exp - SUB_BITS as i32);
    let low = (SUBS as f64 + sub) * unit;
    (low, low + unit)
}

/// The latency (µs) below which a share `q` of the `samples` fall: the
/// middle of the bucket the rank lands in.
fn percentile(buckets: &[u64; BUCKETS], samples: u64, q: f64) -> f64 {
    let rank = ((samples as f64 * q).ceil() as u64).clamp(1, samples);
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let (low, high) = bounds(i);
            return (low + high) / 2.0;
        }
    }
    bounds(BUCKETS - 1).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_latency_falls_in_a_bucket_that_holds_it() {
        for us in [
            1u64,
            2,
            3,
            4,
            5,
            7,
            8,
            9,
            100,
            999,
            1_000,
            1_500,
            65_535,
            1 << 20,
            60_000_000,
        ] {
            let (low, high) = bounds(bucket(us));
            assert!(
                low <= us as f64 && (us as f64) < high.max(low + 1.0),
                "{us} in [{low}, {high})"
            );
            // Within an eighth of the value either side of the middle.
            let mid = (low + high) / 2.0;
            assert!(
                (mid - us as f64).abs() <= us as f64 / 8.0 + 1.0,
                "{us}: {mid}"
            );
        }
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket(1 << 40), BUCKETS - 1);
    }

    #[test]
    fn percentiles_come_from_the_recent_answers() {
        let r = Recorder::new();
        let t0 = r.began;
        for ms in 1..=100u64 {
            r.exchanged_at(t0, Some(Duration::from_millis(ms)), None);
        }
        r.exchanged_at(t0, None, Some(ErrorKind::Timeout));
        let v = r.view_at(t0 + Duration::from_secs(30));
        assert_eq!(v.latency.samples, 100);
        assert_eq!(v.sent_since_start, 101);
        assert_eq!(v.sent_last_minute, 101);
        let near = |got: Option<f64>, want: f64| {
            let got = got.unwrap_or_default();
            assert!((got - want).abs() <= want * 0.13, "{got} for {want}");
        };
        near(v.latency.p50_ms, 50.0);
        near(v.latency.p95_ms, 95.0);
        near(v.latency.p99_ms, 99.0);
        assert_eq!(v.latency.max_ms, Some(100.0));
        assert_eq!(v.errors_recent.timeout, 1);
        assert_eq!(v.errors_since_start.timeout, 1);
        assert_eq!(v.window_secs, 30);
    }

    #[test]
    fn old_minutes_leave_the_window_but_not_the_totals() {
        let r = Recorder::new();
        let t0 = r.began;
        r.exchanged_at(t0, Some(Duration::from_millis(5)), Some(ErrorKind::Http5xx));
        r.error_at(t0, ErrorKind::BreakerOpen);
        // 90 s later: the first minute is half out of the last sixty
        // seconds, still in the window.
        let v = r.view_at(t0 + Duration::from_secs(90));
        assert_eq!(v.sent_last_minute, 1, "half of one, rounded");
        assert_eq!(v.errors_recent.http_5xx, 1);
        assert_eq!(v.errors_recent.breaker_open, 1);
        // Ten minutes later, after traffic that reuses its slot: gone from
        // the window, kept in the totals.
        let later = t0 + Duration::from_secs(600);
        r.exchanged_at(later, Some(Duration::from_millis(7)), None);
        let v = r.view_at(later);
        assert_eq!(v.errors_recent, ErrorCounts::default());
        assert_eq!(v.errors_since_start.http_5xx, 1);
        assert_eq!(v.errors_since_start.breaker_open, 1);
        assert_eq!(v.latency.samples, 1);
        assert_eq!(v.sent_since_start, 2);
        assert_eq!(v.window_secs, 240);
        // With nothing since, nothing is recent.
        let v = r.view_at(later + Duration::from_secs(3600));
        assert_eq!(v.latency.samples, 0);
        assert_eq!(v.latency.p50_ms, None);
        assert_eq!(v.sent_last_minute, 0);
    }

    #[test]
    fn exchanges_are_in_flight_until_dropped() {
        let r = Recorder::new();
        let a = r.started();
        let b = r.started();
        assert_eq!(r.view().in_flight, 2);
        drop(a);
        drop(b);
        assert_eq!(r.view().in_flight, 0);
        assert_eq!(r.view().latency.samples, 0, "nothing recorded yet");
    }

    #[test]
    fn kinds_are_told_from_statuses_and_layers() {
        assert_eq!(ErrorKind::of_status(200), None);
        assert_eq!(ErrorKind::of_status(302), None);
        assert_eq!(ErrorKind::of_status(429), Some(ErrorKind::Throttled));
        assert_eq!(ErrorKind::of_status(404), Some(ErrorKind::Http4xx));
        assert_eq!(ErrorKind::of_status(503), Some(ErrorKind::Http5xx));
        assert_eq!(ErrorKind::of_layer("breaker"), Some(ErrorKind::BreakerOpen));
        assert_eq!(
            ErrorKind::of_layer("rate_limit"),
            Some(ErrorKind::RateLimited)
        );
        assert_eq!(ErrorKind::of_layer("concurrency"), Some(ErrorKind::Busy));
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
