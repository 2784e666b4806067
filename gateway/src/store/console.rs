//! Sessions of the web console, as stored: who signed in, when, until
//! when, and the session's CSRF token. The session id itself is never
//! stored, only its SHA-256: a copy of the table signs no one in.
//!
//! A session is opened and revoked through the journal
//! (`Change::OpenSession`, `Change::RevokeSession`), in the transaction of
//! the audit row that records the sign-in or sign-out: no session exists
//! without its sign-in row.

use async_trait::async_trait;

use super::StoreError;

/// A session's last-seen mark moves at most this often: a page view is
/// not a write each time (so idleness is measured to the minute).
pub const TOUCH_EVERY_MS: i64 = 60_000;

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleSession {
    /// Lower-case hex SHA-256 of the session id the cookie holds.
    pub id_sha256: String,
    /// The caller (by its configured name) who signed in.
    pub caller: String,
    /// The token every form of the session carries (CSRF defence).
    pub csrf_token: String,
    pub created_at_ms: i64,
    /// The last request the session made (kept to the minute).
    pub last_seen_ms: i64,
    /// When the session ends however active it is.
    pub expires_at_ms: i64,
    /// When it was signed out.
    pub revoked_at_ms: Option<i64>,
}

impl ConsoleSession {
    /// Whether the session admits a request at `now_ms`: not revoked,
    /// not past its absolute end, not idle for `idle_ms` or longer.
    pub fn live(&self, now_ms: i64, idle_ms: i64) -> bool {
        self.revoked_at_ms.is_none()
            && now_ms < self.expires_at_ms
            && now_ms - self.last_seen_ms < idle_ms
    }
}

/// The console's reads and its one write outside the journal (a
/// session's last request, which records nothing).
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// The session whose id hashes to `id_sha256`, live or not.
    async fn console_session(&self, id_sha256: &str) -> Result<Option<ConsoleSession>, StoreError>;

    /// Marks a live session as seen at `now_ms`; false when it is not
    /// there or was revoked meanwhile.
    async fn touch_console_session(&self, id_sha256: &str, now_ms: i64)
    -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> ConsoleSession {
        ConsoleSession {
            id_sha256: "ab".repeat(32),
            caller: "demo-auditor".into(),
            csrf_token: "t".into(),
            created_at_ms: 1_000,
            last_seen_ms: 1_000,
            expires_at_ms: 10_000,
            revoked_at_ms: None,
        }
    }

    #[test]
    fn a_session_ends_when_idle_past_its_end_or_revoked() {
        let s = session();
        assert!(s.live(1_500, 1_000));
        assert!(!s.live(2_000, 1_000), "idle for the whole idle time");
        assert!(!s.live(10_000, 100_000), "at its absolute end");
        let revoked = ConsoleSession {
            revoked_at_ms: Some(1_200),
            ..s
        };
        assert!(!revoked.live(1_300, 1_000));
    }
}
