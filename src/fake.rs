//! Test doubles: a fake kernel ([`Fake`], a recording [`System`] that can fail any call) and
//! host trees in temporary directories ([`Tree`]), so that setup runs whole, from reading the
//! host to writing the status, without a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::config::Fs;
use crate::disk::{DirState, Mount};
use crate::dm::{TableLine, Target};
use crate::error::{Error, Result};
use crate::key::{Key, KeySerial};
use crate::system::System;
use crate::units::{Bytes, DevNo};

/// What [`Fake::die_at`] panics with: the process died there.
#[derive(Debug)]
pub(crate) struct Died;

/// The byte every fake key is made of: tests look for it in everything printed.
pub(crate) const PLANTED: u8 = 0xA5;

/// A kernel that remembers what exists, records every call that changes something and fails
/// the `fail_at`-th one (counting from 0).
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) calls: Vec<String>,
    pub(crate) fail_at: Option<usize>,
    /// More calls to fail, by number (an undo call after the first failure, say).
    pub(crate) fail_also: BTreeSet<usize>,
    /// Fail every call whose text starts with this, not only one.
    pub(crate) fail_all: Option<String>,
    /// How many more removes of a mapping fail with EBUSY (udev probing it).
    pub(crate) busy: BTreeMap<String, u32>,
    pub(crate) crypt_version: Option<[u32; 3]>,
    /// Modules loaded (load_modules cannot fail: not one of the numbered calls).
    pub(crate) modules: Vec<String>,
    pub(crate) next_minor: u32,
    pub(crate) mappings: BTreeMap<String, DevNo>,
    pub(crate) live: BTreeSet<String>,
    /// Every table loaded, as the kernel got it (keys included: tests look for leaks elsewhere).
    pub(crate) tables: Vec<String>,
    /// The table lines of each mapping, as `dmsetup table` shows them.
    pub(crate) loaded: BTreeMap<String, Vec<String>>,
    pub(crate) nodes: BTreeSet<String>,
    pub(crate) keys: BTreeMap<i32, String>,
    pub(crate) next_key: i32,
    pub(crate) swaps: BTreeSet<String>,
    pub(crate) mounts: Vec<PathBuf>,
    /// Directories that exist in the new root.
    pub(crate) dirs: BTreeSet<PathBuf>,
    /// Mounts that are read-only now; a mkdir under one fails with EROFS.
    pub(crate) read_only: BTreeSet<PathBuf>,
    pub(crate) tmpfs: Vec<PathBuf>,
    pub(crate) status: Option<String>,
    /// Setup's progress record (progress.rs); not a call: it changes nothing a test counts.
    pub(crate) progress: Option<String>,
    /// Die (panic: the test catches it) at this call instead of making it, as a killed process.
    pub(crate) die_at: Option<usize>,
    /// The armored escrow written to /run/ephemcrypt.
    pub(crate) escrow: Option<String>,
    /// Files of the new root (`read_text`) and links (`link_text`).
    pub(crate) files: BTreeMap<PathBuf, String>,
    pub(crate) links: BTreeMap<PathBuf, PathBuf>,
    /// Units written, by name.
    pub(crate) units: BTreeMap<String, String>,
    /// Configuration files written for the real root, by path.
    pub(crate) configs: BTreeMap<PathBuf, String>,
    /// The start of each disk as the header writes left it (the longest write's length), by device.
    pub(crate) headers: BTreeMap<PathBuf, Vec<u8>>,
    pub(crate) clock: u64,
    /// How far the clock moves at each reading beyond the first ms (a slow machine).
    pub(crate) tick: u64,
    pub(crate) sleeps: u32,
    /// Called with the number of sleeps so far after each sleep (late disks appear).
    #[allow(clippy::type_complexity)]
    pub(crate) on_sleep: Option<Box<dyn FnMut(u32)>>,
    /// A TPM at /dev/tpmrm0 (`None`: there is none).
    pub(crate) tpm: Option<FakeTpm>,
    /// systemd's measurement log as appended, and whether it is locked now.
    pub(crate) measure_log: String,
    pub(crate) measure_locked: bool,
}

/// A TPM that runs the three commands ephemcrypt sends.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeTpm {
    pub(crate) banks: Vec<crate::tpm::Bank>,
    /// Each PCR's value by (pcr, bank); a missing one is all zeros.
    pub(crate) pcrs: BTreeMap<(u32, crate::tpm::Bank), Vec<u8>>,
    /// Answer every command with this (a hostile or broken TPM).
    pub(crate) answer: Option<Vec<u8>>,
}

impl FakeTpm {
    pub(crate) fn new(banks: &[crate::tpm::Bank]) -> FakeTpm {
        FakeTpm { banks: banks.to_vec(), ..FakeTpm::default() }
    }

    pub(crate) fn pcr(&self, pcr: u32, bank: crate::tpm::Bank) -> Vec<u8> {
        self.pcrs.get(&(pcr, bank)).cloned().unwrap_or_else(|| vec![0; bank.len()])
    }

    fn run(&mut self, cmd: &[u8]) -> Vec<u8> {
        use crate::tpm::Bank;
        if let Some(a) = &self.answer {
            return a.clone();
        }
        let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
        let respond = |tag: u16, body: &[u8]| {
            let mut r = tag.to_be_bytes().to_vec();
            r.extend_from_slice(&u32::try_from(10 + body.len()).unwrap().to_be_bytes());
            r.extend_from_slice(&0u32.to_be_bytes());
            r.extend_from_slice(body);
            r
        };
        match be32(&cmd[6..10]) {
            0x17A => {
                let mut body = vec![0u8];
                body.extend_from_slice(&5u32.to_be_bytes());
                body.extend_from_slice(&u32::try_from(Bank::ALL.len()).unwrap().to_be_bytes());
                for b in Bank::ALL {
                    body.extend_from_slice(&b.alg().to_be_bytes());
                    body.push(3);
                    body.extend_from_slice(if self.banks.contains(&b) { &[0xff; 3] } else { &[0; 3] });
                }
                respond(0x8001, &body)
            }
            0x182 => {
                let pcr = be32(&cmd[10..14]);
                let count = be32(&cmd[27..31]);
                let mut at = 31;
                for _ in 0..count {
                    let alg = u16::from_be_bytes([cmd[at], cmd[at + 1]]);
                    let bank = Bank::ALL.into_iter().find(|b| b.alg() == alg).unwrap();
                    let digest = &cmd[at + 2..at + 2 + bank.len()];
                    let new = bank.extend(&self.pcr(pcr, bank), digest);
                    self.pcrs.insert((pcr, bank), new);
                    at += 2 + bank.len();
                }
                assert_eq!(at, cmd.len());
                respond(0x8002, &[0, 0, 0, 0, 0, 0, 1, 0, 0])
            }
            0x17E => {
                let alg = u16::from_be_bytes([cmd[14], cmd[15]]);
                let bank = Bank::ALL.into_iter().find(|b| b.alg() == alg).unwrap();
                let pcr = (0..24u32).find(|p| cmd[17 + (*p / 8) as usize] & (1 << (p % 8)) != 0).unwrap();
                let mut body = 7u32.to_be_bytes().to_vec();
                body.extend_from_slice(&cmd[10..20]);
                body.extend_from_slice(&1u32.to_be_bytes());
                body.extend_from_slice(&u16::try_from(bank.len()).unwrap().to_be_bytes());
                body.extend_from_slice(&self.pcr(pcr, bank));
                respond(0x8001, &body)
            }
            other => panic!("a TPM command ephemcrypt does not send: {other:#x}"),
        }
    }
}

impl Fake {
    /// A kernel with dm-crypt 1.27 and a new root at /sysroot with the default bind targets.
    pub(crate) fn new() -> Fake {
        Fake {
            crypt_version: Some([1, 27, 0]),
            dirs: ["/sysroot", "/sysroot/var/log", "/sysroot/tmp", "/sysroot/var/tmp"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            next_key: 100,
            ..Fake::default()
        }
    }

    /// Record a call; fail it if it is the chosen one.
    fn call(&mut self, what: String) -> Result<()> {
        self.calls.push(what.clone());
        let n = self.calls.len() - 1;
        if self.die_at == Some(n) {
            // The process is gone: so is its keyring (progress.rs relies on that).
            self.keys.clear();
            std::panic::panic_any(Died);
        }
        let chosen = self.fail_at == Some(n) || self.fail_also.contains(&n);
        if chosen || self.fail_all.as_deref().is_some_and(|p| what.starts_with(p)) {
            return Err(Error::os("fake", what, std::io::Error::from_raw_os_error(libc::EIO)));
        }
        Ok(())
    }

    fn must_exist(&self, dir: &Path) -> Result<()> {
        if self.dirs.contains(dir) {
            return Ok(());
        }
        Err(Error::os("mount on", dir.display(), std::io::Error::from_raw_os_error(libc::ENOENT)))
    }

    /// Nothing of ours left behind: no mapping, node, key, swap, mount, directory made, and every
    /// read-only mount read-only again.
    pub(crate) fn assert_clean(&self, read_only: &[&str], made_dirs: &[&str]) {
        let calls = || self.calls.join("\n");
        assert!(self.mappings.is_empty(), "mappings left: {:?}\ncalls:\n{}", self.mappings, calls());
        assert!(self.nodes.is_empty(), "nodes left: {:?}", self.nodes);
        assert!(self.keys.is_empty(), "keys left: {:?}", self.keys);
        assert!(self.swaps.is_empty(), "swaps left: {:?}", self.swaps);
        assert!(self.mounts.is_empty(), "mounts left: {:?}\ncalls:\n{}", self.mounts, calls());
        assert!(self.escrow.is_none(), "the escrow file left\ncalls:\n{}", calls());
        assert!(self.configs.is_empty(), "configuration files left: {:?}", self.configs.keys());
        // Units that bind onto the volume go with it; the failure policy's tmpfs units stay.
        assert!(self.units.values().all(|t| t.contains("Type=tmpfs\n")), "bind units left: {:?}", self.units);
        for d in made_dirs {
            assert!(!self.dirs.contains(Path::new(d)), "directory {d} left\ncalls:\n{}", calls());
        }
        for m in read_only {
            assert!(self.read_only.contains(Path::new(m)), "{m} left read-write\ncalls:\n{}", calls());
        }
    }
}

impl System for Fake {
    fn load_modules(&mut self, modules: &[&str]) {
        self.modules.extend(modules.iter().map(|m| m.to_string()));
    }
    fn load_crypto(&mut self, algorithms: &[(&'static str, String)]) {
        self.modules.extend(algorithms.iter().map(|(kind, name)| format!("{kind}:{name}")));
    }
    fn crypt_version(&mut self) -> Result<[u32; 3]> {
        self.call("crypt_version".into())?;
        self.crypt_version.ok_or(Error::NoCryptTarget)
    }
    fn dm_dev(&mut self, name: &str) -> Result<Option<DevNo>> {
        Ok(self.mappings.get(name).copied().filter(|_| self.live.contains(name)))
    }
    fn dm_table(&mut self, name: &str) -> Result<Vec<TableLine>> {
        Ok(self.loaded.get(name).into_iter().flatten().map(|l| l.parse().unwrap()).collect())
    }
    fn is_mountpoint(&mut self, target: &Path) -> Result<bool> {
        Ok(self.mounts.iter().any(|m| m == target))
    }
    fn dir_state(&mut self, path: &Path) -> Result<DirState> {
        if self.dirs.contains(path) {
            return Ok(DirState::Present);
        }
        let depth = path.ancestors().take_while(|a| !self.dirs.contains(*a) && *a != Path::new("/")).count();
        let holder = self.read_only.iter().filter(|m| path.starts_with(m)).max_by_key(|m| m.as_os_str().len());
        let read_only = holder.map(|m| Mount {
            id: 0,
            parent: 0,
            dev: None,
            root: "/".into(),
            source: "/dev/vda".into(),
            target: m.clone(),
            fstype: "ext4".into(),
            options: "ro,nosuid,nodev".into(),
            super_options: "rw".into(),
        });
        Ok(DirState::Missing { depth, read_only })
    }
    fn identity(&mut self) -> Result<crate::header::Identity> {
        self.call("identity".into())?;
        Ok(crate::header::Identity { volume_id: [0x1d; 16], boot_id: [0xb0; 16], now: 1_795_000_000 })
    }
    fn check_kernel_crypto(&mut self, algorithms: &[(&'static str, String)]) -> Result<()> {
        let names: Vec<&str> = algorithms.iter().map(|(_, n)| n.as_str()).collect();
        self.call(format!("check_kernel_crypto {}", names.join(" ")))
    }
    fn write_headers(&mut self, writes: &[(PathBuf, Vec<u8>)], exclusive: bool) -> Result<()> {
        // One disk after the other, each its own call: a failure injected at any of them.
        for (device, bytes) in writes {
            // Exclusive only before any mapping holds the disk; the escrow's rewrite comes after.
            assert_eq!(exclusive, self.mappings.is_empty(), "O_EXCL exactly while no mapping holds the disks");
            let h = crate::header::Header::decode(bytes).expect("a valid header");
            assert!(
                bytes.len() % crate::header::SIZE == 0 && bytes.len() <= 1 << 20,
                "whole blocks of the reserved area, {} bytes",
                bytes.len()
            );
            let (at, len) = (h.escrow.0 as usize, h.escrow.1 as usize);
            let (before, after) = if len == 0 { (bytes.len(), bytes.len()) } else { (at, at + len) };
            assert!(bytes[crate::header::SIZE..before].iter().all(|&b| b == 0), "zeros after the header");
            assert!(bytes[after..].iter().all(|&b| b == 0), "zeros after the escrow");
            assert!(len == 0 || bytes[at..].starts_with(b"age-encryption.org/v1\n"), "an age file as the escrow");
            self.call(format!(
                "write_header {} {} {}/{}",
                device.display(),
                h.volume_id_hex(),
                h.member + 1,
                h.members
            ))?;
            // The disk's first bytes as the writes left them: a shorter write keeps what is beyond it.
            let disk = self.headers.entry(device.to_path_buf()).or_default();
            if disk.len() < bytes.len() {
                disk.resize(bytes.len(), 0);
            }
            disk[..bytes.len()].copy_from_slice(bytes);
        }
        Ok(())
    }
    fn make_key(&mut self, len: usize) -> Result<Key> {
        self.call(format!("make_key {len}"))?;
        Ok(Key::from_bytes_for_test(&vec![PLANTED; len]))
    }
    fn add_logon_key(&mut self, prefix: &str, key: &Key) -> Result<(KeySerial, String)> {
        let description = format!("{prefix}:{}", self.next_key);
        self.call(format!("add_logon_key {description}"))?;
        assert!(key.expose().iter().all(|b| *b == PLANTED));
        let serial = self.next_key;
        self.next_key += 1;
        self.keys.insert(serial, description.clone());
        Ok((KeySerial(serial), description))
    }
    fn invalidate_key(&mut self, serial: KeySerial) -> Result<()> {
        self.call(format!("invalidate_key {}", serial.0))?;
        self.keys.remove(&serial.0);
        Ok(())
    }
    fn dm_create(&mut self, name: &str, uuid: &str) -> Result<DevNo> {
        self.call(format!("dm_create {name} {uuid}"))?;
        let dev = DevNo { major: 253, minor: self.next_minor };
        self.next_minor += 1;
        self.mappings.insert(name.into(), dev);
        Ok(dev)
    }
    fn dm_load(&mut self, name: &str, targets: &[Target], secure: bool, read_only: bool) -> Result<()> {
        assert!(targets.iter().all(|t| t.unresolved().is_none()), "a placeholder reached the kernel");
        let lines: Vec<String> =
            targets.iter().map(|t| format!("{} {} {} {}", t.start, t.len, t.kind.type_name(), *t.params())).collect();
        self.tables.push(lines.join("\n"));
        let shown: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        let ro = if read_only { " read-only" } else { "" };
        self.call(format!("dm_load {name} secure={secure}{ro} {}", shown.join(" | ")))?;
        self.loaded.insert(name.into(), lines);
        Ok(())
    }
    fn dm_resume(&mut self, name: &str) -> Result<()> {
        self.call(format!("dm_resume {name}"))?;
        self.live.insert(name.into());
        Ok(())
    }
    fn dm_remove(&mut self, name: &str) -> Result<()> {
        self.call(format!("dm_remove {name}"))?;
        let ebusy = || Error::os("device-mapper remove", name, std::io::Error::from_raw_os_error(libc::EBUSY));
        if let Some(n) = self.busy.get_mut(name).filter(|n| **n > 0) {
            *n -= 1;
            return Err(ebusy());
        }
        // Held by another mapping whose table names it (as the kernel's holders are).
        let dev = self.mappings.get(name).map(ToString::to_string);
        let held =
            |lines: &Vec<String>| lines.iter().any(|l| dev.as_ref().is_some_and(|d| l.split(' ').any(|w| w == d)));
        if self.loaded.iter().any(|(other, lines)| other != name && held(lines)) {
            return Err(ebusy());
        }
        self.mappings.remove(name);
        self.live.remove(name);
        self.loaded.remove(name);
        Ok(())
    }
    fn make_node(&mut self, name: &str, _dev: DevNo) -> Result<bool> {
        self.call(format!("make_node {name}"))?;
        Ok(self.nodes.insert(name.into()))
    }
    fn remove_node(&mut self, name: &str) -> Result<()> {
        self.call(format!("remove_node {name}"))?;
        self.nodes.remove(name);
        Ok(())
    }
    fn make_swap(&mut self, name: &str, len: Bytes) -> Result<()> {
        self.call(format!("make_swap {name} {}", len.0))
    }
    fn swapon(&mut self, name: &str) -> Result<()> {
        self.call(format!("swapon {name}"))?;
        self.swaps.insert(name.into());
        Ok(())
    }
    fn swapoff(&mut self, name: &str) -> Result<()> {
        self.call(format!("swapoff {name}"))?;
        self.swaps.remove(name);
        Ok(())
    }
    fn run(&mut self, argv: &[String]) -> Result<()> {
        self.call(format!("run {}", argv.join(" ")))
    }
    fn remount(&mut self, path: &Path, read_only: bool, options: &[String]) -> Result<()> {
        let how = if read_only { "ro" } else { "rw" };
        self.call(format!("remount {} {how} {}", path.display(), options.join(",")))?;
        if read_only {
            self.read_only.insert(path.into());
        } else {
            self.read_only.remove(path);
        }
        Ok(())
    }
    fn mkdir(&mut self, path: &Path) -> Result<bool> {
        self.call(format!("mkdir {}", path.display()))?;
        if self.dirs.contains(path) {
            return Ok(false);
        }
        if !path.parent().is_some_and(|p| self.dirs.contains(p)) {
            return Err(Error::os("create directory", path.display(), std::io::Error::from_raw_os_error(libc::ENOENT)));
        }
        if self.read_only.iter().any(|m| path.starts_with(m)) {
            return Err(Error::os("create directory", path.display(), std::io::Error::from_raw_os_error(libc::EROFS)));
        }
        Ok(self.dirs.insert(path.into()))
    }
    fn rmdir(&mut self, path: &Path) -> Result<()> {
        self.call(format!("rmdir {}", path.display()))?;
        if self.read_only.iter().any(|m| path.starts_with(m)) {
            return Err(Error::os("remove directory", path.display(), std::io::Error::from_raw_os_error(libc::EROFS)));
        }
        self.dirs.remove(path);
        Ok(())
    }
    fn mount(&mut self, source: &Path, target: &Path, fs: Fs, options: &[String]) -> Result<()> {
        self.call(format!("mount {} {} {} {}", source.display(), target.display(), fs.name(), options.join(",")))?;
        self.must_exist(target)?;
        self.mounts.push(target.into());
        Ok(())
    }
    fn bind(&mut self, source: &Path, target: &Path) -> Result<()> {
        self.call(format!("bind {} {}", source.display(), target.display()))?;
        self.must_exist(target)?;
        self.mounts.push(target.into());
        Ok(())
    }
    fn mount_tmpfs(&mut self, target: &Path) -> Result<()> {
        self.call(format!("tmpfs {}", target.display()))?;
        if !self.dirs.contains(target) {
            return Err(Error::os("stat", target.display(), std::io::Error::from_raw_os_error(libc::ENOENT)));
        }
        self.tmpfs.push(target.into());
        Ok(())
    }
    fn umount(&mut self, target: &Path) -> Result<()> {
        self.call(format!("umount {}", target.display()))?;
        let i = self.mounts.iter().rposition(|m| m == target).expect("unmount of something mounted");
        self.mounts.remove(i);
        Ok(())
    }
    fn write_output(&mut self, path: &Path, text: &str) -> Result<()> {
        self.call(format!("write_output {} ({} bytes)", path.display(), text.len()))
    }
    fn copy_skeleton(&mut self, from: &Path, to: &Path) -> Result<()> {
        self.call(format!("copy_skeleton {} {}", from.display(), to.display()))
    }
    fn read_text(&mut self, path: &Path) -> Result<Option<String>> {
        Ok(self.files.get(path).cloned())
    }
    fn link_text(&mut self, path: &Path) -> Option<PathBuf> {
        self.links.get(path).cloned()
    }
    fn write_unit(&mut self, name: &str, text: &str, wanted_by: &str) -> Result<()> {
        self.call(format!("write_unit {name} {wanted_by}"))?;
        self.units.insert(name.into(), text.into());
        Ok(())
    }
    fn remove_unit(&mut self, name: &str, wanted_by: &str) -> Result<()> {
        self.call(format!("remove_unit {name} {wanted_by}"))?;
        self.units.remove(name);
        Ok(())
    }
    fn write_status(&mut self, path: &Path, json: &str) -> Result<()> {
        assert_eq!(path, Path::new(crate::paths::STATUS_PATH));
        self.call("write_status".into())?;
        self.status = Some(json.into());
        Ok(())
    }
    fn write_escrow(&mut self, path: &Path, text: &str) -> Result<()> {
        assert_eq!(path, Path::new(crate::paths::ESCROW_PATH));
        self.call("write_escrow".into())?;
        self.escrow = Some(text.into());
        Ok(())
    }
    fn remove_escrow(&mut self, path: &Path) -> Result<()> {
        assert_eq!(path, Path::new(crate::paths::ESCROW_PATH));
        self.call("remove_escrow".into())?;
        match self.escrow.take() {
            Some(_) => Ok(()),
            None => Err(Error::os("remove", path.display(), std::io::Error::from_raw_os_error(libc::ENOENT))),
        }
    }
    fn write_progress(&mut self, path: &Path, text: Option<&str>) -> Result<()> {
        assert_eq!(path, Path::new(crate::progress::PROGRESS_PATH));
        self.progress = text.map(str::to_string);
        Ok(())
    }
    fn write_config(&mut self, path: &Path, text: &str) -> Result<()> {
        self.call(format!("write_config {}", path.display()))?;
        self.configs.insert(path.into(), text.into());
        Ok(())
    }
    fn remove_config(&mut self, path: &Path) -> Result<()> {
        self.call(format!("remove_config {}", path.display()))?;
        match self.configs.remove(path) {
            Some(_) => Ok(()),
            None => Err(Error::os("remove", path.display(), std::io::Error::from_raw_os_error(libc::ENOENT))),
        }
    }
    fn read_progress(&mut self, path: &Path) -> Result<Option<String>> {
        assert_eq!(path, Path::new(crate::progress::PROGRESS_PATH));
        Ok(self.progress.clone())
    }
    fn tpm(&mut self, command: &[u8]) -> Result<Option<Vec<u8>>> {
        let code = command.get(6..10).map_or(0, |c| u32::from_be_bytes(c.try_into().unwrap()));
        self.call(format!("tpm {code:#x}"))?;
        Ok(self.tpm.as_mut().map(|t| t.run(command)))
    }
    fn lock_measure_log(&mut self, path: &Path) -> Result<()> {
        assert_eq!(path, Path::new(crate::tpm::event::LOG_PATH));
        assert!(!self.measure_locked, "the measurement log is locked twice");
        self.call("lock_measure_log".into())?;
        self.measure_locked = true;
        Ok(())
    }
    fn unlock_measure_log(&mut self, record: Option<&str>) -> Result<()> {
        assert!(self.measure_locked, "the measurement log is unlocked, not locked");
        self.measure_locked = false;
        self.call(format!("unlock_measure_log {}", if record.is_some() { "with a record" } else { "empty" }))?;
        self.measure_log.extend(record);
        Ok(())
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.clock += ms;
        self.sleeps += 1;
        if let Some(f) = self.on_sleep.as_mut() {
            f(self.sleeps);
        }
    }
    fn now_ms(&mut self) -> u64 {
        self.clock += 1 + self.tick;
        self.clock
    }
}

/// A host tree in a fresh temporary directory, removed when dropped: proc/cmdline, proc/mounts,
/// proc/swaps, etc/ephemcrypt.conf, and disks in sys/block with probe images in dev/.
pub(crate) struct Tree {
    pub(crate) root: PathBuf,
}

impl Tree {
    pub(crate) fn new(config: &str) -> Tree {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("ephemcrypt-tree-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["proc/self", "sys/block", "dev", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("proc/cmdline"), "root=/dev/vda ro\n").unwrap();
        std::fs::write(root.join("proc/mounts"), "/dev/vda /sysroot ext4 ro 0 0\n").unwrap();
        std::fs::write(root.join("proc/swaps"), "Filename Type Size Used Priority\n").unwrap();
        std::fs::write(root.join("etc/ephemcrypt.conf"), config).unwrap();
        Tree { root }
    }

    /// An instance-store disk of 100 GiB (a sparse probe image: blank).
    pub(crate) fn disk(&self, name: &str, minor: u32, serial: &str) -> &Tree {
        add_disk(&self.root, name, minor, serial);
        self
    }

    pub(crate) fn host(&self) -> crate::host::Host {
        crate::host::Host::new(&self.root)
    }

    /// Write what a fake setup wrote at the start of each disk into this tree's disk images (the
    /// next boot sees the headers).
    pub(crate) fn keep_headers(&self, fake: &Fake) {
        use std::os::unix::fs::FileExt;
        for (device, bytes) in &fake.headers {
            let image = self.root.join(device.strip_prefix("/").unwrap());
            std::fs::OpenOptions::new().write(true).open(&image).unwrap().write_all_at(bytes, 0).unwrap();
        }
    }
}

/// Put an instance-store disk of 100 GiB (a sparse probe image: blank) into the host tree at
/// `root`.
pub(crate) fn add_disk(root: &Path, name: &str, minor: u32, serial: &str) {
    let d = root.join("sys/block").join(name);
    std::fs::create_dir_all(d.join("device")).unwrap();
    std::fs::write(d.join("dev"), format!("259:{minor}\n")).unwrap();
    std::fs::write(d.join("size"), format!("{}\n", 100u64 << 21)).unwrap();
    std::fs::write(d.join("device/model"), "Amazon EC2 NVMe Instance Storage        \n").unwrap();
    std::fs::write(d.join("device/serial"), format!("{serial}\n")).unwrap();
    let f = std::fs::File::create(root.join("dev").join(name)).unwrap();
    f.set_len(100 << 30).unwrap();
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
