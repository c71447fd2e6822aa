//! PURE: the steps of a plan. Each is a plain value with everything setup needs to take it, and
//! prints as the command or table it is: `ephemcrypt plan` shows these very values and setup
//! (`execute.rs`) interprets them, one by one; there is no second description of what setup does.

use std::fmt;
use std::path::PathBuf;

use crate::age::Recipient;
use crate::config::Fs;
use crate::dm::Target;
use crate::escape::{line, Esc, EscPath};
use crate::header::{self, Header};
use crate::json::Value;
use crate::units::Bytes;

/// How the key of a crypt mapping reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyPath {
    /// A logon key in the process keyring, named in the table, invalidated after the load.
    Keyring,
    /// Old kernels: hex in the table, loaded with DM_SECURE_DATA_FLAG.
    HexTable,
}

impl KeyPath {
    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyPath::Keyring => "logon",
            KeyPath::HexTable => "hex",
        }
    }

    /// How the key is held, as `plan` and `status` say it: "never stored", unless it is escrowed
    /// to `escrow` recipients (then it is stored, encrypted to them, on every member).
    pub(crate) fn describe(self, escrow: usize) -> String {
        let how = match self {
            KeyPath::Keyring => "kernel keyring (logon)",
            KeyPath::HexTable => "hex key in the dm table (kernel lacks keyring keys)",
        };
        match escrow {
            0 => format!("{how}, never stored"),
            n => format!("{how}; {}", escrowed(n)),
        }
    }
}

/// What escrow to `n` (> 0) recipients does with the key.
pub(crate) fn escrowed(n: usize) -> String {
    let (s, them) = if n == 1 { ("", "it") } else { ("s", "them") };
    format!(
        "escrowed to {n} recipient{s}: stored, encrypted to {them}, after every member's header and in {}",
        crate::paths::ESCROW_PATH
    )
}

/// A device-mapper mapping to make: create it, load its table, resume it, give it a
/// /dev/mapper node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) name: String,
    pub(crate) uuid: String,
    /// The table, with the placeholders of `dm::table` (`KEY`, `/dev/mapper/<earlier mapping>`).
    pub(crate) table: Vec<Target>,
    /// For a crypt mapping: how the key made at this step reaches the kernel.
    pub(crate) key: Option<(KeyPath, u32)>,
    /// What the kernel's crypto API must offer for the table (AF_ALG type, name), checked before
    /// the key is made: `("skcipher", "xts(aes)")`.
    pub(crate) kernel: Vec<(&'static str, String)>,
    /// For a crypt mapping with escrow: the recipients the key is encrypted to while it exists
    /// (the [`Step::Escrow`] that follows writes the result).
    pub(crate) escrow: Vec<Recipient>,
    /// Load the table read-only (`recover`): the kernel refuses every write to the mapping.
    pub(crate) read_only: bool,
}

/// One member's header as [`Step::Headers`] writes it: `write` bytes from the disk's start, the
/// header block, then zeros over what of the reserved MiB may hold something
/// (plan::layout::reserved_to_clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderWrite {
    pub(crate) device: PathBuf,
    pub(crate) header: Box<Header>,
    pub(crate) write: usize,
}

impl fmt::Display for HeaderWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        write!(
            f,
            "{}: volume {} '{}', member {} of {}, data from sector {}; {}",
            EscPath(&self.device),
            volume_id(h),
            Esc(&h.name),
            h.member + 1,
            h.members,
            h.data_offset,
            match self.write {
                w if w <= header::SIZE => "the rest of the reserved MiB was read as zeros".to_string(),
                w if w >= header::RESERVED_LEN => "zeros to the end of the reserved MiB".to_string(),
                w => format!("zeros over the earlier escrow, to byte {w}"),
            }
        )
    }
}

/// One step of setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write ephemcrypt's header (no key material) at the start of a member disk.
    /// Write ephemcrypt's header (no key material) at the start of every member disk, the disks
    /// side by side.
    Headers(Vec<HeaderWrite>),
    Mapping(Mapping),
    /// Write the escrow made at the crypt mapping (the key, encrypted to `recipients` in the age
    /// format) after each member's header, in its reserved area (the header rewritten to say
    /// where), and armored to `file`.
    Escrow {
        members: Vec<(PathBuf, Box<Header>)>,
        file: PathBuf,
        recipients: Vec<String>,
    },
    /// Write a swap signature for `len` bytes on the mapping `device`, then swapon it.
    Swap {
        device: String,
        len: Bytes,
    },
    /// Run a program (mkfs), exactly this argv; `argv[0]` is looked up on PATH.
    Mkfs {
        fs: Fs,
        argv: Vec<String>,
    },
    /// Remount the mount at `path` read-only or read-write, keeping its other flags (`options`).
    Remount {
        path: PathBuf,
        read_only: bool,
        options: Vec<String>,
    },
    /// Create one directory (mode 0755) with its parent's security label (SELinux, SMACK), as the
    /// kernel labels a new directory once a policy is loaded; its parent exists.
    Mkdir {
        path: PathBuf,
    },
    /// Mount the mapping's device `source` at `target`; the file system's root takes the security
    /// label of the directory it covers (read before the mount), as a relabel would give it.
    Mount {
        source: PathBuf,
        target: PathBuf,
        fs: Fs,
        options: Vec<String>,
    },
    /// Copy the directory skeleton of `target` (directories with owner, mode, ACLs and security
    /// labels; no files) to `source`, then bind-mount `source` over `target`.
    Bind {
        source: PathBuf,
        target: PathBuf,
    },
    /// Mount a tmpfs over `target`, with the directory's own mode and owner (the failure policy).
    Tmpfs {
        target: PathBuf,
    },
    /// Write a systemd unit for the real root (in /run/systemd/system, which switch_root keeps)
    /// and make `wanted_by` want it: a bind that must happen after a mount of the root's fstab
    /// that would hide one made now.
    Unit {
        name: String,
        text: String,
        wanted_by: String,
    },
    /// Write a configuration file for the real root's services under /run, which switch_root
    /// keeps (logind's drop-in that lets the power button through the guard's lock).
    Config {
        path: PathBuf,
        text: String,
    },
    /// Measure setup's outcome into a TPM PCR and append it to systemd's measurement log
    /// (tpm/event.rs); right before the status, which says what was measured.
    Measure(crate::tpm::event::Event),
    /// Write the status document.
    Status {
        path: PathBuf,
    },
}

/// Every step kind ([`Step::kind`]) and the kinds of what setup times before its steps (waiting
/// for disks, reading them, asking the kernel), in the order docs/operations.md lists them:
/// the values of the step-duration metric's `kind` label.
pub(crate) const STEP_KINDS: &[&str] = &[
    "wait", "read", "kernel", "header", "stripe", "linear", "crypt", "escrow", "swap", "mkfs", "remount", "mkdir",
    "mount", "bind", "tmpfs", "unit", "config", "measure", "status",
];

/// The mount option that keeps a read-only mount of `fs` from replaying its journal (which would
/// write to the device even under `ro`).
pub(crate) fn no_replay(fs: Fs) -> Option<&'static str> {
    match fs {
        Fs::Ext4 => Some("noload"),
        Fs::Xfs => Some("norecovery"),
        Fs::None => None,
    }
}

/// Options of every mount of the volume: no set-uid programs, no device nodes from it.
pub(crate) const MOUNT_OPTIONS: [&str; 2] = ["nosuid", "nodev"];

/// The options of setup's own read-write mount of a new `fs`: [`MOUNT_OPTIONS`], and for ext4
/// `noinit_itable`. mke2fs leaves the inode tables unwritten (lazy_itable_init); the kernel would
/// then zero them in the background after the first mount (ext4lazyinit): 32 GiB at 2 TiB, half a
/// TiB at 60, written through dm-crypt at every boot. Zeroing is for e2fsck after a crash, and
/// this file system is never checked, nor mounted read-write again: the next boot has another key
/// (`ephemcrypt recover` mounts an escrowed one read-only, `noload`; its unzeroed inode tables
/// read as noise, which the group descriptors' unused counts and metadata_csum tell from inodes).
pub(crate) fn new_volume_options(fs: Fs) -> Vec<String> {
    let extra = match fs {
        Fs::Ext4 => Some("noinit_itable"),
        Fs::Xfs | Fs::None => None,
    };
    MOUNT_OPTIONS.iter().copied().chain(extra).map(String::from).collect()
}

impl Step {
    /// Whether the step writes nothing to a disk: a read-only mapping, a read-only mount that
    /// replays no journal, a directory. `recover` takes only such steps.
    pub(crate) fn is_read_only(&self) -> bool {
        match self {
            Step::Mapping(m) => m.read_only && m.escrow.is_empty(),
            Step::Mount { fs, options, .. } => {
                options.iter().any(|o| o == "ro") && no_replay(*fs).is_some_and(|n| options.iter().any(|o| o == n))
            }
            _ => false,
        }
    }

    /// The step's kind, one of [`STEP_KINDS`]: the `kind` label of the step-duration metric,
    /// which stays the same from boot to boot and machine to machine where the title names
    /// devices and paths.
    pub(crate) fn kind(&self) -> &'static str {
        use crate::dm::table::TargetKind;
        match self {
            Step::Headers(_) => "header",
            Step::Mapping(m) if m.key.is_some() || m.table.iter().any(|t| matches!(t.kind, TargetKind::Crypt(_))) => {
                "crypt"
            }
            Step::Mapping(m) if m.table.iter().any(|t| matches!(t.kind, TargetKind::Striped(_))) => "stripe",
            Step::Mapping(_) => "linear",
            Step::Escrow { .. } => "escrow",
            Step::Swap { .. } => "swap",
            Step::Mkfs { .. } => "mkfs",
            Step::Remount { .. } => "remount",
            Step::Mkdir { .. } => "mkdir",
            Step::Mount { .. } => "mount",
            Step::Bind { .. } => "bind",
            Step::Tmpfs { .. } => "tmpfs",
            Step::Unit { .. } => "unit",
            Step::Config { .. } => "config",
            Step::Measure(_) => "measure",
            Step::Status { .. } => "status",
        }
    }

    /// A short name for logs and the status' timings: what and on what.
    pub(crate) fn title(&self) -> String {
        match self {
            Step::Headers(members) => {
                let devices: Vec<String> = members.iter().map(|m| m.device.display().to_string()).collect();
                format!("headers on {} disk(s): {}", members.len(), devices.join(", "))
            }
            Step::Mapping(m) => match &m.key {
                Some(_) => format!("crypt mapping {}", m.name),
                None => format!("mapping {}", m.name),
            },
            Step::Escrow { recipients, .. } => format!("escrow to {} recipient(s)", recipients.len()),
            Step::Swap { device, .. } => format!("swap on /dev/mapper/{device}"),
            Step::Mkfs { fs, argv } => format!("mkfs {} on {}", fs.name(), argv.last().map_or("", String::as_str)),
            Step::Remount { path, read_only, .. } => {
                format!("remount {} {}", path.display(), if *read_only { "read-only" } else { "read-write" })
            }
            Step::Mkdir { path } => format!("mkdir {}", path.display()),
            Step::Mount { target, .. } => format!("mount {}", target.display()),
            Step::Bind { target, .. } => format!("bind {}", target.display()),
            Step::Tmpfs { target } => format!("tmpfs on {}", target.display()),
            Step::Unit { name, .. } => format!("unit {name}"),
            Step::Config { path, .. } => format!("config {}", path.display()),
            Step::Measure(e) => format!("measure the outcome into PCR {}", e.pcr),
            Step::Status { path } => format!("write {}", path.display()),
        }
    }

    /// The step as `plan --json` shows it.
    pub(crate) fn to_json(&self) -> Value {
        let path = |p: &PathBuf| Value::from(p.display().to_string());
        let kind = |k: &str| ("kind", Value::from(k));
        match self {
            Step::Headers(members) => Value::obj([
                kind("headers"),
                (
                    "members",
                    members
                        .iter()
                        .map(|m| {
                            Value::obj([
                                ("device", path(&m.device)),
                                ("write_bytes", (m.write as u64).into()),
                                ("volume_id", volume_id(&m.header).into()),
                                ("member", (m.header.member + 1).into()),
                                ("members", m.header.members.into()),
                                ("data_offset_sectors", m.header.data_offset.0.into()),
                            ])
                        })
                        .collect::<Vec<_>>()
                        .into(),
                ),
            ]),
            Step::Mapping(m) => Value::obj([
                kind("mapping"),
                ("name", m.name.as_str().into()),
                ("uuid", m.uuid.as_str().into()),
                ("table", m.table.iter().map(ToString::to_string).collect::<Vec<_>>().into()),
                ("key", m.key.map(|(k, _)| k.name()).into()),
                ("kernel", m.kernel.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>().into()),
            ]),
            Step::Escrow { members, file, recipients } => Value::obj([
                kind("escrow"),
                ("devices", members.iter().map(|(d, _)| d.display().to_string()).collect::<Vec<_>>().into()),
                ("file", path(file)),
                ("recipients", recipients.clone().into()),
            ]),
            Step::Swap { device, len } => Value::obj([
                kind("swap"),
                ("device", format!("/dev/mapper/{device}").into()),
                ("size_bytes", len.0.into()),
            ]),
            Step::Mkfs { fs, argv } => {
                Value::obj([kind("mkfs"), ("fs", fs.name().into()), ("argv", argv.clone().into())])
            }
            Step::Remount { path: p, read_only, options } => Value::obj([
                kind("remount"),
                ("path", path(p)),
                ("options", remount_options(*read_only, options).into()),
            ]),
            Step::Mkdir { path: p } => Value::obj([kind("mkdir"), ("path", path(p))]),
            Step::Mount { source, target, fs, options } => Value::obj([
                kind("mount"),
                ("source", path(source)),
                ("target", path(target)),
                ("fstype", fs.name().into()),
                ("options", options.clone().into()),
            ]),
            Step::Bind { source, target } => {
                Value::obj([kind("bind"), ("source", path(source)), ("target", path(target))])
            }
            Step::Tmpfs { target } => Value::obj([kind("tmpfs"), ("target", path(target))]),
            Step::Unit { name, text, wanted_by } => Value::obj([
                kind("unit"),
                ("name", name.as_str().into()),
                ("wanted_by", wanted_by.as_str().into()),
                ("text", text.as_str().into()),
            ]),
            Step::Config { path: p, text } => {
                Value::obj([kind("config"), ("path", path(p)), ("text", text.as_str().into())])
            }
            Step::Measure(e) => Value::obj([
                kind("measure"),
                ("pcr", e.pcr.into()),
                ("required", e.required.into()),
                ("event", e.text("RESULT").into()),
                ("log", crate::tpm::event::LOG_PATH.into()),
            ]),
            Step::Status { path: p } => Value::obj([kind("status"), ("path", path(p))]),
        }
    }
}

/// The volume id a header step writes, or `new` where the plan does not know it yet (`ephemcrypt
/// plan`: setup draws it from the kernel's RNG).
fn volume_id(h: &Header) -> String {
    if h.volume_id == [0; 16] {
        "new".into()
    } else {
        h.volume_id_hex()
    }
}

/// `rw,nosuid,…` or `ro,nosuid,…`: the options a remount passes.
pub(crate) fn remount_options(read_only: bool, kept: &[String]) -> Vec<String> {
    std::iter::once(if read_only { "ro" } else { "rw" }.to_string()).chain(kept.iter().cloned()).collect()
}

/// The step as the command it is (multi-line for a mapping: its table lines follow, indented).
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Headers(members) => {
                write!(
                    f,
                    "write ephemcrypt's header ({} bytes, no key) at the start of each member, side by side:",
                    header::SIZE
                )?;
                for m in members {
                    write!(f, "\n        {m}")?;
                }
                Ok(())
            }
            Step::Mapping(m) => {
                let ro = if m.read_only { " read-only" } else { "" };
                write!(f, "create mapping {} (uuid {}) with{ro} table:", Esc(&m.name), Esc(&m.uuid))?;
                for t in &m.table {
                    write!(f, "\n        {}", Esc(&t.to_string()))?;
                }
                if !m.kernel.is_empty() {
                    let names: Vec<&str> = m.kernel.iter().map(|(_, n)| n.as_str()).collect();
                    write!(f, "\n      the kernel must offer {} (checked first)", names.join(" and "))?;
                }
                let stored = if m.escrow.is_empty() { "never stored".to_string() } else { escrowed(m.escrow.len()) };
                match m.key {
                    Some((KeyPath::Keyring, bits)) => write!(
                        f,
                        "\n      KEY: {bits} bits from getrandom(2), in a logon key of the process keyring that is \
                         invalidated right after the load; {stored}"
                    ),
                    Some((KeyPath::HexTable, bits)) => write!(
                        f,
                        "\n      KEY: {bits} bits from getrandom(2), in hex in the table (this kernel's dm-crypt \
                         takes no keyring keys), loaded with DM_SECURE_DATA_FLAG; {stored}"
                    ),
                    None => Ok(()),
                }?;
                if !m.escrow.is_empty() {
                    write!(
                        f,
                        "\n      ESCROW: the key, encrypted in the age format to {} while it exists",
                        m.escrow.iter().map(Recipient::describe).collect::<Vec<_>>().join(", ")
                    )?;
                }
                Ok(())
            }
            Step::Escrow { members, file, .. } => {
                let devices: Vec<String> = members.iter().map(|(d, _)| EscPath(d).to_string()).collect();
                write!(
                    f,
                    "write the escrow after the header of {} (in the reserved MiB; the header says where) and, \
                     armored, to {}",
                    devices.join(", "),
                    EscPath(file)
                )
            }
            Step::Swap { device, len } => {
                let device = Esc(device);
                write!(f, "write a swap signature for {len} on /dev/mapper/{device}; swapon /dev/mapper/{device}")
            }
            Step::Mkfs { argv, .. } => Esc(&argv.join(" ")).fmt(f),
            Step::Remount { path, read_only, options } => {
                write!(f, "mount -o remount,{} {}", Esc(&remount_options(*read_only, options).join(",")), EscPath(path))
            }
            Step::Mkdir { path } => write!(f, "mkdir -m 0755 {} (labelled as its parent)", EscPath(path)),
            Step::Mount { source, target, fs, options } => {
                let options = Esc(&options.join(","));
                let (source, target) = (EscPath(source), EscPath(target));
                write!(f, "mount -t {} -o {options} {source} {target} (its root labelled as {target} was)", fs.name())
            }
            Step::Bind { source, target } => write!(
                f,
                "copy the directories of {t} (owner, mode, ACLs, labels; no files) to {s}; mount --bind {s} {t}",
                s = EscPath(source),
                t = EscPath(target)
            ),
            Step::Tmpfs { target } => write!(
                f,
                "mount -t tmpfs -o {},mode=M,uid=U,gid=G tmpfs {} (M, U, G: the directory's own)",
                MOUNT_OPTIONS.join(","),
                EscPath(target)
            ),
            Step::Unit { name, text, wanted_by } => {
                // Unit names and text keep systemd's own `\x2d` escapes: only control characters go.
                write!(f, "write /run/systemd/system/{}, wanted by {}:", line(name), line(wanted_by))?;
                for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
                    write!(f, "\n        {}", line(l))?;
                }
                Ok(())
            }
            Step::Config { path, text } => {
                write!(f, "write {}:", EscPath(path))?;
                for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
                    write!(f, "\n        {}", Esc(line))?;
                }
                Ok(())
            }
            Step::Measure(e) => e.fmt(f),
            Step::Status { path } => write!(f, "write {}", EscPath(path)),
        }
    }
}

#[cfg(test)]
mod kind_doc_tests {
    /// docs/operations.md lists every value of the step-duration metric's `kind` label, in the
    /// order of STEP_KINDS, then `other`, and no other.
    #[test]
    fn the_metrics_table_lists_every_step_kind() {
        let doc = include_str!("../docs/operations.md");
        let row = doc.lines().find(|l| l.starts_with("| `ephemcrypt_setup_step_duration_seconds` |")).unwrap();
        let kinds = row.split("`kind`: ").nth(1).unwrap().split("; `step`").next().unwrap();
        let listed: Vec<&str> = kinds.split(", ").map(|k| k.trim_matches('`')).collect();
        let mut want = super::STEP_KINDS.to_vec();
        want.push(crate::status::OTHER_KIND);
        assert_eq!(listed, want, "docs/operations.md against STEP_KINDS");
    }
}
