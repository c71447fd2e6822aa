//! What setup is doing, recorded before each step in /run/ephemcrypt/progress, so that when the
//! binary dies (a signal, an abort: release builds abort on panic, or the OOM killer, or a boot
//! chain's timeout), a second invocation (`ephemcrypt setup --died HOW`, run by every boot hook
//! when the first exits by a signal) can say where it died, take back what the dead run may have
//! made, and apply the failure policy.
//!
//! The record is a few lines of text: `pid N`, `step I TITLE`, then one `undo ...` line for each
//! thing the steps taken so far (the current one included: it may have half happened) can leave
//! behind, in the order they were made. It is rewritten whole before each step (a few hundred
//! bytes in /run, a tmpfs) and removed when setup ends on its own. Logon keys are not in it: they
//! live in the process keyring, which the kernel drops with the process.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::step::Step;
use crate::system::System;

/// Where the record is, under the host root.
pub(crate) const PROGRESS_PATH: &str = "/run/ephemcrypt/progress";

/// The first line of a record (and its format's version).
const MAGIC: &str = "ephemcrypt-progress 1";

/// What the step before which setup stopped was, when setup had not started its steps yet.
pub(crate) const READING: &str = "read the configuration, the disks and the kernel";

/// A thing a step makes that a dead run may have left behind; undone by [`teardown`] only if it
/// is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leftover {
    Mapping(String),
    Swap(String),
    Mount(PathBuf),
    /// A remount: undone by remounting to `read_only`, with `options`.
    Remount {
        path: PathBuf,
        read_only: bool,
        options: Vec<String>,
    },
    Dir(PathBuf),
    Unit {
        name: String,
        wanted_by: String,
    },
    Escrow(PathBuf),
    /// A configuration file for the real root's services (the guard's logind drop-in).
    Config(PathBuf),
}

impl Leftover {
    /// "mapping ephemcrypt-data", for a person.
    pub(crate) fn describe(&self) -> String {
        use crate::escape::Esc;
        match self {
            Leftover::Mapping(n) => format!("mapping {}", Esc(n)),
            Leftover::Swap(n) => format!("swap on /dev/mapper/{}", Esc(n)),
            Leftover::Mount(p) => format!("a mount on {}", Esc(&p.to_string_lossy())),
            Leftover::Remount { path, read_only: true, .. } => format!("{} read-write", Esc(&path.to_string_lossy())),
            Leftover::Remount { path, .. } => format!("{} read-only", Esc(&path.to_string_lossy())),
            Leftover::Dir(p) => format!("directory {}", Esc(&p.to_string_lossy())),
            Leftover::Unit { name, .. } => format!("unit {}", Esc(name)),
            Leftover::Escrow(p) => format!("escrow file {}", Esc(&p.to_string_lossy())),
            Leftover::Config(p) => format!("configuration file {}", Esc(&p.to_string_lossy())),
        }
    }
}

/// What a step can leave behind if the process dies during or after it.
fn leftovers(step: &Step) -> Vec<Leftover> {
    match step {
        Step::Headers(_) | Step::Mkfs { .. } | Step::Measure(_) | Step::Status { .. } => Vec::new(),
        Step::Mapping(m) => vec![Leftover::Mapping(m.name.clone())],
        Step::Escrow { file, .. } => vec![Leftover::Escrow(file.clone())],
        Step::Config { path, .. } => vec![Leftover::Config(path.clone())],
        Step::Swap { device, .. } => vec![Leftover::Swap(device.clone())],
        Step::Remount { path, read_only, options } => {
            vec![Leftover::Remount { path: path.clone(), read_only: !read_only, options: options.clone() }]
        }
        Step::Mkdir { path } => vec![Leftover::Dir(path.clone())],
        Step::Mount { target, .. } | Step::Bind { target, .. } | Step::Tmpfs { target } => {
            vec![Leftover::Mount(target.clone())]
        }
        Step::Unit { name, wanted_by, .. } => {
            vec![Leftover::Unit { name: name.clone(), wanted_by: wanted_by.clone() }]
        }
    }
}

/// The record of a setup run, as written and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Record {
    pub(crate) pid: u32,
    /// The step setup was about to take (or taking): its number from 1 and its title.
    pub(crate) step: Option<(usize, String)>,
    pub(crate) leftovers: Vec<Leftover>,
}

/// One field of a record line: backslash, newline, space and other control characters escaped,
/// so that a field never holds a separator.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:x};", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

fn dec(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            '\\' => out.push('\\'),
            's' => out.push(' '),
            'n' => out.push('\n'),
            'u' => {
                let hex: String = it.by_ref().take_while(|c| *c != ';').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn path_field(p: &Path) -> String {
    enc(&p.to_string_lossy())
}

impl Record {
    /// The record before step `index` (from 0) of `steps` is taken.
    pub(crate) fn before(steps: &[Step], index: usize) -> Record {
        let taken = steps.iter().take(index.saturating_add(1));
        Record {
            pid: std::process::id(),
            step: steps.get(index).map(|s| (index + 1, s.title())),
            leftovers: taken.flat_map(leftovers).collect(),
        }
    }

    /// The record before any step: setup is reading and planning.
    pub(crate) fn reading() -> Record {
        Record { pid: std::process::id(), step: None, leftovers: Vec::new() }
    }

    pub(crate) fn to_text(&self) -> String {
        let mut t = format!("{MAGIC}\npid {}\n", self.pid);
        match &self.step {
            Some((n, title)) => t.push_str(&format!("step {n} {}\n", enc(title))),
            None => t.push_str(&format!("step 0 {}\n", enc(READING))),
        }
        for l in &self.leftovers {
            let line = match l {
                Leftover::Mapping(n) => format!("mapping {}", enc(n)),
                Leftover::Swap(n) => format!("swap {}", enc(n)),
                Leftover::Mount(p) => format!("mount {}", path_field(p)),
                Leftover::Remount { path, read_only, options } => format!(
                    "remount {} {} {}",
                    path_field(path),
                    if *read_only { "ro" } else { "rw" },
                    if options.is_empty() { "-".to_string() } else { enc(&options.join(",")) }
                ),
                Leftover::Dir(p) => format!("dir {}", path_field(p)),
                Leftover::Unit { name, wanted_by } => format!("unit {} {}", enc(name), enc(wanted_by)),
                Leftover::Escrow(p) => format!("escrow {}", path_field(p)),
                Leftover::Config(p) => format!("config {}", path_field(p)),
            };
            t.push_str("undo ");
            t.push_str(&line);
            t.push('\n');
        }
        t
    }

    /// Read a record back; `None` names the first line that is not one this module writes.
    pub(crate) fn parse(text: &str) -> std::result::Result<Record, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("the first line is not '{MAGIC}'"));
        }
        let mut r = Record::default();
        for line in lines {
            let bad = || format!("line '{}'", crate::escape::escape(line));
            let words: Vec<&str> = line.split(' ').collect();
            let field = |i: usize| words.get(i).and_then(|w| dec(w)).ok_or_else(bad);
            match words.as_slice() {
                ["pid", n] => r.pid = n.parse().map_err(|_| bad())?,
                ["step", "0", _] => r.step = None,
                ["step", n, _] => r.step = Some((n.parse().map_err(|_| bad())?, field(2)?)),
                ["undo", "mapping", _] => r.leftovers.push(Leftover::Mapping(field(2)?)),
                ["undo", "swap", _] => r.leftovers.push(Leftover::Swap(field(2)?)),
                ["undo", "mount", _] => r.leftovers.push(Leftover::Mount(field(2)?.into())),
                ["undo", "dir", _] => r.leftovers.push(Leftover::Dir(field(2)?.into())),
                ["undo", "escrow", _] => r.leftovers.push(Leftover::Escrow(field(2)?.into())),
                ["undo", "config", _] => r.leftovers.push(Leftover::Config(field(2)?.into())),
                ["undo", "unit", _, _] => r.leftovers.push(Leftover::Unit { name: field(2)?, wanted_by: field(3)? }),
                ["undo", "remount", _, ro @ ("ro" | "rw"), opts] => r.leftovers.push(Leftover::Remount {
                    path: field(2)?.into(),
                    read_only: *ro == "ro",
                    options: if *opts == "-" { Vec::new() } else { field(4)?.split(',').map(str::to_string).collect() },
                }),
                _ => return Err(bad()),
            }
        }
        Ok(r)
    }

    /// The step setup died at, as status shows it.
    pub(crate) fn step_title(&self) -> String {
        self.step.as_ref().map_or_else(|| READING.to_string(), |(_, t)| t.clone())
    }
}

/// Called by the interpreter before it takes step `index` of `steps`. A record that cannot be
/// written only costs the after-death report its detail: logged, never a failure of setup.
pub(crate) fn before_step<S: System>(sys: &mut S, steps: &[Step], index: usize) {
    write(sys, &Record::before(steps, index));
}

/// Before setup reads anything.
pub(crate) fn reading<S: System>(sys: &mut S) {
    write(sys, &Record::reading());
}

fn write<S: System>(sys: &mut S, record: &Record) {
    if let Err(e) = sys.write_progress(Path::new(PROGRESS_PATH), Some(&record.to_text())) {
        log::warn!("{e}");
    }
}

/// Setup ended on its own: there is nothing to report after it.
pub(crate) fn finished<S: System>(sys: &mut S) {
    if let Err(e) = sys.write_progress(Path::new(PROGRESS_PATH), None) {
        log::warn!("{e}");
    }
}

/// The record left by a run, if there is one (`Err` when it is there but unreadable: a dead run
/// whose record cannot be trusted to say what it made).
pub(crate) fn read<S: System>(sys: &mut S) -> Result<Option<Record>> {
    let Some(text) = sys.read_progress(Path::new(PROGRESS_PATH))? else { return Ok(None) };
    Record::parse(&text).map(Some).map_err(|why| Error::invalid(PROGRESS_PATH, "a progress record", why))
}

/// How the first run of setup ended, as the boot hook saw it: a shell's `$?` (128 + N for
/// signal N) or systemd's `$EXIT_CODE/$EXIT_STATUS` (`killed/KILL`, `dumped/ABRT`, `exited/1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Death {
    Exit(u8),
    Signal(u8),
    /// The hook could not tell (an empty systemd variable): the record decides.
    Unknown,
}

const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM",
    "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO",
    "PWR", "SYS",
];

impl Death {
    pub(crate) fn parse(text: &str) -> Option<Death> {
        if let Ok(n) = text.parse::<u16>() {
            return Some(match n {
                129..=159 => Death::Signal(u8::try_from(n - 128).ok()?),
                0..=255 => Death::Exit(u8::try_from(n).ok()?),
                _ => return None,
            });
        }
        let (code, status) = text.split_once('/')?;
        let status = status.strip_prefix("SIG").unwrap_or(status);
        match code {
            "exited" => status.parse().ok().map(Death::Exit),
            "killed" | "dumped" => {
                let n = SIGNALS.iter().position(|s| *s == status).map(|i| i + 1);
                let n = n.or_else(|| status.parse().ok()).and_then(|n| u8::try_from(n).ok())?;
                Some(Death::Signal(n))
            }
            "" if status.is_empty() => Some(Death::Unknown),
            _ => None,
        }
    }

    /// "killed by signal 9 (SIGKILL)", "exited with status 2".
    pub(crate) fn describe(self) -> String {
        match self {
            Death::Exit(n) => format!("exited with status {n}"),
            Death::Signal(n) => {
                let name = SIGNALS.get(usize::from(n).wrapping_sub(1)).map_or(String::new(), |s| format!(" (SIG{s})"));
                format!("killed by signal {n}{name}")
            }
            Death::Unknown => "ended without finishing".to_string(),
        }
    }
}

/// Where a systemd initrd keeps unit files: `OnFailure=emergency.target` needs emergency.service.
const UNIT_DIRS: [&str; 4] =
    ["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// The boot must stop (on-failure=halt). Shell hooks stop it themselves on exit status 1, and in a
/// systemd initrd the unit fails and its `FailureAction=` powers the machine off. An image without
/// emergency.service (a minimal one) is powered off from here as well, as every chain does: it would go on with the bind
/// targets on the root disk under a unit that only has `OnFailure=emergency.target` (an older
/// unit, or one edited locally).
pub(crate) fn halt_without_shell(root: &Path) {
    if !no_emergency_shell(root) {
        return;
    }
    log::error!("on-failure=halt: this initrd has no emergency.service to stop the boot: powering the machine off");
    match std::process::Command::new("systemctl").args(["--force", "poweroff"]).status() {
        Ok(s) if s.success() => {}
        Ok(s) => log::error!("systemctl --force poweroff: {s}"),
        Err(e) => log::error!("{}", Error::os("run", "systemctl --force poweroff", e)),
    }
}

/// A systemd initrd (systemd runs, /etc/initrd-release) whose emergency.service is missing or
/// masked. The first unit file found wins, as in systemd's search path.
fn no_emergency_shell(root: &Path) -> bool {
    let p = |s: &str| crate::paths::under(root, Path::new(s));
    if !p("/run/systemd/system").is_dir() || !p("/etc/initrd-release").exists() {
        return false; // not a systemd initrd: the hook stops the boot
    }
    let unit = UNIT_DIRS.iter().map(|d| p(d).join("emergency.service")).find(|u| u.symlink_metadata().is_ok());
    let masked = |u: &PathBuf| std::fs::read_link(u).is_ok_and(|t| t == Path::new("/dev/null"));
    unit.is_none_or(|u| masked(&u))
}

/// How many times a mapping removal is tried when udev holds it open for a moment.
const REMOVE_TRIES: u32 = 25;
const REMOVE_RETRY_MS: u64 = 200;

/// Take back, newest first, whatever of the record's leftovers is there. Each is looked at before
/// it is undone (the dead run may have died before making it); returns what could not be undone.
pub(crate) fn teardown<S: System>(sys: &mut S, leftovers: &[Leftover]) -> Vec<String> {
    let mut left = Vec::new();
    for l in leftovers.iter().rev() {
        let r = match l {
            // Made but not yet live (the table load) counts: removed by name; ENXIO: never made.
            Leftover::Mapping(name) => match remove_mapping(sys, name) {
                Ok(()) => {
                    log::info!("undo: removed mapping {name} (left by the dead run)");
                    sys.remove_node(name)
                }
                Err(e) if e.errno_value() == Some(libc::ENXIO) => sys.remove_node(name),
                Err(e) => Err(e),
            },
            Leftover::Swap(name) => match sys.dm_dev(name) {
                // swapoff fails (EINVAL) on a mapping that is not swap: the dead run stopped
                // before swapon. Nothing else makes that mapping swap.
                Ok(Some(_)) => sys.swapoff(name).or_else(|e| {
                    log::info!("{e} (not swapped on)");
                    Ok(())
                }),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Leftover::Mount(p) => match sys.is_mountpoint(p) {
                Ok(true) => {
                    log::info!("undo: unmount {} (left by the dead run)", p.display());
                    sys.umount(p)
                }
                r => r.map(|_| ()),
            },
            Leftover::Remount { path, read_only, options } => {
                log::info!("undo: remount {} {}", path.display(), if *read_only { "read-only" } else { "read-write" });
                sys.remount(path, *read_only, options)
            }
            // Only an empty directory goes; one the dead run did not get to make is not there.
            Leftover::Dir(p) => match sys.dir_state(p) {
                Ok(crate::disk::DirState::Present) => sys.rmdir(p).or_else(|e| {
                    log::info!("{e} (left in place)");
                    Ok(())
                }),
                r => r.map(|_| ()),
            },
            Leftover::Unit { name, wanted_by } => sys.remove_unit(name, wanted_by),
            Leftover::Escrow(p) => match sys.remove_escrow(p) {
                Err(e) if e.errno_value() == Some(libc::ENOENT) => Ok(()),
                r => r,
            },
            Leftover::Config(p) => match sys.remove_config(p) {
                Err(e) if e.errno_value() == Some(libc::ENOENT) => Ok(()),
                r => r,
            },
        };
        if let Err(e) = r {
            log::error!("undo failed: {e}");
            left.push(e.to_string());
        }
    }
    left
}

fn remove_mapping<S: System>(sys: &mut S, name: &str) -> Result<()> {
    for _ in 1..REMOVE_TRIES {
        match sys.dm_remove(name) {
            Err(e) if e.is_busy() => sys.sleep_ms(REMOVE_RETRY_MS),
            r => return r,
        }
    }
    sys.dm_remove(name)
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
