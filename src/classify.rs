//! PURE: one disk + the configuration → use it, or refuse it with reasons a person can act on.
//!
//! Identity first (a `devices` selector must pick the disk, and a known persistent cloud disk is
//! never taken), then the exclusions, and a missing signature alone never makes a disk free:
//! ciphertext looks blank.

use std::fmt;

use crate::config::{glob_match, Cloud, Config, Selector};
use crate::disk::{Disk, Probe};
use crate::signature::Signature;
use crate::units::Bytes;

/// Models of persistent cloud disks, as sysfs shows them: never used, whatever the configuration.
pub(crate) const PERSISTENT_MODELS: &[(&str, &str)] = &[
    ("Amazon Elastic Block Store", "an AWS EBS volume"),
    ("nvme_card-pd", "a GCP persistent disk"),
    ("MSFT NVMe Accelerator v1.0", "an Azure remote disk"),
];

/// Why a disk is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotSelected,
    Excluded(Selector),
    Persistent {
        model: String,
        what: &'static str,
    },
    Mounted(Vec<String>),
    Partitioned(Vec<String>),
    Holders(Vec<String>),
    Swap(Vec<String>),
    ReadOnly,
    Removable,
    TooSmall {
        size: Bytes,
        min: Bytes,
    },
    Signature(Signature),
    Unreadable(String),
    /// Eligible, but setup makes no volume (disabled, too few disks, a layout that does not fit).
    NotTaken(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotSelected => f.write_str("not selected by 'devices'"),
            Refusal::Excluded(s) => write!(f, "excluded by 'exclude' ({s})"),
            Refusal::Persistent { model, what } => {
                write!(f, "{what} (model '{model}'): persistent disks are never used")
            }
            Refusal::Mounted(m) if m.iter().any(|m| is_root(m)) => {
                write!(f, "holds the root file system (mounted at {})", m.join(", "))
            }
            Refusal::Mounted(m) => write!(f, "mounted at {}", m.join(", ")),
            Refusal::Partitioned(p) => write!(f, "has partitions ({})", p.join(", ")),
            Refusal::Holders(h) => write!(f, "in use by {} (holders)", h.join(", ")),
            Refusal::Swap(s) => write!(f, "active swap ({})", s.join(", ")),
            Refusal::ReadOnly => f.write_str("read-only"),
            Refusal::Removable => f.write_str("removable"),
            Refusal::TooSmall { size, min } => write!(f, "too small ({size} < min-size {min})"),
            Refusal::Signature(s) => {
                write!(f, "carries a signature: {} (set force=yes to overwrite it)", s.name())
            }
            Refusal::Unreadable(e) => write!(f, "could not be probed for signatures: {e}"),
            Refusal::NotTaken(why) => write!(f, "eligible, but {why}"),
        }
    }
}

/// The root file system's mount point, before (dracut, mkinitcpio) and after switch_root.
fn is_root(mount_point: &str) -> bool {
    ["/", "/sysroot", "/new_root"].contains(&mount_point)
}

/// The verdict on one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Use,
    Refuse(Vec<Refusal>),
}

impl Verdict {
    pub(crate) fn is_use(&self) -> bool {
        matches!(self, Verdict::Use)
    }
    /// The reasons, joined; empty for a used disk.
    pub(crate) fn reason(&self) -> String {
        match self {
            Verdict::Use => String::new(),
            Verdict::Refuse(r) => r.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        }
    }
}

/// Does a selector pick this disk? `path:` globs match `/dev/<name>` and every /dev/disk link.
pub(crate) fn selects(sel: &Selector, disk: &Disk) -> bool {
    match sel {
        Selector::Preset(c) => preset_matches(*c, &disk.model),
        Selector::Model(g) => glob_match(g, &disk.model),
        Selector::Serial(g) => !disk.serial.is_empty() && glob_match(g, &disk.serial),
        Selector::Path(g) => {
            std::iter::once(&disk.path).chain(&disk.links).any(|p| glob_match(g, &p.to_string_lossy()))
        }
    }
}

fn preset_matches(cloud: Cloud, model: &str) -> bool {
    cloud.models().contains(&model)
}

/// Identity alone: a persistent cloud disk, one no `devices` selector picks, or an excluded one.
/// `None` means the disk is a candidate and the other rules decide.
pub(crate) fn identity(disk: &Disk, config: &Config) -> Option<Refusal> {
    if let Some((model, what)) = PERSISTENT_MODELS.iter().find(|(m, _)| *m == disk.model) {
        return Some(Refusal::Persistent { model: model.to_string(), what });
    }
    if !config.devices.iter().any(|s| selects(s, disk)) {
        return Some(Refusal::NotSelected);
    }
    config.exclude.iter().find(|s| selects(s, disk)).map(|s| Refusal::Excluded(s.clone()))
}

/// Classify one disk. Every refusal that applies is listed, the most telling first.
pub(crate) fn classify(disk: &Disk, config: &Config) -> Verdict {
    if let Some(r) = identity(disk, config) {
        return Verdict::Refuse(vec![r]);
    }
    let mut why = Vec::new();
    if !disk.mounts.is_empty() {
        why.push(Refusal::Mounted(disk.mounts.clone()));
    }
    if !disk.partitions.is_empty() {
        why.push(Refusal::Partitioned(disk.partitions.clone()));
    }
    if !disk.holders.is_empty() {
        why.push(Refusal::Holders(disk.holders.clone()));
    }
    if !disk.swaps.is_empty() {
        why.push(Refusal::Swap(disk.swaps.clone()));
    }
    if disk.read_only {
        why.push(Refusal::ReadOnly);
    }
    if disk.removable {
        why.push(Refusal::Removable);
    }
    if disk.size < config.min_size {
        why.push(Refusal::TooSmall { size: disk.size, min: config.min_size });
    }
    match &disk.probe {
        Probe::Clean => {}
        Probe::Found(sig) if !config.force => why.push(Refusal::Signature(*sig)),
        Probe::Found(_) => {}
        // Not being able to read a disk is never overridden by force.
        Probe::Failed(e) => why.push(Refusal::Unreadable(e.clone())),
        // A candidate always is probed (Host::disks); refuse rather than trust a missing probe.
        Probe::NotProbed => why.push(Refusal::Unreadable("it was not probed".into())),
    }
    if why.is_empty() {
        Verdict::Use
    } else {
        Verdict::Refuse(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::testutil::disk;
    use crate::units::Bytes;

    fn cfg(text: &str) -> Config {
        Config::load(Some((std::path::Path::new("t.conf"), text)), "").unwrap()
    }

    fn refusals(d: &Disk, c: &Config) -> Vec<Refusal> {
        match classify(d, c) {
            Verdict::Use => vec![],
            Verdict::Refuse(r) => r,
        }
    }

    #[test]
    fn clean_instance_store_is_used() {
        assert_eq!(classify(&disk("nvme1n1", "S1"), &Config::default()), Verdict::Use);
    }

    #[test]
    fn presets_match_exact_models_only() {
        let c = Config::default();
        for (model, used) in [
            ("Amazon EC2 NVMe Instance Storage", true),
            ("nvme_card", true),
            ("Microsoft NVMe Direct Disk", true),
            ("Microsoft NVMe Direct Disk v2", true),
            ("nvme_card2", false),
            ("Amazon EC2 NVMe Instance Storage v2", false),
            ("QEMU NVMe Ctrl", false),
        ] {
            let mut d = disk("nvme1n1", "S");
            d.model = model.into();
            assert_eq!(classify(&d, &c).is_use(), used, "{model}");
        }
        let mut d = disk("nvme1n1", "S");
        d.model = "nvme_card".into();
        assert!(!classify(&d, &cfg("devices = aws")).is_use());
    }

    #[test]
    fn persistent_cloud_disks_are_never_used_even_when_selected() {
        let c = cfg("devices = model:*, serial:*, path:/dev/*\nforce = yes");
        for (model, what) in PERSISTENT_MODELS {
            let mut d = disk("nvme0n1", "vol1");
            d.model = model.to_string();
            assert_eq!(refusals(&d, &c), vec![Refusal::Persistent { model: model.to_string(), what }]);
        }
    }

    #[test]
    fn selectors() {
        let mut d = disk("nvme3n1", "SER-42");
        d.model = "QEMU NVMe Ctrl".into();
        d.links = vec!["/dev/disk/by-id/nvme-QEMU_SER-42".into()];
        assert_eq!(refusals(&d, &Config::default()), vec![Refusal::NotSelected]);
        assert!(classify(&d, &cfg("devices = serial:SER-*")).is_use());
        assert!(classify(&d, &cfg("devices = model:QEMU*")).is_use());
        assert!(classify(&d, &cfg("devices = path:/dev/nvme3n1")).is_use());
        assert!(classify(&d, &cfg("devices = path:/dev/disk/by-id/nvme-QEMU_*")).is_use());
        assert!(!classify(&d, &cfg("devices = path:/dev/nvme1n1")).is_use());
        // A disk without a serial never matches a serial glob, not even '*'.
        d.serial.clear();
        assert!(!classify(&d, &cfg("devices = serial:*")).is_use());
    }

    #[test]
    fn exclude_wins_over_devices() {
        let d = disk("nvme1n1", "BAD1");
        let c = cfg("exclude = serial:BAD*");
        assert_eq!(refusals(&d, &c), vec![Refusal::Excluded(Selector::Serial("BAD*".into()))]);
    }

    #[test]
    fn root_and_mounted_disks() {
        let mut d = disk("nvme1n1", "S");
        d.mounts = vec!["/sysroot".into()];
        let r = refusals(&d, &Config::default());
        assert_eq!(r, vec![Refusal::Mounted(vec!["/sysroot".into()])]);
        assert_eq!(r[0].to_string(), "holds the root file system (mounted at /sysroot)");
        d.mounts = vec!["/data".into()];
        assert_eq!(refusals(&d, &Config::default())[0].to_string(), "mounted at /data");
    }

    #[test]
    fn one_rule_each() {
        let c = cfg("force = yes"); // force never overrides these
        type Case = (fn(&mut Disk), Refusal, &'static str);
        let cases: Vec<Case> = vec![
            (
                |d| d.partitions = vec!["nvme1n1p1".into()],
                Refusal::Partitioned(vec!["nvme1n1p1".into()]),
                "has partitions (nvme1n1p1)",
            ),
            (|d| d.holders = vec!["dm-0".into()], Refusal::Holders(vec!["dm-0".into()]), "in use by dm-0 (holders)"),
            (|d| d.swaps = vec!["nvme1n1".into()], Refusal::Swap(vec!["nvme1n1".into()]), "active swap (nvme1n1)"),
            (|d| d.read_only = true, Refusal::ReadOnly, "read-only"),
            (|d| d.removable = true, Refusal::Removable, "removable"),
            (
                |d| d.size = Bytes(512 << 20),
                Refusal::TooSmall { size: Bytes(512 << 20), min: Bytes(1 << 30) },
                "too small (512M < min-size 1G)",
            ),
            (
                |d| d.probe = Probe::Failed("open /dev/x: EIO".into()),
                Refusal::Unreadable("open /dev/x: EIO".into()),
                "could not be probed for signatures: open /dev/x: EIO",
            ),
        ];
        for (change, want, text) in cases {
            let mut d = disk("nvme1n1", "S");
            change(&mut d);
            assert_eq!(refusals(&d, &c), vec![want.clone()]);
            assert_eq!(want.to_string(), text);
        }
    }

    #[test]
    fn signatures_refuse_unless_forced() {
        let mut d = disk("nvme1n1", "S");
        d.probe = Probe::Found(Signature::Ext);
        let r = refusals(&d, &Config::default());
        assert_eq!(r, vec![Refusal::Signature(Signature::Ext)]);
        assert!(r[0].to_string().contains("set force=yes"), "{}", r[0]);
        assert!(classify(&d, &cfg("force = yes")).is_use());
    }

    #[test]
    fn all_reasons_are_listed() {
        let mut d = disk("nvme1n1", "S");
        d.read_only = true;
        d.partitions = vec!["nvme1n1p1".into()];
        d.mounts = vec!["/boot".into()];
        let v = classify(&d, &Config::default());
        assert_eq!(v.reason(), "mounted at /boot; has partitions (nvme1n1p1); read-only");
    }
}
