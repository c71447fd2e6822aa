//! Fuzz target: the age v1 reader of the escrow (header, stanzas, MAC, payload) with fixed identities. See ephemcrypt::fuzzing::age_header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::age_header(data));
