//! Builders shared by the unit tests.

use crate::host::{Disk, Probe};
use crate::units::{Bytes, DevNo};

pub const AWS: &str = "Amazon EC2 NVMe Instance Storage";

/// A clean, unmounted 100 GiB instance-store disk.
pub fn disk(name: &str, serial: &str) -> Disk {
    let dev = DevNo { major: 259, minor: name.len() as u32 };
    Disk { model: AWS.into(), serial: serial.into(), probe: Probe::Clean, ..Disk::new(name, dev, Bytes(100 << 30)) }
}
