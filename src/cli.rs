//! Hand-rolled argument parsing (no clap: binary size matters in an initramfs), in two stages:
//! raw words → [`Command`], then [`run`].

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::OnFailure;
use crate::error::{Error, Result};
use crate::escape::escape;
use crate::host::Host;
use crate::progress::Death;
use crate::status::SetupResult;
use crate::system::{LinuxSystem, System};

pub(crate) const USAGE: &str = "\
ephemcrypt: encrypt ephemeral disks at boot with a key nobody keeps

usage:
  ephemcrypt plan [--host DIR] [--config FILE] [--newroot DIR] [--json]
      Show which disks would be used or refused and why, and the steps setup would take: the
      device-mapper tables, the mkfs command, the mounts. Touches nothing.
  ephemcrypt setup --newroot DIR [--host DIR] [--config FILE]
      Run by the boot chain with the real root mounted at DIR: encrypt the disks, make swap and
      the file system, mount it at DIR<mount> and bind the bind targets onto it. Writes
      /run/ephemcrypt/status.json.
  ephemcrypt setup --newroot DIR --died HOW [--host DIR] [--config FILE]
      Run by the boot chain when setup ended without finishing: HOW is the shell's exit status
      (128+N: killed by signal N) or systemd's $EXIT_CODE/$EXIT_STATUS (killed/KILL). Undoes what
      the dead run left (its record in /run/ephemcrypt/progress), applies on-failure, and writes
      the status: setup died, how, at which step. Exit 0 (the policy was applied), or 1 (halt).
  ephemcrypt status [--host DIR] [--json | --format prometheus [--output FILE]]
      What setup did in this boot, with a live check of its mappings and of each bind target
      (degraded when a later mount hides the volume there). --format prometheus: the
      node_exporter textfile format (also when setup did not run: result not_run), written
      atomically to FILE with --output.
  ephemcrypt check [--host DIR] [--node-features DIR]
      One line for the real root's boot (ephemcrypt-check.service): whether the volume is there,
      or a warning saying why not (setup failed, a mapping is gone, a bind target does not show
      the volume, setup did not run). Also writes the node-feature-discovery feature file
      DIR/ephemcrypt (ephemcrypt.encrypted=true|false, result, cipher, key-bits: Kubernetes
      node labels) when DIR exists; DIR: the configuration's node-features, default
      /etc/kubernetes/node-feature-discovery/features.d; none: no file.
  ephemcrypt skeleton FROM TO
      Copy the directories of FROM (owner, mode, ACLs, security labels; no files) to TO. Run
      after switch_root by the units setup writes for bind targets under a separate fstab mount.
  ephemcrypt recover --identity FILE [--mount DIR] [--disks SELECTORS] [--host DIR]
  ephemcrypt recover --print-commands [--disks SELECTORS] [--host DIR]
      Open an earlier boot's volume read-only with its escrow: the member disks are found by
      their headers, the key decrypted with FILE (an age identity or an unencrypted OpenSSH
      ed25519 key); --mount mounts the file system read-only. --print-commands prints a shell
      script that does the same with age, dmsetup and cryptsetup instead.
  ephemcrypt needs [--host DIR] [--config FILE]
  ephemcrypt needs --files [--host DIR] [--config FILE]
  ephemcrypt needs --modules --kver KVER [--moddir DIR] [--host DIR] [--config FILE]
      What an initramfs must hold for this configuration, one per line, for the image builders'
      hooks (dracut, initramfs-tools, mkinitcpio), which fail the build when one is missing:
      the programs setup runs (mkfs); with --files, the files (the configuration, mke2fs.conf)
      this host has; with --modules, the kernel modules for kernel KVER (its modules.dep and
      modules.builtin in DIR, default DIR/lib/modules/KVER under --host): dm-mod, dm-crypt,
      the cipher's, its mode's and IV's (with the architecture's accelerated drivers), AF_ALG,
      NVMe and the file system's; those built into KVER are left out.
  ephemcrypt help | -h | --help
  ephemcrypt -V | --version

options:
  --host DIR       read the machine from DIR instead of / (DIR/proc, DIR/sys, DIR/dev, DIR/etc)
  --config FILE    configuration file (default: DIR/etc/ephemcrypt.conf)
  --newroot DIR    where the boot chain mounted the real root (dracut /sysroot, mkinitcpio /new_root);
                   for plan, optional: without it, /sysroot with its directories taken to be there
  --json           machine-readable output
  --modules, --files, --kver KVER, --moddir DIR
                   needs: what to list, and for which kernel (see needs above)
  -v, --verbose    more log lines on stderr

exit codes: 0 done (also: nothing to do, disabled, or a failure the on-failure policy absorbed);
            1 failure (setup with on-failure=halt; status: a mapping is gone; check: no volume
            because setup failed); 2 usage or configuration error (plan); 3 status and check:
            setup did not run in this boot
";

/// Every command the parser takes: the one list [`parse`] checks the first word against, and
/// tests/docs.rs checks `--help` and ephemcrypt(8) against (each must show all of them, and no other).
pub const COMMANDS: &[&str] = &["plan", "setup", "status", "check", "recover", "needs", "skeleton", "help"];

/// Every option the parser takes, with any command: a word not listed is unknown to [`parse`];
/// tests/docs.rs checks `--help` and ephemcrypt(8) against this list as against [`COMMANDS`].
pub const OPTIONS: &[&str] = &[
    "--host",
    "--config",
    "--newroot",
    "--json",
    "-v",
    "--verbose",
    "-h",
    "--help",
    "-V",
    "--version",
    "--format",
    "--output",
    "--identity",
    "--mount",
    "--disks",
    "--print-commands",
    "--died",
    "--modules",
    "--files",
    "--kver",
    "--moddir",
    "--node-features",
];

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Plan(Common, Option<PathBuf>),
    Setup(Common, PathBuf),
    /// `setup --died HOW`: the second invocation after the first died.
    AfterDeath(Common, PathBuf, Death),
    Status(Common),
    /// The real root's check at boot: one line, a warning when the volume is missing.
    Check(Common),
    Needs(Common, Needs),
    /// Copy the directory skeleton of one directory to another (run by the units setup writes).
    Skeleton(PathBuf, PathBuf),
    Recover(Common, Recover),
    Help,
    Version,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Common {
    pub(crate) host: PathBuf,
    pub(crate) config: Option<PathBuf>,
    pub(crate) json: bool,
    pub(crate) verbose: bool,
    /// `status --format prometheus`.
    pub(crate) prometheus: bool,
    /// `status --output FILE`.
    pub(crate) output: Option<PathBuf>,
    /// `check --node-features DIR`.
    pub(crate) node_features: Option<PathBuf>,
}

impl Default for Common {
    fn default() -> Common {
        Common {
            host: PathBuf::from("/"),
            config: None,
            json: false,
            verbose: false,
            prometheus: false,
            output: None,
            node_features: None,
        }
    }
}

/// What `needs` lists: the programs (neither flag), the files, or a kernel's modules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Needs {
    pub(crate) files: bool,
    pub(crate) modules: bool,
    pub(crate) kver: Option<String>,
    pub(crate) moddir: Option<PathBuf>,
}

/// What `recover` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Recover {
    pub(crate) identity: Option<PathBuf>,
    pub(crate) mount: Option<PathBuf>,
    pub(crate) disks: Option<String>,
    pub(crate) print_commands: bool,
}

/// Parse the arguments after the program name.
pub(crate) fn parse(args: &[String]) -> Result<Command> {
    let mut it = args.iter();
    let sub = match it.next().map(String::as_str) {
        None => return Err(Error::Usage("no command given; try 'ephemcrypt --help'".into())),
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some("skeleton") => {
            return match it.as_slice() {
                [from, to] if !from.starts_with('-') && !to.starts_with('-') => {
                    Ok(Command::Skeleton(PathBuf::from(from), PathBuf::from(to)))
                }
                _ => Err(Error::Usage("skeleton takes FROM and TO, two directories".into())),
            }
        }
        Some(s) if !COMMANDS.contains(&s) => {
            return Err(Error::Usage(format!(
                "unknown command '{}'; commands: {}; try 'ephemcrypt --help'",
                escape(s),
                COMMANDS.join(", ")
            )))
        }
        Some(s) => s.to_string(),
    };
    let mut common = Common::default();
    let mut newroot = None;
    let mut recover = Recover::default();
    let mut died = None;
    let mut needs = Needs::default();
    let value = |it: &mut std::slice::Iter<'_, String>, flag: &str| {
        it.next().cloned().ok_or_else(|| Error::Usage(format!("{flag} needs a value")))
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if !OPTIONS.contains(&flag) {
            return Err(Error::Usage(format!("unknown option '{}' for '{sub}'; try 'ephemcrypt --help'", escape(arg))));
        }
        match flag {
            "--host" => common.host = PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?),
            "--config" => common.config = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?)),
            "--newroot" => newroot = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?)),
            "--json" => common.json = true,
            "-v" | "--verbose" => common.verbose = true,
            "-h" | "--help" => return Ok(Command::Help),
            "--format" | "--output" if sub != "status" => {
                return Err(Error::Usage(format!("{flag} goes with 'status' only; try 'ephemcrypt --help'")))
            }
            "--format" => match inline.map_or_else(|| value(&mut it, flag), Ok)?.as_str() {
                "prometheus" => common.prometheus = true,
                other => return Err(Error::Usage(format!("--format {other}: the format is prometheus"))),
            },
            "--output" => common.output = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?)),
            "--node-features" if sub != "check" => {
                return Err(Error::Usage(format!("{flag} goes with 'check' only; try 'ephemcrypt --help'")))
            }
            "--node-features" => {
                common.node_features = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?))
            }
            "--identity" | "--mount" | "--disks" | "--print-commands" if sub != "recover" => {
                return Err(Error::Usage(format!("{flag} goes with 'recover' only; try 'ephemcrypt --help'")))
            }
            "--identity" => recover.identity = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?)),
            "--mount" => recover.mount = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?)),
            "--disks" => recover.disks = Some(inline.map_or_else(|| value(&mut it, flag), Ok)?),
            "--print-commands" => recover.print_commands = true,
            "--modules" | "--files" | "--kver" | "--moddir" if sub != "needs" => {
                return Err(Error::Usage(format!("{flag} goes with 'needs' only; try 'ephemcrypt --help'")))
            }
            "--modules" => needs.modules = true,
            "--files" => needs.files = true,
            "--kver" => needs.kver = Some(inline.map_or_else(|| value(&mut it, flag), Ok)?),
            "--moddir" => needs.moddir = Some(PathBuf::from(inline.map_or_else(|| value(&mut it, flag), Ok)?)),
            "--died" if sub != "setup" => {
                return Err(Error::Usage(format!("{flag} goes with 'setup' only; try 'ephemcrypt --help'")))
            }
            "--died" => {
                let how = inline.map_or_else(|| value(&mut it, flag), Ok)?;
                died = Some(Death::parse(&how).ok_or_else(|| {
                    Error::Usage(format!("--died '{}': an exit status, or EXIT_CODE/EXIT_STATUS", escape(&how)))
                })?);
            }
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
        "plan" => Ok(Command::Plan(common, newroot)),
        "setup" => {
            only("--json", !common.json)?;
            let newroot = newroot
                .ok_or_else(|| Error::Usage("setup needs --newroot DIR (where the real root is mounted)".into()))?;
            Ok(match died {
                Some(how) => Command::AfterDeath(common, newroot, how),
                None => Command::Setup(common, newroot),
            })
        }
        "status" | "check" => {
            only("--newroot", newroot.is_none())?;
            only("--config", common.config.is_none())?;
            only("--json with --format", !(common.json && common.prometheus))?;
            only("--output without --format prometheus", common.output.is_none() || common.prometheus)?;
            Ok(if sub == "status" { Command::Status(common) } else { Command::Check(common) })
        }
        "needs" => {
            only("--newroot", newroot.is_none())?;
            only("--json", !common.json)?;
            only("--files with --modules (one list at a time)", !(needs.files && needs.modules))?;
            only(
                "--kver or --moddir without --modules",
                needs.modules || (needs.kver.is_none() && needs.moddir.is_none()),
            )?;
            if needs.modules && needs.kver.is_none() {
                return Err(Error::Usage("needs --modules needs --kver KVER (the image's kernel)".into()));
            }
            Ok(Command::Needs(common, needs))
        }
        "recover" => {
            only("--newroot", newroot.is_none())?;
            only("--config", common.config.is_none())?;
            only("--json", !common.json)?;
            if recover.print_commands {
                only("--identity with --print-commands (the script takes it)", recover.identity.is_none())?;
                only("--mount with --print-commands (the script takes it)", recover.mount.is_none())?;
            } else if recover.identity.is_none() {
                return Err(Error::Usage(
                    "recover needs --identity FILE (or --print-commands for a stock-tool script)".into(),
                ));
            }
            Ok(Command::Recover(common, recover))
        }
        _ => Err(Error::Usage(format!("'{sub}' is listed in COMMANDS but not parsed"))),
    }
}

/// The whole program after the logger: parse, run, print; the returned number is the exit code.
/// Errors are logged once, here.
pub fn main(args: &[String], out: &mut dyn Write) -> u8 {
    match parse(args).and_then(|cmd| run(&cmd, out)) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            u8::try_from(e.exit_code()).unwrap_or(1)
        }
    }
}

/// Run a command; the returned number is the exit code.
pub(crate) fn run(cmd: &Command, out: &mut dyn Write) -> Result<u8> {
    let write = |out: &mut dyn Write, text: &str| {
        out.write_all(text.as_bytes()).map_err(|e| Error::os("write", "standard output", e))
    };
    match cmd {
        Command::Help => write(out, USAGE)?,
        Command::Version => write(out, &format!("ephemcrypt {}\n", env!("CARGO_PKG_VERSION")))?,
        Command::Plan(c, newroot) => {
            if let Some(dir) = newroot.as_deref().filter(|d| !d.is_dir()) {
                return Err(Error::Usage(format!("--newroot {}: not a directory", dir.display())));
            }
            let host = Host::new(&c.host);
            let plan = crate::setup::show(
                &host,
                c.config.as_deref(),
                newroot.as_deref(),
                &mut LinuxSystem::observer(&c.host),
            )?;
            let text = if c.json { plan.to_json().pretty() } else { plan.to_string() };
            write(out, &text)?;
        }
        Command::Setup(c, newroot) => return setup(c, newroot),
        Command::AfterDeath(c, newroot, how) => return after_death(c, newroot, *how),
        Command::Skeleton(from, to) => LinuxSystem::new("/").copy_skeleton(from, to)?,
        Command::Needs(c, n) => write(out, &needs(c, n)?)?,
        Command::Status(c) => {
            let (text, code) = status(c)?;
            write(out, &text)?;
            return Ok(code);
        }
        Command::Check(c) => return check(c, out),
        Command::Recover(c, r) => write(out, &recover(c, r)?)?,
    }
    Ok(0)
}

/// `ephemcrypt setup`: the boot-time job. Only `on-failure=halt` exits non-zero.
fn setup(c: &Common, newroot: &Path) -> Result<u8> {
    if !newroot.is_dir() {
        return Err(Error::Usage(format!("--newroot {}: not a directory", newroot.display())));
    }
    if let Err(e) = crate::key::set_non_dumpable() {
        log::warn!("{e}");
    }
    let host = Host::new(&c.host);
    let (plan, status) = crate::setup::setup(&host, c.config.as_deref(), newroot, &mut LinuxSystem::new(&c.host));
    let halts = plan.on_failure == OnFailure::Halt && status.result == SetupResult::Failed;
    Ok(if halts { 1 } else { 0 })
}

/// `ephemcrypt setup --died HOW`: see [`crate::setup::after_death`]. Exit 1 when the boot must
/// stop: the policy is halt, or the first run already exited 1 for it.
fn after_death(c: &Common, newroot: &Path, how: Death) -> Result<u8> {
    #[cfg(feature = "fault-injection")]
    crate::fault::after_death();
    if let Err(e) = crate::key::set_non_dumpable() {
        log::warn!("{e}");
    }
    let host = Host::new(&c.host);
    let halts =
        match crate::setup::after_death(&host, c.config.as_deref(), newroot, &mut LinuxSystem::new(&c.host), how) {
            Some((plan, status)) => plan.on_failure == OnFailure::Halt && status.result == SetupResult::Failed,
            None => how == Death::Exit(1),
        };
    if !halts {
        return Ok(0);
    }
    crate::progress::halt_without_shell(&c.host);
    Ok(1)
}

/// `ephemcrypt recover`: find the volume by its headers; print the stock-tool script, or open it.
fn recover(c: &Common, r: &Recover) -> Result<String> {
    // First: no core dump and no ptrace by other accounts while the identity and key exist.
    crate::key::set_non_dumpable()?;
    let host = Host::new(&c.host);
    let disks = match &r.disks {
        Some(text) => crate::config::parse_selectors_value(text).ok_or_else(|| {
            Error::Usage(format!("--disks '{text}': a comma-separated list of model:GLOB, serial:GLOB, path:GLOB"))
        })?,
        None => Vec::new(),
    };
    let found = crate::recover::find(&host, &disks)?;
    if r.print_commands {
        return crate::recover::script(&found);
    }
    if let Some(dir) = r.mount.as_deref().filter(|d| !d.is_dir()) {
        return Err(Error::Usage(format!("--mount {}: not a directory", dir.display())));
    }
    // The layout is checked before anything is decrypted.
    let steps = crate::recover::plan(&found, r.mount.as_deref())?;
    let identity = r.identity.as_deref().ok_or_else(|| Error::Usage("recover needs --identity FILE".into()))?;
    let key = crate::recover::escrowed_key(&host, &found, identity)?;
    crate::recover::open(&found, &steps, key, &mut LinuxSystem::new(&c.host))
}

/// `ephemcrypt check`: the volume is there (or nothing was to be done): one line on stdout, exit
/// 0; it is not: a warning (the journal's priority too), exit 1, or 3 when setup did not run.
fn check(c: &Common, out: &mut dyn Write) -> Result<u8> {
    let host = Host::new(&c.host);
    let status = crate::setup::status(&host, &mut LinuxSystem::observer(&c.host));
    // Kubernetes learns the result first, whatever the check says next.
    // The configured directory is the host's (under --host); the option's, like --output, a path
    // on this machine. The file's key alone: the unit's sandbox (ProcSubset=pid) hides
    // /proc/cmdline, and a label directory is no boot parameter. A configuration file that
    // cannot be read: the default, and a warning.
    let configured = match host.config_file_only(None) {
        Ok(config) => config.node_features,
        Err(e) => {
            log::warn!("{e}: node-features taken to be {}", crate::nfd::DEFAULT_DIR);
            Some(PathBuf::from(crate::nfd::DEFAULT_DIR))
        }
    };
    let configured = configured.map(|d| host.path(d));
    if let Some(dir) = crate::nfd::dir_from(c.node_features.as_deref(), configured) {
        let known = match &status {
            Ok(s) => crate::nfd::Known::Status(s),
            Err(Error::NotRun { .. }) => crate::nfd::Known::NotRun,
            Err(_) => crate::nfd::Known::Unknown,
        };
        crate::nfd::publish(&dir, &known);
    }
    let status = status?;
    if status.mapping_gone() {
        let gone: Vec<&str> =
            status.mappings.iter().filter(|m| m.live == Some(false)).map(|m| m.name.as_str()).collect();
        log::warn!("the volume setup made in this boot's initramfs is gone: no mapping {}", gone.join(", "));
        return Ok(1);
    }
    // The status checks what is visible now (visible.rs): a bind target hidden by a later mount.
    if !status.hidden.is_empty() {
        log::warn!("bind targets not on the encrypted volume: {}", status.hidden.join("; "));
        return Ok(1);
    }
    match status.result {
        SetupResult::Degraded | SetupResult::Failed => {
            log::warn!("setup {} in this boot's initramfs: {}", status.result, status.reason);
            Ok(1)
        }
        SetupResult::Held => {
            log::warn!("no volume in this boot: {} (remove the hold to encrypt the disks again)", status.reason);
            Ok(1)
        }
        r => {
            let line = format!("ephemcrypt: {r}: {}\n", crate::escape::line(&status.reason));
            out.write_all(line.as_bytes()).map_err(|e| Error::os("write", "standard output", e))?;
            Ok(0)
        }
    }
}

/// `ephemcrypt needs`: what the image must hold, one per line. The image's configuration file
/// only: the build host's kernel command line is not the booted machine's. Reads files; the
/// lists come from needs.rs.
fn needs(c: &Common, n: &Needs) -> Result<String> {
    let host = Host::new(&c.host);
    let config = host.config_file_only(c.config.as_deref())?;
    let lines: Vec<String> = if n.modules {
        let kver = n.kver.as_deref().unwrap_or_default();
        if kver.is_empty() || kver.contains('/') || kver.starts_with('.') {
            return Err(Error::Usage(format!(
                "--kver '{}': a kernel release such as 6.1.0-28-cloud-amd64",
                escape(kver)
            )));
        }
        let dir = n.moddir.clone().unwrap_or_else(|| host.path(Path::new("/lib/modules").join(kver)));
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| Error::os("read", p.display(), e))
        };
        // No modules.builtin: a kernel whose modules are all modules (or one built without it).
        let builtin = match read("modules.builtin") {
            Err(e) if e.errno_value() == Some(libc::ENOENT) => String::new(),
            r => r?,
        };
        let kernel = crate::needs::Kernel::parse(&builtin, &read("modules.dep")?);
        crate::needs::modules(&config, &kernel).map_err(|m| {
            Error::invalid(
                format!("kernel {} ({})", escape(kver), dir.display()),
                "the modules this configuration needs",
                m,
            )
        })?
    } else if n.files {
        crate::needs::files(&config, "/etc/ephemcrypt.conf").into_iter().filter(|f| host.path(f).is_file()).collect()
    } else {
        crate::needs::programs(&config).iter().map(|p| p.to_string()).collect()
    };
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

/// `ephemcrypt status`: the status file, with each mapping checked against the kernel.
fn status(c: &Common) -> Result<(String, u8)> {
    let mut sys = LinuxSystem::observer(&c.host);
    let status = crate::setup::status(&Host::new(&c.host), &mut sys);
    if c.prometheus {
        let text = match status {
            Ok(s) => crate::status::prometheus(Some(&s)),
            Err(Error::NotRun { .. }) => crate::status::prometheus(None),
            Err(e) => return Err(e),
        };
        return match &c.output {
            Some(file) => sys.write_output(file, &text).map(|()| (String::new(), 0)),
            None => Ok((text, 0)),
        };
    }
    let status = status?;
    let out = if c.json { status.to_json().pretty() } else { status.render() };
    Ok((out, if status.mapping_gone() { 1 } else { 0 }))
}

#[cfg(test)]
mod tests {
    use super::{parse, COMMANDS, OPTIONS};

    fn message(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        match parse(&args) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    /// Each listed command and option is one `parse` handles: none is listed and then refused as
    /// unknown.
    #[test]
    fn every_listed_command_and_option_is_parsed() {
        for c in COMMANDS {
            let m = message(&[c]);
            assert!(!m.contains("unknown command") && !m.contains("not parsed"), "{c}: {m}");
        }
        for o in OPTIONS {
            let handled = std::iter::once(message(&[o]))
                .chain(COMMANDS.iter().map(|c| message(&[c, o, "x"])))
                .any(|m| !m.contains("unknown option") && !m.contains("unknown command"));
            assert!(handled, "{o} is in OPTIONS but no command takes it");
        }
        assert!(message(&["plan", "--bogus"]).contains("unknown option '--bogus'"));
        assert!(message(&["bogus"]).contains("unknown command 'bogus'"));
    }

    /// Every option the parser's code names is in OPTIONS: a new `match` arm without its entry
    /// would never be reached, and tests/docs.rs would not ask for its documentation.
    #[test]
    fn the_parser_names_no_option_outside_the_table() {
        let code = include_str!("cli.rs");
        let code = code.split("#[cfg(test)]").next().unwrap_or(code);
        let code = code.split("/// What the command line asks for.").nth(1).unwrap_or(code);
        for lit in code.split('"').skip(1).step_by(2) {
            let name = lit.trim_start_matches('-');
            let flag =
                lit.starts_with('-') && !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if flag {
                assert!(OPTIONS.contains(&lit), "src/cli.rs names \"{lit}\", which OPTIONS lacks");
            }
        }
    }
}
