//! Any bytes, as an agency's reply, to every decoder of every dialect in
//! config/dialects (inquiry, poll, callback, control and control-poll
//! replies). `adapters::fuzzing` panics on a broken rule as well as on a
//! bug. Seed it with the conformance samples: `scripts/fuzz` does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    adapters::fuzzing::shipped().decode_everything(data);
});
