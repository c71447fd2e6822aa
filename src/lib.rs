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
mod classify;
pub mod cli;
mod config;
mod disk;
mod dm;
mod error;
mod escape;
mod execute;
#[cfg(feature = "fault-injection")]
mod fault;
#[cfg(fuzzing)]
pub mod fuzzing;
mod header;
mod host;
pub mod json;
mod key;
pub mod log;
mod paths;
mod plan;
mod recover;
mod setup;
mod signature;
mod status;
mod step;
mod swap;
mod sys;
mod system;
mod units;
mod visible;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod testutil;

use error::{Error, Result};
