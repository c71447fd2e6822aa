//! READ-ONLY: what the host is. Every path hangs off one root (`--host DIR`, default `/`) so that
//! a directory of plain files can stand in for a whole machine in tests. Reading decides nothing:
//! which disks to probe is the caller's choice (`setup.rs`, from `classify::identity`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::disk::{parse_mountinfo, parse_mounts, Disk, Mount, Probe};
use crate::error::{Error, Result};
use crate::paths::{normalize, under, unescape_octal};
use crate::signature;
use crate::units::{DevNo, Sectors};

/// Kernel names that are never physical disks.
const VIRTUAL_PREFIXES: &[&str] = &["dm-", "md", "ram", "zram", "loop", "nbd", "sr", "fd", "zd"];

/// The host, seen through a root directory.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    root: PathBuf,
}

impl Host {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    /// A host path (`/proc/mounts`) under the root.
    pub(crate) fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        under(&self.root, p.as_ref())
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
    pub(crate) fn config(&self, file: Option<&Path>) -> Result<Config> {
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

    /// All whole disks, sorted by name, with mounts, swaps and links; none probed yet.
    pub(crate) fn disks(&self) -> Result<Vec<Disk>> {
        let mounts = self.mounts()?;
        let swaps = self.swaps()?;
        let links = self.dev_links();
        let mut disks = Vec::new();
        for name in self.disk_names()? {
            let mut disk = self.disk(&name)?;
            if disk.size.0 == 0 {
                continue; // an empty slot: a card reader without a card, say
            }
            let own = |dev: &str| dev == disk.name || disk.partitions.iter().any(|p| p == dev);
            let devs = self.dev_numbers(&disk);
            disk.mounts = mounts
                .iter()
                .filter(|m| own(&m.source) || m.dev.is_some_and(|d| devs.contains(&d)))
                .map(|m| m.target.display().to_string())
                .collect();
            disk.mounts.sort();
            disk.mounts.dedup();
            disk.swaps = swaps.iter().filter(|s| own(s)).cloned().collect();
            disk.links = links.iter().filter(|(_, n)| *n == disk.name).map(|(l, _)| l.clone()).collect();
            disks.push(disk);
        }
        Ok(disks)
    }

    /// The kernel names under /sys/block that can be physical disks, sorted.
    fn disk_names(&self) -> Result<Vec<String>> {
        let block = self.path("/sys/block");
        let entries = fs::read_dir(&block).map_err(|e| Error::os("list", block.display(), e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !VIRTUAL_PREFIXES.iter().any(|p| n.starts_with(p)))
            .collect();
        names.sort();
        Ok(names)
    }

    fn disk(&self, name: &str) -> Result<Disk> {
        let sys = PathBuf::from("/sys/block").join(name);
        let attr =
            |a: &str| -> Result<String> { Ok(self.read_opt(sys.join(a))?.unwrap_or_default().trim().to_string()) };
        let number = |a: &str| -> Result<u64> {
            let v = attr(a)?;
            v.parse().map_err(|_| Error::invalid(self.path(sys.join(a)).display(), "a number", v))
        };
        let dev_text = attr("dev")?;
        let dev = DevNo::parse(&dev_text)
            .ok_or_else(|| Error::invalid(self.path(sys.join("dev")).display(), "major:minor", &dev_text))?;
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
    pub(crate) fn mounts(&self) -> Result<Vec<Mount>> {
        let mut out = parse_mounts(&self.read("/proc/mounts")?);
        out.extend(self.mountinfo()?);
        for m in &mut out {
            if let Some(name) = self.kernel_name(&m.source) {
                m.source = name;
            }
        }
        Ok(out)
    }

    /// /proc/self/mountinfo, as the kernel wrote it (empty where it is missing).
    pub(crate) fn mountinfo(&self) -> Result<Vec<Mount>> {
        Ok(parse_mountinfo(&self.read_opt("/proc/self/mountinfo")?.unwrap_or_default()))
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
    pub(crate) fn swaps(&self) -> Result<Vec<String>> {
        let text = self.read_opt("/proc/swaps")?.unwrap_or_default();
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|s| self.kernel_name(&unescape_octal(s)).unwrap_or_else(|| unescape_octal(s)))
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
    pub(crate) fn kernel_name(&self, dev_path: &str) -> Option<String> {
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
    pub(crate) fn resolve(&self, p: &Path) -> Option<PathBuf> {
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
    pub(crate) fn probe(&self, disk: &Disk) -> Probe {
        match signature::probe_device(&self.path(Path::new("/dev").join(&disk.name))) {
            Ok(None) => Probe::Clean,
            Ok(Some(sig)) => Probe::Found(sig),
            Err(e) => Probe::Failed(e.to_string()),
        }
    }
}
