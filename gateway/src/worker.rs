//! The leased-worker loop. Every kind of background work runs in it: the
//! dispatcher's inquiry tasks (with the deadline sweep and the callbacks
//! owed), and the order worker's control orders, freeze plans, outbox
//! deliveries and measure expiries. A kind says how to make one round
//! (sweep, claim with a lease what is due, start it) and when work may next
//! be due; the loop runs a round, sleeps until then (at most the kind's
//! idle tick, at least 5 ms), and wakes early when told to (new work
//! accepted, an exchange ended) or when the gateway stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::store::StoreError;

/// One kind of leased background work.
pub trait LeasedWork: Send + Sync + Sized + 'static {
    /// What the loop's warnings call it.
    const NAME: &'static str;

    /// One pass: the kind's sweeps, then claim what is due (with a lease)
    /// and start it.
    fn round(self: &Arc<Self>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The unix-ms time work may next be due; None when nothing is known
    /// (the loop then waits its idle tick).
    fn next_due_ms(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// The longest wait between rounds.
    fn idle(&self) -> Duration;

    /// Notified to start a round at once.
    fn woken(&self) -> &Notify;
}

/// The shortest wait between rounds: work already in flight is not
/// claimed again in a spin.
const MIN_WAIT: Duration = Duration::from_millis(5);

/// Runs `work`'s rounds until `stop` turns true.
pub async fn run<W: LeasedWork>(work: Arc<W>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(e) = work.round().await {
            tracing::warn!(worker = W::NAME, error = %e, "a round failed; retrying");
        }
        let idle = work.idle();
        let wait = match work.next_due_ms().await {
            Ok(Some(due)) => {
                let now = chrono::Utc::now().timestamp_millis();
                Duration::from_millis((due - now).clamp(0, idle.as_millis() as i64) as u64)
            }
            _ => idle,
        };
        tokio::select! {
            _ = work.woken().notified() => {}
            _ = tokio::time::sleep(wait.max(MIN_WAIT)) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A kind that counts its rounds and says work is due at `due`.
    struct Counting {
        rounds: AtomicUsize,
        due: Option<i64>,
        wake: Notify,
        round_done: Notify,
    }

    impl LeasedWork for Counting {
        const NAME: &'static str = "counting";

        async fn round(self: &Arc<Self>) -> Result<(), StoreError> {
            self.rounds.fetch_add(1, Ordering::SeqCst);
            self.round_done.notify_one();
            Ok(())
        }

        async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
            Ok(self.due)
        }

        fn idle(&self) -> Duration {
            Duration::from_secs(3600)
        }

        fn woken(&self) -> &Notify {
            &self.wake
        }
    }

    fn counting(due: Option<i64>) -> Arc<Counting> {
        Arc::new(Counting {
            rounds: AtomicUsize::new(0),
            due,
            wake: Notify::new(),
            round_done: Notify::new(),
        })
    }

    #[tokio::test]
    async fn a_wake_starts_a_round_at_once_and_stop_ends_the_loop() {
        let work = counting(None);
        let (stop_tx, stop) = watch::channel(false);
        let finished = tokio::spawn(run(work.clone(), stop));
        let deadline = Duration::from_secs(10);
        tokio::time::timeout(deadline, work.round_done.notified())
            .await
            .expect("the first round");
        // Nothing due for an hour: only the wake brings the second round.
        let second = work.round_done.notified();
        work.wake.notify_one();
        tokio::time::timeout(deadline, second)
            .await
            .expect("a round on waking");
        assert!(work.rounds.load(Ordering::SeqCst) >= 2);
        stop_tx.send_replace(true);
        tokio::time::timeout(deadline, finished)
            .await
            .expect("the loop ends when told to stop")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn work_due_in_the_past_is_taken_after_the_shortest_wait() {
        let work = counting(Some(0));
        let (_stop_tx, stop) = watch::channel(false);
        let started = tokio::time::Instant::now();
        tokio::spawn(run(work.clone(), stop));
        for _ in 0..3 {
            work.round_done.notified().await;
        }
        // Time is paused (it moves only as the loop sleeps): three rounds
        // without a wake took the shortest waits, not the hour's idle tick.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}
