//! The orchestrator of `ephemcrypt setup` and `ephemcrypt plan`: read the configuration and the
//! machine (waiting for late disks), ask the kernel what it can do, plan once, then (setup only)
//! take the plan's steps. Reading goes through [`Host`] (files under the host root) and the
//! kernel state and clock through [`System`]; planning is pure; executing is `execute.rs`.

use std::path::Path;

use crate::classify::identity;
use crate::config::Config;
use crate::disk::{Disk, NewRoot, Probe};
use crate::error::{Error, Result};
use crate::escape::Esc;
use crate::execute::execute;
use crate::host::Host;
use crate::paths::{under, STATUS_PATH};
use crate::plan::{self, Caps, Facts, Live, Plan, State};
use crate::progress::Death;
use crate::status::{SetupResult, Status, StatusError, Timing};
use crate::system::System;

/// The largest status file `ephemcrypt status` reads: ours are a few KiB.
const MAX_STATUS_BYTES: u64 = 1 << 20;

/// What `ephemcrypt status` shows: the status file setup wrote in this boot, each mapping checked
/// against the kernel (where device-mapper can be asked: liveness stays unknown otherwise).
pub(crate) fn status<S: System>(host: &Host, sys: &mut S) -> Result<Status> {
    use std::io::Read;
    let path = host.path(STATUS_PATH);
    let bad = |why| Error::Status { path: path.display().to_string(), why };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return died(host, sys).unwrap_or_else(|| Err(Error::NotRun { path: path.display().to_string() }))
        }
        Err(e) => return Err(Error::os("read status", path.display(), e)),
    };
    let mut text = String::new();
    file.take(MAX_STATUS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::os("read status", path.display(), e))?;
    if text.len() as u64 > MAX_STATUS_BYTES {
        return Err(bad(StatusError::TooLarge { max: MAX_STATUS_BYTES }));
    }
    let mut status = crate::status::parse(&text).map_err(bad)?;
    if status.guard.as_deref() == Some(crate::plan::GUARD_UNIT) {
        status.guard_active = Some(guard_active(host));
    }
    if host.path("/dev/mapper/control").exists() {
        for m in &mut status.mappings {
            m.live = sys.dm_dev(&m.name).ok().map(|d| d.is_some());
        }
    }
    crate::visible::check(&mut status, crate::visible::read(host));
    Ok(status)
}

/// No status, but a progress record: setup is running, or died (and no second invocation ran, or
/// it died too, and the boot stopped). What it made is still there: the emergency shell's
/// `ephemcrypt status` says so instead of "did not run".
fn died<S: System>(host: &Host, sys: &mut S) -> Option<Result<Status>> {
    let record = match crate::progress::read(sys) {
        Ok(r) => r?,
        Err(e) => return Some(Err(e)),
    };
    let step = record.step_title();
    let running = record.pid != 0 && host.path(format!("/proc/{}", record.pid)).exists();
    let mut status = if running {
        Status::new(SetupResult::Failed, format!("setup is still running (pid {}), at step '{step}'", record.pid))
    } else {
        let made: Vec<String> = record.leftovers.iter().map(crate::progress::Leftover::describe).collect();
        Status::new(
            SetupResult::Failed,
            format!(
                "setup died (pid {}) at step '{step}', and nothing undid what it made or applied the failure \
                 policy; it may have left: {}",
                record.pid,
                if made.is_empty() { "nothing".to_string() } else { made.join(", ") }
            ),
        )
    };
    status.failed_step = Some(step);
    Some(Ok(status))
}

/// The guard's own inhibitor lock is held. logind keeps a file per lock in /run/systemd/inhibit
/// (`WHAT=`, `MODE=`, `UID=`, `PID=`, `WHO=`, ...); only one that is root's, blocks shutdown, names
/// ephemcrypt and was taken by a process of the guard unit counts: any account can take a lock
/// with `--who=ephemcrypt` (a delay lock, or a block lock where polkit lets it), and any root
/// process too. Regular files only: the `.ref` FIFOs beside them would block a reader.
fn guard_active(host: &Host) -> bool {
    let Ok(dir) = std::fs::read_dir(host.path("/run/systemd/inhibit")) else { return false };
    dir.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())).any(|e| {
        let Some(text) = read_small(&e.path()) else { return false };
        guard_lock_pid(&text).is_some_and(|pid| in_guard_unit(host, pid))
    })
}

/// The largest inhibitor or cgroup file read: logind's are a few hundred bytes.
const MAX_SMALL_FILE: u64 = 64 << 10;

/// A small file's text, not following a link, never blocking on a FIFO.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_SMALL_FILE).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The PID in a logind inhibitor file, when the lock is one the guard takes: UID=0, MODE=block,
/// WHAT naming shutdown, WHO=ephemcrypt.
fn guard_lock_pid(text: &str) -> Option<u32> {
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='));
    let ours = field("UID") == Some("0")
        && field("MODE") == Some("block")
        && field("WHAT").is_some_and(|w| w.split(':').any(|w| w == "shutdown"))
        && field("WHO") == Some("ephemcrypt");
    let pid = field("PID")?.parse::<u32>().ok().filter(|&p| p > 1)?;
    ours.then_some(pid)
}

/// Process `pid` is in the guard unit's control group (/proc/PID/cgroup: `0::/system.slice/
/// ephemcrypt-guard.service` on cgroup v2; the `name=systemd` line on v1).
fn in_guard_unit(host: &Host, pid: u32) -> bool {
    let Some(text) = read_small(&host.path(format!("/proc/{pid}/cgroup"))) else { return false };
    text.lines().any(|l| {
        let mut f = l.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else { return false };
        (controllers.is_empty() || controllers == "name=systemd")
            && path.rsplit('/').next() == Some(crate::plan::GUARD_UNIT)
    })
}

/// How often setup looks again for late disks.
const POLL_MS: u64 = 250;

/// What `ephemcrypt setup` does, end to end; returns the plan it followed and what happened.
/// Every failure after the arguments are checked goes through the failure policy and the status.
pub(crate) fn setup<S: System>(host: &Host, config_file: Option<&Path>, newroot: &Path, sys: &mut S) -> (Plan, Status) {
    // A record left by an earlier run of this boot that died, and whose second invocation died
    // too (the rescue shell's "leave to run setup again"): what it made goes first.
    match crate::progress::read(sys) {
        Ok(Some(r)) => {
            log::warn!("an earlier setup died at step '{}': undoing what it left first", r.step_title());
            for e in crate::progress::teardown(sys, &r.leftovers) {
                log::error!("{e}");
            }
        }
        Ok(None) => {}
        Err(e) => log::error!("{e}"),
    }
    // From here on, a death leaves a record for the hook's second invocation (after_death).
    crate::progress::reading(sys);
    let (plan, timings) = match host.config(config_file) {
        Ok(config) => {
            let root = read_newroot(&config, Some(newroot), sys);
            if let Some(why) = image_refusal(host, config_file, &config) {
                log::error!("{why}");
                (plan::failed(&config, &root, State::BadConfig(why)), Vec::new())
            } else {
                observe_and_plan(host, &config, root.clone(), sys, true).unwrap_or_else(|e| {
                    log::error!("{e}");
                    (plan::failed(&config, &root, State::Unreadable(e.to_string())), Vec::new())
                })
            }
        }
        Err(e) => {
            // Without a configuration there is no policy to follow: keep data off the disks with
            // tmpfs over the default bind targets, report, and let the machine boot.
            log::error!("{e}");
            let config = Config::default();
            let root = read_newroot(&config, Some(newroot), sys);
            (plan::failed(&config, &root, State::BadConfig(e.to_string())), Vec::new())
        }
    };
    if let Some(v) = plan.volume().filter(|v| plan.caps.fips && !v.escrow.is_empty()) {
        log::warn!(
            "FIPS mode: the escrow to {} recipient(s) uses X25519 and ChaCha20-Poly1305 in ephemcrypt, not \
             FIPS-approved cryptography (escrow-fips = allow)",
            v.escrow.len()
        );
    }
    let status = execute(&plan, sys, timings);
    crate::progress::finished(sys);
    (plan, status)
}

/// Why this boot's `rd.ephemcrypt.cipher=` or `rd.ephemcrypt.fs=` is refused: the image was
/// built for the file's configuration (`ephemcrypt needs`), and lacks the modules (per its own
/// modules.dep, which the image builders write for the modules they add) or the program the
/// override needs. Reads the image; needs.rs decides.
fn image_refusal(host: &Host, config_file: Option<&Path>, config: &Config) -> Option<String> {
    let built = host.config_file_only(config_file).ok()?;
    let image = || {
        let kver = read_small(&host.path("/proc/sys/kernel/osrelease")).map(|v| v.trim().to_string())?;
        let kver = Some(kver).filter(|v| !v.is_empty() && !v.contains('/') && v != "..")?;
        let dir = host.path(Path::new("/lib/modules").join(kver));
        let dep = std::fs::read_to_string(dir.join("modules.dep")).ok()?;
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        Some(crate::needs::Kernel::parse(&builtin, &dep))
    };
    let has_program =
        |p: &str| ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| host.path(d).join(p).is_file());
    crate::needs::refusal(&built, config, image, has_program)
}

/// `ephemcrypt setup --died HOW`: the boot hook's second invocation after the first ended without
/// finishing (`how`: a signal, or an exit status other than 0 and 1). Take back what the dead run
/// left (its progress record says what it may have made: mappings, swap, mounts and binds,
/// directories, remounts, units, the escrow file), then follow the failure policy as setup does
/// (tmpfs over every bind target by default) and write the status: setup died, how, at which
/// step. `None`: the first run finished on its own (its exit status already says what to do).
pub(crate) fn after_death<S: System>(
    host: &Host,
    config_file: Option<&Path>,
    newroot: &Path,
    sys: &mut S,
    how: Death,
) -> Option<(Plan, Status)> {
    let record = match crate::progress::read(sys) {
        Ok(r) => r,
        Err(e) => {
            // What the dead run made cannot be known: the policy's tmpfs still covers the targets.
            log::error!("{e}");
            Some(crate::progress::Record::default())
        }
    };
    match (how, &record) {
        (Death::Exit(0), _) | (Death::Exit(1) | Death::Unknown, None) => return None,
        _ => {}
    }
    let step = record.as_ref().map_or_else(|| crate::progress::READING.to_string(), |r| r.step_title());
    let leftovers = record.map(|r| r.leftovers).unwrap_or_default();
    log::error!("setup {} at step '{step}': undoing what it left, then the failure policy", how.describe());
    let left = crate::progress::teardown(sys, &leftovers);
    let undone = if left.is_empty() {
        "what it had made was undone".to_string()
    } else {
        format!("cleanup: {}", left.join("; "))
    };
    let reason = format!("setup {} at step '{step}'; {undone}", how.describe());
    let (config, reason) = match host.config(config_file) {
        Ok(config) => (config, reason),
        Err(e) => (Config::default(), format!("{reason}; {e}")),
    };
    let root = read_newroot(&config, Some(newroot), sys);
    let mut plan = plan::failed(&config, &root, State::Unreadable(reason));
    for step in &mut plan.fallback {
        if let crate::step::Step::Measure(event) = step {
            event.died = true;
        }
    }
    let mut status = execute(&plan, sys, Vec::new());
    status.failed_step = Some(step);
    if let Err(e) = sys.write_status(Path::new(STATUS_PATH), &status.to_json().pretty()) {
        log::error!("{e}");
    }
    crate::progress::finished(sys);
    Some((plan, status))
}

/// What `ephemcrypt plan` shows: the same reading and planning as setup, without waiting for
/// disks, with the kernel's features where they can be read without changing anything.
pub(crate) fn show<S: System>(
    host: &Host,
    config_file: Option<&Path>,
    newroot: Option<&Path>,
    sys: &mut S,
) -> Result<Plan> {
    let config = host.config(config_file)?;
    let root = read_newroot(&config, newroot, sys);
    Ok(observe_and_plan(host, &config, root, sys, false)?.0)
}

/// Read the facts and plan; an error when the disks (or, for setup, the kernel's dm-crypt) cannot
/// be read. `setup`: wait up to `wait` seconds for `expect` disks, and need the kernel's features.
fn observe_and_plan<S: System>(
    host: &Host,
    config: &Config,
    root: NewRoot,
    sys: &mut S,
    setup: bool,
) -> Result<(Plan, Vec<Timing>)> {
    let mut timings = Vec::new();
    // A second run in the same boot: the volume is live and its disks are now held by it.
    let live = if config.enabled { live(config, &root, sys) } else { None };
    // FIPS mode decides which ciphers the kernel runs: a file under the host root, read always.
    let caps = Caps { fips: host.fips_enabled()?, ..Caps::ASSUMED };
    let mut facts = Facts { disks: Vec::new(), caps, newroot: root, live, identity: None, taken: Vec::new() };
    let start = sys.now_ms();
    let mut slept = false;
    let mut loaded = false;
    loop {
        let t = sys.now_ms();
        facts.disks = host.disks_for(config)?;
        let sysfs_ms = sys.now_ms().saturating_sub(t);
        // The kernel phase's modules load while the candidates are probed, when a volume may be
        // wanted (were every candidate free): modprobe's time is then off the critical path. A
        // machine whose candidates all turn out refused has loaded them for nothing.
        let load = setup && !loaded && plan::may_want_volume(config, &facts);
        let t = sys.now_ms();
        let mut module_ms = 0;
        let probed = probe_candidates(host, config, &mut facts.disks, || {
            if load {
                let t = sys.now_ms();
                sys.load_modules(&plan::DM_MODULES);
                // The cipher's modules too (the crypt step checks again, then at no cost, and
                // names what is missing).
                let cipher = crate::config::CipherSpec::parse(&config.cipher).map(|s| s.kernel_algorithms());
                sys.load_crypto(&cipher.unwrap_or_default());
                module_ms = sys.now_ms().saturating_sub(t);
            }
        });
        loaded |= load;
        let probe_ms = sys.now_ms().saturating_sub(t);
        let waited = sys.now_ms().saturating_sub(start);
        // The plan's own early decision says whether to wait: too few disks yet, or an exclusion
        // whose link udev has not made yet.
        if setup && plan::waits_for_disks(config, &facts) && waited < u64::from(config.wait_secs) * 1000 {
            sys.sleep_ms(POLL_MS);
            slept = true;
            continue;
        }
        // Only time spent waiting is a wait: a slow first read of sysfs is not (it is timed
        // below; counting it too made a wait of every read that took 250 ms or more).
        if slept {
            timings.push(Timing { kind: "wait".into(), step: "wait for disks".into(), ms: t.saturating_sub(start) });
        }
        // What reading sysfs and probing the candidates cost (the last time round).
        timings.push(Timing {
            kind: "read".into(),
            step: format!("read sysfs: {} disks", facts.disks.len()),
            ms: sysfs_ms,
        });
        timings.push(Timing { kind: "read".into(), step: format!("probe {probed} disks side by side"), ms: probe_ms });
        if load {
            let names = plan::DM_MODULES.join(", ");
            let step = format!("load {names}, the cipher's (beside the probe)");
            timings.push(Timing { kind: "kernel".into(), step, ms: module_ms });
        }
        break;
    }
    // The kernel phase (plan::KERNEL_PHASE), only when a volume is wanted: loading dm-crypt on
    // every machine without local disks would be waste. `plan` changes nothing: it reads the
    // crypt target's version where it is loaded already, and shows the volume as new.
    if plan::wants_volume(config, &facts) {
        let t = sys.now_ms();
        if setup && !loaded {
            sys.load_modules(&plan::DM_MODULES);
        }
        let version = match sys.crypt_version() {
            Ok(v) => Some(v),
            // Setup cannot go on without it; `plan` shows what a current kernel would get.
            Err(e) if setup => return Err(e),
            Err(e) => {
                log::debug!("kernel features not read: {e}");
                None
            }
        };
        facts.caps.crypt = version;
        if setup {
            facts.identity = Some(sys.identity()?);
        }
        facts.taken = plan::MappingNames::of(config)
            .all()
            .into_iter()
            .filter_map(|name| sys.dm_dev(&name).ok().flatten().map(|dev| (name, dev)))
            .collect();
        let step = match version {
            Some(v) => format!("kernel: dm-crypt {}.{}.{}, names checked", v[0], v[1], v[2]),
            None => "kernel: features assumed, names checked".to_string(),
        };
        timings.push(Timing { kind: "kernel".into(), step, ms: sys.now_ms().saturating_sub(t) });
    }
    Ok((plan::plan(config, &facts), timings))
}

/// At most this many disks are probed at once, one thread each.
const PROBE_THREADS: usize = 8;

/// Probe the disks a selector picks by identity (reading the root disk or an unselected one at
/// boot would be wasted I/O, and their verdict never depends on it), side by side, while `beside`
/// runs on this thread; returns how many were probed. Each probe's time is logged. A thread that
/// cannot be started leaves its share to this thread; one that ends abnormally fails its disks.
fn probe_candidates(host: &Host, config: &Config, disks: &mut [Disk], beside: impl FnOnce()) -> usize {
    use std::time::Instant;
    let which: Vec<usize> =
        disks.iter().enumerate().filter(|(_, d)| identity(d, config).is_none()).map(|(i, _)| i).collect();
    let shown: &[Disk] = disks;
    let probe = |&i: &usize| {
        let t = Instant::now();
        let probe = shown.get(i).map_or(Probe::NotProbed, |d| host.probe(d));
        (probe, t.elapsed().as_millis())
    };
    let results = crate::parallel::map(&which, PROBE_THREADS, probe, beside);
    for (&i, result) in which.iter().zip(results) {
        if let Some(d) = disks.get_mut(i) {
            d.probe = match result {
                Some((probe, ms)) => {
                    log::debug!("probed {} in {ms} ms: {}", Esc(&d.name), Esc(&probe.describe()));
                    probe
                }
                None => Probe::Failed(format!("the probe of /dev/{} ended abnormally", d.name)),
            };
        }
    }
    which.len()
}

/// The new root's directories that setup needs: the mount point and the bind targets. Without a
/// new root (`plan` without `--newroot`) they are taken to be present under `/sysroot`.
fn read_newroot<S: System>(config: &Config, newroot: Option<&Path>, sys: &mut S) -> NewRoot {
    let Some(path) = newroot else { return NewRoot::assumed("/sysroot") };
    let mut dirs = Vec::new();
    for d in std::iter::once(&config.mount).chain(&config.bind) {
        match sys.dir_state(&under(path, d)) {
            Ok(state) => dirs.push((d.clone(), state)),
            Err(e) => {
                log::warn!("{e}; taking the new root's directories to be present");
                return NewRoot { read: false, ..NewRoot::assumed(path) };
            }
        }
    }
    // What its fstab mounts after switch_root, and whether systemd will be its init.
    let fstab = match sys.read_text(&under(path, Path::new("/etc/fstab"))) {
        Ok(text) => crate::disk::parse_fstab(&text.unwrap_or_default()),
        Err(e) => {
            log::warn!("{e}; taking the new root's fstab to mount nothing over the bind targets");
            Vec::new()
        }
    };
    let init = ["/sbin/init", "/usr/sbin/init"].iter().find_map(|i| sys.link_text(&under(path, Path::new(i))));
    let systemd = init.is_some_and(|t| t.to_string_lossy().contains("systemd"));
    let hold_file = under(path, Path::new(crate::paths::HOLD_FILE));
    let hold = sys.read_text(&hold_file).map(|t| t.is_some()).unwrap_or_else(|e| {
        log::warn!("{e}; taking it to be there: no disk is touched");
        true
    });
    // A unit of the root's own for a bind target's mount, which would outrank setup's.
    let mut units = Vec::new();
    for b in systemd.then_some(&config.bind).into_iter().flatten() {
        let unit = format!("{}.mount", crate::paths::systemd_escape_path(b));
        let file = under(path, &Path::new("/etc/systemd/system").join(&unit));
        if sys.link_text(&file).is_some() || sys.read_text(&file).ok().flatten().is_some() {
            units.push(unit);
        }
    }
    NewRoot { path: path.to_path_buf(), dirs, read: true, fstab, systemd, hold, units }
}

/// The volume of this name, if it is live already, as the kernel shows it.
fn live<S: System>(config: &Config, root: &NewRoot, sys: &mut S) -> Option<Live> {
    let dev = sys.dm_dev(&config.name).ok().flatten()?;
    log::info!("/dev/mapper/{} ({dev}) is already live", config.name);
    let targets = match sys.dm_table(&config.name) {
        Ok(t) => t.iter().map(|l| l.target_type.clone()).collect(),
        Err(e) => {
            log::error!("{e}");
            vec!["(table unreadable)".to_string()]
        }
    };
    let data_name = format!("{}-data", config.name);
    let data = match sys.dm_dev(&data_name) {
        Ok(Some(_)) => data_name,
        _ => config.name.clone(),
    };
    let mount = under(&root.path, &config.mount);
    let mounted = sys.is_mountpoint(&mount).unwrap_or(false);
    Some(Live { dev, targets, data, mounted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Probe;

    /// logind's file for the guard's lock, as systemd 252 writes it, with the holder's PID.
    fn lock(pid: u32) -> String {
        format!(
            "# This is private data. Do not parse.\nWHAT=shutdown\nMODE=block\nUID=0\nPID={pid}\nWHO=ephemcrypt\n\
             WHY=a reboot destroys the encrypted ephemeral volume\nFIFO=/run/systemd/inhibit/1.ref\n"
        )
    }

    #[test]
    fn only_the_guard_units_own_lock_counts() {
        let root = std::env::temp_dir().join(format!("ephemcrypt-guard-active-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let inhibit = root.join("run/systemd/inhibit");
        std::fs::create_dir_all(&inhibit).unwrap();
        let host = Host::new(&root);
        let proc = |pid: u32, cgroup: &str| {
            std::fs::create_dir_all(root.join(format!("proc/{pid}"))).unwrap();
            std::fs::write(root.join(format!("proc/{pid}/cgroup")), cgroup).unwrap();
        };
        proc(300, "0::/system.slice/ephemcrypt-guard.service\n");
        proc(400, "0::/user.slice/user-1000.slice/session-3.scope\n");
        proc(500, "0::/system.slice/cron.service\n");
        proc(600, "12:pids:/system.slice/x.service\n1:name=systemd:/system.slice/ephemcrypt-guard.service\n");
        let only = |text: &str| {
            for e in std::fs::read_dir(&inhibit).unwrap() {
                std::fs::remove_file(e.unwrap().path()).unwrap();
            }
            std::fs::write(inhibit.join("1"), text).unwrap();
            guard_active(&host)
        };
        assert!(!guard_active(&host), "no lock");
        assert!(only(&lock(300)), "the guard's own lock");
        assert!(only(&lock(600)), "cgroup v1's name=systemd hierarchy");
        assert!(only(&lock(300).replace("WHAT=shutdown", "WHAT=sleep:shutdown")));
        // Forged: by another account, another process with WHO=ephemcrypt, or not blocking.
        assert!(!only(&lock(400).replace("UID=0", "UID=1000")), "a user's lock");
        assert!(!only(&lock(300).replace("UID=0", "UID=1000")), "UID must be 0");
        assert!(!only(&lock(500)), "root, but not the guard unit's process");
        assert!(!only(&lock(700)), "a process that is gone");
        assert!(!only(&lock(300).replace("MODE=block", "MODE=delay")), "a delay lock");
        assert!(!only(&lock(300).replace("WHAT=shutdown", "WHAT=sleep")), "not shutdown");
        assert!(!only(&lock(300).replace("WHO=ephemcrypt", "WHO=ephemcrypt2")));
        assert!(!only(&lock(300).replace("PID=300", "PID=")), "no PID");
        assert!(!only("WHAT=shutdown\nMODE=block\nWHO=ephemcrypt\n"), "the old test's file");
        // The FIFO beside a lock file is never opened (it would block); a link is not followed.
        std::fs::write(inhibit.join("1"), lock(500)).unwrap();
        nix::unistd::mkfifo(&inhibit.join("1.ref"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(root.join("forged"), lock(300)).unwrap();
        std::os::unix::fs::symlink(root.join("forged"), inhibit.join("2")).unwrap();
        assert!(!guard_active(&host));
        std::fs::write(inhibit.join("3"), lock(300)).unwrap();
        assert!(guard_active(&host));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_override_the_image_has_no_modules_for_is_refused() {
        let root = std::env::temp_dir().join(format!("ephemcrypt-image-refusal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |p: &str, text: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("proc/sys/kernel/osrelease", "6.1.0-9-cloud-amd64\n");
        write(
            "lib/modules/6.1.0-9-cloud-amd64/modules.dep",
            "kernel/drivers/md/dm-mod.ko:\nkernel/drivers/md/dm-crypt.ko: kernel/drivers/md/dm-mod.ko\n\
             kernel/crypto/xts.ko:\nkernel/crypto/ecb.ko:\nkernel/arch/x86/crypto/aesni-intel.ko:\n",
        );
        write("lib/modules/6.1.0-9-cloud-amd64/modules.builtin", "kernel/fs/ext4/ext4.ko\n");
        write("usr/sbin/mkfs.ext4", "");
        write("etc/ephemcrypt.conf", "swap = 0\n");
        let host = Host::new(&root);
        let refusal = |cmdline: &str| {
            write("proc/cmdline", cmdline);
            image_refusal(&host, None, &host.config(None).unwrap())
        };
        assert_eq!(refusal("ro"), None, "the image's own configuration");
        assert_eq!(refusal("rd.ephemcrypt.cipher=aes-xts-plain64"), None, "the same cipher");
        let why = refusal("rd.ephemcrypt.cipher=serpent-xts-plain64").unwrap();
        assert!(why.starts_with("rd.ephemcrypt.cipher=serpent-xts-plain64 asks"), "{why}");
        let why = refusal("rd.ephemcrypt.fs=xfs").unwrap();
        assert!(why.contains("the file system xfs") && why.contains("the program mkfs.xfs"), "{why}");
        // An image whose modules cannot be known (no modules.dep): the override is taken.
        std::fs::remove_file(root.join("lib/modules/6.1.0-9-cloud-amd64/modules.dep")).unwrap();
        assert_eq!(refusal("rd.ephemcrypt.cipher=serpent-xts-plain64"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// More candidates than probe threads: every one is probed, each result on its own disk.
    #[test]
    fn many_disks_are_probed_side_by_side_each_to_its_own_result() {
        let tree = crate::fake::Tree::new("");
        for i in 1..=20u32 {
            tree.disk(&format!("nvme{i}n1"), i, &format!("S{i}"));
        }
        // Disk 7 holds ext4's magic where the probe looks (offset 0x438), as a formatted disk would.
        let ext = tree.root.join("dev/nvme7n1");
        let f = std::fs::OpenOptions::new().write(true).open(&ext).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0x53, 0xef], 0x438).unwrap();
        let host = tree.host();
        let mut disks = host.disks().unwrap();
        assert_eq!(probe_candidates(&host, &Config::default(), &mut disks, || {}), 20);
        for d in &disks {
            let want = if d.name == "nvme7n1" { "ext2/3/4 file system" } else { "blank" };
            assert_eq!(d.probe.describe(), want, "{}", d.name);
        }
    }

    #[test]
    fn only_candidate_disks_are_probed() {
        let host = Host::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws"));
        let mut disks = host.disks().unwrap();
        let mut beside = false;
        assert_eq!(probe_candidates(&host, &Config::default(), &mut disks, || beside = true), 2);
        assert!(beside, "what runs beside the probe ran");
        let probe = |name: &str| disks.iter().find(|d| d.name == name).unwrap().probe.clone();
        assert_eq!(probe("nvme1n1"), Probe::Blank, "instance store: probed");
        assert_eq!(probe("nvme0n1"), Probe::NotProbed, "the EBS root disk is never read");
    }
}
