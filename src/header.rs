//! PURE: ephemcrypt's on-disk header, the small plaintext block at the start of every member disk
//! that makes a disk recognisably ours on the next boot. It holds no key material: a magic, the
//! format version, a random volume id, the member's place in the stripe and the members' serials,
//! the layout (data offset, chunk, cipher, key size, sector size, swap and file-system extents),
//! the boot id and time of creation, room for an escrow blob, and a CRC-32C of it all.
//!
//! Layout (version 1; integers little-endian, strings NUL-padded), in the first 4 KiB of the disk:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 16 | magic `EPHEMCRYPT\0HDR\x01\x02` |
//! | 16 | 4 | format version (1) |
//! | 20 | 4 | header size (4096) |
//! | 24 | 16 | volume id (random) |
//! | 40 | 16 | boot id of the boot that made it |
//! | 56 | 8 | creation time, seconds since 1970 (UTC) |
//! | 64 | 4 | member index (0-based, stripe order) |
//! | 68 | 4 | member count |
//! | 72 | 8 | data offset on each member, in 512-byte sectors |
//! | 80 | 8 | stripe chunk, in sectors (0 for one disk) |
//! | 88 | 8 | sectors used on each member, from the data offset |
//! | 96 | 8 | volume (crypt mapping) length, in sectors |
//! | 104 | 4 | key bits |
//! | 108 | 4 | encryption sector size, in bytes |
//! | 112 | 16 | swap extent in the volume: start, length (sectors; 0, 0 for none) |
//! | 128 | 16 | file-system extent in the volume: start, length (sectors) |
//! | 144 | 8 | file system (`ext4`, `xfs`, `none`) |
//! | 152 | 32 | cipher spec (`aes-xts-plain64`) |
//! | 184 | 64 | volume name (the device-mapper name) |
//! | 248 | 4 | escrow blob offset from the disk start, in bytes (0: none) |
//! | 252 | 4 | escrow blob length, in bytes |
//! | 256 | 48 × count | member serials, in stripe order (at most 64) |
//! | 4092 | 4 | CRC-32C (Castagnoli) of bytes 0..4092 |
//!
//! The reserved area is the first MiB of every member: the header, then room for the escrow blob;
//! the stripe (or, on one disk, the crypt mapping) starts after it.
//!
//! A header is data another machine may have written: the magic and the CRC-32C prove nothing, as
//! anyone who had the disk can write a block that passes them. [`Header::decode`] therefore takes
//! a block only when every byte of it is one ephemcrypt itself could have written ([`Header::check`]):
//! the name by the configuration's name rule, a known file system, a cipher the configuration's
//! parser takes with a key size it allows, an allowed sector size, the layout `plan` makes, serials
//! in the characters udev keeps, and zeros wherever nothing is written. What [`Header::encode`]
//! writes, `decode` takes, and nothing else. That the extents fit the disk is checked where the
//! header meets its disk (`signature::examine`): a block alone does not know it.

use std::fmt;

use crate::config::CipherSpec;
use crate::escape::{Esc, EscBytes};
use crate::units::Sectors;

/// The header's magic: 16 bytes no file system or volume manager starts with.
pub(crate) const MAGIC: &[u8; 16] = b"EPHEMCRYPT\0HDR\x01\x02";
pub(crate) const VERSION: u32 = 1;
/// The size of the header block.
pub(crate) const SIZE: usize = 4096;
/// [`SIZE`] as the header's own size field holds it.
#[allow(clippy::cast_possible_truncation)] // 4096 fits u32
pub(crate) const SIZE_FIELD: u32 = SIZE as u32;
/// The reserved area at the start of each member disk: header and escrow room.
pub(crate) const RESERVED: Sectors = Sectors(2048);

/// [`RESERVED`] in bytes, as a buffer's length.
pub(crate) const RESERVED_LEN: usize = 1 << 20;
const _: () = assert!(RESERVED.0 * crate::units::SECTOR == 1 << 20, "RESERVED_LEN is RESERVED in bytes");
/// The most members a header lists.
pub(crate) const MAX_MEMBERS: usize = 64;
/// The room for one serial: longer serials are cut to it.
pub(crate) const SERIAL_LEN: usize = 48;
const SERIALS_AT: usize = 256;
/// Sizes `plan` aligns the volume and the swap to, in sectors (plan.rs `ALIGN`).
const ALIGN: u64 = 8;
/// The largest disk the host reader takes at its word (host.rs `MAX_SECTORS`).
const MAX_SECTORS: u64 = 1 << 47;
/// The encryption sector sizes the configuration allows (`sector-size`).
pub(crate) const SECTOR_SIZES: [u32; 4] = [512, 1024, 2048, 4096];
/// The file systems the configuration allows (`fs`).
pub(crate) const FS_NAMES: [&str; 3] = ["ext4", "xfs", "none"];
const CRC_AT: usize = SIZE - 4;

const _: () = assert!(SERIALS_AT + MAX_MEMBERS * SERIAL_LEN <= CRC_AT);
const _: () = assert!(RESERVED.0 * 512 >= SIZE as u64);

/// What a new volume is named by and when it is made: written into each member's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Random, from the kernel's RNG.
    pub(crate) volume_id: [u8; 16],
    /// This boot's id (/proc/sys/kernel/random/boot_id).
    pub(crate) boot_id: [u8; 16],
    /// Seconds since 1970 (UTC).
    pub(crate) now: u64,
}

/// What a header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) volume_id: [u8; 16],
    pub(crate) boot_id: [u8; 16],
    /// Seconds since 1970-01-01 UTC.
    pub(crate) created: u64,
    pub(crate) member: u32,
    pub(crate) members: u32,
    pub(crate) data_offset: Sectors,
    pub(crate) chunk: Sectors,
    pub(crate) member_len: Sectors,
    pub(crate) volume_len: Sectors,
    pub(crate) key_bits: u32,
    pub(crate) sector_size: u32,
    /// Start and length in the volume, in sectors.
    pub(crate) swap: (Sectors, Sectors),
    pub(crate) data: (Sectors, Sectors),
    pub(crate) fs: String,
    pub(crate) cipher: String,
    pub(crate) name: String,
    /// Where an escrow blob is (bytes from the disk start, length); (0, 0) for none.
    pub(crate) escrow: (u32, u32),
    /// The members' serials, in stripe order.
    pub(crate) serials: Vec<String>,
}

/// Why a block is not a valid header (when it starts with our magic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Not ours at all: no magic.
    NoMagic,
    BadChecksum,
    UnknownVersion(u32),
    /// Fields that cannot be: a member index past the count, too many members, a short block.
    Inconsistent(&'static str),
    /// A field ephemcrypt could not have written (a forged or foreign header): the field, and why,
    /// with what it holds escaped.
    BadField {
        field: &'static str,
        why: String,
    },
}

impl HeaderError {
    fn bad(field: &'static str, why: impl Into<String>) -> HeaderError {
        HeaderError::BadField { field, why: why.into() }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NoMagic => f.write_str("no ephemcrypt header"),
            HeaderError::BadChecksum => f.write_str("an ephemcrypt header whose checksum fails"),
            HeaderError::UnknownVersion(v) => write!(f, "an ephemcrypt header of unknown format version {v}"),
            HeaderError::Inconsistent(why) => write!(f, "an ephemcrypt header that cannot be right ({why})"),
            HeaderError::BadField { field, why } => {
                write!(f, "an ephemcrypt header that cannot be right ({field}: {why})")
            }
        }
    }
}

/// CRC-32C (Castagnoli, reflected, polynomial 0x82F63B78), as ext4, btrfs and iSCSI use it.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i: u32 = 0;
        while i < 256 {
            let mut c = i;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i as usize] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u32, |c, &b| TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

/// `s` NUL-padded into `len` bytes (cut at `len`, on a character boundary).
fn put_str(b: &mut [u8], at: usize, len: usize, s: &str) {
    let mut end = s.len().min(len);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put(b, at, &s.as_bytes()[..end]);
}

/// `N` bytes of `b` at `at` (zeros where `b` is shorter: never a panic).
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(s) = b.get(at..at + N) {
        out.copy_from_slice(s);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes_at(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes_at(b, at))
}

fn id_at(b: &[u8], at: usize) -> [u8; 16] {
    bytes_at(b, at)
}

/// The string field `name` of `len` bytes at `at`: UTF-8 up to the first NUL (or the field's end),
/// NULs only after it.
fn str_at(b: &[u8], at: usize, len: usize, name: &'static str) -> Result<String, HeaderError> {
    let field = &b[at..at + len];
    let end = field.iter().position(|&c| c == 0).unwrap_or(len);
    let (text, pad) = field.split_at(end);
    if pad.iter().any(|&c| c != 0) {
        return Err(HeaderError::bad(name, format!("bytes after its end ('{}')", EscBytes(field))));
    }
    String::from_utf8(text.to_vec())
        .map_err(|_| HeaderError::bad(name, format!("'{}' is not UTF-8 text", EscBytes(text))))
}

/// A character udev keeps in a serial: ASCII letters and digits and `#+-.:=@_` (systemd's
/// `udev_replace_chars` with the whitelist of `ID_SERIAL`; everything else, white space included,
/// becomes `_` there). Non-ASCII text, which udev would keep, is refused here too: a serial field
/// must not carry bidirectional overrides or invisible characters.
pub(crate) fn udev_serial_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c)
}

/// Why `serial` cannot be a serial in a header, if it cannot: a character udev does not keep.
pub(crate) fn bad_serial(serial: &str) -> Option<String> {
    let bad = serial.chars().find(|&c| !udev_serial_char(c))?;
    Some(format!(
        "'{}' has a character udev does not keep in serials ('{}'; only A-Z a-z 0-9 # + - . : = @ _)",
        Esc(serial),
        Esc(bad.encode_utf8(&mut [0; 4]))
    ))
}

/// Whether `name` is a volume name by the configuration's rule (the `name` key).
fn good_name(name: &str) -> bool {
    crate::config::parse_name(name).is_some()
}

impl Header {
    /// The 4 KiB block, checksummed.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SIZE];
        put(&mut b, 0, MAGIC);
        put(&mut b, 16, &VERSION.to_le_bytes());
        put(&mut b, 20, &SIZE_FIELD.to_le_bytes());
        put(&mut b, 24, &self.volume_id);
        put(&mut b, 40, &self.boot_id);
        put(&mut b, 56, &self.created.to_le_bytes());
        put(&mut b, 64, &self.member.to_le_bytes());
        put(&mut b, 68, &self.members.to_le_bytes());
        for (at, v) in [
            (72, self.data_offset.0),
            (80, self.chunk.0),
            (88, self.member_len.0),
            (96, self.volume_len.0),
            (112, self.swap.0 .0),
            (120, self.swap.1 .0),
            (128, self.data.0 .0),
            (136, self.data.1 .0),
        ] {
            put(&mut b, at, &v.to_le_bytes());
        }
        put(&mut b, 104, &self.key_bits.to_le_bytes());
        put(&mut b, 108, &self.sector_size.to_le_bytes());
        put_str(&mut b, 144, 8, &self.fs);
        put_str(&mut b, 152, 32, &self.cipher);
        put_str(&mut b, 184, 64, &self.name);
        put(&mut b, 248, &self.escrow.0.to_le_bytes());
        put(&mut b, 252, &self.escrow.1.to_le_bytes());
        for (i, s) in self.serials.iter().take(MAX_MEMBERS).enumerate() {
            put_str(&mut b, SERIALS_AT + i * SERIAL_LEN, SERIAL_LEN, s);
        }
        let crc = crc32c(&b[..CRC_AT]);
        put(&mut b, CRC_AT, &crc.to_le_bytes());
        b
    }

    /// Read a header from the first bytes of a disk: only a block ephemcrypt could have written
    /// (see the module's notes); anything else is an error naming what is wrong.
    pub(crate) fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.get(..16) != Some(&MAGIC[..]) {
            return Err(HeaderError::NoMagic);
        }
        let Some(b) = b.get(..SIZE) else {
            return Err(HeaderError::Inconsistent("shorter than 4 KiB"));
        };
        if crc32c(&b[..CRC_AT]) != u32_at(b, CRC_AT) {
            return Err(HeaderError::BadChecksum);
        }
        let version = u32_at(b, 16);
        if version != VERSION {
            return Err(HeaderError::UnknownVersion(version));
        }
        if u32_at(b, 20) != SIZE_FIELD {
            return Err(HeaderError::bad("header size", format!("{}, not {SIZE}", u32_at(b, 20))));
        }
        let (member, members) = (u32_at(b, 64), u32_at(b, 68));
        if members == 0 || members as usize > MAX_MEMBERS || member >= members {
            return Err(HeaderError::Inconsistent("member index and count"));
        }
        let serials_end = SERIALS_AT + members as usize * SERIAL_LEN;
        if b[serials_end..CRC_AT].iter().any(|&c| c != 0) {
            return Err(HeaderError::bad("unused space", "bytes after the last member's serial"));
        }
        let mut serials = Vec::with_capacity(members as usize);
        for i in 0..members as usize {
            serials.push(str_at(b, SERIALS_AT + i * SERIAL_LEN, SERIAL_LEN, "serials")?);
        }
        let h = Header {
            volume_id: id_at(b, 24),
            boot_id: id_at(b, 40),
            created: u64_at(b, 56),
            member,
            members,
            data_offset: Sectors(u64_at(b, 72)),
            chunk: Sectors(u64_at(b, 80)),
            member_len: Sectors(u64_at(b, 88)),
            volume_len: Sectors(u64_at(b, 96)),
            key_bits: u32_at(b, 104),
            sector_size: u32_at(b, 108),
            swap: (Sectors(u64_at(b, 112)), Sectors(u64_at(b, 120))),
            data: (Sectors(u64_at(b, 128)), Sectors(u64_at(b, 136))),
            fs: str_at(b, 144, 8, "fs")?,
            cipher: str_at(b, 152, 32, "cipher")?,
            name: str_at(b, 184, 64, "name")?,
            escrow: (u32_at(b, 248), u32_at(b, 252)),
            serials,
        };
        h.check()?;
        Ok(h)
    }

    /// Whether every field is one ephemcrypt could have written (`plan`'s `member_header`, and the
    /// escrow step): the error names the first that is not.
    pub(crate) fn check(&self) -> Result<(), HeaderError> {
        let bad = HeaderError::bad;
        if self.members == 0 || self.members as usize > MAX_MEMBERS || self.member >= self.members {
            return Err(HeaderError::Inconsistent("member index and count"));
        }
        if self.serials.len() != self.members as usize {
            return Err(HeaderError::Inconsistent("one serial for each member"));
        }
        if !good_name(&self.name) {
            let why = "1-64 letters, digits, _ and -, starting with a letter";
            return Err(bad("name", format!("'{}' is not a volume name ({why})", Esc(&self.name))));
        }
        if !FS_NAMES.contains(&self.fs.as_str()) {
            return Err(bad("fs", format!("'{}' is not ext4, xfs or none", Esc(&self.fs))));
        }
        let spec = CipherSpec::parse(&self.cipher)
            .map_err(|why| bad("cipher", format!("'{}' is not a cipher ephemcrypt runs ({why})", Esc(&self.cipher))))?;
        let sizes = spec.key_bits();
        if !sizes.contains(&self.key_bits) {
            return Err(bad(
                "key bits",
                format!("{} is not a key size {} takes ({sizes:?})", self.key_bits, self.cipher),
            ));
        }
        if !SECTOR_SIZES.contains(&self.sector_size) {
            return Err(bad("sector size", format!("{} is not 512, 1024, 2048 or 4096", self.sector_size)));
        }
        if self.data_offset != RESERVED {
            return Err(bad("data offset", format!("sector {}, not the end of the reserved MiB", self.data_offset.0)));
        }
        self.check_layout()?;
        match self.escrow {
            (0, 0) => {}
            (at, len) if at as usize == SIZE && len > 0 && u64::from(len) <= RESERVED.bytes().0 - SIZE as u64 => {}
            (at, len) => {
                return Err(bad(
                    "escrow",
                    format!("{len} bytes at byte {at}: outside the reserved area after the header"),
                ))
            }
        }
        for (i, s) in self.serials.iter().enumerate() {
            if s.len() > SERIAL_LEN {
                return Err(bad("serials", format!("member {}'s is longer than {SERIAL_LEN} bytes", i + 1)));
            }
            if let Some(why) = bad_serial(s) {
                return Err(bad("serials", format!("member {}'s {why}", i + 1)));
            }
        }
        Ok(())
    }

    /// The stripe, volume and slice sizes as `plan` lays them out: one disk holds the volume alone
    /// (no chunk); several hold equal shares of whole chunks; the swap (if any) starts the volume
    /// and the file system has the rest; everything in whole 4 KiB.
    fn check_layout(&self) -> Result<(), HeaderError> {
        let bad = HeaderError::bad;
        let (chunk, member_len, volume_len) = (self.chunk.0, self.member_len.0, self.volume_len.0);
        if member_len == 0 || member_len > MAX_SECTORS || member_len % ALIGN != 0 {
            return Err(bad("member length", format!("{member_len} sectors")));
        }
        if self.members == 1 && (chunk != 0 || volume_len != member_len) {
            return Err(bad("layout", format!("one disk with chunk {chunk}, {member_len} of {volume_len} sectors")));
        }
        if self.members > 1 {
            if !chunk.is_power_of_two() || !(8..=1 << 21).contains(&chunk) || member_len % chunk != 0 {
                return Err(bad("chunk", format!("{chunk} sectors for {member_len} on each member")));
            }
            if Some(volume_len) != member_len.checked_mul(u64::from(self.members)) {
                return Err(bad("volume length", format!("{volume_len} sectors over {} members", self.members)));
            }
        }
        let (swap, data) = (self.swap, self.data);
        let fits = swap.0 .0 == 0
            && swap.1 .0 % ALIGN == 0
            && data.0 == swap.1
            && data.1 .0 > 0
            && data.0 .0.checked_add(data.1 .0) == Some(volume_len);
        if !fits {
            let why = format!(
                "swap {}+{}, data {}+{} in a volume of {volume_len} sectors",
                swap.0 .0, swap.1 .0, data.0 .0, data.1 .0
            );
            return Err(bad("extents", why));
        }
        Ok(())
    }

    /// Whether the header fits a disk of `size` bytes: the reserved area and this member's share
    /// of the volume inside it. A header that does not is foreign data, whatever its fields say.
    pub(crate) fn fits(&self, size: u64) -> Result<(), HeaderError> {
        let end = self.data_offset.0.checked_add(self.member_len.0).and_then(|s| s.checked_mul(512));
        match end {
            Some(end) if end <= size => Ok(()),
            _ => Err(HeaderError::bad(
                "member length",
                format!(
                    "{} sectors from sector {} run past the end of a disk of {} sectors",
                    self.member_len.0,
                    self.data_offset.0,
                    size / 512
                ),
            )),
        }
    }

    /// The volume id as 32 hex digits.
    pub(crate) fn volume_id_hex(&self) -> String {
        hex(&self.volume_id)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `seconds` since 1970 as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian; Howard Hinnant's
/// days-to-civil algorithm).
pub(crate) fn utc(seconds: u64) -> String {
    #[allow(clippy::cast_possible_wrap)] // u64::MAX / 86400 < 2^48: fits i64
    let days = (seconds / 86400) as i64;
    let rem = seconds % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// One line about a previous volume, for the plan and the status.
impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "previous ephemcrypt volume '{}' {}, created {}, member {} of {}",
            Esc(&self.name),
            &self.volume_id_hex()[..8],
            utc(self.created),
            self.member + 1,
            self.members
        )
    }
}

#[cfg(test)]
// The tests' casts: a random u64 to u8 or u32 keeps its low bits on purpose (random bytes); every
// other is a `below(n)` draw or an offset in a 4 KiB block, far below u32::MAX.
#[allow(clippy::cast_possible_truncation)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Header {
        Header {
            volume_id: [0x5e; 16],
            boot_id: [0xb0; 16],
            created: 1_795_000_000,
            member: 1,
            members: 2,
            data_offset: RESERVED,
            chunk: Sectors(512),
            // 1 MiB on each member: the sample fits disks of 2 MiB and more.
            member_len: Sectors(2048),
            volume_len: Sectors(4096),
            key_bits: 512,
            sector_size: 4096,
            swap: (Sectors(0), Sectors(1024)),
            data: (Sectors(1024), Sectors(3072)),
            fs: "ext4".into(),
            cipher: "aes-xts-plain64".into(),
            name: "ephemcrypt".into(),
            escrow: (0, 0),
            serials: vec!["AWS11".into(), "AWS22".into()],
        }
    }

    #[test]
    fn crc32c_check_value() {
        // The CRC catalogue's check value for CRC-32/ISCSI.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let b = h.encode();
        assert_eq!(b.len(), SIZE);
        assert_eq!(&b[..16], MAGIC);
        assert_eq!(Header::decode(&b), Ok(h.clone()));
        // 64 members with long serials still fit.
        let many = Header {
            members: 64,
            member: 63,
            volume_len: Sectors(2048 * 64),
            data: (Sectors(1024), Sectors(2048 * 64 - 1024)),
            serials: (0..64).map(|i| format!("{i:0>60}")).collect(),
            ..h
        };
        let back = Header::decode(&many.encode()).unwrap();
        assert_eq!(back.serials.len(), 64);
        assert_eq!(back.serials[63].len(), SERIAL_LEN, "cut to the field");
    }

    #[test]
    fn damaged_or_foreign_blocks() {
        let b = sample().encode();
        assert_eq!(Header::decode(&[0u8; SIZE]), Err(HeaderError::NoMagic));
        assert_eq!(Header::decode(&b[..100]), Err(HeaderError::Inconsistent("shorter than 4 KiB")));
        for at in [16, 24, 64, 300, 4091, 4092] {
            let mut bad = b.clone();
            bad[at] ^= 1;
            assert_eq!(Header::decode(&bad), Err(HeaderError::BadChecksum), "flip at {at}");
        }
        // A consistent checksum over impossible fields.
        let mut wrong = b.clone();
        wrong[64..68].copy_from_slice(&5u32.to_le_bytes());
        let crc = crc32c(&wrong[..CRC_AT]);
        wrong[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(Header::decode(&wrong), Err(HeaderError::Inconsistent(_))));
        let mut v2 = b;
        v2[16..20].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c(&v2[..CRC_AT]);
        v2[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Header::decode(&v2), Err(HeaderError::UnknownVersion(2)));
    }

    #[test]
    fn times_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn shown_without_secrets() {
        assert_eq!(
            sample().to_string(),
            "previous ephemcrypt volume 'ephemcrypt' 5e5e5e5e, created 2026-11-18 11:06:40 UTC, member 2 of 2"
        );
    }

    /// A block with our magic, `change` applied, and a checksum that fits: what anyone who had the
    /// disk could write.
    fn forged(change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut b = sample().encode();
        change(&mut b);
        let crc = crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn put_field(b: &mut [u8], at: usize, len: usize, bytes: &[u8]) {
        b[at..at + len].fill(0);
        let n = bytes.len().min(len);
        b[at..at + n].copy_from_slice(&bytes[..n]);
    }

    fn refused_field(b: &[u8]) -> &'static str {
        match Header::decode(b) {
            Err(HeaderError::BadField { field, .. }) => field,
            other => panic!("forged header taken or refused for another reason: {other:?}"),
        }
    }

    /// Forged headers of every kind the review tried (shell metacharacters, quotes, newlines and a
    /// journal priority, terminal sequences, option look-alikes, overlong and non-UTF-8 fields,
    /// ciphers that rewrite the table): refused, naming the field, with what it holds escaped.
    #[test]
    fn forged_strings_are_refused_by_field() {
        let names: [&[u8]; 14] = [
            b"x\n<0>emerg",
            b"\x1b[2J",
            b"x\x1b[2Jy",
            b"x;touch PWNED;",
            b"x\ntouch PWNED #",
            b"x$(touch PWNED)",
            b"x`id`",
            b"it's",
            b"a\"b",
            b"--foo",
            b"-rf",
            b"two words",
            b"x\xff\xfe",
            b"caf\xc3\xa9",
        ];
        for name in names {
            let b = forged(|b| put_field(b, 184, 64, name));
            assert_eq!(refused_field(&b), "name", "{:?}", String::from_utf8_lossy(name));
            let shown = Header::decode(&b).unwrap_err().to_string();
            assert!(!shown.contains(['\n', '\x1b', '\r']), "{shown:?}");
            assert!(shown.starts_with("an ephemcrypt header that cannot be right (name: '"), "{shown}");
        }
        let shown = Header::decode(&forged(|b| put_field(b, 184, 64, b"x\n<0>emerg"))).unwrap_err().to_string();
        assert_eq!(
            shown,
            "an ephemcrypt header that cannot be right (name: 'x\\n<0>emerg' is not a volume name \
             (1-64 letters, digits, _ and -, starting with a letter))"
        );
        let shown = Header::decode(&forged(|b| put_field(b, 184, 64, b"x\xff\xfe"))).unwrap_err().to_string();
        assert!(shown.contains("'x\\xff\\xfe' is not UTF-8 text"), "{shown}");
        // NUL padding only after the string: nothing hides behind the first NUL.
        let b = forged(|b| put_field(b, 184, 64, b"ephemcrypt\0;touch PWNED"));
        assert_eq!(refused_field(&b), "name");
        // The longest name fills its field without a NUL, and is a name.
        let long = "v".repeat(64);
        let h = Header { name: long.clone(), ..sample() };
        assert_eq!(Header::decode(&h.encode()).map(|h| h.name), Ok(long));
        for fs in [&b"zfs"[..], b"ext4;x", b"ext4\n", b"-t", b"ext4\0\0\0x", b"EXT4"] {
            assert_eq!(refused_field(&forged(|b| put_field(b, 144, 8, fs))), "fs", "{fs:?}");
        }
        let ciphers: [&[u8]; 9] = [
            b"cipher_null-ecb",
            b"aes-ecb",
            b"aes-xts-plain",
            b"aes-xts-plain64 0 /dev/sda 0",
            b"aes-xts-plain64\n",
            b"aes-xts-plain64aaaaaaaaaaaaaaaaa",
            b"--foo",
            b"aes-xts-$(id)",
            b"aes-cbc-null",
        ];
        for c in ciphers {
            assert_eq!(refused_field(&forged(|b| put_field(b, 152, 32, c))), "cipher", "{c:?}");
        }
        let serials: [&[u8]; 9] = [b"A B", b"A\nB", b"$(id)", b"a'b", b"a\"b", b"a;b", b"\x1b[2J", b"\xff", b"a\\b"];
        for serial in serials {
            let b = forged(|b| put_field(b, SERIALS_AT + SERIAL_LEN, SERIAL_LEN, serial));
            assert_eq!(refused_field(&b), "serials", "{serial:?}");
        }
        // Option look-alikes made of udev's characters are serials udev keeps: taken, and quoted
        // where they become shell (recover's script).
        let b = forged(|b| put_field(b, SERIALS_AT, SERIAL_LEN, b"--foo=x@y:1.2#+_"));
        assert_eq!(Header::decode(&b).map(|h| h.serials[0].clone()), Ok("--foo=x@y:1.2#+_".to_string()));
    }

    /// Numbers ephemcrypt never writes: key and sector sizes the configuration does not allow, a
    /// layout `plan` does not make, an escrow outside the reserved area, bytes where nothing is.
    #[test]
    fn forged_numbers_are_refused_by_field() {
        let u32s = |at: usize, v: u32| forged(move |b| b[at..at + 4].copy_from_slice(&v.to_le_bytes()));
        let u64s = |at: usize, v: u64| forged(move |b| b[at..at + 8].copy_from_slice(&v.to_le_bytes()));
        assert_eq!(refused_field(&u32s(20, 8192)), "header size");
        for bits in [0, 128, 1024, u32::MAX] {
            assert_eq!(refused_field(&u32s(104, bits)), "key bits", "{bits}");
        }
        for size in [0, 256, 3000, 8192] {
            assert_eq!(refused_field(&u32s(108, size)), "sector size", "{size}");
        }
        assert_eq!(refused_field(&u64s(72, 0)), "data offset");
        assert_eq!(refused_field(&u64s(72, 4096)), "data offset");
        assert_eq!(refused_field(&u64s(80, 0)), "chunk");
        assert_eq!(refused_field(&u64s(80, 3)), "chunk");
        assert_eq!(refused_field(&u64s(88, 0)), "member length");
        assert_eq!(refused_field(&u64s(88, u64::MAX)), "member length");
        assert_eq!(refused_field(&u64s(96, 4095)), "volume length");
        assert_eq!(refused_field(&u64s(120, 5000)), "extents");
        assert_eq!(refused_field(&u64s(136, u64::MAX)), "extents");
        assert_eq!(refused_field(&u32s(248, 27389)), "escrow");
        let escrow = |at: u32, len: u32| {
            forged(move |b| {
                b[248..252].copy_from_slice(&at.to_le_bytes());
                b[252..256].copy_from_slice(&len.to_le_bytes());
            })
        };
        assert_eq!(refused_field(&escrow(4096, 1 << 20)), "escrow");
        assert_eq!(refused_field(&escrow(4096, 0)), "escrow");
        assert!(Header::decode(&escrow(4096, (1 << 20) - 4096)).is_ok());
        assert_eq!(refused_field(&forged(|b| b[CRC_AT - 1] = 1)), "unused space");
        // A third serial for a volume of two members.
        assert_eq!(refused_field(&forged(|b| b[SERIALS_AT + 2 * SERIAL_LEN] = b'A')), "unused space");
    }

    /// A small fixed-seed generator (xorshift64*), so that the properties below are the same on
    /// every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
        fn text(&mut self, alphabet: &[u8], len: usize) -> String {
            (0..len).map(|_| char::from(*self.pick(alphabet))).collect()
        }
    }

    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const NAME_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    const SERIAL_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#+-.:=@_";

    /// Every cipher spec the configuration takes that fits the field.
    fn cipher_specs() -> Vec<String> {
        let mut out = Vec::new();
        for c in ["aes", "serpent", "twofish", "camellia", "aria", "cast6", "sm4"] {
            for m in ["xts", "cbc"] {
                for iv in ["plain64", "plain64be", "essiv:sha256", "benbi", "eboiv"] {
                    let spec = format!("{c}-{m}-{iv}");
                    assert!(CipherSpec::parse(&spec).is_ok() && spec.len() <= 32, "{spec}");
                    out.push(spec);
                }
            }
        }
        out
    }

    /// Any header ephemcrypt could write: every field drawn from what the configuration and
    /// `plan` allow, edge values included.
    fn any_valid(r: &mut Rng, ciphers: &[String]) -> Header {
        let members = match r.below(4) {
            0 => 1,
            1 => 2,
            2 => 64,
            _ => 1 + r.below(64) as u32,
        };
        let chunk = if members == 1 { 0 } else { 8u64 << r.below(19) };
        let unit = if members == 1 { ALIGN } else { chunk };
        let member_len = unit * (1 + r.below(MAX_SECTORS / unit));
        let volume_len = member_len * u64::from(members);
        let swap = if r.below(2) == 0 { 0 } else { ALIGN * r.below(volume_len / ALIGN) };
        let cipher = r.pick(ciphers).clone();
        let key_bits = *r.pick(&CipherSpec::parse(&cipher).unwrap().key_bits());
        let name_len = 1 + r.below(64) as usize;
        let name = r.text(LETTERS, 1) + &r.text(NAME_CHARS, name_len - 1);
        let escrow =
            if r.below(2) == 0 { (0, 0) } else { (SIZE as u32, 1 + r.below(RESERVED.bytes().0 - SIZE as u64) as u32) };
        let mut id = || std::array::from_fn(|_| r.next() as u8);
        let (volume_id, boot_id) = (id(), id());
        Header {
            volume_id,
            boot_id,
            created: r.next(),
            member: r.below(u64::from(members)) as u32,
            members,
            data_offset: RESERVED,
            chunk: Sectors(chunk),
            member_len: Sectors(member_len),
            volume_len: Sectors(volume_len),
            key_bits,
            sector_size: *r.pick(&SECTOR_SIZES),
            swap: (Sectors(0), Sectors(swap)),
            data: (Sectors(swap), Sectors(volume_len - swap)),
            fs: r.pick(&FS_NAMES).to_string(),
            cipher,
            name,
            escrow,
            serials: (0..members)
                .map(|_| {
                    let len = r.below(SERIAL_LEN as u64 + 1) as usize;
                    r.text(SERIAL_CHARS, len)
                })
                .collect(),
        }
    }

    /// What `encode` writes, `decode` takes: every valid header comes back as it went in.
    #[test]
    fn property_every_valid_header_round_trips() {
        let ciphers = cipher_specs();
        let mut r = Rng(0x5EED_0001);
        for _ in 0..3000 {
            let h = any_valid(&mut r, &ciphers);
            assert_eq!(h.check(), Ok(()), "{h:?}");
            assert_eq!(Header::decode(&h.encode()), Ok(h));
        }
    }

    /// And nothing else: a block changed in any way, with a checksum that fits, is either refused
    /// or decodes to a header that encodes to that very block.
    #[test]
    fn property_decode_takes_only_what_encode_writes() {
        let ciphers = cipher_specs();
        let mut r = Rng(0x5EED_0002);
        let hostile: [&[u8]; 10] = [b"\n", b"\x1b[2J", b"<0>", b";", b"$(", b"'", b"\"", b"--", b"\xff", b"\0"];
        let (mut taken, mut refused) = (0, 0);
        for i in 0..20_000 {
            let mut b = any_valid(&mut r, &ciphers).encode();
            for _ in 0..1 + r.below(3) {
                match r.below(5) {
                    // One byte anywhere (magic and checksum included).
                    0 => {
                        let at = r.below(SIZE as u64) as usize;
                        b[at] = r.next() as u8;
                    }
                    // One byte of the fields.
                    1 => {
                        let at = 16 + r.below(240) as usize;
                        b[at] = r.next() as u8;
                    }
                    // A number field set to a small or an extreme value.
                    2 => {
                        let at = 16 + 4 * r.below(60) as usize;
                        let any = r.next() as u32;
                        let v = *r.pick(&[0, 1, 8, 512, 2048, 4096, u32::MAX, any]);
                        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    }
                    // Hostile text into a string field, at any place in it.
                    3 => {
                        let (at, len) = *r.pick(&[(144, 8), (152, 32), (184, 64), (SERIALS_AT, SERIAL_LEN)]);
                        let piece = r.pick(&hostile);
                        let off = r.below(len as u64) as usize;
                        let n = piece.len().min(len - off);
                        b[at + off..at + off + n].copy_from_slice(&piece[..n]);
                    }
                    // Bytes after the serials.
                    _ => {
                        let at = SERIALS_AT + r.below((CRC_AT - SERIALS_AT) as u64) as usize;
                        b[at] = r.next() as u8;
                    }
                }
            }
            if i % 4 != 0 {
                let crc = crc32c(&b[..CRC_AT]);
                b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
            }
            match Header::decode(&b) {
                Ok(h) => {
                    assert_eq!(h.encode(), b, "{h:?}");
                    assert_eq!(h.check(), Ok(()));
                    taken += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().contains(['\n', '\x1b', '\0']), "{e}");
                    refused += 1;
                }
            }
        }
        // Both ways were walked: changes to the ids and times are taken, most others refused.
        assert!(taken > 500 && refused > 10_000, "{taken} taken, {refused} refused");
        // Random blocks with our magic and a fitting checksum: refused, every one.
        for _ in 0..2000 {
            let mut b: Vec<u8> = (0..SIZE).map(|_| r.next() as u8).collect();
            b[..16].copy_from_slice(MAGIC);
            b[16..20].copy_from_slice(&VERSION.to_le_bytes());
            let crc = crc32c(&b[..CRC_AT]);
            b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
            assert!(Header::decode(&b).is_err());
        }
    }
}
