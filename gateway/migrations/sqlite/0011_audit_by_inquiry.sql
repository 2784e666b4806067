-- An inquiry's rows, in order: the console's timeline and
-- `GET /v1/audit/events?inquiry=`. Without it each read was a scan of the
-- whole log (seconds at a million rows, docs/benchmarks/console.md). Rows
-- naming no inquiry (orders, console reads, refusals) are left out.
CREATE INDEX audit_by_inquiry ON audit_events (inquiry_id, seq) WHERE inquiry_id IS NOT NULL;
