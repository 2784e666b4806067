-- Signed checkpoints of the audit chain: every N rows or T seconds the
-- writer signs (seq, hash) of the last row with the gateway's Ed25519 key.
CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- Auditors' questions read accepted requests by action and time.
CREATE INDEX audit_by_action ON audit_events (action, at_ms);
-- Retention finds old rows that still hold a body.
CREATE INDEX audit_with_body ON audit_events (at_ms) WHERE body IS NOT NULL;
