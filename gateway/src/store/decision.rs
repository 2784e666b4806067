//! Turns for decisions: requests whose checks read what other requests
//! write (orders on one asset, requests under one idempotency key) are
//! decided one at a time, so that no check can be outrun.
//!
//! A turn is a set of keys. Within one store handle, an async lock per key
//! (all a SQLite database needs: it serves one gateway). On PostgreSQL,
//! where several gateways share the database, also a transaction-scoped
//! advisory lock per key, held on a connection of a small pool of its own
//! while the turn lasts: the decision's reads and writes (and the audit
//! writer's) use the main pool, which a turn never holds. Keys are taken in
//! one fixed order, so two turns never wait for each other in a circle.
//! A turn must never hold a connection that its own work needs: on SQLite
//! the pool's only connection is the one the audit writer commits on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::OwnedMutexGuard;

use super::StoreError;

/// A turn held: the keys are this holder's until `release` (or drop,
/// which also gives them back, the PostgreSQL ones when the connection
/// returns to its pool and rolls back).
#[derive(Debug)]
#[must_use = "a turn is given back when dropped"]
pub struct DecisionLock {
    /// Declared first: the database's locks go before the process's.
    shared: Option<Transaction<'static, Postgres>>,
    _local: Vec<OwnedMutexGuard<()>>,
}

impl DecisionLock {
    /// Gives the turn back now.
    pub async fn release(mut self) {
        if let Some(tx) = self.shared.take()
            && let Err(e) = tx.rollback().await
        {
            // The connection is dropped with the transaction open; the
            // pool's check on return ends it, and its locks with it.
            tracing::warn!(error = %e, "cannot end a decision's lock transaction");
        }
    }
}

/// The keys of a turn as they are taken: each once, in order.
fn ordered(keys: &[String]) -> Vec<&str> {
    let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// One async lock per key, for the keys in use: an entry lives while
/// someone holds or waits for its lock, and dead entries are swept as the
/// map grows.
#[derive(Debug, Clone, Default)]
pub(super) struct LocalLocks(Arc<Mutex<LocalMap>>);

#[derive(Debug, Default)]
struct LocalMap {
    locks: HashMap<String, Weak<tokio::sync::Mutex<()>>>,
    sweep_at: usize,
}

impl LocalLocks {
    fn handle(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = map.locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        if map.locks.len() >= map.sweep_at {
            map.locks.retain(|_, lock| lock.strong_count() > 0);
            map.sweep_at = (map.locks.len() * 2).max(64);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.locks.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }

    /// Takes every key's lock, in order, waiting at most `wait` in all.
    async fn lock(
        &self,
        keys: &[String],
        wait: Duration,
    ) -> Result<Vec<OwnedMutexGuard<()>>, StoreError> {
        let take = async {
            let mut held = Vec::new();
            for key in ordered(keys) {
                held.push(self.handle(key).lock_owned().await);
            }
            held
        };
        tokio::time::timeout(wait, take)
            .await
            .map_err(|_| busy(wait))
    }

    /// How many keys have an entry (for tests of the sweep).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .locks
            .len()
    }
}

fn busy(wait: Duration) -> StoreError {
    StoreError::Busy(format!(
        "another decision on the same asset or key held its turn longer than {} ms",
        wait.as_millis()
    ))
}

/// A key's PostgreSQL advisory lock number: the first 64 bits of a SHA-256
/// (stable across processes and builds, unlike `std`'s hasher).
pub(super) fn advisory_key(key: &str) -> i64 {
    let digest = Sha256::digest(format!("gateway.decision:{key}"));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A turn on SQLite: the process's locks only.
pub(super) async fn lock_local(
    local: &LocalLocks,
    keys: &[String],
    wait: Duration,
) -> Result<DecisionLock, StoreError> {
    Ok(DecisionLock {
        shared: None,
        _local: local.lock(keys, wait).await?,
    })
}

/// A turn on PostgreSQL: the process's locks, then the database's, by
/// lock number (two keys may share a number; taken in that order, the
/// numbers of one turn never wait in a circle with another's), under a
/// `lock_timeout` of what is left of `wait`.
pub(super) async fn lock_shared(
    local: &LocalLocks,
    pool: &PgPool,
    keys: &[String],
    wait: Duration,
) -> Result<DecisionLock, StoreError> {
    let started = tokio::time::Instant::now();
    let held = local.lock(keys, wait).await?;
    let left = wait.saturating_sub(started.elapsed());
    let mut numbers: Vec<i64> = ordered(keys).into_iter().map(advisory_key).collect();
    numbers.sort_unstable();
    numbers.dedup();
    // A connection the server ended while it lay idle (a restart, an
    // administrator) fails its BEGIN and is dropped: another is taken.
    let begin = async {
        let mut tries = pool.options().get_max_connections() + 1;
        loop {
            match pool.begin().await {
                Err(e) if tries > 1 && super::shared::connection_lost(&e) => tries -= 1,
                begun => break begun,
            }
        }
    };
    let mut tx = tokio::time::timeout(left, begin)
        .await
        .map_err(|_| busy(wait))??;
    let left = wait
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", left.as_millis()))
        .execute(&mut *tx)
        .await?;
    for n in numbers {
        let locked = sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(n)
            .execute(&mut *tx)
            .await;
        match locked {
            Ok(_) => {}
            // lock_not_available: the lock timeout ran out.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                return Err(busy(wait));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(DecisionLock {
        shared: Some(tx),
        _local: held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_numbers_are_stable_and_distinct() {
        // Fixed across builds: gateways of different versions share them.
        assert_eq!(advisory_key("k"), advisory_key("k"));
        assert_ne!(advisory_key("asset:a:1"), advisory_key("asset:a:2"));
    }

    #[tokio::test]
    async fn one_key_is_held_once_and_entries_are_swept() {
        let locks = LocalLocks::default();
        let wait = Duration::from_millis(50);
        let first = lock_local(&locks, &["a".into(), "b".into()], wait)
            .await
            .expect("free");
        assert!(matches!(
            lock_local(&locks, &["b".into()], wait).await,
            Err(StoreError::Busy(_))
        ));
        // Another key is free meanwhile.
        let other = lock_local(&locks, &["c".into()], wait).await.expect("free");
        first.release().await;
        other.release().await;
        let again = lock_local(&locks, &["b".into(), "b".into()], wait)
            .await
            .expect("given back");
        drop(again);
        for i in 0..200 {
            lock_local(&locks, &[format!("k{i}")], wait)
                .await
                .expect("free")
                .release()
                .await;
        }
        assert!(locks.entries() < 130, "{}", locks.entries());
    }
}
