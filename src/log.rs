//! A small `log::Log`: every line goes to stderr and, during boot, to /dev/kmsg so the journal
//! shows it after switch_root. Every line is prefixed `ephemcrypt:`. Stdout is for data only.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    level: LevelFilter,
    kmsg: Option<Mutex<File>>,
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
            // kmsg priority: <3> err, <4> warning, <5> notice, <6> info, <7> debug.
            let prio = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 5,
                Level::Debug | Level::Trace => 7,
            };
            if let Ok(mut f) = k.lock() {
                let _ = f.write_all(format!("<{prio}>{line}").as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Install the logger. `kmsg`: also write to /dev/kmsg (setup during boot).
pub fn init(level: LevelFilter, kmsg: bool) {
    let kmsg = kmsg.then(|| OpenOptions::new().write(true).open("/dev/kmsg").ok()).flatten().map(Mutex::new);
    let logger = Box::leak(Box::new(Logger { level, kmsg }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
