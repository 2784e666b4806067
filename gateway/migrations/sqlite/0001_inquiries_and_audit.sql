-- Inquiries, one task per agency, and the hash-chained audit log.
-- Times are unix milliseconds (UTC).

CREATE TABLE inquiries (
    id              TEXT PRIMARY KEY,
    caller          TEXT NOT NULL,
    case_number     TEXT NOT NULL,
    subject_kind    TEXT NOT NULL,
    subject_name    TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    officers        TEXT NOT NULL,
    asset_kinds     TEXT NOT NULL,
    court           TEXT NOT NULL,
    warnings        TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    deadline_at_ms  INTEGER NOT NULL,
    completed_at_ms INTEGER
);
CREATE INDEX inquiries_by_case ON inquiries (case_number, caller, created_at_ms);
CREATE INDEX inquiries_running ON inquiries (status, deadline_at_ms);

CREATE TABLE agency_tasks (
    inquiry_id     TEXT NOT NULL REFERENCES inquiries (id),
    agency         TEXT NOT NULL,
    request_number TEXT NOT NULL UNIQUE,
    state          TEXT NOT NULL,
    detail         TEXT,
    ticket         TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    due_at_ms      INTEGER NOT NULL,
    lease_owner    TEXT,
    lease_until_ms INTEGER,
    sent_at_ms     INTEGER,
    latency_ms     INTEGER,
    result         TEXT,
    PRIMARY KEY (inquiry_id, agency)
);
CREATE INDEX agency_tasks_due ON agency_tasks (state, due_at_ms);

CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY,
    at_ms          INTEGER NOT NULL,
    direction      TEXT NOT NULL,
    caller         TEXT,
    officers       TEXT,
    case_number    TEXT,
    subject        TEXT,
    agency         TEXT,
    action         TEXT NOT NULL,
    inquiry_id     TEXT,
    request_number TEXT,
    status         TEXT,
    latency_ms     INTEGER,
    body_sha256    TEXT,
    body           BLOB,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX audit_by_case ON audit_events (case_number, seq);
CREATE INDEX audit_by_subject ON audit_events (subject, seq);
CREATE INDEX audit_by_agency ON audit_events (agency, seq);
CREATE INDEX audit_by_caller ON audit_events (caller, seq);
CREATE INDEX audit_by_time ON audit_events (at_ms);
