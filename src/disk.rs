//! PURE data: what reading the host yields and what the classifier and the planner read. The host
//! reader (`host.rs`) fills these in and decides nothing; `classify.rs` and `plan.rs` decide.

use std::path::PathBuf;

use crate::header::{Header, HeaderError};
use crate::paths::unescape_octal;
use crate::signature::{Content, Signature};
use crate::units::{Bytes, DevNo};

/// One whole block device as sysfs and /proc show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disk {
    /// Kernel name, e.g. `nvme1n1`.
    pub(crate) name: String,
    /// `/dev/<name>` (a path on the host, not under `--host`).
    pub(crate) path: PathBuf,
    pub(crate) dev: DevNo,
    pub(crate) size: Bytes,
    pub(crate) model: String,
    pub(crate) serial: String,
    pub(crate) vendor: String,
    /// The namespace's world-wide id (sysfs `wwid`, e.g. `eui.0025388b91c1a0f2`), NVMe only.
    pub(crate) wwid: String,
    /// The NVMe namespace id (sysfs `nsid`).
    pub(crate) nsid: Option<u32>,
    pub(crate) logical_block_size: u32,
    pub(crate) read_only: bool,
    pub(crate) removable: bool,
    /// Devices stacked on this disk (`holders/`), e.g. `dm-0`, `md127`.
    pub(crate) holders: Vec<String>,
    /// Partition names, e.g. `nvme0n1p1`.
    pub(crate) partitions: Vec<String>,
    /// Mount points of this disk or its partitions.
    pub(crate) mounts: Vec<String>,
    /// Active swap on this disk or its partitions (the /proc/swaps names).
    pub(crate) swaps: Vec<String>,
    /// Links under /dev/disk that resolve to this disk, e.g. `/dev/disk/by-id/nvme-…`.
    pub(crate) links: Vec<PathBuf>,
    pub(crate) probe: Probe,
    /// Its sysfs entry could not be read or made no sense (a missing `dev`, a size that is no
    /// size): the disk is refused, and only it.
    pub(crate) broken: Option<String>,
}

impl Disk {
    /// A clean, unmounted, unpartitioned disk with no identity yet; the reader and tests fill in
    /// the rest.
    pub(crate) fn new(name: &str, dev: DevNo, size: Bytes) -> Disk {
        Disk {
            name: name.to_string(),
            path: PathBuf::from("/dev").join(name),
            dev,
            size,
            model: String::new(),
            serial: String::new(),
            vendor: String::new(),
            wwid: String::new(),
            nsid: None,
            logical_block_size: 512,
            read_only: false,
            removable: false,
            holders: Vec::new(),
            partitions: Vec::new(),
            mounts: Vec::new(),
            swaps: Vec::new(),
            links: Vec::new(),
            probe: Probe::NotProbed,
            broken: None,
        }
    }

    /// The /dev/disk/by-id links udev's persistent-storage rules give this disk, derived from its
    /// model, serial and wwid as those rules do, so that a `path:` selector names the disk before
    /// udev has run (or where the rules are not in the initramfs). NVMe only: `nvme-<model>_<serial>`,
    /// the same with `_<nsid>` (systemd 254 and later), and `nvme-<wwid>`.
    pub(crate) fn udev_ids(&self) -> Vec<PathBuf> {
        let mut ids = Vec::new();
        if !self.name.starts_with("nvme") {
            return ids;
        }
        // The namespace id from sysfs, else from the name (nvme0n1 → 1).
        let from_name = self.name.rsplit_once('n').and_then(|(_, n)| n.parse::<u32>().ok());
        let nsid = self.nsid.or(from_name);
        let by_id = |s: &str| PathBuf::from(format!("/dev/disk/by-id/nvme-{}", udev_escape(s)));
        if !self.model.is_empty() && !self.serial.is_empty() {
            let serial = format!("{}_{}", self.model, self.serial);
            // Every namespace of a controller claims the bare name; udev points it at one of them.
            // Only the first namespace is taken to have it.
            if nsid == Some(1) {
                ids.push(by_id(&serial));
            }
            if let Some(n) = nsid {
                ids.push(by_id(&format!("{serial}_{n}")));
            }
        }
        if !self.wwid.is_empty() {
            ids.push(by_id(&self.wwid));
        }
        ids
    }
}

/// A string as udev puts it into a link name: leading and trailing white space dropped, each run
/// of inner white space one `_`, and every character but `0-9A-Za-z#+-.:=@_` and valid non-ASCII
/// UTF-8 an `_` (udev's string_escape=replace).
pub(crate) fn udev_escape(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let joined = words.join("_");
    let keep = |c: char| c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) || (!c.is_ascii() && c != '\u{FFFD}');
    joined.chars().map(|c| if keep(c) { c } else { '_' }).collect()
}

/// What the probe of a disk's regions found (`signature.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Not read: a disk that no selector picks (or a persistent cloud disk) is never probed.
    NotProbed,
    /// Every probed region reads as zeros.
    Blank,
    /// ephemcrypt's own header, from an earlier boot.
    Ours(Box<Header>),
    /// A known signature.
    Found(Signature),
    /// Something that starts like an ephemcrypt header but is not one ephemcrypt could have
    /// written there: foreign data, named.
    Damaged(HeaderError),
    /// Data that is neither blank nor ours, with no signature we know.
    Data,
    /// The disk could not be read; the text names the path and the errno.
    Failed(String),
}

impl Probe {
    /// A few words for the log: what the probe found.
    pub(crate) fn describe(&self) -> String {
        match self {
            Probe::NotProbed => "not probed".into(),
            Probe::Blank => "blank".into(),
            Probe::Ours(h) => format!("ephemcrypt volume {}", h.volume_id_hex()),
            Probe::Found(sig) => sig.name().into(),
            Probe::Damaged(e) => e.to_string(),
            Probe::Data => "data".into(),
            Probe::Failed(e) => e.clone(),
        }
    }
}

impl From<Content> for Probe {
    fn from(c: Content) -> Probe {
        match c {
            Content::Blank => Probe::Blank,
            Content::Ours(h) => Probe::Ours(h),
            Content::Known(sig) => Probe::Found(sig),
            Content::Damaged(e) => Probe::Damaged(e),
            Content::Data => Probe::Data,
        }
    }
}

/// One mounted file system, from /proc/self/mountinfo (or /proc/mounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The mount's id and its parent's (mountinfo only; 0 otherwise): what the kernel's path walk
    /// follows, see visible.rs.
    pub(crate) id: u64,
    pub(crate) parent: u64,
    /// The device number (mountinfo only; it catches `/dev/root`).
    pub(crate) dev: Option<DevNo>,
    /// The directory of the file system that is mounted (`/var/log` for a bind of it; mountinfo
    /// only, `/` otherwise).
    pub(crate) root: PathBuf,
    /// The source as the kernel shows it, e.g. `/dev/nvme0n1p1`, `tmpfs`.
    pub(crate) source: String,
    pub(crate) target: PathBuf,
    pub(crate) fstype: String,
    /// The per-mount options, e.g. `ro,nosuid,relatime`.
    pub(crate) options: String,
    /// The file system's own options (mountinfo only), e.g. `rw,lazytime,errors=remount-ro`.
    pub(crate) super_options: String,
}

impl Mount {
    pub(crate) fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }

    /// The flags a remount must keep, without `ro`/`rw`: the per-mount ones (`nosuid`, `nodev`,
    /// `noexec`, `noatime`, `nodiratime`, `relatime`, `nosymfollow`) and the file system's
    /// (`lazytime`, `sync`, `dirsync`), which a plain remount would otherwise clear.
    pub(crate) fn kept_flags(&self) -> Vec<String> {
        const MOUNT: [&str; 7] = ["nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime", "nosymfollow"];
        const SUPER: [&str; 3] = ["lazytime", "sync", "dirsync"];
        let mount = self.options.split(',').filter(|o| MOUNT.contains(o));
        let fs = self.super_options.split(',').filter(|o| SUPER.contains(o));
        mount.chain(fs).map(str::to_string).collect()
    }
}

/// Parse /proc/self/mountinfo: `id parent major:minor root mount-point options [optional...] -
/// fstype source super-options`. Malformed lines are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').filter(|w| !w.is_empty()).collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let [id, parent, dev, root, target, options, ..] = f.as_slice() else { return None };
            if sep < 6 {
                return None;
            }
            Some(Mount {
                id: id.parse().ok()?,
                parent: parent.parse().ok()?,
                dev: DevNo::parse(dev),
                root: PathBuf::from(unescape_octal(root)),
                target: PathBuf::from(unescape_octal(target)),
                options: options.to_string(),
                fstype: f.get(sep + 1)?.to_string(),
                source: unescape_octal(f.get(sep + 2)?),
                super_options: f.get(sep + 3).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Parse /proc/mounts: `source mount-point fstype options dump pass`.
pub(crate) fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (source, target, fstype, options) = (f.next()?, f.next()?, f.next()?, f.next().unwrap_or(""));
            Some(Mount {
                id: 0,
                parent: 0,
                dev: None,
                root: PathBuf::from("/"),
                source: unescape_octal(source),
                target: PathBuf::from(unescape_octal(target)),
                fstype: fstype.to_string(),
                options: options.to_string(),
                super_options: String::new(),
            })
        })
        .collect()
}

/// The mount points an /etc/fstab mounts at boot, with their options: not swap, not `noauto`,
/// not `/`.
pub(crate) fn parse_fstab(text: &str) -> Vec<(PathBuf, Vec<String>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (target, fstype, options) = (f.get(1)?, f.get(2)?, f.get(3).copied().unwrap_or("defaults"));
            let skip = *fstype == "swap"
                || !target.starts_with('/')
                || *target == "/"
                || options.split(',').any(|o| o == "noauto");
            let options = options.split(',').map(str::to_string).collect();
            (!skip).then(|| (PathBuf::from(unescape_octal(target)), options))
        })
        .collect()
}

/// The mount that holds `path`: the longest mount point that is a prefix of it. The last of
/// equal mount points wins (it is mounted on top).
pub(crate) fn mount_holding<'a>(mounts: &'a [Mount], path: &std::path::Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts.iter().filter(|m| path.starts_with(&m.target)) {
        if best.is_none_or(|b| m.target.as_os_str().len() >= b.target.as_os_str().len()) {
            best = Some(m);
        }
    }
    best
}

/// What the planner needs to know about one directory of the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirState {
    /// It is there (or could not be looked at: the step that needs it reports that).
    Present,
    /// It is missing, and so are the `depth - 1` directories above it (`depth` ≥ 1: the parent
    /// exists when it is 1); `read_only` is the read-only mount that would hold it, which must be
    /// made writable for a moment to create it.
    Missing { depth: usize, read_only: Option<Mount> },
}

/// The new root as setup finds it: where it is mounted and the state of each directory setup
/// needs (the mount point and the bind targets, as absolute paths inside the new root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewRoot {
    pub(crate) path: PathBuf,
    pub(crate) dirs: Vec<(PathBuf, DirState)>,
    /// False when the new root was not looked at (`plan` without `--newroot`): every directory
    /// is taken to be present.
    pub(crate) read: bool,
    /// The mount points its /etc/fstab mounts at boot (after switch_root), `/` and swap aside,
    /// with their options.
    pub(crate) fstab: Vec<(PathBuf, Vec<String>)>,
    /// Its init is systemd: units written to /run/systemd/system are loaded after switch_root.
    pub(crate) systemd: bool,
    /// It has /etc/ephemcrypt.hold: leave the disks of earlier volumes alone.
    pub(crate) hold: bool,
    /// The mount units of bind targets that its /etc/systemd/system holds (a unit file, an alias
    /// or a mask): they outrank the units setup writes to /run/systemd/system.
    pub(crate) units: Vec<String>,
}

impl NewRoot {
    /// A new root that was not looked at.
    pub(crate) fn assumed(path: impl Into<PathBuf>) -> NewRoot {
        NewRoot {
            path: path.into(),
            dirs: Vec::new(),
            read: false,
            fstab: Vec::new(),
            systemd: false,
            hold: false,
            units: Vec::new(),
        }
    }

    /// The mount of the root's fstab that would hide `dir` after switch_root: one at `dir` itself
    /// or at a directory above it (the deepest such).
    pub(crate) fn shadowed_by(&self, dir: &std::path::Path) -> Option<&PathBuf> {
        self.fstab
            .iter()
            .map(|(m, _)| m)
            .filter(|m| dir.starts_with(m) && m.as_os_str() != "/")
            .max_by_key(|m| m.as_os_str().len())
    }

    /// The options the fstab gives the mount at `target`.
    pub(crate) fn fstab_options(&self, target: &std::path::Path) -> Vec<String> {
        self.fstab.iter().find(|(m, _)| m == target).map(|(_, o)| o.clone()).unwrap_or_default()
    }

    pub(crate) fn state(&self, dir: &std::path::Path) -> DirState {
        self.dirs.iter().find(|(d, _)| d == dir).map_or(DirState::Present, |(_, s)| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MOUNTINFO: &str = "\
22 1 259:1 / / rw,relatime shared:1 - xfs /dev/root rw
23 22 0:5 / /dev rw,nosuid master:2 - devtmpfs devtmpfs rw,size=4k
40 22 259:2 / /sysroot ro,nosuid,nodev,relatime - ext4 /dev/vda rw,lazytime
41 40 0:40 / /sysroot/data\\040disk rw,noatime shared:7 master:8 - tmpfs none rw
bad line
";

    #[test]
    fn mountinfo_fields() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].dev, Some(DevNo { major: 259, minor: 1 }));
        assert_eq!((m[0].source.as_str(), m[0].target.as_path()), ("/dev/root", Path::new("/")));
        assert_eq!(m[3].target, Path::new("/sysroot/data disk"));
        assert_eq!((m[3].fstype.as_str(), m[3].source.as_str()), ("tmpfs", "none"));
        assert!(m[2].read_only() && !m[0].read_only());
        assert_eq!(m[2].kept_flags(), ["nosuid", "nodev", "relatime", "lazytime"]);
    }

    #[test]
    fn holding_mount_is_the_longest_prefix() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(mount_holding(&m, Path::new("/sysroot/mnt/x")).unwrap().target, Path::new("/sysroot"));
        assert_eq!(mount_holding(&m, Path::new("/sysrootx")).unwrap().target, Path::new("/"));
        assert_eq!(mount_holding(&m, Path::new("/sysroot")).unwrap().target, Path::new("/sysroot"));
    }

    #[test]
    fn fstab_mounts_and_what_they_hide() {
        let fstab = "# a CIS image\nUUID=1 / ext4 defaults 0 1\nUUID=2 /var ext4 nodev 0 2\nUUID=3 /var/log/audit xfs defaults 0 2\n\
                     tmpfs /tmp tmpfs nosuid,nodev 0 0\nUUID=4 none swap sw 0 0\n/dev/sdz /data ext4 noauto 0 0\nbad\n";
        let m = parse_fstab(fstab);
        let targets: Vec<&PathBuf> = m.iter().map(|(t, _)| t).collect();
        assert_eq!(targets, ["/var", "/var/log/audit", "/tmp"].map(PathBuf::from).iter().collect::<Vec<_>>());
        let root = NewRoot { fstab: m, ..NewRoot::assumed("/sysroot") };
        assert_eq!(root.shadowed_by(Path::new("/var/log")), Some(&PathBuf::from("/var")));
        assert_eq!(root.shadowed_by(Path::new("/tmp")), Some(&PathBuf::from("/tmp")));
        assert_eq!(root.shadowed_by(Path::new("/var/log/audit/x")), Some(&PathBuf::from("/var/log/audit")));
        assert_eq!(root.shadowed_by(Path::new("/srv")), None);
        assert_eq!(root.shadowed_by(Path::new("/variable")), None);
        assert_eq!(root.fstab_options(Path::new("/tmp")), ["nosuid", "nodev"]);
    }

    #[test]
    fn udev_by_id_names() {
        let mut d = Disk::new("nvme1n1", DevNo { major: 259, minor: 1 }, crate::units::Bytes(1 << 30));
        d.model = "Amazon EC2 NVMe Instance Storage".into();
        d.serial = "AWS22B2C5F8A1D0E0001".into();
        d.wwid = "nvme.1d0f-4157-53".into();
        let ids: Vec<String> = d.udev_ids().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            ids,
            [
                "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS22B2C5F8A1D0E0001",
                "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS22B2C5F8A1D0E0001_1",
                "/dev/disk/by-id/nvme-nvme.1d0f-4157-53",
            ]
        );
        assert_eq!(udev_escape("  QEMU   NVMe Ctrl / x*y "), "QEMU_NVMe_Ctrl___x_y");
        // A second namespace has only the name with its nsid (from sysfs when there).
        let mut ns2 = Disk { name: "nvme1n2".into(), wwid: String::new(), ..d.clone() };
        let names = |d: &Disk| d.udev_ids().iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&ns2), ["/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS22B2C5F8A1D0E0001_2"]);
        ns2.nsid = Some(7);
        assert!(names(&ns2)[0].ends_with("_7"));
        assert_eq!(udev_escape("Ünïcode Disk"), "Ünïcode_Disk");
        // Not NVMe: no names derived.
        assert!(Disk { model: "m".into(), serial: "s".into(), ..Disk::new("sda", d.dev, d.size) }
            .udev_ids()
            .is_empty());
    }

    #[test]
    fn proc_mounts_fields() {
        let m = parse_mounts("/dev/sdb /data\\040disk ext4 rw,relatime 0 0\nshort\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].target, Path::new("/data disk"));
        assert_eq!(m[0].options, "rw,relatime");
    }
}
