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
pub mod fuzzing;
pub mod ids;
pub mod json;
pub mod model;
pub mod xml;

/// Longest quotation of a reply that an error message carries, in
/// characters: a hostile agency must not make an error (which the gateway
/// logs and stores) as long as its reply.
pub const MAX_QUOTE_CHARS: usize = 120;

/// `text` cut to `MAX_QUOTE_CHARS` characters, with `…` where it was cut.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}
