#![allow(unsafe_code)]
//! The only device-mapper `unsafe`: the kernel's structures, request codes, and one `ioctl(2)` call.
//!
//! Everything else here is pure: requests are encoded into, and replies decoded from, byte buffers
//! field by field at `offset_of!` positions, so the layout is tested without a kernel and no reply is
//! ever cast to a struct. Facts from include/uapi/linux/dm-ioctl.h and drivers/md/dm-ioctl.c:
//!
//! - A request is one buffer: `struct dm_ioctl` (312 bytes), then a data area at `data_start`.
//!   `data_size` is the size of the whole buffer and bounds what the kernel reads and writes.
//! - DM_TABLE_LOAD data: per target a `struct dm_target_spec`, its NUL-terminated parameters, and
//!   zero padding to 8 bytes; `next` counts from this spec to the next.
//! - DM_TABLE_STATUS replies in the same shape, but there `next` counts from the start of the data
//!   area.
//! - DM_LIST_VERSIONS and DM_LIST_DEVICES reply with chains whose `next` counts from the current
//!   entry and is 0 on the last; an empty device list has `dev == 0` in its first entry.
//! - A reply that does not fit sets DM_BUFFER_FULL_FLAG: send again with a bigger buffer.

use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::ioctl::ioctl_num_type;
use zeroize::Zeroizing;

use self::flags::DM_BUFFER_FULL_FLAG;
use super::table::{TableLine, Target};
use crate::dm::error::DmError;
use crate::units::Sectors;
use crate::{Error, Result};

const DM_IOCTL: u8 = 0xfd;
const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_MAX_TYPE_NAME: usize = 16;

/// The interface version we were written against. The kernel accepts any request whose major
/// matches and whose minor is not above its own, and answers with its own version; 4.0.0 asks for
/// nothing newer than what every 4.x kernel has.
const INTERFACE_VERSION: [u32; 3] = [4, 0, 0];

/// Records in the data area start on 8-byte boundaries.
const ALIGN: usize = 8;

/// First reply area for commands that return lists or tables (libdevmapper's default, 16 KiB).
const REPLY_SPACE: usize = 16 << 10;
/// Give up growing the reply area here: no table of ours comes anywhere near it.
const MAX_REPLY_SPACE: usize = 16 << 20;

/// A target type the kernel has loaded, and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetVersion {
    pub(crate) name: String,
    pub(crate) version: [u32; 3],
}

/// `dm_ioctl.flags` bits.
pub(crate) mod flags {
    /// In: DM_DEV_SUSPEND suspends (without it, it resumes). Out: the device is suspended.
    pub(crate) const DM_SUSPEND_FLAG: u32 = 1 << 1;
    /// In: DM_TABLE_STATUS returns the table lines instead of the targets' runtime status.
    pub(crate) const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;
    /// Out: the device has a live table.
    pub(crate) const DM_ACTIVE_PRESENT_FLAG: u32 = 1 << 5;
    /// Out: the reply did not fit the buffer.
    pub(crate) const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;
    /// In: the buffer holds key material; the kernel wipes its copy when done.
    pub(crate) const DM_SECURE_DATA_FLAG: u32 = 1 << 15;
    /// In: a read-only table (DM_TABLE_LOAD); out: the device is read-only.
    pub(crate) const DM_READONLY_FLAG: u32 = 1 << 0;
}

/// `struct dm_ioctl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DmIoctl {
    pub(crate) version: [u32; 3],
    pub(crate) data_size: u32,
    pub(crate) data_start: u32,
    pub(crate) target_count: u32,
    pub(crate) open_count: i32,
    pub(crate) flags: u32,
    /// In: the udev cookie (resume, remove, rename). Out: the event number.
    pub(crate) event_nr: u32,
    pub(crate) padding: u32,
    pub(crate) dev: u64,
    pub(crate) name: [u8; DM_NAME_LEN],
    pub(crate) uuid: [u8; DM_UUID_LEN],
    pub(crate) data: [u8; 7],
}

/// `struct dm_target_spec`; the NUL-terminated parameters follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; DM_MAX_TYPE_NAME],
}

/// `struct dm_target_versions`; the NUL-terminated name follows at offset 16.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DmTargetVersions {
    next: u32,
    version: [u32; 3],
}

const HEADER: usize = size_of::<DmIoctl>();
const SPEC: usize = size_of::<DmTargetSpec>();
const VERSIONS_NAME: usize = size_of::<DmTargetVersions>();

/// The commands we send, numbered as in dm-ioctl.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Cmd {
    /// Not sent: ephemcrypt needs neither (the numbering test keeps the list honest).
    #[allow(dead_code)]
    Version = 0,
    /// Never sent: it removes every mapping on the host, not only ours. Listed for completeness.
    #[allow(dead_code)]
    RemoveAll = 1,
    #[allow(dead_code)]
    ListDevices = 2,
    DevCreate = 3,
    DevRemove = 4,
    /// Suspend with DM_SUSPEND_FLAG, resume without.
    DevSuspend = 6,
    DevStatus = 7,
    TableLoad = 9,
    TableStatus = 12,
    ListVersions = 13,
}

impl Cmd {
    /// `_IOWR(0xfd, nr, struct dm_ioctl)`.
    pub(crate) fn request(self) -> ioctl_num_type {
        nix::request_code_readwrite!(DM_IOCTL, self as u8, HEADER)
    }

    /// Commands that address no device.
    fn is_global(self) -> bool {
        matches!(self, Cmd::Version | Cmd::RemoveAll | Cmd::ListDevices | Cmd::ListVersions)
    }

    fn reply_space(self) -> usize {
        match self {
            Cmd::ListDevices | Cmd::ListVersions | Cmd::TableStatus => REPLY_SPACE,
            _ => 0,
        }
    }
}

/// One request, before encoding. `op` names it in errors ("device-mapper table load").
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) cmd: Cmd,
    pub(crate) op: &'static str,
    pub(crate) name: &'a str,
    pub(crate) uuid: &'a str,
    pub(crate) flags: u32,
    pub(crate) event_nr: u32,
    pub(crate) targets: &'a [Target],
}

impl<'a> Request<'a> {
    pub(crate) fn new(cmd: Cmd, op: &'static str, name: &'a str) -> Request<'a> {
        Request { cmd, op, name, uuid: "", flags: 0, event_nr: 0, targets: &[] }
    }

    /// What errors name as the object: the device, or the control device for global commands.
    fn object(&self) -> String {
        if self.name.is_empty() {
            "(control device)".to_owned()
        } else {
            format!("'{}'", self.name)
        }
    }

    /// An error about this request that is not an errno.
    pub(crate) fn error(&self, why: DmError) -> Error {
        Error::Dm { op: self.op, object: self.object(), why }
    }

    /// The request as the kernel reads it, with `reply_space` zero bytes after any targets.
    pub(crate) fn encode(&self, reply_space: usize) -> Result<Buffer> {
        if self.name.is_empty() != self.cmd.is_global() || self.name.contains('/') {
            return Err(self.error(DmError::InvalidName));
        }
        let name = c_string::<DM_NAME_LEN>(self.name).ok_or_else(|| self.error(DmError::NameTooLong))?;
        let uuid = c_string::<DM_UUID_LEN>(self.uuid).ok_or_else(|| self.error(DmError::UuidTooLong))?;
        if let Some(why) = self.targets.iter().find_map(Target::unresolved) {
            return Err(self.error(DmError::Unresolved(why)));
        }
        // Rendered first: their lengths size the buffer. Each is wiped when dropped.
        let params: Vec<Zeroizing<String>> = self.targets.iter().map(Target::params).collect();
        if params.iter().any(|p| p.contains('\0')) {
            return Err(self.error(DmError::NulInParams));
        }
        let size = align(HEADER + params.iter().map(|p| spec_len(p)).sum::<usize>() + reply_space);
        let too_big = || self.error(DmError::RequestTooLarge);
        let mut buf = Buffer::zeroed(size);
        let b = buf.bytes_mut();
        DmIoctl {
            version: INTERFACE_VERSION,
            data_size: u32::try_from(size).map_err(|_| too_big())?,
            data_start: u32::try_from(HEADER).map_err(|_| too_big())?,
            target_count: u32::try_from(params.len()).map_err(|_| too_big())?,
            open_count: 0,
            flags: self.flags,
            event_nr: self.event_nr,
            padding: 0,
            dev: 0,
            name,
            uuid,
            data: [0; 7],
        }
        .write(b);
        let mut at = HEADER;
        for (target, params) in self.targets.iter().zip(&params) {
            let next = spec_len(params);
            DmTargetSpec {
                sector_start: target.start.0,
                length: target.len.0,
                status: 0,
                next: u32::try_from(next).map_err(|_| too_big())?, // < size, which fits u32
                target_type: c_string(target.kind.type_name())
                    .ok_or(Error::Internal("target type names fit dm_target_spec"))?,
            }
            .write(b.get_mut(at..).unwrap_or_default());
            // The NUL terminator and the padding are the buffer's zeroes.
            put(b, at + SPEC, params.as_bytes());
            at += next;
        }
        Ok(buf)
    }
}

/// Bytes one target takes in a DM_TABLE_LOAD request: spec, parameters, NUL, padding.
fn spec_len(params: &str) -> usize {
    align(SPEC + params.len() + 1)
}

fn align(n: usize) -> usize {
    n.next_multiple_of(ALIGN)
}

/// A NUL-terminated, NUL-padded C string field, if `s` fits and has no NUL of its own.
fn c_string<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() >= N || s.contains('\0') {
        return None;
    }
    let mut out = [0; N];
    out[..s.len()].copy_from_slice(s.as_bytes());
    Some(out)
}

/// A request or reply: 8-byte aligned (backed by `u64`s, as the kernel's structures want) and wiped
/// when dropped, whatever it held and however the call ended, so key material never outlives it.
pub(crate) struct Buffer(Zeroizing<Vec<u64>>);

impl Buffer {
    fn zeroed(len: usize) -> Buffer {
        debug_assert!(len % ALIGN == 0);
        Buffer(Zeroizing::new(vec![0; len / ALIGN]))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the pointer comes from a live Vec<u64> of `len()` elements, so it is valid for
        // reads of `len() * 8` bytes for as long as `&self` borrows it; u8 has alignment 1 and every
        // byte of an initialised u64 is an initialised u8.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * ALIGN) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and the `&mut self` borrow makes this the only access to the
        // memory; any byte pattern written through it is a valid u64.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.0.len() * ALIGN) }
    }

    pub(crate) fn header(&self) -> DmIoctl {
        DmIoctl::read(self.bytes())
    }
}

/// Sends `req` on the control device `fd`, growing the reply area while the kernel says it is full.
pub(crate) fn call(fd: BorrowedFd<'_>, req: &Request<'_>) -> Result<Buffer> {
    call_with(req, |buf| ioctl(fd, req.cmd, buf))
}

/// `call` with the kernel as a parameter, so tests can stand in for it.
fn call_with(req: &Request<'_>, mut send: impl FnMut(&mut Buffer) -> nix::Result<()>) -> Result<Buffer> {
    let mut space = req.cmd.reply_space();
    loop {
        let mut buf = req.encode(space)?;
        // On error `buf` is dropped here, and wiped.
        send(&mut buf).map_err(|errno| Error::errno(req.op, req.object(), errno))?;
        if buf.header().flags & DM_BUFFER_FULL_FLAG == 0 {
            return Ok(buf);
        }
        if space >= MAX_REPLY_SPACE {
            return Err(req.error(DmError::ReplyTooLarge { mib: MAX_REPLY_SPACE >> 20 }));
        }
        space = (space * 2).max(REPLY_SPACE);
    }
}

/// The one call into the kernel.
fn ioctl(fd: BorrowedFd<'_>, cmd: Cmd, buf: &mut Buffer) -> nix::Result<()> {
    let len = buf.bytes().len();
    // The SAFETY argument below rests on this; `Request::encode` guarantees it.
    if len < HEADER || buf.header().data_size as usize != len {
        return Err(Errno::EINVAL);
    }
    let ptr = buf.0.as_mut_ptr();
    // SAFETY: `ptr` points to `len` writable, initialised, 8-byte-aligned bytes owned by `buf`, which
    // the `&mut` borrow keeps alive and unaliased for the whole call. It starts with a `dm_ioctl`
    // whose `data_size` is `len`, and the kernel reads and writes at most `data_size` bytes. The
    // kernel keeps no reference to the buffer after returning, and the request code takes a pointer
    // argument, matching what we pass.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), cmd.request(), ptr) };
    Errno::result(rc).map(drop)
}

/// `bytes` into `b` at `at`. The request's size is computed from the same lengths, so they fit; were
/// they not to (a bug), the field stays zero and the kernel refuses the request: an error that takes
/// the failure policy, not a panic.
fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(field) = b.get_mut(at..at.saturating_add(bytes.len())) {
        field.copy_from_slice(bytes);
    }
}

/// `N` bytes at `at`; the caller has checked the bounds (past them: zeros, never a panic).
fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(field) = b.get(at..at.saturating_add(N)) {
        out.copy_from_slice(field);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(array(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(array(b, at))
}

fn version_at(b: &[u8], at: usize) -> [u32; 3] {
    [u32_at(b, at), u32_at(b, at + 4), u32_at(b, at + 8)]
}

impl DmIoctl {
    /// Reads the header from the first 312 bytes of `b` (which the caller ensures it has).
    pub(crate) fn read(b: &[u8]) -> DmIoctl {
        DmIoctl {
            version: version_at(b, offset_of!(DmIoctl, version)),
            data_size: u32_at(b, offset_of!(DmIoctl, data_size)),
            data_start: u32_at(b, offset_of!(DmIoctl, data_start)),
            target_count: u32_at(b, offset_of!(DmIoctl, target_count)),
            open_count: i32::from_ne_bytes(array(b, offset_of!(DmIoctl, open_count))),
            flags: u32_at(b, offset_of!(DmIoctl, flags)),
            event_nr: u32_at(b, offset_of!(DmIoctl, event_nr)),
            padding: u32_at(b, offset_of!(DmIoctl, padding)),
            dev: u64_at(b, offset_of!(DmIoctl, dev)),
            name: array(b, offset_of!(DmIoctl, name)),
            uuid: array(b, offset_of!(DmIoctl, uuid)),
            data: array(b, offset_of!(DmIoctl, data)),
        }
    }

    fn write(&self, b: &mut [u8]) {
        for (i, v) in self.version.iter().enumerate() {
            put(b, offset_of!(DmIoctl, version) + 4 * i, &v.to_ne_bytes());
        }
        put(b, offset_of!(DmIoctl, data_size), &self.data_size.to_ne_bytes());
        put(b, offset_of!(DmIoctl, data_start), &self.data_start.to_ne_bytes());
        put(b, offset_of!(DmIoctl, target_count), &self.target_count.to_ne_bytes());
        put(b, offset_of!(DmIoctl, open_count), &self.open_count.to_ne_bytes());
        put(b, offset_of!(DmIoctl, flags), &self.flags.to_ne_bytes());
        put(b, offset_of!(DmIoctl, event_nr), &self.event_nr.to_ne_bytes());
        put(b, offset_of!(DmIoctl, padding), &self.padding.to_ne_bytes());
        put(b, offset_of!(DmIoctl, dev), &self.dev.to_ne_bytes());
        put(b, offset_of!(DmIoctl, name), &self.name);
        put(b, offset_of!(DmIoctl, uuid), &self.uuid);
        put(b, offset_of!(DmIoctl, data), &self.data);
    }
}

impl DmTargetSpec {
    fn read(b: &[u8]) -> DmTargetSpec {
        DmTargetSpec {
            sector_start: u64_at(b, offset_of!(DmTargetSpec, sector_start)),
            length: u64_at(b, offset_of!(DmTargetSpec, length)),
            status: i32::from_ne_bytes(array(b, offset_of!(DmTargetSpec, status))),
            next: u32_at(b, offset_of!(DmTargetSpec, next)),
            target_type: array(b, offset_of!(DmTargetSpec, target_type)),
        }
    }

    fn write(&self, b: &mut [u8]) {
        put(b, offset_of!(DmTargetSpec, sector_start), &self.sector_start.to_ne_bytes());
        put(b, offset_of!(DmTargetSpec, length), &self.length.to_ne_bytes());
        put(b, offset_of!(DmTargetSpec, status), &self.status.to_ne_bytes());
        put(b, offset_of!(DmTargetSpec, next), &self.next.to_ne_bytes());
        put(b, offset_of!(DmTargetSpec, target_type), &self.target_type);
    }
}

/// The reply's data area, `data_start..data_size`, after checking both against the buffer.
fn data_area(b: &[u8]) -> Result<&[u8], DmError> {
    if b.len() < HEADER {
        return Err(DmError::ShortReply { len: b.len(), header: HEADER });
    }
    let h = DmIoctl::read(b);
    let (start, end) = (h.data_start as usize, h.data_size as usize);
    if start < HEADER || end > b.len() {
        return Err(DmError::DataArea { start, end, len: b.len() });
    }
    Ok(b.get(start..end).unwrap_or_default())
}

/// `len` bytes at `at` in `data`, or an error naming what was cut off.
fn record<'a>(data: &'a [u8], at: usize, len: usize, what: &'static str) -> Result<&'a [u8], DmError> {
    at.checked_add(len).and_then(|end| data.get(at..end)).ok_or(DmError::Overrun { what, at, len: data.len() })
}

/// The NUL-terminated string starting at `at`.
fn c_str_at<'a>(data: &'a [u8], at: usize, what: &'static str) -> Result<&'a [u8], DmError> {
    let tail = data.get(at..).unwrap_or_default();
    let nul = tail.iter().position(|&c| c == 0);
    nul.and_then(|n| tail.get(..n)).ok_or(DmError::NoNul { what, at })
}

/// Follows a chain whose `next` counts from the current entry (0 ends it), calling `entry` with each
/// entry's offset; `Ok(false)` from `entry` stops early.
fn walk_chain(
    data: &[u8],
    next_at: usize,
    mut entry: impl FnMut(usize) -> Result<bool, DmError>,
) -> Result<(), DmError> {
    let mut at = 0;
    loop {
        if !entry(at)? {
            return Ok(());
        }
        match u32_at(record(data, at + next_at, 4, "next offset")?, 0) {
            0 => return Ok(()),
            n => at += n as usize,
        }
    }
}

/// Decodes a DM_LIST_VERSIONS reply.
pub(crate) fn decode_versions(b: &[u8]) -> Result<Vec<TargetVersion>, DmError> {
    let data = data_area(b)?;
    let mut out = Vec::new();
    if data.is_empty() {
        return Ok(out);
    }
    walk_chain(data, offset_of!(DmTargetVersions, next), |at| {
        let version = version_at(record(data, at, VERSIONS_NAME, "target version")?, 4);
        let name = c_str_at(data, at + VERSIONS_NAME, "target name")?;
        out.push(TargetVersion { name: String::from_utf8_lossy(name).into_owned(), version });
        Ok(true)
    })?;
    Ok(out)
}

/// Decodes a DM_TABLE_STATUS reply (`target_count` specs; `next` counts from the data area's start).
pub(crate) fn decode_table(b: &[u8]) -> Result<Vec<TableLine>, DmError> {
    let data = data_area(b)?;
    let count = DmIoctl::read(b).target_count;
    let mut at = 0;
    let mut out = Vec::new();
    for _ in 0..count {
        let spec = DmTargetSpec::read(record(data, at, SPEC, "target spec")?);
        let ty = c_str_at(&spec.target_type, 0, "target type")?;
        let params = c_str_at(data, at + SPEC, "target parameters")?;
        out.push(TableLine {
            start: Sectors(spec.sector_start),
            len: Sectors(spec.length),
            target_type: String::from_utf8_lossy(ty).into_owned(),
            // Kernel parameters are ASCII, so this is the only copy (and it is wiped on drop).
            params: Zeroizing::new(String::from_utf8_lossy(params).into_owned()),
        });
        // The kernel's offsets only move forward; anything else would loop.
        if (spec.next as usize) <= at {
            return Err(DmError::PointsBack { at, next: spec.next as usize });
        }
        at = spec.next as usize;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;
    use crate::dm::table::{Crypt, CryptKey, Dev, Linear, TargetKind};
    use crate::units::DevNo;

    #[test]
    fn layout_matches_the_kernel_header() {
        assert_eq!(size_of::<DmIoctl>(), 312);
        assert_eq!(std::mem::align_of::<DmIoctl>(), 8);
        assert_eq!(size_of::<DmTargetSpec>(), 40);
        let offsets = [
            offset_of!(DmIoctl, version),
            offset_of!(DmIoctl, data_size),
            offset_of!(DmIoctl, data_start),
            offset_of!(DmIoctl, target_count),
            offset_of!(DmIoctl, open_count),
            offset_of!(DmIoctl, flags),
            offset_of!(DmIoctl, event_nr),
            offset_of!(DmIoctl, padding),
            offset_of!(DmIoctl, dev),
            offset_of!(DmIoctl, name),
            offset_of!(DmIoctl, uuid),
            offset_of!(DmIoctl, data),
        ];
        assert_eq!(offsets, [0, 12, 16, 20, 24, 28, 32, 36, 40, 48, 176, 305]);
        let spec = [
            offset_of!(DmTargetSpec, sector_start),
            offset_of!(DmTargetSpec, length),
            offset_of!(DmTargetSpec, status),
            offset_of!(DmTargetSpec, next),
            offset_of!(DmTargetSpec, target_type),
        ];
        assert_eq!(spec, [0, 8, 16, 20, 24]);
        assert_eq!((offset_of!(DmTargetVersions, version), VERSIONS_NAME), (4, 16));
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn request_codes() {
        // _IOWR(0xfd, nr, 312): dir 3 << 30 | size 0x138 << 16 | 0xfd << 8 | nr.
        // The request number's 32 bits, whether libc types it c_ulong (glibc) or c_int (musl).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let code = |c: Cmd| c.request() as u32;
        assert_eq!(code(Cmd::Version), 0xc138_fd00);
        assert_eq!(code(Cmd::RemoveAll), 0xc138_fd01);
        assert_eq!(code(Cmd::ListDevices), 0xc138_fd02);
        assert_eq!(code(Cmd::DevCreate), 0xc138_fd03);
        assert_eq!(code(Cmd::DevRemove), 0xc138_fd04);
        assert_eq!(code(Cmd::DevSuspend), 0xc138_fd06);
        assert_eq!(code(Cmd::DevStatus), 0xc138_fd07);
        assert_eq!(code(Cmd::TableLoad), 0xc138_fd09);
        assert_eq!(code(Cmd::TableStatus), 0xc138_fd0c);
        assert_eq!(code(Cmd::ListVersions), 0xc138_fd0d);
    }

    fn linear() -> Target {
        Target {
            start: Sectors(0),
            len: Sectors(1000),
            kind: TargetKind::Linear(Linear { dev: Dev::Num(DevNo { major: 259, minor: 1 }), offset: Sectors(2048) }),
        }
    }

    fn crypt_hex(hex: &str) -> Target {
        Target {
            start: Sectors(1000),
            len: Sectors(24),
            kind: TargetKind::Crypt(Crypt {
                cipher: "aes-xts-plain64".into(),
                key: CryptKey::Hex(Zeroizing::new(hex.into())),
                iv_offset: Sectors(0),
                dev: Dev::Num(DevNo { major: 8, minor: 16 }),
                offset: Sectors(0),
                options: vec![],
            }),
        }
    }

    #[test]
    fn encode_table_load_of_two_targets() {
        let targets = [linear(), crypt_hex("00ff")];
        let req = Request {
            flags: DM_SECURE_DATA_FLAG,
            targets: &targets,
            ..Request::new(Cmd::TableLoad, "device-mapper table load", "ephemeral")
        };
        let buf = req.encode(0).unwrap();
        let b = buf.bytes();

        // Spec 1: 40 + "259:1 2048" (10) + NUL = 51, padded to 56.
        // Spec 2: 40 + "aes-xts-plain64 00ff 0 8:16 0" (29) + NUL = 70, padded to 72.
        assert_eq!(b.len(), 312 + 56 + 72);
        let h = buf.header();
        assert_eq!(h.version, [4, 0, 0]);
        assert_eq!((h.data_size, h.data_start, h.target_count), (440, 312, 2));
        assert_eq!((h.flags, h.event_nr, h.dev, h.open_count), (1 << 15, 0, 0, 0));
        assert_eq!(&h.name[..10], b"ephemeral\0");
        assert!(h.name[9..].iter().chain(&h.uuid).all(|&c| c == 0));

        let s1 = &b[312..368];
        assert_eq!(u64_at(s1, 0), 0); // sector_start
        assert_eq!(u64_at(s1, 8), 1000); // length
        assert_eq!(u32_at(s1, 16), 0); // status
        assert_eq!(u32_at(s1, 20), 56); // next: from this spec to the next
        assert_eq!(&s1[24..40], b"linear\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(&s1[40..], b"259:1 2048\0\0\0\0\0\0");

        let s2 = &b[368..440];
        assert_eq!((u64_at(s2, 0), u64_at(s2, 8)), (1000, 24));
        assert_eq!(u32_at(s2, 20), 72);
        assert_eq!(&s2[24..40], b"crypt\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(&s2[40..], b"aes-xts-plain64 00ff 0 8:16 0\0\0\0");
    }

    #[test]
    fn encode_header_only_requests() {
        let req = Request {
            uuid: "EPHEMCRYPT-1",
            event_nr: 0x0040_0000,
            ..Request::new(Cmd::DevCreate, "device-mapper create", "eph")
        };
        let buf = req.encode(0).unwrap();
        let h = buf.header();
        assert_eq!((buf.bytes().len(), h.data_size, h.data_start, h.target_count), (312, 312, 312, 0));
        assert_eq!(h.event_nr, 0x0040_0000);
        assert_eq!(&h.uuid[..13], b"EPHEMCRYPT-1\0");

        let list = Request::new(Cmd::ListVersions, "device-mapper list versions", "");
        assert_eq!(list.encode(REPLY_SPACE).unwrap().bytes().len(), 312 + REPLY_SPACE);
    }

    #[test]
    fn encode_rejects_bad_names_without_quoting_params() {
        let long = "x".repeat(128);
        for (cmd, name) in [(Cmd::DevCreate, ""), (Cmd::DevCreate, "a/b"), (Cmd::DevCreate, &long), (Cmd::Version, "x")]
        {
            assert!(Request::new(cmd, "op", name).encode(0).is_err(), "{cmd:?} {name:?}");
        }
        assert!(Request::new(Cmd::DevCreate, "op", &long[..127]).encode(0).is_ok());
        let uuid = "u".repeat(129);
        assert!(Request { uuid: &uuid, ..Request::new(Cmd::DevCreate, "op", "a") }.encode(0).is_err());

        let targets = [crypt_hex("00ff\0")];
        let req = Request { targets: &targets, ..Request::new(Cmd::TableLoad, "device-mapper table load", "eph") };
        let err = req.encode(0).err().unwrap().to_string();
        assert_eq!(err, "device-mapper table load 'eph': target parameters contain a NUL byte");

        // A planned table with its key placeholder never reaches the kernel.
        let mut planned = crypt_hex("");
        if let TargetKind::Crypt(c) = &mut planned.kind {
            c.key = CryptKey::Placeholder { bytes: 64 };
        }
        let targets = [planned];
        let req = Request { targets: &targets, ..Request::new(Cmd::TableLoad, "device-mapper table load", "eph") };
        let err = req.encode(0).err().unwrap().to_string();
        assert_eq!(err, "device-mapper table load 'eph': table not ready to load: the key is not made yet");
    }

    /// A reply buffer: a header with the data area at 312, then `data`.
    fn reply(data: &[u8], target_count: u32, flags: u32) -> Vec<u8> {
        let mut b = vec![0; HEADER + data.len()];
        DmIoctl {
            version: [4, 48, 0],
            data_size: u32::try_from(b.len()).unwrap(),
            data_start: u32::try_from(HEADER).unwrap(),
            target_count,
            open_count: 0,
            flags,
            event_nr: 0,
            padding: 0,
            dev: 0,
            name: [0; DM_NAME_LEN],
            uuid: [0; DM_UUID_LEN],
            data: [0; 7],
        }
        .write(&mut b);
        b[HEADER..].copy_from_slice(data);
        b
    }

    fn versions_entry(next: u32, version: [u32; 3], name: &str) -> Vec<u8> {
        let mut e = next.to_ne_bytes().to_vec();
        version.iter().for_each(|v| e.extend(v.to_ne_bytes()));
        e.extend(name.as_bytes());
        e.push(0);
        e.resize(align(e.len()), 0);
        e
    }

    fn versions_reply() -> Vec<u8> {
        let mut data = versions_entry(24, [1, 4, 0], "linear"); // 16 + 7 -> 24
        data.extend(versions_entry(24, [1, 6, 0], "striped")); // 16 + 8 -> 24
        data.extend(versions_entry(0, [1, 24, 0], "crypt"));
        reply(&data, 0, 0)
    }

    #[test]
    fn decode_list_versions() {
        let got = decode_versions(&versions_reply()).unwrap();
        let want = [("linear", [1, 4, 0]), ("striped", [1, 6, 0]), ("crypt", [1, 24, 0])]
            .map(|(name, version)| TargetVersion { name: name.into(), version });
        assert_eq!(got, want);
    }

    #[test]
    fn decode_list_versions_rejects_malformed_replies() {
        let mut data = versions_entry(4096, [1, 4, 0], "linear");
        assert!(decode_versions(&reply(&data, 0, 0)).unwrap_err().to_string().contains("overruns"));
        data = versions_entry(0, [1, 4, 0], "linear");
        data.truncate(22); // name cut before its NUL
        assert!(decode_versions(&reply(&data, 0, 0)).unwrap_err().to_string().contains("NUL"));
        let mut b = versions_reply();
        put(&mut b, offset_of!(DmIoctl, data_size), &100_000u32.to_ne_bytes());
        assert!(decode_versions(&b).is_err());
        assert!(decode_versions(&b[..100]).is_err());
    }

    /// A DM_TABLE_STATUS data area as the kernel writes it: each spec's `next` is the aligned end
    /// of its parameters, counted from the start of the data area; the last one is not padded.
    fn status_data(lines: &[(u64, u64, &str, &str)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (start, len, ty, params) in lines {
            data.resize(align(data.len()), 0);
            let at = data.len();
            let mut spec = [0; SPEC];
            DmTargetSpec {
                sector_start: *start,
                length: *len,
                status: 0,
                next: u32::try_from(align(at + SPEC + params.len() + 1)).unwrap(),
                target_type: c_string(ty).unwrap(),
            }
            .write(&mut spec);
            data.extend(spec);
            data.extend(params.as_bytes());
            data.push(0);
        }
        data
    }

    #[test]
    fn decode_table_status() {
        let data = status_data(&[
            (0, 153600, "striped", "3 512 259:0 0 259:1 0 259:2 0"),
            (153600, 8, "crypt", "aes-xts-plain64 :64:logon:ephemcrypt:x 0 253:0 0"),
        ]);
        assert_eq!(u32_at(&data, 20), 72); // 40 + 30 + NUL = 71, aligned
        let lines = decode_table(&reply(&data, 2, DM_STATUS_TABLE_FLAG)).unwrap();
        let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "0 153600 striped 3 512 259:0 0 259:1 0 259:2 0",
                "153600 8 crypt aes-xts-plain64 :64:logon:ephemcrypt:x 0 253:0 0"
            ]
        );
        assert_eq!(lines[1].target_type, "crypt");
        assert_eq!(*lines[1].params, "aes-xts-plain64 :64:logon:ephemcrypt:x 0 253:0 0");

        // A device without a live table: no targets, data area untouched.
        assert!(decode_table(&reply(&[0; 64], 0, 0)).unwrap().is_empty());
        // More targets claimed than present.
        let err = decode_table(&reply(&data, 3, 0)).unwrap_err();
        assert!(err.to_string().contains("overruns"), "{err}");
        // An offset that points backwards.
        let mut looped = data.clone();
        put(&mut looped, 20, &0u32.to_ne_bytes());
        assert!(decode_table(&reply(&looped, 2, 0)).unwrap_err().to_string().contains("points back"));
        // Parameters cut before their NUL.
        let cut = &data[..data.len() - 1];
        assert!(decode_table(&reply(cut, 2, 0)).unwrap_err().to_string().contains("NUL"));
    }

    #[test]
    fn call_grows_the_buffer_until_the_reply_fits() {
        let req = Request::new(Cmd::ListVersions, "device-mapper list versions", "");
        let answer = versions_reply();
        let mut sizes = Vec::new();
        let buf = call_with(&req, |buf| {
            let b = buf.bytes_mut();
            sizes.push(b.len());
            let mut h = DmIoctl::read(b);
            if b.len() < 40_000 {
                h.flags |= DM_BUFFER_FULL_FLAG;
                h.write(b);
            } else {
                b[..answer.len()].copy_from_slice(&answer);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes, [312 + (16 << 10), 312 + (32 << 10), 312 + (64 << 10)]);
        assert_eq!(decode_versions(buf.bytes()).unwrap().len(), 3);

        let full = call_with(&req, |buf| {
            let b = buf.bytes_mut();
            let mut h = DmIoctl::read(b);
            h.flags |= DM_BUFFER_FULL_FLAG;
            h.write(b);
            Ok(())
        });
        assert!(full.err().unwrap().to_string().contains("reply larger than 16 MiB"));
    }

    #[test]
    fn call_errors_name_the_operation_and_device() {
        let req = Request::new(Cmd::DevRemove, "device-mapper remove", "ephemeral");
        let err = call_with(&req, |_| Err(Errno::EBUSY)).err().unwrap();
        // The text between is strerror's, which differs between glibc and musl.
        let text = err.to_string();
        assert!(text.starts_with("device-mapper remove 'ephemeral': ") && text.ends_with(" (EBUSY)"), "{text}");
        let req = Request::new(Cmd::Version, "device-mapper version", "");
        let err = call_with(&req, |_| Err(Errno::EPERM)).err().unwrap();
        assert!(err.to_string().starts_with("device-mapper version (control device): "));
    }
}
