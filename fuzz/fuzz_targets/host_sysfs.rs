//! Fuzz target: a whole machine as a directory tree, read as `ephemcrypt plan --host DIR` reads
//! it: discovery, classification, planning and the plan's printing. See
//! ephemcrypt::fuzzing::host_sysfs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::host_sysfs(data));
