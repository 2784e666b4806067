//! Mock banks and registries that speak the agencies' wire formats
//! (docs/wire-formats.md) over real HTTP, for the gateway's tests and demo.
//!
//! A [`MockFleet`] runs each configured agency on its own listener. All of
//! them draw their holdings from one seeded [`population::Population`] plus
//! the named [`fixtures`]. The mocks read and write the wire formats with
//! their own code and never with the gateway's `adapters`, so that a codec
//! bug cannot hide by being on both sides.

pub mod bank_book;
pub mod config;
pub mod fixtures;
pub mod ids;
pub mod money;
pub mod names;
pub mod population;
pub mod registry_book;

mod agency;
mod bank_json;
mod bank_xml;
mod fleet;
mod inspect;
mod ledger;
mod registry_json;
mod xml_tree;

pub use config::{AgencySpec, MockConfig, MockDialect};
pub use fleet::MockFleet;
