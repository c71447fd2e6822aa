//! PURE: configuration + facts about the machine → [`Plan`]. No side effects, no key.
//!
//! The facts are what setup read before planning: the disks, what the kernel's dm-crypt can do,
//! the new root's directories, and a volume already live in this boot. The plan is the disks with
//! their verdicts, the layout, and the program: the ordered [`Step`]s setup takes, and the steps
//! of the failure policy.
//!
//! Layout: the chosen disks, ordered by serial then path, are striped (several disks) or used
//! directly (one disk); one dm-crypt mapping covers that; an optional dm-linear swap slice and a
//! data slice split the encrypted volume; the data slice (or the whole volume) gets the file system.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::classify::{classify, unchecked_excludes, Refusal, Verdict};
use crate::config::{CipherSpec, Config, Fs, OnFailure, SectorSize, Swap, Workqueues};
use crate::disk::{DirState, Disk, Mount, NewRoot};
use crate::dm::{Crypt as CryptTarget, CryptKey, Dev, Linear, Striped, Target, TargetKind};
use crate::escape::{escape, line, Esc, EscPath};
use crate::header::{self, Header, Identity};
use crate::json::Value;
use crate::paths::{under, STATUS_PATH};
use crate::step::{KeyPath, Mapping, Step, MOUNT_OPTIONS};
use crate::units::{Bytes, DevNo, Sectors};

/// What the kernel's dm-crypt target can do, from `DM_LIST_VERSIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// The crypt target version; `None` when not read (the `plan` command on another machine).
    pub(crate) crypt: Option<[u32; 3]>,
    /// The kernel runs in FIPS mode (/proc/sys/crypto/fips_enabled is 1): its crypto API runs only
    /// FIPS-approved algorithms.
    pub(crate) fips: bool,
}

impl Caps {
    /// Without a kernel to ask, `plan` shows what a current kernel would get.
    pub(crate) const ASSUMED: Caps = Caps { crypt: None, fips: false };

    fn at_least(&self, min: [u32; 3]) -> bool {
        self.crypt.is_none_or(|v| v >= min)
    }
    /// `:<size>:logon:<desc>` keys. dm-crypt learnt keyring keys in 1.15 (Linux 4.10); we ask for
    /// 1.18.1, the first version whose keyring handling is free of known bugs.
    pub(crate) fn keyring(&self) -> bool {
        self.at_least([1, 18, 1])
    }
    /// `sector_size:<n>`: crypt target 1.17 (Linux 4.12).
    pub(crate) fn sector_size(&self) -> bool {
        self.at_least([1, 17, 0])
    }
    /// `no_read_workqueue no_write_workqueue`: crypt target 1.22 (Linux 5.9).
    pub(crate) fn no_workqueue(&self) -> bool {
        self.at_least([1, 22, 0])
    }
    /// `allow_discards`: crypt target 1.11 (Linux 3.1).
    pub(crate) fn discards(&self) -> bool {
        self.at_least([1, 11, 0])
    }
}

/// A mapping of ours that is already live in this boot (a second run of setup), as the kernel
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) dev: DevNo,
    /// The target types of its table; ours is exactly one `crypt`.
    pub(crate) targets: Vec<String>,
    /// The mapping that holds the file system: `<name>-data` when that is live, else the volume.
    pub(crate) data: String,
    /// Whether the mount point in the new root is a mount point already.
    pub(crate) mounted: bool,
}

/// What setup read before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) disks: Vec<Disk>,
    pub(crate) caps: Caps,
    pub(crate) newroot: NewRoot,
    pub(crate) live: Option<Live>,
    /// The new volume's identity; `None` for `ephemcrypt plan`, which shows it as new.
    pub(crate) identity: Option<Identity>,
    /// Mappings that exist with a name the volume's own mappings would take (while the volume
    /// itself is not live): left by an interrupted setup in this boot, or another program's.
    pub(crate) taken: Vec<(String, DevNo)>,
}

/// One disk and what was decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assessed {
    pub(crate) disk: Disk,
    pub(crate) verdict: Verdict,
}

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
    pub(crate) exposed: Vec<(PathBuf, PathBuf)>,
    /// Recipients of the key's escrow (none: no escrow).
    pub(crate) escrow: Vec<crate::age::Recipient>,
    /// A unit in the real root that blocks reboots while the volume is there (systemd roots).
    pub(crate) guard: bool,
}

impl Volume {
    /// The dm name the file system (or nothing, for fs=none) goes on.
    pub(crate) fn data_name(&self) -> &str {
        self.data.as_ref().map_or(&self.crypt.name, |d| &d.name)
    }
}

/// Why the chosen disks cannot carry the configured volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlanError {
    /// A sector size other than 512 on a crypt target older than 1.17.
    SectorSizeUnsupported {
        sector_size: u32,
    },
    /// A disk whose logical blocks are larger than the encryption sector.
    BlockLargerThanSector {
        disk: PathBuf,
        block: u32,
        sector: u32,
    },
    /// A disk whose logical blocks are larger than dm-crypt's largest sector (4096).
    BlockTooLarge {
        disk: PathBuf,
        block: u32,
    },
    SmallerThanChunk {
        smallest: Bytes,
        chunk: Bytes,
    },
    SwapLeavesTooLittle {
        swap: Bytes,
        room: Bytes,
        volume: Bytes,
        fs: Fs,
    },
    TooSmallForFs {
        room: Bytes,
        fs: Fs,
        min: Bytes,
    },
    /// `exclude` names /dev/disk links that match no disk, so it cannot be checked: no disk is
    /// taken (the failure policy applies).
    ExcludeUnchecked {
        excludes: Vec<String>,
    },
    /// A live mapping has the volume's name but is not a single crypt target.
    ForeignMapping {
        name: String,
        targets: Vec<String>,
    },
    /// The kernel runs in FIPS mode and refuses the configured cipher (or its key size).
    FipsCipher {
        cipher: String,
        key_bits: u32,
        why: String,
    },
    /// The kernel runs in FIPS mode and the configuration has escrow, whose algorithms are not
    /// FIPS-approved, without `escrow-fips = allow`.
    FipsEscrow,
    /// A mapping the volume needs is there already, without the volume.
    NameTaken {
        name: String,
        dev: DevNo,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::SectorSizeUnsupported { sector_size } => write!(
                f,
                "sector-size {sector_size} needs dm-crypt 1.17 (Linux 4.12); this kernel's crypt target is older"
            ),
            PlanError::BlockLargerThanSector { disk, block, sector } => write!(
                f,
                "{} has {block}-byte logical blocks, larger than the encryption sector size {sector}",
                EscPath(disk)
            ),
            PlanError::BlockTooLarge { disk, block } => write!(
                f,
                "{} has {block}-byte logical blocks; dm-crypt's sectors are at most 4096 bytes",
                EscPath(disk)
            ),
            PlanError::SmallerThanChunk { smallest, chunk } => {
                write!(f, "the smallest disk ({smallest}) is smaller than one chunk ({chunk})")
            }
            PlanError::SwapLeavesTooLittle { swap, room, volume, fs } => write!(
                f,
                "swap ({swap}) leaves {room} of the {volume} volume, too little for the {} file system",
                fs.name()
            ),
            PlanError::TooSmallForFs { room, fs, min } => {
                write!(f, "the volume ({room}) is too small for {} (at least {min})", fs.name())
            }
            PlanError::ExcludeUnchecked { excludes } => write!(
                f,
                "'exclude' names links that match no disk ({}): they cannot be checked (udev has not made them, \
                 or their rules are not in the initramfs), so no disk is taken",
                Esc(&excludes.join(", "))
            ),
            PlanError::ForeignMapping { name, targets } => write!(
                f,
                "/dev/mapper/{name} exists but is not a dm-crypt volume ({}); set 'name' to another prefix",
                Esc(&targets.join(", "))
            ),
            PlanError::FipsCipher { cipher, key_bits, why } => write!(
                f,
                "the kernel runs in FIPS mode (/proc/sys/crypto/fips_enabled is 1) and refuses cipher {cipher} \
                 with key-bits {key_bits}: {why}"
            ),
            PlanError::FipsEscrow => f.write_str(
                "the kernel runs in FIPS mode (/proc/sys/crypto/fips_enabled is 1) and 'escrow' is set: the escrow \
                 encrypts the volume key with X25519, HKDF-SHA256 and ChaCha20-Poly1305 in ephemcrypt's own code, \
                 not FIPS-approved cryptography; set escrow-fips = allow to make it anyway, or remove 'escrow'",
            ),
            PlanError::NameTaken { name, dev } => write!(
                f,
                "a mapping named {name} ({dev}) exists already, without the volume (left by an interrupted \
                 setup, or another program's): remove it (dmsetup remove {name}) or set 'name' to another prefix"
            ),
        }
    }
}

/// What setup will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// `rd.ephemcrypt=0`.
    Disabled,
    /// No eligible disk and none expected: nothing to do, not a failure.
    Absent,
    /// Fewer eligible disks than `expect`: a failure, the policy applies.
    TooFew {
        found: usize,
        expected: u32,
    },
    /// The disks cannot carry the configured layout: a failure, the policy applies.
    Invalid(PlanError),
    /// The host or the kernel could not be read: a failure, the policy applies.
    Unreadable(String),
    /// The configuration could not be read: a failure; the defaults' tmpfs policy applies.
    BadConfig(String),
    Ready(Box<Volume>),
    /// The volume is live already (a second run in this boot): mount what is not mounted.
    Live(Box<Live>),
    /// `hold` (the configuration, `rd.ephemcrypt.hold`, or /etc/ephemcrypt.hold in the new root):
    /// no disk is touched, the failure policy's tmpfs covers the bind targets. `volumes`: the
    /// earlier volumes found on the disks, left alone.
    Held {
        by: String,
        volumes: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) disks: Vec<Assessed>,
    pub(crate) state: State,
    pub(crate) on_failure: OnFailure,
    pub(crate) caps: Caps,
    /// Where the new root is mounted, and whether it was looked at (else its directories were
    /// taken to be present).
    pub(crate) newroot: PathBuf,
    pub(crate) newroot_read: bool,
    /// The new root runs systemd (units written for it are loaded).
    pub(crate) newroot_systemd: bool,
    /// What setup does, in order.
    pub(crate) steps: Vec<Step>,
    /// What setup does after a failure, once the steps taken are undone: the failure policy.
    pub(crate) fallback: Vec<Step>,
    /// Bind targets that a mount of the real root's fstab would hide after switch_root and that
    /// nothing can bind again (the root does not run systemd), with the mount that hides them:
    /// neither the volume nor the failure policy's tmpfs can cover them, and the result says so.
    pub(crate) exposed: Vec<(PathBuf, PathBuf)>,
    /// What becomes of each mount of the root's fstab at, above or inside a bind target: a line
    /// each (see [`fstab_notes`]).
    pub(crate) fstab: Vec<String>,
}

/// See [`Plan::exposed`].
fn exposed(binds: &[PathBuf], newroot: &NewRoot) -> Vec<(PathBuf, PathBuf)> {
    if newroot.systemd {
        return Vec::new();
    }
    binds.iter().filter_map(|b| Some((b.clone(), newroot.shadowed_by(b)?.clone()))).collect()
}

/// The smallest data slice worth a file system (xfs refuses less than 300 MiB).
fn min_fs(fs: Fs) -> Bytes {
    match fs {
        Fs::Xfs => Bytes(300 << 20),
        Fs::Ext4 => Bytes(16 << 20),
        // No file system: still a volume worth a mapping.
        Fs::None => Bytes(1 << 20),
    }
}

/// Swap and file-system slices start on 4 KiB boundaries (a page, and any crypt sector).
const ALIGN: Sectors = Sectors(8);

/// The label mkfs gives the file system (ext4 takes 16 bytes, xfs 12).
const FS_LABEL: &str = "ephemcrypt";

/// Classify every disk and order them: used disks first, by serial then path; never by the
/// kernel's enumeration order, which changes between boots.
pub(crate) fn assess(config: &Config, disks: &[Disk]) -> Vec<Assessed> {
    let unchecked = unchecked_excludes(config, disks);
    let verdict = |d: &Disk| match classify(d, config) {
        Verdict::Use(_) if !unchecked.is_empty() => Verdict::Refuse(vec![Refusal::ExcludeUnchecked(unchecked.clone())]),
        v => v,
    };
    let mut assessed: Vec<Assessed> = disks.iter().map(|d| Assessed { disk: d.clone(), verdict: verdict(d) }).collect();
    assessed.sort_by(|a, b| {
        let key = |x: &Assessed| (!x.verdict.is_use(), x.disk.serial.clone(), x.disk.path.clone());
        key(a).cmp(&key(b))
    });
    assessed
}

/// The exclusions that kept an otherwise eligible disk from being taken, if any did.
pub(crate) fn unchecked(disks: &[Assessed]) -> Option<Vec<String>> {
    disks.iter().find_map(|a| match &a.verdict {
        Verdict::Refuse(r) => r.iter().find_map(|r| match r {
            Refusal::ExcludeUnchecked(s) => Some(s.iter().map(ToString::to_string).collect()),
            _ => None,
        }),
        Verdict::Use(_) => None,
    })
}

/// Decide everything. Pure: same inputs, same plan.
pub(crate) fn plan(config: &Config, facts: &Facts) -> Plan {
    let mut disks = assess(config, &facts.disks);
    // A header lists at most 64 members: the rest (last in serial order) wait for another machine.
    for a in disks.iter_mut().filter(|a| a.verdict.is_use()).skip(header::MAX_MEMBERS) {
        a.verdict =
            Verdict::Refuse(vec![Refusal::NotTaken(format!("a volume has at most {} disks", header::MAX_MEMBERS))]);
    }
    let chosen: Vec<&Disk> = disks.iter().filter(|a| a.verdict.is_use()).map(|a| &a.disk).collect();
    let state = if !config.enabled {
        State::Disabled
    } else if let Some(live) = &facts.live {
        if live.targets == ["crypt"] {
            State::Live(Box::new(live.clone()))
        } else {
            State::Invalid(PlanError::ForeignMapping { name: config.name.clone(), targets: live.targets.clone() })
        }
    } else if let Some(by) = held_by(config, &facts.newroot) {
        State::Held { by, volumes: held_volumes(&disks) }
    } else if let Some(excludes) = unchecked(&disks) {
        State::Invalid(PlanError::ExcludeUnchecked { excludes })
    } else if chosen.len() < config.expect as usize {
        State::TooFew { found: chosen.len(), expected: config.expect }
    } else if chosen.is_empty() {
        State::Absent
    } else if let Some((name, dev)) = facts.taken.first() {
        State::Invalid(PlanError::NameTaken { name: name.clone(), dev: *dev })
    } else {
        volume(config, &chosen, facts.caps, &facts.newroot).map_or_else(State::Invalid, |v| State::Ready(Box::new(v)))
    };
    if !matches!(state, State::Ready(_)) {
        // A disk is "use" only when setup takes it.
        let why = not_taken(&state);
        for a in disks.iter_mut().filter(|a| a.verdict.is_use()) {
            a.verdict = Verdict::Refuse(vec![Refusal::NotTaken(why.clone())]);
        }
    }
    let newroot = &facts.newroot;
    let steps = match &state {
        State::Ready(v) => volume_steps(v, newroot, &config.name, facts.identity),
        State::Live(live) if config.fs != Fs::None && !live.mounted => {
            let mount = under(&newroot.path, &config.mount);
            let dirs: Vec<PathBuf> = std::iter::once(&config.mount).chain(&config.bind).cloned().collect();
            let mut steps = mkdir_steps(newroot, &dirs);
            steps.extend(mount_steps(&live.data, config.fs, &mount, &config.mount, newroot, &config.bind));
            steps
        }
        // A second run leaves the first run's status as it is.
        State::Live(_) => Vec::new(),
        State::Disabled | State::Absent => vec![status_step()],
        // Held on purpose: the tmpfs of the failure policy (also with halt: a held boot goes on).
        State::Held { .. } => {
            let policy = if config.on_failure == OnFailure::Continue { OnFailure::Continue } else { OnFailure::Tmpfs };
            fallback(policy, &config.bind, newroot)
        }
        State::TooFew { .. } | State::Invalid(_) | State::Unreadable(_) | State::BadConfig(_) => Vec::new(),
    };
    Plan {
        disks,
        fallback: fallback(config.on_failure, &config.bind, newroot),
        exposed: exposed(&config.bind, newroot),
        fstab: fstab_notes(&config.bind, newroot),
        state,
        on_failure: config.on_failure,
        caps: facts.caps,
        newroot: newroot.path.clone(),
        newroot_read: newroot.read,
        newroot_systemd: newroot.systemd,
        steps,
    }
}

/// The plan when setup could not get as far as planning: the configuration or the host could not
/// be read. Only the failure policy is left (for a bad configuration, the defaults').
pub(crate) fn failed(config: &Config, newroot: &NewRoot, state: State) -> Plan {
    debug_assert!(matches!(state, State::Unreadable(_) | State::BadConfig(_)));
    Plan {
        disks: Vec::new(),
        fallback: fallback(config.on_failure, &config.bind, newroot),
        exposed: exposed(&config.bind, newroot),
        fstab: fstab_notes(&config.bind, newroot),
        state,
        on_failure: config.on_failure,
        caps: Caps::ASSUMED,
        newroot: newroot.path.clone(),
        newroot_read: newroot.read,
        newroot_systemd: newroot.systemd,
        steps: Vec::new(),
    }
}

/// What holds this boot's setup back from the disks, if anything.
fn held_by(config: &Config, newroot: &NewRoot) -> Option<String> {
    if newroot.hold {
        Some(format!("{} in the real root", crate::paths::HOLD_FILE))
    } else {
        config.hold.then(|| "hold=yes (configuration or rd.ephemcrypt.hold)".to_string())
    }
}

/// The earlier volumes whose headers are on the disks, once each.
fn held_volumes(disks: &[Assessed]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in disks {
        if let crate::disk::Probe::Ours(h) = &a.disk.probe {
            let v = format!("'{}' {} of {}", Esc(&h.name), &h.volume_id_hex()[..8], crate::header::utc(h.created));
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// Why an eligible disk is not taken when no volume is made.
fn not_taken(state: &State) -> String {
    match state {
        State::Disabled => "ephemcrypt is disabled (rd.ephemcrypt=0)".into(),
        State::Live(_) => "the volume is live already".into(),
        State::Held { by, .. } => format!("held by {by}: left alone"),
        other => format!("no volume is made: {}", state_reason(other)),
    }
}

fn status_step() -> Step {
    Step::Status { path: PathBuf::from(STATUS_PATH) }
}

/// The volume's layout: sizes, stripe, crypt parameters and slices.
fn volume(config: &Config, chosen: &[&Disk], caps: Caps, newroot: &NewRoot) -> Result<Volume, PlanError> {
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
    let name = &config.name;
    let (stripe, len) = stripe(config, chosen)?;
    let crypt = Crypt {
        name: name.clone(),
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
fn stripe(config: &Config, chosen: &[&Disk]) -> Result<(Option<Stripe>, Sectors), PlanError> {
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
    Ok((Some(Stripe { name: format!("{}-stripe", config.name), chunk, per_disk, len }), len))
}

/// dm-crypt's optional arguments, in the order the kernel prints them (`dmsetup table`).
fn crypt_flags(config: &Config, caps: Caps, sector_size: u32) -> Vec<String> {
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
fn slices(config: &Config, len: Sectors) -> Result<(Option<Slice>, Option<Slice>), PlanError> {
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
    let name = &config.name;
    Ok((
        Some(Slice { name: format!("{name}-swap"), start: Sectors(0), len: swap_len }),
        Some(Slice { name: format!("{name}-data"), start: swap_len, len: room }),
    ))
}

/// The device-mapper UUID of a mapping. `CRYPT-PLAIN-` is what cryptsetup gives plain mappings:
/// lsblk shows "crypt".
fn uuid(role: &str, name: &str) -> String {
    match role {
        "CRYPT" => format!("CRYPT-PLAIN-{name}"),
        _ => format!("EPHEMCRYPT-{role}-{name}"),
    }
}

fn linear_mapping(role: &str, slice: &Slice, below: &str) -> Step {
    Step::Mapping(Mapping {
        name: slice.name.clone(),
        uuid: uuid(role, &slice.name),
        table: vec![Target {
            start: Sectors(0),
            len: slice.len,
            kind: TargetKind::Linear(Linear { dev: Dev::Mapping(below.to_string()), offset: slice.start }),
        }],
        key: None,
        kernel: Vec::new(),
        escrow: Vec::new(),
        read_only: false,
    })
}

/// The header of member `index` of the volume.
fn member_header(v: &Volume, name: &str, index: usize, identity: Option<Identity>) -> Header {
    let id = identity.unwrap_or(Identity { volume_id: [0; 16], boot_id: [0; 16], now: 0 });
    let extent = |s: &Option<Slice>| s.as_ref().map_or((Sectors(0), Sectors(0)), |s| (s.start, s.len));
    Header {
        volume_id: id.volume_id,
        boot_id: id.boot_id,
        created: id.now,
        member: index as u32,
        members: v.members.len() as u32,
        data_offset: header::RESERVED,
        chunk: v.stripe.as_ref().map_or(Sectors(0), |s| s.chunk),
        member_len: v.stripe.as_ref().map_or(v.crypt.len, |s| s.per_disk),
        volume_len: v.crypt.len,
        key_bits: v.crypt.key_bits,
        sector_size: v.crypt.sector_size,
        swap: extent(&v.swap),
        data: if v.data.is_some() { extent(&v.data) } else { (Sectors(0), v.crypt.len) },
        fs: v.fs.name().to_string(),
        cipher: v.crypt.cipher.clone(),
        name: name.to_string(),
        escrow: (0, 0),
        serials: v.members.iter().map(|m| m.serial.clone()).collect(),
    }
}

/// The steps that make the volume, in order: the headers first (so that even an interrupted setup
/// leaves the disks recognisably ours), then the mappings, swap, file system, directories, mounts
/// and binds, and the status.
fn volume_steps(v: &Volume, newroot: &NewRoot, name: &str, identity: Option<Identity>) -> Vec<Step> {
    let mut steps: Vec<Step> = v
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| Step::Header { device: m.path.clone(), header: Box::new(member_header(v, name, i, identity)) })
        .collect();
    let below = match &v.stripe {
        // A volume has at least one member (volume() refuses none); without: 0:0, refused at load.
        None => Dev::Num(v.members.first().map_or(DevNo { major: 0, minor: 0 }, |m| m.dev)),
        Some(st) => {
            steps.push(Step::Mapping(Mapping {
                name: st.name.clone(),
                uuid: uuid("STRIPE", &st.name),
                table: vec![Target {
                    start: Sectors(0),
                    len: st.len,
                    kind: TargetKind::Striped(Striped {
                        chunk: st.chunk,
                        devs: v.members.iter().map(|m| (Dev::Num(m.dev), header::RESERVED)).collect(),
                    }),
                }],
                key: None,
                kernel: Vec::new(),
                escrow: Vec::new(),
                read_only: false,
            }));
            Dev::Mapping(st.name.clone())
        }
    };
    // On one disk the crypt mapping starts after the reserved area; over a stripe at its start.
    let offset = if v.stripe.is_some() { Sectors(0) } else { header::RESERVED };
    let c = &v.crypt;
    steps.push(Step::Mapping(Mapping {
        name: c.name.clone(),
        uuid: uuid("CRYPT", &c.name),
        table: vec![Target {
            start: Sectors(0),
            len: c.len,
            kind: TargetKind::Crypt(CryptTarget {
                cipher: c.cipher.clone(),
                key: CryptKey::Placeholder { bytes: c.key_bits as usize / 8 },
                iv_offset: Sectors(0),
                dev: below,
                offset,
                options: c.flags.clone(),
            }),
        }],
        key: Some((c.key_path, c.key_bits)),
        kernel: CipherSpec::parse(&c.cipher).map(|s| s.kernel_algorithms()).unwrap_or_default(),
        escrow: v.escrow.clone(),
        read_only: false,
    }));
    if !v.escrow.is_empty() {
        steps.push(Step::Escrow {
            members: v
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.path.clone(), Box::new(member_header(v, name, i, identity))))
                .collect(),
            file: PathBuf::from(crate::paths::ESCROW_PATH),
            recipients: v.escrow.iter().map(crate::age::Recipient::describe).collect(),
        });
    }
    if let (Some(sw), Some(data)) = (&v.swap, &v.data) {
        steps.push(linear_mapping("SWAP", sw, &c.name));
        steps.push(linear_mapping("DATA", data, &c.name));
        steps.push(Step::Swap { device: sw.name.clone(), len: sw.len.bytes() });
    }
    if v.fs != Fs::None {
        let device = format!("/dev/mapper/{}", v.data_name());
        let args: &[&str] = match v.fs {
            // Lazy init: without /sys/fs/ext4/features/lazy_itable_init readable, mke2fs would write
            // every inode table (~18 GiB per TiB); the disks arrive trimmed, so no discard.
            Fs::Ext4 => &["-q", "-F", "-L", FS_LABEL, "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1"],
            Fs::Xfs => &["-q", "-f", "-K", "-L", FS_LABEL],
            Fs::None => &[], // not reached: no mkfs without a file system
        };
        // The program is the one `ephemcrypt needs` names for the image.
        let argv = v.fs.programs().iter().take(1).chain(args).map(|a| a.to_string()).chain([device]).collect();
        steps.push(Step::Mkfs { fs: v.fs, argv });
        let mount = under(&newroot.path, &v.mount);
        let dirs: Vec<PathBuf> = std::iter::once(&v.mount).chain(&v.binds).cloned().collect();
        steps.extend(mkdir_steps(newroot, &dirs));
        steps.extend(mount_steps(v.data_name(), v.fs, &mount, &v.mount, newroot, &v.binds));
    }
    if v.guard && newroot.systemd {
        steps.push(Step::Config { path: PathBuf::from(GUARD_LOGIND_DROPIN), text: guard_logind_dropin() });
        steps.push(Step::Unit { name: GUARD_UNIT.into(), text: guard_unit(), wanted_by: "multi-user.target".into() });
    }
    steps.push(status_step());
    steps
}

/// The reboot guard's unit in the real root (`guard`).
pub(crate) const GUARD_UNIT: &str = "ephemcrypt-guard.service";

/// logind's drop-in that lets the power button through the guard's lock.
pub(crate) const GUARD_LOGIND_DROPIN: &str = "/run/systemd/logind.conf.d/ephemcrypt-guard.conf";

/// logind honours a `block` lock on shutdown for the power button too (`PowerKeyIgnoreInhibited=`
/// is `no` by default, logind.conf(5)), and an API stop, terminate or spot interruption reaches a
/// cloud machine as that button: with the guard alone the stop would hang until the provider
/// forces it (an unclean root, no shutdown hooks). logind reads /run/systemd/logind.conf.d/ when it
/// starts in the real root, after switch_root, which keeps /run. Only the power key's handling
/// changes: `systemctl reboot` at a terminal still meets the lock.
fn guard_logind_dropin() -> String {
    "# Written by ephemcrypt setup in the initramfs (guard = yes): the reboot guard's lock blocks\n\
     # reboots typed at a terminal, not the power button, which is how a cloud stops the machine.\n\
     [Login]\n\
     PowerKeyIgnoreInhibited=yes\n"
        .to_string()
}

/// The guard: a systemd inhibitor lock that blocks shutdown and reboot (`systemctl reboot -i`
/// overrides it) until the hold file appears, which keeps the volume for recovery on the next boot.
/// The power button (a cloud's stop) goes through: [`guard_logind_dropin`]. Sandboxed: it only
/// asks logind for the lock over D-Bus and looks for the hold file (`systemd-analyze security
/// --offline=yes`: 0.7, 9.6 without).
fn guard_unit() -> String {
    let hold = crate::paths::HOLD_FILE;
    format!(
        "# Written by ephemcrypt setup in the initramfs (guard = yes).\n\
         [Unit]\n\
         Description=ephemcrypt: block reboots while the encrypted ephemeral volume is in use\n\
         Documentation=man:ephemcrypt(8)\n\
         ConditionPathExists=!{hold}\n\
         Wants=systemd-logind.service\n\
         After=systemd-logind.service dbus.service\n\
         [Service]\n\
         ExecStart=systemd-inhibit --what=shutdown --mode=block --who=ephemcrypt \
         \"--why=a reboot destroys the encrypted ephemeral volume and everything on it: touch {hold} to keep \
         it for recovery, or override with systemctl reboot -i\" \
         sh -c \"while [ ! -e {hold} ]; do sleep 5; done\"\n\
         # Root with CAP_SYS_BOOT alone: logind grants a blocking shutdown lock to a caller with it\n\
         # (no polkit needed); reboot(2) itself is not in @system-service. D-Bus over a local socket\n\
         # (AF_UNIX) is all it talks; it writes nothing. No PrivateUsers=: logind must see root and\n\
         # its capability; the read-only char-rtc entry comes with ProtectClock=.\n\
         CapabilityBoundingSet=CAP_SYS_BOOT\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         PrivateNetwork=yes\n\
         IPAddressDeny=any\n\
         RestrictAddressFamilies=AF_UNIX\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         ProtectProc=invisible\n\
         ProcSubset=pid\n\
         PrivateMounts=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallFilter=~@privileged @resources\n\
         SystemCallErrorNumber=EPERM\n\
         UMask=0077\n"
    )
}

/// The options of a bind onto the volume: `bind`, the volume's own restrictions (mount(8) remounts
/// a bind with exactly the flags it is given, so they are named again), and the restrictions of
/// the mount of the root's fstab the target would otherwise be on (`noexec` of a CIS /var/log,
/// `nosuid,nodev` of its /var): `by`, at the target or above it; `ro` only when `by` is the
/// target itself (a read-only /var does not make its /var/log read-only for logs).
fn bind_options(target: &Path, by: &Path, fstab: &[String]) -> Vec<String> {
    let mut options = vec!["bind".to_string()];
    let mut add = |o: &str| {
        if !options.iter().any(|x| x == o) {
            options.push(o.to_string());
        }
    };
    MOUNT_OPTIONS.iter().for_each(|o| add(o));
    let kept: &[&str] = if by == target { &["noexec", "ro"] } else { &["noexec"] };
    fstab.iter().filter(|o| kept.contains(&o.as_str())).for_each(|o| add(o));
    options
}

/// The `x-systemd.*` options of an fstab entry that a unit replacing it (or binding under it)
/// keeps, as unit lines: the ordering the operator asked for (`x-systemd.after=`, `before=`) and
/// the mounts it needs (`requires-mounts-for=`). The others concern the file system the unit
/// does not mount (`requires=` its device or unlocker, `makefs`, `growfs`, `device-timeout`) and
/// are left with it; `x-systemd.automount` stays the generator's (an automount unit of its own
/// name) and, once triggered, starts this unit.
fn unit_lines(fstab: &[String]) -> String {
    let mut lines = String::new();
    for o in fstab {
        let (key, value) = o.split_once('=').unwrap_or((o, ""));
        let line = match key {
            "x-systemd.after" => "After",
            "x-systemd.before" => "Before",
            "x-systemd.requires-mounts-for" => "RequiresMountsFor",
            _ => continue,
        };
        // Split on white space already, an fstab field cannot break a line; a value with a
        // control character is not one systemd would take either.
        if !value.is_empty() && !value.chars().any(char::is_control) {
            lines += &format!("{line}={value}\n");
        }
    }
    lines
}

/// The directory above `target` (`/` for a top-level one), whose mounts come first.
fn parent_of(target: &Path) -> &Path {
    target.parent().unwrap_or(Path::new("/"))
}

/// A bind target that a mount of the root's fstab is at or above (`by`): not bound in the
/// initramfs, where that mount would hide the bind after switch_root and systemd, finding the
/// path mounted, would take the target's mount unit for active and never mount it again. Instead,
/// its directory on the volume (made now, parents first; the volume is new), a service that copies
/// the real root's skeleton of it onto the volume once the target's parents are mounted, and a
/// mount unit named after the target that binds it there. Written to /run/systemd/system, which
/// systemd reads before /run/systemd/generator, that unit takes the place of the fstab
/// generator's unit for the same path (a separate file system configured at the target is then
/// not mounted); systemd orders it after the mounts of its parent paths (and the volume's mount,
/// named in `RequiresMountsFor=`), and every mount below it after it.
fn later_bind_steps(volume_mount: &Path, mount: &Path, target: &Path, by: &Path, fstab: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let unit = format!("{}.mount", crate::paths::systemd_escape_path(target));
    let source = under(volume_mount, target);
    let parent = parent_of(target);
    let rel = target.strip_prefix("/").unwrap_or(target);
    let mut dir = mount.to_path_buf();
    for c in rel.components() {
        dir.push(c);
        steps.push(Step::Mkdir { path: dir.clone() });
    }
    let service = format!("ephemcrypt-skeleton-{}.service", crate::paths::systemd_escape_path(target));
    let text = format!(
        "# Written by ephemcrypt setup in the initramfs: the directories of {t} as the real root has\n\
         # them once {p} is mounted, onto the encrypted volume, before {unit} binds the volume there.\n\
         [Unit]\n\
         Description=ephemcrypt: the directories of {t} onto the encrypted volume\n\
         Documentation=man:ephemcrypt(8)\n\
         DefaultDependencies=no\n\
         ConditionPathExists=!/etc/initrd-release\n\
         ConditionPathExists=/usr/sbin/ephemcrypt\n\
         RequiresMountsFor={m} {p}\n\
         Before={unit}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/usr/sbin/ephemcrypt skeleton {t} {s}\n",
        t = target.display(),
        p = parent.display(),
        m = volume_mount.display(),
        s = source.display()
    );
    steps.push(Step::Unit { name: service.clone(), text, wanted_by: unit.clone() });
    let why = if by == target {
        format!("in place of the fstab's own mount of {} (see plan)", target.display())
    } else {
        format!("after {} (a separate mount in /etc/fstab) that would hide a bind made earlier", by.display())
    };
    let text = format!(
        "# Written by ephemcrypt setup in the initramfs: {t} on the encrypted volume,\n\
         # {why}.\n\
         [Unit]\n\
         Description=ephemcrypt: {t} on the encrypted volume\n\
         Documentation=man:ephemcrypt(8)\n\
         ConditionPathExists=!/etc/initrd-release\n\
         RequiresMountsFor={m} {p}\n\
         Wants={service}\n\
         After={service}\n\
         {x}\
         \n\
         [Mount]\n\
         What={s}\n\
         Where={t}\n\
         Type=none\n\
         Options={o}\n",
        t = target.display(),
        p = parent.display(),
        m = volume_mount.display(),
        s = source.display(),
        x = unit_lines(fstab),
        o = bind_options(target, by, fstab).join(",")
    );
    steps.push(Step::Unit { name: unit, text, wanted_by: "local-fs.target".into() });
    steps
}

/// Mount the file system on the mapping `data` at `mount` (`volume_mount` in the real root), then
/// bind each target onto it: now, in the initramfs, where no mount of the root's fstab is at or
/// above the target; else by a unit after the real root's mounts ([`later_bind_steps`]; systemd
/// roots, the others cannot have it: see [`Plan::exposed`]).
fn mount_steps(
    data: &str,
    fs: Fs,
    mount: &Path,
    volume_mount: &Path,
    newroot: &NewRoot,
    binds: &[PathBuf],
) -> Vec<Step> {
    let mut steps = vec![Step::Mount {
        source: PathBuf::from("/dev/mapper").join(data),
        target: mount.to_path_buf(),
        fs,
        options: MOUNT_OPTIONS.iter().map(|o| o.to_string()).collect(),
    }];
    for b in binds.iter().filter(|b| newroot.shadowed_by(b).is_none()) {
        steps.push(Step::Bind { source: under(mount, b), target: under(&newroot.path, b) });
    }
    if newroot.systemd {
        for b in binds {
            if let Some(by) = newroot.shadowed_by(b) {
                for step in later_bind_steps(volume_mount, mount, b, by, &newroot.fstab_options(by)) {
                    // Directories shared by two targets (/var for /var/log and /var/tmp): once.
                    if !steps.contains(&step) {
                        steps.push(step);
                    }
                }
            }
        }
    }
    steps
}

/// What becomes of each mount of the root's fstab that is at, above or inside a bind target: one
/// line each, for `plan` (and its JSON).
fn fstab_notes(binds: &[PathBuf], newroot: &NewRoot) -> Vec<String> {
    let list = |v: &[&PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let mut notes = Vec::new();
    for (m, options) in &newroot.fstab {
        let under_it: Vec<&PathBuf> = binds.iter().filter(|b| b.starts_with(m) && *b != m).collect();
        let holder: Vec<&PathBuf> = binds.iter().filter(|b| m.starts_with(b) && *b != m).collect();
        let md = m.display();
        let note = if binds.contains(m) && newroot.systemd {
            let unit = format!("{}.mount", crate::paths::systemd_escape_path(m));
            format!(
                "{md}: its own file system in /etc/fstab is NOT mounted in this boot: {unit} in /run/systemd/system \
                 takes the place of the fstab's unit of that name and binds the volume's {md} there after {p}, with \
                 the options {o} (mounted, that file system would hide the volume; bound in the initramfs, the \
                 volume would be hidden by the mounts of {p}); what that file system holds stays on it, untouched",
                p = parent_of(m).display(),
                o = bind_options(m, m, options).join(",")
            )
        } else if binds.contains(m) {
            format!(
                "{md}: its own file system in /etc/fstab is mounted there after switch_root; the real root does not \
                 run systemd, so nothing binds the volume again: {md} is NOT on the volume"
            )
        } else if !under_it.is_empty() && newroot.systemd {
            format!(
                "{md}: mounted as /etc/fstab says; {t} bound onto the volume after it (units named after them), \
                 with its options ({o})",
                t = list(&under_it),
                o = options.join(",")
            )
        } else if !under_it.is_empty() {
            format!(
                "{md}: mounted as /etc/fstab says after switch_root, over {t}; the real root does not run systemd, \
                 so nothing binds them again: they are NOT on the volume",
                t = list(&under_it)
            )
        } else if !holder.is_empty() {
            format!(
                "{md}: mounted as /etc/fstab says, over the volume's {md} (inside bind target {t}): what is written \
                 there stays on that file system, unencrypted by ephemcrypt and kept across reboots (audit logs, for \
                 one); add {md} to 'bind' to have it on the volume instead, gone at every reboot",
                t = list(&holder)
            )
        } else {
            continue;
        };
        notes.push(note);
    }
    notes
}

/// Create the directories of `dirs` (inside the new root) that are missing, one step per directory,
/// parents first and each once, so that an undo removes exactly what was made. Those on a
/// read-only mount (the root as dracut and most cloud images mount it) are made in a window where
/// that mount is writable: remount read-write, mkdir, remount read-only; each its own undoable step.
fn mkdir_steps(newroot: &NewRoot, dirs: &[PathBuf]) -> Vec<Step> {
    let mut read_only: Vec<Mount> = Vec::new();
    let mut missing: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if let DirState::Missing { depth, read_only: ro } = newroot.state(d) {
            let chain = d.ancestors().take(depth).collect::<Vec<_>>();
            for dir in chain.into_iter().rev() {
                if !missing.iter().any(|m| m == dir) {
                    missing.push(dir.to_path_buf());
                }
            }
            if let Some(m) = ro.filter(|m| !read_only.iter().any(|r| r.target == m.target)) {
                read_only.push(m);
            }
        }
    }
    let remount =
        |m: &Mount, ro: bool| Step::Remount { path: m.target.clone(), read_only: ro, options: m.kept_flags() };
    let mut steps: Vec<Step> = read_only.iter().map(|m| remount(m, false)).collect();
    steps.extend(missing.iter().map(|d| Step::Mkdir { path: under(&newroot.path, d) }));
    steps.extend(read_only.iter().rev().map(|m| remount(m, true)));
    steps
}

/// The failure policy as steps, taken after everything made was undone: `tmpfs` covers every bind
/// target the new root has, so nothing meant for the volume lands unencrypted on a disk (a target
/// the root lacks holds nothing yet); then the status is written. A target that a mount of the
/// root's fstab would hide gets its tmpfs from a unit after that mount (systemd roots; others
/// cannot have it, see [`Plan::exposed`]).
fn fallback(policy: OnFailure, binds: &[PathBuf], newroot: &NewRoot) -> Vec<Step> {
    let mut steps = Vec::new();
    if policy == OnFailure::Tmpfs {
        for b in binds {
            match newroot.shadowed_by(b) {
                Some(by) if newroot.systemd => steps.push(tmpfs_unit(b, by, &newroot.fstab_options(by))),
                Some(_) => {}
                None if newroot.state(b) == DirState::Present => {
                    steps.push(Step::Tmpfs { target: under(&newroot.path, b) })
                }
                None => {}
            }
        }
    }
    steps.push(status_step());
    steps
}

/// A tmpfs over `target`, mounted by the real root's systemd after its parents (the failure
/// policy for a target that the mount `by` of the fstab is at or above; a unit of the target's
/// name takes the place of the fstab's own, as [`later_bind_steps`] says), with the restrictions
/// of `by` (`fstab`, its options). Mode 1777 for a directory named tmp, 0755 otherwise: the
/// directory itself is on a disk not mounted yet.
fn tmpfs_unit(target: &Path, by: &Path, fstab: &[String]) -> Step {
    let mode = if target.file_name().is_some_and(|n| n == "tmp") { "1777" } else { "0755" };
    let mut options: Vec<String> = bind_options(target, by, fstab).into_iter().skip(1).collect();
    options.retain(|o| o != "ro");
    let text = format!(
        "# Written by ephemcrypt setup in the initramfs, which failed: a tmpfs over {t} after {p}\n\
         # ({by} is a separate mount in /etc/fstab), so that nothing meant for the volume lands on a disk.\n\
         [Unit]\n\
         Description=ephemcrypt: tmpfs over {t} (setup failed)\n\
         Documentation=man:ephemcrypt(8)\n\
         ConditionPathExists=!/etc/initrd-release\n\
         RequiresMountsFor={p}\n\
         \n\
         [Mount]\n\
         What=tmpfs\n\
         Where={t}\n\
         Type=tmpfs\n\
         Options={o},mode={mode}\n",
        t = target.display(),
        p = parent_of(target).display(),
        by = by.display(),
        o = options.join(","),
    );
    Step::Unit {
        name: format!("{}.mount", crate::paths::systemd_escape_path(target)),
        text,
        wanted_by: "local-fs.target".into(),
    }
}

/// A short state word.
pub(crate) fn state_word(state: &State) -> &'static str {
    match state {
        State::Disabled => "disabled",
        State::Absent => "absent",
        State::TooFew { .. } => "too-few",
        State::Invalid(_) => "invalid",
        State::Unreadable(_) => "unreadable",
        State::BadConfig(_) => "bad-config",
        State::Ready(_) => "ready",
        State::Live(_) => "live",
        State::Held { .. } => "held",
    }
}

/// The reason behind a state, for people.
pub(crate) fn state_reason(state: &State) -> String {
    match state {
        State::Disabled => "rd.ephemcrypt=0 on the kernel command line".into(),
        State::Absent => "no eligible disk; nothing to do".into(),
        State::TooFew { found, expected } => format!("{found} eligible disk(s), {expected} expected"),
        State::Invalid(why) => why.to_string(),
        State::Unreadable(why) | State::BadConfig(why) => why.clone(),
        State::Ready(v) => format!("{} disk(s) to encrypt", v.members.len()),
        State::Live(live) => format!("the volume is live already ({}); not touching it", live.dev),
        State::Held { by, volumes } if volumes.is_empty() => format!("held by {by}: no disk touched"),
        State::Held { by, volumes } => {
            format!("held by {by}: no disk touched; left alone: volume {}", volumes.join(", volume "))
        }
    }
}

impl Plan {
    pub(crate) fn volume(&self) -> Option<&Volume> {
        match &self.state {
            State::Ready(v) => Some(v),
            _ => None,
        }
    }

    /// Why setup cannot make the volume, when it cannot: the failure policy follows.
    pub(crate) fn failure(&self) -> Option<String> {
        match &self.state {
            State::TooFew { .. } | State::Invalid(_) | State::Unreadable(_) | State::BadConfig(_) => {
                Some(state_reason(&self.state))
            }
            _ => None,
        }
    }

    /// Every disk with its verdict, as `plan --json` and the status file show them.
    pub(crate) fn disks_json(&self) -> Value {
        Value::Arr(
            self.disks
                .iter()
                .map(|a| {
                    Value::obj([
                        ("name", Value::from(a.disk.name.as_str())),
                        ("path", a.disk.path.display().to_string().into()),
                        ("dev", a.disk.dev.to_string().into()),
                        ("model", a.disk.model.as_str().into()),
                        ("serial", a.disk.serial.as_str().into()),
                        ("size_bytes", a.disk.size.0.into()),
                        ("use", a.verdict.is_use().into()),
                        ("reason", a.verdict.reason().into()),
                    ])
                })
                .collect(),
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        let steps = |s: &[Step]| Value::Arr(s.iter().map(Step::to_json).collect());
        Value::obj([
            ("state", Value::from(state_word(&self.state))),
            ("reason", state_reason(&self.state).into()),
            ("on_failure", self.on_failure.name().into()),
            ("kernel_features", if self.caps.crypt.is_some() { "read" } else { "assumed" }.into()),
            ("fips_mode", self.caps.fips.into()),
            ("disks", self.disks_json()),
            ("volume", self.volume().map_or(Value::Null, volume_json)),
            ("fstab", self.fstab.clone().into()),
            ("steps", steps(&self.steps)),
            ("on_failure_steps", steps(&self.fallback)),
        ])
    }
}

fn slice_json(s: &Slice) -> Value {
    Value::obj([
        ("name", Value::from(s.name.as_str())),
        ("start_sectors", s.start.0.into()),
        ("size_bytes", s.len.bytes().0.into()),
    ])
}

fn volume_json(v: &Volume) -> Value {
    Value::obj([
        ("members", Value::from(v.members.iter().map(|m| m.name.clone()).collect::<Vec<_>>())),
        (
            "stripe",
            v.stripe.as_ref().map_or(Value::Null, |s| {
                Value::obj([
                    ("name", Value::from(s.name.as_str())),
                    ("chunk_bytes", s.chunk.bytes().0.into()),
                    ("per_disk_bytes", s.per_disk.bytes().0.into()),
                    ("size_bytes", s.len.bytes().0.into()),
                ])
            }),
        ),
        (
            "crypt",
            Value::obj([
                ("name", Value::from(v.crypt.name.as_str())),
                ("cipher", v.crypt.cipher.as_str().into()),
                ("key_bits", v.crypt.key_bits.into()),
                ("sector_size", v.crypt.sector_size.into()),
                ("flags", v.crypt.flags.clone().into()),
                ("key", v.crypt.key_path.describe(v.escrow.len()).into()),
                ("size_bytes", v.crypt.len.bytes().0.into()),
            ]),
        ),
        ("swap", v.swap.as_ref().map_or(Value::Null, slice_json)),
        ("data", v.data.as_ref().map_or(Value::Null, slice_json)),
        ("fs", v.fs.name().into()),
        ("mount", v.mount.display().to_string().into()),
        ("binds", v.binds.iter().map(|b| b.display().to_string()).collect::<Vec<_>>().into()),
    ])
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "disks:")?;
        if self.disks.is_empty() {
            writeln!(f, "  (none found)")?;
        }
        for a in &self.disks {
            let d = &a.disk;
            // Model, serial and name as sysfs gave them, escaped; the reasons escape what they quote,
            // and `line` catches any control character left.
            let (model, serial) = (Esc(&d.model), Esc(&d.serial));
            let id = match (d.model.is_empty(), d.serial.is_empty()) {
                (false, false) => format!("{model}, serial {serial}"),
                (false, true) => model.to_string(),
                (true, false) => format!("serial {serial}"),
                (true, true) => "no model or serial".into(),
            };
            let verdict = if a.verdict.is_use() { "use: " } else { "skip: " }.to_string() + &line(&a.verdict.reason());
            writeln!(f, "  {:<12} {:>8}  {}  -> {}", escape(&d.name), d.size.to_string(), id, verdict)?;
        }
        writeln!(f, "result: {} ({})", state_word(&self.state), line(&state_reason(&self.state)))?;
        let list = |f: &mut fmt::Formatter<'_>, steps: &[Step]| -> fmt::Result {
            for (i, s) in steps.iter().enumerate() {
                writeln!(f, "  {:>2}. {s}", i + 1)?;
            }
            Ok(())
        };
        if !self.fstab.is_empty() {
            writeln!(f, "fstab of the real root:")?;
            for note in &self.fstab {
                writeln!(f, "  {note}")?;
            }
        }
        if !self.steps.is_empty() {
            writeln!(f, "steps:")?;
            list(f, &self.steps)?;
        }
        let live_idle = matches!(self.state, State::Live(_)) && self.steps.is_empty();
        if !matches!(self.state, State::Disabled | State::Absent) && !live_idle {
            let undo = if self.steps.is_empty() { "" } else { "undo the steps taken, in reverse order, then " };
            writeln!(f, "on failure: {undo}on-failure={}:", self.on_failure.name())?;
            list(f, &self.fallback)?;
        }
        if let Some(v) = self.volume().filter(|_| self.caps.fips) {
            writeln!(f, "FIPS mode: the kernel's approved {} encrypts the disks", v.crypt.cipher)?;
            if !v.escrow.is_empty() {
                writeln!(
                    f,
                    "FIPS mode: the escrow's X25519 and ChaCha20-Poly1305 are not FIPS-approved (escrow-fips = allow)"
                )?;
            }
        }
        if self.caps.crypt.is_none() && self.volume().is_some() {
            writeln!(f, "(kernel features assumed: setup reads them from the running kernel)")?;
        }
        if !self.newroot_read && !self.steps.is_empty() {
            writeln!(f, "(new root not read: its directories are taken to be present; see --newroot)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::disk;

    fn cfg(text: &str) -> Config {
        Config::load(Some((Path::new("t.conf"), text)), "").unwrap()
    }

    fn facts(disks: &[Disk]) -> Facts {
        Facts {
            disks: disks.to_vec(),
            caps: Caps::ASSUMED,
            newroot: NewRoot::assumed("/sysroot"),
            live: None,
            identity: None,
            taken: Vec::new(),
        }
    }

    /// FIPS mode refuses what the kernel would refuse there, and escrow unless allowed; the
    /// plan says so. Outside FIPS mode the same configurations are ready.
    #[test]
    fn fips_mode_refusals() {
        let d = [disk("nvme1n1", "A")];
        let fips = |c: &Config| plan(c, &Facts { caps: Caps { fips: true, ..Caps::ASSUMED }, ..facts(&d) });
        let p = fips(&cfg("cipher = serpent-cbc-essiv:sha256\nkey-bits = 256"));
        assert!(p.steps.is_empty());
        assert_eq!(
            state_reason(&p.state),
            "the kernel runs in FIPS mode (/proc/sys/crypto/fips_enabled is 1) and refuses cipher \
             serpent-cbc-essiv:sha256 with key-bits 256: serpent is not a FIPS-approved cipher: the kernel \
             disables it in FIPS mode (use aes-xts-plain64)"
        );
        assert!(p.disks[0].verdict.reason().contains("FIPS mode"), "{:?}", p.disks[0].verdict);
        assert!(matches!(
            plan_of(&cfg("cipher = serpent-cbc-essiv:sha256\nkey-bits = 256"), &d).state,
            State::Ready(_)
        ));
        let escrow = format!("escrow = {}", crate::age::tests::AGE_RECIPIENT);
        assert_eq!(fips(&cfg(&escrow)).state, State::Invalid(PlanError::FipsEscrow));
        let p = fips(&cfg(&format!("{escrow}\nescrow-fips = allow")));
        assert!(matches!(p.state, State::Ready(_)), "{:?}", p.state);
        let text = p.to_string();
        assert!(text.contains("FIPS mode: the kernel's approved aes-xts-plain64 encrypts the disks\n"), "{text}");
        assert!(text.contains("FIPS mode: the escrow's X25519 and ChaCha20-Poly1305 are not FIPS-approved"), "{text}");
        assert_eq!(p.to_json().get("fips_mode"), Some(&Value::Bool(true)));
        assert!(matches!(fips(&Config::default()).state, State::Ready(_)));
    }

    fn plan_of(config: &Config, disks: &[Disk]) -> Plan {
        plan(config, &facts(disks))
    }

    fn with_caps(config: &Config, disks: &[Disk], crypt: [u32; 3]) -> Plan {
        plan(config, &Facts { caps: Caps { crypt: Some(crypt), fips: false }, ..facts(disks) })
    }

    fn ready(p: &Plan) -> &Volume {
        p.volume().unwrap_or_else(|| panic!("not ready: {:?}", p.state))
    }

    fn mapping_names(p: &Plan) -> Vec<&str> {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::Mapping(m) => Some(m.name.as_str()),
                _ => None,
            })
            .collect()
    }

    fn tables(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::Mapping(m) => Some(m.table.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn order_is_by_serial_then_path_not_enumeration() {
        let disks = [disk("nvme1n1", "B"), disk("nvme3n1", "A"), disk("nvme2n1", "A")];
        let p = plan_of(&Config::default(), &disks);
        let names: Vec<&str> = ready(&p).members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["nvme2n1", "nvme3n1", "nvme1n1"]);
        // The same set in another order plans the same.
        let mut rev = disks.to_vec();
        rev.reverse();
        assert_eq!(plan_of(&Config::default(), &rev), p);
    }

    #[test]
    fn one_disk_has_no_stripe_and_rounds_to_4k() {
        let mut d = disk("nvme1n1", "A");
        // The reserved area (header) first, then an odd number of sectors past 10 GiB.
        d.size = Bytes((10 << 30) + (1 << 20) + 512 * 7);
        let p = plan_of(&Config::default(), &[d.clone()]);
        let v = ready(&p);
        assert!(v.stripe.is_none());
        assert_eq!(v.crypt.len.bytes(), Bytes(10 << 30));
        assert_eq!(mapping_names(&p), ["ephemcrypt"]);
        // The crypt table names the disk itself by number.
        assert_eq!(
            tables(&p),
            [format!(
                "0 20971520 crypt aes-xts-plain64 KEY 0 {} 2048 3 no_read_workqueue no_write_workqueue sector_size:4096",
                d.dev
            )]
        );
    }

    #[test]
    fn stripe_rounds_smallest_disk_down_to_whole_chunks() {
        let mut a = disk("nvme1n1", "A");
        let mut b = disk("nvme2n1", "B");
        a.size = Bytes((10 << 30) + (1 << 20) + (100 << 10)); // the header's MiB, 100K over: less than a chunk
        b.size = Bytes(20 << 30);
        let p = plan_of(&Config::default(), &[a.clone(), b.clone()]);
        let v = ready(&p);
        let st = v.stripe.as_ref().unwrap();
        assert_eq!(st.chunk, Sectors(512));
        assert_eq!(st.per_disk.bytes(), Bytes(10 << 30));
        assert_eq!(st.len.bytes(), Bytes(20 << 30));
        assert_eq!(v.crypt.len, st.len);
        assert_eq!(st.len.0 % (st.chunk.0 * 2), 0);
        assert_eq!(mapping_names(&p), ["ephemcrypt-stripe", "ephemcrypt"]);
        assert_eq!(
            tables(&p),
            [
                format!("0 41943040 striped 2 512 {} 2048 {} 2048", a.dev, b.dev),
                "0 41943040 crypt aes-xts-plain64 KEY 0 /dev/mapper/ephemcrypt-stripe 0 3 no_read_workqueue \
                 no_write_workqueue sector_size:4096"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn steps_of_a_two_disk_volume_with_swap_on_a_read_only_root() {
        let (mut a, mut b) = (disk("nvme1n1", "A"), disk("nvme2n1", "B"));
        (a.dev, b.dev) = (DevNo { major: 259, minor: 1 }, DevNo { major: 259, minor: 2 });
        let ro = crate::disk::parse_mountinfo("40 1 254:0 / /sysroot ro,nosuid,relatime - ext4 /dev/vda ro\n");
        let newroot = NewRoot {
            path: "/sysroot".into(),
            dirs: vec![
                ("/mnt/ephemcrypt".into(), DirState::Missing { depth: 1, read_only: Some(ro[0].clone()) }),
                ("/var/tmp".into(), DirState::Missing { depth: 1, read_only: Some(ro[0].clone()) }),
            ],
            read: true,
            ..NewRoot::assumed("/sysroot")
        };
        let p = plan(&cfg("swap = 4G"), &Facts { newroot, ..facts(&[a, b]) });
        let text: Vec<String> = p.steps.iter().map(ToString::to_string).collect();
        let want = [
            "write ephemcrypt's header (4096 bytes, no key; zeros to the end of the reserved MiB) at the start of /dev/nvme1n1: volume new 'ephemcrypt', \
             member 1 of 2, data from sector 2048",
            "write ephemcrypt's header (4096 bytes, no key; zeros to the end of the reserved MiB) at the start of /dev/nvme2n1: volume new 'ephemcrypt', \
             member 2 of 2, data from sector 2048",
            "create mapping ephemcrypt-stripe (uuid EPHEMCRYPT-STRIPE-ephemcrypt-stripe) with table:\n        \
             0 419426304 striped 2 512 259:1 2048 259:2 2048",
            "create mapping ephemcrypt (uuid CRYPT-PLAIN-ephemcrypt) with table:\n        \
             0 419426304 crypt aes-xts-plain64 KEY 0 /dev/mapper/ephemcrypt-stripe 0 3 no_read_workqueue \
             no_write_workqueue sector_size:4096\n      the kernel must offer xts(aes) (checked first)\n      \
             KEY: 512 bits from getrandom(2), in a logon key of the process keyring that is invalidated right \
             after the load; never stored",
            "create mapping ephemcrypt-swap (uuid EPHEMCRYPT-SWAP-ephemcrypt-swap) with table:\n        \
             0 8388608 linear /dev/mapper/ephemcrypt 0",
            "create mapping ephemcrypt-data (uuid EPHEMCRYPT-DATA-ephemcrypt-data) with table:\n        \
             0 411037696 linear /dev/mapper/ephemcrypt 8388608",
            "write a swap signature for 4G on /dev/mapper/ephemcrypt-swap; swapon /dev/mapper/ephemcrypt-swap",
            "mkfs.ext4 -q -F -L ephemcrypt -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/mapper/ephemcrypt-data",
            "mount -o remount,rw,nosuid,relatime /sysroot",
            "mkdir -m 0755 /sysroot/mnt/ephemcrypt (labelled as its parent)",
            "mkdir -m 0755 /sysroot/var/tmp (labelled as its parent)",
            "mount -o remount,ro,nosuid,relatime /sysroot",
            "mount -t ext4 -o nosuid,nodev /dev/mapper/ephemcrypt-data /sysroot/mnt/ephemcrypt (its root labelled as /sysroot/mnt/ephemcrypt was)",
            "copy the directories of /sysroot/var/log (owner, mode, ACLs, labels; no files) to \
             /sysroot/mnt/ephemcrypt/var/log; mount --bind /sysroot/mnt/ephemcrypt/var/log /sysroot/var/log",
            "copy the directories of /sysroot/tmp (owner, mode, ACLs, labels; no files) to \
             /sysroot/mnt/ephemcrypt/tmp; mount --bind /sysroot/mnt/ephemcrypt/tmp /sysroot/tmp",
            "copy the directories of /sysroot/var/tmp (owner, mode, ACLs, labels; no files) to \
             /sysroot/mnt/ephemcrypt/var/tmp; mount --bind /sysroot/mnt/ephemcrypt/var/tmp /sysroot/var/tmp",
            "write /run/ephemcrypt/status.json",
        ];
        assert_eq!(text, want);
        // The failure policy covers the bind targets the root has; /var/tmp is missing.
        let fallback: Vec<String> = p.fallback.iter().map(ToString::to_string).collect();
        assert_eq!(
            fallback,
            [
                "mount -t tmpfs -o nosuid,nodev,mode=M,uid=U,gid=G tmpfs /sysroot/var/log (M, U, G: the directory's own)",
                "mount -t tmpfs -o nosuid,nodev,mode=M,uid=U,gid=G tmpfs /sysroot/tmp (M, U, G: the directory's own)",
                "write /run/ephemcrypt/status.json",
            ]
        );
    }

    #[test]
    fn no_remount_when_the_directories_exist_or_the_root_is_writable() {
        let newroot = NewRoot {
            path: "/new_root".into(),
            dirs: vec![
                ("/data/ephemeral".into(), DirState::Missing { depth: 2, read_only: None }),
                ("/data/log".into(), DirState::Missing { depth: 2, read_only: None }),
            ],
            read: true,
            ..NewRoot::assumed("/new_root")
        };
        let config = cfg("mount = /data/ephemeral\nbind = /data/log");
        let p = plan(&config, &Facts { newroot, ..facts(&[disk("nvme1n1", "A")]) });
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Remount { .. })));
        // One step per directory, parents first, each once: an undo removes exactly these.
        let mkdirs: Vec<&Step> = p.steps.iter().filter(|s| matches!(s, Step::Mkdir { .. })).collect();
        assert_eq!(
            mkdirs,
            [
                &Step::Mkdir { path: "/new_root/data".into() },
                &Step::Mkdir { path: "/new_root/data/ephemeral".into() },
                &Step::Mkdir { path: "/new_root/data/log".into() }
            ]
        );
        let p = plan_of(&Config::default(), &[disk("nvme1n1", "A")]);
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Remount { .. } | Step::Mkdir { .. })));
    }

    #[test]
    fn crypt_flags_follow_config_and_kernel() {
        let d = [disk("nvme1n1", "A")];
        let v = plan_of(&cfg("discard = yes"), &d);
        assert_eq!(
            ready(&v).crypt.flags,
            ["allow_discards", "no_read_workqueue", "no_write_workqueue", "sector_size:4096"]
        );
        let v = plan_of(&cfg("workqueues = kernel\nsector-size = 512"), &d);
        assert!(ready(&v).crypt.flags.is_empty());
        let v = plan_of(&cfg("workqueues = bypass-read"), &d);
        assert_eq!(ready(&v).crypt.flags, ["no_read_workqueue", "sector_size:4096"]);
        let v = plan_of(&cfg("workqueues = bypass-write"), &d);
        assert_eq!(ready(&v).crypt.flags, ["no_write_workqueue", "sector_size:4096"]);
        let v = plan_of(&cfg("workqueues = bypass"), &d);
        assert_eq!(ready(&v).crypt.flags, ["no_read_workqueue", "no_write_workqueue", "sector_size:4096"]);
        // A 5.4 kernel (crypt 1.19): no workqueue bypass, keyring and 4K sectors fine.
        let v = with_caps(&Config::default(), &d, [1, 19, 0]);
        assert_eq!(ready(&v).crypt.flags, ["sector_size:4096"]);
        assert_eq!(ready(&v).crypt.key_path, KeyPath::Keyring);
        // A 4.9 kernel (crypt 1.14): 512-byte sectors, hex key.
        let v = with_caps(&Config::default(), &d, [1, 14, 1]);
        assert_eq!(ready(&v).crypt.sector_size, 512);
        assert_eq!(ready(&v).crypt.key_path, KeyPath::HexTable);
        let crypt = v.steps.iter().find(|s| matches!(s, Step::Mapping(m) if m.key.is_some())).unwrap();
        assert!(crypt.to_string().contains("in hex in the table"), "{crypt}");
        let v = with_caps(&cfg("sector-size = 4096"), &d, [1, 14, 1]);
        assert_eq!(v.state, State::Invalid(PlanError::SectorSizeUnsupported { sector_size: 4096 }));
        assert!(state_reason(&v.state).contains("needs dm-crypt 1.17"));
    }

    #[test]
    fn sector_size_respects_logical_blocks() {
        let mut d = disk("nvme1n1", "A");
        d.logical_block_size = 4096;
        let v = plan_of(&cfg("sector-size = 512"), &[d.clone()]);
        assert!(state_reason(&v.state).contains("/dev/nvme1n1 has 4096-byte logical blocks"), "{:?}", v.state);
        assert_eq!(ready(&plan_of(&Config::default(), &[d])).crypt.sector_size, 4096);
    }

    #[test]
    fn swap_slices() {
        let d = [disk("nvme1n1", "A")]; // 100G
        let v = plan_of(&cfg("swap = 4G"), &d);
        let v = ready(&v);
        let (sw, data) = (v.swap.as_ref().unwrap(), v.data.as_ref().unwrap());
        assert_eq!((sw.start, sw.len.bytes()), (Sectors(0), Bytes(4 << 30)));
        // 100 GiB less the reserved MiB.
        assert_eq!((data.start, data.len.bytes()), (sw.len, Bytes((96 << 30) - (1 << 20))));
        assert_eq!(v.data_name(), "ephemcrypt-data");
        let v = plan_of(&cfg("swap = 10%"), &d);
        let sw = ready(&v).swap.clone().unwrap();
        assert_eq!(sw.len.0 % 8, 0);
        assert!(sw.len.bytes().0 <= 10 << 30 && sw.len.bytes().0 > (10 << 30) - (1 << 20));
        let v = plan_of(&cfg("swap = 100G"), &d);
        assert!(state_reason(&v.state).contains("swap (100G) leaves 0B"), "{:?}", v.state);
    }

    #[test]
    fn xfs_and_no_file_system() {
        let d = [disk("nvme1n1", "A")];
        let p = plan_of(&cfg("fs = xfs"), &d);
        let mkfs = p.steps.iter().find(|s| matches!(s, Step::Mkfs { .. })).unwrap();
        assert_eq!(mkfs.to_string(), "mkfs.xfs -q -f -K -L ephemcrypt /dev/mapper/ephemcrypt");
        let p = plan_of(&cfg("fs = none\nbind ="), &d);
        let kinds: Vec<String> = p.steps.iter().map(|s| s.title()).collect();
        assert_eq!(
            kinds,
            ["header on /dev/nvme1n1 (member 1 of 1)", "crypt mapping ephemcrypt", "write /run/ephemcrypt/status.json"]
        );
    }

    /// More disks than a header lists: the first 64 by serial are taken; no size overflows.
    #[test]
    fn at_most_64_members_and_no_overflow() {
        let disks: Vec<Disk> = (0..70)
            .map(|i| {
                let mut d = disk(&format!("nvme{i}n1"), &format!("S{i:03}"));
                d.size = Sectors(1 << 47).bytes(); // the largest the host reader takes
                d
            })
            .collect();
        let p = plan_of(&cfg("swap = 50%"), &disks);
        let v = ready(&p);
        assert_eq!(v.members.len(), 64);
        assert!(p
            .disks
            .iter()
            .filter(|a| !a.verdict.is_use())
            .all(|a| a.verdict.reason().contains("at most 64 disks")));
        assert!(v.crypt.len.bytes().0 > 1 << 61);
        let _ = p.to_json().pretty();
    }

    #[test]
    fn absent_too_few_and_disabled() {
        let p = plan_of(&Config::default(), &[]);
        assert_eq!(p.state, State::Absent);
        assert_eq!(p.steps, [status_step()]);
        let p = plan_of(&cfg("expect = 2"), &[disk("nvme1n1", "A")]);
        assert_eq!(p.state, State::TooFew { found: 1, expected: 2 });
        assert!(p.steps.is_empty());
        assert_eq!(p.failure().as_deref(), Some("1 eligible disk(s), 2 expected"));
        // An eligible disk that is not taken says why.
        assert_eq!(p.disks[0].verdict.reason(), "eligible, but no volume is made: 1 eligible disk(s), 2 expected");
        let c = Config::load(None, "rd.ephemcrypt=0").unwrap();
        let p = plan_of(&c, &[disk("nvme1n1", "A")]);
        assert_eq!(p.state, State::Disabled);
        assert!(!p.disks[0].verdict.is_use());
        assert_eq!(p.disks[0].verdict.reason(), "eligible, but ephemcrypt is disabled (rd.ephemcrypt=0)");
        assert_eq!(p.steps, [status_step()]);
    }

    #[test]
    fn a_live_volume_is_mounted_where_it_is_not_and_a_foreign_one_is_refused() {
        let live = Live {
            dev: DevNo { major: 253, minor: 1 },
            targets: vec!["crypt".into()],
            data: "ephemcrypt-data".into(),
            mounted: false,
        };
        let p = plan(&Config::default(), &Facts { live: Some(live.clone()), ..facts(&[disk("nvme1n1", "A")]) });
        assert!(matches!(p.state, State::Live(_)));
        let titles: Vec<String> = p.steps.iter().map(|s| s.title()).collect();
        assert_eq!(
            titles,
            ["mount /sysroot/mnt/ephemcrypt", "bind /sysroot/var/log", "bind /sysroot/tmp", "bind /sysroot/var/tmp"]
        );
        let p = plan(&Config::default(), &Facts { live: Some(Live { mounted: true, ..live.clone() }), ..facts(&[]) });
        assert!(p.steps.is_empty());
        let foreign = Live { targets: vec!["linear".into()], ..live };
        let p = plan(&Config::default(), &Facts { live: Some(foreign), ..facts(&[]) });
        assert_eq!(
            p.failure().unwrap(),
            "/dev/mapper/ephemcrypt exists but is not a dm-crypt volume (linear); set 'name' to another prefix"
        );
    }

    #[test]
    fn a_mapping_name_taken_stops_the_plan_before_any_header() {
        let taken = vec![("ephemcrypt-stripe".to_string(), DevNo { major: 253, minor: 0 })];
        let p = plan(&Config::default(), &Facts { taken, ..facts(&[disk("nvme1n1", "A"), disk("nvme2n1", "B")]) });
        assert_eq!(
            p.failure().unwrap(),
            "a mapping named ephemcrypt-stripe (253:0) exists already, without the volume (left by an interrupted \
             setup, or another program's): remove it (dmsetup remove ephemcrypt-stripe) or set 'name' to another prefix"
        );
        assert!(p.steps.iter().all(|s| !matches!(s, Step::Header { .. } | Step::Mapping(_))));
        assert!(p.disks.iter().all(|a| !a.verdict.is_use()));
    }

    #[test]
    fn fallback_follows_the_policy() {
        let d = [disk("nvme1n1", "A")];
        let titles = |p: &Plan| p.fallback.iter().map(|s| s.title()).collect::<Vec<_>>();
        assert_eq!(
            titles(&plan_of(&Config::default(), &d)),
            [
                "tmpfs on /sysroot/var/log",
                "tmpfs on /sysroot/tmp",
                "tmpfs on /sysroot/var/tmp",
                "write /run/ephemcrypt/status.json"
            ]
        );
        for policy in ["continue", "halt"] {
            assert_eq!(
                titles(&plan_of(&cfg(&format!("on-failure = {policy}")), &d)),
                ["write /run/ephemcrypt/status.json"]
            );
        }
    }

    /// With escrow the key is stored, encrypted, on every member: plan says so, in text and
    /// JSON, where it says "never stored" without.
    #[test]
    fn escrow_says_where_the_key_is_stored() {
        use crate::age::tests::{AGE_RECIPIENT, SSH_PUBLIC};
        let want = "escrowed to 2 recipients: stored, encrypted to them, after every member's header and in \
                    /run/ephemcrypt/escrow.age";
        for (config, stored) in [
            (format!("escrow = {AGE_RECIPIENT}, {SSH_PUBLIC}"), want),
            (format!("escrow = {AGE_RECIPIENT}"), &want.replace("2 recipients", "1 recipient").replace("them", "it")),
            (String::new(), "never stored"),
        ] {
            let p = plan_of(&cfg(&config), &[disk("nvme1n1", "A"), disk("nvme2n1", "B")]);
            let text: String = p.steps.iter().map(|s| format!("{s}\n")).collect();
            assert!(text.contains(&format!("invalidated right after the load; {stored}\n")), "{config}: {text}");
            assert_eq!(text.contains("never stored"), config.is_empty(), "{config}: {text}");
            let j = crate::json::parse(&p.to_json().pretty()).unwrap();
            let key = j.get("volume").unwrap().get("crypt").unwrap().get("key").unwrap().as_str().unwrap().to_string();
            let sep = if config.is_empty() { ", " } else { "; " };
            assert_eq!(key, format!("kernel keyring (logon){sep}{stored}"), "{config}");
        }
        assert_eq!(
            KeyPath::HexTable.describe(3),
            "hex key in the dm table (kernel lacks keyring keys); escrowed to 3 recipients: stored, encrypted to \
             them, after every member's header and in /run/ephemcrypt/escrow.age"
        );
    }

    /// A systemd root with this /etc/fstab, its directories present.
    fn root_with(fstab: &str) -> NewRoot {
        NewRoot { fstab: crate::disk::parse_fstab(fstab), systemd: true, read: true, ..NewRoot::assumed("/sysroot") }
    }

    fn unit<'a>(p: &'a Plan, name: &str) -> &'a str {
        p.steps
            .iter()
            .find_map(|s| match s {
                Step::Unit { name: n, text, .. } if n == name => Some(text.as_str()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no unit {name} in {:#?}", p.steps))
    }

    fn bound_now(p: &Plan) -> Vec<PathBuf> {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::Bind { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect()
    }

    const CIS: &str = "/dev/vda / ext4 errors=remount-ro 0 1\n/dev/vdb /var ext4 nodev,nosuid 0 2\n\
                       /dev/vdc /var/log ext4 nodev,nosuid,noexec 0 2\n/dev/vdd /var/log/audit ext4 nodev,nosuid,noexec 0 2\n\
                       tmpfs /tmp tmpfs nodev,nosuid,noexec,mode=1777 0 0\n";

    /// Issue 20's layout: nothing is bound in the initramfs (a later mount of the fstab would hide
    /// it, and systemd would take the target's unit for active); each target gets a unit of its own
    /// name, with the options of the mount it replaces or lies on.
    #[test]
    fn a_cis_layout_binds_every_target_by_a_unit_with_the_fstab_options() {
        let p = plan(&Config::default(), &Facts { newroot: root_with(CIS), ..facts(&[disk("nvme1n1", "A")]) });
        assert!(bound_now(&p).is_empty(), "{:?}", bound_now(&p));
        let var_log = unit(&p, "var-log.mount");
        for line in [
            "What=/mnt/ephemcrypt/var/log",
            "Where=/var/log",
            "Options=bind,nosuid,nodev,noexec",
            "RequiresMountsFor=/mnt/ephemcrypt /var",
        ] {
            assert!(var_log.lines().any(|l| l == line), "{line} in\n{var_log}");
        }
        let tmp = unit(&p, "tmp.mount");
        assert!(
            tmp.contains("Options=bind,nosuid,nodev,noexec\n") && tmp.contains("RequiresMountsFor=/mnt/ephemcrypt /\n"),
            "{tmp}"
        );
        // /var/tmp lies on /var: /var's restrictions.
        assert!(unit(&p, "var-tmp.mount").contains("Options=bind,nosuid,nodev\n"));
        // Each target's skeleton is copied once its parents are mounted, before the bind.
        let skel = unit(&p, "ephemcrypt-skeleton-tmp.service");
        assert!(skel.contains("RequiresMountsFor=/mnt/ephemcrypt /\nBefore=tmp.mount\n"), "{skel}");
        assert!(p.steps.contains(&Step::Mkdir { path: "/sysroot/mnt/ephemcrypt/tmp".into() }));
        // No unit for /var or /var/log/audit: the fstab's own.
        assert!(!p
            .steps
            .iter()
            .any(|s| matches!(s, Step::Unit { name, .. } if name == "var.mount" || name == "var-log-audit.mount")));
        // What becomes of each fstab mount, in `plan`.
        assert_eq!(p.fstab.len(), 4, "{:#?}", p.fstab);
        assert!(p.fstab[0]
            .starts_with("/var: mounted as /etc/fstab says; /var/log, /var/tmp bound onto the volume after it"));
        assert!(p.fstab[1]
            .starts_with("/var/log: its own file system in /etc/fstab is NOT mounted in this boot: var-log.mount"));
        assert!(p.fstab[2].starts_with("/var/log/audit: mounted as /etc/fstab says, over the volume's /var/log/audit"));
        assert!(p.fstab[2].contains("kept across reboots"));
        assert!(p.fstab[3].starts_with("/tmp: its own file system in /etc/fstab is NOT mounted"));
        let text = p.to_string();
        assert!(text.contains("\nfstab of the real root:\n  /var: mounted"), "{text}");
        // The failure policy's tmpfs: units too, with the same restrictions.
        let fallback: Vec<&Step> = p.fallback.iter().filter(|s| matches!(s, Step::Unit { .. })).collect();
        assert_eq!(fallback.len(), 3);
        assert!(fallback[1].to_string().contains("Options=nosuid,nodev,noexec,mode=1777"), "{}", fallback[1]);
        assert!(fallback[0].to_string().contains("RequiresMountsFor=/var\n"), "{}", fallback[0]);
    }

    /// Every combination of separate /var, /var/log, /var/log/audit, /var/tmp, /home and /tmp: a
    /// target is bound in the initramfs exactly when no fstab mount is at or above it, else by a
    /// unit named after it (which then takes the place of the fstab's unit for that path); a unit
    /// binds only after the mounts of its parent directory.
    #[test]
    fn every_fstab_combination_leaves_no_target_to_a_bind_made_too_early() {
        let mounts = ["/var", "/var/log", "/var/log/audit", "/var/tmp", "/home", "/tmp"];
        let config = cfg("bind = /var/log,/tmp,/var/tmp,/home");
        for set in 0u32..(1 << mounts.len()) {
            let fstab: String = mounts
                .iter()
                .enumerate()
                .filter(|(i, _)| set & (1 << i) != 0)
                .map(|(i, m)| {
                    format!(
                        "/dev/vd{} {m} ext4 nodev,nosuid{} 0 2\n",
                        (b'b' + i as u8) as char,
                        if i % 2 == 0 { ",noexec" } else { "" }
                    )
                })
                .collect();
            let root = root_with(&fstab);
            let p = plan(&config, &Facts { newroot: root.clone(), ..facts(&[disk("nvme1n1", "A")]) });
            let now = bound_now(&p);
            for t in &config.bind {
                let name = format!("{}.mount", crate::paths::systemd_escape_path(t));
                let has_unit = p.steps.iter().any(|s| matches!(s, Step::Unit { name: n, .. } if *n == name));
                match root.shadowed_by(t) {
                    None => assert!(now.contains(&under(Path::new("/sysroot"), t)) && !has_unit, "{t:?} with\n{fstab}"),
                    Some(by) => {
                        assert!(!now.contains(&under(Path::new("/sysroot"), t)) && has_unit, "{t:?} with\n{fstab}");
                        let text = unit(&p, &name);
                        let parent = t.parent().unwrap().display().to_string();
                        assert!(text.contains(&format!("RequiresMountsFor=/mnt/ephemcrypt {parent}\n")), "{text}");
                        let noexec = root.fstab_options(by).iter().any(|o| o == "noexec");
                        assert_eq!(text.contains("noexec"), noexec, "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn x_systemd_options_keep_their_ordering_and_leave_the_file_system_s_own() {
        let fstab = "LABEL=logs /var/log ext4 nodev,nosuid,noexec,x-systemd.after=network-online.target,\
                     x-systemd.before=rsyslog.service,x-systemd.requires=unlock-logs.service,\
                     x-systemd.requires-mounts-for=/srv/keys,x-systemd.device-timeout=5s,x-systemd.makefs 0 2\n";
        let p = plan(&Config::default(), &Facts { newroot: root_with(fstab), ..facts(&[disk("nvme1n1", "A")]) });
        let u = unit(&p, "var-log.mount");
        for line in [
            "After=network-online.target",
            "Before=rsyslog.service",
            "RequiresMountsFor=/srv/keys",
            "Options=bind,nosuid,nodev,noexec",
        ] {
            assert!(u.lines().any(|l| l == line), "{line} in\n{u}");
        }
        assert!(!u.contains("unlock-logs") && !u.contains("timeout") && !u.contains("makefs"), "{u}");
        // Without x-systemd options: none of those lines.
        let p = plan(
            &Config::default(),
            &Facts { newroot: root_with("LABEL=logs /var/log ext4 noexec 0 2\n"), ..facts(&[disk("nvme1n1", "A")]) },
        );
        let u = unit(&p, "var-log.mount");
        assert!(!u.contains("\nBefore=") && u.contains("\nAfter=ephemcrypt-skeleton-var-log.service\n\n"), "{u}");
        // A root that does not run systemd: the fstab's mounts are said to leave the targets bare.
        let root = NewRoot { systemd: false, ..root_with(CIS) };
        let p = plan(&Config::default(), &Facts { newroot: root, ..facts(&[disk("nvme1n1", "A")]) });
        assert!(p.fstab[1].contains("/var/log is NOT on the volume"), "{:?}", p.fstab);
        assert_eq!(p.exposed.len(), 3);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut refused = disk("nvme0n1", "vol");
        refused.model = "Amazon Elastic Block Store".into();
        let p = plan_of(&Config::default(), &[refused, disk("nvme1n1", "A")]);
        let j = crate::json::parse(&p.to_json().pretty()).unwrap();
        let disks = j.get("disks").unwrap().as_array();
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].get("name").unwrap().as_str(), Some("nvme1n1"));
        assert_eq!(disks[0].get("use"), Some(&Value::Bool(true)));
        assert_eq!(disks[0].get("reason").unwrap().as_str(), Some("blank (every probed region reads as zeros)"));
        assert_eq!(disks[0].get("size_bytes"), Some(&Value::Num(100u64 << 30)));
        assert_eq!(disks[1].get("use"), Some(&Value::Bool(false)));
        assert!(disks[1].get("reason").unwrap().as_str().unwrap().contains("EBS"));
        for k in ["path", "model", "serial"] {
            assert!(disks[0].get(k).is_some(), "{k}");
        }
        assert_eq!(j.get("state").unwrap().as_str(), Some("ready"));
        assert!(j.get("volume").unwrap().get("crypt").is_some());
        let steps = j.get("steps").unwrap().as_array();
        assert_eq!(steps[0].get("kind").unwrap().as_str(), Some("header"));
        assert_eq!(steps[0].get("volume_id").unwrap().as_str(), Some("new"));
        assert_eq!(steps[1].get("kind").unwrap().as_str(), Some("mapping"));
        assert_eq!(steps[1].get("uuid").unwrap().as_str(), Some("CRYPT-PLAIN-ephemcrypt"));
        assert_eq!(steps[1].get("kernel").unwrap().as_array(), [Value::from("xts(aes)")]);
        let table = steps[1].get("table").unwrap().as_array();
        assert!(table[0].as_str().unwrap().contains(" crypt aes-xts-plain64 KEY 0 259:"), "{table:?}");
        let mkfs = steps.iter().find(|s| s.get("kind").unwrap().as_str() == Some("mkfs")).unwrap();
        assert_eq!(mkfs.get("argv").unwrap().as_array()[0].as_str(), Some("mkfs.ext4"));
    }
}
