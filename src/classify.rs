//! PURE: one disk + the configuration → use it, or refuse it with reasons a person can act on.
//!
//! Identity first (a `devices` selector must pick the disk, and a known persistent cloud disk is
//! never taken), then the exclusions, then the content last: a disk is taken only when it is
//! positively free (blank, or ephemcrypt's own volume from an earlier boot, or `force=yes`). A
//! missing signature alone never makes a disk free: ciphertext and raw application data carry
//! none.

use std::fmt;

use crate::config::{glob_match, Cloud, Config, Selector};
use crate::disk::{Disk, Probe};
use crate::header::Header;
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
    /// Neither blank nor an ephemcrypt volume, and no signature we know: data all the same.
    Data,
    Unreadable(String),
    /// Its sysfs entry could not be read or makes no sense.
    BadSysfs(String),
    /// `exclude` names /dev/disk links that match no disk: until they can be checked (udev has
    /// not made them yet, or they come from rules that are not in the initramfs), no disk is
    /// taken.
    ExcludeUnchecked(Vec<Selector>),
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
            Refusal::Data => {
                f.write_str("holds data that is neither blank nor an ephemcrypt volume (set force=yes to overwrite it)")
            }
            Refusal::Unreadable(e) => write!(f, "could not be probed for signatures: {e}"),
            Refusal::BadSysfs(e) => write!(f, "its sysfs entry cannot be read: {e}"),
            Refusal::ExcludeUnchecked(sels) => {
                let list: Vec<String> = sels.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "'exclude' names links that match no disk ({}): no disk is taken until they can be checked",
                    list.join(", ")
                )
            }
            Refusal::NotTaken(why) => write!(f, "eligible, but {why}"),
        }
    }
}

/// The root file system's mount point, before (dracut, mkinitcpio) and after switch_root.
fn is_root(mount_point: &str) -> bool {
    ["/", "/sysroot", "/new_root"].contains(&mount_point)
}

/// Why a disk is taken: it is positively free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Every probed region reads as zeros.
    Blank,
    /// ephemcrypt's own volume from an earlier boot.
    Ours(Box<Header>),
    /// `force=yes`, over what it held.
    Forced(String),
}

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Taken::Blank => f.write_str("blank (every probed region reads as zeros)"),
            Taken::Ours(h) => h.fmt(f),
            Taken::Forced(what) => write!(f, "forced (force=yes) over {what}"),
        }
    }
}

/// The verdict on one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Use(Taken),
    Refuse(Vec<Refusal>),
}

impl Verdict {
    pub(crate) fn is_use(&self) -> bool {
        matches!(self, Verdict::Use(_))
    }
    /// Why it is taken, or the reasons it is refused, joined.
    pub(crate) fn reason(&self) -> String {
        match self {
            Verdict::Use(t) => t.to_string(),
            Verdict::Refuse(r) => r.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        }
    }
}

/// Does a selector pick this disk? `path:` globs match `/dev/<name>`, every /dev/disk link that
/// exists, and the by-id names udev would give the disk (so they work before udev has run).
pub(crate) fn selects(sel: &Selector, disk: &Disk) -> bool {
    match sel {
        Selector::Preset(c) => preset_matches(*c, &disk.model),
        Selector::Model(g) => glob_match(g, &disk.model),
        Selector::Serial(g) => !disk.serial.is_empty() && glob_match(g, &disk.serial),
        Selector::Path(g) => std::iter::once(&disk.path)
            .chain(&disk.links)
            .chain(&disk.udev_ids())
            .any(|p| glob_match(g, &p.to_string_lossy())),
    }
}

/// The `exclude` selectors that name /dev/disk links matching none of `disks`: they cannot be
/// checked, so while there are any, no disk is taken (an exclusion is never silently ignored).
pub(crate) fn unchecked_excludes(config: &Config, disks: &[Disk]) -> Vec<Selector> {
    config
        .exclude
        .iter()
        .filter(|s| matches!(s, Selector::Path(g) if g.starts_with("/dev/disk/")))
        .filter(|s| !disks.iter().any(|d| selects(s, d)))
        .cloned()
        .collect()
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
    if let Some(e) = &disk.broken {
        return Verdict::Refuse(vec![Refusal::BadSysfs(e.clone())]);
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
    // The content last: taken only when positively free.
    let taken = match &disk.probe {
        Probe::Blank => Some(Taken::Blank),
        Probe::Ours(h) => Some(Taken::Ours(h.clone())),
        Probe::Found(sig) if config.force => Some(Taken::Forced(format!("a {}", sig.name()))),
        Probe::Data if config.force => Some(Taken::Forced("unrecognised data".into())),
        Probe::Found(sig) => {
            why.push(Refusal::Signature(*sig));
            None
        }
        Probe::Data => {
            why.push(Refusal::Data);
            None
        }
        // Not being able to read a disk is never overridden by force.
        Probe::Failed(e) => {
            why.push(Refusal::Unreadable(e.clone()));
            None
        }
        // A candidate always is probed (setup::discover); refuse rather than trust a missing probe.
        Probe::NotProbed => {
            why.push(Refusal::Unreadable("it was not probed".into()));
            None
        }
    };
    match taken {
        Some(t) if why.is_empty() => Verdict::Use(t),
        _ => Verdict::Refuse(why),
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
            Verdict::Use(_) => vec![],
            Verdict::Refuse(r) => r,
        }
    }

    #[test]
    fn blank_instance_store_is_used() {
        let v = classify(&disk("nvme1n1", "S1"), &Config::default());
        assert_eq!(v, Verdict::Use(Taken::Blank));
        assert_eq!(v.reason(), "blank (every probed region reads as zeros)");
    }

    /// Positively free: blank, ours, or forced. Data with no signature we know is not free.
    #[test]
    fn only_positively_free_disks_are_taken() {
        let mut d = disk("nvme1n1", "S");
        d.probe = Probe::Data;
        let r = refusals(&d, &Config::default());
        assert_eq!(r, vec![Refusal::Data]);
        assert_eq!(
            r[0].to_string(),
            "holds data that is neither blank nor an ephemcrypt volume (set force=yes to overwrite it)"
        );
        assert_eq!(classify(&d, &cfg("force = yes")), Verdict::Use(Taken::Forced("unrecognised data".into())));
        let h = crate::header::tests::sample();
        d.probe = Probe::Ours(Box::new(h.clone()));
        let v = classify(&d, &Config::default());
        assert_eq!(v, Verdict::Use(Taken::Ours(Box::new(h))));
        assert!(
            v.reason().starts_with("previous ephemcrypt volume 'ephemcrypt' 5e5e5e5e, created 2026-"),
            "{}",
            v.reason()
        );
        // Ours, but mounted: the other rules still refuse it.
        d.mounts = vec!["/data".into()];
        assert_eq!(refusals(&d, &cfg("force = yes")), vec![Refusal::Mounted(vec!["/data".into()])]);
        d.mounts.clear();
        d.probe = Probe::Found(Signature::DamagedEphemcrypt);
        assert!(refusals(&d, &Config::default())[0].to_string().contains("damaged ephemcrypt header"));
    }

    #[test]
    fn a_broken_sysfs_entry_refuses_that_disk_only() {
        let mut d = disk("nvme1n1", "S");
        d.broken = Some("/sys/block/nvme1n1/dev: expected major:minor, found ''".into());
        assert_eq!(refusals(&d, &Config::default()), vec![Refusal::BadSysfs(d.broken.clone().unwrap())]);
        assert!(classify(&disk("nvme2n1", "T"), &Config::default()).is_use());
    }

    /// An exclude naming a link that matches no disk (udev has not made it yet, or it comes from
    /// rules missing in the initramfs) is never ignored; udev's own by-id names match before udev
    /// has run.
    #[test]
    fn excludes_fail_closed_and_by_id_names_work_without_udev() {
        let mut a = disk("nvme1n1", "AWS1");
        let b = disk("nvme2n1", "AWS2");
        a.links.clear();
        let c = cfg("exclude = path:/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS1");
        // No link exists, but udev would name nvme1n1 so: it is excluded, nvme2n1 is taken.
        assert!(unchecked_excludes(&c, &[a.clone(), b.clone()]).is_empty());
        assert_eq!(refusals(&a, &c).len(), 1);
        assert!(matches!(refusals(&a, &c)[0], Refusal::Excluded(_)));
        assert!(classify(&b, &c).is_use());
        // A link nobody can derive (a label, a cloud's own rules): no disk matches it, so it
        // cannot be checked.
        let c = cfg("exclude = path:/dev/disk/by-label/scratch");
        let unchecked = unchecked_excludes(&c, &[a.clone(), b.clone()]);
        assert_eq!(unchecked, vec![Selector::Path("/dev/disk/by-label/scratch".into())]);
        let text = Refusal::ExcludeUnchecked(unchecked).to_string();
        assert!(text.contains("path:/dev/disk/by-label/scratch") && text.contains("no disk is taken"), "{text}");
        // Once the link exists, it is checked.
        a.links = vec!["/dev/disk/by-label/scratch".into()];
        assert!(unchecked_excludes(&c, &[a, b]).is_empty());
        // Other excludes are not links: nothing to check.
        assert!(unchecked_excludes(&cfg("exclude = serial:NOPE, path:/dev/sdz"), &[disk("nvme1n1", "A")]).is_empty());
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
        let v = classify(&d, &cfg("force = yes"));
        assert_eq!(v.reason(), "forced (force=yes) over a ext2/3/4 file system");
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
