//! Console sessions, on both backends: the reads, the last-seen mark, and
//! what the journal does to open and revoke one.

use async_trait::async_trait;

use super::{Backend, Conn, Sql, SqlStore, select};
use crate::store::{ConsoleSession, ConsoleStore, StoreError};

const SESSION_COLUMNS: &str =
    "id_sha256, caller, csrf_token, created_at_ms, last_seen_ms, expires_at_ms, revoked_at_ms";

/// Sessions that ended longer ago than this are deleted when another
/// opens: the sign-in and sign-out rows of the audit log keep their story.
const KEEP_ENDED_MS: i64 = 24 * 3_600_000;

#[async_trait]
impl<B: Backend> ConsoleStore for SqlStore<B> {
    async fn console_session(&self, id_sha256: &str) -> Result<Option<ConsoleSession>, StoreError> {
        self.read_optional(
            select(SESSION_COLUMNS, "console_sessions", "id_sha256 = $1").bind(id_sha256),
        )
        .await
    }

    async fn touch_console_session(
        &self,
        id_sha256: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = self
            .run(
                Sql::new(
                    "UPDATE console_sessions SET last_seen_ms = $1 \
                     WHERE id_sha256 = $2 AND revoked_at_ms IS NULL AND last_seen_ms < $1",
                )
                .bind(now_ms)
                .bind(id_sha256),
            )
            .await?;
        Ok(changed == 1)
    }
}

/// Stores a new session (`Change::OpenSession`), and deletes the sessions
/// that ended more than a day before it.
pub(super) async fn open_session<B: Backend>(
    conn: &mut Conn<B>,
    session: &ConsoleSession,
) -> Result<(), sqlx::Error> {
    let ended_before = session.created_at_ms - KEEP_ENDED_MS;
    B::execute(
        conn,
        Sql::new("DELETE FROM console_sessions WHERE expires_at_ms < $1 OR revoked_at_ms < $1")
            .bind(ended_before),
    )
    .await?;
    B::execute(
        conn,
        Sql::new(format!(
            "INSERT INTO console_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&session.id_sha256)
        .bind(&session.caller)
        .bind(&session.csrf_token)
        .bind(session.created_at_ms)
        .bind(session.last_seen_ms)
        .bind(session.expires_at_ms)
        .bind(session.revoked_at_ms),
    )
    .await?;
    Ok(())
}

/// Revokes a session (`Change::RevokeSession`); false when it was not
/// there or already revoked.
pub(super) async fn revoke_session<B: Backend>(
    conn: &mut Conn<B>,
    id_sha256: &str,
    at_ms: i64,
) -> Result<bool, sqlx::Error> {
    let changed = B::execute(
        conn,
        Sql::new(
            "UPDATE console_sessions SET revoked_at_ms = $1 \
             WHERE id_sha256 = $2 AND revoked_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(id_sha256),
    )
    .await?;
    Ok(changed == 1)
}
