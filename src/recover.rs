//! `ephemcrypt recover`: open an earlier boot's volume with its escrow, read-only, or print a
//! script that does the same with stock tools (age, dmsetup, cryptsetup).
//!
//! The member disks are found by their headers (grouped by volume id, put in stripe order by
//! member index), and every layout field must agree across them. [`plan`] turns the volume into
//! [`Step`]s: the stripe, crypt and data mappings, read-only, under `<name>-recovered…` names (the
//! running boot's own volume may have the volume's name), and with `--mount` a read-only mount that
//! replays no journal. `recover` takes these steps through setup's own interpreter
//! ([`crate::execute::interpret`]), the key decrypted from the first member's escrow copy that
//! opens; `--print-commands` renders the same steps as a POSIX shell script ([`script`]), every
//! string from a header inside one word of [`crate::shell::quote`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::age::{self, Identity};
use crate::config::{CipherSpec, Fs, Selector};
use crate::disk::{Disk, Probe};
use crate::dm::{Crypt as CryptTarget, CryptKey, Dev, Linear, Striped, Target, TargetKind};
use crate::error::{Error, Result};
use crate::escape::{Esc, EscPath};
use crate::header::{self, Header};
use crate::host::Host;
use crate::key::Key;
use crate::shell::{quotable, quote};
use crate::step::{KeyPath, Mapping, Step};
use crate::system::System;
use crate::units::Sectors;

/// One member disk of the volume to recover, in stripe order.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) disk: Disk,
    pub(crate) header: Header,
}

/// The volume found on the disks: its members in stripe order (all present).
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) members: Vec<Member>,
}

impl Found {
    fn header(&self) -> &Header {
        &self.members[0].header
    }

    fn describe(&self) -> String {
        let h = self.header();
        format!("volume '{}' {} created {}", Esc(&h.name), h.volume_id_hex(), header::utc(h.created))
    }
}

/// Find the volume: every disk (or those `disks` selects) with an ephemcrypt header, grouped by
/// volume; one volume, all its members present, every layout field the same on each. Errors say
/// what was found.
pub(crate) fn find(host: &Host, disks: &[Selector]) -> Result<Found> {
    let mut found: Vec<Member> = Vec::new();
    let mut damaged = Vec::new();
    let mut looked = Vec::new();
    for mut d in host.disks()? {
        if !disks.is_empty() && !disks.iter().any(|s| crate::classify::selects(s, &d)) {
            continue;
        }
        looked.push(d.name.clone());
        match host.probe(&d) {
            Probe::Ours(h) => {
                d.probe = Probe::NotProbed;
                found.push(Member { disk: d, header: *h });
            }
            Probe::Damaged(e) => damaged.push(format!("{} ({e})", EscPath(&d.path))),
            _ => {}
        }
    }
    let mut volumes: Vec<[u8; 16]> = found.iter().map(|m| m.header.volume_id).collect();
    volumes.sort_unstable();
    volumes.dedup();
    match volumes.len() {
        0 if !damaged.is_empty() => {
            return Err(invalid(format!(
                "the ephemcrypt headers on {} are damaged or forged: those disks cannot be put together",
                damaged.join(", ")
            )))
        }
        0 => {
            return Err(invalid(format!(
                "no ephemcrypt header on any disk looked at ({}): nothing to recover",
                if looked.is_empty() { "none".into() } else { Esc(&looked.join(", ")).to_string() }
            )))
        }
        1 => {}
        _ => {
            let list: Vec<String> = volumes
                .iter()
                .map(|id| {
                    let on: Vec<String> = found
                        .iter()
                        .filter(|m| m.header.volume_id == *id)
                        .map(|m| EscPath(&m.disk.path).to_string())
                        .collect();
                    format!("{} on {}", header::hex(id), on.join(" "))
                })
                .collect();
            return Err(invalid(format!(
                "the disks hold several ephemcrypt volumes ({}): choose one with --disks",
                list.join("; ")
            )));
        }
    }
    found.sort_by_key(|m| m.header.member);
    for w in found.windows(2) {
        if w[0].header.member == w[1].header.member {
            return Err(invalid(format!(
                "{} and {} both carry member {} of {} of the volume (a copied disk?): choose with --disks",
                EscPath(&w[0].disk.path),
                EscPath(&w[1].disk.path),
                w[0].header.member + 1,
                w[0].header.members
            )));
        }
    }
    disagreement(&found)?;
    let count = found[0].header.members as usize;
    let mut members: Vec<Member> = Vec::new();
    let mut missing = Vec::new();
    for i in 0..count {
        match found.iter().find(|m| m.header.member as usize == i) {
            Some(m) => members.push(m.clone()),
            None => missing.push(format!(
                "member {} of {count} (serial '{}')",
                i + 1,
                Esc(found[0].header.serials.get(i).map_or("", String::as_str))
            )),
        }
    }
    if !missing.is_empty() {
        let extra = if damaged.is_empty() {
            String::new()
        } else {
            format!("; damaged or forged headers on {}", damaged.join(", "))
        };
        let described = Found { members: found }.describe();
        return Err(invalid(format!("{described} is missing: {}{extra}", missing.join(", "))));
    }
    Ok(Found { members })
}

/// The layout fields every member's header must agree on, each as it is shown (strings escaped).
#[allow(clippy::type_complexity)]
const LAYOUT: [(&str, fn(&Header) -> String); 15] = [
    ("volume id", |h| h.volume_id_hex()),
    ("member count", |h| h.members.to_string()),
    ("data offset", |h| h.data_offset.0.to_string()),
    ("stripe chunk", |h| h.chunk.0.to_string()),
    ("member length", |h| h.member_len.0.to_string()),
    ("volume length", |h| h.volume_len.0.to_string()),
    ("key size", |h| h.key_bits.to_string()),
    ("sector size", |h| h.sector_size.to_string()),
    ("swap extent", |h| format!("{}+{}", h.swap.0 .0, h.swap.1 .0)),
    ("file-system extent", |h| format!("{}+{}", h.data.0 .0, h.data.1 .0)),
    ("file system", |h| format!("'{}'", Esc(&h.fs))),
    ("cipher", |h| format!("'{}'", Esc(&h.cipher))),
    ("name", |h| format!("'{}'", Esc(&h.name))),
    ("member serials", |h| h.serials.iter().map(|s| format!("'{}'", Esc(s))).collect::<Vec<_>>().join(",")),
    ("escrow", |h| format!("{} bytes at byte {}", h.escrow.1, h.escrow.0)),
];

/// Every layout field the same on every member (escaping is one-to-one: the shown values are
/// equal exactly when the fields are), or an error naming the field and each disk's value.
fn disagreement(members: &[Member]) -> Result<()> {
    let Some(first) = members.first() else { return Ok(()) };
    for (field, show) in LAYOUT {
        let want = show(&first.header);
        if members.iter().any(|m| show(&m.header) != want) {
            let each: Vec<String> =
                members.iter().map(|m| format!("{} says {}", EscPath(&m.disk.path), show(&m.header))).collect();
            return Err(invalid(format!("the members' headers disagree about the {field}: {}", each.join(", "))));
        }
    }
    Ok(())
}

fn invalid(why: String) -> Error {
    Error::Recover(why)
}

/// The escrow blob in a member's reserved area.
fn escrow_of(host: &Host, m: &Member) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let path = host.path(&m.disk.path);
    let file = std::fs::File::open(&path).map_err(|e| Error::os("open", path.display(), e))?;
    let mut blob = vec![0u8; m.header.escrow.1 as usize];
    file.read_exact_at(&mut blob, u64::from(m.header.escrow.0))
        .map_err(|e| Error::os("read the escrow from", path.display(), e))?;
    Ok(blob)
}

/// The key, from the first member whose escrow copy can be read and opens with the identity
/// file's identities; each copy that does not is logged and the next one tried.
pub(crate) fn escrowed_key(host: &Host, found: &Found, identity_file: &Path) -> Result<Key> {
    if found.header().escrow.1 == 0 {
        return Err(invalid(format!(
            "{} was made without escrow (no 'escrow' recipients then): its key is gone, nothing can open it",
            found.describe()
        )));
    }
    let mut failed = Vec::new();
    for m in &found.members {
        match escrow_of(host, m).and_then(|blob| key(&blob, identity_file, found)) {
            Ok(k) => return Ok(k),
            Err(e) => {
                log::warn!("the escrow copy on {}: {e}", m.disk.path.display());
                failed.push(format!("{}: {e}", m.disk.path.display()));
            }
        }
    }
    Err(invalid(format!("no member's escrow copy opens: {}", failed.join("; "))))
}

/// The key, from the escrow with the identity file's identities.
pub(crate) fn key(blob: &[u8], identity_file: &Path, found: &Found) -> Result<Key> {
    // Read into one wiped buffer sized once, parsed in place (age.rs).
    let ids: Vec<Identity> = age::read_identities(identity_file)?;
    let key = age::decrypt(blob, &ids).map_err(|e| {
        let mine: Vec<String> = ids.iter().map(|i| i.recipient().describe()).collect();
        let whose = match e {
            age::AgeError::NoMatch { .. } => format!(" (the identity file is for {})", mine.join(", ")),
            _ => String::new(),
        };
        invalid(format!("the escrow of {}: {e}{whose}", found.describe()))
    })?;
    let want = found.header().key_bits as usize / 8;
    if key.len() != want {
        return Err(invalid(format!("the escrow holds {} bytes, not the {want}-byte key the header names", key.len())));
    }
    Ok(key)
}

/// The sector sizes dm-crypt takes.
const SECTOR_SIZES: [u32; 4] = [512, 1024, 2048, 4096];

/// The volume's layout, checked as setup would have made it: a name by the configuration's rules, a
/// cipher that parses (rebuilt from its parsed parts, never copied), its key size, a known sector
/// size and file system, extents inside the volume and the volume inside its disks. Returns the
/// cipher and the file system.
fn checked(found: &Found) -> Result<(String, Fs)> {
    let h = found.header();
    let bad = |what: &str, why: String| invalid(format!("{}: the header's {what} {why}", found.describe()));
    if crate::config::parse_name(&h.name).is_none() {
        return Err(bad("name", "is not one ephemcrypt makes (1 to 64 of A-Z a-z 0-9 _ -, a letter first)".into()));
    }
    let spec =
        CipherSpec::parse(&h.cipher).map_err(|why| bad("cipher", format!("'{}': {}", Esc(&h.cipher), Esc(&why))))?;
    if !spec.key_bits().contains(&h.key_bits) {
        return Err(bad(
            "key size",
            format!("{} is not one {}-{}-{} takes", h.key_bits, spec.cipher, spec.mode, spec.iv),
        ));
    }
    let cipher = format!("{}-{}-{}", spec.cipher, spec.mode, spec.iv);
    let fs = match h.fs.as_str() {
        "ext4" => Fs::Ext4,
        "xfs" => Fs::Xfs,
        "none" => Fs::None,
        other => return Err(bad("file system", format!("'{}' is not ext4, xfs or none", Esc(other)))),
    };
    if !SECTOR_SIZES.contains(&h.sector_size) {
        return Err(bad("sector size", format!("{} is not 512, 1024, 2048 or 4096", h.sector_size)));
    }
    if let Some(s) = h.serials.iter().find(|s| !quotable(s)) {
        return Err(bad("member serials", format!("hold a NUL ('{}')", Esc(s))));
    }
    let n = found.members.len() as u64;
    let end = |(start, len): (Sectors, Sectors)| start.0.checked_add(len.0);
    let fits = h.volume_len.0 > 0
        && h.volume_len.0 % (u64::from(h.sector_size) / 512) == 0
        && h.data.1 .0 > 0
        && end(h.data).is_some_and(|e| e <= h.volume_len.0)
        && end(h.swap).is_some_and(|e| e <= h.volume_len.0)
        && h.data_offset >= header::RESERVED
        && h.member_len.0.checked_mul(n).is_some_and(|all| all >= h.volume_len.0)
        && (n == 1 || h.chunk.0 > 0);
    if !fits {
        return Err(bad(
            "layout",
            "does not fit together (extents past the volume, or a volume past its members)".into(),
        ));
    }
    for m in &found.members {
        let need = h.data_offset.0.checked_add(h.member_len.0);
        if need.is_none_or(|need| m.disk.size.0 / 512 < need) {
            return Err(bad("member length", format!("reaches past the end of {}", m.disk.path.display())));
        }
    }
    Ok((cipher, fs))
}

/// The names of the recovery mappings: stripe (several disks), crypt, data (with swap).
fn names(h: &Header) -> (String, String, String) {
    let base = format!("{}-recovered", h.name);
    (format!("{base}-stripe"), base.clone(), format!("{base}-data"))
}

fn mapping(name: String, target: Target, key: Option<(KeyPath, u32)>, kernel: Vec<(&'static str, String)>) -> Step {
    Step::Mapping(Mapping {
        uuid: format!("EPHEMCRYPT-RECOVERED-{name}"),
        name,
        table: vec![target],
        key,
        kernel,
        escrow: Vec::new(),
        read_only: true,
    })
}

/// PURE: the steps that open the volume read-only: the stripe (several members), the crypt mapping
/// (the key through the keyring, as setup loads it), the data slice (with swap), and with `mount`
/// a read-only mount of the file system that replays no journal.
pub(crate) fn plan(found: &Found, mount: Option<&Path>) -> Result<Vec<Step>> {
    let (cipher, fs) = checked(found)?;
    let h = found.header();
    let (stripe, crypt, data) = names(h);
    let mut steps = Vec::new();
    let (below, offset) = if found.members.len() > 1 {
        let devs = found.members.iter().map(|m| (Dev::Num(m.disk.dev), h.data_offset)).collect();
        let kind = TargetKind::Striped(Striped { chunk: h.chunk, devs });
        steps.push(mapping(stripe.clone(), Target { start: Sectors(0), len: h.volume_len, kind }, None, Vec::new()));
        (Dev::Mapping(stripe), Sectors(0))
    } else {
        (Dev::Num(found.members[0].disk.dev), h.data_offset)
    };
    let kernel = CipherSpec::parse(&cipher).map(|s| s.kernel_algorithms()).unwrap_or_default();
    let kind = TargetKind::Crypt(CryptTarget {
        cipher,
        key: CryptKey::Placeholder { bytes: h.key_bits as usize / 8 },
        iv_offset: Sectors(0),
        dev: below,
        offset,
        options: if h.sector_size == 512 { Vec::new() } else { vec![format!("sector_size:{}", h.sector_size)] },
    });
    let target = Target { start: Sectors(0), len: h.volume_len, kind };
    steps.push(mapping(crypt.clone(), target, Some((KeyPath::Keyring, h.key_bits)), kernel));
    let mut fs_dev = crypt.clone();
    if h.swap.1 .0 > 0 {
        let kind = TargetKind::Linear(Linear { dev: Dev::Mapping(crypt), offset: h.data.0 });
        steps.push(mapping(data.clone(), Target { start: Sectors(0), len: h.data.1, kind }, None, Vec::new()));
        fs_dev = data;
    }
    if let Some(dir) = mount {
        let Some(no_replay) = crate::step::no_replay(fs) else {
            return Err(invalid(format!("{} holds no file system (fs = none): nothing to mount", found.describe())));
        };
        let options = ["ro", no_replay].into_iter().chain(crate::step::MOUNT_OPTIONS).map(String::from).collect();
        steps.push(Step::Mount {
            source: PathBuf::from("/dev/mapper").join(fs_dev),
            target: dir.to_path_buf(),
            fs,
            options,
        });
    }
    Ok(steps)
}

/// Open the volume read-only: take `steps` (from [`plan`]) through setup's interpreter with the
/// escrowed key. Returns what to tell the operator. On a failure, what was made is removed.
pub(crate) fn open<S: System>(found: &Found, steps: &[Step], key: Key, sys: &mut S) -> Result<String> {
    // As the --print-commands script does (`modprobe -a dm_mod dm_crypt`): a real root whose boot
    // was held did not load them.
    sys.load_modules(&crate::plan::DM_MODULES);
    crate::execute::interpret(steps, sys, key)?;
    let mappings: Vec<&str> =
        steps.iter().filter_map(|s| if let Step::Mapping(m) = s { Some(m.name.as_str()) } else { None }).collect();
    let last = mappings.last().copied().unwrap_or_default();
    let mut out = format!("{}: opened read-only as /dev/mapper/{last}\n", found.describe());
    let remove: Vec<&str> = mappings.iter().rev().copied().collect();
    match steps.last() {
        Some(Step::Mount { target, fs, options, .. }) => {
            let no_replay = crate::step::no_replay(*fs).unwrap_or_default();
            let _ = writeln!(out, "mounted read-only ({}, {no_replay}) at {}", fs.name(), target.display());
            let _ = writeln!(out, "options: {}", options.join(","));
            let _ = writeln!(out, "when done: umount {}; dmsetup remove {}", target.display(), remove.join(" "));
        }
        _ => {
            let _ = writeln!(out, "when done: dmsetup remove {}", remove.join(" "));
        }
    }
    Ok(out)
}

/// Where the script mounts: its second argument, `"$mnt"`.
const SCRIPT_MOUNT: &str = "/MOUNT-DIR";

/// A POSIX shell script that takes the steps of [`plan`] with stock tools: the disks found by
/// serial when it runs (kernel names change between boots), each member's escrow copy in turn
/// through `age -d` until one decrypts, `dmsetup create --readonly` for the stripe and the data
/// slice, `cryptsetup open --readonly --type plain` for the crypt mapping (the key from a file,
/// removed right after: from stdin cryptsetup would hash it), a read-only mount without journal
/// replay. Every string that came from a header is in the script only as one [`quote`]d word.
pub(crate) fn script(found: &Found) -> Result<String> {
    let mount = (found.header().fs != "none").then_some(Path::new(SCRIPT_MOUNT));
    let steps = plan(found, mount)?;
    render(found, &steps)
}

/// One shell word for a table line made of literal text (quoted; adjacent pieces as one) and
/// device variables (`Err("m0")`: `"$m0"`).
fn table_word(parts: &[Result<String, String>]) -> String {
    let mut out = String::new();
    let mut text = String::new();
    for p in parts {
        match p {
            Ok(t) => text.push_str(t),
            Err(var) => {
                if !text.is_empty() {
                    out.push_str(&quote(&std::mem::take(&mut text)));
                }
                let _ = write!(out, "\"${var}\"");
            }
        }
    }
    if !text.is_empty() || out.is_empty() {
        out.push_str(&quote(&text));
    }
    out
}

/// The script of `steps` for the volume `found` (its members' serials and escrow copies).
pub(crate) fn render(found: &Found, steps: &[Step]) -> Result<String> {
    let h = found.header();
    let internal = |why: &str| invalid(format!("the script cannot take this step: {why}"));
    let var = |d: &Dev| -> Result<Result<String, String>> {
        match d {
            Dev::Num(n) => found
                .members
                .iter()
                .position(|m| m.disk.dev == *n)
                .map(|i| Err(format!("m{i}")))
                .ok_or_else(|| internal("a device that is no member")),
            Dev::Mapping(name) => Ok(Ok(format!("/dev/mapper/{name}"))),
        }
    };
    let word = |d: &Dev| -> Result<String> { Ok(table_word(&[var(d)?])) };
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "#!/bin/sh");
    let _ = writeln!(w, "# Open an ephemcrypt volume read-only with stock tools: age, dmsetup, cryptsetup.");
    let _ = writeln!(w, "# Usage: sh THIS-SCRIPT IDENTITY-FILE [MOUNT-DIR]");
    let _ = writeln!(w, "set -eu");
    let _ = writeln!(w, "identity=${{1:?usage: sh THIS-SCRIPT IDENTITY-FILE [MOUNT-DIR]}}");
    let _ = writeln!(w, "mnt=${{2:-}}");
    let _ = writeln!(w, "umask 077");
    let _ = writeln!(w, "printf '%s\\n' {} >&2", quote(&format!("ephemcrypt {}", found.describe())));
    // The key goes to a file for cryptsetup: in memory (/run, /dev/shm), never on a disk; gone at
    // any exit, a signal included (dash runs no EXIT trap on a signal).
    let _ = writeln!(w, "work=");
    let _ = writeln!(w, "cleanup() {{ if [ -n \"$work\" ]; then rm -rf -- \"$work\"; fi; }}");
    let _ = writeln!(w, "trap cleanup EXIT");
    for (signal, code) in [("HUP", 129), ("INT", 130), ("TERM", 143)] {
        let _ = writeln!(w, "trap 'cleanup; trap - EXIT; exit {code}' {signal}");
    }
    let _ = writeln!(w, "work=$(mktemp -d -p /run 2>/dev/null || mktemp -d -p /dev/shm)");
    let _ = writeln!(w, "modprobe -a dm_mod dm_crypt 2>/dev/null || true");
    let _ = writeln!(w, "# dev_of SERIAL MEMBER: the disk with that serial now");
    let _ = writeln!(
        w,
        "dev_of() {{\n\tfor d in /sys/block/*; do\n\t\tif [ \"x$(sed 's/ *$//' \"$d/device/serial\" 2>/dev/null)\" = \"x$1\" ]; then\n\t\t\tprintf '%s\\n' \"/dev/${{d##*/}}\"\n\t\t\treturn 0\n\t\tfi\n\tdone\n\tprintf 'no disk with the serial of member %s\\n' \"$2\" >&2\n\texit 1\n}}"
    );
    for (i, m) in found.members.iter().enumerate() {
        let serial = h.serials.get(m.header.member as usize).ok_or_else(|| internal("a member without serial"))?;
        let _ = writeln!(w, "m{i}=$(dev_of {} {})", quote(serial), i + 1);
    }
    let key_bytes = steps
        .iter()
        .find_map(|s| if let Step::Mapping(m) = s { m.table.iter().find_map(Target::key_placeholder) } else { None })
        .ok_or_else(|| internal("no crypt mapping"))?;
    let _ = writeln!(w, "# try_escrow MEMBER BYTE LENGTH: that member's escrow copy, decrypted to the key file");
    let _ = writeln!(
        w,
        "try_escrow() {{\n\trm -f -- \"$work/key\" \"$work/escrow.age\"\n\tdd if=\"$1\" of=\"$work/escrow.age\" bs=1 skip=\"$2\" count=\"$3\" 2>/dev/null &&\n\t\tage -d -i \"$identity\" -o \"$work/key\" \"$work/escrow.age\" &&\n\t\t[ \"$(wc -c <\"$work/key\")\" -eq {key_bytes} ]\n}}"
    );
    for (i, m) in found.members.iter().enumerate() {
        let (at, len) = m.header.escrow;
        let _ = writeln!(w, "{} try_escrow \"$m{i}\" {at} {len}; then", if i == 0 { "if" } else { "elif" });
        let _ = writeln!(w, "\t:");
    }
    let _ = writeln!(w, "else");
    let _ = writeln!(w, "\tprintf '%s\\n' \"no member's escrow copy opens with $identity\" >&2");
    let _ = writeln!(w, "\texit 1");
    let _ = writeln!(w, "fi");
    let _ = writeln!(w, "rm -f -- \"$work/escrow.age\"");
    let mut remove: Vec<String> = Vec::new();
    for step in steps {
        match step {
            Step::Mapping(m) if m.key.is_some() => {
                let [Target { len, kind: TargetKind::Crypt(c), .. }] = m.table.as_slice() else {
                    return Err(internal("a crypt mapping of another table"));
                };
                let sector: u32 = match c.options.as_slice() {
                    [] => 512,
                    [o] => o
                        .strip_prefix("sector_size:")
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| internal("a crypt option other than sector_size"))?,
                    _ => return Err(internal("crypt options")),
                };
                let bits = key_bytes * 8;
                let _ = writeln!(
                    w,
                    "cryptsetup open --readonly --type plain --cipher {} --key-size {bits} --sector-size {sector} --offset {} \
                     --skip {} --size {} --key-file \"$work/key\" -- {} {}",
                    quote(&c.cipher),
                    c.offset.0,
                    c.iv_offset.0,
                    len.0,
                    word(&c.dev)?,
                    quote(&m.name)
                );
                let _ = writeln!(w, "rm -f -- \"$work/key\"");
                remove.push(format!("cryptsetup close {}", m.name));
            }
            Step::Mapping(m) => {
                let [Target { start, len, kind }] = m.table.as_slice() else {
                    return Err(internal("a mapping of several targets"));
                };
                let head = Ok(format!("{} {} {} ", start.0, len.0, kind.type_name()));
                let parts: Vec<Result<String, String>> = match kind {
                    TargetKind::Striped(st) => {
                        let mut p = vec![head, Ok(format!("{} {}", st.devs.len(), st.chunk.0))];
                        for (d, off) in &st.devs {
                            p.extend([Ok(" ".to_string()), var(d)?, Ok(format!(" {}", off.0))]);
                        }
                        p
                    }
                    TargetKind::Linear(l) => vec![head, var(&l.dev)?, Ok(format!(" {}", l.offset.0))],
                    TargetKind::Crypt(_) => return Err(internal("a crypt table without key")),
                };
                let _ = writeln!(
                    w,
                    "dmsetup create --readonly --uuid {} --table {} -- {}",
                    quote(&m.uuid),
                    table_word(&parts),
                    quote(&m.name)
                );
                remove.push(format!("dmsetup remove {}", m.name));
            }
            Step::Mount { source, fs, options, .. } => {
                let source = source.to_str().ok_or_else(|| internal("a device path that is not text"))?;
                let _ = writeln!(w, "if [ -n \"$mnt\" ]; then");
                let _ = writeln!(
                    w,
                    "\tmount -t {} -o {} -- {} \"$mnt\"",
                    quote(fs.name()),
                    quote(&options.join(",")),
                    quote(source)
                );
                let _ = writeln!(w, "\tprintf 'mounted read-only at %s; when done: umount %s; ' \"$mnt\" \"$mnt\"");
                let _ = writeln!(w, "else");
                let _ = writeln!(w, "\tprintf '%s is open read-only; when done: ' {}", quote(source));
                let _ = writeln!(w, "fi");
            }
            other => return Err(internal(&other.title())),
        }
    }
    if !steps.iter().any(|s| matches!(s, Step::Mount { .. })) {
        let last = steps.iter().rev().find_map(|s| if let Step::Mapping(m) = s { Some(&m.name) } else { None });
        let last = last.ok_or_else(|| internal("no mapping"))?;
        let _ = writeln!(w, "printf '%s is open read-only; when done: ' {}", quote(&format!("/dev/mapper/{last}")));
    }
    remove.reverse();
    let _ = writeln!(w, "printf '%s\\n' {}", quote(&remove.join("; ")));
    Ok(s)
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;

#[cfg(any(test, fuzzing))]
#[path = "recover_check.rs"]
pub(crate) mod check;
