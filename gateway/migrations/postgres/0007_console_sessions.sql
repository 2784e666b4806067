-- Sessions of the web console (/console): a caller signs in with its bearer
-- token and gets a random session id in a cookie. Only the SHA-256 of that
-- id is kept: a copy of this table does not let anyone act as the session.
-- A session ends when it is revoked (sign-out), when it has been idle
-- longer than `console.session_idle_minutes` (last_seen_ms), or at
-- expires_at_ms (`console.session_absolute_minutes` after sign-in).
CREATE TABLE console_sessions (
    id_sha256     TEXT COLLATE "C" PRIMARY KEY,
    caller        TEXT COLLATE "C" NOT NULL,
    csrf_token    TEXT COLLATE "C" NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at_ms);
