-- Control orders, freeze plans, idempotency keys, and the outbox of signed
-- callbacks to callers.

-- One control measure sent to one agency. `phase` says what the order
-- worker does next: send (never sent, or the agency has never seen it),
-- query (sent, outcome unknown: ask the agency before anything else), poll
-- (accepted, result later), watch (waiting in line: look again later), done.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    case_number TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_name TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    officers TEXT NOT NULL,
    court TEXT NOT NULL,
    documents TEXT NOT NULL,
    action TEXT NOT NULL,
    agency TEXT NOT NULL,
    account_number TEXT,
    unit_number TEXT,
    amount_fen INTEGER,
    start_date TEXT,
    end_date TEXT,
    prior_order TEXT,
    -- The freeze or seal whose measure this order acts on (itself for one).
    measure_order TEXT NOT NULL,
    prior_request_number TEXT,
    plan_id TEXT,
    request_number TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    phase TEXT NOT NULL,
    send_attempts INTEGER NOT NULL DEFAULT 0,
    steps INTEGER NOT NULL DEFAULT 0,
    ticket TEXT,
    controlled_fen INTEGER,
    shortfall_fen INTEGER,
    deducted_fen INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    queue_position INTEGER,
    measure_start TEXT,
    measure_end TEXT,
    agency_reference TEXT,
    detail TEXT,
    warned_end TEXT,
    due_at_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    decided_at_ms INTEGER,
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
    id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    case_number TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_name TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    officers TEXT NOT NULL,
    court TEXT NOT NULL,
    documents TEXT NOT NULL,
    inquiry_id TEXT NOT NULL,
    amount_fen INTEGER NOT NULL,
    end_date TEXT NOT NULL,
    -- JSON: the accounts in the order they are tried.
    accounts TEXT NOT NULL,
    next_index INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    controlled_fen INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    due_at_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    completed_at_ms INTEGER,
    UNIQUE (caller, idempotency_key)
);
CREATE INDEX freeze_plans_due ON freeze_plans (due_at_ms) WHERE status = 'running';

-- Signed callbacks to callers, delivered with retries.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    event TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER,
    delivered_at_ms INTEGER,
    failed_at_ms INTEGER,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (due_at_ms) WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL;
