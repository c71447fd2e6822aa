//! The step interpreter: take a plan's steps in order through a [`System`], pushing one undo entry
//! for each thing made. On a failure, undo everything in reverse order, then take the failure
//! policy's steps. The key lives only inside [`Run::load_with_key`]: it is handed to the kernel
//! and dropped (wiped) before the step ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::OnFailure;
use crate::dm::{CryptKey, Target};
use crate::error::{Error, Result};
use crate::key::{Key, KeySerial};
use crate::plan::{state_reason, Assessed, Plan, State, Volume};
use crate::status::{DiskStatus, MappingStatus, SetupResult, Status, Timing, VolumeStatus};
use crate::step::{KeyPath, Mapping, Step};
use crate::system::System;
use crate::units::DevNo;

/// Something made that a failure must take back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    /// A mapping, and whether we made its /dev/mapper node.
    Mapping {
        name: String,
        node: bool,
    },
    /// A keyring entry not yet invalidated.
    Key(KeySerial),
    Swap(String),
    Mount(PathBuf),
    /// A directory we created in the new root (a mount point or bind target, or a parent).
    Dir(PathBuf),
    /// A remount: undone by remounting back.
    Remount {
        path: PathBuf,
        read_only: bool,
        options: Vec<String>,
    },
    /// A unit for the real root, and its wants link.
    Unit {
        name: String,
        wanted_by: String,
    },
    /// The armored escrow in /run/ephemcrypt: it would outlive the key it holds.
    Escrow(PathBuf),
    /// A configuration file for the real root (under /run).
    Config(PathBuf),
}

/// A mapping that was just written to (mkfs, a swap signature) is opened by udev for a moment: the
/// dm rules probe it (blkid) on the uevent that closing it after writing raises. Removing it in that
/// window fails with EBUSY. Try again as `dmsetup remove --retry` does (libdevmapper: 25 tries, 200
/// ms apart).
const REMOVE_TRIES: u32 = 25;
const REMOVE_RETRY_MS: u64 = 200;

fn disk_status(a: &Assessed) -> DiskStatus {
    DiskStatus {
        name: a.disk.name.clone(),
        path: a.disk.path.display().to_string(),
        dev: a.disk.dev.to_string(),
        model: a.disk.model.clone(),
        serial: a.disk.serial.clone(),
        size_bytes: a.disk.size.0,
        used: a.verdict.is_use(),
        reason: a.verdict.reason(),
    }
}

fn volume_status(v: &Volume) -> VolumeStatus {
    VolumeStatus {
        cipher: v.crypt.cipher.clone(),
        key_bits: v.crypt.key_bits,
        sector_size: v.crypt.sector_size,
        flags: v.crypt.flags.clone(),
        fs: v.fs.name().to_string(),
        bytes: v.crypt.len.bytes().0,
    }
}

/// What the bind targets that nothing can cover are left with ([`Plan::exposed`]).
fn exposed_text(plan: &Plan) -> String {
    let list: Vec<&str> = plan.exposed.iter().map(|(_, why)| why.as_str()).collect();
    format!("{}; neither on the volume nor on tmpfs", list.join("; "))
}

/// The result when every step is taken.
fn success(plan: &Plan) -> (SetupResult, String) {
    match &plan.state {
        State::Disabled => (SetupResult::Disabled, "rd.ephemcrypt=0".into()),
        State::Absent => (SetupResult::Absent, state_reason(&plan.state)),
        State::Live(_) => (SetupResult::Ok, "already set up in this boot".into()),
        State::Ready(v) if !plan.exposed.is_empty() => {
            let why = format!("{} disk(s) encrypted, but {}", v.members.len(), exposed_text(plan));
            (SetupResult::Degraded, why)
        }
        State::Ready(v) => (SetupResult::Ok, format!("{} disk(s) encrypted", v.members.len())),
        State::Held { .. } => (SetupResult::Held, state_reason(&plan.state)),
        _ => (SetupResult::Failed, String::new()),
    }
}

/// Take the plan's steps; on a failure undo them and take the failure policy's. `timings` are the
/// times of what setup did before planning (waiting for disks, reading the kernel).
pub(crate) fn execute<S: System>(plan: &Plan, sys: &mut S, timings: Vec<Timing>) -> Status {
    let (result, reason) = success(plan);
    let no_guard = "not installed: the real root does not run systemd (the guard is a systemd inhibitor lock)";
    let status = Status {
        disks: plan.disks.iter().map(disk_status).collect(),
        guard: plan.volume().filter(|v| v.guard && !plan.newroot_systemd).map(|_| no_guard.to_string()),
        volume: plan.volume().map(volume_status),
        already_active: matches!(plan.state, State::Live(_)),
        // What `ephemcrypt status` checks against mountinfo: every target not left exposed.
        targets: plan.volume().map_or_else(Vec::new, |v| {
            v.binds.iter().filter(|b| !v.exposed.iter().any(|(t, _)| t == *b)).cloned().collect()
        }),
        data_mapping: plan.volume().filter(|v| v.fs != crate::config::Fs::None).map(|v| v.data_name().to_string()),
        steps: timings,
        ..Status::new(result, reason)
    };
    let mut run = Run::new(sys, &plan.newroot, status, None);
    if let Some(reason) = plan.failure() {
        return run.fail(plan, reason, None);
    }
    for a in plan.disks.iter().filter(|a| !a.verdict.is_use()) {
        log::info!("not using {}: {}", a.disk.path.display(), a.verdict.reason());
    }
    for (i, step) in plan.steps.iter().enumerate() {
        crate::progress::before_step(run.sys, &plan.steps, i);
        let title = step.title();
        log::info!("{title}");
        let t = run.sys.now_ms();
        let r = run.step(step);
        let ms = run.sys.now_ms().saturating_sub(t);
        run.status.steps.push(Timing { kind: step.kind().into(), step: title.clone(), ms });
        match r {
            Ok(()) => {}
            // With no volume at stake, a status that cannot be written is only reported: a
            // failure here would only make the policy mount tmpfs over a root that is fine.
            Err(e) if matches!(step, Step::Status { .. }) && plan.volume().is_none() => {
                log::error!("step '{title}' failed: {e}");
            }
            Err(e) => {
                log::error!("step '{title}' failed: {e}");
                return run.fail(plan, e.to_string(), Some(title));
            }
        }
    }
    match run.status.result {
        SetupResult::Ok => log::info!("done: {}", run.status.reason),
        r => log::info!("result: {r} ({})", run.status.reason),
    }
    run.status
}

/// `recover`: take `steps` through the same per-step code and undo stack as setup, with `key` (the
/// escrowed key) at the crypt step in place of a new one; without setup's failure policy, and no
/// status file. Only steps that write nothing to a disk are taken (read-only mappings, read-only
/// mounts that replay no journal): anything else is refused before the first step. On a failure,
/// everything made is undone in reverse order and the error returned, with what could not be undone.
pub(crate) fn interpret<S: System>(steps: &[Step], sys: &mut S, key: Key) -> Result<()> {
    if let Some(s) = steps.iter().find(|s| !s.is_read_only()) {
        return Err(Error::invalid("recovery step", "a read-only mapping or mount", s.title()));
    }
    let mut run = Run::new(sys, Path::new("/"), Status::new(SetupResult::Ok, ""), Some(key));
    for step in steps {
        let title = step.title();
        log::info!("{title}");
        if let Err(e) = run.step(step) {
            log::error!("step '{title}' failed: {e}");
            let (left, _) = run.rollback();
            if left.is_empty() {
                return Err(e);
            }
            return Err(Error::Recover(format!("{e}; cleanup: {}", left.join("; "))));
        }
    }
    Ok(())
}

struct Run<'a, S: System> {
    sys: &'a mut S,
    /// The status names paths as the real root will see them, without this prefix.
    newroot: &'a Path,
    undo: Vec<Undo>,
    /// The mappings made so far, by name: what a table's `/dev/mapper/<name>` stands for.
    made: BTreeMap<String, DevNo>,
    /// The escrow made at the crypt mapping, for the [`Step::Escrow`] that writes it.
    escrow: Option<Vec<u8>>,
    /// `recover`: the key the crypt step loads, taken from the escrow; `None`: the step makes one.
    key: Option<Key>,
    status: Status,
}

impl<'a, S: System> Run<'a, S> {
    fn new(sys: &'a mut S, newroot: &'a Path, status: Status, key: Option<Key>) -> Run<'a, S> {
        Run { sys, newroot, undo: Vec::new(), made: BTreeMap::new(), escrow: None, key, status }
    }

    /// A path of the new root as the real root will see it: `/sysroot/var/log` → `/var/log`.
    fn in_root(&self, p: &Path) -> PathBuf {
        p.strip_prefix(self.newroot).map_or_else(|_| p.to_path_buf(), |rest| Path::new("/").join(rest))
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match step {
            // No undo: a header left by a failed setup only makes the disk recognisably ours,
            // which it now is (the next boot takes it again).
            Step::Headers(members) => {
                if members.iter().any(|m| m.header.volume_id == [0; 16]) {
                    return Err(Error::Internal("a header is written with the volume's id"));
                }
                // The header, then zeros over what the plan could not vouch is zero already (a
                // forced disk's old metadata, an earlier escrow), so that the reserved area is as
                // the next boot's probe expects to find it.
                let writes: Vec<(PathBuf, Vec<u8>)> = members
                    .iter()
                    .map(|m| {
                        let mut area = m.header.encode();
                        area.resize(m.write.clamp(crate::header::SIZE, crate::header::RESERVED_LEN), 0);
                        (m.device.clone(), area)
                    })
                    .collect();
                self.sys.write_headers(&writes, true)
            }
            Step::Mapping(m) => self.mapping(m),
            Step::Escrow { members, file, recipients } => {
                let blob = self.escrow.take().ok_or(Error::Internal("the crypt mapping makes the escrow before it"))?;
                let len = u32::try_from(blob.len())
                    .ok()
                    .filter(|l| crate::header::SIZE as u64 + u64::from(*l) <= crate::header::RESERVED.bytes().0);
                let len = len.ok_or_else(|| {
                    Error::invalid("escrow", "room in the reserved MiB of each member", format!("{} bytes", blob.len()))
                })?;
                let mut writes = Vec::new();
                for (device, header) in members {
                    let mut h = (**header).clone();
                    h.escrow = (crate::header::SIZE_FIELD, len);
                    // The header step left the rest of the reserved area zero: header and blob only,
                    // in whole blocks.
                    let mut area = h.encode();
                    area.extend_from_slice(&blob);
                    area.resize(area.len().div_ceil(crate::header::SIZE) * crate::header::SIZE, 0);
                    writes.push((device.clone(), area));
                }
                // Our stripe (or crypt mapping) holds the disks now: not O_EXCL.
                self.sys.write_headers(&writes, false)?;
                self.sys.write_escrow(file, &crate::age::armor(&blob))?;
                self.undo.push(Undo::Escrow(file.clone()));
                self.status.escrow = recipients.clone();
                Ok(())
            }
            Step::Swap { device, len } => {
                self.sys.make_swap(device, *len)?;
                self.sys.swapon(device)?;
                self.undo.push(Undo::Swap(device.clone()));
                self.status.swap = Some(format!("/dev/mapper/{device}"));
                Ok(())
            }
            Step::Mkfs { argv, .. } => self.sys.run(argv),
            Step::Remount { path, read_only, options } => {
                self.sys.remount(path, *read_only, options)?;
                self.undo.push(Undo::Remount { path: path.clone(), read_only: !read_only, options: options.clone() });
                Ok(())
            }
            Step::Mkdir { path } => {
                if self.sys.mkdir(path)? {
                    self.undo.push(Undo::Dir(path.clone()));
                }
                Ok(())
            }
            Step::Mount { source, target, fs, options } => {
                self.sys.mount(source, target, *fs, options)?;
                self.undo.push(Undo::Mount(target.clone()));
                self.status.mount = Some(self.in_root(target));
                Ok(())
            }
            Step::Bind { source, target } => {
                self.sys.copy_skeleton(target, source)?;
                self.sys.bind(source, target)?;
                self.undo.push(Undo::Mount(target.clone()));
                self.status.binds.push(self.in_root(target));
                Ok(())
            }
            Step::Tmpfs { target } => {
                self.sys.mount_tmpfs(target)?;
                log::warn!("tmpfs mounted on {} so nothing lands unencrypted on disk", target.display());
                self.status.tmpfs.push(self.in_root(target));
                Ok(())
            }
            Step::Unit { name, text, wanted_by } => {
                self.sys.write_unit(name, text, wanted_by)?;
                self.undo.push(Undo::Unit { name: name.clone(), wanted_by: wanted_by.clone() });
                if name == crate::plan::GUARD_UNIT {
                    self.status.guard = Some(name.clone());
                } else {
                    self.status.units.push(name.clone());
                }
                Ok(())
            }
            Step::Config { path, text } => {
                self.sys.write_config(path, text)?;
                self.undo.push(Undo::Config(path.clone()));
                Ok(())
            }
            Step::Measure(event) => self.measure(event),
            Step::Status { path } => self.sys.write_status(path, &self.status.to_json().pretty()),
        }
    }

    /// Measure the outcome as it stands (tpm/event.rs); the status says what was measured, or
    /// why nothing was. An error only with `measure = required`.
    fn measure(&mut self, event: &crate::tpm::event::Event) -> Result<()> {
        let text = event.text(self.status.result.name());
        let r = crate::tpm::measure(self.sys, event.pcr, &text);
        let (banks, not_measured) = match &r {
            Ok(Some(banks)) => (banks.iter().map(|(b, v)| (b.name().to_string(), v.clone())).collect(), None),
            Ok(None) => (Vec::new(), Some("no TPM (/dev/tpmrm0, /dev/tpm0)".to_string())),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        match &not_measured {
            None => {
                let names: Vec<&str> = banks.iter().map(|(b, _)| b.as_str()).collect();
                log::info!("measured the outcome into PCR {} ({})", event.pcr, names.join(", "));
            }
            Some(why) => log::warn!("the outcome is not measured: {why}"),
        }
        self.status.measurement =
            Some(crate::status::Measurement { pcr: event.pcr, event: text, banks, not_measured: not_measured.clone() });
        match (not_measured, event.required) {
            (Some(why), true) => Err(r.err().unwrap_or(Error::Invalid {
                what: "the TPM".into(),
                expected: "a TPM to measure into (measure = required)",
                found: why,
            })),
            _ => Ok(()),
        }
    }

    /// Create a mapping, load its table (making the key first for a crypt table), make it live,
    /// give it a /dev/mapper node.
    fn mapping(&mut self, m: &Mapping) -> Result<()> {
        let made = &self.made;
        let table: Vec<Target> = m
            .table
            .iter()
            .map(|t| t.with_devices(&|name| made.get(name).copied()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid(format!("table of {}", m.name), "mappings made earlier", e.0))?;
        // Where the time goes, logged when the step is slow (the status times the whole step).
        let mut parts: Vec<(&str, u64)> = Vec::new();
        let mut t = self.sys.now_ms();
        let mut lap = |sys: &mut S, what: &'static str| {
            let now = sys.now_ms();
            parts.push((what, now.saturating_sub(t)));
            t = now;
        };
        // A cipher the kernel cannot run fails here, naming what to add to the image, before a
        // mapping or a key exists.
        if !m.kernel.is_empty() {
            self.sys.check_kernel_crypto(&m.kernel)?;
            lap(self.sys, "cipher checked");
        }
        let dev = self.sys.dm_create(&m.name, &m.uuid)?;
        lap(self.sys, "created");
        self.undo.push(Undo::Mapping { name: m.name.clone(), node: false });
        self.status.mappings.push(MappingStatus { name: m.name.clone(), dev, live: None });
        let loaded = match m.key {
            Some((path, _)) => self.load_with_key(m, &table, path),
            None => self.sys.dm_load(&m.name, &table, false, m.read_only),
        };
        // dm-crypt says ENOENT when the kernel cannot allocate the cipher (where AF_ALG was not
        // there to check it first): name it.
        match (loaded, m.kernel.first()) {
            (Err(e), Some((_, name))) if e.errno_value() == Some(libc::ENOENT) => {
                return Err(Error::KernelCrypto {
                    name: name.clone(),
                    source: std::io::Error::from_raw_os_error(libc::ENOENT),
                })
            }
            (r, _) => r?,
        }
        lap(self.sys, if m.key.is_some() { "key made, table loaded" } else { "table loaded" });
        self.sys.dm_resume(&m.name)?;
        lap(self.sys, "resumed");
        self.made.insert(m.name.clone(), dev);
        if self.sys.make_node(&m.name, dev)? {
            if let Some(Undo::Mapping { node, .. }) =
                self.undo.iter_mut().rev().find(|u| matches!(u, Undo::Mapping { .. }))
            {
                *node = true;
            }
        }
        lap(self.sys, "node");
        if parts.iter().map(|(_, ms)| ms).sum::<u64>() >= 100 {
            let parts: Vec<String> = parts.iter().map(|(what, ms)| format!("{what} {ms} ms")).collect();
            log::info!("mapping {}: {}", m.name, parts.join(", "));
        }
        Ok(())
    }

    /// The key is made here and dropped (wiped) before this returns: the kernel keeps its own
    /// copy from the table load, and the keyring entry is invalidated.
    fn load_with_key(&mut self, m: &Mapping, table: &[Target], path: KeyPath) -> Result<()> {
        let name = m.name.as_str();
        let bytes = table
            .iter()
            .find_map(Target::key_placeholder)
            .ok_or(Error::Internal("a crypt table has a key placeholder"))?;
        let key = match self.key.take() {
            None => self.sys.make_key(bytes)?,
            Some(k) if k.len() == bytes => k,
            Some(k) => {
                let found = format!("a {}-byte key", k.len());
                return Err(Error::invalid(format!("key of {name}"), "as many bytes as the table's key", found));
            }
        };
        // The escrow, while the key exists: encrypted from its locked buffer, written by the next step.
        if !m.escrow.is_empty() {
            let sys = &mut *self.sys;
            self.escrow = Some(crate::age::encrypt(&m.escrow, &key, &mut |n| sys.make_key(n))?);
        }
        match path {
            KeyPath::Keyring => {
                let (serial, description) = self.sys.add_logon_key(&format!("ephemcrypt:{name}"), &key)?;
                drop(key);
                self.undo.push(Undo::Key(serial));
                let logon = CryptKey::Logon { bytes, description };
                let table: Vec<Target> = table.iter().map(|t| t.with_key(logon.clone())).collect();
                let loaded = self.sys.dm_load(name, &table, true, m.read_only);
                // dm-crypt copied the key at load; the keyring entry goes whatever happened. If it
                // cannot, the undo entry stays and the rollback tries again; the load's own error,
                // if any, is the one to report.
                match self.sys.invalidate_key(serial) {
                    Ok(()) => {
                        self.undo.pop();
                    }
                    Err(e) if loaded.is_ok() => return Err(e),
                    Err(e) => log::error!("{e}"),
                }
                loaded?;
            }
            KeyPath::HexTable => {
                let hex = key.to_hex();
                drop(key);
                log::warn!(
                    "this kernel's dm-crypt cannot take keyring keys: loading a hex key with DM_SECURE_DATA_FLAG"
                );
                let table: Vec<Target> = table.iter().map(|t| t.with_key(CryptKey::Hex(hex.clone()))).collect();
                self.sys.dm_load(name, &table, true, m.read_only)?;
            }
        }
        self.status.key = Some(path.describe(m.escrow.len()));
        Ok(())
    }

    fn remove_mapping(&mut self, name: &str) -> Result<()> {
        for _ in 1..REMOVE_TRIES {
            match self.sys.dm_remove(name) {
                Err(e) if e.is_busy() => {
                    log::info!("{e}; trying again in {REMOVE_RETRY_MS} ms");
                    self.sys.sleep_ms(REMOVE_RETRY_MS);
                }
                r => return r,
            }
        }
        self.sys.dm_remove(name)
    }

    /// Undo in reverse order; returns what could not be undone, and the mappings still there.
    fn rollback(&mut self) -> (Vec<String>, Vec<String>) {
        let (mut left, mut mappings) = (Vec::new(), Vec::new());
        while let Some(u) = self.undo.pop() {
            match &u {
                Undo::Mapping { name, .. } => log::info!("undo: remove mapping {name}"),
                Undo::Key(serial) => log::info!("undo: invalidate logon key (serial {})", serial.0),
                Undo::Swap(name) => log::info!("undo: swapoff {name}"),
                Undo::Mount(p) => log::info!("undo: unmount {}", p.display()),
                Undo::Dir(p) => log::info!("undo: remove directory {}", p.display()),
                Undo::Remount { path, read_only, .. } => {
                    log::info!(
                        "undo: remount {} {}",
                        path.display(),
                        if *read_only { "read-only" } else { "read-write" }
                    )
                }
                Undo::Unit { name, .. } => log::info!("undo: remove unit {name}"),
                Undo::Escrow(p) | Undo::Config(p) => log::info!("undo: remove {}", p.display()),
            }
            let r = match &u {
                // The mapping first: its node goes only with it (a node of a live mapping is
                // still of use, and a failed node removal must not keep the mapping).
                Undo::Mapping { name, node } => match self.remove_mapping(name) {
                    Ok(()) if *node => self.sys.remove_node(name),
                    Ok(()) => Ok(()),
                    Err(e) => {
                        mappings.push(name.clone());
                        Err(e)
                    }
                },
                Undo::Key(serial) => self.sys.invalidate_key(*serial),
                Undo::Swap(name) => self.sys.swapoff(name),
                Undo::Mount(p) => self.sys.umount(p),
                Undo::Dir(p) => self.sys.rmdir(p),
                Undo::Remount { path, read_only, options } => self.sys.remount(path, *read_only, options),
                Undo::Unit { name, wanted_by } => self.sys.remove_unit(name, wanted_by),
                Undo::Escrow(p) => self.sys.remove_escrow(p),
                Undo::Config(p) => self.sys.remove_config(p),
            };
            if let Err(e) = r {
                log::error!("undo failed: {e}");
                left.push(e.to_string());
            }
        }
        (left, mappings)
    }

    /// Undo everything, then take the failure policy's steps. Each of those is tried on its own:
    /// one tmpfs that cannot be mounted does not keep the others from being mounted, and the
    /// status says which failed.
    fn fail(mut self, plan: &Plan, reason: String, failed_step: Option<String>) -> Status {
        let (cleanup, left) = self.rollback();
        let reason = if cleanup.is_empty() { reason } else { format!("{reason}; cleanup: {}", cleanup.join("; ")) };
        log::error!("setup failed: {reason}; on-failure={}", plan.on_failure.name());
        let result = match (&plan.state, plan.on_failure) {
            (State::BadConfig(_), _) | (_, OnFailure::Halt) => SetupResult::Failed,
            _ => SetupResult::Degraded,
        };
        // Everything made was undone: the disks (none taken now), the layout, the timings and
        // whatever could not be undone still hold.
        let before = std::mem::replace(&mut self.status, Status::new(result, reason));
        self.status.failed_step = failed_step.clone();
        self.status.volume = before.volume;
        self.status.steps = before.steps;
        self.status.mappings = before.mappings.into_iter().filter(|m| left.contains(&m.name)).collect();
        self.status.disks = before.disks;
        for d in self.status.disks.iter_mut().filter(|d| d.used) {
            d.used = false;
            d.reason = match &failed_step {
                Some(step) => format!("taken, but setup failed at '{step}' and was undone"),
                None => "eligible, but setup failed".into(),
            };
        }
        if !plan.exposed.is_empty() {
            self.status.reason = format!("{}; {}", self.status.reason, exposed_text(plan));
        }
        // The status write comes last, after what the policy did is known.
        for step in &plan.fallback {
            if let Err(e) = self.step(step) {
                log::error!("{}: {e}", step.title());
                if !matches!(step, Step::Status { .. }) {
                    self.status.reason = format!("{}; on-failure: {}: {e}", self.status.reason, step.title());
                }
            }
        }
        // What the fallback made stays: it is the protection.
        self.undo.clear();
        log::info!("result: {} ({})", self.status.result, self.status.reason);
        self.status
    }
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;
