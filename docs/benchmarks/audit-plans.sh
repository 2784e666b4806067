#!/bin/sh
# The plans of the store's audit queries on both backends, to see which
# index of audit_events each one uses (docs/benchmarks/audit.md, "Which
# queries use each index"). Builds a fresh database from the migrations,
# fills it with 180,000 rows shaped as 20,000 four-agency inquiries make
# them (one a second, over five and a half hours), and prints EXPLAIN QUERY PLAN (SQLite, as the gateway runs it:
# no ANALYZE) and EXPLAIN (PostgreSQL, after ANALYZE, as autovacuum
# would have it; the gateway plans each statement for its parameters).
#
# The SQL below is the store's (gateway/src/store/sqlite.rs and
# postgres.rs: audit_events with each filter, the three auditor reports,
# purge_bodies, audit_chain, audit_tail) with parameters written in, one
# text for both backends: the reports without their unnesting of the
# officers and PostgreSQL's purge without its row locks, which change
# nothing in how audit_events is read. Keep it in step with those files
# when they change.
#
#   sh docs/benchmarks/audit-plans.sh [postgres://postgres@127.0.0.1:5432]
#
# Needs sqlite3 and psql; the PostgreSQL part is skipped when the server
# cannot be reached. The database it makes there is dropped at the end.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
server=${1:-postgres://postgres@127.0.0.1:5432}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

REQ="direction = 'inbound' AND status = 'accepted' AND action IN ('inquiry.create', 'order.create', 'freeze_plan.create')"
# Each query as "label|SQL"; :W is a one-hour window.
queries() {
    cat <<SQL
events, no filter|SELECT * FROM audit_events WHERE 1 = 1 ORDER BY seq LIMIT 100
events?case_number|SELECT * FROM audit_events WHERE 1 = 1 AND case_number = '(2024)甘0503执17号' ORDER BY seq LIMIT 100
events?case_number&cursor|SELECT * FROM audit_events WHERE 1 = 1 AND case_number = '(2024)甘0503执17号' AND seq > 1000 ORDER BY seq LIMIT 100
events?subject|SELECT * FROM audit_events WHERE 1 = 1 AND subject = '360426199100000017' ORDER BY seq LIMIT 100
events?agency|SELECT * FROM audit_events WHERE 1 = 1 AND agency = 'bank-1' ORDER BY seq LIMIT 100
events?caller|SELECT * FROM audit_events WHERE 1 = 1 AND caller = 'court-3' ORDER BY seq LIMIT 100
events?action (common)|SELECT * FROM audit_events WHERE 1 = 1 AND action = 'inquiry.create' ORDER BY seq LIMIT 100
events?action (rare)|SELECT * FROM audit_events WHERE 1 = 1 AND action = 'audit.query' ORDER BY seq LIMIT 100
events?inquiry|SELECT * FROM audit_events WHERE 1 = 1 AND inquiry_id = 'inq_17' ORDER BY seq LIMIT 100
events?from&to|SELECT * FROM audit_events WHERE 1 = 1 :W ORDER BY seq LIMIT 100
events?case_number&from&to|SELECT * FROM audit_events WHERE 1 = 1 AND case_number = '(2024)甘0503执17号' :W ORDER BY seq LIMIT 100
events/{seq}|SELECT * FROM audit_events WHERE seq = 1000
report: subjects in several cases|SELECT subject, COUNT(DISTINCT case_number), COUNT(*) FROM audit_events WHERE $REQ AND subject IS NOT NULL AND case_number IS NOT NULL :W GROUP BY subject HAVING COUNT(DISTINCT case_number) > 1 ORDER BY COUNT(DISTINCT case_number) DESC, subject LIMIT 100
report: officers' cases|SELECT caller, case_number, COUNT(*) FROM audit_events WHERE $REQ AND case_number IS NOT NULL AND caller IS NOT NULL :W GROUP BY caller, case_number ORDER BY caller, case_number
report: officers' daily volume|SELECT at_ms / 86400000, COUNT(*) FROM audit_events WHERE $REQ :W GROUP BY 1 HAVING COUNT(*) > 10 ORDER BY 1
retention: purge_bodies|UPDATE audit_events SET body = NULL WHERE body IS NOT NULL AND seq IN (SELECT seq FROM audit_events WHERE body IS NOT NULL AND at_ms < 1700000500000 ORDER BY at_ms LIMIT 5000)
verify: audit_chain|SELECT seq, hash FROM audit_events WHERE seq > 1000 ORDER BY seq LIMIT 1000
writer: audit_tail|SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1
bench: rows in a window|SELECT direction, COUNT(*) FROM audit_events WHERE 1 = 1 :W GROUP BY direction
SQL
}
window="AND at_ms >= 1700000500000 AND at_ms < 1700004100000"

echo "## SQLite (no ANALYZE, as the gateway runs)"
db="$work/plans.db"
for f in "$root"/gateway/migrations/sqlite/*.sql; do sqlite3 "$db" < "$f"; done
sqlite3 "$db" <<SQL
WITH RECURSIVE q(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM q WHERE i < 20000),
     r(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM r WHERE k < 8)
INSERT INTO audit_events (seq, at_ms, direction, caller, officers, case_number, subject, agency,
    action, inquiry_id, request_number, status, body_sha256, body, prev_hash, hash)
SELECT i * 9 + k, 1700000000000 + i * 1000 + k,
    CASE WHEN k = 0 THEN 'inbound' WHEN k < 5 THEN 'outbound' ELSE 'reply' END,
    'court-' || (i % 10), '["李明 (ZX620503001)"]', '(2024)甘0503执' || (i % 2000) || '号',
    '3604261991' || printf('%08d', i % 5000), CASE WHEN k = 0 THEN NULL ELSE 'bank-' || (k % 4) END,
    CASE WHEN k = 0 THEN 'inquiry.create' WHEN k < 5 THEN 'inquiry.send' ELSE 'inquiry.reply' END,
    'inq_' || i, CASE WHEN k = 0 THEN NULL ELSE 'Q' || i || '-' || k END,
    CASE WHEN k = 0 THEN 'accepted' WHEN k >= 5 THEN 'http_200' END, 'x', x'00', 'p', 'h'
FROM q, r;
SQL
queries | while IFS='|' read -r label sql; do
    echo "### $label"
    echo "EXPLAIN QUERY PLAN $(echo "$sql" | sed "s/:W/$window/")" | sqlite3 "$db" | sed 's/^/    /'
done

echo
echo "## PostgreSQL (after ANALYZE)"
if ! psql -qAtc 'SELECT 1' "$server/postgres" > /dev/null 2>&1; then
    echo "skipped: $server cannot be reached"
    exit 0
fi
name="audit_plans_$$"
psql -qc "CREATE DATABASE $name" "$server/postgres"
trap 'psql -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" "$server/postgres"; rm -rf "$work"' EXIT
for f in "$root"/gateway/migrations/postgres/*.sql; do
    psql -q -v ON_ERROR_STOP=1 -f "$f" "$server/$name"
done
psql -q "$server/$name" <<SQL
INSERT INTO audit_events (seq, at_ms, direction, caller, officers, case_number, subject, agency,
    action, inquiry_id, request_number, status, body_sha256, body, prev_hash, hash)
SELECT i * 9 + k, 1700000000000 + i * 1000 + k,
    CASE WHEN k = 0 THEN 'inbound' WHEN k < 5 THEN 'outbound' ELSE 'reply' END,
    'court-' || (i % 10), '["李明 (ZX620503001)"]'::jsonb, '(2024)甘0503执' || (i % 2000) || '号',
    '3604261991' || lpad((i % 5000)::text, 8, '0'), CASE WHEN k = 0 THEN NULL ELSE 'bank-' || (k % 4) END,
    CASE WHEN k = 0 THEN 'inquiry.create' WHEN k < 5 THEN 'inquiry.send' ELSE 'inquiry.reply' END,
    'inq_' || i, CASE WHEN k = 0 THEN NULL ELSE 'Q' || i || '-' || k END,
    CASE WHEN k = 0 THEN 'accepted' WHEN k >= 5 THEN 'http_200' END, 'x', '\x00'::bytea, 'p', 'h'
FROM generate_series(1, 20000) i, generate_series(0, 8) k;
ANALYZE audit_events;
SQL
queries | while IFS='|' read -r label sql; do
    echo "### $label"
    psql -qAt -c "EXPLAIN (COSTS OFF) $(echo "$sql" | sed "s/:W/$window/")" "$server/$name" | sed 's/^/    /'
done
