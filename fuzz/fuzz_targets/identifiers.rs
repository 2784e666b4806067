//! Any bytes to every identifier and value parser (case numbers, identity
//! numbers, credit codes, yuan amounts, civil dates) when they are UTF-8,
//! and to the XML and JSON readers always. `adapters::fuzzing` checks the
//! round trips of whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    adapters::fuzzing::parse_everything_bytes(data);
});
