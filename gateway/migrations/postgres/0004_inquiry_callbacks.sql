-- An inquiry's completion callback is owed from the moment it completes:
-- the statement that completes it sets callback_due, in the same write, and
-- the flag is cleared in the transaction that queues the callback in the
-- outbox (or at once for callers that take none). A gateway that dies in
-- between, or an inquiry completed by an agency's push, is found by the
-- dispatcher's sweep. Inquiries completed before this migration owe none.
ALTER TABLE inquiries ADD COLUMN callback_due INTEGER NOT NULL DEFAULT 0;
CREATE INDEX inquiries_callback_due ON inquiries (completed_at_ms) WHERE callback_due = 1;
