-- The audit chain's head row keeps the chain's tail: the last row's number
-- and hash. A writer chains its batch after the tail it last wrote and, in
-- the same statement, moves the head on only if it is still there (one
-- round trip and one commit a batch); when another writer moved it, it
-- falls back to locking the head and reading the tail from audit_events.
-- A gateway of an earlier version appends without moving the head: the
-- next batch's numbers then collide with its rows, and that batch takes the
-- fallback too.
ALTER TABLE audit_head ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_head
    ADD COLUMN hash TEXT COLLATE "C" NOT NULL
    DEFAULT '0000000000000000000000000000000000000000000000000000000000000000';
UPDATE audit_head SET seq = t.seq, hash = t.hash
FROM (SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1) AS t
WHERE audit_head.id = 1;
