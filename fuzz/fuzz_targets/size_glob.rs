//! Fuzz target: sizes, device numbers, octal escapes and globs. See ephemcrypt::fuzzing::size_glob.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::size_glob(data));
