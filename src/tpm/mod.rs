//! Measuring setup's outcome into a TPM PCR: the commands (`codec`, pure), a SHA-1 for the sha1
//! bank, and the event ([`event`]) with its systemd measurement-log record.

// Until setup's measure step uses it (the next commit).
#![allow(dead_code, unused_imports)]

pub(crate) mod codec;
mod sha1;

pub(crate) use self::codec::{Bank, TpmError};
