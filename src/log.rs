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
    /// stderr is the journal: each line carries its priority as a `<N>` prefix, which journald
    /// reads (SyslogLevelPrefix=yes, the default), so warnings show as warnings.
    journal: bool,
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
        // Strings from disks, sysfs and the command line are escaped where they are read; this
        // catches any that were not: no line break, priority prefix or terminal sequence gets out.
        let line = format!("ephemcrypt: {tag}{}", r.args());
        let line = format!("{}\n", crate::escape::line(&line));
        let _ = if self.journal {
            std::io::stderr().write_all(format!("<{}>{line}", priority(r.level())).as_bytes())
        } else {
            std::io::stderr().write_all(line.as_bytes())
        };
        if let Some(k) = &self.kmsg {
            write_kmsg(k, r.level(), &line);
        }
    }

    fn flush(&self) {}
}

/// One line to the kernel log, opened afresh (see [`KMSG`]). Append: on /dev/kmsg every write is
/// one record anyway; a plain file in the tests stays whole.
fn write_kmsg(path: &Path, level: Level, line: &str) {
    if let Ok(mut f) = OpenOptions::new().append(true).open(path) {
        let _ = f.write_all(format!("<{}>{line}", priority(level)).as_bytes());
    }
}

/// The syslog priority of a level: <3> err, <4> warning, <5> notice, <7> debug.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 5,
        Level::Debug | Level::Trace => 7,
    }
}

/// systemd sets JOURNAL_STREAM to the device and inode of the stream it connected to the journal:
/// stderr is the journal when they are stderr's.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    use std::os::fd::AsRawFd;
    let Some(want) = journal_stream else { return false };
    nix::sys::stat::fstat(std::io::stderr().as_raw_fd()).is_ok_and(|st| format!("{}:{}", st.st_dev, st.st_ino) == want)
}

/// Install the logger. `kmsg`: also write to /dev/kmsg (setup during boot).
pub fn init(level: LevelFilter, kmsg: bool) {
    let kmsg = (kmsg && OpenOptions::new().write(true).open(KMSG).is_ok()).then(|| PathBuf::from(KMSG));
    let journal = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    let logger = Box::leak(Box::new(Logger { level, kmsg, journal }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_the_journal_only_when_journal_stream_names_it() {
        use std::os::fd::AsRawFd;
        let st = nix::sys::stat::fstat(std::io::stderr().as_raw_fd()).unwrap();
        assert!(stderr_is_journal(Some(&format!("{}:{}", st.st_dev, st.st_ino))));
        assert!(!stderr_is_journal(Some(&format!("{}:{}", st.st_dev, st.st_ino.wrapping_add(1)))));
        assert!(!stderr_is_journal(Some("garbage")));
        assert!(!stderr_is_journal(None));
    }

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
