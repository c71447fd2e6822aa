//! Whether each bind target shows the volume now: a check of what is visible, not of what setup
//! did. After switch_root the real root mounts its fstab, and anything mounted later (a unit, an
//! administrator) can land on a bind target or on a directory above it, hiding the volume there.
//!
//! `ephemcrypt status` (and so `check`, run by ephemcrypt-check.service after local-fs.target,
//! and the Prometheus metrics) computes this each time from PID 1's mountinfo, as it checks
//! the mappings against the kernel: nothing is written, so nothing goes stale and the sandboxed
//! check unit needs no writable path; a mount made after the check still turns the next `status`
//! to `degraded`.
//!
//! The mount visible at a path is found as the kernel's path walk finds it: from the root mount,
//! for each leading part of the path, into the mount attached at exactly that part on the mount
//! reached so far (and into mounts stacked on it). A mount is "at" /var/log in mountinfo although
//! a later mount at /var hides it: the last line for the path alone cannot tell (that is how a
//! hidden bind once passed for a live one); the parent ids can.

use std::path::{Path, PathBuf};

use crate::escape::Esc;
use crate::status::{SetupResult, Status};
use crate::units::DevNo;

/// Parse /proc/self/mountinfo; malformed lines are skipped.
pub(crate) use crate::disk::parse_mountinfo as parse;
/// One line of /proc/self/mountinfo (disk.rs reads it: one parser), with what the walk needs:
/// the mount's id and parent id, device, root and mount point.
pub(crate) use crate::disk::Mount as Entry;

/// The mount visible at `path` (absolute), as the path walk finds it; `None` without a root mount.
pub(crate) fn visible<'a>(entries: &'a [Entry], path: &Path) -> Option<&'a Entry> {
    // The root of this view: a mount at / whose parent is not in the table.
    let mut cur = entries.iter().find(|e| e.target == Path::new("/") && !entries.iter().any(|p| p.id == e.parent))?;
    let mut prefix = PathBuf::from("/");
    let mut parts = path.components().skip(1);
    loop {
        // Into whatever is mounted at `prefix` on the mount reached, and on that, and so on. Of
        // two at the same place on the same parent (propagation can make that), the later line.
        while let Some(next) = entries.iter().rev().find(|e| e.parent == cur.id && e.id != cur.id && e.target == prefix)
        {
            cur = next;
        }
        match parts.next() {
            Some(c) => prefix.push(c),
            None => return Some(cur),
        }
    }
}

/// Why `target` does not show the volume's directory of the same path (the volume's file system
/// on device `volume`, bound there), or `None` when it does.
pub(crate) fn why_not(entries: &[Entry], volume: DevNo, target: &Path) -> Option<String> {
    let t = target.display();
    let Some(v) = visible(entries, target) else {
        return Some(format!("{t}: no root mount in /proc/self/mountinfo to check it against"));
    };
    let on_volume = v.dev == Some(volume);
    if on_volume && v.target == target && v.root == target {
        return None;
    }
    // The source, type and paths are another program's (a FUSE file system names its own): shown
    // escaped.
    let show = |p: &Path| Esc(&p.to_string_lossy()).to_string();
    let dev = v.dev.map_or_else(|| "?".to_string(), |d| d.to_string());
    let what = format!("{} ({}, {dev}) mounted on {}", Esc(&v.source), Esc(&v.fstype), show(&v.target));
    let bound = entries.iter().any(|e| e.target == target && e.dev == Some(volume));
    Some(if on_volume && v.target == target {
        format!("{t} shows {} of the volume, not {t}", show(&v.root))
    } else if v.target == target {
        format!("{t} is not on the volume: {what} over it")
    } else if bound {
        format!("{t} is not on the volume: its bind is hidden by {what}")
    } else {
        format!("{t} is not on the volume: it lies on {what}")
    })
}

/// The verdicts on every bind target setup put on the volume, from the text of
/// /proc/self/mountinfo; empty when each shows the volume.
pub(crate) fn hidden(mountinfo: &str, volume: DevNo, targets: &[PathBuf]) -> Vec<String> {
    let entries = parse(mountinfo);
    targets.iter().filter_map(|t| why_not(&entries, volume, t)).collect()
}

/// The mount table the system's services and users see: PID 1's (/proc/1/mountinfo), not that of
/// the process that checks, which a sandboxed unit (`PrivateTmp=`, `ProtectSystem=`) sees through
/// mounts of its own; this process's where PID 1's cannot be read.
pub(crate) fn read(host: &crate::host::Host) -> Result<String, String> {
    let init = host.path("/proc/1/mountinfo");
    std::fs::read_to_string(&init).or_else(|first| {
        let own = host.path("/proc/self/mountinfo");
        std::fs::read_to_string(&own)
            .map_err(|e| format!("read {}: {first}; read {}: {e}", init.display(), own.display()))
    })
}

/// Check a status whose volume is mounted against what is visible (`mountinfo`: the text of
/// /proc/self/mountinfo, or why it could not be read): every bind target that does not show the
/// volume is named in `hidden`, and an `ok` turns `degraded`. A status without a volume, or from
/// a version that did not record its bind targets, is left as it is.
pub(crate) fn check(status: &mut Status, mountinfo: Result<String, String>) {
    if status.mount.is_none() || status.targets.is_empty() {
        return;
    }
    let Some(dev) =
        status.data_mapping.as_ref().and_then(|d| status.mappings.iter().find(|m| &m.name == d)).map(|m| m.dev)
    else {
        return;
    };
    status.hidden = match mountinfo {
        Ok(text) => hidden(&text, dev, &status.targets),
        Err(why) => vec![format!("the bind targets could not be checked: {why}")],
    };
    if !status.hidden.is_empty() && status.result == SetupResult::Ok {
        status.result = SetupResult::Degraded;
        status.reason = format!("{} (setup said: {})", status.hidden.join("; "), status.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOLUME: DevNo = DevNo { major: 253, minor: 3 };

    /// The CIS boot of issue 20 before the fix: the initramfs bound /var/log and /var/tmp (ids
    /// 60, 61) on the root (22); after switch_root the fstab's /var (70) went on top of the root's
    /// /var and hid them. The last lines at /var/log and /var/tmp are the binds all the same.
    const HIDDEN_BY_VAR: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw
59 22 253:3 / /mnt/ephemcrypt rw,nosuid,nodev,relatime shared:30 - ext4 /dev/mapper/ephemcrypt-data rw
60 22 253:3 /var/log /var/log rw,nosuid,nodev,relatime shared:30 - ext4 /dev/mapper/ephemcrypt-data rw
61 22 253:3 /var/tmp /var/tmp rw,nosuid,nodev,relatime shared:30 - ext4 /dev/mapper/ephemcrypt-data rw
62 22 253:3 /tmp /tmp rw,nosuid,nodev,relatime shared:30 - ext4 /dev/mapper/ephemcrypt-data rw
70 22 254:16 / /var rw,nosuid,nodev,relatime shared:40 - ext4 /dev/vdb rw
71 70 254:32 / /var/log rw,nosuid,nodev,noexec,relatime shared:41 - ext4 /dev/vdc rw
";

    /// After the fix: /var and the binds by units on it; /var/log/audit from the fstab on the bind.
    const BOUND_AFTER_VAR: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
59 22 253:3 / /mnt/ephemcrypt rw,nosuid,nodev,relatime shared:30 - ext4 /dev/mapper/ephemcrypt-data rw
62 22 0:40 / /tmp\\040dir rw - tmpfs tmpfs rw
63 22 253:3 /tmp /tmp rw,nosuid,nodev,noexec,relatime shared:30 - ext4 /dev/mapper/ephemcrypt-data rw
70 22 254:16 / /var rw,nosuid,nodev,relatime shared:40 - ext4 /dev/vdb rw
80 70 253:3 /var/log /var/log rw,nosuid,nodev,noexec,relatime shared:30 - ext4 /dev/mapper/ephemcrypt-data rw
81 70 253:3 /var/tmp /var/tmp rw,nosuid,nodev,relatime shared:30 - ext4 /dev/mapper/ephemcrypt-data rw
82 80 254:48 / /var/log/audit rw,nosuid,nodev,noexec,relatime shared:42 - ext4 /dev/vdd rw
";

    fn targets() -> Vec<PathBuf> {
        ["/var/log", "/tmp", "/var/tmp"].map(PathBuf::from).to_vec()
    }

    #[test]
    fn a_bind_hidden_by_a_later_mount_above_it_is_named() {
        let e = parse(HIDDEN_BY_VAR);
        // The last line at /var/log is not what is visible there: /var's own /var/log is.
        assert_eq!(visible(&e, Path::new("/var/log")).unwrap().id, 71);
        assert_eq!(visible(&e, Path::new("/var/tmp")).unwrap().id, 70);
        assert_eq!(visible(&e, Path::new("/var/tmp/x")).unwrap().id, 70);
        assert_eq!(visible(&e, Path::new("/tmp")).unwrap().id, 62);
        assert_eq!(visible(&e, Path::new("/")).unwrap().id, 22);
        assert_eq!(
            hidden(HIDDEN_BY_VAR, VOLUME, &targets()),
            [
                "/var/log is not on the volume: /dev/vdc (ext4, 254:32) mounted on /var/log over it",
                "/var/tmp is not on the volume: its bind is hidden by /dev/vdb (ext4, 254:16) mounted on /var",
            ]
        );
        // The order of the lines does not decide (ids are reused; propagation adds mounts late):
        // the same table with /var first says the same.
        let mut lines: Vec<&str> = HIDDEN_BY_VAR.lines().collect();
        let var = lines.iter().position(|l| l.starts_with("70 ")).unwrap();
        let moved = lines.remove(var);
        lines.insert(2, moved);
        assert_eq!(hidden(&(lines.join("\n") + "\n"), VOLUME, &targets()), hidden(HIDDEN_BY_VAR, VOLUME, &targets()));
        // /var/log's own file system not mounted either: the bind is hidden by /var.
        let without_71: String =
            HIDDEN_BY_VAR.lines().filter(|l| !l.starts_with("71 ")).map(|l| l.to_string() + "\n").collect();
        assert_eq!(
            hidden(&without_71, VOLUME, &targets())[0],
            "/var/log is not on the volume: its bind is hidden by /dev/vdb (ext4, 254:16) mounted on /var"
        );
    }

    #[test]
    fn binds_after_their_parents_are_visible_and_a_mount_below_hides_nothing() {
        let e = parse(BOUND_AFTER_VAR);
        assert_eq!(e[2].target, Path::new("/tmp dir"));
        assert!(hidden(BOUND_AFTER_VAR, VOLUME, &targets()).is_empty());
        assert_eq!(visible(&e, Path::new("/var/log/audit/audit.log")).unwrap().id, 82);
        // Another volume's device is not this one.
        assert_eq!(hidden(BOUND_AFTER_VAR, DevNo { major: 253, minor: 9 }, &targets()).len(), 3);
    }

    #[test]
    fn a_late_mount_on_a_target_a_missing_bind_and_a_wrong_directory() {
        // A tmpfs on /var/tmp after the check unit ran (stacked on the bind: its parent is 81).
        let late = format!("{BOUND_AFTER_VAR}90 81 0:50 / /var/tmp rw,nosuid,nodev - tmpfs tmpfs rw\n");
        assert_eq!(
            hidden(&late, VOLUME, &targets()),
            ["/var/tmp is not on the volume: tmpfs (tmpfs, 0:50) mounted on /var/tmp over it"]
        );
        // No bind at all: the target lies on the disk below.
        let none: String =
            BOUND_AFTER_VAR.lines().filter(|l| !l.starts_with("81 ")).map(|l| l.to_string() + "\n").collect();
        assert_eq!(
            hidden(&none, VOLUME, &targets()),
            ["/var/tmp is not on the volume: it lies on /dev/vdb (ext4, 254:16) mounted on /var"]
        );
        // The volume's /tmp bound on /var/tmp.
        let wrong = BOUND_AFTER_VAR.replace("81 70 253:3 /var/tmp /var/tmp", "81 70 253:3 /tmp /var/tmp");
        assert_eq!(hidden(&wrong, VOLUME, &targets()), ["/var/tmp shows /tmp of the volume, not /var/tmp"]);
        // A source with a line break in it (mountinfo's \012) stays on its line.
        let fuse = format!("{BOUND_AFTER_VAR}90 81 0:51 / /var/tmp rw - fuse.x evil\\012<0>forged rw\n");
        assert_eq!(
            hidden(&fuse, VOLUME, &targets()),
            ["/var/tmp is not on the volume: evil\\n<0>forged (fuse.x, 0:51) mounted on /var/tmp over it"]
        );
    }

    fn ok_status() -> Status {
        let mut s = Status::new(SetupResult::Ok, "2 disk(s) encrypted");
        s.mount = Some("/mnt/ephemcrypt".into());
        s.mappings =
            vec![crate::status::MappingStatus { name: "ephemcrypt-data".into(), dev: VOLUME, live: Some(true) }];
        s.data_mapping = Some("ephemcrypt-data".into());
        s.targets = targets();
        s
    }

    #[test]
    fn the_status_turns_degraded_and_says_why() {
        let mut s = ok_status();
        check(&mut s, Ok(HIDDEN_BY_VAR.to_string()));
        assert_eq!(s.result, SetupResult::Degraded);
        assert!(
            s.reason.starts_with("/var/log is not on the volume: /dev/vdc (ext4, 254:32) mounted on /var/log over it; /var/tmp is not on the volume: its bind is hidden by /dev/vdb"),
            "{}",
            s.reason
        );
        assert!(s.reason.ends_with("(setup said: 2 disk(s) encrypted)"));
        assert!(s.render().contains("\nhidden: /var/log is not on the volume"), "{}", s.render());
        assert!(crate::status::prometheus(Some(&s)).contains("ephemcrypt_setup_result{result=\"degraded\"} 1\n"));
        assert!(crate::status::prometheus(Some(&s)).contains("ephemcrypt_binds_hidden 2\n"));
        let mut s = ok_status();
        check(&mut s, Ok(BOUND_AFTER_VAR.to_string()));
        assert_eq!((s.result, s.hidden.len()), (SetupResult::Ok, 0));
        assert!(crate::status::prometheus(Some(&s)).contains("ephemcrypt_binds_hidden 0\n"));
        // What cannot be checked is not ok either.
        let mut s = ok_status();
        check(&mut s, Err("read /proc/self/mountinfo: No such file or directory (os error 2)".into()));
        assert_eq!(s.result, SetupResult::Degraded);
        // No volume, or a status from before the targets were recorded: nothing to check.
        let mut s = Status { targets: Vec::new(), ..ok_status() };
        check(&mut s, Ok(HIDDEN_BY_VAR.to_string()));
        assert_eq!(s.result, SetupResult::Ok);
    }
}
