//! PURE: the layout as the ordered [`Step`]s setup takes: headers, mappings, swap, mkfs, the mount
//! and its binds (now, or by units after the real root's own mounts), and the failure policy's.

use std::path::{Path, PathBuf};

use super::layout::{uuid, Slice, Volume, FS_LABEL};
use super::status_step;
use super::systemd::{
    bind_mount_unit, guard_logind_dropin, guard_unit, skeleton_service, tmpfs_mount_unit, LaterBind,
    GUARD_LOGIND_DROPIN, GUARD_UNIT,
};
use crate::config::{CipherSpec, Fs, OnFailure};
use crate::disk::{DirState, Mount, NewRoot};
use crate::dm::{Crypt as CryptTarget, CryptKey, Dev, Linear, Striped, Target, TargetKind};
use crate::header::{self, Header, Identity};
use crate::paths::under;
use crate::step::{Mapping, Step, MOUNT_OPTIONS};
use crate::units::{DevNo, Sectors};

/// A mapping of one target over `len` sectors, named `name` with the uuid of its `role`; no key.
fn mapping(role: &str, name: &str, len: Sectors, kind: TargetKind) -> Mapping {
    Mapping {
        name: name.to_string(),
        uuid: uuid(role, name),
        table: vec![Target { start: Sectors(0), len, kind }],
        key: None,
        kernel: Vec::new(),
        escrow: Vec::new(),
        read_only: false,
    }
}

pub(super) fn linear_mapping(role: &str, slice: &Slice, below: &str) -> Step {
    let kind = TargetKind::Linear(Linear { dev: Dev::Mapping(below.to_string()), offset: slice.start });
    Step::Mapping(mapping(role, &slice.name, slice.len, kind))
}

/// The header of member `index` of the volume.
pub(super) fn member_header(v: &Volume, name: &str, index: usize, identity: Option<Identity>) -> Header {
    let id = identity.unwrap_or(Identity { volume_id: [0; 16], boot_id: [0; 16], now: 0 });
    let extent = |s: &Option<Slice>| s.as_ref().map_or((Sectors(0), Sectors(0)), |s| (s.start, s.len));
    Header {
        volume_id: id.volume_id,
        boot_id: id.boot_id,
        created: id.now,
        // At most header::MAX_MEMBERS (64) members: plan refuses the rest.
        member: u32::try_from(index).unwrap_or(u32::MAX),
        members: u32::try_from(v.members.len()).unwrap_or(u32::MAX),
        data_offset: header::RESERVED,
        chunk: v.stripe.as_ref().map_or(Sectors(0), |s| s.chunk),
        member_len: v.stripe.as_ref().map_or(v.crypt.len, |s| s.per_disk),
        volume_len: v.crypt.len,
        key_bits: v.crypt.key_bits,
        sector_size: v.crypt.sector_size,
        swap: extent(&v.swap),
        data: if v.data.is_some() { extent(&v.data) } else { (Sectors(0), v.crypt.len) },
        fs: v.fs.name().to_string(),
        cipher: v.crypt.cipher.clone(),
        name: name.to_string(),
        escrow: (0, 0),
        serials: v.members.iter().map(|m| m.serial.clone()).collect(),
    }
}

/// The steps that make the volume, in order: the headers first (so that even an interrupted setup
/// leaves the disks recognisably ours), then the mappings, swap, file system, directories, mounts
/// and binds, and the status.
pub(super) fn volume_steps(v: &Volume, newroot: &NewRoot, name: &str, identity: Option<Identity>) -> Vec<Step> {
    let headers = v.members.iter().enumerate().map(|(i, m)| crate::step::HeaderWrite {
        device: m.path.clone(),
        header: Box::new(member_header(v, name, i, identity)),
        write: m.write,
    });
    let mut steps = vec![Step::Headers(headers.collect())];
    let below = match &v.stripe {
        // A volume has at least one member (volume() refuses none); without: 0:0, refused at load.
        None => Dev::Num(v.members.first().map_or(DevNo { major: 0, minor: 0 }, |m| m.dev)),
        Some(st) => {
            let kind = TargetKind::Striped(Striped {
                chunk: st.chunk,
                devs: v.members.iter().map(|m| (Dev::Num(m.dev), header::RESERVED)).collect(),
            });
            steps.push(Step::Mapping(mapping("STRIPE", &st.name, st.len, kind)));
            Dev::Mapping(st.name.clone())
        }
    };
    // On one disk the crypt mapping starts after the reserved area; over a stripe at its start.
    let offset = if v.stripe.is_some() { Sectors(0) } else { header::RESERVED };
    let c = &v.crypt;
    let kind = TargetKind::Crypt(CryptTarget {
        cipher: c.cipher.clone(),
        key: CryptKey::Placeholder { bytes: c.key_bits as usize / 8 },
        iv_offset: Sectors(0),
        dev: below,
        offset,
        options: c.flags.clone(),
    });
    steps.push(Step::Mapping(Mapping {
        key: Some((c.key_path, c.key_bits)),
        kernel: CipherSpec::parse(&c.cipher).map(|s| s.kernel_algorithms()).unwrap_or_default(),
        escrow: v.escrow.clone(),
        ..mapping("CRYPT", &c.name, c.len, kind)
    }));
    if !v.escrow.is_empty() {
        steps.push(Step::Escrow {
            members: v
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.path.clone(), Box::new(member_header(v, name, i, identity))))
                .collect(),
            file: PathBuf::from(crate::paths::ESCROW_PATH),
            recipients: v.escrow.iter().map(crate::age::Recipient::describe).collect(),
        });
    }
    if let (Some(sw), Some(data)) = (&v.swap, &v.data) {
        steps.push(linear_mapping("SWAP", sw, &c.name));
        steps.push(linear_mapping("DATA", data, &c.name));
        steps.push(Step::Swap { device: sw.name.clone(), len: sw.len.bytes() });
    }
    if v.fs != Fs::None {
        let device = format!("/dev/mapper/{}", v.data_name());
        let args: &[&str] = match v.fs {
            // Lazy init: without /sys/fs/ext4/features/lazy_itable_init readable, mke2fs would write
            // every inode table (~18 GiB per TiB); the disks arrive trimmed, so no discard. What
            // mke2fs still writes grows with the size, mostly group descriptor copies: a backup in
            // every group numbered 1 or a power of 3, 5 or 7, and reserved blocks beside each for
            // growth (resize_inode). The volume never grows and lives one boot: sparse_super2 keeps
            // no backup at all (num_backup_sb=0: only a read-only `recover` ever mounts it again),
            // ^resize_inode no reserve, and -G 4096 puts the bitmaps of 4096 groups (512 GiB) side
            // by side, written in few large writes (the default 16 made mke2fs 5-15 times slower at
            // 2 to 16 TiB; packed_meta_blocks, all metadata at the start, slower still). Measured
            // (docs/performance.md, mke2fs 1.47.0 on sparse files): 2 TiB 28.2 -> 2.2 MiB written,
            // 16 TiB 232 -> 12.6 MiB. Needs e2fsprogs 1.43 and Linux 3.16.
            Fs::Ext4 => &[
                "-q",
                "-F",
                "-L",
                FS_LABEL,
                "-O",
                "sparse_super2,^resize_inode",
                "-E",
                "nodiscard,lazy_itable_init=1,lazy_journal_init=1,num_backup_sb=0",
                "-G",
                "4096",
            ],
            Fs::Xfs => &["-q", "-f", "-K", "-L", FS_LABEL],
            Fs::None => &[], // not reached: no mkfs without a file system
        };
        // The program is the one `ephemcrypt needs` names for the image.
        let argv = v.fs.programs().iter().take(1).chain(args).map(|a| a.to_string()).chain([device]).collect();
        steps.push(Step::Mkfs { fs: v.fs, argv });
        let mount = under(&newroot.path, &v.mount);
        let dirs: Vec<PathBuf> = std::iter::once(&v.mount).chain(&v.binds).cloned().collect();
        steps.extend(mkdir_steps(newroot, &dirs));
        steps.extend(mount_steps(v.data_name(), v.fs, &mount, &v.mount, newroot, &v.binds));
    }
    if v.guard && newroot.systemd {
        steps.push(Step::Config { path: PathBuf::from(GUARD_LOGIND_DROPIN), text: guard_logind_dropin() });
        steps.push(Step::Unit { name: GUARD_UNIT.into(), text: guard_unit(), wanted_by: "multi-user.target".into() });
    }
    steps.push(status_step());
    steps
}

/// The options of a bind onto the volume: `bind`, the volume's own restrictions (mount(8) remounts
/// a bind with exactly the flags it is given, so they are named again), and the restrictions of
/// the mount of the root's fstab the target would otherwise be on (`noexec` of a CIS /var/log,
/// `nosuid,nodev` of its /var): `by`, at the target or above it; `ro` only when `by` is the
/// target itself (a read-only /var does not make its /var/log read-only for logs).
pub(super) fn bind_options(target: &Path, by: &Path, fstab: &[String]) -> Vec<String> {
    let mut options = vec!["bind".to_string()];
    let mut add = |o: &str| {
        if !options.iter().any(|x| x == o) {
            options.push(o.to_string());
        }
    };
    MOUNT_OPTIONS.iter().for_each(|o| add(o));
    let kept: &[&str] = if by == target { &["noexec", "ro"] } else { &["noexec"] };
    fstab.iter().filter(|o| kept.contains(&o.as_str())).for_each(|o| add(o));
    options
}

/// The directory above `target` (`/` for a top-level one), whose mounts come first.
pub(super) fn parent_of(target: &Path) -> &Path {
    target.parent().unwrap_or(Path::new("/"))
}

/// A bind target that a mount of the root's fstab is at or above (`by`): not bound in the
/// initramfs, where that mount would hide the bind after switch_root and systemd, finding the
/// path mounted, would take the target's mount unit for active and never mount it again. Instead,
/// its directory on the volume (made now, parents first; the volume is new), a service that copies
/// the real root's skeleton of it onto the volume once the target's parents are mounted, and a
/// mount unit named after the target that binds it there. Written to /run/systemd/system, which
/// systemd reads before /run/systemd/generator, that unit takes the place of the fstab
/// generator's unit for the same path (a separate file system configured at the target is then
/// not mounted); systemd orders it after the mounts of its parent paths (and the volume's mount,
/// named in `RequiresMountsFor=`), and every mount below it after it.
pub(super) fn later_bind_steps(
    volume_mount: &Path,
    mount: &Path,
    target: &Path,
    by: &Path,
    fstab: &[String],
) -> Vec<Step> {
    let mut steps = Vec::new();
    let unit = format!("{}.mount", crate::paths::systemd_escape_path(target));
    let source = under(volume_mount, target);
    let parent = parent_of(target);
    let rel = target.strip_prefix("/").unwrap_or(target);
    let mut dir = mount.to_path_buf();
    for c in rel.components() {
        dir.push(c);
        steps.push(Step::Mkdir { path: dir.clone() });
    }
    let service = format!("ephemcrypt-skeleton-{}.service", crate::paths::systemd_escape_path(target));
    let bind = LaterBind { target, parent, volume_mount, source: &source, mount_unit: &unit, service: &service };
    steps.push(Step::Unit { name: service.clone(), text: skeleton_service(&bind), wanted_by: unit.clone() });
    let why = if by == target {
        format!("in place of the fstab's own mount of {} (see plan)", target.display())
    } else {
        format!("after {} (a separate mount in /etc/fstab) that would hide a bind made earlier", by.display())
    };
    let options = bind_options(target, by, fstab);
    let text = bind_mount_unit(&bind, &why, &options, fstab);
    steps.push(Step::Unit { name: unit, text, wanted_by: "local-fs.target".into() });
    steps
}

/// Mount the file system on the mapping `data` at `mount` (`volume_mount` in the real root), then
/// bind each target onto it: now, in the initramfs, where no mount of the root's fstab is at or
/// above the target; else by a unit after the real root's mounts ([`later_bind_steps`]; systemd
/// roots, the others cannot have it: see [`Plan::exposed`]).
pub(super) fn mount_steps(
    data: &str,
    fs: Fs,
    mount: &Path,
    volume_mount: &Path,
    newroot: &NewRoot,
    binds: &[PathBuf],
) -> Vec<Step> {
    let mut steps = vec![Step::Mount {
        source: PathBuf::from("/dev/mapper").join(data),
        target: mount.to_path_buf(),
        fs,
        options: crate::step::new_volume_options(fs),
    }];
    for b in binds.iter().filter(|b| newroot.shadowed_by(b).is_none()) {
        steps.push(Step::Bind { source: under(mount, b), target: under(&newroot.path, b) });
    }
    if newroot.systemd {
        for b in binds {
            if let Some(by) = newroot.shadowed_by(b) {
                for step in later_bind_steps(volume_mount, mount, b, by, &newroot.fstab_options(by)) {
                    // Directories shared by two targets (/var for /var/log and /var/tmp): once.
                    if !steps.contains(&step) {
                        steps.push(step);
                    }
                }
            }
        }
    }
    steps
}

/// What becomes of each mount of the root's fstab that is at, above or inside a bind target: one
/// line each, for `plan` (and its JSON).
pub(super) fn fstab_notes(binds: &[PathBuf], newroot: &NewRoot) -> Vec<String> {
    let list = |v: &[&PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let mut notes = Vec::new();
    for (m, options) in &newroot.fstab {
        let under_it: Vec<&PathBuf> = binds.iter().filter(|b| b.starts_with(m) && *b != m).collect();
        let holder: Vec<&PathBuf> = binds.iter().filter(|b| m.starts_with(b) && *b != m).collect();
        let md = m.display();
        let note = if binds.contains(m) && newroot.systemd {
            let unit = format!("{}.mount", crate::paths::systemd_escape_path(m));
            format!(
                "{md}: its own file system in /etc/fstab is NOT mounted in this boot: {unit} in /run/systemd/system \
                 takes the place of the fstab's unit of that name and binds the volume's {md} there after {p}, with \
                 the options {o} (mounted, that file system would hide the volume; bound in the initramfs, the \
                 volume would be hidden by the mounts of {p}); what that file system holds stays on it, untouched",
                p = parent_of(m).display(),
                o = bind_options(m, m, options).join(",")
            )
        } else if binds.contains(m) {
            format!(
                "{md}: its own file system in /etc/fstab is mounted there after switch_root; the real root does not \
                 run systemd, so nothing binds the volume again: {md} is NOT on the volume"
            )
        } else if !under_it.is_empty() && newroot.systemd {
            format!(
                "{md}: mounted as /etc/fstab says; {t} bound onto the volume after it (units named after them), \
                 with its options ({o})",
                t = list(&under_it),
                o = options.join(",")
            )
        } else if !under_it.is_empty() {
            format!(
                "{md}: mounted as /etc/fstab says after switch_root, over {t}; the real root does not run systemd, \
                 so nothing binds them again: they are NOT on the volume",
                t = list(&under_it)
            )
        } else if !holder.is_empty() {
            format!(
                "{md}: mounted as /etc/fstab says, over the volume's {md} (inside bind target {t}): what is written \
                 there stays on that file system, unencrypted by ephemcrypt and kept across reboots (audit logs, for \
                 one); add {md} to 'bind' to have it on the volume instead, gone at every reboot",
                t = list(&holder)
            )
        } else {
            continue;
        };
        notes.push(note);
    }
    notes
}

/// Create the directories of `dirs` (inside the new root) that are missing, one step per directory,
/// parents first and each once, so that an undo removes exactly what was made. Those on a
/// read-only mount (the root as dracut and most cloud images mount it) are made in a window where
/// that mount is writable: remount read-write, mkdir, remount read-only; each its own undoable step.
pub(super) fn mkdir_steps(newroot: &NewRoot, dirs: &[PathBuf]) -> Vec<Step> {
    let mut read_only: Vec<Mount> = Vec::new();
    let mut missing: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if let DirState::Missing { depth, read_only: ro } = newroot.state(d) {
            let chain = d.ancestors().take(depth).collect::<Vec<_>>();
            for dir in chain.into_iter().rev() {
                if !missing.iter().any(|m| m == dir) {
                    missing.push(dir.to_path_buf());
                }
            }
            if let Some(m) = ro.filter(|m| !read_only.iter().any(|r| r.target == m.target)) {
                read_only.push(m);
            }
        }
    }
    let remount =
        |m: &Mount, ro: bool| Step::Remount { path: m.target.clone(), read_only: ro, options: m.kept_flags() };
    let mut steps: Vec<Step> = read_only.iter().map(|m| remount(m, false)).collect();
    steps.extend(missing.iter().map(|d| Step::Mkdir { path: under(&newroot.path, d) }));
    steps.extend(read_only.iter().rev().map(|m| remount(m, true)));
    steps
}

/// The failure policy as steps, taken after everything made was undone: `tmpfs` covers every bind
/// target the new root has, so nothing meant for the volume lands unencrypted on a disk (a target
/// the root lacks holds nothing yet); then the status is written. A target that a mount of the
/// root's fstab would hide gets its tmpfs from a unit after that mount (systemd roots; others
/// cannot have it, see [`Plan::exposed`]).
pub(super) fn fallback(policy: OnFailure, binds: &[PathBuf], newroot: &NewRoot) -> Vec<Step> {
    let mut steps = Vec::new();
    if policy == OnFailure::Tmpfs {
        for b in binds {
            match newroot.shadowed_by(b) {
                Some(by) if newroot.systemd => steps.push(tmpfs_unit(b, by, &newroot.fstab_options(by))),
                Some(_) => {}
                None if newroot.state(b) == DirState::Present => {
                    steps.push(Step::Tmpfs { target: under(&newroot.path, b) })
                }
                None => {}
            }
        }
    }
    steps.push(status_step());
    steps
}

/// A tmpfs over `target`, mounted by the real root's systemd after its parents (the failure
/// policy for a target that the mount `by` of the fstab is at or above; a unit of the target's
/// name takes the place of the fstab's own, as [`later_bind_steps`] says), with the restrictions
/// of `by` (`fstab`, its options). Mode 1777 for a directory named tmp, 0755 otherwise: the
/// directory itself is on a disk not mounted yet.
pub(super) fn tmpfs_unit(target: &Path, by: &Path, fstab: &[String]) -> Step {
    let mode = if target.file_name().is_some_and(|n| n == "tmp") { "1777" } else { "0755" };
    let mut options: Vec<String> = bind_options(target, by, fstab).into_iter().skip(1).collect();
    options.retain(|o| o != "ro");
    let text = tmpfs_mount_unit(target, parent_of(target), by, &options, mode);
    Step::Unit {
        name: format!("{}.mount", crate::paths::systemd_escape_path(target)),
        text,
        wanted_by: "local-fs.target".into(),
    }
}
