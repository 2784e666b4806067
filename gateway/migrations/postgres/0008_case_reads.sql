-- A case's freeze plans, read by `GET /v1/cases/{case_number}`: by caller
-- and case, newest first, as `orders_case` serves its orders.
CREATE INDEX freeze_plans_case ON freeze_plans (caller, case_number, created_at_ms);
