//! Fuzz target: the TPM responses setup decodes (PCR banks, PCR_Extend, PCR_Read). See
//! ephemcrypt::fuzzing::tpm_response.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::tpm_response(data));
