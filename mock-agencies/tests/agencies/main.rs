//! The mock agencies seen from outside, over real HTTP on ephemeral ports:
//! what a court's gateway sends and what comes back, as stories.

mod bank_fleet;
mod bank_json;
mod bank_xml;
mod common;
mod config;
mod control;
mod faults;
mod faults_more;
mod further_control;
mod further_kinds;
mod iso_bank_xml;
mod population;
mod registry;
mod registry_callback;
