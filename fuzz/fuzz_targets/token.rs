//! Fuzz target: see `nudge::fuzzing::token`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nudge::fuzzing::token(data));
