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
use std::path::PathBuf;

use crate::classify::{classify, unchecked_excludes, Refusal, Verdict};
use crate::config::{Config, Fs, Measure, OnFailure};
use crate::disk::{Disk, NewRoot};
use crate::escape::{Esc, EscPath};
use crate::header::{self, Identity};
use crate::paths::{under, STATUS_PATH};
use crate::step::Step;
use crate::tpm::event::{Event, VolumeFacts};
use crate::units::{Bytes, DevNo};

mod layout;
mod render;
mod steps;
mod systemd;
#[cfg(test)]
mod tests;

use self::layout::volume;
pub(crate) use self::layout::{Slice, Volume};
pub(crate) use self::render::state_reason;
use self::steps::{fallback, fstab_notes, mkdir_steps, mount_steps, volume_steps};
pub(crate) use self::systemd::GUARD_UNIT;

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
    /// Bind targets that neither the volume nor the failure policy's tmpfs can cover, with why: a
    /// mount of the real root's fstab would hide them after switch_root and nothing can bind
    /// again (the root does not run systemd), or the unit setup would write for them is
    /// outranked by the root's own in /etc/systemd/system. The result says so.
    pub(crate) exposed: Vec<(PathBuf, String)>,
    /// What becomes of each mount of the root's fstab at, above or inside a bind target: a line
    /// each (see [`fstab_notes`]).
    pub(crate) fstab: Vec<String>,
}

/// See [`Plan::exposed`].
fn exposed(binds: &[PathBuf], newroot: &NewRoot) -> Vec<(PathBuf, String)> {
    let mut exposed = Vec::new();
    for b in binds {
        let Some(by) = newroot.shadowed_by(b) else { continue };
        let unit = format!("{}.mount", crate::paths::systemd_escape_path(b));
        let why = if !newroot.systemd {
            format!(
                "{} would be hidden by {} from /etc/fstab, and the real root does not run systemd: nothing \
                 covers it after switch_root",
                b.display(),
                by.display()
            )
        } else if newroot.units.contains(&unit) {
            // /etc/systemd/system comes before /run/systemd/system in systemd's unit path: the
            // root's own unit (or its mask) is loaded, not setup's.
            format!(
                "/etc/systemd/system/{unit} in the real root outranks the unit setup writes for {}: remove it \
                 or take {} out of 'bind'",
                b.display(),
                b.display()
            )
        } else {
            continue;
        };
        exposed.push((b.clone(), why));
    }
    exposed
}

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
    let mut disks = assessed(config, facts);
    let chosen: Vec<&Disk> = disks.iter().filter(|a| a.verdict.is_use()).map(|a| &a.disk).collect();
    let state = early_state(config, facts, &disks).unwrap_or_else(|| {
        match volume(config, &chosen, facts.caps, &facts.newroot) {
            Err(e) => State::Invalid(e),
            // A name the volume's mappings take is held by another mapping: a leftover of an
            // interrupted setup, or another program's. Nothing is written.
            Ok(v) => match facts.taken.iter().find(|(name, _)| v.mapping_names().contains(&name.as_str())) {
                Some((name, dev)) => State::Invalid(PlanError::NameTaken { name: name.clone(), dev: *dev }),
                None => State::Ready(Box::new(v)),
            },
        }
    });
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
    let volume = match &state {
        State::Ready(v) => Some(v.as_ref()),
        _ => None,
    };
    let steps = measured(config, volume, None, steps);
    let fallback =
        measured(config, volume, Some(config.on_failure), fallback(config.on_failure, &config.bind, newroot));
    Plan {
        disks,
        fallback,
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

/// Each disk's verdict; a header lists at most 64 members: the rest (last in serial order) wait
/// for another machine.
fn assessed(config: &Config, facts: &Facts) -> Vec<Assessed> {
    let mut disks = assess(config, &facts.disks);
    for a in disks.iter_mut().filter(|a| a.verdict.is_use()).skip(header::MAX_MEMBERS) {
        a.verdict =
            Verdict::Refuse(vec![Refusal::NotTaken(format!("a volume has at most {} disks", header::MAX_MEMBERS))]);
    }
    disks
}

/// The state when it is decided before the kernel is asked anything (in this order: disabled,
/// a live volume, held, an exclusion not checkable yet, too few disks, none); `None` when a
/// volume is wanted and the kernel's facts ([`KERNEL_PHASE`]) decide the rest.
fn early_state(config: &Config, facts: &Facts, disks: &[Assessed]) -> Option<State> {
    let chosen = disks.iter().filter(|a| a.verdict.is_use()).count();
    Some(if !config.enabled {
        State::Disabled
    } else if let Some(live) = &facts.live {
        if live.targets == ["crypt"] {
            State::Live(Box::new(live.clone()))
        } else {
            State::Invalid(PlanError::ForeignMapping { name: config.name.clone(), targets: live.targets.clone() })
        }
    } else if let Some(by) = held_by(config, &facts.newroot) {
        State::Held { by, volumes: held_volumes(disks) }
    } else if let Some(excludes) = unchecked(disks) {
        State::Invalid(PlanError::ExcludeUnchecked { excludes })
    } else if chosen < config.expect as usize {
        State::TooFew { found: chosen, expected: config.expect }
    } else if chosen == 0 {
        State::Absent
    } else {
        return None;
    })
}

/// What setup asks the kernel, in one phase between reading the disks and planning, when a volume
/// is wanted ([`wants_volume`]); `plan` names it and the status times it.
pub(crate) const KERNEL_PHASE: &str =
    "load dm_mod, dm_crypt and the cipher's modules (while the disks are probed), read \
     the crypt target's version, draw the volume id, check the mapping names are free";

/// The modules the kernel phase loads: device-mapper and its crypt target, whose version decides
/// the table's flags.
pub(crate) const DM_MODULES: [&str; 2] = ["dm_mod", "dm_crypt"];

/// A volume is wanted: nothing decided before the kernel phase stops it.
pub(crate) fn wants_volume(config: &Config, facts: &Facts) -> bool {
    early_state(config, facts, &assessed(config, facts)).is_none()
}

/// A volume may be wanted: were every disk not probed yet blank, nothing decided before the kernel
/// phase would stop it, or only too few disks yet (setup may still wait for more). Setup loads the
/// kernel phase's modules on this while the candidates are probed.
pub(crate) fn may_want_volume(config: &Config, facts: &Facts) -> bool {
    let blank = |d: &Disk| match d.probe {
        crate::disk::Probe::NotProbed => Disk { probe: crate::disk::Probe::Blank, ..d.clone() },
        _ => d.clone(),
    };
    let hoped = Facts { disks: facts.disks.iter().map(blank).collect(), ..facts.clone() };
    matches!(early_state(config, &hoped, &assessed(config, &hoped)), None | Some(State::TooFew { .. }))
}

/// Setup waits for more disks: too few yet, or an exclusion whose link udev has not made yet.
pub(crate) fn waits_for_disks(config: &Config, facts: &Facts) -> bool {
    matches!(
        early_state(config, facts, &assessed(config, facts)),
        Some(State::TooFew { .. } | State::Invalid(PlanError::ExcludeUnchecked { .. }))
    )
}

/// The names the volume's mappings take: `<name>-stripe` over several disks, `<name>` the crypt
/// mapping, `<name>-swap` and `<name>-data` its slices when there is swap.
pub(crate) struct MappingNames {
    pub(crate) stripe: String,
    pub(crate) crypt: String,
    pub(crate) swap: String,
    pub(crate) data: String,
}

impl MappingNames {
    pub(crate) fn of(config: &Config) -> MappingNames {
        let n = &config.name;
        MappingNames {
            stripe: format!("{n}-stripe"),
            crypt: n.clone(),
            swap: format!("{n}-swap"),
            data: format!("{n}-data"),
        }
    }

    /// All of them (the kernel phase asks which are taken).
    pub(crate) fn all(self) -> [String; 4] {
        [self.stripe, self.crypt, self.swap, self.data]
    }
}

/// The plan when setup could not get as far as planning: the configuration or the host could not
/// be read. Only the failure policy is left (for a bad configuration, the defaults').
pub(crate) fn failed(config: &Config, newroot: &NewRoot, state: State) -> Plan {
    debug_assert!(matches!(state, State::Unreadable(_) | State::BadConfig(_)));
    Plan {
        disks: Vec::new(),
        fallback: measured(config, None, Some(config.on_failure), fallback(config.on_failure, &config.bind, newroot)),
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

/// With `measure` on, the outcome is measured right before each status write: the status says
/// what was measured. `policy`: the failure policy, for its steps.
fn measured(config: &Config, volume: Option<&Volume>, policy: Option<OnFailure>, steps: Vec<Step>) -> Vec<Step> {
    if config.measure == Measure::No {
        return steps;
    }
    let volume = volume.map(|v| {
        let mut serials: Vec<String> = v.members.iter().map(|m| m.serial.clone()).collect();
        serials.sort();
        VolumeFacts {
            cipher: v.crypt.cipher.clone(),
            key_bits: v.crypt.key_bits,
            sector_size: v.crypt.sector_size,
            fs: v.fs.name().to_string(),
            serials,
        }
    });
    let event = Event {
        pcr: config.measure_pcr,
        required: config.measure == Measure::Required,
        policy: policy.map(OnFailure::name),
        died: false,
        volume,
    };
    let mut out = Vec::with_capacity(steps.len() + 1);
    for s in steps {
        if matches!(s, Step::Status { .. }) {
            out.push(Step::Measure(event.clone()));
        }
        out.push(s);
    }
    out
}

fn status_step() -> Step {
    Step::Status { path: PathBuf::from(STATUS_PATH) }
}
