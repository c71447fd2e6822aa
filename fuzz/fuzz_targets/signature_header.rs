//! Fuzz target: the signature probe on a disk image, and the on-disk header. See ephemcrypt::fuzzing::signature_header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::signature_header(data));
