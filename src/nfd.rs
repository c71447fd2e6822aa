//! Kubernetes learns the result: a node-feature-discovery (NFD) *local feature file*, written by
//! `ephemcrypt check` (ephemcrypt-check.service, enabled wherever ephemcrypt is installed) into
//! NFD's `features.d` directory. nfd-worker reads each file there as `name=value` lines and
//! labels the node `feature.node.kubernetes.io/<name>=<value>` (names without a prefix of their
//! own get that one), so a pod can ask for `feature.node.kubernetes.io/ephemcrypt.encrypted:
//! "true"` in its `nodeSelector`.
//!
//! The text is made here, purely ([`features`]); [`write`] puts it in place through
//! [`crate::dirfd::Dir`] (a fresh name renamed over `ephemcrypt`, no link followed). A missing
//! directory is no error: a machine that runs no NFD gets no file (and no /etc/kubernetes).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::status::{SetupResult, Status};

/// Where NFD's nfd-worker looks for feature files (its DaemonSet mounts this host directory):
/// the default of the `node-features` key and of `check --node-features`.
pub(crate) const DEFAULT_DIR: &str = "/etc/kubernetes/node-feature-discovery/features.d";

/// The file's name in that directory.
pub(crate) const FILE: &str = "ephemcrypt";

/// What the check knew of this boot's setup.
pub(crate) enum Known<'a> {
    /// The status setup wrote (with its mappings and bind targets checked now).
    Status(&'a Status),
    /// No status: setup did not run in this boot.
    NotRun,
    /// A status that could not be read or made sense of.
    Unknown,
}

/// Whether the node has what a workload asking for encrypted scratch space needs: setup made
/// the volume, its mappings are all there and every bind target shows it (what `check` passes).
pub(crate) fn encrypted(s: &Status) -> bool {
    s.result == SetupResult::Ok && s.volume.is_some() && !s.mapping_gone() && s.hidden.is_empty()
}

/// The feature file's text: `ephemcrypt.encrypted` (true or false) and `ephemcrypt.result` (the
/// setup result, `not_run` or `unknown`) always; with a volume, its `ephemcrypt.cipher` and
/// `ephemcrypt.key-bits`. Every value is made a valid label value ([`label_value`]).
pub(crate) fn features(known: &Known<'_>) -> String {
    let mut out = String::from("# Written by ephemcrypt check at boot: the node's encrypted ephemeral storage.\n");
    let (encrypted, result) = match known {
        Known::Status(s) => (encrypted(s), s.result.name()),
        Known::NotRun => (false, "not_run"),
        Known::Unknown => (false, "unknown"),
    };
    out += &format!("ephemcrypt.encrypted={encrypted}\n");
    out += &format!("ephemcrypt.result={result}\n");
    if let Known::Status(Status { volume: Some(v), .. }) = known {
        let cipher = label_value(&v.cipher);
        if !cipher.is_empty() {
            out += &format!("ephemcrypt.cipher={cipher}\n");
        }
        out += &format!("ephemcrypt.key-bits={}\n", v.key_bits);
    }
    out
}

/// `v` as a Kubernetes label value: at most 63 characters from A-Z a-z 0-9 `-` `_` `.`, starting
/// and ending with a letter or digit (`aes-cbc-essiv:sha256` becomes `aes-cbc-essiv_sha256`);
/// empty when nothing is left. The cipher comes from the status file: whatever it holds, the
/// line stays one valid label (no `=`, no newline, no second line).
pub(crate) fn label_value(v: &str) -> String {
    let mapped: String = v
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .take(63)
        .collect();
    mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// Write `text` as [`FILE`] in `dir`, atomically, mode 0644. `Ok(false)`: `dir` does not exist
/// (no NFD on this machine), nothing written.
pub(crate) fn write(dir: &Path, text: &str) -> Result<bool> {
    let d = match crate::dirfd::Dir::open(dir, false) {
        Ok(d) => d,
        Err(e) if e.errno_value() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    d.write_file(OsStr::new(FILE), text.as_bytes(), 0o644)?;
    Ok(true)
}

/// The directory the feature file goes to: `check --node-features DIR` (a path on this machine,
/// as `status --output`; `none`: no file), else `configured` (the configuration's
/// `node-features`, under the host root; `None`: `none`).
pub(crate) fn dir_from(option: Option<&Path>, configured: Option<PathBuf>) -> Option<PathBuf> {
    match option {
        Some(d) if d.as_os_str() == "none" => None,
        Some(d) => Some(d.to_path_buf()),
        None => configured,
    }
}

/// Write the feature file for `known` into `dir`; logged, never an error for the check (the
/// check's own line and exit status are about the volume, not about Kubernetes).
pub(crate) fn publish(dir: &Path, known: &Known<'_>) {
    match write(dir, &features(known)) {
        Ok(true) => log::debug!("wrote {}", dir.join(FILE).display()),
        Ok(false) => log::debug!("{}: no such directory (no node-feature-discovery): no feature file", dir.display()),
        Err(e) => log::warn!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::VolumeStatus;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn volume() -> Status {
        let mut s = Status::new(SetupResult::Ok, "volume in place");
        s.volume = Some(VolumeStatus {
            cipher: "aes-xts-plain64".into(),
            key_bits: 512,
            sector_size: 4096,
            flags: vec![],
            fs: "ext4".into(),
            bytes: 1 << 30,
        });
        s
    }

    #[test]
    fn the_file_says_encrypted_only_when_the_volume_is_there_and_shown() {
        let s = volume();
        assert_eq!(
            features(&Known::Status(&s)),
            "# Written by ephemcrypt check at boot: the node's encrypted ephemeral storage.\n\
             ephemcrypt.encrypted=true\nephemcrypt.result=ok\nephemcrypt.cipher=aes-xts-plain64\n\
             ephemcrypt.key-bits=512\n"
        );
        let mut hidden = volume();
        hidden.hidden = vec!["/tmp".into()];
        assert!(features(&Known::Status(&hidden)).contains("ephemcrypt.encrypted=false\n"));
        let mut gone = volume();
        gone.mappings = vec![crate::status::MappingStatus {
            name: "ephemcrypt".into(),
            dev: crate::units::DevNo { major: 253, minor: 0 },
            live: Some(false),
        }];
        assert!(features(&Known::Status(&gone)).contains("ephemcrypt.encrypted=false\n"));
        let degraded = Status::new(SetupResult::Degraded, "mkfs failed");
        let text = features(&Known::Status(&degraded));
        assert!(
            text.contains("ephemcrypt.encrypted=false\nephemcrypt.result=degraded\n") && !text.contains("cipher"),
            "{text}"
        );
        assert!(features(&Known::NotRun).ends_with("ephemcrypt.encrypted=false\nephemcrypt.result=not_run\n"));
        assert!(features(&Known::Unknown).ends_with("ephemcrypt.encrypted=false\nephemcrypt.result=unknown\n"));
    }

    #[test]
    fn values_are_valid_label_values_whatever_the_status_says() {
        assert_eq!(label_value("aes-cbc-essiv:sha256"), "aes-cbc-essiv_sha256");
        assert_eq!(label_value("x\nephemcrypt.encrypted=true"), "x_ephemcrypt.encrypted_true");
        assert_eq!(label_value("-:-"), "");
        assert_eq!(label_value(&"a".repeat(100)).len(), 63);
        let mut s = volume();
        if let Some(v) = s.volume.as_mut() {
            v.cipher = "\n=\n".into();
        }
        let text = features(&Known::Status(&s));
        assert!(!text.contains("cipher") && text.lines().count() == 4, "{text}");
    }

    #[test]
    fn the_directory_comes_from_the_option_then_the_configuration() {
        let (opt, conf) = (Path::new("/opt/f"), PathBuf::from("/conf/f"));
        assert_eq!(dir_from(Some(opt), Some(conf.clone())).as_deref(), Some(opt));
        assert_eq!(dir_from(None, Some(conf.clone())), Some(conf.clone()));
        assert_eq!(dir_from(Some(Path::new("none")), Some(conf)), None);
        assert_eq!(dir_from(None, None), None);
    }

    #[test]
    fn written_atomically_without_following_links_and_not_at_all_without_the_directory() {
        let b = std::env::temp_dir().join(format!("ephemcrypt-nfd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&b);
        let dir = b.join("features.d");
        assert!(!write(&dir, "x=1\n").unwrap(), "a missing directory: nothing written");
        assert!(!dir.exists(), "and not made");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let victim = b.join("victim");
        fs::write(&victim, "precious").unwrap();
        symlink(&victim, dir.join(FILE)).unwrap();
        assert!(write(&dir, "ephemcrypt.encrypted=true\n").unwrap());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!fs::symlink_metadata(dir.join(FILE)).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(dir.join(FILE)).unwrap(), "ephemcrypt.encrypted=true\n");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        // A linked directory where another account could have put the link: refused.
        let hostile = b.join("hostile");
        fs::create_dir_all(&hostile).unwrap();
        fs::set_permissions(&hostile, fs::Permissions::from_mode(0o777)).unwrap();
        symlink(b.join("elsewhere"), hostile.join("features.d")).unwrap();
        fs::create_dir_all(b.join("elsewhere")).unwrap();
        assert!(write(&hostile.join("features.d"), "x=1\n").is_err());
        assert_eq!(fs::read_dir(b.join("elsewhere")).unwrap().count(), 0);
        fs::remove_dir_all(&b).unwrap();
    }
}
