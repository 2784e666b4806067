-- Batch inquiries: one request naming up to 10,000 subjects, each with its
-- case number, for the same officers. Every accepted subject is an inquiry
-- of its own (with its tasks, its audit rows and its completion), marked
-- with the batch and the line it came from; the batch keeps what is common
-- to them and the lines it refused.
CREATE TABLE inquiry_batches (
    id              TEXT COLLATE "C" PRIMARY KEY,
    caller          TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    body_sha256     TEXT COLLATE "C" NOT NULL,
    court           TEXT COLLATE "C" NOT NULL,
    officers        TEXT COLLATE "C" NOT NULL,
    asset_kinds     TEXT COLLATE "C" NOT NULL,
    lines           BIGINT NOT NULL,
    last_line       BIGINT NOT NULL,
    accepted        BIGINT NOT NULL,
    refused         TEXT COLLATE "C" NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    UNIQUE (caller, idempotency_key)
);
ALTER TABLE inquiries ADD COLUMN batch_id TEXT COLLATE "C";
ALTER TABLE inquiries ADD COLUMN batch_line BIGINT;
CREATE INDEX inquiries_by_batch ON inquiries (batch_id, batch_line) WHERE batch_id IS NOT NULL;
