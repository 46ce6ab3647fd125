//! Fuzz target: see `nudge::fuzzing::route`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nudge::fuzzing::route(data));
