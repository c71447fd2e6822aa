//! PURE: the volume's layout: the disks striped or used alone, the crypt mapping over them, the swap
//! and data slices, and the checks that the configuration and the disks allow it.

use super::{exposed, Caps, MappingNames, PlanError};

use std::path::PathBuf;

use crate::config::{CipherSpec, Config, Fs, SectorSize, Swap, Workqueues};
use crate::disk::{Disk, NewRoot, Probe};
use crate::header::{self};
use crate::step::KeyPath;
use crate::units::{Bytes, DevNo, Sectors};

/// A device-mapper slice of the encrypted volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slice {
    pub(crate) name: String,
    pub(crate) start: Sectors,
    pub(crate) len: Sectors,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stripe {
    pub(crate) name: String,
    pub(crate) chunk: Sectors,
    /// Sectors used on each member disk.
    pub(crate) per_disk: Sectors,
    pub(crate) len: Sectors,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crypt {
    pub(crate) name: String,
    pub(crate) cipher: String,
    pub(crate) key_bits: u32,
    pub(crate) sector_size: u32,
    /// Optional dm-crypt arguments, e.g. `no_read_workqueue`, in the order the kernel prints them.
    pub(crate) flags: Vec<String>,
    pub(crate) key_path: KeyPath,
    pub(crate) len: Sectors,
}

/// A member disk of the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) serial: String,
    pub(crate) dev: DevNo,
    pub(crate) size: Bytes,
    /// How many bytes from the start of the disk its header step writes: the header, then zeros
    /// over what of the reserved MiB may not be zero ([`reserved_to_clear`]).
    pub(crate) write: usize,
}

/// How much of a disk's reserved MiB setup must write: the header block where the probe read the
/// rest of the MiB as zeros (a blank disk; ours with no escrow); up to the end of an earlier
/// volume's escrow where there was one (an old escrowed key must never survive beside the data it
/// opens); the whole MiB where what is there is unknown (a disk the operator forced). The probe
/// reads the whole first MiB (signature.rs), so "blank" and "ours as left" vouch for all of it.
pub(crate) fn reserved_to_clear(probe: &Probe) -> usize {
    let block = |n: usize| n.div_ceil(header::SIZE).saturating_mul(header::SIZE);
    match probe {
        Probe::Blank => header::SIZE,
        Probe::Ours(h) => {
            let (at, len) = (h.escrow.0 as usize, h.escrow.1 as usize);
            block(at.saturating_add(len)).clamp(header::SIZE, header::RESERVED_LEN)
        }
        _ => header::RESERVED_LEN,
    }
}

/// The encrypted volume and what goes on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Volume {
    pub(crate) members: Vec<Member>,
    pub(crate) stripe: Option<Stripe>,
    pub(crate) crypt: Crypt,
    pub(crate) swap: Option<Slice>,
    /// Present when there is swap: the rest of the volume, for the file system.
    pub(crate) data: Option<Slice>,
    pub(crate) fs: Fs,
    pub(crate) mount: PathBuf,
    pub(crate) binds: Vec<PathBuf>,
    /// See [`Plan::exposed`]: these targets are not bound.
    pub(crate) exposed: Vec<(PathBuf, String)>,
    /// Recipients of the key's escrow (none: no escrow).
    pub(crate) escrow: Vec<crate::age::Recipient>,
    /// A unit in the real root that blocks reboots while the volume is there (systemd roots).
    pub(crate) guard: bool,
}

impl Volume {
    /// The names of the mappings this volume makes, bottom up.
    pub(crate) fn mapping_names(&self) -> Vec<&str> {
        let stripe = self.stripe.as_ref().map(|s| s.name.as_str());
        let slices = [&self.swap, &self.data].into_iter().flatten().map(|s| s.name.as_str());
        stripe.into_iter().chain(std::iter::once(self.crypt.name.as_str())).chain(slices).collect()
    }

    /// The dm name the file system (or nothing, for fs=none) goes on.
    pub(crate) fn data_name(&self) -> &str {
        self.data.as_ref().map_or(&self.crypt.name, |d| &d.name)
    }
}

/// The smallest data slice worth a file system (xfs refuses less than 300 MiB).
pub(super) fn min_fs(fs: Fs) -> Bytes {
    match fs {
        Fs::Xfs => Bytes(300 << 20),
        Fs::Ext4 => Bytes(16 << 20),
        // No file system: still a volume worth a mapping.
        Fs::None => Bytes(1 << 20),
    }
}

/// Swap and file-system slices start on 4 KiB boundaries (a page, and any crypt sector).
pub(super) const ALIGN: Sectors = Sectors(8);

/// The label mkfs gives the file system (ext4 takes 16 bytes, xfs 12).
pub(super) const FS_LABEL: &str = "ephemcrypt";

/// The volume's layout: sizes, stripe, crypt parameters and slices.
pub(super) fn volume(config: &Config, chosen: &[&Disk], caps: Caps, newroot: &NewRoot) -> Result<Volume, PlanError> {
    // FIPS mode: what the kernel would refuse at the crypt step is refused before any header is
    // written, and so is escrow unless the operator accepts its algorithms.
    if caps.fips {
        let refusal = CipherSpec::parse(&config.cipher).map_or_else(Some, |s| s.fips_refusal(config.key_bits));
        if let Some(why) = refusal {
            return Err(PlanError::FipsCipher { cipher: config.cipher.clone(), key_bits: config.key_bits, why });
        }
        if !config.escrow.is_empty() && !config.escrow_fips {
            return Err(PlanError::FipsEscrow);
        }
    }
    if let Some(d) = chosen.iter().find(|d| d.logical_block_size > 4096) {
        return Err(PlanError::BlockTooLarge { disk: d.path.clone(), block: d.logical_block_size });
    }
    let largest_block = chosen.iter().map(|d| d.logical_block_size).max().unwrap_or(512);
    let sector_size = match config.sector_size {
        SectorSize::Auto if caps.sector_size() => 4096,
        SectorSize::Auto => largest_block,
        SectorSize::Fixed(s) => s,
    };
    if sector_size != 512 && !caps.sector_size() {
        return Err(PlanError::SectorSizeUnsupported { sector_size });
    }
    if let Some(d) = chosen.iter().find(|d| d.logical_block_size > sector_size) {
        return Err(PlanError::BlockLargerThanSector {
            disk: d.path.clone(),
            block: d.logical_block_size,
            sector: sector_size,
        });
    }
    let (stripe, len) = stripe(config, chosen)?;
    let crypt = Crypt {
        name: MappingNames::of(config).crypt,
        cipher: config.cipher.clone(),
        key_bits: config.key_bits,
        sector_size,
        flags: crypt_flags(config, caps, sector_size),
        key_path: if caps.keyring() { KeyPath::Keyring } else { KeyPath::HexTable },
        len,
    };
    let (swap, data) = slices(config, len)?;
    let members = chosen
        .iter()
        .map(|d| Member {
            name: d.name.clone(),
            path: d.path.clone(),
            serial: d.serial.clone(),
            dev: d.dev,
            size: d.size,
            write: reserved_to_clear(&d.probe),
        })
        .collect();
    Ok(Volume {
        members,
        stripe,
        crypt,
        swap,
        data,
        fs: config.fs,
        mount: config.mount.clone(),
        binds: config.bind.clone(),
        exposed: exposed(&config.bind, newroot),
        escrow: config.escrow.clone(),
        guard: config.guard,
    })
}

/// The stripe over several disks (none for one) and the length of what the crypt mapping covers:
/// the smallest disk, less the reserved area, rounded down to whole chunks, times the number of
/// disks.
pub(super) fn stripe(config: &Config, chosen: &[&Disk]) -> Result<(Option<Stripe>, Sectors), PlanError> {
    // Each member starts with the reserved area (its header); the volume comes after it.
    let smallest = chosen.iter().map(|d| d.size.sectors()).min().unwrap_or_default();
    let smallest = Sectors(smallest.0.saturating_sub(header::RESERVED.0));
    if chosen.len() == 1 {
        return Ok((None, smallest.round_down(ALIGN)));
    }
    let chunk = config.chunk.sectors();
    let per_disk = smallest.round_down(chunk);
    if per_disk.0 == 0 {
        return Err(PlanError::SmallerThanChunk { smallest: smallest.bytes(), chunk: config.chunk });
    }
    let len = Sectors(per_disk.0 * chosen.len() as u64);
    Ok((Some(Stripe { name: MappingNames::of(config).stripe, chunk, per_disk, len }), len))
}

/// dm-crypt's optional arguments, in the order the kernel prints them (`dmsetup table`).
pub(super) fn crypt_flags(config: &Config, caps: Caps, sector_size: u32) -> Vec<String> {
    let mut flags = Vec::new();
    if config.discard && caps.discards() {
        flags.push("allow_discards".to_string());
    }
    if caps.no_workqueue() {
        let (read, write) = match config.workqueues {
            Workqueues::Bypass => (true, true),
            Workqueues::BypassRead => (true, false),
            Workqueues::BypassWrite => (false, true),
            Workqueues::Kernel => (false, false),
        };
        if read {
            flags.push("no_read_workqueue".to_string());
        }
        if write {
            flags.push("no_write_workqueue".to_string());
        }
    }
    if sector_size != 512 {
        flags.push(format!("sector_size:{sector_size}"));
    }
    flags
}

/// The swap and data slices of a volume of `len` sectors (none without swap).
pub(super) fn slices(config: &Config, len: Sectors) -> Result<(Option<Slice>, Option<Slice>), PlanError> {
    let swap_len = match config.swap {
        Swap::None => Sectors(0),
        Swap::Size(b) => b.sectors().round_down(ALIGN),
        Swap::Percent(p) => Sectors(len.0 / 100 * u64::from(p)).round_down(ALIGN),
    };
    let room = Sectors(len.0.saturating_sub(swap_len.0));
    if swap_len.0 > 0 && room.bytes() < min_fs(config.fs).max(Bytes(1 << 20)) {
        return Err(PlanError::SwapLeavesTooLittle {
            swap: swap_len.bytes(),
            room: room.bytes(),
            volume: len.bytes(),
            fs: config.fs,
        });
    }
    if room.bytes() < min_fs(config.fs) {
        return Err(PlanError::TooSmallForFs { room: room.bytes(), fs: config.fs, min: min_fs(config.fs) });
    }
    if swap_len.0 == 0 {
        return Ok((None, None));
    }
    let names = MappingNames::of(config);
    Ok((
        Some(Slice { name: names.swap, start: Sectors(0), len: swap_len }),
        Some(Slice { name: names.data, start: swap_len, len: room }),
    ))
}

/// The device-mapper UUID of a mapping. `CRYPT-PLAIN-` is what cryptsetup gives plain mappings:
/// lsblk shows "crypt".
pub(super) fn uuid(role: &str, name: &str) -> String {
    match role {
        "CRYPT" => format!("CRYPT-PLAIN-{name}"),
        _ => format!("EPHEMCRYPT-{role}-{name}"),
    }
}
