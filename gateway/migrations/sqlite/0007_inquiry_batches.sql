-- Batch inquiries: one request naming up to 10,000 subjects, each with its
-- case number, for the same officers. Every accepted subject is an inquiry
-- of its own (with its tasks, its audit rows and its completion), marked
-- with the batch and the line it came from; the batch keeps what is common
-- to them and the lines it refused.
CREATE TABLE inquiry_batches (
    id              TEXT PRIMARY KEY,
    caller          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body_sha256     TEXT NOT NULL,
    court           TEXT NOT NULL,
    officers        TEXT NOT NULL,
    asset_kinds     TEXT NOT NULL,
    lines           INTEGER NOT NULL,
    last_line       INTEGER NOT NULL,
    accepted        INTEGER NOT NULL,
    refused         TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    UNIQUE (caller, idempotency_key)
);
ALTER TABLE inquiries ADD COLUMN batch_id TEXT;
ALTER TABLE inquiries ADD COLUMN batch_line INTEGER;
CREATE INDEX inquiries_by_batch ON inquiries (batch_id, batch_line) WHERE batch_id IS NOT NULL;
