//! Fuzz target: the kernel command line (rd.ephemcrypt.*), any bytes. See ephemcrypt::fuzzing::cmdline.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::cmdline(data));
