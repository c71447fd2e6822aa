//! PURE: the systemd units and drop-ins setup writes for the real root, as values ([`UnitFile`])
//! rendered in one place ([`UnitFile::render`]).

use std::fmt::Write as _;
use std::path::Path;

/// The reboot guard's unit in the real root (`guard`).
pub(crate) const GUARD_UNIT: &str = "ephemcrypt-guard.service";

/// logind's drop-in that lets the power button through the guard's lock.
pub(crate) const GUARD_LOGIND_DROPIN: &str = "/run/systemd/logind.conf.d/ephemcrypt-guard.conf";

/// Every unit setup writes says where it came from, first.
const WRITTEN_BY: &str = "Written by ephemcrypt setup in the initramfs";

/// A unit file or drop-in: comment lines, then sections of settings and comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitFile {
    comment: Vec<String>,
    sections: Vec<(&'static str, Vec<Line>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Set(&'static str, String),
    Comment(&'static str),
}

impl UnitFile {
    /// A file whose first comment line says setup wrote it, followed by `why`.
    fn new(why: impl Into<String>) -> UnitFile {
        UnitFile { comment: vec![why.into()], sections: Vec::new() }
    }

    /// One more comment line at the top.
    fn note(mut self, text: impl Into<String>) -> UnitFile {
        self.comment.push(text.into());
        self
    }

    /// Start the section `[name]`.
    fn section(mut self, name: &'static str) -> UnitFile {
        self.sections.push((name, Vec::new()));
        self
    }

    fn line(mut self, line: Line) -> UnitFile {
        if let Some((_, lines)) = self.sections.last_mut() {
            lines.push(line);
        }
        self
    }

    /// `key=value` in the current section.
    fn set(self, key: &'static str, value: impl std::fmt::Display) -> UnitFile {
        self.line(Line::Set(key, value.to_string()))
    }

    /// A comment in the current section.
    fn comment(self, text: &'static str) -> UnitFile {
        self.line(Line::Comment(text))
    }

    /// The file's text. Values come from validated configuration and fixed strings; a control
    /// character, which would break a line, is written as systemd's `\xNN` escape all the same.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.comment.iter().enumerate() {
            let c = if i == 0 { format!("{WRITTEN_BY}{c}") } else { c.clone() };
            let _ = writeln!(out, "# {}", no_controls(&c));
        }
        for (i, (name, lines)) in self.sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "[{name}]");
            for line in lines {
                let _ = match line {
                    Line::Set(key, value) => writeln!(out, "{key}={}", no_controls(value)),
                    Line::Comment(text) => writeln!(out, "# {text}"),
                };
            }
        }
        out
    }
}

fn no_controls(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { format!("\\x{:02x}", u32::from(c)) } else { c.to_string() }).collect()
}

/// logind honours a `block` lock on shutdown for the power button too (`PowerKeyIgnoreInhibited=`
/// is `no` by default, logind.conf(5)), and an API stop, terminate or spot interruption reaches a
/// cloud machine as that button: with the guard alone the stop would hang until the provider
/// forces it (an unclean root, no shutdown hooks). logind reads /run/systemd/logind.conf.d/ when it
/// starts in the real root, after switch_root, which keeps /run. Only the power key's handling
/// changes: `systemctl reboot` at a terminal still meets the lock.
pub(super) fn guard_logind_dropin() -> String {
    UnitFile::new(" (guard = yes): the reboot guard's lock blocks")
        .note("reboots typed at a terminal, not the power button, which is how a cloud stops the machine.")
        .section("Login")
        .set("PowerKeyIgnoreInhibited", "yes")
        .render()
}

/// The guard: a systemd inhibitor lock that blocks shutdown and reboot (`systemctl reboot -i`
/// overrides it) until the hold file appears, which keeps the volume for recovery on the next boot.
/// The power button (a cloud's stop) goes through: [`guard_logind_dropin`]. Sandboxed: it only
/// asks logind for the lock over D-Bus and looks for the hold file (`systemd-analyze security
/// --offline=yes`: 0.7, 9.6 without).
pub(super) fn guard_unit() -> String {
    let hold = crate::paths::HOLD_FILE;
    let unit = UnitFile::new(" (guard = yes).")
        .section("Unit")
        .set("Description", "ephemcrypt: block reboots while the encrypted ephemeral volume is in use")
        .set("Documentation", "man:ephemcrypt(8)")
        .set("ConditionPathExists", format!("!{hold}"))
        .set("Wants", "systemd-logind.service")
        .set("After", "systemd-logind.service dbus.service")
        .section("Service")
        .set(
            "ExecStart",
            format!(
                "systemd-inhibit --what=shutdown --mode=block --who=ephemcrypt \"--why=a reboot destroys the \
                 encrypted ephemeral volume and everything on it: touch {hold} to keep it for recovery, or \
                 override with systemctl reboot -i\" sh -c \"while [ ! -e {hold} ]; do sleep 5; done\""
            ),
        )
        .comment("Root with CAP_SYS_BOOT alone: logind grants a blocking shutdown lock to a caller with it")
        .comment("(no polkit needed); reboot(2) itself is not in @system-service. D-Bus over a local socket")
        .comment("(AF_UNIX) is all it talks; it writes nothing. No PrivateUsers=: logind must see root and")
        .comment("its capability; the read-only char-rtc entry comes with ProtectClock=.")
        .set("CapabilityBoundingSet", "CAP_SYS_BOOT");
    let sandbox = [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("PrivateNetwork", "yes"),
        ("IPAddressDeny", "any"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("PrivateMounts", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallFilter", "~@privileged @resources"),
        ("SystemCallErrorNumber", "EPERM"),
        ("UMask", "0077"),
    ];
    sandbox.iter().fold(unit, |u, (k, v)| u.set(k, v)).render()
}

/// The `x-systemd.*` options of an fstab entry that a unit replacing it (or binding under it)
/// keeps, as unit settings: the ordering the operator asked for (`x-systemd.after=`, `before=`)
/// and the mounts it needs (`requires-mounts-for=`). The others concern the file system the unit
/// does not mount (`requires=` its device or unlocker, `makefs`, `growfs`, `device-timeout`) and
/// are left with it; `x-systemd.automount` stays the generator's (an automount unit of its own
/// name) and, once triggered, starts this unit.
fn kept_fstab_settings(fstab: &[String]) -> Vec<(&'static str, String)> {
    let mut settings = Vec::new();
    for o in fstab {
        let (key, value) = o.split_once('=').unwrap_or((o, ""));
        let setting = match key {
            "x-systemd.after" => "After",
            "x-systemd.before" => "Before",
            "x-systemd.requires-mounts-for" => "RequiresMountsFor",
            _ => continue,
        };
        // Split on white space already, an fstab field cannot break a line; a value with a
        // control character is not one systemd would take either.
        if !value.is_empty() && !value.chars().any(char::is_control) {
            settings.push((setting, value.to_string()));
        }
    }
    settings
}

/// A bind target that units bind after the real root's mounts: the target, the directory whose
/// mount comes first, the volume's mount point and the target's directory on it (all in the real
/// root), and the names of the mount unit and of the service that copies the skeleton first.
pub(super) struct LaterBind<'a> {
    pub(super) target: &'a Path,
    pub(super) parent: &'a Path,
    pub(super) volume_mount: &'a Path,
    pub(super) source: &'a Path,
    pub(super) mount_unit: &'a str,
    pub(super) service: &'a str,
}

/// The service that copies the real root's directories of the target (once its parent is
/// mounted) to its directory on the volume, before the mount unit binds it.
pub(super) fn skeleton_service(b: &LaterBind) -> String {
    let (t, p, m, s) = (b.target.display(), b.parent.display(), b.volume_mount.display(), b.source.display());
    let mount_unit = b.mount_unit;
    UnitFile::new(format!(": the directories of {t} as the real root has"))
        .note(format!(
            "them once {p} is mounted, onto the encrypted volume, before {mount_unit} binds the volume there."
        ))
        .section("Unit")
        .set("Description", format!("ephemcrypt: the directories of {t} onto the encrypted volume"))
        .set("Documentation", "man:ephemcrypt(8)")
        .set("DefaultDependencies", "no")
        .set("ConditionPathExists", "!/etc/initrd-release")
        .set("ConditionPathExists", "/usr/sbin/ephemcrypt")
        .set("RequiresMountsFor", format!("{m} {p}"))
        .set("Before", mount_unit)
        .section("Service")
        .set("Type", "oneshot")
        .set("ExecStart", format!("/usr/sbin/ephemcrypt skeleton {t} {s}"))
        .render()
}

/// The mount unit that binds the target's directory on the volume over it after the real root's
/// mounts (its parent's, and the volume's) and after the service copied the skeleton: `why` it is
/// a unit, the `options` of the bind, and the settings kept from the `fstab` options of the mount
/// it replaces or lies on.
pub(super) fn bind_mount_unit(b: &LaterBind, why: &str, options: &[String], fstab: &[String]) -> String {
    let (t, p, m, service) = (b.target.display(), b.parent.display(), b.volume_mount.display(), b.service);
    let unit = UnitFile::new(format!(": {t} on the encrypted volume,"))
        .note(format!("{why}."))
        .section("Unit")
        .set("Description", format!("ephemcrypt: {t} on the encrypted volume"))
        .set("Documentation", "man:ephemcrypt(8)")
        .set("ConditionPathExists", "!/etc/initrd-release")
        .set("RequiresMountsFor", format!("{m} {p}"))
        .set("Wants", service)
        .set("After", service);
    kept_fstab_settings(fstab)
        .into_iter()
        .fold(unit, |u, (k, v)| u.set(k, v))
        .section("Mount")
        .set("What", b.source.display())
        .set("Where", t)
        .set("Type", "none")
        .set("Options", options.join(","))
        .render()
}

/// The failure policy's tmpfs over `target`, mounted after `parent` (`by` is the separate mount
/// of the fstab that would hide one made in the initramfs), with `options` and `mode`.
pub(super) fn tmpfs_mount_unit(target: &Path, parent: &Path, by: &Path, options: &[String], mode: &str) -> String {
    let (t, p) = (target.display(), parent.display());
    UnitFile::new(format!(", which failed: a tmpfs over {t} after {p}"))
        .note(format!(
            "({} is a separate mount in /etc/fstab), so that nothing meant for the volume lands on a disk.",
            by.display()
        ))
        .section("Unit")
        .set("Description", format!("ephemcrypt: tmpfs over {t} (setup failed)"))
        .set("Documentation", "man:ephemcrypt(8)")
        .set("ConditionPathExists", "!/etc/initrd-release")
        .set("RequiresMountsFor", p)
        .section("Mount")
        .set("What", "tmpfs")
        .set("Where", t)
        .set("Type", "tmpfs")
        .set("Options", format!("{},mode={mode}", options.join(",")))
        .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_renders_its_comment_sections_and_settings_in_order() {
        let text = UnitFile::new(": a test")
            .note("second line")
            .section("Unit")
            .set("Description", "x\ny")
            .comment("why")
            .section("Mount")
            .set("What", "/a b")
            .render();
        assert_eq!(
            text,
            "# Written by ephemcrypt setup in the initramfs: a test\n# second line\n[Unit]\nDescription=x\\x0ay\n# why\n\n[Mount]\nWhat=/a b\n"
        );
    }

    #[test]
    fn fstab_ordering_options_are_kept_as_settings() {
        let o: Vec<String> =
            ["nodev", "x-systemd.after=net.mount", "x-systemd.requires=x.service", "x-systemd.before="]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(kept_fstab_settings(&o), [("After", "net.mount".to_string())]);
    }
}
