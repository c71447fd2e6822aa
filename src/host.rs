//! READ-ONLY: what the host is. Every path hangs off one root (`--host DIR`, default `/`) so that
//! a directory of plain files can stand in for a whole machine in tests.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::signature::{self, Signature};
use crate::units::{Bytes, DevNo, Sectors};

/// One whole block device as sysfs and /proc show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name, e.g. `nvme1n1`.
    pub name: String,
    /// `/dev/<name>` (a path on the host, not under `--host`).
    pub path: PathBuf,
    pub dev: DevNo,
    pub size: Bytes,
    pub model: String,
    pub serial: String,
    pub vendor: String,
    pub logical_block_size: u32,
    pub read_only: bool,
    pub removable: bool,
    /// Devices stacked on this disk (`holders/`), e.g. `dm-0`, `md127`.
    pub holders: Vec<String>,
    /// Partition names, e.g. `nvme0n1p1`.
    pub partitions: Vec<String>,
    /// Mount points of this disk or its partitions.
    pub mounts: Vec<String>,
    /// Active swap on this disk or its partitions (the /proc/swaps names).
    pub swaps: Vec<String>,
    /// Links under /dev/disk that resolve to this disk, e.g. `/dev/disk/by-id/nvme-…`.
    pub links: Vec<PathBuf>,
    pub probe: Probe,
}

impl Disk {
    /// A clean, unmounted, unpartitioned disk with no identity yet; the reader and tests fill in
    /// the rest.
    pub fn new(name: &str, dev: DevNo, size: Bytes) -> Disk {
        Disk {
            name: name.to_string(),
            path: PathBuf::from("/dev").join(name),
            dev,
            size,
            model: String::new(),
            serial: String::new(),
            vendor: String::new(),
            logical_block_size: 512,
            read_only: false,
            removable: false,
            holders: Vec::new(),
            partitions: Vec::new(),
            mounts: Vec::new(),
            swaps: Vec::new(),
            links: Vec::new(),
            probe: Probe::NotProbed,
        }
    }
}

/// What the signature probe of a disk's first and last bytes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Not read: a disk that no selector picks (or a persistent cloud disk) is never probed.
    NotProbed,
    Clean,
    Found(Signature),
    /// The disk could not be read; the text names the path and the errno.
    Failed(String),
}

/// A mounted file system: the source device (resolved, when it is a /dev node) and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device number, from /proc/self/mountinfo (catches `/dev/root`).
    pub dev: Option<DevNo>,
    pub source: String,
    pub target: String,
    pub fstype: String,
}

/// Kernel names that are never physical disks.
const VIRTUAL_PREFIXES: &[&str] = &["dm-", "md", "ram", "zram", "loop", "nbd", "sr", "fd", "zd"];

/// The host, seen through a root directory.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    /// A host path (`/proc/mounts`) under the root.
    pub fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = p.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    fn read(&self, p: impl AsRef<Path>) -> Result<String> {
        let full = self.path(p);
        fs::read_to_string(&full).map_err(|e| Error::os("read", full.display(), e))
    }

    /// Read a file that may be missing (sysfs attributes differ between drivers).
    fn read_opt(&self, p: impl AsRef<Path>) -> Result<Option<String>> {
        let full = self.path(p);
        match fs::read_to_string(&full) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::os("read", full.display(), e)),
        }
    }

    /// The configuration: the file (`file`, a path on this machine, or else the root's
    /// /etc/ephemcrypt.conf when it exists) overridden by the kernel command line. As dracut's
    /// `getarg` does, arguments baked into the image (/etc/cmdline.d/*.conf, from dracut's
    /// `kernel_cmdline=`) come first, so the boot loader's /proc/cmdline wins.
    pub fn config(&self, file: Option<&Path>) -> Result<Config> {
        let mut cmdline = String::new();
        for name in self.list("/etc/cmdline.d").iter().filter(|n| n.ends_with(".conf")) {
            cmdline += &self.read(Path::new("/etc/cmdline.d").join(name))?;
            cmdline.push(' ');
        }
        cmdline += &self.read("/proc/cmdline")?;
        let file = match file {
            Some(p) => {
                let text = fs::read_to_string(p).map_err(|e| Error::os("read configuration", p.display(), e))?;
                Some((p.to_path_buf(), text))
            }
            None => self.read_opt("/etc/ephemcrypt.conf")?.map(|t| (PathBuf::from("/etc/ephemcrypt.conf"), t)),
        };
        Ok(Config::load(file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())), cmdline.trim())?)
    }

    /// All whole disks, sorted by name, with mounts, swaps and links. Only the disks that
    /// `config` picks by identity get the signature probe: reading the root disk or an unselected
    /// one at boot would be wasted I/O, and their verdict never depends on it.
    pub fn disks(&self, config: &Config) -> Result<Vec<Disk>> {
        let mounts = self.mounts()?;
        let swaps = self.swaps()?;
        let links = self.dev_links();
        let block = self.path("/sys/block");
        let entries = fs::read_dir(&block).map_err(|e| Error::os("list", block.display(), e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !VIRTUAL_PREFIXES.iter().any(|p| n.starts_with(p)))
            .collect();
        names.sort();
        let mut disks = Vec::with_capacity(names.len());
        for name in names {
            let mut disk = self.disk(&name)?;
            if disk.size.0 == 0 {
                continue; // an empty slot: a card reader without a card, say
            }
            let own = |dev: &str| dev == disk.name || disk.partitions.iter().any(|p| p == dev);
            let devs = self.dev_numbers(&disk);
            disk.mounts = mounts
                .iter()
                .filter(|m| own(&m.source) || m.dev.is_some_and(|d| devs.contains(&d)))
                .map(|m| m.target.clone())
                .collect();
            disk.mounts.sort();
            disk.mounts.dedup();
            disk.swaps = swaps.iter().filter(|s| own(s)).cloned().collect();
            disk.links = links.iter().filter(|(_, n)| *n == disk.name).map(|(l, _)| l.clone()).collect();
            if crate::classify::identity(&disk, config).is_none() {
                disk.probe = self.probe(&disk.name);
            }
            disks.push(disk);
        }
        Ok(disks)
    }

    fn disk(&self, name: &str) -> Result<Disk> {
        let sys = PathBuf::from("/sys/block").join(name);
        let attr =
            |a: &str| -> Result<String> { Ok(self.read_opt(sys.join(a))?.unwrap_or_default().trim().to_string()) };
        let number = |a: &str| -> Result<u64> {
            let v = attr(a)?;
            v.parse().map_err(|_| {
                Error::msg(format!("read {}: expected a number, found '{v}'", self.path(sys.join(a)).display()))
            })
        };
        let dev_text = attr("dev")?;
        let dev = DevNo::parse(&dev_text).ok_or_else(|| {
            Error::msg(format!(
                "read {}: expected major:minor, found '{dev_text}'",
                self.path(sys.join("dev")).display()
            ))
        })?;
        let serial = match self.read_opt(sys.join("device/serial"))? {
            Some(s) => s,
            None => self.read_opt(sys.join("serial"))?.unwrap_or_default(),
        };
        let lbs = attr("queue/logical_block_size")?;
        Ok(Disk {
            model: attr("device/model")?,
            serial: serial.trim().to_string(),
            vendor: attr("device/vendor")?,
            logical_block_size: if lbs.is_empty() { 512 } else { number("queue/logical_block_size")? as u32 },
            read_only: attr("ro")? == "1",
            removable: attr("removable")? == "1",
            holders: self.list(sys.join("holders")),
            partitions: self
                .list(&sys)
                .into_iter()
                .filter(|p| self.path(sys.join(p).join("partition")).exists())
                .collect(),
            ..Disk::new(name, dev, Sectors(number("size")?).bytes())
        })
    }

    /// Sorted entry names of a directory; empty when it is missing.
    fn list(&self, dir: impl AsRef<Path>) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.path(dir))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Mounted file systems, sources resolved to kernel names where they are /dev nodes. Both
    /// /proc/mounts (by name) and, where present, /proc/self/mountinfo (by device number) count.
    pub fn mounts(&self) -> Result<Vec<Mount>> {
        let source = |s: &str| self.kernel_name(&unescape(s)).unwrap_or_else(|| unescape(s));
        let mut out: Vec<Mount> = self
            .read("/proc/mounts")?
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (src, target, fstype) = (f.next()?, f.next()?, f.next()?);
                Some(Mount { dev: None, source: source(src), target: unescape(target), fstype: fstype.to_string() })
            })
            .collect();
        // mountinfo: id parent major:minor root mountpoint options... - fstype source superoptions
        for l in self.read_opt("/proc/self/mountinfo")?.unwrap_or_default().lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else { continue };
            let (Some(dev), Some(target), Some(fstype), Some(src)) =
                (f.get(2).and_then(|d| DevNo::parse(d)), f.get(4), f.get(sep + 1), f.get(sep + 2))
            else {
                continue;
            };
            out.push(Mount {
                dev: Some(dev),
                source: source(src),
                target: unescape(target),
                fstype: fstype.to_string(),
            });
        }
        Ok(out)
    }

    /// The device numbers of a disk and its partitions.
    fn dev_numbers(&self, disk: &Disk) -> Vec<DevNo> {
        let mut v = vec![disk.dev];
        for p in &disk.partitions {
            let f = PathBuf::from("/sys/block").join(&disk.name).join(p).join("dev");
            if let Some(d) = self.read_opt(f).ok().flatten().and_then(|t| DevNo::parse(&t)) {
                v.push(d);
            }
        }
        v
    }

    /// Active swap devices from /proc/swaps, as kernel names where they are /dev nodes.
    pub fn swaps(&self) -> Result<Vec<String>> {
        let text = self.read_opt("/proc/swaps")?.unwrap_or_default();
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|s| self.kernel_name(&unescape(s)).unwrap_or_else(|| unescape(s)))
            .collect())
    }

    /// Every link under /dev/disk/*/ with the kernel name it resolves to.
    fn dev_links(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        for kind in self.list("/dev/disk") {
            let dir = PathBuf::from("/dev/disk").join(kind);
            for link in self.list(&dir) {
                let p = dir.join(link);
                if let Some(n) = self.kernel_name(&p.to_string_lossy()) {
                    out.push((p, n));
                }
            }
        }
        out
    }

    /// The kernel name a /dev path stands for, following symlinks inside the root
    /// (`/dev/disk/by-id/x` → `../../nvme1n1` → `nvme1n1`). `/dev/root` is left as is.
    pub fn kernel_name(&self, dev_path: &str) -> Option<String> {
        let resolved = self.resolve(Path::new(dev_path))?;
        let rest = resolved.strip_prefix("/dev").ok()?;
        let rest = rest.to_string_lossy();
        match rest.strip_prefix("mapper/") {
            Some(_) => Some(rest.into_owned()),
            None if !rest.is_empty() && !rest.contains('/') => Some(rest.into_owned()),
            None => None,
        }
    }

    /// Follow symlinks of a host path inside the root, returning the host path (without root).
    /// Absolute link targets are taken inside the root. Gives up after 40 links.
    pub fn resolve(&self, p: &Path) -> Option<PathBuf> {
        let mut path = normalize(p)?;
        for _ in 0..40 {
            let mut done = PathBuf::from("/");
            let mut changed = false;
            let parts: Vec<_> = path.components().skip(1).collect();
            for (i, c) in parts.iter().enumerate() {
                let candidate = done.join(c);
                match fs::read_link(self.path(&candidate)) {
                    Ok(target) => {
                        let base = if target.is_absolute() { target } else { done.join(target) };
                        let mut next = base;
                        for rest in &parts[i + 1..] {
                            next.push(rest);
                        }
                        path = normalize(&next)?;
                        changed = true;
                        break;
                    }
                    Err(_) => done = candidate,
                }
            }
            if !changed {
                return Some(path);
            }
        }
        None
    }

    /// Probe a disk's first and last bytes for a known signature.
    pub fn probe(&self, name: &str) -> Probe {
        match signature::probe_device(&self.path(Path::new("/dev").join(name))) {
            Ok(None) => Probe::Clean,
            Ok(Some(sig)) => Probe::Found(sig),
            Err(e) => Probe::Failed(e.to_string()),
        }
    }
}

/// Lexically normalize an absolute path (`.`/`..` folded); `None` for relative paths.
fn normalize(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Some(out)
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
