//! Fuzz target: see `nudge::fuzzing::frame`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nudge::fuzzing::frame(data));
