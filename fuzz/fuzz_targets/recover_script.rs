//! Fuzz target: recover's stock-tool script over hostile header strings, checked structurally (no
//! shell run). See ephemcrypt::fuzzing::recover_script.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::recover_script(data));
