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

use std::fmt;

use crate::units::Sectors;

/// The header's magic: 16 bytes no file system or volume manager starts with.
pub(crate) const MAGIC: &[u8; 16] = b"EPHEMCRYPT\0HDR\x01\x02";
pub(crate) const VERSION: u32 = 1;
/// The size of the header block.
pub(crate) const SIZE: usize = 4096;
/// The reserved area at the start of each member disk: header and escrow room.
pub(crate) const RESERVED: Sectors = Sectors(2048);
/// The most members a header lists.
pub(crate) const MAX_MEMBERS: usize = 64;
const SERIAL_LEN: usize = 48;
const SERIALS_AT: usize = 256;
const CRC_AT: usize = SIZE - 4;

const _: () = assert!(SERIALS_AT + MAX_MEMBERS * SERIAL_LEN <= CRC_AT);
const _: () = assert!(RESERVED.0 * 512 >= SIZE as u64);

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
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NoMagic => f.write_str("no ephemcrypt header"),
            HeaderError::BadChecksum => f.write_str("an ephemcrypt header whose checksum fails"),
            HeaderError::UnknownVersion(v) => write!(f, "an ephemcrypt header of unknown format version {v}"),
            HeaderError::Inconsistent(why) => write!(f, "an ephemcrypt header that cannot be right ({why})"),
        }
    }
}

/// CRC-32C (Castagnoli, reflected, polynomial 0x82F63B78), as ext4, btrfs and iSCSI use it.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
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

/// `N` bytes at `at` (decode has checked the block's length; past it, zeros: never a panic).
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(field) = b.get(at..at.saturating_add(N)) {
        out.copy_from_slice(field);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes_at(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes_at(b, at))
}

fn str_at(b: &[u8], at: usize, len: usize) -> String {
    let field = &b[at..at + len];
    let end = field.iter().position(|&c| c == 0).unwrap_or(len);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

impl Header {
    /// The 4 KiB block, checksummed.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SIZE];
        put(&mut b, 0, MAGIC);
        put(&mut b, 16, &VERSION.to_le_bytes());
        put(&mut b, 20, &(SIZE as u32).to_le_bytes());
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

    /// Read a header from the first bytes of a disk.
    pub(crate) fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.get(..16) != Some(&MAGIC[..]) {
            return Err(HeaderError::NoMagic);
        }
        if b.len() < SIZE {
            return Err(HeaderError::Inconsistent("shorter than 4 KiB"));
        }
        if crc32c(&b[..CRC_AT]) != u32_at(b, CRC_AT) {
            return Err(HeaderError::BadChecksum);
        }
        let version = u32_at(b, 16);
        if version != VERSION {
            return Err(HeaderError::UnknownVersion(version));
        }
        let (member, members) = (u32_at(b, 64), u32_at(b, 68));
        if members == 0 || members as usize > MAX_MEMBERS || member >= members {
            return Err(HeaderError::Inconsistent("member index and count"));
        }
        let (at, len) = (u64::from(u32_at(b, 248)), u64::from(u32_at(b, 252)));
        if (at, len) != (0, 0) && (at < SIZE as u64 || len == 0 || at + len > RESERVED.bytes().0) {
            return Err(HeaderError::Inconsistent("escrow outside the reserved area"));
        }
        Ok(Header {
            volume_id: bytes_at(b, 24),
            boot_id: bytes_at(b, 40),
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
            fs: str_at(b, 144, 8),
            cipher: str_at(b, 152, 32),
            name: str_at(b, 184, 64),
            escrow: (u32_at(b, 248), u32_at(b, 252)),
            serials: (0..members as usize).map(|i| str_at(b, SERIALS_AT + i * SERIAL_LEN, SERIAL_LEN)).collect(),
        })
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
            self.name,
            &self.volume_id_hex()[..8],
            utc(self.created),
            self.member + 1,
            self.members
        )
    }
}

#[cfg(test)]
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
            member_len: Sectors(2_097_152),
            volume_len: Sectors(4_194_304),
            key_bits: 512,
            sector_size: 4096,
            swap: (Sectors(0), Sectors(131_072)),
            data: (Sectors(131_072), Sectors(4_063_232)),
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
        let many = Header { members: 64, member: 63, serials: (0..64).map(|i| format!("{i:0>60}")).collect(), ..h };
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
}
