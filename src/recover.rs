//! `ephemcrypt recover`: open an earlier boot's volume with its escrow, read-only, or print a
//! script that does the same with stock tools (age, dmsetup, cryptsetup).
//!
//! The member disks are found by their headers (grouped by volume id, put in stripe order by
//! member index); the escrow is read from the reserved area after a member's header and decrypted
//! with an age X25519 identity or an OpenSSH ed25519 key; the stripe, crypt and data mappings are
//! made read-only under `<name>-recovered…` names (the running boot's own volume may have the
//! volume's name), and `--mount` mounts the file system read-only without replaying its journal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::age::{self, Identity};
use crate::config::{Fs, Selector};
use crate::disk::{Disk, Probe};
use crate::dm::{Crypt as CryptTarget, CryptKey, Dev, Linear, Striped, Target, TargetKind};
use crate::error::{Error, Result};
use crate::escape::{Esc, EscPath};
use crate::header::{self, Header};
use crate::host::Host;
use crate::key::Key;
use crate::system::System;
use crate::units::{DevNo, Sectors};

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

    /// The names of the recovery mappings: stripe (several disks), crypt, data (with swap).
    fn names(&self) -> (String, String, String) {
        let base = format!("{}-recovered", self.header().name);
        (format!("{base}-stripe"), base.clone(), format!("{base}-data"))
    }

    fn describe(&self) -> String {
        let h = self.header();
        format!("volume '{}' {} created {}", Esc(&h.name), h.volume_id_hex(), header::utc(h.created))
    }
}

/// Find the volume: every disk (or those `disks` selects) with an ephemcrypt header, grouped by
/// volume; one volume, all its members present, each header valid. Errors say what was found.
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
    volumes.dedup();
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
    let count = found[0].header.members as usize;
    found.sort_by_key(|m| m.header.member);
    let mut members: Vec<Member> = Vec::new();
    let mut missing = Vec::new();
    for w in found.windows(2) {
        if w[0].header.member == w[1].header.member {
            return Err(invalid(format!(
                "{} and {} both carry member {} of {count} of the volume (a copied disk?): choose with --disks",
                EscPath(&w[0].disk.path),
                EscPath(&w[1].disk.path),
                w[0].header.member + 1
            )));
        }
    }
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
        return Err(invalid(format!("{} is missing: {}{extra}", Found { members }.describe(), missing.join(", "))));
    }
    let first = &members[0].header;
    if members.iter().any(|m| {
        let h = &m.header;
        (h.chunk, h.volume_len, &h.cipher, h.key_bits, h.sector_size, h.data)
            != (first.chunk, first.volume_len, &first.cipher, first.key_bits, first.sector_size, first.data)
    }) {
        return Err(invalid("the members' headers disagree about the layout".into()));
    }
    Ok(Found { members })
}

fn invalid(why: String) -> Error {
    Error::Recover(why)
}

/// The escrow blob of the volume: from the first member whose reserved area holds it.
pub(crate) fn escrow(host: &Host, found: &Found) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let h = found.header();
    if h.escrow.1 == 0 {
        return Err(invalid(format!(
            "{} was made without escrow (no 'escrow' recipients then): its key is gone, nothing can open it",
            found.describe()
        )));
    }
    let m = &found.members[0];
    let path = host.path(&m.disk.path);
    let file = std::fs::File::open(&path).map_err(|e| Error::os("open", path.display(), e))?;
    let mut blob = vec![0u8; m.header.escrow.1 as usize];
    file.read_exact_at(&mut blob, u64::from(m.header.escrow.0))
        .map_err(|e| Error::os("read the escrow from", path.display(), e))?;
    Ok(blob)
}

/// The key, from the escrow with the identity file's identities.
pub(crate) fn key(blob: &[u8], identity_file: &Path, found: &Found) -> Result<Key> {
    let text = std::fs::read_to_string(identity_file)
        .map_err(|e| Error::os("read identity file", identity_file.display(), e))?;
    let ids: Vec<Identity> = age::parse_identities(&text).map_err(|why| Error::Invalid {
        what: format!("identity file {}", identity_file.display()),
        expected: "an age identity or an unencrypted OpenSSH ed25519 private key",
        found: why,
    })?;
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

/// The recovery mappings' tables (the key as a placeholder in the crypt table).
fn tables(found: &Found) -> Vec<(String, Vec<Target>)> {
    let h = found.header();
    let (stripe, crypt, data) = found.names();
    let mut out = Vec::new();
    let below = if found.members.len() > 1 {
        let devs = found.members.iter().map(|m| (Dev::Num(m.disk.dev), h.data_offset)).collect();
        let kind = TargetKind::Striped(Striped { chunk: h.chunk, devs });
        out.push((stripe.clone(), vec![Target { start: Sectors(0), len: h.volume_len, kind }]));
        (Dev::Mapping(stripe), Sectors(0))
    } else {
        (Dev::Num(found.members[0].disk.dev), h.data_offset)
    };
    let kind = TargetKind::Crypt(CryptTarget {
        cipher: h.cipher.clone(),
        key: CryptKey::Placeholder { bytes: h.key_bits as usize / 8 },
        iv_offset: Sectors(0),
        dev: below.0,
        offset: below.1,
        options: if h.sector_size == 512 { Vec::new() } else { vec![format!("sector_size:{}", h.sector_size)] },
    });
    out.push((crypt.clone(), vec![Target { start: Sectors(0), len: h.volume_len, kind }]));
    if h.swap.1 .0 > 0 {
        let kind = TargetKind::Linear(Linear { dev: Dev::Mapping(crypt), offset: h.data.0 });
        out.push((data, vec![Target { start: Sectors(0), len: h.data.1, kind }]));
    }
    out
}

/// Open the volume read-only: the mappings (the key through the keyring, as setup loads it), then
/// with `mount` the file system, read-only without replaying its journal. Returns what to tell
/// the operator. On a failure, what was made is removed.
pub(crate) fn open<S: System>(found: &Found, key: Key, sys: &mut S, mount: Option<&Path>) -> Result<String> {
    let mut made: Vec<String> = Vec::new();
    let r = open_steps(found, key, sys, mount, &mut made);
    if r.is_err() {
        for name in made.iter().rev() {
            if let Err(e) = sys.dm_remove(name).and_then(|()| sys.remove_node(name)) {
                log::error!("undo: {e}");
            }
        }
    }
    r
}

fn open_steps<S: System>(
    found: &Found,
    key: Key,
    sys: &mut S,
    mount: Option<&Path>,
    made: &mut Vec<String>,
) -> Result<String> {
    let h = found.header();
    let mut devs: std::collections::BTreeMap<String, DevNo> = std::collections::BTreeMap::new();
    let mut key = Some(key);
    for (name, table) in tables(found) {
        let table: Vec<Target> = table
            .iter()
            .map(|t| t.with_devices(&|n| devs.get(n).copied()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid(format!("table of {name}"), "mappings made earlier", e.0))?;
        let dev = sys.dm_create(&name, &format!("EPHEMCRYPT-RECOVERED-{name}"))?;
        made.push(name.clone());
        if let Some(bytes) = table.iter().find_map(Target::key_placeholder) {
            let k = key.take().expect("one crypt mapping");
            let (serial, description) = sys.add_logon_key(&format!("ephemcrypt:{name}"), &k)?;
            drop(k);
            let logon = CryptKey::Logon { bytes, description };
            let table: Vec<Target> = table.iter().map(|t| t.with_key(logon.clone())).collect();
            let loaded = sys.dm_load(&name, &table, true, true);
            let invalidated = sys.invalidate_key(serial);
            loaded?;
            invalidated?;
        } else {
            sys.dm_load(&name, &table, false, true)?;
        }
        sys.dm_resume(&name)?;
        sys.make_node(&name, dev)?;
        devs.insert(name, dev);
    }
    let fs_dev = PathBuf::from("/dev/mapper").join(&made[made.len() - 1]);
    let mut out = format!("{}: opened read-only as {}\n", found.describe(), EscPath(&fs_dev));
    let fs = match h.fs.as_str() {
        "ext4" => Some((Fs::Ext4, "noload")),
        "xfs" => Some((Fs::Xfs, "norecovery")),
        _ => None,
    };
    if let (Some(dir), Some((fs, no_replay))) = (mount, fs) {
        sys.mount(&fs_dev, dir, fs, &["ro".to_string(), no_replay.to_string()])?;
        let _ = writeln!(out, "mounted read-only ({}, {no_replay}) at {}", fs.name(), EscPath(dir));
        let _ = writeln!(out, "when done: umount {}; dmsetup remove {}", EscPath(dir), Esc(&reversed(made)));
    } else {
        let _ = writeln!(out, "when done: dmsetup remove {}", Esc(&reversed(made)));
    }
    Ok(out)
}

fn reversed(names: &[String]) -> String {
    names.iter().rev().cloned().collect::<Vec<_>>().join(" ")
}

/// A POSIX shell script that opens the volume with stock tools: the escrow read out of a
/// member's reserved area, `age -d`, `dmsetup create --readonly` for the stripe (and the data
/// slice), `cryptsetup open --readonly --type plain` with the volume's cipher, key size, sector
/// size and offset (the key from a file: from stdin cryptsetup would hash it), a read-only mount.
/// Disks are found by serial when it runs: kernel names change between boots.
pub(crate) fn commands(found: &Found) -> String {
    let h = found.header();
    let (stripe, crypt, data) = found.names();
    let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/sh");
    let _ = writeln!(s, "# Open ephemcrypt {} read-only with stock tools:", found.describe());
    let _ = writeln!(s, "# age, dmsetup, cryptsetup. Usage: sh THIS-SCRIPT IDENTITY-FILE [MOUNT-DIR]");
    let _ = writeln!(s, "set -eu");
    let _ = writeln!(s, "identity=${{1:?usage: sh $0 IDENTITY-FILE [MOUNT-DIR]}}");
    let _ = writeln!(s, "mnt=${{2:-}}");
    let _ = writeln!(s, "umask 077");
    let _ = writeln!(s, "modprobe -a dm_mod dm_crypt 2>/dev/null || true");
    // The key goes to a file for cryptsetup: in memory (/run, /dev/shm), never on a disk.
    let _ = writeln!(s, "work=$(mktemp -d -p /run 2>/dev/null || mktemp -d -p /dev/shm)");
    let _ = writeln!(s, "trap 'rm -rf \"$work\"' EXIT");
    let _ = writeln!(s, "# dev_of SERIAL: the disk with that serial now");
    let _ = writeln!(
        s,
        "dev_of() {{\n\tfor d in /sys/block/*; do\n\t\tif [ \"$(sed 's/ *$//' \"$d/device/serial\" 2>/dev/null)\" = \"$1\" ]; then \
         echo \"/dev/${{d##*/}}\"; return; fi\n\tdone\n\techo \"no disk with serial $1\" >&2\n\texit 1\n}}"
    );
    for (i, m) in found.members.iter().enumerate() {
        let _ = writeln!(s, "m{i}=$(dev_of {})", q(&m.header.serials[i]));
    }
    let (at, len) = found.members[0].header.escrow;
    let _ = writeln!(s, "# The escrow: {len} bytes at byte {at} of member 1 (an age file).");
    let _ = writeln!(s, "dd if=\"$m0\" of=\"$work/escrow.age\" bs=1 skip={at} count={len} 2>/dev/null");
    let _ = writeln!(s, "age -d -i \"$identity\" -o \"$work/key\" \"$work/escrow.age\"");
    let _ = writeln!(s, "test \"$(wc -c <\"$work/key\")\" -eq {}", h.key_bits / 8);
    let below = if found.members.len() > 1 {
        let devs: Vec<String> = (0..found.members.len()).map(|i| format!("$m{i} {}", h.data_offset.0)).collect();
        let _ = writeln!(
            s,
            "dmsetup create --readonly {stripe} --table \"0 {} striped {} {} {}\"",
            h.volume_len.0,
            found.members.len(),
            h.chunk.0,
            devs.join(" ")
        );
        (format!("/dev/mapper/{stripe}"), 0)
    } else {
        ("$m0".to_string(), h.data_offset.0)
    };
    let _ = writeln!(
        s,
        "cryptsetup open --readonly --type plain --cipher {} --key-size {} --sector-size {} --offset {} --skip 0 \
         --size {} --key-file \"$work/key\" \"{}\" {crypt}",
        q(&h.cipher),
        h.key_bits,
        h.sector_size,
        below.1,
        h.volume_len.0,
        below.0
    );
    let mut fs_dev = format!("/dev/mapper/{crypt}");
    let mut remove = vec![format!("cryptsetup close {crypt}")];
    if h.swap.1 .0 > 0 {
        let _ = writeln!(
            s,
            "dmsetup create --readonly {data} --table \"0 {} linear /dev/mapper/{crypt} {}\"",
            h.data.1 .0, h.data.0 .0
        );
        fs_dev = format!("/dev/mapper/{data}");
        remove.insert(0, format!("dmsetup remove {data}"));
    }
    if found.members.len() > 1 {
        remove.push(format!("dmsetup remove {stripe}"));
    }
    let no_replay = if h.fs == "xfs" { "norecovery" } else { "noload" };
    let _ = writeln!(s, "if [ -n \"$mnt\" ]; then");
    let _ = writeln!(s, "\tmount -t {} -o ro,{no_replay} {fs_dev} \"$mnt\"", h.fs);
    let _ = writeln!(s, "\techo \"mounted read-only at $mnt; when done: umount $mnt; {}\"", remove.join("; "));
    let _ = writeln!(s, "else");
    let _ = writeln!(s, "\techo \"{fs_dev} is open read-only; when done: {}\"", remove.join("; "));
    let _ = writeln!(s, "fi");
    s
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
