//! ephemcrypt encrypts a cloud machine's ephemeral disks at every boot with a key that nobody
//! keeps.
//!
//! # Lifecycle
//!
//! The boot chain (dracut or mkinitcpio) mounts the real root, then runs `ephemcrypt setup`
//! before switch_root. ephemcrypt reads the host ([`host`]): the kernel command line, its
//! configuration file, the block devices in sysfs, mounts and swaps, and the first and last bytes
//! of each disk ([`signature`]). [`config`] resolves the settings; [`classify`] decides, disk by
//! disk, which are ephemeral and free; [`plan`] lays out the volume, purely. Nothing is touched
//! until the plan is complete, and `ephemcrypt plan` shows it without touching anything.
pub mod apply;
pub mod classify;
pub mod cli;
pub mod config;
pub mod dm;
pub mod error;
pub mod host;
pub mod json;
pub mod key;
pub mod log;
pub mod plan;
pub mod signature;
pub mod status;
pub mod swap;
pub mod sys;
pub mod system;
pub mod units;

#[cfg(test)]
mod testutil;

pub use error::{Error, Result};
