//! Fuzz target: see `nudge::fuzzing::intent_file`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nudge::fuzzing::intent_file(data));
