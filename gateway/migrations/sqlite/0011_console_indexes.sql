-- Indexes the console's pages need on a large log
-- (docs/benchmarks/console.md, a million rows).
--
-- An inquiry's rows, in order: the console's timeline and
-- `GET /v1/audit/events?inquiry=`. Without it each read was a scan of the
-- whole log. Rows naming no inquiry (orders, console reads, refusals) are
-- left out.
CREATE INDEX audit_by_inquiry ON audit_events (inquiry_id, seq) WHERE inquiry_id IS NOT NULL;
-- An agency's rows in a time window (`events?agency=&from=&to=`, the
-- search form's agency and times, its CSV export): without it the rows
-- were found by walking all of the agency's rows in `seq` order up to the
-- window (most of a second at a million rows, and all of them for a
-- window with none).
CREATE INDEX audit_by_agency_time ON audit_events (agency, at_ms);
