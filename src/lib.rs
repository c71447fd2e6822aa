//! ephemcrypt encrypts a cloud machine's ephemeral disks at every boot with a key that nobody
//! keeps.
//!
//! # Data flow
//!
//! The boot chain (dracut, mkinitcpio) mounts the real root, then runs `ephemcrypt setup`
//! before switch_root. [`setup`](crate::setup) reads the host ([`host`]: the kernel command line,
//! the configuration file, the block devices in sysfs, mounts and swaps, and the first and last
//! bytes of each candidate disk, [`signature`]) and asks the kernel what it can do (through
//! [`system::System`]). [`config`] resolves the settings; [`classify`] decides, disk by disk,
//! which are ephemeral and free; [`plan`] lays out the volume and lists the [`step`]s, purely;
//! [`execute`] takes the steps one by one with an undo stack, then writes the [`status`].
//! `ephemcrypt plan` prints the very steps setup would take, and touches nothing.
mod age;
// The boot path never panics (issue 19): a broken invariant is an `Error::Internal`, which fails
// its step and takes the failure policy (a panic aborts a release build: no rollback, no policy).
// Denied outside tests, module by module (age and recover are not the boot path).
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod classify;
pub mod cli;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod config;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod dirfd;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
mod disk;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod dm;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod error;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
mod escape;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod execute;
#[cfg(feature = "fault-injection")]
mod fault;
#[cfg(fuzzing)]
pub mod fuzzing;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
mod header;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod host;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
pub mod json;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
mod key;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
pub mod log;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod needs;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod nfd;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod parallel;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
mod paths;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod plan;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod progress;
mod recover;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod setup;
mod shell;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
mod signature;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod status;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod step;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
mod swap;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
mod syscall;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod system;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod tpm;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod units;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
mod visible;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod testutil;

use error::{Error, Result};
