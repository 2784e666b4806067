//! Mock banks, registries and the agencies of the further kinds of asset
//! (a vehicle register, the securities depository, a payment platform, a
//! provident fund centre, the market-regulation registry) that speak the
//! agencies' wire formats (docs/wire-formats.md) over real HTTP, for the
//! gateway's tests and demo.
//!
//! A [`MockFleet`] runs each configured agency on its own listener; a
//! [`MockBankFleet`] runs N generated banks behind one listener, each under
//! its own path prefix (the gateway's agency files for it come from
//! [`fleet_agency_files`]). All of them draw their holdings from one seeded
//! [`population::Population`] plus the named [`fixtures`]. The mocks read
//! and write the wire formats with their own code and never with the
//! gateway's `adapters`, so that a codec bug cannot hide by being on both
//! sides.

pub mod bank_book;
pub mod config;
pub mod faults;
pub mod fixtures;
pub mod fleet_plan;
pub mod further_book;
pub mod ids;
pub mod money;
pub mod names;
pub mod population;
pub mod registry_book;

mod agency;
mod agency_files;
mod bank_fleet;
mod bank_json;
mod bank_xml;
mod control;
mod fault_layer;
mod fleet;
mod fund_callback;
mod further_population;
mod inspect;
mod iso_bank_xml;
mod ledger;
mod market_gbk_xml;
mod payment_json;
mod registry_json;
mod result_push;
mod securities_xml;
mod signing;
mod vehicle_soap;
mod xml_tree;

pub use agency_files::{fleet_agency_files, write_fleet_agency_files};
pub use bank_fleet::MockBankFleet;
pub use config::{AgencySpec, MockConfig, MockDialect};
pub use faults::{FaultConfig, FaultMode, LatencyDistribution, Rate};
pub use fleet::MockFleet;
