//! Apply a plan through a [`System`]: make the key, the mappings, swap, file system, mount and
//! binds, in that order, recording an undo step for each thing made. On any error everything made
//! is undone in reverse order, then the failure policy runs. The key lives only inside
//! [`Setup::crypt`]: it is handed to the kernel and dropped (wiped) before anything else happens.

use std::path::{Path, PathBuf};

use crate::config::{Config, Fs, OnFailure};
use crate::dm::{Crypt as CryptTarget, CryptKey, Linear, Striped, Target, TargetKind};
use crate::error::{Error, Result};
use crate::host::Disk;
use crate::key::{self, KeySerial};
use crate::plan::{self, Caps, KeyPath, Plan, State, Volume};
use crate::status::{Outcome, SetupResult};
use crate::system::System;
use crate::units::{DevNo, Sectors};

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
    /// A directory we created in the new root (a mount point or bind target).
    Dir(PathBuf),
}

/// `newroot` + an absolute path inside it.
pub fn under(newroot: &Path, p: &Path) -> PathBuf {
    newroot.join(p.strip_prefix("/").unwrap_or(p))
}

/// How often setup looks again for late disks.
const POLL_MS: u64 = 250;

/// The whole of `ephemcrypt setup` after the configuration is read: find the disks (waiting up
/// to `wait` seconds for `expect` of them), plan, apply, apply the failure policy. `scan` reads
/// the disks afresh. Returns the plan it acted on (if any) and the outcome.
pub fn setup<S: System>(
    config: &Config,
    newroot: &Path,
    sys: &mut S,
    scan: &mut dyn FnMut() -> Result<Vec<Disk>>,
) -> (Option<Plan>, Outcome) {
    if !config.enabled {
        let o = Outcome { result: Some(SetupResult::Disabled), reason: "rd.ephemcrypt=0".into(), ..Outcome::default() };
        return (None, o);
    }
    // A second run in the same boot: the volume is live and its disks are now held by it.
    if let Ok(Some(dev)) = sys.dm_dev(&config.name) {
        return (None, reattach(config, dev, newroot, sys));
    }
    let start = sys.now_ms();
    let mut plan = loop {
        let disks = match scan() {
            Ok(d) => d,
            Err(e) => {
                return (None, fail(config.on_failure, &config.bind, newroot, sys, e.to_string(), Outcome::default()))
            }
        };
        let p = plan::plan(config, &disks, Caps::ASSUMED);
        let waited = sys.now_ms() - start;
        match p.state {
            State::TooFew { .. } if waited < u64::from(config.wait_secs) * 1000 => sys.sleep_ms(POLL_MS),
            _ => break p,
        }
    };
    let mut outcome = Outcome::default();
    if sys.now_ms() - start >= POLL_MS {
        outcome.steps.push(("wait for disks".into(), sys.now_ms() - start));
    }
    match plan.state {
        State::Disabled => unreachable!("checked above"),
        State::Absent => {
            log::info!("no eligible disk; nothing to do");
            outcome.result = Some(SetupResult::Absent);
            outcome.reason = plan.state_text().1;
            return (Some(plan), outcome);
        }
        State::TooFew { .. } | State::Invalid(_) => {
            let reason = plan.state_text().1;
            let o = fail(config.on_failure, &config.bind, newroot, sys, reason, outcome);
            return (Some(plan), o);
        }
        State::Ready(_) => {}
    }
    // Now that there is work, ask the kernel what its crypt target can do and plan for it.
    let t = sys.now_ms();
    match sys.crypt_version() {
        Ok(v) => {
            outcome.steps.push((format!("read dm-crypt version {}.{}.{}", v[0], v[1], v[2]), sys.now_ms() - t));
            let disks: Vec<Disk> = plan.disks.iter().map(|a| a.disk.clone()).collect();
            plan = plan::plan(config, &disks, Caps { crypt: Some(v) });
        }
        Err(e) => {
            let o = fail(config.on_failure, &config.bind, newroot, sys, e.to_string(), outcome);
            return (Some(plan), o);
        }
    }
    let Some(volume) = plan.volume() else {
        let o = fail(config.on_failure, &config.bind, newroot, sys, plan.state_text().1, outcome);
        return (Some(plan), o);
    };
    for a in plan.disks.iter().filter(|a| !a.verdict.is_use()) {
        log::info!("skipping {}: {}", a.disk.path.display(), a.verdict.reason());
    }
    let mut s = Setup { sys, newroot, undo: Vec::new(), outcome };
    let result = s.build(volume);
    let Setup { undo, mut outcome, .. } = s;
    match result {
        Ok(()) => {
            outcome.result = Some(SetupResult::Ok);
            outcome.reason = format!("{} disk(s) encrypted", volume.members.len());
            log::info!("done: {}", outcome.reason);
            (Some(plan), outcome)
        }
        Err(e) => {
            log::error!("{e}");
            let cleanup = rollback(sys, undo);
            let reason =
                if cleanup.is_empty() { e.to_string() } else { format!("{e}; cleanup: {}", cleanup.join("; ")) };
            // Everything made was undone: only the step timings still say something true.
            let outcome = Outcome { steps: outcome.steps, ..Outcome::default() };
            let o = fail(config.on_failure, &config.bind, newroot, sys, reason, outcome);
            (Some(plan), o)
        }
    }
}

/// A mapping that was just written to (mkfs, a swap signature) is opened by udev for a moment: the
/// dm rules probe it (blkid) on the uevent that closing it after writing raises. Removing it in that
/// window fails with EBUSY. Try again as `dmsetup remove --retry` does (libdevmapper: 25 tries, 200
/// ms apart).
const REMOVE_TRIES: u32 = 25;
const REMOVE_RETRY_MS: u64 = 200;

fn remove_mapping<S: System>(sys: &mut S, name: &str) -> Result<()> {
    for _ in 1..REMOVE_TRIES {
        match sys.dm_remove(name) {
            Err(e) if e.is_busy() => {
                log::info!("{e}; trying again in {REMOVE_RETRY_MS} ms");
                sys.sleep_ms(REMOVE_RETRY_MS);
            }
            r => return r,
        }
    }
    sys.dm_remove(name)
}

/// Undo in reverse order; returns what could not be undone.
fn rollback<S: System>(sys: &mut S, undo: Vec<Undo>) -> Vec<String> {
    let mut left = Vec::new();
    for u in undo.into_iter().rev() {
        log::info!("undo: {u:?}");
        let r = match &u {
            Undo::Mapping { name, node } => {
                let n = if *node { sys.remove_node(name) } else { Ok(()) };
                n.and_then(|()| remove_mapping(sys, name))
            }
            Undo::Key(serial) => sys.invalidate_key(*serial),
            Undo::Swap(name) => sys.swapoff(name),
            Undo::Mount(p) => sys.umount(p),
            Undo::Dir(p) => sys.rmdir(p),
        };
        if let Err(e) = r {
            log::error!("undo failed: {e}");
            left.push(e.to_string());
        }
    }
    left
}

/// The failure policy for a failure before any plan exists (an unreadable configuration).
pub fn fallback<S: System>(config: &Config, newroot: &Path, sys: &mut S, reason: String) -> Outcome {
    fail(config.on_failure, &config.bind, newroot, sys, reason, Outcome::default())
}

/// The failure policy, after everything made was undone.
fn fail<S: System>(
    policy: OnFailure,
    binds: &[PathBuf],
    newroot: &Path,
    sys: &mut S,
    reason: String,
    mut outcome: Outcome,
) -> Outcome {
    log::error!("setup failed: {reason}; on-failure={}", policy.name());
    outcome.reason = reason;
    outcome.result = Some(match policy {
        OnFailure::Halt => SetupResult::Failed,
        OnFailure::Continue => SetupResult::Degraded,
        OnFailure::Tmpfs => {
            for b in binds {
                let target = under(newroot, b);
                match sys.mount_tmpfs(&target) {
                    Ok(()) => {
                        log::warn!("tmpfs mounted on {} so nothing lands unencrypted on disk", target.display());
                        outcome.tmpfs.push(b.clone());
                    }
                    Err(e) => log::error!("{e}"),
                }
            }
            SetupResult::Degraded
        }
    });
    outcome
}

/// The volume is already live (a second run in this boot): change nothing that exists; mount
/// what is not mounted yet (a new root in the same boot), never make a file system.
fn reattach<S: System>(config: &Config, crypt_dev: DevNo, newroot: &Path, sys: &mut S) -> Outcome {
    log::info!("/dev/mapper/{} ({crypt_dev}) is already live; not touching it", config.name);
    let mut o = Outcome { already_active: true, ..Outcome::default() };
    let data = format!("{}-data", config.name);
    let data_name = match sys.dm_dev(&data) {
        Ok(Some(_)) => data,
        _ => config.name.clone(),
    };
    let mount = under(newroot, &config.mount);
    let r = (|| -> Result<()> {
        // Only our own volume is reattached: a mapping of that name must be one crypt target.
        let table = sys.dm_table(&config.name)?;
        if !matches!(table.as_slice(), [line] if line.target_type == "crypt") {
            let kinds: Vec<&str> = table.iter().map(|l| l.target_type.as_str()).collect();
            return Err(Error::msg(format!(
                "/dev/mapper/{} exists but is not a dm-crypt volume ({}); set 'name' to another prefix",
                config.name,
                kinds.join(", ")
            )));
        }
        if config.fs == Fs::None || sys.is_mountpoint(&mount)? {
            return Ok(());
        }
        sys.mount_dm(&data_name, &mount, config.fs)?;
        for b in &config.bind {
            sys.bind(&under(&mount, b), &under(newroot, b))?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => {
            o.result = Some(SetupResult::Ok);
            o.reason = "already set up in this boot".into();
        }
        Err(e) => o = fail(config.on_failure, &config.bind, newroot, sys, e.to_string(), o),
    }
    o
}

struct Setup<'a, S: System> {
    sys: &'a mut S,
    newroot: &'a Path,
    undo: Vec<Undo>,
    outcome: Outcome,
}

impl<S: System> Setup<'_, S> {
    /// Run one step, timing it.
    fn step<T>(&mut self, name: String, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let t = self.sys.now_ms();
        log::info!("{name}");
        let r = f(self);
        let ms = self.sys.now_ms() - t;
        self.outcome.steps.push((name, ms));
        r
    }

    fn build(&mut self, v: &Volume) -> Result<()> {
        let below = match &v.stripe {
            None => v.members[0].dev,
            Some(st) => {
                let devs = v.members.iter().map(|m| (m.dev, Sectors(0))).collect();
                let target = Target {
                    start: Sectors(0),
                    len: st.len,
                    kind: TargetKind::Striped(Striped { chunk: st.chunk, devs }),
                };
                let desc = format!("stripe {} over {} disks", st.name, v.members.len());
                self.step(desc, |s| s.mapping(&st.name, "STRIPE", &[target], false))?
            }
        };
        let crypt_dev = self.step(format!("crypt {} ({})", v.crypt.name, v.crypt.cipher), |s| s.crypt(v, below))?;
        if let (Some(sw), Some(data)) = (&v.swap, &v.data) {
            for slice in [sw, data] {
                let kind = TargetKind::Linear(Linear { dev: crypt_dev, offset: slice.start });
                let target = Target { start: Sectors(0), len: slice.len, kind };
                let role = if slice.name == sw.name { "SWAP" } else { "DATA" };
                self.step(format!("slice {}", slice.name), |s| s.mapping(&slice.name, role, &[target], false))?;
            }
            self.step(format!("swap on /dev/mapper/{}", sw.name), |s| {
                s.sys.make_swap(&sw.name, sw.len.bytes())?;
                s.sys.swapon(&sw.name)?;
                s.undo.push(Undo::Swap(sw.name.clone()));
                s.outcome.swap = Some(format!("/dev/mapper/{}", sw.name));
                Ok(())
            })?;
        }
        if v.fs == Fs::None {
            return Ok(());
        }
        let data = v.data_name().to_string();
        self.step(format!("mkfs {} on /dev/mapper/{data}", v.fs.name()), |s| s.sys.mkfs(v.fs, &data))?;
        let mount = under(self.newroot, &v.mount);
        self.step(format!("mount at {}", mount.display()), |s| {
            s.mkdir(&mount)?;
            s.sys.mount_dm(&data, &mount, v.fs)?;
            s.undo.push(Undo::Mount(mount.clone()));
            s.outcome.mount = Some(v.mount.clone());
            Ok(())
        })?;
        for b in &v.binds {
            let (source, target) = (under(&mount, b), under(self.newroot, b));
            self.step(format!("bind {}", b.display()), |s| {
                s.mkdir(&target)?;
                s.sys.copy_skeleton(&target, &source)?;
                s.sys.bind(&source, &target)?;
                s.undo.push(Undo::Mount(target.clone()));
                s.outcome.binds.push(b.clone());
                Ok(())
            })?;
        }
        Ok(())
    }

    fn mkdir(&mut self, p: &Path) -> Result<()> {
        if self.sys.mkdir(p)? {
            self.undo.push(Undo::Dir(p.to_path_buf()));
        }
        Ok(())
    }

    /// Create a mapping with one table, make it live, give it a /dev/mapper node.
    fn mapping(&mut self, name: &str, role: &str, table: &[Target], secure: bool) -> Result<DevNo> {
        let dev = self.create(name, role)?;
        self.sys.dm_load(name, table, secure)?;
        self.sys.dm_resume(name)?;
        self.node(name, dev)?;
        Ok(dev)
    }

    fn create(&mut self, name: &str, role: &str) -> Result<DevNo> {
        // CRYPT-PLAIN- is what cryptsetup gives plain mappings: lsblk shows "crypt".
        let uuid = match role {
            "CRYPT" => format!("CRYPT-PLAIN-{name}"),
            _ => format!("EPHEMCRYPT-{role}-{name}"),
        };
        let dev = self.sys.dm_create(name, &uuid)?;
        self.undo.push(Undo::Mapping { name: name.to_string(), node: false });
        self.outcome.mappings.push((name.to_string(), dev));
        Ok(dev)
    }

    fn node(&mut self, name: &str, dev: DevNo) -> Result<()> {
        if self.sys.make_node(name, dev)? {
            if let Some(Undo::Mapping { node, .. }) = self.undo.last_mut() {
                *node = true;
            }
        }
        Ok(())
    }

    /// The crypt mapping. The key is made here and dropped (wiped) before this returns: the
    /// kernel keeps its own copy from the table load, and the keyring entry is invalidated.
    fn crypt(&mut self, v: &Volume, below: DevNo) -> Result<DevNo> {
        let c = &v.crypt;
        let dev = self.create(&c.name, "CRYPT")?;
        let key = self.sys.make_key(c.key_bits as usize / 8)?;
        let table = |key: CryptKey| {
            let kind = TargetKind::Crypt(CryptTarget {
                cipher: c.cipher.clone(),
                key,
                iv_offset: Sectors(0),
                dev: below,
                offset: Sectors(0),
                options: c.flags.clone(),
            });
            [Target { start: Sectors(0), len: c.len, kind }]
        };
        match c.key_path {
            KeyPath::Keyring => {
                let description = key::logon_description(&c.name);
                let serial = self.sys.add_logon_key(&description, &key)?;
                drop(key);
                self.undo.push(Undo::Key(serial));
                let loaded = self.sys.dm_load(
                    &c.name,
                    &table(CryptKey::Logon { bytes: c.key_bits as usize / 8, description }),
                    true,
                );
                // dm-crypt copied the key at load; the keyring entry goes whatever happened (if
                // this fails too, the rollback tries again).
                self.sys.invalidate_key(serial)?;
                self.undo.pop();
                loaded?;
            }
            KeyPath::HexTable => {
                let hex = key.to_hex();
                drop(key);
                log::warn!(
                    "this kernel's dm-crypt cannot take keyring keys: loading a hex key with DM_SECURE_DATA_FLAG"
                );
                self.sys.dm_load(&c.name, &table(CryptKey::Hex(hex)), true)?;
            }
        }
        self.outcome.key = Some(c.key_path.describe());
        self.sys.dm_resume(&c.name)?;
        self.node(&c.name, dev)?;
        Ok(dev)
    }
}
