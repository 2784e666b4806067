//! The asset model, the domain's identifiers, agency configuration and the
//! dialect codecs that turn requests into agency messages and replies back
//! into the model.
//!
//! This crate does no I/O: it knows nothing of HTTP servers, sockets or
//! databases, so every codec can be tested on bytes alone.

pub mod agency;
pub mod catalog;
pub mod conformance;
pub mod control;
pub mod dialect;
pub mod engine;
pub mod ids;
pub mod model;
pub mod xml;
