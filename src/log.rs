//! A small `log::Log`: every line goes to stderr and, during boot, to /dev/kmsg so the journal
//! shows it after switch_root. Every line is prefixed `ephemcrypt:`. Stdout is for data only.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The kernel log device. The kernel rate-limits writes per open file (10 lines per 5 s unless
/// `printk.devkmsg=on`): setup logs more than that in a second, and the lines past the tenth (the
/// result among them) were dropped. So it is opened afresh for every line.
const KMSG: &str = "/dev/kmsg";

struct Logger {
    level: LevelFilter,
    kmsg: Option<PathBuf>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let tag = match r.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        };
        let line = format!("ephemcrypt: {tag}{}\n", r.args());
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Some(k) = &self.kmsg {
            write_kmsg(k, r.level(), &line);
        }
    }

    fn flush(&self) {}
}

/// One line to the kernel log, opened afresh (see [`KMSG`]). Append: on /dev/kmsg every write is
/// one record anyway; a plain file in the tests stays whole.
fn write_kmsg(path: &Path, level: Level, line: &str) {
    // kmsg priority: <3> err, <4> warning, <5> notice, <6> info, <7> debug.
    let prio = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 5,
        Level::Debug | Level::Trace => 7,
    };
    if let Ok(mut f) = OpenOptions::new().append(true).open(path) {
        let _ = f.write_all(format!("<{prio}>{line}").as_bytes());
    }
}

/// Install the logger. `kmsg`: also write to /dev/kmsg (setup during boot).
pub fn init(level: LevelFilter, kmsg: bool) {
    let kmsg = (kmsg && OpenOptions::new().write(true).open(KMSG).is_ok()).then(|| PathBuf::from(KMSG));
    let logger = Box::leak(Box::new(Logger { level, kmsg }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line opens the kernel log anew, so the kernel's per-open rate limit never drops one.
    #[test]
    fn kmsg_is_opened_for_every_line() {
        let dir = std::env::temp_dir().join(format!("ephemcrypt-kmsg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kmsg = dir.join("kmsg");
        std::fs::write(&kmsg, "").unwrap();
        write_kmsg(&kmsg, Level::Info, "ephemcrypt: first\n");
        std::fs::rename(&kmsg, dir.join("old")).unwrap();
        std::fs::write(&kmsg, "").unwrap();
        for i in 0..20 {
            write_kmsg(&kmsg, Level::Error, &format!("ephemcrypt: error: line {i}\n"));
        }
        assert_eq!(std::fs::read_to_string(dir.join("old")).unwrap(), "<5>ephemcrypt: first\n");
        let text = std::fs::read_to_string(&kmsg).unwrap();
        assert_eq!(text.lines().count(), 20, "{text}");
        assert!(text.starts_with("<3>ephemcrypt: error: line 0\n") && text.ends_with("line 19\n"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
