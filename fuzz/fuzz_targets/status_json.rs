//! Fuzz target: the status file and the JSON reader. See ephemcrypt::fuzzing::status_json.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::status_json(data));
