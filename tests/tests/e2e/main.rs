//! End-to-end stories: the enforcement system, auditors and the mock agencies
//! around a real gateway over real HTTP.

mod audit_trail;
mod bad_input;
mod fail_closed;
mod inquiries;
