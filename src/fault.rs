//! Faults on demand, for the VM fault matrix and crash tests (tests/vm/faults.sh). Compiled only
//! with the cargo feature `fault-injection`, which the release build never has: CI checks that the
//! release binary does not contain the variable's name.
//!
//! `EPHEMCRYPT_FAULT` (or, where a boot chain passes no environment, `ephemcrypt.fault=` on the
//! kernel command line, with `%20` for a space and `%3B` for `;`) holds rules separated by `;`,
//! each `OP[@OBJECT][#N]=ERRNO|hang|SIGKILL|SIGABRT|SIGSEGV|SIGTERM`:
//! the N-th (default: first) change that [`crate::system::LinuxSystem`] is about to make whose
//! operation is OP (as its errors name it: `device-mapper resume`, `swapon`, `run`, `bind-mount`,
//! `write`, …; `random key` for the key) and whose object contains OBJECT fails with ERRNO
//! (a name such as EIO, or a number) before it reaches the kernel, or, with `hang`, the process
//! stops there for good: the host then resets the machine (a crash mid-setup); with a signal, the
//! process sends it to itself there (SIGABRT: as a panic in a release build does): the boot hook's
//! second invocation (`setup --died`) must then undo and apply the policy. That invocation reads
//! its own rules, from `EPHEMCRYPT_FAULT_AFTER_DEATH` or `ephemcrypt.fault-after-death=`, so a
//! test can kill it too. A malformed
//! variable stops the program (exit 2): a test must never pass without the fault it asked for.

use std::io;
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

#[derive(Debug)]
enum Action {
    Errno(i32),
    Hang,
    Signal(nix::sys::signal::Signal),
}

#[derive(Debug)]
struct Rule {
    op: String,
    object: String,
    nth: usize,
    seen: usize,
    action: Action,
}

const ERRNOS: [(&str, i32); 12] = [
    ("EIO", libc::EIO),
    ("ENOMEM", libc::ENOMEM),
    ("EBUSY", libc::EBUSY),
    ("ENOSPC", libc::ENOSPC),
    ("EPERM", libc::EPERM),
    ("EROFS", libc::EROFS),
    ("ENXIO", libc::ENXIO),
    ("EINVAL", libc::EINVAL),
    ("ENOENT", libc::ENOENT),
    ("EEXIST", libc::EEXIST),
    ("EDQUOT", libc::EDQUOT),
    ("EACCES", libc::EACCES),
];

fn parse(spec: &str) -> std::result::Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for text in spec.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        let (lhs, action) = text.rsplit_once('=').ok_or_else(|| format!("'{text}': no '=ERRNO' or '=hang'"))?;
        let action = match action {
            "hang" => Action::Hang,
            "SIGKILL" => Action::Signal(nix::sys::signal::Signal::SIGKILL),
            "SIGABRT" => Action::Signal(nix::sys::signal::Signal::SIGABRT),
            "SIGSEGV" => Action::Signal(nix::sys::signal::Signal::SIGSEGV),
            "SIGTERM" => Action::Signal(nix::sys::signal::Signal::SIGTERM),
            name => match ERRNOS.iter().find(|(n, _)| *n == name) {
                Some((_, e)) => Action::Errno(*e),
                None => Action::Errno(name.parse().map_err(|_| format!("'{text}': unknown errno '{name}'"))?),
            },
        };
        let (lhs, nth) = match lhs.rsplit_once('#') {
            Some((l, n)) => (l, n.parse().map_err(|_| format!("'{text}': '#{n}' is not a count"))?),
            None => (lhs, 1),
        };
        let (op, object) = lhs.split_once('@').unwrap_or((lhs, ""));
        if op.is_empty() || nth == 0 {
            return Err(format!("'{text}': wants OP[@OBJECT][#N]=ERRNO|hang with N from 1"));
        }
        rules.push(Rule { op: op.into(), object: object.into(), nth, seen: 0, action });
    }
    Ok(rules)
}

/// Set by [`after_death`]: which variable and command-line key hold the rules.
static AFTER_DEATH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This is `setup --died`: take the rules meant for it (before the first change).
pub(crate) fn after_death() {
    AFTER_DEATH.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The rules from the environment, else from the kernel command line (`%20` a space, `%3B` `;`).
fn spec() -> String {
    let after = AFTER_DEATH.load(std::sync::atomic::Ordering::Relaxed);
    let (var, key) = if after {
        ("EPHEMCRYPT_FAULT_AFTER_DEATH", "ephemcrypt.fault-after-death=")
    } else {
        ("EPHEMCRYPT_FAULT", "ephemcrypt.fault=")
    };
    if let Ok(spec) = std::env::var(var) {
        return spec;
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .map(|v| v.replace("%20", " ").replace("%3B", ";").replace("%25", "%"))
        .unwrap_or_default()
}

fn rules() -> &'static Mutex<Vec<Rule>> {
    static RULES: OnceLock<Mutex<Vec<Rule>>> = OnceLock::new();
    RULES.get_or_init(|| {
        let spec = spec();
        let rules = parse(&spec).unwrap_or_else(|e| {
            // A test that asks for a fault it does not get would pass for the wrong reason.
            eprintln!("ephemcrypt: EPHEMCRYPT_FAULT: {e}");
            std::process::exit(2)
        });
        Mutex::new(rules)
    })
}

/// Called before each change: fail it, or hang, when a rule says so.
pub(crate) fn inject(op: &'static str, object: &str) -> Result<()> {
    let mut rules = rules().lock().unwrap_or_else(|e| e.into_inner());
    for r in rules.iter_mut().filter(|r| r.op == op && object.contains(r.object.as_str())) {
        r.seen += 1;
        if r.seen != r.nth {
            continue;
        }
        match r.action {
            Action::Errno(e) => {
                log::warn!("FAULT injected: {op} {object} fails with errno {e}");
                return Err(Error::os(op, object, io::Error::from_raw_os_error(e)));
            }
            Action::Signal(sig) => {
                log::warn!("FAULT injected: {sig} before {op} {object}");
                if sig == nix::sys::signal::Signal::SIGABRT {
                    std::process::abort(); // what a panic does in a release build
                }
                let _ = nix::sys::signal::raise(sig);
                // A signal that did not end the process (blocked, or handled): end it the same way.
                std::process::abort();
            }
            Action::Hang => {
                log::warn!("FAULT injected: hang before {op} {object}");
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_bad_rules_are_named() {
        let r = parse("device-mapper resume@ephemcrypt-swap#2=EIO; run=hang;swapon=5;bind-mount=SIGKILL").unwrap();
        assert_eq!(r.len(), 4);
        assert!(matches!(r[3].action, Action::Signal(nix::sys::signal::Signal::SIGKILL)));
        assert_eq!((r[0].op.as_str(), r[0].object.as_str(), r[0].nth), ("device-mapper resume", "ephemcrypt-swap", 2));
        assert!(matches!(r[0].action, Action::Errno(e) if e == libc::EIO));
        assert!(matches!(r[1].action, Action::Hang));
        assert!(matches!(r[2].action, Action::Errno(5)));
        assert!(parse("").unwrap().is_empty());
        for bad in ["swapon", "swapon=EWHAT", "swapon#x=EIO", "swapon#0=EIO", "=EIO"] {
            let e = parse(bad).err().unwrap();
            assert!(e.contains(bad), "{e}");
        }
    }
}
