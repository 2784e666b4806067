//! End-to-end stories: the enforcement system, auditors and the mock agencies
//! around a real gateway over real HTTP.

mod audit_log;
mod audit_trail;
mod bad_input;
mod batches;
mod business_hours;
mod callbacks;
mod cases;
mod connections;
mod control_kinds;
mod csv_injection;
mod edge;
mod fail_closed;
mod fleet;
mod further_kinds;
mod inbound_tls;
mod inquiries;
mod limits;
mod mock_kinds;
mod onboarding;
mod order_races;
mod orders;
mod plans;
mod refusals;
mod reload;
mod resilience;
mod roles;
mod two_gateways;
