//! Hand-rolled argument parsing (no clap: binary size matters in an initramfs), in two stages:
//! raw words → [`Command`], then [`run`].

use std::io::Write;
use std::path::PathBuf;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::plan::{self, Caps};

pub const USAGE: &str = "\
ephemcrypt: encrypt ephemeral disks at boot with a key nobody keeps

usage:
  ephemcrypt plan [--host DIR] [--config FILE] [--json]
      Show which disks would be used or refused and why, and the steps setup would take.
      Touches nothing.
  ephemcrypt --help | --version

options:
  --host DIR       read the machine from DIR instead of / (DIR/proc, DIR/sys, DIR/dev, DIR/etc)
  --config FILE    configuration file (default: DIR/etc/ephemcrypt.conf)
  --json           machine-readable output
  -v, --verbose    more log lines on stderr

exit codes: 0 done (also: nothing to do, disabled); 1 failure; 2 usage or configuration error
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Plan(Common),
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
            "--json" => common.json = true,
            "-v" | "--verbose" => common.verbose = true,
            "-h" | "--help" => return Ok(Command::Help),
            _ => return Err(Error::Usage(format!("unknown option '{arg}' for '{sub}'; try 'ephemcrypt --help'"))),
        }
    }
    match sub.as_str() {
        "plan" => Ok(Command::Plan(common)),
        _ => Err(Error::Usage(format!("unknown command '{sub}'; commands: plan; try 'ephemcrypt --help'"))),
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
            let plan = compute_plan(c, Caps::ASSUMED)?;
            let text = if c.json { plan.to_json().pretty() } else { plan.to_string() };
            write(out, &text)?;
        }
    }
    Ok(0)
}

/// Read the host and compute the plan, as both `plan` and `setup` do.
pub fn compute_plan(c: &Common, caps: Caps) -> Result<plan::Plan> {
    let host = Host::new(&c.host);
    let facts = host.facts(c.config.as_deref())?;
    let config = Config::load(facts.config.as_ref().map(|(p, t)| (p.as_path(), t.as_str())), &facts.cmdline)?;
    Ok(plan::plan(&config, &facts.disks, caps))
}
