//! Fuzz target: OpenSSH ed25519 private keys and ssh-ed25519 public keys. See ephemcrypt::fuzzing::openssh_key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::openssh_key(data));
