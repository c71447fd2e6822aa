//! The seam between the plan and the kernel: every side effect `apply` has goes through
//! [`System`]. [`LinuxSystem`] does it for real; tests fake it to check order and rollback.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::config::Fs;
use crate::dm::{self, Control, TableLine, Target};
use crate::error::{Error, Result};
use crate::key::{self, Key, KeySerial};
use crate::units::{Bytes, DevNo};

/// Everything `apply` may do to the machine.
pub trait System {
    /// The loaded dm-crypt target's version, loading the module if needed.
    fn crypt_version(&mut self) -> Result<[u32; 3]>;
    /// A fresh key of `len` random bytes from the kernel's RNG (blocking until seeded).
    fn make_key(&mut self, len: usize) -> Result<Key>;
    fn add_logon_key(&mut self, description: &str, key: &Key) -> Result<KeySerial>;
    fn invalidate_key(&mut self, serial: KeySerial) -> Result<()>;
    /// Create an empty mapping; returns its device number.
    fn dm_create(&mut self, name: &str, uuid: &str) -> Result<DevNo>;
    fn dm_load(&mut self, name: &str, targets: &[Target], secure: bool) -> Result<()>;
    fn dm_resume(&mut self, name: &str) -> Result<()>;
    fn dm_remove(&mut self, name: &str) -> Result<()>;
    /// The device number of a live mapping, `None` if there is no such mapping.
    fn dm_dev(&mut self, name: &str) -> Result<Option<DevNo>>;
    fn dm_table(&mut self, name: &str) -> Result<Vec<TableLine>>;
    /// Make `/dev/mapper/<name>` where no udev did; true when this call created it.
    fn make_node(&mut self, name: &str, dev: DevNo) -> Result<bool>;
    fn remove_node(&mut self, name: &str) -> Result<()>;
    /// Write a swap signature on `/dev/mapper/<name>` for `len` bytes.
    fn make_swap(&mut self, name: &str, len: Bytes) -> Result<()>;
    fn swapon(&mut self, name: &str) -> Result<()>;
    fn swapoff(&mut self, name: &str) -> Result<()>;
    fn mkfs(&mut self, fs: Fs, name: &str) -> Result<()>;
    /// Create a directory (and parents) with mode 0755; true when it did not exist.
    fn mkdir(&mut self, path: &Path) -> Result<bool>;
    /// Remove an empty directory that `mkdir` created.
    fn rmdir(&mut self, path: &Path) -> Result<()>;
    fn mount_dm(&mut self, name: &str, target: &Path, fs: Fs) -> Result<()>;
    fn bind(&mut self, source: &Path, target: &Path) -> Result<()>;
    /// Mount a tmpfs on `target` with the directory's own mode and owner.
    fn mount_tmpfs(&mut self, target: &Path) -> Result<()>;
    fn umount(&mut self, target: &Path) -> Result<()>;
    fn is_mountpoint(&mut self, target: &Path) -> Result<bool>;
    /// Recreate the directory tree under `from` (directories only: owner, mode, ACLs, security
    /// labels) under `to`.
    fn copy_skeleton(&mut self, from: &Path, to: &Path) -> Result<()>;
    fn write_status(&mut self, json: &str) -> Result<()>;
    fn sleep_ms(&mut self, ms: u64);
    /// Milliseconds since an arbitrary start.
    fn now_ms(&mut self) -> u64;
}

/// Udev flags on every mapping we make: this tool is the primary source of the event, so the real
/// root's udev treats the device as ready (not `SYSTEMD_READY=0`).
const UDEV_FLAGS: u16 = dm::DM_UDEV_PRIMARY_SOURCE_FLAG;

/// The real machine, seen through a root (`/` at boot; tests never use this type).
pub struct LinuxSystem {
    root: PathBuf,
    control: Option<Control>,
    start: Instant,
}

impl LinuxSystem {
    pub fn new(root: impl Into<PathBuf>) -> LinuxSystem {
        LinuxSystem { root: root.into(), control: None, start: Instant::now() }
    }

    fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = p.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    fn dev_path(&self, name: &str) -> PathBuf {
        self.path(Path::new("/dev/mapper").join(name))
    }

    /// The control device, made and opened on first use.
    fn control(&mut self) -> Result<&Control> {
        if self.control.is_none() {
            let path = self.path("/dev/mapper/control");
            if !path.exists() {
                // Loading dm_mod makes devtmpfs create the node; make it from sysfs only where
                // nothing did (no devtmpfs), and accept one that appears meanwhile.
                self.modprobe("dm_mod");
                let misc = self.path("/sys/class/misc/device-mapper/dev");
                match fs::read_to_string(&misc).ok().and_then(|t| DevNo::parse(&t)) {
                    Some(dev) if !path.exists() => match self.mknod(&path, SFlag::S_IFCHR, dev) {
                        Err(Error::Os { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {}
                        r => r?,
                    },
                    _ => {}
                }
            }
            self.control = Some(Control::open(&path)?);
        }
        Ok(self.control.as_ref().expect("opened above"))
    }

    /// Load a kernel module with modprobe where there is one (an initramfs has it; a built-in
    /// module needs nothing). Failures are left to the operation that needs the module. Never
    /// for a `--host` tree other than `/`: that is not the running machine.
    fn modprobe(&self, module: &str) {
        if self.root != Path::new("/") {
            return;
        }
        if let Some(p) = find_program(&["modprobe"]) {
            let _ = Command::new(p).args(["-q", module]).status();
        }
    }

    fn mknod(&self, path: &Path, kind: SFlag, dev: DevNo) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| Error::os("create directory", dir.display(), e))?;
        }
        nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(0o600), dev.to_dev_t())
            .map_err(|e| Error::errno("create device node", path.display(), e))
    }
}

/// The first of `names` found on PATH (or the usual sbin/bin directories).
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"]).filter(|d| !d.is_empty());
    let dirs: Vec<&str> = dirs.collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| Path::new(d).join(n)))
        .find(|p| fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// Run a program, returning an error with its exit status and last lines of output.
fn run(program: &Path, args: &[&str]) -> Result<()> {
    log::info!("running {} {}", program.display(), args.join(" "));
    let out = Command::new(program).args(args).output().map_err(|e| Error::os("run", program.display(), e))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(Error::msg(format!("{} {} failed ({}): {}", program.display(), args.join(" "), out.status, tail.join(" / "))))
}

/// 16 random bytes for a swap UUID (not secret, but the same blocking kernel RNG as the key).
fn random_uuid() -> Result<[u8; 16]> {
    let key = Key::generate(16)?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(key.expose());
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // variant 1
    Ok(uuid)
}

impl System for LinuxSystem {
    fn crypt_version(&mut self) -> Result<[u32; 3]> {
        let find = |c: &Control| -> Result<Option<[u32; 3]>> {
            Ok(c.target_versions()?.into_iter().find(|t| t.name == "crypt").map(|t| t.version))
        };
        if let Some(v) = find(self.control()?)? {
            return Ok(v);
        }
        // The crypt target registers when its module loads; the kernel would load it on the
        // first table load, but we need its version before that.
        self.modprobe("dm_crypt");
        find(self.control()?)?.ok_or_else(|| {
            Error::msg("the kernel has no dm-crypt target: module dm_crypt is neither built in nor loadable")
        })
    }

    fn make_key(&mut self, len: usize) -> Result<Key> {
        Key::generate(len)
    }

    fn add_logon_key(&mut self, description: &str, key: &Key) -> Result<KeySerial> {
        key::add_logon_key(description, key)
    }

    fn invalidate_key(&mut self, serial: KeySerial) -> Result<()> {
        key::invalidate_key(serial)
    }

    fn dm_create(&mut self, name: &str, uuid: &str) -> Result<DevNo> {
        self.control()?.create(name, uuid, UDEV_FLAGS)
    }

    fn dm_load(&mut self, name: &str, targets: &[Target], secure: bool) -> Result<()> {
        self.control()?.load(name, targets, secure)
    }

    fn dm_resume(&mut self, name: &str) -> Result<()> {
        self.control()?.resume(name, UDEV_FLAGS)
    }

    fn dm_remove(&mut self, name: &str) -> Result<()> {
        self.control()?.remove(name, UDEV_FLAGS)
    }

    fn dm_dev(&mut self, name: &str) -> Result<Option<DevNo>> {
        // Asked first on every boot, also on machines without local disks: without device-mapper
        // in the kernel yet there can be no mapping, and no reason to load the module.
        if self.control.is_none() && !self.path("/sys/class/misc/device-mapper").exists() {
            return Ok(None);
        }
        Ok(self.control()?.info(name)?.filter(|i| i.active).map(|i| i.dev))
    }

    fn dm_table(&mut self, name: &str) -> Result<Vec<TableLine>> {
        self.control()?.table(name)
    }

    fn make_node(&mut self, name: &str, dev: DevNo) -> Result<bool> {
        let path = self.dev_path(name);
        if let Ok(m) = fs::metadata(&path) {
            if m.rdev() == dev.to_dev_t() {
                return Ok(false); // udev was first
            }
            fs::remove_file(&path).map_err(|e| Error::os("remove stale device node", path.display(), e))?;
        }
        self.mknod(&path, SFlag::S_IFBLK, dev)?;
        Ok(true)
    }

    fn remove_node(&mut self, name: &str) -> Result<()> {
        let path = self.dev_path(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::os("remove device node", path.display(), e)),
            _ => Ok(()),
        }
    }

    fn make_swap(&mut self, name: &str, len: Bytes) -> Result<()> {
        let path = self.dev_path(name);
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as usize;
        let header = crate::swap::header(page, len.0, random_uuid()?, name).map_err(Error::Msg)?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_EXCL) // a block device open O_EXCL fails while it is in use
            .open(&path)
            .map_err(|e| Error::os("open for swap signature", path.display(), e))?;
        f.write_all(&header)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::os("write swap signature", path.display(), e))
    }

    fn swapon(&mut self, name: &str) -> Result<()> {
        crate::sys::swapon(&self.dev_path(name))
    }

    fn swapoff(&mut self, name: &str) -> Result<()> {
        crate::sys::swapoff(&self.dev_path(name))
    }

    fn mkfs(&mut self, fs: Fs, name: &str) -> Result<()> {
        let dev = self.dev_path(name);
        let dev = dev.to_string_lossy();
        // Labels: ext4 takes 16 bytes, xfs 12.
        let (programs, args): (&[&str], Vec<&str>) = match fs {
            // Lazy init: without /sys/fs/ext4/features/lazy_itable_init readable, mke2fs would write
            // every inode table (~18 GiB per TiB); the disks arrive trimmed, so no discard.
            Fs::Ext4 => (
                &["mkfs.ext4", "mke2fs"],
                vec![
                    "-t",
                    "ext4",
                    "-q",
                    "-F",
                    "-L",
                    "ephemcrypt",
                    "-E",
                    "nodiscard,lazy_itable_init=1,lazy_journal_init=1",
                    &dev,
                ],
            ),
            Fs::Xfs => (&["mkfs.xfs"], vec!["-q", "-f", "-K", "-L", "ephemcrypt", &dev]),
            Fs::None => return Ok(()),
        };
        let program = find_program(programs).ok_or_else(|| {
            Error::msg(format!("make {} file system: none of {} found on PATH", fs.name(), programs.join(", ")))
        })?;
        run(&program, &args)
    }

    /// A mount point missing from a root that the boot chain mounted read-only (dracut's
    /// default, and `ro` on most cloud images' command lines) is made by remounting that file
    /// system read-write for the mkdir and read-only again right after.
    fn mkdir(&mut self, path: &Path) -> Result<bool> {
        if path.is_dir() {
            return Ok(false);
        }
        let create = || fs::DirBuilder::new().recursive(true).mode(0o755).create(path);
        match create() {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                let (mount_point, flags) = self.mount_containing(path)?;
                log::info!(
                    "{} is read-only: remounting it read-write to create {}",
                    mount_point.display(),
                    path.display()
                );
                let remount = |extra: MsFlags| {
                    nix::mount::mount(
                        None::<&str>,
                        &mount_point,
                        None::<&str>,
                        MsFlags::MS_REMOUNT | flags | extra,
                        None::<&str>,
                    )
                    .map_err(|e| Error::errno("remount", mount_point.display(), e))
                };
                remount(MsFlags::empty())?;
                let made = create().map_err(|e| Error::os("create directory", path.display(), e));
                remount(MsFlags::MS_RDONLY)?;
                made.map(|()| true)
            }
            Err(e) => Err(Error::os("create directory", path.display(), e)),
        }
    }

    fn rmdir(&mut self, path: &Path) -> Result<()> {
        match fs::remove_dir(path) {
            // Made through a brief read-write remount: an empty directory stays, harmlessly.
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                log::info!("leaving empty directory {} on a read-only file system", path.display());
                Ok(())
            }
            r => r.map_err(|e| Error::os("remove directory", path.display(), e)),
        }
    }

    fn mount_dm(&mut self, name: &str, target: &Path, fs: Fs) -> Result<()> {
        let dev = self.dev_path(name);
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        nix::mount::mount(Some(&dev), target, Some(fs.name()), flags, None::<&str>)
            .map_err(|e| Error::errno("mount", format!("{} on {}", dev.display(), target.display()), e))
    }

    fn bind(&mut self, source: &Path, target: &Path) -> Result<()> {
        nix::mount::mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::errno("bind-mount", format!("{} on {}", source.display(), target.display()), e))
    }

    fn mount_tmpfs(&mut self, target: &Path) -> Result<()> {
        let m = fs::metadata(target).map_err(|e| Error::os("stat", target.display(), e))?;
        let data = format!("mode={:o},uid={},gid={}", m.mode() & 0o7777, m.uid(), m.gid());
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        nix::mount::mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(data.as_str()))
            .map_err(|e| Error::errno("mount tmpfs", target.display(), e))
    }

    fn umount(&mut self, target: &Path) -> Result<()> {
        nix::mount::umount2(target, MntFlags::empty()).map_err(|e| Error::errno("unmount", target.display(), e))
    }

    fn is_mountpoint(&mut self, target: &Path) -> Result<bool> {
        Ok(self.mounts()?.iter().any(|(m, _)| m == target))
    }

    fn copy_skeleton(&mut self, from: &Path, to: &Path) -> Result<()> {
        if let Some(parent) = to.parent() {
            self.mkdir(parent)?; // e.g. <volume>/var for /var/log
        }
        copy_dir_tree(from, to)
    }

    fn write_status(&mut self, json: &str) -> Result<()> {
        let path = self.path(crate::status::STATUS_PATH);
        let dir = path.parent().expect("status path has a directory");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| Error::os("create directory", dir.display(), e))?;
        let tmp = dir.join(".status.json.tmp");
        fs::write(&tmp, json).map_err(|e| Error::os("write", tmp.display(), e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::os("rename into place", path.display(), e))
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn now_ms(&mut self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

impl LinuxSystem {
    /// (mount point, per-mount options) of every mount, from /proc/self/mountinfo.
    fn mounts(&self) -> Result<Vec<(PathBuf, String)>> {
        let info = self.path("/proc/self/mountinfo");
        let text = fs::read_to_string(&info).map_err(|e| Error::os("read", info.display(), e))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace().skip(4);
                Some((PathBuf::from(unescape_octal(f.next()?)), f.next()?.to_string()))
            })
            .collect())
    }

    /// The mount that holds `path`, and its per-mount flags (kept across a remount).
    fn mount_containing(&self, path: &Path) -> Result<(PathBuf, MsFlags)> {
        let mounts = self.mounts()?;
        let (mount_point, options) = mounts
            .iter()
            .filter(|(m, _)| path.starts_with(m))
            .max_by_key(|(m, _)| m.as_os_str().len())
            .ok_or_else(|| Error::msg(format!("no mount holds {}", path.display())))?;
        Ok((mount_point.clone(), mount_flags(options)))
    }
}

/// The per-mount flags of a mountinfo options field (`rw,nosuid,nodev,relatime`), without `ro`.
fn mount_flags(options: &str) -> MsFlags {
    options.split(',').fold(MsFlags::empty(), |f, o| {
        f | match o {
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            _ => MsFlags::empty(),
        }
    })
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal.
fn unescape_octal(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Extended attributes worth carrying to the skeleton: security labels (SELinux, SMACK,
/// capabilities) and POSIX ACLs. `user.*` and `trusted.*` stay behind.
fn copied_xattr(name: &CString) -> bool {
    let n = name.as_bytes();
    n.starts_with(b"security.") || n.starts_with(b"system.posix_acl_")
}

/// Directories only, recursively, staying on `from`'s file system; owner, mode (incl. sticky and
/// setgid bits), ACLs and security labels copied. Existing directories under `to` are updated.
pub fn copy_dir_tree(from: &Path, to: &Path) -> Result<()> {
    let top = fs::symlink_metadata(from).map_err(|e| Error::os("stat", from.display(), e))?;
    copy_dir(from, to, &top, top.dev())
}

fn copy_dir(from: &Path, to: &Path, meta: &fs::Metadata, dev: u64) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(to) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(Error::os("create directory", to.display(), e))
        }
        _ => {}
    }
    nix::unistd::chown(to, Some(meta.uid().into()), Some(meta.gid().into()))
        .map_err(|e| Error::errno("set owner of", to.display(), e))?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| Error::os("set mode of", to.display(), e))?;
    for name in crate::sys::list_xattrs(from)?.iter().filter(|n| copied_xattr(n)) {
        let value = crate::sys::get_xattr(from, name)?;
        crate::sys::set_xattr(to, name, &value)?;
    }
    let entries = fs::read_dir(from).map_err(|e| Error::os("list", from.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::os("list", from.display(), e))?;
        let m = fs::symlink_metadata(entry.path()).map_err(|e| Error::os("stat", entry.path().display(), e))?;
        if m.is_dir() && m.dev() == dev {
            copy_dir(&entry.path(), &to.join(entry.file_name()), &m, dev)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeleton_copies_directories_with_modes_not_files() {
        let base = std::env::temp_dir().join(format!("ephemcrypt-skel-{}", std::process::id()));
        let (from, to) = (base.join("from"), base.join("to"));
        fs::create_dir_all(from.join("journal/abc")).unwrap();
        fs::create_dir_all(from.join("apt")).unwrap();
        fs::write(from.join("syslog"), "old log").unwrap();
        fs::set_permissions(&from, fs::Permissions::from_mode(0o1777)).unwrap();
        fs::set_permissions(from.join("journal"), fs::Permissions::from_mode(0o2750)).unwrap();
        fs::create_dir_all(&to).unwrap();
        copy_dir_tree(&from, &to).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&to), 0o1777);
        assert_eq!(mode(&to.join("journal")), 0o2750);
        assert!(to.join("journal/abc").is_dir() && to.join("apt").is_dir());
        assert!(!to.join("syslog").exists(), "files are not copied");
        let e = copy_dir_tree(&base.join("missing"), &to).unwrap_err().to_string();
        assert!(e.contains("stat") && e.contains("missing"), "{e}");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn mount_flags_are_kept_across_a_remount() {
        let f = mount_flags("ro,nosuid,nodev,noexec,relatime");
        assert_eq!(f, MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
        assert!(!f.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn programs_are_found_on_path() {
        assert!(find_program(&["no-such-program-x", "sh"]).is_some());
        assert!(find_program(&["no-such-program-x"]).is_none());
    }
}
