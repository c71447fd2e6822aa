//! PURE: the one way a path is put under a root (the host root of `--host`, the new root), and
//! the path spellings of /proc files.

use std::path::{Component, Path, PathBuf};

/// Where setup writes what it did: /run survives switch_root.
pub(crate) const STATUS_PATH: &str = "/run/ephemcrypt/status.json";
/// The escrow, armored, for an operator's own uploader (only with `escrow`).
pub(crate) const ESCROW_PATH: &str = "/run/ephemcrypt/escrow.age";
/// In the real root: while it exists, setup leaves the disks of earlier volumes alone (`hold`),
/// and the reboot guard lets reboots through.
pub(crate) const HOLD_FILE: &str = "/etc/ephemcrypt.hold";

/// `root` + an absolute path inside it: `under("/sysroot", "/var/log")` is `/sysroot/var/log`.
/// A relative `p` is taken as relative to `root`.
pub(crate) fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// A path as systemd names its mount unit (`systemd-escape --path`): `/var/log` → `var-log`,
/// `/srv/my-data` → `srv-my\x2ddata`.
pub(crate) fn systemd_escape_path(p: &Path) -> String {
    let text = p.to_string_lossy();
    let parts: Vec<&str> = text.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for (i, b) in parts.join("/").bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => out.push(char::from(b)),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Lexically normalize an absolute path (`.`/`..` folded); `None` for relative paths.
pub(crate) fn normalize(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Some(out)
}

/// /proc/mounts, /proc/self/mountinfo and /proc/swaps escape space, tab, newline and backslash
/// as `\ooo` octal.
pub(crate) fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && is_octal_escape(&b[i + 1..]) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Three octal digits that fit in a byte (`\000`–`\377`).
fn is_octal_escape(b: &[u8]) -> bool {
    b.len() >= 3 && (b'0'..=b'3').contains(&b[0]) && b[1..3].iter().all(|c| (b'0'..=b'7').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_a_root() {
        assert_eq!(under(Path::new("/sysroot"), Path::new("/var/log")), Path::new("/sysroot/var/log"));
        assert_eq!(under(Path::new("/"), Path::new("/var/log")), Path::new("/var/log"));
        assert_eq!(under(Path::new("/h"), Path::new("proc/cmdline")), Path::new("/h/proc/cmdline"));
    }

    #[test]
    fn normalize_folds_dots() {
        assert_eq!(normalize(Path::new("/dev/disk/by-id/../../nvme1n1")).unwrap(), Path::new("/dev/nvme1n1"));
        assert_eq!(normalize(Path::new("/../x/./y")).unwrap(), Path::new("/x/y"));
        assert!(normalize(Path::new("rel")).is_none());
    }

    #[test]
    fn systemd_unit_names() {
        assert_eq!(systemd_escape_path(Path::new("/var/log")), "var-log");
        assert_eq!(systemd_escape_path(Path::new("/srv/my-data/")), "srv-my\\x2ddata");
        assert_eq!(systemd_escape_path(Path::new("/.hidden/a b")), "\\x2ehidden-a\\x20b");
        assert_eq!(systemd_escape_path(Path::new("/")), "-");
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal(r"/data\040disk"), "/data disk");
        assert_eq!(unescape_octal(r"a\011b\012c\134d"), "a\tb\nc\\d");
        assert_eq!(unescape_octal(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape_octal(r"\"), r"\");
        assert_eq!(unescape_octal(r"\999"), r"\999");
    }
}
