//! Builders shared by the unit tests.

use std::path::PathBuf;

use crate::host::{Disk, Probe};
use crate::units::{Bytes, DevNo};

pub const AWS: &str = "Amazon EC2 NVMe Instance Storage";

/// A clean, unmounted 100 GiB instance-store disk.
pub fn disk(name: &str, serial: &str) -> Disk {
    Disk {
        name: name.into(),
        path: PathBuf::from("/dev").join(name),
        dev: DevNo { major: 259, minor: name.len() as u32 },
        size: Bytes(100 << 30),
        model: AWS.into(),
        serial: serial.into(),
        vendor: String::new(),
        logical_block_size: 512,
        read_only: false,
        removable: false,
        holders: vec![],
        partitions: vec![],
        mounts: vec![],
        swaps: vec![],
        links: vec![],
        probe: Probe::Clean,
    }
}
