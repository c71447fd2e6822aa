//! Hand-rolled argument parsing (no clap: binary size matters in an initramfs), in two stages:
//! raw words → [`Command`], then [`run`].

use std::io::Write;
use std::path::PathBuf;

use std::path::Path;

use crate::apply;
use crate::config::{Config, OnFailure};
use crate::dm::Control;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::json::Value;
use crate::plan::{self, Caps};
use crate::status::{SetupResult, STATUS_PATH};
use crate::system::{LinuxSystem, System};

pub const USAGE: &str = "\
ephemcrypt: encrypt ephemeral disks at boot with a key nobody keeps

usage:
  ephemcrypt plan [--host DIR] [--config FILE] [--json]
      Show which disks would be used or refused and why, and the steps setup would take.
      Touches nothing.
  ephemcrypt setup --newroot DIR [--host DIR] [--config FILE]
      Run by the boot chain with the real root mounted at DIR: encrypt the disks, make swap and
      the file system, mount it at DIR<mount> and bind the bind targets onto it. Writes
      /run/ephemcrypt/status.json.
  ephemcrypt status [--host DIR] [--json]
      What setup did in this boot, with a live check of its mappings.
  ephemcrypt --help | --version

options:
  --host DIR       read the machine from DIR instead of / (DIR/proc, DIR/sys, DIR/dev, DIR/etc)
  --config FILE    configuration file (default: DIR/etc/ephemcrypt.conf)
  --newroot DIR    where the boot chain mounted the real root (dracut /sysroot, mkinitcpio /new_root)
  --json           machine-readable output
  -v, --verbose    more log lines on stderr

exit codes: 0 done (also: nothing to do, disabled, or a failure the on-failure policy absorbed);
            1 failure (setup with on-failure=halt; status: a mapping is gone); 2 usage or configuration
            error (plan)
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Plan(Common),
    Setup(Common, PathBuf),
    Status(Common),
    Help,
    Version,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub host: PathBuf,
    pub config: Option<PathBuf>,
    pub json: bool,
    pub verbose: bool,
}

impl Default for Common {
    fn default() -> Common {
        Common { host: PathBuf::from("/"), config: None, json: false, verbose: false }
    }
}

/// Parse the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command> {
    let mut it = args.iter();
    let sub = match it.next().map(String::as_str) {
        None => return Err(Error::Usage("no command given; try 'ephemcrypt --help'".into())),
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some(s) => s.to_string(),
    };
    let mut common = Common::default();
    let mut newroot = None;
    let value = |it: &mut std::slice::Iter<'_, String>, flag: &str| {
        it.next().cloned().ok_or_else(|| Error::Usage(format!("{flag} needs a value")))
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "--host" => common.host = PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?),
            "--config" => common.config = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?)),
            "--newroot" => newroot = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?)),
            "--json" => common.json = true,
            "-v" | "--verbose" => common.verbose = true,
            "-h" | "--help" => return Ok(Command::Help),
            _ => return Err(Error::Usage(format!("unknown option '{arg}' for '{sub}'; try 'ephemcrypt --help'"))),
        }
    }
    let only = |what: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Error::Usage(format!("{what} does not go with '{sub}'; try 'ephemcrypt --help'")))
        }
    };
    match sub.as_str() {
        "plan" => {
            only("--newroot", newroot.is_none())?;
            Ok(Command::Plan(common))
        }
        "setup" => {
            only("--json", !common.json)?;
            let newroot = newroot
                .ok_or_else(|| Error::Usage("setup needs --newroot DIR (where the real root is mounted)".into()))?;
            Ok(Command::Setup(common, newroot))
        }
        "status" => {
            only("--newroot", newroot.is_none())?;
            only("--config", common.config.is_none())?;
            Ok(Command::Status(common))
        }
        _ => Err(Error::Usage(format!(
            "unknown command '{sub}'; commands: plan, setup, status; try 'ephemcrypt --help'"
        ))),
    }
}

/// Run a command; the returned number is the exit code.
pub fn run(cmd: &Command, out: &mut dyn Write) -> Result<i32> {
    let write = |out: &mut dyn Write, text: &str| {
        out.write_all(text.as_bytes()).map_err(|e| Error::os("write", "standard output", e))
    };
    match cmd {
        Command::Help => write(out, USAGE)?,
        Command::Version => write(out, &format!("ephemcrypt {}\n", env!("CARGO_PKG_VERSION")))?,
        Command::Plan(c) => {
            let plan = compute_plan(c)?;
            let text = if c.json { plan.to_json().pretty() } else { plan.to_string() };
            write(out, &text)?;
        }
        Command::Setup(c, newroot) => return setup(c, newroot),
        Command::Status(c) => {
            let (text, code) = status(c)?;
            write(out, &text)?;
            return Ok(code);
        }
    }
    Ok(0)
}

/// `ephemcrypt setup`: the boot-time job. Every failure after the arguments are checked goes
/// through the failure policy and the status file; only `on-failure=halt` exits non-zero.
fn setup(c: &Common, newroot: &Path) -> Result<i32> {
    if !newroot.is_dir() {
        return Err(Error::Usage(format!("--newroot {}: not a directory", newroot.display())));
    }
    if let Err(e) = crate::key::set_non_dumpable() {
        log::warn!("{e}");
    }
    let host = Host::new(&c.host);
    let mut sys = LinuxSystem::new(&c.host);
    let (plan, outcome, policy_halts) = match host.config(c.config.as_deref()) {
        Ok(config) => {
            let (plan, outcome) = apply::setup(&config, newroot, &mut sys, &mut || host.disks(&config));
            (plan, outcome, config.on_failure == OnFailure::Halt)
        }
        Err(e) => {
            // Without a configuration there is no policy to follow: keep data off the disks
            // with tmpfs over the default bind targets, report, and let the machine boot.
            log::error!("{e}");
            let mut o = apply::fallback(&Config::default(), newroot, &mut sys, e.to_string());
            o.result = Some(SetupResult::Failed);
            (None, o, false)
        }
    };
    if outcome.already_active {
        log::info!("status left as the first run wrote it");
    } else if let Err(e) = sys.write_status(&outcome.to_json(plan.as_ref()).pretty()) {
        log::error!("{e}");
    }
    Ok(if policy_halts && outcome.result() == SetupResult::Failed { 1 } else { 0 })
}

/// `ephemcrypt status`: the status file, with each mapping checked against the kernel.
fn status(c: &Common) -> Result<(String, i32)> {
    let path = Host::new(&c.host).path(STATUS_PATH);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::os("read status (has setup run in this boot?)", path.display(), e))?;
    let mut doc = crate::json::parse(&text).ok_or_else(|| Error::msg(format!("{}: not valid JSON", path.display())))?;
    let control = Control::open(&Host::new(&c.host).path("/dev/mapper/control")).ok();
    let live = |name: &str| control.as_ref().and_then(|ctl| ctl.info(name).ok()).map(|i| i.is_some_and(|i| i.active));
    let mut gone = false;
    if let Some(Value::Arr(maps)) = doc.get_mut("mappings") {
        for m in maps.iter_mut() {
            let name = m.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let state = live(&name);
            gone |= state == Some(false);
            if let Value::Obj(pairs) = m {
                pairs.push(("live".into(), state.map_or(Value::Null, Value::Bool)));
            }
        }
    }
    let out = if c.json { doc.pretty() } else { crate::status::render(&doc) };
    Ok((out, if gone { 1 } else { 0 }))
}

/// `ephemcrypt plan`: read the host and plan, with the kernel's features assumed (setup reads
/// them from the running kernel).
fn compute_plan(c: &Common) -> Result<plan::Plan> {
    let host = Host::new(&c.host);
    let config = host.config(c.config.as_deref())?;
    Ok(plan::plan(&config, &host.disks(&config)?, Caps::ASSUMED))
}
