//! Application services: what the API's handlers call to accept a
//! request. A service applies the law's rules, takes whatever turn or
//! claim the request needs, and stores the request with its acceptance row
//! through the journal; a handler parses, authorises, calls one service and
//! answers with what it returns, and knows nothing of leases, permits,
//! turns or writers.

pub mod batches;
pub mod inquiries;
pub mod orders;
pub mod pushes;
