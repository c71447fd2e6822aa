//! Unit newtypes, so that bytes and 512-byte sectors never mix.

use std::fmt;

/// The kernel's sector: 512 bytes, whatever the device's logical block size.
pub(crate) const SECTOR: u64 = 512;

/// A length or offset in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Bytes(pub u64);

/// A length or offset in 512-byte sectors (the unit of device-mapper tables and sysfs `size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Sectors(pub u64);

impl Bytes {
    /// Whole sectors in this many bytes (rounded down).
    pub(crate) fn sectors(self) -> Sectors {
        Sectors(self.0 / SECTOR)
    }
}

impl Sectors {
    pub(crate) fn bytes(self) -> Bytes {
        Bytes(self.0 * SECTOR)
    }
    /// Round down to a multiple of `unit` sectors (`unit` > 0).
    pub(crate) fn round_down(self, unit: Sectors) -> Sectors {
        Sectors(self.0 - self.0 % unit.0)
    }
}

impl fmt::Display for Sectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Bytes {
    /// Human size: exact binary suffix where it divides, else one decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];
        for (suffix, size) in UNITS {
            if self.0 >= size {
                if self.0 % size == 0 {
                    return write!(f, "{}{}", self.0 / size, suffix);
                }
                // One decimal, rounded, in integers (no floating point in the binary).
                let tenths = (u128::from(self.0) * 10 + u128::from(size) / 2) / u128::from(size);
                return write!(f, "{}.{}{}", tenths / 10, tenths % 10, suffix);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A device number, as device-mapper tables write it (`major:minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DevNo {
    pub(crate) major: u32,
    pub(crate) minor: u32,
}

impl DevNo {
    /// Parse sysfs' `dev` file content, `major:minor`.
    pub(crate) fn parse(s: &str) -> Option<DevNo> {
        let (a, b) = s.trim().split_once(':')?;
        Some(DevNo { major: a.parse().ok()?, minor: b.parse().ok()? })
    }
    /// The kernel's encoded `dev_t` (as `makedev`).
    pub(crate) fn to_dev_t(self) -> u64 {
        libc::makedev(self.major, self.minor)
    }
    pub(crate) fn from_dev_t(dev: u64) -> DevNo {
        DevNo { major: libc::major(dev), minor: libc::minor(dev) }
    }
}

impl fmt::Display for DevNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_display() {
        assert_eq!(Bytes(4 << 30).to_string(), "4G");
        assert_eq!(Bytes(1536 << 20).to_string(), "1.5G");
        assert_eq!(Bytes(100).to_string(), "100B");
        assert_eq!(Bytes(1769 << 30).to_string(), "1.7T");
        assert_eq!(Bytes((2 << 40) - 1).to_string(), "2.0T");
        assert_eq!(Bytes(u64::MAX).to_string(), "16777216.0T");
    }

    #[test]
    fn devno_roundtrip() {
        let d = DevNo::parse("259:3\n").unwrap();
        assert_eq!(d, DevNo { major: 259, minor: 3 });
        assert_eq!(DevNo::from_dev_t(d.to_dev_t()), d);
        assert_eq!(d.to_string(), "259:3");
        assert!(DevNo::parse("x").is_none());
    }

    #[test]
    fn rounding() {
        assert_eq!(Sectors(1000).round_down(Sectors(512)), Sectors(512));
        assert_eq!(Bytes(4096).sectors(), Sectors(8));
    }
}
