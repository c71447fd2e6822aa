//! Fuzz target: Bech32 and base64, age1… recipients and AGE-SECRET-KEY-1… identities. See ephemcrypt::fuzzing::bech32.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::bech32(data));
