-- The PostgreSQL schema: the same tables as the SQLite migrations 0001..0004
-- together, in PostgreSQL types. Times are unix milliseconds (UTC), BIGINT.
--
-- Every text column is COLLATE "C": comparisons and ORDER BY are byte-wise
-- (code point order), as in SQLite, whatever the database's locale. JSON is
-- kept as the text the gateway wrote (TEXT), except the audit log's officers
-- (JSONB), which the auditors' questions and the officer filter unnest.

-- Inquiries, one task per agency.
CREATE TABLE inquiries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    caller          TEXT COLLATE "C" NOT NULL,
    case_number     TEXT COLLATE "C" NOT NULL,
    subject_kind    TEXT COLLATE "C" NOT NULL,
    subject_name    TEXT COLLATE "C" NOT NULL,
    subject_id      TEXT COLLATE "C" NOT NULL,
    officers        TEXT COLLATE "C" NOT NULL,
    asset_kinds     TEXT COLLATE "C" NOT NULL,
    court           TEXT COLLATE "C" NOT NULL,
    warnings        TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    deadline_at_ms  BIGINT NOT NULL,
    completed_at_ms BIGINT,
    -- The version of the agency set an inquiry started with (NULL: the
    -- current set).
    catalog_version TEXT COLLATE "C"
);
CREATE INDEX inquiries_by_case ON inquiries (case_number, caller, created_at_ms);
CREATE INDEX inquiries_running ON inquiries (status, deadline_at_ms);

CREATE TABLE agency_tasks (
    inquiry_id     TEXT COLLATE "C" NOT NULL REFERENCES inquiries (id),
    agency         TEXT COLLATE "C" NOT NULL,
    request_number TEXT COLLATE "C" NOT NULL UNIQUE,
    state          TEXT COLLATE "C" NOT NULL,
    detail         TEXT COLLATE "C",
    ticket         TEXT COLLATE "C",
    attempts       BIGINT NOT NULL DEFAULT 0,
    due_at_ms      BIGINT NOT NULL,
    lease_owner    TEXT COLLATE "C",
    lease_until_ms BIGINT,
    sent_at_ms     BIGINT,
    latency_ms     BIGINT,
    result         TEXT COLLATE "C",
    PRIMARY KEY (inquiry_id, agency)
);
CREATE INDEX agency_tasks_due ON agency_tasks (state, due_at_ms);

-- The hash-chained audit log.
CREATE TABLE audit_events (
    seq            BIGINT PRIMARY KEY,
    at_ms          BIGINT NOT NULL,
    direction      TEXT COLLATE "C" NOT NULL,
    caller         TEXT COLLATE "C",
    -- JSON array of "name (credential)" strings.
    officers       JSONB,
    case_number    TEXT COLLATE "C",
    subject        TEXT COLLATE "C",
    agency         TEXT COLLATE "C",
    action         TEXT COLLATE "C" NOT NULL,
    inquiry_id     TEXT COLLATE "C",
    request_number TEXT COLLATE "C",
    status         TEXT COLLATE "C",
    latency_ms     BIGINT,
    body_sha256    TEXT COLLATE "C",
    body           BYTEA,
    prev_hash      TEXT COLLATE "C" NOT NULL,
    hash           TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_by_case ON audit_events (case_number, seq);
CREATE INDEX audit_by_subject ON audit_events (subject, seq);
CREATE INDEX audit_by_agency ON audit_events (agency, seq);
CREATE INDEX audit_by_caller ON audit_events (caller, seq);
CREATE INDEX audit_by_time ON audit_events (at_ms);
-- Auditors' questions read accepted requests by action and time.
CREATE INDEX audit_by_action ON audit_events (action, at_ms);
-- Retention finds old rows that still hold a body.
CREATE INDEX audit_with_body ON audit_events (at_ms) WHERE body IS NOT NULL;

-- One row whose lock is the chain's write lock: `append_audit` locks it
-- (SELECT ... FOR UPDATE) before it reads the tail, so several gateways
-- writing one database keep one chain.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1)
);
INSERT INTO audit_head (id) VALUES (1);

-- Signed checkpoints of the audit chain.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      TEXT COLLATE "C" NOT NULL,
    at_ms     BIGINT NOT NULL,
    key_id    TEXT COLLATE "C" NOT NULL,
    signature TEXT COLLATE "C" NOT NULL
);

-- One control measure sent to one agency. `phase` says what the order
-- worker does next: send (never sent, or the agency has never seen it),
-- query (sent, outcome unknown: ask the agency before anything else), poll
-- (accepted, result later), watch (waiting in line: look again later), done.
CREATE TABLE orders (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    caller               TEXT COLLATE "C" NOT NULL,
    idempotency_key      TEXT COLLATE "C" NOT NULL,
    body_sha256          TEXT COLLATE "C" NOT NULL,
    case_number          TEXT COLLATE "C" NOT NULL,
    subject_kind         TEXT COLLATE "C" NOT NULL,
    subject_name         TEXT COLLATE "C" NOT NULL,
    subject_id           TEXT COLLATE "C" NOT NULL,
    officers             TEXT COLLATE "C" NOT NULL,
    court                TEXT COLLATE "C" NOT NULL,
    documents            TEXT COLLATE "C" NOT NULL,
    action               TEXT COLLATE "C" NOT NULL,
    agency               TEXT COLLATE "C" NOT NULL,
    account_number       TEXT COLLATE "C",
    unit_number          TEXT COLLATE "C",
    amount_fen           BIGINT,
    start_date           TEXT COLLATE "C",
    end_date             TEXT COLLATE "C",
    prior_order          TEXT COLLATE "C",
    -- The freeze or seal whose measure this order acts on (itself for one).
    measure_order        TEXT COLLATE "C" NOT NULL,
    prior_request_number TEXT COLLATE "C",
    plan_id              TEXT COLLATE "C",
    request_number       TEXT COLLATE "C" NOT NULL UNIQUE,
    status               TEXT COLLATE "C" NOT NULL,
    phase                TEXT COLLATE "C" NOT NULL,
    send_attempts        BIGINT NOT NULL DEFAULT 0,
    steps                BIGINT NOT NULL DEFAULT 0,
    ticket               TEXT COLLATE "C",
    controlled_fen       BIGINT,
    shortfall_fen        BIGINT,
    deducted_fen         BIGINT NOT NULL DEFAULT 0,
    reason               TEXT COLLATE "C",
    queue_position       BIGINT,
    measure_start        TEXT COLLATE "C",
    measure_end          TEXT COLLATE "C",
    agency_reference     TEXT COLLATE "C",
    detail               TEXT COLLATE "C",
    warned_end           TEXT COLLATE "C",
    due_at_ms            BIGINT NOT NULL,
    lease_owner          TEXT COLLATE "C",
    lease_until_ms       BIGINT,
    created_at_ms        BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    decided_at_ms        BIGINT,
    UNIQUE (caller, idempotency_key)
);
CREATE INDEX orders_due ON orders (due_at_ms) WHERE phase <> 'done';
CREATE INDEX orders_case ON orders (caller, case_number, created_at_ms);
CREATE INDEX orders_measure ON orders (measure_order);
CREATE INDEX orders_plan ON orders (plan_id) WHERE plan_id IS NOT NULL;
CREATE INDEX orders_end ON orders (measure_end) WHERE status IN ('applied', 'partial', 'waiting');

-- Freeze up to an amount across the accounts an inquiry found, one account
-- after another.
CREATE TABLE freeze_plans (
    id              TEXT COLLATE "C" PRIMARY KEY,
    caller          TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    body_sha256     TEXT COLLATE "C" NOT NULL,
    case_number     TEXT COLLATE "C" NOT NULL,
    subject_kind    TEXT COLLATE "C" NOT NULL,
    subject_name    TEXT COLLATE "C" NOT NULL,
    subject_id      TEXT COLLATE "C" NOT NULL,
    officers        TEXT COLLATE "C" NOT NULL,
    court           TEXT COLLATE "C" NOT NULL,
    documents       TEXT COLLATE "C" NOT NULL,
    inquiry_id      TEXT COLLATE "C" NOT NULL,
    amount_fen      BIGINT NOT NULL,
    end_date        TEXT COLLATE "C" NOT NULL,
    -- JSON: the accounts in the order they are tried.
    accounts        TEXT COLLATE "C" NOT NULL,
    next_index      BIGINT NOT NULL DEFAULT 0,
    status          TEXT COLLATE "C" NOT NULL,
    controlled_fen  BIGINT NOT NULL DEFAULT 0,
    detail          TEXT COLLATE "C",
    due_at_ms       BIGINT NOT NULL,
    lease_owner     TEXT COLLATE "C",
    lease_until_ms  BIGINT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    completed_at_ms BIGINT,
    UNIQUE (caller, idempotency_key)
);
CREATE INDEX freeze_plans_due ON freeze_plans (due_at_ms) WHERE status = 'running';

-- Signed callbacks to callers, delivered with retries.
CREATE TABLE outbox (
    id              TEXT COLLATE "C" PRIMARY KEY,
    caller          TEXT COLLATE "C" NOT NULL,
    event           TEXT COLLATE "C" NOT NULL,
    resource_id     TEXT COLLATE "C" NOT NULL,
    body            BYTEA NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    due_at_ms       BIGINT NOT NULL,
    lease_owner     TEXT COLLATE "C",
    lease_until_ms  BIGINT,
    delivered_at_ms BIGINT,
    failed_at_ms    BIGINT,
    last_error      TEXT COLLATE "C",
    created_at_ms   BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (due_at_ms) WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL;
