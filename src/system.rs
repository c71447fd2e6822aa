//! The seam between the plan and the kernel: every side effect setup has, and every reading of
//! the clock, goes through [`System`]. [`LinuxSystem`] does it for real; the tests' fake records
//! each call, fails one on purpose, and checks that nothing is left behind. No decisions here:
//! each method does one thing the step interpreter (`execute.rs`) asks for.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::config::Fs;
use crate::dirfd::write_atomic;
use crate::dirfd::Dir;
use crate::disk::{mount_holding, parse_mountinfo, DirState, Mount};
use crate::dm::{self, Control, TableLine, Target};
use crate::error::{Error, Result};
use crate::header::Identity;
use crate::key::{self, Key, KeySerial};
use crate::paths::under;
use crate::units::{Bytes, DevNo};

/// Everything setup may do to the machine, and the kernel state it may ask about.
pub(crate) trait System {
    /// Load kernel modules (modprobe; a built-in module needs nothing). Failures are left to the
    /// operation that needs the module. Only here: no other method loads a module behind the
    /// plan's back (the crypt step's crypto API check loads the algorithms it checks).
    fn load_modules(&mut self, modules: &[&str]);
    /// Load what the kernel's crypto API needs for each (AF_ALG type, name), as
    /// [`System::check_kernel_crypto`] does, without failing: that check, at the crypt step, says
    /// what is missing.
    fn load_crypto(&mut self, algorithms: &[(&'static str, String)]);
    /// The loaded dm-crypt target's version ([`Error::NoCryptTarget`] when it is not loaded).
    fn crypt_version(&mut self) -> Result<[u32; 3]>;
    /// The device number of a live mapping, `None` if there is no such mapping.
    fn dm_dev(&mut self, name: &str) -> Result<Option<DevNo>>;
    fn dm_table(&mut self, name: &str) -> Result<Vec<TableLine>>;
    fn is_mountpoint(&mut self, target: &Path) -> Result<bool>;
    /// Whether the directory `path` is there and, if not, how many of its directories are
    /// missing and the read-only mount that would hold it.
    fn dir_state(&mut self, path: &Path) -> Result<DirState>;
    /// A new volume's identity: a random id, this boot's id and the time.
    fn identity(&mut self) -> Result<Identity>;
    /// Check that the kernel's crypto API offers each (AF_ALG type, name), loading modules as
    /// dm-crypt would; the error names what is missing and the modules to add to the image.
    fn check_kernel_crypto(&mut self, algorithms: &[(&'static str, String)]) -> Result<()>;
    /// Write each `(device, bytes)` at the start of the disk `device` (a host path), and flush
    /// them to it, the disks side by side; the first failure in `writes`' order is the error.
    /// `exclusive`: open each disk O_EXCL (it must not be in use); without it, for the escrow
    /// written into the reserved area of a disk our own mapping holds (which starts after it).
    fn write_headers(&mut self, writes: &[(PathBuf, Vec<u8>)], exclusive: bool) -> Result<()>;
    /// A fresh key of `len` random bytes from the kernel's RNG (blocking until seeded).
    fn make_key(&mut self, len: usize) -> Result<Key>;
    /// Put `key` into the process keyring as a logon key whose description starts with `prefix:`
    /// and is unique in this boot; returns its serial and the description.
    fn add_logon_key(&mut self, prefix: &str, key: &Key) -> Result<(KeySerial, String)>;
    fn invalidate_key(&mut self, serial: KeySerial) -> Result<()>;
    /// Create an empty mapping; returns its device number.
    fn dm_create(&mut self, name: &str, uuid: &str) -> Result<DevNo>;
    /// Load a table; `secure`: wipe the ioctl buffers (a key in them); `read_only`: a read-only
    /// table (recovery).
    fn dm_load(&mut self, name: &str, targets: &[Target], secure: bool, read_only: bool) -> Result<()>;
    fn dm_resume(&mut self, name: &str) -> Result<()>;
    fn dm_remove(&mut self, name: &str) -> Result<()>;
    /// Make `/dev/mapper/<name>` where udev has not made it yet: the link udev makes
    /// (`../dm-N`), so that udev, where it runs, adopts it; a node only where there is no
    /// `/dev/dm-N` to link to. True when this call created it.
    fn make_node(&mut self, name: &str, dev: DevNo) -> Result<bool>;
    fn remove_node(&mut self, name: &str) -> Result<()>;
    /// Write a swap signature on `/dev/mapper/<name>` for `len` bytes.
    fn make_swap(&mut self, name: &str, len: Bytes) -> Result<()>;
    fn swapon(&mut self, name: &str) -> Result<()>;
    fn swapoff(&mut self, name: &str) -> Result<()>;
    /// Run a program: exactly `argv`, `argv[0]` looked up on PATH.
    fn run(&mut self, argv: &[String]) -> Result<()>;
    /// Remount the mount at `path` read-only or read-write with the per-mount `options` it had.
    fn remount(&mut self, path: &Path, read_only: bool, options: &[String]) -> Result<()>;
    /// Create one directory (its parent exists) with mode 0755; true when it did not exist.
    fn mkdir(&mut self, path: &Path) -> Result<bool>;
    /// Remove an empty directory that `mkdir` created.
    fn rmdir(&mut self, path: &Path) -> Result<()>;
    fn mount(&mut self, source: &Path, target: &Path, fs: Fs, options: &[String]) -> Result<()>;
    fn bind(&mut self, source: &Path, target: &Path) -> Result<()>;
    /// Mount a tmpfs on `target` with the directory's own mode and owner.
    fn mount_tmpfs(&mut self, target: &Path) -> Result<()>;
    fn umount(&mut self, target: &Path) -> Result<()>;
    /// Recreate the directory tree under `from` (directories only: owner, mode, ACLs, security
    /// labels) under `to`.
    fn copy_skeleton(&mut self, from: &Path, to: &Path) -> Result<()>;
    /// Write a file the operator named (`status --output FILE`; a path on this machine, not under
    /// the host root). Allowed to an observer: it is the command's output, not a change to the
    /// machine it looks at.
    fn write_output(&mut self, path: &Path, text: &str) -> Result<()>;
    /// Read a text file of the new root (a path on this machine); `None` where it is missing.
    fn read_text(&mut self, path: &Path) -> Result<Option<String>>;
    /// What a symbolic link says (not resolved); `None` where `path` is not a link.
    fn link_text(&mut self, path: &Path) -> Option<PathBuf>;
    /// Write `/run/systemd/system/<name>` and the link `<wanted_by>.wants/<name>` to it.
    fn write_unit(&mut self, name: &str, text: &str, wanted_by: &str) -> Result<()>;
    fn remove_unit(&mut self, name: &str, wanted_by: &str) -> Result<()>;
    /// Write the status document to `path` (a host path), atomically.
    fn write_status(&mut self, path: &Path, json: &str) -> Result<()>;
    /// Write the armored escrow to `path` (under /run/ephemcrypt), atomically, mode 0600.
    fn write_escrow(&mut self, path: &Path, text: &str) -> Result<()>;
    fn remove_escrow(&mut self, path: &Path) -> Result<()>;
    /// Write a configuration file for the real root's services to `path` (a host path under
    /// /run), atomically, mode 0644.
    fn write_config(&mut self, path: &Path, text: &str) -> Result<()>;
    fn remove_config(&mut self, path: &Path) -> Result<()>;
    /// Write (`Some`) or remove (`None`) setup's progress record at `path` (a host path); see
    /// progress.rs.
    fn write_progress(&mut self, path: &Path, text: Option<&str>) -> Result<()>;
    /// The progress record at `path` (a host path), if there is one.
    fn read_progress(&mut self, path: &Path) -> Result<Option<String>>;
    /// Send one command to the TPM and read its response: `/dev/tpmrm0` (the kernel's resource
    /// manager), or `/dev/tpm0` only where there is no tpmrm0; `None`: there is no TPM device.
    fn tpm(&mut self, command: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Open systemd's measurement log at `path` (a host path) for appending, making its directory
    /// where missing, and take the exclusive lock systemd takes on it; held until
    /// [`System::unlock_measure_log`].
    fn lock_measure_log(&mut self, path: &Path) -> Result<()>;
    /// Append `record` (if any) to the locked log, then release the lock.
    fn unlock_measure_log(&mut self, record: Option<&str>) -> Result<()>;
    fn sleep_ms(&mut self, ms: u64);
    /// Milliseconds since an arbitrary start.
    fn now_ms(&mut self) -> u64;
}

/// Udev flags on every mapping we make: this tool is the primary source of the event, so the real
/// root's udev treats the device as ready (not `SYSTEMD_READY=0`).
const UDEV_FLAGS: u16 = dm::DM_UDEV_PRIMARY_SOURCE_FLAG;

/// The real machine, seen through a root (`/` at boot).
pub(crate) struct LinuxSystem {
    root: PathBuf,
    /// False for `ephemcrypt plan` and `status`: it may ask the kernel but loads no module and
    /// makes no node, and every method that would change something fails with EROFS.
    changes: bool,
    control: Option<Control>,
    start: Instant,
    /// The measurement log, open and locked between `lock_measure_log` and `unlock_measure_log`.
    measure_log: Option<(nix::fcntl::Flock<fs::File>, PathBuf)>,
}

impl LinuxSystem {
    /// The machine under `root`, for setup.
    pub(crate) fn new(root: impl Into<PathBuf>) -> LinuxSystem {
        LinuxSystem { root: root.into(), changes: true, control: None, start: Instant::now(), measure_log: None }
    }

    /// The machine under `root`, only looked at (for `ephemcrypt plan`).
    pub(crate) fn observer(root: impl Into<PathBuf>) -> LinuxSystem {
        LinuxSystem { changes: false, ..LinuxSystem::new(root) }
    }

    /// Remove the file at host path `p`, through its directory (one already gone is fine).
    fn remove_file(&self, p: &Path) -> Result<()> {
        let path = self.path(p);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::invalid("file path", "a path that ends in a file name", path.display()));
        };
        Dir::open(dir, false)?.remove(name)
    }

    fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        under(&self.root, p.as_ref())
    }

    fn dev_path(&self, name: &str) -> PathBuf {
        self.path(Path::new("/dev/mapper").join(name))
    }

    fn may_change(&self, what: &'static str, object: impl std::fmt::Display) -> Result<()> {
        if !self.changes {
            return Err(Error::os(what, object, io::Error::from_raw_os_error(libc::EROFS)));
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::inject(what, &object.to_string())?;
        Ok(())
    }

    /// The control device, made and opened on first use.
    fn control(&mut self) -> Result<&Control> {
        if self.control.is_none() {
            let path = self.path("/dev/mapper/control");
            if !path.exists() && self.changes {
                // devtmpfs makes the node when dm_mod loads (load_modules); make it from sysfs only
                // where nothing did (no devtmpfs), and accept one that appears meanwhile.
                let misc = self.path("/sys/class/misc/device-mapper/dev");
                match fs::read_to_string(&misc).ok().and_then(|t| DevNo::parse(&t)) {
                    Some(dev) if !path.exists() => match self.mknod(&path, SFlag::S_IFCHR, dev) {
                        Err(e) if e.errno_value() == Some(libc::EEXIST) => {}
                        r => r?,
                    },
                    _ => {}
                }
            }
            self.control = Some(Control::open(&path)?);
        }
        self.control.as_ref().ok_or(Error::Internal("the control device is opened above"))
    }

    /// Load a kernel module with modprobe where there is one (an initramfs has it; a built-in
    /// module needs nothing). Failures are left to the operation that needs the module. Never
    /// for a `--host` tree other than `/` (that is not the running machine), nor for `plan`.
    /// A module already in the kernel (the usual case: udev or an earlier step loaded it) costs
    /// no modprobe: under emulation each exec of it costs tens of milliseconds.
    fn modprobe(&self, module: &str) {
        if self.root != Path::new("/") || !self.changes || module_present(&self.path("/sys/module"), module) {
            return;
        }
        if let Some(p) = find_program("modprobe") {
            let _ = crate::syscall::spawn_wait(&p, &["-q".to_string(), module.to_string()]);
        }
    }

    /// The mounts of this machine, from /proc/self/mountinfo (none in a `--host` tree without it).
    fn mounts(&self) -> Result<Vec<Mount>> {
        let info = self.path("/proc/self/mountinfo");
        match fs::read_to_string(&info) {
            Ok(text) => Ok(parse_mountinfo(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.root != Path::new("/") => Ok(Vec::new()),
            Err(e) => Err(Error::os("read", info.display(), e)),
        }
    }

    /// The kernel's name of device-mapper device `dev` (`dm-3`, its node in /dev), from sysfs;
    /// `None` where sysfs does not name it `dm-N`.
    fn kernel_name(&self, dev: DevNo) -> Option<String> {
        let sys = fs::read_link(self.path(format!("/sys/dev/block/{dev}"))).ok()?;
        let name = sys.file_name()?.to_str()?;
        let n = name.strip_prefix("dm-")?;
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| name.to_string())
    }

    fn mknod(&self, path: &Path, kind: SFlag, dev: DevNo) -> Result<()> {
        make_dir_all(path.parent())?;
        nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(0o600), dev.to_dev_t())
            .map_err(|e| Error::errno("create device node", path.display(), e))
    }
}

/// Whether module `name` (as modprobe takes it: `dm_mod`, `dm-crypt`) is loaded and live under
/// sysfs module directory `sys_module` (`NAME/initstate` reads `live`). One still loading
/// (`coming`, or its directory made before its `initstate`) is not: modprobe waits for it. A
/// built-in module (a directory without `initstate`, or none) is asked for too: modprobe finds it
/// in modules.builtin at the cost of one run. An alias (`crypto-xts`) never names a directory.
fn module_present(sys_module: &Path, name: &str) -> bool {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return false;
    }
    let dir = sys_module.join(name.replace('-', "_"));
    fs::read(dir.join("initstate")).is_ok_and(|state| state.trim_ascii() == b"live")
}

/// Create directory `dir` (mode 0755) and its missing parents.
fn make_dir_all(dir: Option<&Path>) -> Result<()> {
    match dir {
        Some(dir) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| Error::os("create directory", dir.display(), e)),
        None => Ok(()),
    }
}

/// `name` found on PATH (or in the usual sbin/bin directories).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"]).filter(|d| !d.is_empty());
    let found = dirs
        .map(|d| Path::new(d).join(name))
        .find(|p| fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false));
    found
}

/// Its last lines (at most three), joined: what a failed program said last.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.iter().skip(lines.len().saturating_sub(3)).copied().collect::<Vec<_>>().join(" / ")
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

/// Mount flags for option words; the rest go to the file system as data.
fn mount_flags(options: &[String]) -> (MsFlags, Vec<&str>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        flags |= match o.as_str() {
            "ro" => MsFlags::MS_RDONLY,
            "rw" => MsFlags::empty(),
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            other => {
                data.push(other);
                MsFlags::empty()
            }
        };
    }
    (flags, data)
}

impl System for LinuxSystem {
    fn load_modules(&mut self, modules: &[&str]) {
        for m in modules {
            self.modprobe(m);
        }
    }

    fn load_crypto(&mut self, algorithms: &[(&'static str, String)]) {
        if let Err(e) = crate::syscall::check_kernel_crypto(algorithms, |module| self.modprobe(module)) {
            log::debug!("before the crypt step: {e}");
        }
    }

    fn crypt_version(&mut self) -> Result<[u32; 3]> {
        let find = |c: &Control| -> Result<Option<[u32; 3]>> {
            Ok(c.target_versions()?.into_iter().find(|t| t.name == "crypt").map(|t| t.version))
        };
        // The crypt target registers when its module loads (load_modules): the kernel would load
        // it on the first table load, but its version is needed before that.
        find(self.control()?)?.ok_or(Error::NoCryptTarget)
    }

    fn dm_dev(&mut self, name: &str) -> Result<Option<DevNo>> {
        // Asked first on every boot, also on machines without local disks: without device-mapper
        // in the kernel yet there can be no mapping, and no reason to load the module.
        if self.control.is_none() {
            let no_dm = !self.path("/sys/class/misc/device-mapper").exists();
            // `plan` makes no control node: without one there is nothing to ask.
            let no_node = !self.changes && !self.path("/dev/mapper/control").exists();
            if no_dm || no_node {
                return Ok(None);
            }
        }
        Ok(self.control()?.info(name)?.filter(|i| i.active).map(|i| i.dev))
    }

    fn dm_table(&mut self, name: &str) -> Result<Vec<TableLine>> {
        self.control()?.table(name)
    }

    fn is_mountpoint(&mut self, target: &Path) -> Result<bool> {
        Ok(self.mounts()?.iter().any(|m| m.target == target))
    }

    /// `path` is on this machine (the new root is mounted here); which mounts are read-only comes
    /// from the host root's /proc/self/mountinfo.
    fn dir_state(&mut self, path: &Path) -> Result<DirState> {
        if path.is_dir() {
            return Ok(DirState::Present);
        }
        // Count the missing directories up to the first thing that exists (a file there makes
        // the mkdir fail, naming it).
        let depth = path.ancestors().take_while(|a| fs::symlink_metadata(a).is_err()).count().max(1);
        let mounts = self.mounts()?;
        Ok(DirState::Missing { depth, read_only: mount_holding(&mounts, path).filter(|m| m.read_only()).cloned() })
    }

    fn identity(&mut self) -> Result<Identity> {
        let random = Key::generate(16)?;
        let path = self.path("/proc/sys/kernel/random/boot_id");
        let text = fs::read_to_string(&path).map_err(|e| Error::os("read", path.display(), e))?;
        let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
        let mut boot_id = [0u8; 16];
        for (i, b) in boot_id.iter_mut().enumerate() {
            *b = hex
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::invalid(path.display(), "a UUID", text.trim()))?;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let volume_id = random.expose().try_into().map_err(|_| Error::Internal("a 16-byte random volume id"))?;
        Ok(Identity { volume_id, boot_id, now })
    }

    fn check_kernel_crypto(&mut self, algorithms: &[(&'static str, String)]) -> Result<()> {
        crate::syscall::check_kernel_crypto(algorithms, |module| self.modprobe(module))
    }

    fn write_headers(&mut self, writes: &[(PathBuf, Vec<u8>)], exclusive: bool) -> Result<()> {
        let paths: Vec<PathBuf> = writes.iter().map(|(d, _)| self.path(d)).collect();
        // Allowed (and, in the fault-injection build, the faults asked for) before any write.
        for p in &paths {
            self.may_change("write header to", p.display())?;
        }
        // One thread per disk (a volume has at most 64): each write waits for its own disk's flush.
        let one = |path: &Path, bytes: &[u8]| -> Result<()> {
            let f = fs::OpenOptions::new()
                .write(true)
                // A block device open O_EXCL fails while it is in use.
                .custom_flags(if exclusive { libc::O_EXCL } else { 0 })
                .open(path)
                .map_err(|e| Error::os("open for the header", path.display(), e))?;
            use std::os::unix::fs::FileExt;
            f.write_all_at(bytes, 0)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::os("write header to", path.display(), e))
        };
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let threads: Vec<_> = paths
                .iter()
                .zip(writes)
                .map(|(p, (_, bytes))| {
                    std::thread::Builder::new().name("header".into()).spawn_scoped(s, move || one(p, bytes))
                })
                .collect();
            // A thread that could not start: its write is made here, after the others started.
            threads
                .into_iter()
                .zip(paths.iter().zip(writes))
                .map(|(t, (p, (_, bytes)))| match t {
                    Ok(t) => t.join().unwrap_or(Err(Error::Internal("a header write ended abnormally"))),
                    Err(_) => one(p, bytes),
                })
                .collect()
        });
        results.into_iter().collect()
    }

    fn make_key(&mut self, len: usize) -> Result<Key> {
        #[cfg(feature = "fault-injection")]
        crate::fault::inject("random key", &format!("{len} bytes"))?;
        let start = self.now_ms();
        let key = Key::generate(len)?;
        let waited = self.now_ms() - start;
        if waited >= 100 {
            log::info!("the kernel's random number generator gave the key after {waited} ms");
        }
        Ok(key)
    }

    /// The description is `<prefix>:<pid>-<nanoseconds>-<n>`: unique per call within a boot, so a
    /// retried run never picks up a stale key.
    fn add_logon_key(&mut self, prefix: &str, k: &Key) -> Result<(KeySerial, String)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        self.may_change("add logon key", prefix)?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let description = format!("{prefix}:{}-{nanos}-{n}", std::process::id());
        Ok((key::add_logon_key(&description, k)?, description))
    }

    fn invalidate_key(&mut self, serial: KeySerial) -> Result<()> {
        key::invalidate_key(serial)
    }

    fn dm_create(&mut self, name: &str, uuid: &str) -> Result<DevNo> {
        self.may_change("device-mapper create", name)?;
        self.control()?.create(name, uuid, UDEV_FLAGS)
    }

    fn dm_load(&mut self, name: &str, targets: &[Target], secure: bool, read_only: bool) -> Result<()> {
        self.may_change("device-mapper table load", name)?;
        self.control()?.load(name, targets, secure, read_only)
    }

    fn dm_resume(&mut self, name: &str) -> Result<()> {
        self.may_change("device-mapper resume", name)?;
        self.control()?.resume(name, UDEV_FLAGS)
    }

    fn dm_remove(&mut self, name: &str) -> Result<()> {
        self.may_change("device-mapper remove", name)?;
        self.control()?.remove(name, UDEV_FLAGS)
    }

    fn make_node(&mut self, name: &str, dev: DevNo) -> Result<bool> {
        let path = self.dev_path(name);
        self.may_change("create device node", path.display())?;
        let ours =
            |p: &Path| fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == dev.to_dev_t());
        if ours(&path) {
            return Ok(false); // udev was first (its link to /dev/dm-N)
        }
        if fs::symlink_metadata(&path).is_ok() {
            // A node or link of an earlier mapping of that name (a link that leads nowhere too).
            fs::remove_file(&path).map_err(|e| Error::os("remove stale device node", path.display(), e))?;
        }
        // udev owns /dev/mapper where it runs: it names /dev/mapper/<name> a link to the kernel's
        // node (09-ephemcrypt.rules), and replaces a link there, but not a node ("Failed to
        // create/update device symlink ... File exists", in the initramfs and again in the real
        // root). So, until it has handled the mapping's event (or where no udev runs), the same
        // link; a node only where devtmpfs made no /dev/dm-N.
        let Some(kernel) = self.kernel_name(dev).filter(|n| ours(&self.path("/dev").join(n))) else {
            self.mknod(&path, SFlag::S_IFBLK, dev)?;
            return Ok(true);
        };
        make_dir_all(path.parent())?;
        match std::os::unix::fs::symlink(Path::new("..").join(kernel), &path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && ours(&path) => Ok(false), // udev, meanwhile
            Err(e) => Err(Error::os("create device link", path.display(), e)),
            Ok(()) => Ok(true),
        }
    }

    fn remove_node(&mut self, name: &str) -> Result<()> {
        let path = self.dev_path(name);
        self.may_change("remove device node", path.display())?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::os("remove device node", path.display(), e)),
            _ => Ok(()),
        }
    }

    fn make_swap(&mut self, name: &str, len: Bytes) -> Result<()> {
        let path = self.dev_path(name);
        self.may_change("write swap signature", path.display())?;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(4096);
        let header = crate::swap::header(page, len.0, random_uuid()?, name)
            .map_err(|e| Error::invalid(format!("swap area /dev/mapper/{name}"), "10 pages to 16 TiB", e))?;
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
        self.may_change("swapon", name)?;
        crate::syscall::swapon(&self.dev_path(name))
    }

    fn swapoff(&mut self, name: &str) -> Result<()> {
        self.may_change("swapoff", name)?;
        crate::syscall::swapoff(&self.dev_path(name))
    }

    fn run(&mut self, argv: &[String]) -> Result<()> {
        let (name, args) = argv.split_first().ok_or(Error::Internal("a program to run"))?;
        self.may_change("run", name)?;
        let program = find_program(name).ok_or_else(|| Error::ProgramNotFound { program: name.clone() })?;
        log::info!("running {}", argv.join(" "));
        let out = crate::syscall::spawn_wait(&program, args).map_err(|e| Error::os("run", program.display(), e))?;
        if out.success {
            return Ok(());
        }
        Err(Error::Program {
            argv: argv.to_vec(),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr)),
        })
    }

    fn remount(&mut self, path: &Path, read_only: bool, options: &[String]) -> Result<()> {
        self.may_change("remount", path.display())?;
        let (mut flags, _) = mount_flags(options);
        flags |= MsFlags::MS_REMOUNT;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        nix::mount::mount(None::<&str>, path, None::<&str>, flags, None::<&str>).map_err(|e| {
            let how = if read_only { "read-only" } else { "read-write" };
            Error::errno("remount", format!("{} {how}", path.display()), e)
        })
    }

    fn mkdir(&mut self, path: &Path) -> Result<bool> {
        if path.is_dir() {
            return Ok(false);
        }
        self.may_change("create directory", path.display())?;
        make_dir(path, 0o755).map(|()| true)
    }

    fn rmdir(&mut self, path: &Path) -> Result<()> {
        self.may_change("remove directory", path.display())?;
        fs::remove_dir(path).map_err(|e| Error::os("remove directory", path.display(), e))
    }

    fn mount(&mut self, source: &Path, target: &Path, fs: Fs, options: &[String]) -> Result<()> {
        self.may_change("mount", target.display())?;
        let dev = self.path(source);
        let (flags, data) = mount_flags(options);
        let data = (!data.is_empty()).then(|| data.join(","));
        // The file system's root takes the label of the directory it covers (read before it is
        // covered): see Step::Mount.
        let labels = labels(target)?;
        nix::mount::mount(Some(&dev), target, Some(fs.name()), flags, data.as_deref())
            .map_err(|e| Error::errno("mount", format!("{} on {}", dev.display(), target.display()), e))?;
        set_labels(target, &labels).inspect_err(|_| {
            let _ = nix::mount::umount2(target, MntFlags::empty());
        })
    }

    fn bind(&mut self, source: &Path, target: &Path) -> Result<()> {
        self.may_change("bind-mount", target.display())?;
        nix::mount::mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::errno("bind-mount", format!("{} on {}", source.display(), target.display()), e))
    }

    fn mount_tmpfs(&mut self, target: &Path) -> Result<()> {
        self.may_change("mount tmpfs", target.display())?;
        let m = fs::metadata(target).map_err(|e| Error::os("stat", target.display(), e))?;
        let data = format!("mode={:o},uid={},gid={}", m.mode() & 0o7777, m.uid(), m.gid());
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        nix::mount::mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(data.as_str()))
            .map_err(|e| Error::errno("mount tmpfs", target.display(), e))
    }

    fn umount(&mut self, target: &Path) -> Result<()> {
        self.may_change("unmount", target.display())?;
        nix::mount::umount2(target, MntFlags::empty()).map_err(|e| Error::errno("unmount", target.display(), e))
    }

    fn copy_skeleton(&mut self, from: &Path, to: &Path) -> Result<()> {
        self.may_change("copy the directories of", from.display())?;
        copy_skeleton(from, to)
    }

    /// Through [`Dir`], as every file ephemcrypt writes.
    fn write_output(&mut self, path: &Path, text: &str) -> Result<()> {
        write_atomic(path, text, 0o644)
    }

    fn read_text(&mut self, path: &Path) -> Result<Option<String>> {
        match fs::read(path) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::os("read", path.display(), e)),
        }
    }

    fn link_text(&mut self, path: &Path) -> Option<PathBuf> {
        fs::read_link(path).ok()
    }

    fn write_unit(&mut self, name: &str, text: &str, wanted_by: &str) -> Result<()> {
        let dir = self.path("/run/systemd/system");
        self.may_change("write unit", dir.join(name).display())?;
        let units = Dir::open(&dir, true)?;
        units.write_file(OsStr::new(name), text.as_bytes(), 0o644)?;
        let wants = units.child(OsStr::new(&format!("{wanted_by}.wants")), true)?;
        wants.symlink(&Path::new("..").join(name), OsStr::new(name))
    }

    fn remove_unit(&mut self, name: &str, wanted_by: &str) -> Result<()> {
        let dir = self.path("/run/systemd/system");
        self.may_change("remove unit", dir.join(name).display())?;
        let units = match Dir::open(&dir, false) {
            Err(e) if e.errno_value() == Some(libc::ENOENT) => return Ok(()),
            r => r?,
        };
        match units.child(OsStr::new(&format!("{wanted_by}.wants")), false) {
            Err(e) if e.errno_value() == Some(libc::ENOENT) => {}
            r => r?.remove(OsStr::new(name))?,
        }
        units.remove(OsStr::new(name))
    }

    fn write_status(&mut self, path: &Path, json: &str) -> Result<()> {
        self.may_change("write", path.display())?;
        write_atomic(&self.path(path), json, 0o644)
    }

    fn write_escrow(&mut self, path: &Path, text: &str) -> Result<()> {
        self.may_change("write", path.display())?;
        write_atomic(&self.path(path), text, 0o600)
    }

    fn remove_escrow(&mut self, path: &Path) -> Result<()> {
        self.may_change("remove", path.display())?;
        self.remove_file(path)
    }

    fn write_config(&mut self, path: &Path, text: &str) -> Result<()> {
        self.may_change("write", path.display())?;
        write_atomic(&self.path(path), text, 0o644)
    }

    fn remove_config(&mut self, path: &Path) -> Result<()> {
        self.may_change("remove", path.display())?;
        self.remove_file(path)
    }

    fn write_progress(&mut self, path: &Path, text: Option<&str>) -> Result<()> {
        self.may_change("write", path.display())?;
        let path = self.path(path);
        match text {
            Some(text) => write_atomic(&path, text, 0o644),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::os("remove", path.display(), e)),
                _ => Ok(()),
            },
        }
    }

    fn read_progress(&mut self, path: &Path) -> Result<Option<String>> {
        let path = self.path(path);
        match fs::read(&path) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::os("read", path.display(), e)),
        }
    }

    fn tpm(&mut self, command: &[u8]) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        use std::os::unix::fs::FileTypeExt;
        let rm = self.path("/dev/tpmrm0");
        let dev = if fs::symlink_metadata(&rm).is_ok() { rm } else { self.path("/dev/tpm0") };
        self.may_change("send a TPM command to", dev.display())?;
        let open = fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(&dev);
        let mut f = match open {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            r => r.map_err(|e| Error::os("open", dev.display(), e))?,
        };
        let meta = f.metadata().map_err(|e| Error::os("stat", dev.display(), e))?;
        if !meta.file_type().is_char_device() {
            return Err(Error::invalid(dev.display(), "a character device", "another kind of file"));
        }
        // The TPM driver takes a command in one write and gives the response in one read.
        let written = f.write(command).map_err(|e| Error::os("write a TPM command to", dev.display(), e))?;
        if written != command.len() {
            return Err(Error::invalid(dev.display(), "the whole command written", format!("{written} bytes")));
        }
        let mut buf = vec![0u8; crate::tpm::codec::MAX_RESPONSE + 1];
        let n = f.read(&mut buf).map_err(|e| Error::os("read a TPM response from", dev.display(), e))?;
        buf.truncate(n);
        Ok(Some(buf))
    }

    fn lock_measure_log(&mut self, path: &Path) -> Result<()> {
        use nix::fcntl::{Flock, FlockArg};
        self.may_change("append to", path.display())?;
        let path = self.path(path);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::invalid("measurement log", "a path that ends in a file name", path.display()));
        };
        let file = Dir::open(dir, true)?.open_append(name, 0o600)?;
        let log =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| Error::errno("lock", path.display(), e))?;
        let meta = log.metadata().map_err(|e| Error::os("stat", path.display(), e))?;
        // systemd's protocol: the sticky bit is set while a record is appended and cleared after;
        // a log found with it set has a half-written record, and nothing more is appended.
        if meta.mode() & libc::S_ISVTX != 0 {
            return Err(Error::invalid(path.display(), "a complete log", "a half-written record (sticky bit set)"));
        }
        log.set_permissions(fs::Permissions::from_mode(0o600 | libc::S_ISVTX))
            .map_err(|e| Error::os("mark as being appended to", path.display(), e))?;
        self.measure_log = Some((log, path));
        Ok(())
    }

    fn unlock_measure_log(&mut self, record: Option<&str>) -> Result<()> {
        let Some((mut log, path)) = self.measure_log.take() else {
            return Err(Error::Internal("the measurement log is locked before it is appended to"));
        };
        if let Some(r) = record {
            log.write_all(r.as_bytes())
                .and_then(|()| log.sync_data())
                .map_err(|e| Error::os("append to", path.display(), e))?;
        }
        log.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| Error::os("chmod", path.display(), e))
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn now_ms(&mut self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The directories of `from` copied to `to`, whose parents are made where missing (e.g.
/// <volume>/var for /var/log: on the new file system, gone with it).
fn copy_skeleton(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        let missing: Vec<&Path> = parent.ancestors().take_while(|d| !d.is_dir()).collect();
        for dir in missing.into_iter().rev() {
            make_dir(dir, 0o755)?;
        }
    }
    copy_dir_tree(from, to)
}

/// The extended attributes that are security labels: SELinux's context and SMACK's label.
const LABELS: [&[u8]; 2] = [b"security.selinux", b"security.SMACK64"];

/// Extended attributes worth carrying to the skeleton: the security labels, SMACK's transmute
/// flag and POSIX ACLs. `user.*`, `trusted.*`, file capabilities and IMA/EVM's signatures and
/// hashes (bound to the inode they were made for) stay behind.
fn copied_xattr(name: &CString) -> bool {
    let n = name.as_bytes();
    LABELS.contains(&n) || n == b"security.SMACK64TRANSMUTE" || n.starts_with(b"system.posix_acl_")
}

/// The security labels `path` has (none where its file system keeps no extended attributes).
fn labels(path: &Path) -> Result<Vec<(CString, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in crate::syscall::list_xattrs(path)? {
        if LABELS.contains(&name.as_bytes()) {
            let value = crate::syscall::get_xattr(path, &name)?;
            out.push((name, value));
        }
    }
    Ok(out)
}

fn set_labels(path: &Path, labels: &[(CString, Vec<u8>)]) -> Result<()> {
    labels.iter().try_for_each(|(name, value)| crate::syscall::set_xattr(path, name, value))
}

/// Create the directory `path` (its parent exists) with `mode` and its parent's security labels:
/// what the kernel gives a new directory under a loaded policy that has no rule of its own for it
/// (SELinux: the parent's type). In the initramfs no policy is loaded yet: a directory made there
/// would stay unlabelled (`unlabeled_t`, which confined services may not use) in the real root.
/// Before a policy is loaded the kernel reads and writes `security.selinux` as stored on disk.
fn make_dir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new().mode(mode).create(path).map_err(|e| Error::os("create directory", path.display(), e))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    labels(parent).and_then(|labels| set_labels(path, &labels)).inspect_err(|_| {
        let _ = fs::remove_dir(path);
    })
}

/// Directories only, recursively, staying on `from`'s file system; owner, mode (incl. sticky and
/// setgid bits), ACLs and security labels copied. Existing directories under `to` are updated.
pub(crate) fn copy_dir_tree(from: &Path, to: &Path) -> Result<()> {
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
    for name in crate::syscall::list_xattrs(from)?.iter().filter(|n| copied_xattr(n)) {
        let value = crate::syscall::get_xattr(from, name)?;
        crate::syscall::set_xattr(to, name, &value)?;
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

    /// modprobe is spawned only for a module that is not in the kernel yet (issue 22: each
    /// spawn costs tens of milliseconds under emulation).
    #[test]
    fn a_module_already_in_the_kernel_is_not_loaded_again() {
        let base = std::env::temp_dir().join(format!("ephemcrypt-modules-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        for (name, state) in [("dm_mod", Some("live\n")), ("dm_crypt", Some("coming\n")), ("aes_generic", None)] {
            fs::create_dir_all(base.join(name)).unwrap();
            if let Some(state) = state {
                fs::write(base.join(name).join("initstate"), state).unwrap();
            }
        }
        assert!(module_present(&base, "dm_mod") && module_present(&base, "dm-mod"), "loaded");
        assert!(!module_present(&base, "dm_crypt"), "still loading: modprobe waits for it");
        // A directory without initstate: built in, or a module whose load has just begun (the
        // kernel makes the directory first): modprobe is run, and waits for the latter.
        assert!(!module_present(&base, "aes_generic"), "no initstate yet");
        assert!(!module_present(&base, "xts") && !module_present(&base, "crypto-xts(aes)"), "absent, an alias");
        assert!(!module_present(&base, "../modules/dm_mod") && !module_present(&base, ""), "not a module name");
        fs::remove_dir_all(&base).unwrap();
    }

    /// A directory made by ephemcrypt carries its parent's security label; the skeleton carries
    /// labels and ACLs but not inode-bound IMA/EVM data or capabilities.
    #[test]
    #[ignore = "needs security.* extended attributes in the temporary directory: make unit runs it where they are"]
    fn new_directories_take_their_parents_label() {
        let base = std::env::temp_dir().join(format!("ephemcrypt-label-{}", std::process::id()));
        fs::create_dir_all(&base).unwrap();
        let name = CString::new("security.selinux").unwrap();
        let label = b"system_u:object_r:mnt_t:s0\0";
        crate::syscall::set_xattr(&base, &name, label).unwrap();
        let mut sys = LinuxSystem::new("/");
        assert!(sys.mkdir(&base.join("a")).unwrap());
        assert_eq!(crate::syscall::get_xattr(&base.join("a"), &name).unwrap(), label);
        copy_skeleton(&base.join("a"), &base.join("x/y/z")).unwrap();
        for d in ["x", "x/y", "x/y/z"] {
            assert_eq!(crate::syscall::get_xattr(&base.join(d), &name).unwrap(), label, "{d}");
        }
        assert!(copied_xattr(&name) && copied_xattr(&CString::new("system.posix_acl_default").unwrap()));
        for n in ["security.evm", "security.ima", "security.capability", "user.x", "trusted.x"] {
            assert!(!copied_xattr(&CString::new(n).unwrap()), "{n}");
        }
        fs::remove_dir_all(&base).unwrap();
    }

    /// udev owns /dev/mapper: ephemcrypt makes the link udev would make (`../dm-N`), which udev
    /// replaces without complaint, never a node where the kernel's node is there to link to.
    #[test]
    #[ignore = "makes block device nodes (root only): make unit runs it as root"]
    fn mapper_entries_are_links_udev_can_take_over() {
        let root = std::env::temp_dir().join(format!("ephemcrypt-mapper-{}", std::process::id()));
        let dev = DevNo { major: 253, minor: 3 };
        let node = |p: &Path, d: DevNo| {
            nix::sys::stat::mknod(p, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), d.to_dev_t()).unwrap()
        };
        fs::create_dir_all(root.join("sys/dev/block")).unwrap();
        fs::create_dir_all(root.join("dev/mapper")).unwrap();
        std::os::unix::fs::symlink("../../devices/virtual/block/dm-3", root.join("sys/dev/block/253:3")).unwrap();
        node(&root.join("dev/dm-3"), dev);
        let mut sys = LinuxSystem::new(&root);
        assert!(sys.make_node("v", dev).unwrap());
        assert_eq!(fs::read_link(root.join("dev/mapper/v")).unwrap(), Path::new("../dm-3"));
        // udev was first (or replaced ours): nothing to do, and nothing to remove on undo.
        assert!(!sys.make_node("v", dev).unwrap());
        // A stale node of an earlier mapping of that name gives way to the link.
        node(&root.join("dev/mapper/w"), DevNo { major: 253, minor: 9 });
        assert!(sys.make_node("w", dev).unwrap());
        assert_eq!(fs::read_link(root.join("dev/mapper/w")).unwrap(), Path::new("../dm-3"));
        // No /dev/dm-N (no devtmpfs): a node, as before.
        let other = DevNo { major: 253, minor: 4 };
        std::os::unix::fs::symlink("../../devices/virtual/block/dm-4", root.join("sys/dev/block/253:4")).unwrap();
        assert!(sys.make_node("x", other).unwrap());
        let m = fs::symlink_metadata(root.join("dev/mapper/x")).unwrap();
        assert!(m.file_type().is_block_device() && m.rdev() == other.to_dev_t());
        sys.remove_node("v").unwrap();
        assert!(fs::symlink_metadata(root.join("dev/mapper/v")).is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn mount_option_words() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = words(&["ro", "nosuid", "nodev", "noexec", "relatime", "size=10m"]);
        let (f, data) = mount_flags(&all);
        assert_eq!(
            f,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert_eq!(data, ["size=10m"]);
        assert_eq!(mount_flags(&words(&["rw"])).0, MsFlags::empty());
    }

    #[test]
    fn programs_are_found_on_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-x").is_none());
    }

    #[test]
    fn a_failed_program_is_reported_with_its_status_and_stderr() {
        let mut sys = LinuxSystem::new("/");
        let argv: Vec<String> = ["sh", "-c", "echo one >&2; echo two >&2; echo; echo three >&2; echo last >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = sys.run(&argv).unwrap_err();
        match &e {
            Error::Program { status, stderr, .. } => {
                assert_eq!(status, "exit status: 3");
                assert_eq!(stderr, "two / three / last");
            }
            other => panic!("{other:?}"),
        }
        let missing = sys.run(&["no-such-mkfs".to_string()]).unwrap_err();
        assert_eq!(missing.to_string(), "run no-such-mkfs: not found on PATH (add it to the initramfs)");
    }

    #[test]
    fn a_program_runs_with_null_stdio_default_sigpipe_and_a_bounded_stderr() {
        let sh = find_program("sh").unwrap();
        let run = |script: &str| crate::syscall::spawn_wait(&sh, &["-c".to_string(), script.to_string()]).unwrap();
        // stdin is /dev/null (EOF at once), stdout goes nowhere, stderr is kept.
        let out = run("read x || echo stdin-eof >&2; echo to-stdout; exit 0");
        assert!(out.success, "{}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "stdin-eof\n");
        // SIGPIPE is back to its default in the child, which this test process ignores.
        let out = run("trap - PIPE; kill -PIPE $$");
        assert!(!out.success);
        assert_eq!(out.status, "signal: 13 (SIGPIPE)");
        let out = run("kill -KILL $$");
        assert_eq!(out.status, "signal: 9 (SIGKILL)");
        // A chatty program: only the last 8 KiB are kept, and it is not blocked on a full pipe.
        let out = run("i=0; while [ $i -lt 3000 ]; do echo line-$i >&2; i=$((i+1)); done; exit 7");
        assert_eq!(out.status, "exit status: 7");
        assert_eq!(out.stderr.len(), 8 << 10);
        assert!(String::from_utf8_lossy(&out.stderr).ends_with("line-2999\n"));
        // The environment is passed on.
        let out = run("echo \"$PATH\" >&2");
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{}\n", std::env::var("PATH").unwrap()));
        // Bad input is refused before anything runs.
        let e = crate::syscall::spawn_wait(&sh, &["a\0b".to_string()]).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = crate::syscall::spawn_wait(Path::new("/nonexistent/prog"), &[]).err().unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn units_status_and_escrow_are_written_through_no_planted_link() {
        use std::os::unix::fs::symlink;
        let root = std::env::temp_dir().join(format!("ephemcrypt-units-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let units = root.join("run/systemd/system");
        fs::create_dir_all(units.join("multi-user.target.wants")).unwrap();
        fs::create_dir_all(root.join("run/ephemcrypt")).unwrap();
        let victim = root.join("victim");
        fs::write(&victim, "precious").unwrap();
        for p in [
            units.join("ephemcrypt-guard.service"),
            units.join(".ephemcrypt-guard.service.tmp"),
            root.join("run/ephemcrypt/.status.json.tmp"),
            root.join("run/ephemcrypt/.escrow.age.tmp"),
            root.join("run/ephemcrypt/escrow.age"),
        ] {
            symlink(&victim, p).unwrap();
        }
        let mut sys = LinuxSystem::new(&root);
        sys.write_unit("ephemcrypt-guard.service", "[Unit]\n", "multi-user.target").unwrap();
        sys.write_status(Path::new("/run/ephemcrypt/status.json"), "{}").unwrap();
        sys.write_escrow(Path::new("/run/ephemcrypt/escrow.age"), "armor").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(fs::read_to_string(units.join("ephemcrypt-guard.service")).unwrap(), "[Unit]\n");
        let link = units.join("multi-user.target.wants/ephemcrypt-guard.service");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("../ephemcrypt-guard.service"));
        let escrow = fs::symlink_metadata(root.join("run/ephemcrypt/escrow.age")).unwrap();
        assert!(escrow.is_file() && escrow.mode() & 0o7777 == 0o600);
        sys.remove_unit("ephemcrypt-guard.service", "multi-user.target").unwrap();
        assert!(!link.exists() && !units.join("ephemcrypt-guard.service").exists());
        sys.remove_escrow(Path::new("/run/ephemcrypt/escrow.age")).unwrap();
        assert!(!root.join("run/ephemcrypt/escrow.age").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_observer_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("ephemcrypt-observer-{}", std::process::id()));
        let mut sys = LinuxSystem::observer("/");
        let e = sys.mkdir(&dir).unwrap_err();
        assert!(e.to_string().contains("(EROFS)"), "{e}");
        assert!(!dir.exists());
        assert!(sys.run(&["true".to_string()]).is_err());
        assert!(sys.write_status(Path::new("/run/x.json"), "{}").is_err());
        assert!(sys.umount(Path::new("/nonexistent")).unwrap_err().to_string().contains("EROFS"));
    }
}
