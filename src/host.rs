//! READ-ONLY: what the host is. Every path hangs off one root (`--host DIR`, default `/`) so that
//! a directory of plain files can stand in for a whole machine in tests. Reading decides nothing:
//! which disks to probe is the caller's choice (`setup.rs`, from `classify::identity`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{Config, Selector};
use crate::disk::{parse_mountinfo, parse_mounts, Disk, Mount, Probe};
use crate::error::{Error, Result};
use crate::paths::{normalize, under, unescape_octal};
use crate::signature;
use crate::units::{Bytes, DevNo, Sectors};

/// The largest disk size taken at its word, in sectors: 64 PiB.
const MAX_SECTORS: u64 = 1 << 47;

/// A sysfs attribute's bytes: open, one read (an attribute is at most a page, and sysfs gives it
/// whole), close. `fs::read` would also ask the size and read again to see the end: under
/// emulation each system call counts, and a disk has some fifteen attributes.
fn read_attribute(path: &Path) -> io::Result<Vec<u8>> {
    const MAX_ATTRIBUTE: usize = 64 * 1024;
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        match file.read(buf.get_mut(len..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len < buf.len() {
                    break; // short: the whole attribute (a regular file's end, in a test tree)
                }
                if buf.len() >= MAX_ATTRIBUTE {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "longer than 64 KiB: not a sysfs attribute",
                    ));
                }
                buf.resize(buf.len() * 2, 0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// The kernel name of a resolved /dev path: `nvme1n1` for /dev/nvme1n1, `mapper/x` for
/// /dev/mapper/x; `None` for anything else.
fn dev_name(resolved: &Path) -> Option<String> {
    let rest = resolved.strip_prefix("/dev").ok()?;
    let rest = rest.to_string_lossy();
    match rest.strip_prefix("mapper/") {
        Some(_) => Some(rest.into_owned()),
        None if !rest.is_empty() && !rest.contains('/') => Some(rest.into_owned()),
        None => None,
    }
}

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

    /// Read a file as text; bytes that are not UTF-8 (a mount point's name, a swap file's) become
    /// U+FFFD instead of failing the whole scan.
    fn read(&self, p: impl AsRef<Path>) -> Result<String> {
        let full = self.path(p);
        fs::read(&full)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| Error::os("read", full.display(), e))
    }

    /// Read a file that may be missing (sysfs attributes differ between drivers).
    fn read_opt(&self, p: impl AsRef<Path>) -> Result<Option<String>> {
        let full = self.path(p);
        match fs::read(&full) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
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
            let full = self.path(Path::new("/etc/cmdline.d").join(name));
            cmdline += &String::from_utf8_lossy(&fs::read(&full).map_err(|e| Error::os("read", full.display(), e))?);
            cmdline.push(' ');
        }
        // Bytes that are not UTF-8 become U+FFFD: harmless outside ephemcrypt's own keys, an
        // error naming the key inside them (config.rs).
        let full = self.path("/proc/cmdline");
        cmdline += &String::from_utf8_lossy(&fs::read(&full).map_err(|e| Error::os("read", full.display(), e))?);
        let file = match file {
            Some(p) => {
                let text = fs::read_to_string(p).map_err(|e| Error::os("read configuration", p.display(), e))?;
                Some((p.to_path_buf(), text))
            }
            None => self.read_opt("/etc/ephemcrypt.conf")?.map(|t| (PathBuf::from("/etc/ephemcrypt.conf"), t)),
        };
        Ok(Config::load(file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())), cmdline.trim())?)
    }

    /// The configuration of the file alone (`file`, or else the root's /etc/ephemcrypt.conf when
    /// it exists), without any kernel command line: what an image is built with.
    pub(crate) fn config_file_only(&self, file: Option<&Path>) -> Result<Config> {
        let file = match file {
            Some(p) => Some((
                p.to_path_buf(),
                fs::read_to_string(p).map_err(|e| Error::os("read configuration", p.display(), e))?,
            )),
            None => self.read_opt("/etc/ephemcrypt.conf")?.map(|t| (PathBuf::from("/etc/ephemcrypt.conf"), t)),
        };
        Ok(Config::load(file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())), "")?)
    }

    /// Whether the kernel runs in FIPS mode (booted with `fips=1`): /proc/sys/crypto/fips_enabled,
    /// which kernels built without CONFIG_CRYPTO_FIPS lack (they never are).
    pub(crate) fn fips_enabled(&self) -> Result<bool> {
        const FIPS: &str = "/proc/sys/crypto/fips_enabled";
        match self.read_opt(FIPS)?.as_deref().map(str::trim) {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(Error::invalid(self.path(FIPS).display(), "0 or 1", crate::escape::Esc(other))),
        }
    }

    /// All whole disks, sorted by name, with mounts, swaps and links; none probed yet.
    pub(crate) fn disks(&self) -> Result<Vec<Disk>> {
        self.read_disks(true, &|_| true)
    }

    /// [`disks`](Self::disks) as `config` needs them: the /dev/disk links (some 140 on a machine
    /// with 27 NVMe disks, each resolved) only where a `path:` selector of `devices` or `exclude`
    /// looks at them, otherwise every disk's `links` is empty; and without links, the details of
    /// a disk that `config` refuses by its identity (`classify::identity`) are left unread: the
    /// refusal does not depend on them.
    pub(crate) fn disks_for(&self, config: &Config) -> Result<Vec<Disk>> {
        let paths = config.devices.iter().chain(&config.exclude).any(|s| matches!(s, Selector::Path(_)));
        if paths {
            // A path selector looks at the links, matched to the disks once every entry is read:
            // every entry in full.
            return self.read_disks(true, &|_| true);
        }
        self.read_disks(false, &|d| crate::classify::identity(d, config).is_none())
    }

    fn read_disks(&self, with_links: bool, details: &dyn Fn(&Disk) -> bool) -> Result<Vec<Disk>> {
        let names = self.disk_names()?;
        let read = |name: &Result<String, String>| match name {
            Ok(name) => {
                let disk = self.disk(name, details);
                let devs = self.dev_numbers(&disk);
                (disk, devs)
            }
            // Read through its name taken lossily, the entry could read as another one (one
            // named with U+FFFD): it is refused unread.
            Err(lossy) => {
                let why = Error::invalid(self.path("/sys/block").display(), "kernel names (UTF-8)", lossy);
                let disk =
                    Disk { broken: Some(why.to_string()), ..Disk::new(lossy, DevNo { major: 0, minor: 0 }, Bytes(0)) };
                (disk, Vec::new())
            }
        };
        let t = std::time::Instant::now();
        // One after another: side by side (three threads) was slower under emulation in every
        // disk set of the bench (2 vCPUs; each read is a few short system calls).
        let entries: Vec<(Disk, Vec<DevNo>)> = names.iter().map(read).collect();
        let entries_ms = t.elapsed().as_millis();
        let links = if with_links { self.dev_links() } else { Vec::new() };
        log::debug!(
            "read {} sysfs entries in {entries_ms} ms, then the mounts, swaps and {} /dev/disk links in {} ms",
            names.len(),
            links.len(),
            t.elapsed().as_millis().saturating_sub(entries_ms)
        );
        let (mounts, swaps) = (self.mounts()?, self.swaps()?);
        let mut disks = Vec::new();
        for (mut disk, devs) in entries {
            if disk.size.0 == 0 && disk.broken.is_none() {
                continue; // an empty slot: a card reader without a card, say
            }
            let own = |dev: &str| dev == disk.name || disk.partitions.iter().any(|p| p == dev);
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
        // One device number on two entries makes no sense (a disk replaced while sysfs was read, a
        // hand-made tree): which disk the number stands for cannot be told, so neither is used. A
        // volume never takes one device twice. (0:0 stands for a number that could not be read.)
        let numbers: Vec<(DevNo, String)> =
            disks.iter().filter(|d| d.dev != DevNo { major: 0, minor: 0 }).map(|d| (d.dev, d.name.clone())).collect();
        for d in &mut disks {
            if let Some((dev, other)) = numbers.iter().find(|(dev, name)| *dev == d.dev && *name != d.name) {
                let path = self.path(PathBuf::from("/sys/block").join(&d.name).join("dev"));
                let found = format!("{dev}, which is {other}'s too");
                d.broken.get_or_insert_with(|| {
                    Error::invalid(path.display(), "a device number no other disk has", found).to_string()
                });
            }
        }
        Ok(disks)
    }

    /// The kernel names under /sys/block that can be physical disks, sorted. Kernel names are
    /// ASCII: a name that is not UTF-8 comes back as an error holding it, taken lossily.
    fn disk_names(&self) -> Result<Vec<Result<String, String>>> {
        let block = self.path("/sys/block");
        let entries = fs::read_dir(&block).map_err(|e| Error::os("list", block.display(), e))?;
        let mut names: Vec<Result<String, String>> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().into_string().map_err(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !VIRTUAL_PREFIXES.iter().any(|p| n.as_ref().unwrap_or_else(|n| n).starts_with(p)))
            .collect();
        names.sort_by(|a, b| a.as_ref().unwrap_or_else(|n| n).cmp(b.as_ref().unwrap_or_else(|n| n)));
        Ok(names)
    }

    /// One sysfs attribute of a disk's entry `sys`, trimmed; empty when it is missing. A read that
    /// fails makes the disk `broken` (the first such reason is kept).
    fn attr(&self, sys: &Path, a: &str, broken: &mut Option<String>) -> String {
        let full = self.path(sys.join(a));
        match read_attribute(&full) {
            Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                broken.get_or_insert_with(|| Error::os("read", full.display(), e).to_string());
                String::new()
            }
        }
    }

    /// One disk from its sysfs entry. Never an error: a disk whose entry cannot be read, or makes
    /// no sense, comes back `broken` (refused, with the reason) and the others are read on.
    /// Attributes are read as bytes; a model or serial that is not UTF-8 is taken lossily.
    /// What identifies the disk (number, size, model, serial, vendor, wwid, nsid) is read first;
    /// the rest (block size, read-only, removable, holders, partitions) only when `details` wants
    /// it of the disk so far: a disk no selector picks is refused by its identity alone.
    fn disk(&self, name: &str, details: &dyn Fn(&Disk) -> bool) -> Disk {
        let sys = PathBuf::from("/sys/block").join(name);
        let mut broken: Option<String> = None;
        let (dev_text, size_text) = (self.attr(&sys, "dev", &mut broken), self.attr(&sys, "size", &mut broken));
        let serial = match self.attr(&sys, "device/serial", &mut broken) {
            s if s.is_empty() => self.attr(&sys, "serial", &mut broken),
            s => s,
        };
        let model = self.attr(&sys, "device/model", &mut broken);
        let vendor = self.attr(&sys, "device/vendor", &mut broken);
        let wwid = self.attr(&sys, "wwid", &mut broken);
        let nsid = self.attr(&sys, "nsid", &mut broken).parse().ok();
        let invalid = |a: &str, expected: &'static str, found: &str| {
            Error::invalid(self.path(sys.join(a)).display(), expected, found).to_string()
        };
        let dev = DevNo::parse(&dev_text);
        if dev.is_none() {
            broken.get_or_insert_with(|| invalid("dev", "major:minor", &dev_text));
        }
        // At most 2^47 sectors (64 PiB): a volume of 64 such disks still counts in bytes in a u64.
        let size = size_text.parse::<u64>().ok().filter(|s| *s <= MAX_SECTORS);
        if size.is_none() {
            broken.get_or_insert_with(|| invalid("size", "a number of 512-byte sectors up to 2^47", &size_text));
        }
        let known = Disk {
            model,
            serial,
            vendor,
            wwid,
            nsid,
            ..Disk::new(name, dev.unwrap_or(DevNo { major: 0, minor: 0 }), Sectors(size.unwrap_or(0)).bytes())
        };
        if !details(&known) {
            return Disk { broken, ..known };
        }
        let lbs_text = self.attr(&sys, "queue/logical_block_size", &mut broken);
        let (ro, removable) = (self.attr(&sys, "ro", &mut broken), self.attr(&sys, "removable", &mut broken));
        let lbs = match lbs_text.as_str() {
            "" => Some(512),
            t => t.parse::<u32>().ok().filter(|n| n.is_power_of_two() && (512..=65536).contains(n)),
        };
        if lbs.is_none() {
            broken.get_or_insert_with(|| {
                invalid("queue/logical_block_size", "a power of two from 512 to 65536", &lbs_text)
            });
        }
        let (holders, entries) = (self.list_checked(&sys.join("holders")), self.list_checked(&sys));
        let mut listed = |r: Result<Vec<String>>| match r {
            Ok(v) => v,
            Err(e) => {
                broken.get_or_insert_with(|| e.to_string());
                Vec::new()
            }
        };
        let (holders, entries) = (listed(holders), listed(entries));
        Disk {
            logical_block_size: lbs.unwrap_or(512),
            read_only: ro == "1",
            removable: removable == "1",
            holders,
            // The kernel names a partition after its disk (nvme0n1p1, vda1): only those entries
            // are asked whether they are one (a disk's entry has some 30 others).
            partitions: entries
                .into_iter()
                .filter(|p| p.starts_with(name) && self.path(sys.join(p).join("partition")).exists())
                .collect(),
            broken,
            ..known
        }
    }

    /// Sorted entry names of a directory; empty when it is missing, an error when it cannot be
    /// read (a disk whose holders cannot be listed must not look unused).
    fn list_checked(&self, dir: &Path) -> Result<Vec<String>> {
        let full = self.path(dir);
        match fs::read_dir(&full) {
            Ok(d) => {
                let mut v = Vec::new();
                for e in d {
                    v.push(
                        e.map_err(|e| Error::os("list", full.display(), e))?.file_name().to_string_lossy().into_owned(),
                    );
                }
                v.sort();
                Ok(v)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::os("list", full.display(), e)),
        }
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
        let mut plain = std::collections::HashSet::new();
        for kind in self.list("/dev/disk") {
            let dir = PathBuf::from("/dev/disk").join(kind);
            for link in self.list(&dir) {
                let p = dir.join(link);
                if let Some(n) = self.resolve_with(&p, &mut plain).and_then(|r| dev_name(&r)) {
                    out.push((p, n));
                }
            }
        }
        out
    }

    /// The kernel name a /dev path stands for, following symlinks inside the root
    /// (`/dev/disk/by-id/x` → `../../nvme1n1` → `nvme1n1`). `/dev/root` is left as is.
    pub(crate) fn kernel_name(&self, dev_path: &str) -> Option<String> {
        dev_name(&self.resolve(Path::new(dev_path))?)
    }

    /// Follow symlinks of a host path inside the root, returning the host path (without root).
    /// Absolute link targets are taken inside the root. Gives up after 40 links.
    pub(crate) fn resolve(&self, p: &Path) -> Option<PathBuf> {
        self.resolve_with(p, &mut std::collections::HashSet::new())
    }

    /// [`resolve`](Self::resolve), with the paths already found not to be links in `plain`
    /// (shared by the many links of one directory: /dev, /dev/disk, /dev/disk/by-id are asked
    /// once, not once per link).
    fn resolve_with(&self, p: &Path, plain: &mut std::collections::HashSet<PathBuf>) -> Option<PathBuf> {
        let mut path = normalize(p)?;
        for _ in 0..40 {
            let mut done = PathBuf::from("/");
            let mut changed = false;
            let parts: Vec<_> = path.components().skip(1).collect();
            for (i, c) in parts.iter().enumerate() {
                let candidate = done.join(c);
                if plain.contains(&candidate) {
                    done = candidate;
                    continue;
                }
                match fs::read_link(self.path(&candidate)) {
                    Ok(target) => {
                        let base = if target.is_absolute() { target } else { done.join(target) };
                        let mut next = base;
                        for rest in parts.iter().skip(i + 1) {
                            next.push(rest);
                        }
                        path = normalize(&next)?;
                        changed = true;
                        break;
                    }
                    Err(_) => {
                        plain.insert(candidate.clone());
                        done = candidate;
                    }
                }
            }
            if !changed {
                return Some(path);
            }
        }
        None
    }

    /// Probe what a disk holds: blank, ephemcrypt's own, a known signature, or data.
    pub(crate) fn probe(&self, disk: &Disk) -> Probe {
        match signature::probe_device(&self.path(Path::new("/dev").join(&disk.name))) {
            Ok(content) => content.into(),
            Err(e) => Probe::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host tree of plain files in the temp directory, removed when dropped.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str, files: &[(&str, &str)]) -> Tree {
            let root = std::env::temp_dir().join(format!("ephemcrypt-host-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            for (path, text) in files {
                let full = root.join(path);
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                fs::write(full, text).unwrap();
            }
            Tree(root)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn fips_mode_is_read_under_the_host_root() {
        let tree = Tree::new("fips-missing", &[("proc/cmdline", "ro\n")]);
        assert!(!Host::new(&tree.0).fips_enabled().unwrap(), "a kernel without CONFIG_CRYPTO_FIPS");
        for (text, want) in [("0\n", Some(false)), ("1\n", Some(true)), ("yes\n", None)] {
            let tree = Tree::new("fips", &[("proc/sys/crypto/fips_enabled", text)]);
            match (Host::new(&tree.0).fips_enabled(), want) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{text:?}"),
                (Err(e), None) => assert!(e.to_string().ends_with("expected 0 or 1, found 'yes'"), "{e}"),
                (got, _) => panic!("{text:?}: {got:?}"),
            }
        }
    }

    /// An attribute is read whole at any length up to 64 KiB (one read where sysfs gives it all),
    /// and a file longer than that is refused, not read into memory to its end.
    #[test]
    fn attributes_are_read_whole_and_bounded() {
        let long = "x".repeat(5000);
        let huge = "y".repeat(70 * 1024);
        let tree = Tree::new("attrs", &[("a", "nvme0n1\n"), ("empty", ""), ("long", &long), ("huge", &huge)]);
        assert_eq!(read_attribute(&tree.0.join("a")).unwrap(), b"nvme0n1\n");
        assert_eq!(read_attribute(&tree.0.join("empty")).unwrap(), b"");
        assert_eq!(read_attribute(&tree.0.join("long")).unwrap(), long.as_bytes(), "past the first 4 KiB");
        let e = read_attribute(&tree.0.join("huge")).unwrap_err();
        assert!(e.to_string().contains("longer than 64 KiB"), "{e}");
        assert_eq!(read_attribute(&tree.0.join("missing")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    /// The /dev/disk links are read only for a configuration that selects or excludes by path:
    /// then a disk is found by its link; otherwise none is resolved.
    #[test]
    fn links_are_read_only_for_path_selectors() {
        let tree = Tree::new(
            "links",
            &[
                ("sys/block/nvme1n1/dev", "259:1\n"),
                ("sys/block/nvme1n1/size", "3709861888\n"),
                ("sys/block/nvme1n1/device/serial", "S1\n"),
                ("dev/nvme1n1", ""),
                ("proc/mounts", "proc /proc proc rw 0 0\n"),
            ],
        );
        fs::create_dir_all(tree.0.join("dev/disk/by-id")).unwrap();
        std::os::unix::fs::symlink("../../nvme1n1", tree.0.join("dev/disk/by-id/nvme-scratch")).unwrap();
        let host = Host::new(&tree.0);
        let by_path =
            Config::load(Some((Path::new("t.conf"), "devices = path:/dev/disk/by-id/nvme-scratch\n")), "").unwrap();
        let disks = host.disks_for(&by_path).unwrap();
        assert_eq!(disks[0].links, vec![PathBuf::from("/dev/disk/by-id/nvme-scratch")]);
        assert!(crate::classify::identity(&disks[0], &by_path).is_none(), "found by its link");
        let excluding = Config::load(
            Some((Path::new("t.conf"), "devices = serial:S*\nexclude = path:/dev/disk/by-id/nvme-*\n")),
            "",
        )
        .unwrap();
        assert_eq!(host.disks_for(&excluding).unwrap()[0].links.len(), 1, "an exclusion by path reads them too");
        let by_serial = Config::load(Some((Path::new("t.conf"), "devices = serial:S1\n")), "").unwrap();
        let disks = host.disks_for(&by_serial).unwrap();
        assert!(disks[0].links.is_empty() && crate::classify::identity(&disks[0], &by_serial).is_none());
        assert_eq!(host.disks().unwrap()[0].links.len(), 1, "disks() reads them always");
    }

    /// Without path selectors, a disk refused by its identity is not read further: its holders,
    /// partitions and flags are left unread; a candidate's are read.
    #[test]
    fn only_candidates_are_read_in_full() {
        let entry = |name: &str, serial: &str| {
            let d = format!("sys/block/{name}");
            [
                (format!("{d}/dev"), format!("259:{}\n", name.len())),
                (format!("{d}/size"), "3709861888\n".to_string()),
                (format!("{d}/device/serial"), format!("{serial}\n")),
                (format!("{d}/ro"), "1\n".to_string()),
                (format!("{d}/holders/dm-0"), String::new()),
                (format!("{d}/{name}p1/partition"), "1\n".to_string()),
            ]
        };
        let files: Vec<(String, String)> = [entry("nvme1n1", "PICK"), entry("nvme10n1", "OTHER")]
            .concat()
            .into_iter()
            .chain([("proc/mounts".to_string(), "proc /proc proc rw 0 0\n".to_string())])
            .collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let tree = Tree::new("candidates", &files);
        let host = Host::new(&tree.0);
        let config = Config::load(Some((Path::new("t.conf"), "devices = serial:PICK\n")), "").unwrap();
        let disks = host.disks_for(&config).unwrap();
        let get = |name: &str| disks.iter().find(|d| d.name == name).unwrap();
        let (pick, other) = (get("nvme1n1"), get("nvme10n1"));
        assert!(pick.read_only && pick.holders == ["dm-0"] && pick.partitions == ["nvme1n1p1"], "{pick:?}");
        assert!(!other.read_only && other.holders.is_empty() && other.partitions.is_empty(), "{other:?}");
        assert_eq!(other.serial, "OTHER", "its identity is read");
        let all = host.disks().unwrap();
        assert!(all.iter().all(|d| d.read_only && d.holders.len() == 1 && d.partitions.len() == 1), "{all:?}");
    }

    /// Found by fuzzing (fuzz/ host_sysfs): two entries with one device number were both taken,
    /// and the stripe named that device twice. Now neither is used, and the reason names both.
    #[test]
    fn one_device_number_on_two_entries_refuses_both() {
        let disk = |name: &str, dev: &str, serial: &str| {
            let d = format!("sys/block/{name}");
            [
                (format!("{d}/dev"), format!("{dev}\n")),
                (format!("{d}/size"), "3709861888\n".to_string()),
                (format!("{d}/device/model"), "Amazon EC2 NVMe Instance Storage        \n".to_string()),
                (format!("{d}/device/serial"), format!("{serial}\n")),
            ]
        };
        let files: Vec<(String, String)> = [
            disk("nvme1n1", "259:3", "AWS22B2C5F8A1D0E0001"),
            disk("nvme2n1", "259:3", "AZ-0001"),
            disk("nvme3n1", "259:5", "AWS33"),
        ]
        .concat()
        .into_iter()
        .chain([("proc/mounts".to_string(), "proc /proc proc rw 0 0\n".to_string())])
        .collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let tree = Tree::new("same-dev", &files);
        let disks = Host::new(&tree.0).disks().unwrap();
        let broken = |name: &str| disks.iter().find(|d| d.name == name).unwrap().broken.clone();
        let one = broken("nvme1n1").expect("nvme1n1 refused");
        let why = "expected a device number no other disk has, found '259:3, which is nvme2n1's too'";
        assert!(one.ends_with(&format!("/sys/block/nvme1n1/dev: {why}")), "{one}");
        assert!(broken("nvme2n1").expect("nvme2n1 refused").contains("259:3, which is nvme1n1's too"));
        assert_eq!(broken("nvme3n1"), None);
    }

    /// Found by fuzzing (fuzz/ host_sysfs): entries whose names are not UTF-8 were read through
    /// their names taken lossily, so all of them read as the entry named with U+FFFD (here sd�),
    /// and that one disk was taken three times. Now they are refused unread.
    #[test]
    fn entries_not_named_in_utf8_are_refused_unread() {
        use std::os::unix::ffi::OsStrExt;
        let good = [("dev", "8:0\n"), ("size", "20971520\n"), ("device/model", "Test good\n")];
        let mut files: Vec<(String, &str)> =
            good.iter().map(|(a, t)| (format!("sys/block/sd\u{FFFD}/{a}"), *t)).collect();
        files.push(("proc/mounts".into(), "proc /proc proc rw 0 0\n"));
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
        let tree = Tree::new("not-utf8", &files);
        for name in [&b"sd\xff"[..], b"sd\xfe"] {
            let dir = tree.0.join("sys/block").join(std::ffi::OsStr::from_bytes(name));
            fs::create_dir_all(dir.join("device")).unwrap();
            for (a, t) in good {
                fs::write(dir.join(a), t).unwrap();
            }
        }
        let disks = Host::new(&tree.0).disks().unwrap();
        assert_eq!(disks.len(), 3);
        let taken: Vec<&Disk> = disks.iter().filter(|d| d.broken.is_none()).collect();
        assert_eq!(taken.len(), 1, "{disks:?}");
        assert_eq!((taken[0].name.as_str(), taken[0].dev), ("sd\u{FFFD}", DevNo { major: 8, minor: 0 }));
        for d in disks.iter().filter(|d| d.broken.is_some()) {
            let why = d.broken.as_deref().unwrap();
            assert!(why.ends_with("/sys/block: expected kernel names (UTF-8), found 'sd\u{FFFD}'"), "{why}");
        }
    }
}
