//! Faults on demand, for the VM fault matrix and crash tests (tests/vm/faults.sh). Compiled only
//! with the cargo feature `fault-injection`, which the release build never has: CI checks that the
//! release binary does not contain the variable's name.
//!
//! `EPHEMCRYPT_FAULT` holds rules separated by `;`, each `OP[@OBJECT][#N]=ERRNO|hang`:
//! the N-th (default: first) change that [`crate::system::LinuxSystem`] is about to make whose
//! operation is OP (as its errors name it: `device-mapper resume`, `swapon`, `run`, `bind-mount`,
//! `write`, …; `random key` for the key) and whose object contains OBJECT fails with ERRNO
//! (a name such as EIO, or a number) before it reaches the kernel, or, with `hang`, the process
//! stops there for good: the host then resets the machine (a crash mid-setup). A malformed
//! variable stops the program (exit 2): a test must never pass without the fault it asked for.

use std::io;
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

#[derive(Debug)]
enum Action {
    Errno(i32),
    Hang,
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

fn rules() -> &'static Mutex<Vec<Rule>> {
    static RULES: OnceLock<Mutex<Vec<Rule>>> = OnceLock::new();
    RULES.get_or_init(|| {
        let spec = std::env::var("EPHEMCRYPT_FAULT").unwrap_or_default();
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
        let r = parse("device-mapper resume@ephemcrypt-swap#2=EIO; run=hang;swapon=5").unwrap();
        assert_eq!(r.len(), 3);
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
