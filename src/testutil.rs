//! Builders shared by the unit tests.

use crate::disk::{Disk, Probe};
use crate::units::{Bytes, DevNo};

pub(crate) const AWS: &str = "Amazon EC2 NVMe Instance Storage";

/// A clean, unmounted 100 GiB instance-store disk; its minor number comes from the digits in its
/// name, so different names get different numbers.
pub(crate) fn disk(name: &str, serial: &str) -> Disk {
    let minor = name.bytes().filter(u8::is_ascii_digit).fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let dev = DevNo { major: 259, minor };
    Disk { model: AWS.into(), serial: serial.into(), probe: Probe::Blank, ..Disk::new(name, dev, Bytes(100 << 30)) }
}
