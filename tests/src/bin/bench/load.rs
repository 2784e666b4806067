//! Load generation on the bench's own tokio runtime: open loop at a fixed
//! rate (each request's latency counted from the moment it was due, not
//! from when it could be sent, so a stalled system cannot hide its queue:
//! no coordinated omission) and closed loop (workers sending back to back,
//! for the most the system can take).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::stats::new_histogram;

/// One operation: the `n`th request of a run; true when it succeeded.
pub type Op = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What a run measured.
pub struct Run {
    /// Latencies in microseconds, failures included.
    pub hist: Histogram<u64>,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// From the first request until the last one finished (or was given
    /// up).
    pub elapsed: Duration,
}

impl Run {
    /// Successful operations per second over the run.
    pub fn ok_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }
}

struct Tally {
    hist: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicUsize,
}

impl Tally {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            hist: Mutex::new(new_histogram()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn record(&self, since: Instant, ok: bool) {
        let us = since.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        if let Ok(mut h) = self.hist.lock() {
            h.saturating_record(us.max(1));
        }
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn finish(&self, sent: u64, elapsed: Duration) -> Run {
        let hist = self
            .hist
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| new_histogram());
        Run {
            hist,
            sent,
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            elapsed,
        }
    }
}

/// A gauge of requests in flight, readable while a run goes on (the memory
/// probe samples it beside the gateway's resident memory).
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Offers `rate` operations per second for `duration`, then waits up to
/// `drain` for the stragglers (those still running then are failures,
/// recorded with the time they had taken). Beyond `max_in_flight` open
/// requests, a due request is not sent and counts as a failure.
pub async fn open_loop(
    op: Op,
    rate: f64,
    duration: Duration,
    drain: Duration,
    max_in_flight: usize,
    gauge: Option<InFlight>,
) -> Run {
    let tally = Tally::new();
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let end = start + duration;
    let interval = 1.0 / rate.max(0.001);
    let mut sent = 0u64;
    let mut dues: Vec<Instant> = Vec::new();
    loop {
        let due = start + Duration::from_secs_f64(sent as f64 * interval);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        while tasks.try_join_next().is_some() {}
        sent += 1;
        if tally.in_flight.load(Ordering::Relaxed) >= max_in_flight {
            tally.record(due, false);
            continue;
        }
        dues.push(due);
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(g) = &gauge {
            g.0.fetch_add(1, Ordering::Relaxed);
        }
        let fut = op(sent - 1);
        let t = tally.clone();
        let g = gauge.clone();
        tasks.spawn(async move {
            let ok = fut.await;
            t.record(due, ok);
            t.in_flight.fetch_sub(1, Ordering::Relaxed);
            if let Some(g) = g {
                g.0.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        let left = tasks.len();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // Which requests were still open is not known: the `left` newest
        // due times give each a lower bound of the time it took.
        dues.sort();
        for due in dues.iter().rev().take(left) {
            tally.record(*due, false);
        }
        if let Some(g) = &gauge {
            g.0.store(0, Ordering::Relaxed);
        }
    }
    tally.finish(sent, start.elapsed())
}

/// `workers` loops, each sending its next operation as soon as the last
/// one finished, for `duration` (operations under way then are awaited).
pub async fn closed_loop(op: Op, workers: usize, duration: Duration) -> Run {
    let tally = Tally::new();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let op = op.clone();
        let tally = tally.clone();
        let next = next.clone();
        tasks.spawn(async move {
            while Instant::now() < end {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let began = Instant::now();
                let ok = op(n).await;
                tally.record(began, ok);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    tally.finish(next.load(Ordering::Relaxed), start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(ms: u64) -> Op {
        Arc::new(move |n| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                n % 100 != 99
            })
        })
    }

    #[tokio::test]
    async fn the_open_loop_offers_the_rate_and_counts_failures() {
        let run = open_loop(
            sleeper(2),
            500.0,
            Duration::from_millis(400),
            Duration::from_secs(1),
            1000,
            None,
        )
        .await;
        assert_eq!(run.sent, 200);
        assert_eq!(run.ok + run.failed, 200);
        assert_eq!(run.failed, 2);
        assert!(run.hist.value_at_quantile(0.5) >= 2000);
    }

    #[tokio::test]
    async fn stragglers_past_the_drain_are_failures_with_their_time() {
        let run = open_loop(
            sleeper(10_000),
            100.0,
            Duration::from_millis(100),
            Duration::from_millis(100),
            1000,
            None,
        )
        .await;
        assert_eq!(run.sent, 10);
        assert_eq!(run.failed, 10);
        assert!(run.hist.min() >= 100_000, "{}", run.hist.min());
    }

    #[tokio::test]
    async fn the_open_loop_sheds_beyond_its_in_flight_bound() {
        let run = open_loop(
            sleeper(1_000),
            1000.0,
            Duration::from_millis(50),
            Duration::from_secs(2),
            10,
            None,
        )
        .await;
        assert_eq!(run.sent, 50);
        assert!(run.failed >= 40, "{}", run.failed);
    }

    #[tokio::test]
    async fn the_closed_loop_keeps_its_workers_busy() {
        let run = closed_loop(sleeper(5), 4, Duration::from_millis(200)).await;
        assert!(run.sent >= 20, "{}", run.sent);
        assert!(run.ok_per_s() > 100.0, "{}", run.ok_per_s());
    }
}
