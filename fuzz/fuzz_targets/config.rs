//! Fuzz target: the configuration file (/etc/ephemcrypt.conf), with a kernel command line after a NUL. See ephemcrypt::fuzzing::config.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::config(data));
