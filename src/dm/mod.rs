//! Device-mapper through its control device (`/dev/mapper/control`), without libdevmapper.
//!
//! A mapping's life: [`Control::create`] a device (no table: I/O to it fails), [`Control::load`]
//! a table into its inactive slot, [`Control::resume`] to make that table live; [`Control::remove`]
//! to undo. Tables are plain values ([`table`]); the kernel structures and the single `ioctl(2)` call
//! live in `ioctl.rs`, the only `unsafe` here.
//!
//! Errors name the operation and the device, never a table's parameters: they may hold a key.

pub(crate) mod error;
mod ioctl;
pub(crate) mod table;

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::Path;

use self::flags::{
    DM_ACTIVE_PRESENT_FLAG, DM_READONLY_FLAG, DM_SECURE_DATA_FLAG, DM_STATUS_TABLE_FLAG, DM_SUSPEND_FLAG,
};
pub(crate) use self::ioctl::flags;
pub(crate) use self::ioctl::TargetVersion;
use self::ioctl::{Buffer, Cmd, Request};
pub(crate) use self::table::{Crypt, CryptKey, Dev, Linear, Striped, TableLine, Target, TargetKind};
use crate::units::DevNo;
use crate::{Error, Result};

/// The udev flag carried in the cookie (libdevmapper's libdevmapper.h; the others, 0x01 to 0x20,
/// disable rules or fallbacks, which we never want): it marks the event as coming from the tool that made the change, not from `udevadm trigger`.
pub(crate) const DM_UDEV_PRIMARY_SOURCE_FLAG: u16 = 0x0040;

/// The `event_nr` value that carries `udev_flags` to udev: the flags in the high 16 bits and a base
/// of 0 in the low 16, which is what libdevmapper sends when it does not wait for udev
/// (`dm_task_set_cookie` without udev sync support).
///
/// The kernel passes a non-zero `event_nr` to udev as `DM_COOKIE` on the resume ("change") and
/// remove events; the dm rules (`10-dm.rules`, Debian's `55-dm.rules`) read the flags with `dmsetup
/// udevflags` and store `DM_UDEV_PRIMARY_SOURCE_FLAG` in the udev database. When the real root's udev
/// replays the device after switch_root (an "add" event without a cookie), it finds the flag there;
/// without it the rules take the device for a half-made one and mark it `SYSTEMD_READY=0` (lvm2
/// issue 31, systemd issue 34683). The base must be 0: `95-dm-notify.rules` runs `dmsetup
/// udevcomplete $DM_COOKIE`, which treats a zero base as "flags only, nobody waits" and otherwise
/// looks for the semaphore keyed `DM_COOKIE_MAGIC (0x0D4D) << 16 | base`: there is none for us, so it
/// would fail on every event. The magic belongs to that key, never to `event_nr`.
pub(crate) fn cookie(udev_flags: u16) -> u32 {
    u32::from(udev_flags) << 16
}

/// What DM_DEV_STATUS says about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DevInfo {
    pub(crate) dev: DevNo,
    pub(crate) open_count: i32,
    /// Targets in the live table.
    pub(crate) target_count: u32,
    /// A live table is present.
    pub(crate) active: bool,
    pub(crate) suspended: bool,
}

/// The open device-mapper control device.
#[derive(Debug)]
pub(crate) struct Control {
    fd: File,
}

impl Control {
    /// Opens the control device, usually `/dev/mapper/control`.
    pub(crate) fn open(path: &Path) -> Result<Control> {
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::os("open device-mapper control", path.display(), e))?;
        Ok(Control { fd })
    }

    fn call(&self, req: &Request<'_>) -> Result<Buffer> {
        ioctl::call(self.fd.as_fd(), req)
    }

    /// The target types the kernel has loaded (a module not yet loaded is not listed).
    pub(crate) fn target_versions(&self) -> Result<Vec<TargetVersion>> {
        let req = Request::new(Cmd::ListVersions, "device-mapper list target versions", "");
        ioctl::decode_versions(self.call(&req)?.bytes()).map_err(|why| req.error(why))
    }

    /// Creates device `name` with no table, and returns its device number.
    pub(crate) fn create(&self, name: &str, uuid: &str, udev_flags: u16) -> Result<DevNo> {
        let req = Request {
            uuid,
            event_nr: cookie(udev_flags),
            ..Request::new(Cmd::DevCreate, "device-mapper create", name)
        };
        let dev = DevNo::from_dev_t(self.call(&req)?.header().dev);
        log::debug!("device-mapper: created '{name}' as {dev}");
        Ok(dev)
    }

    /// Loads `targets` into the inactive slot of `name`. `secure` (for tables holding key
    /// material) makes the kernel wipe its copy of the request; ours is wiped in any case.
    pub(crate) fn load(&self, name: &str, targets: &[Target], secure: bool, read_only: bool) -> Result<()> {
        let req = Request {
            flags: if secure { DM_SECURE_DATA_FLAG } else { 0 } | if read_only { DM_READONLY_FLAG } else { 0 },
            targets,
            ..Request::new(Cmd::TableLoad, "device-mapper table load", name)
        };
        self.call(&req)?;
        log::debug!("device-mapper: loaded {} target(s) into '{name}'", targets.len());
        Ok(())
    }

    /// Makes the loaded table of `name` live and lets I/O through.
    pub(crate) fn resume(&self, name: &str, udev_flags: u16) -> Result<()> {
        let req =
            Request { event_nr: cookie(udev_flags), ..Request::new(Cmd::DevSuspend, "device-mapper resume", name) };
        self.call(&req)?;
        log::debug!("device-mapper: resumed '{name}'");
        Ok(())
    }

    /// Removes device `name` and its tables (fails with EBUSY while it is open).
    pub(crate) fn remove(&self, name: &str, udev_flags: u16) -> Result<()> {
        let req =
            Request { event_nr: cookie(udev_flags), ..Request::new(Cmd::DevRemove, "device-mapper remove", name) };
        self.call(&req)?;
        log::debug!("device-mapper: removed '{name}'");
        Ok(())
    }

    /// The state of device `name`, or `None` if there is no such device.
    pub(crate) fn info(&self, name: &str) -> Result<Option<DevInfo>> {
        let req = Request::new(Cmd::DevStatus, "device-mapper status", name);
        let h = match self.call(&req) {
            Ok(buf) => buf.header(),
            Err(Error::Os { source, .. }) if source.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(DevInfo {
            dev: DevNo::from_dev_t(h.dev),
            open_count: h.open_count,
            target_count: h.target_count,
            active: h.flags & DM_ACTIVE_PRESENT_FLAG != 0,
            suspended: h.flags & DM_SUSPEND_FLAG != 0,
        }))
    }

    /// The live table of `name`, as the kernel reports it. A crypt line shows a keyring key as
    /// `:64:logon:<description>`, but a hex key in full, so the reply is marked secure.
    pub(crate) fn table(&self, name: &str) -> Result<Vec<TableLine>> {
        let req = Request {
            flags: DM_STATUS_TABLE_FLAG | DM_SECURE_DATA_FLAG,
            ..Request::new(Cmd::TableStatus, "device-mapper table status", name)
        };
        ioctl::decode_table(self.call(&req)?.bytes()).map_err(|why| req.error(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The other udev flags of libdevmapper.h, to check the whole range of the cookie.
    const DM_UDEV_DISABLE_DM_RULES_FLAG: u16 = 0x0001;
    const DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG: u16 = 0x0002;
    const DM_UDEV_DISABLE_DISK_RULES_FLAG: u16 = 0x0004;
    const DM_UDEV_DISABLE_OTHER_RULES_FLAG: u16 = 0x0008;
    const DM_UDEV_LOW_PRIORITY_FLAG: u16 = 0x0010;
    const DM_UDEV_DISABLE_LIBRARY_FALLBACK: u16 = 0x0020;

    #[test]
    fn cookie_carries_udev_flags_above_the_magic() {
        // No flags: no cookie, and the kernel sends no DM_COOKIE at all.
        assert_eq!(cookie(0), 0);
        // A zero base: `dmsetup udevcomplete` returns at once instead of looking for a semaphore.
        assert_eq!(cookie(DM_UDEV_PRIMARY_SOURCE_FLAG), 0x0040_0000);
        assert_eq!(cookie(DM_UDEV_PRIMARY_SOURCE_FLAG) & 0xffff, 0);
        let all = DM_UDEV_DISABLE_DM_RULES_FLAG
            | DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG
            | DM_UDEV_DISABLE_DISK_RULES_FLAG
            | DM_UDEV_DISABLE_OTHER_RULES_FLAG
            | DM_UDEV_LOW_PRIORITY_FLAG
            | DM_UDEV_DISABLE_LIBRARY_FALLBACK
            | DM_UDEV_PRIMARY_SOURCE_FLAG;
        assert_eq!(cookie(all), 0x007F_0000);
    }

    #[test]
    fn open_error_names_the_path() {
        let err = Control::open(Path::new("/nonexistent/mapper/control")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("open device-mapper control /nonexistent/mapper/control: ") && text.ends_with(" (ENOENT)")
        );
    }
}
