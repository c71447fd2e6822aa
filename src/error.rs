//! One error type for the whole program.
//!
//! Every variant names the operation and the object it failed on; OS failures carry the errno.
//! No variant ever carries key material: keys are never formatted anywhere (see `key.rs`), and
//! device-mapper errors never quote a table's parameters.

use std::fmt;
use std::io;

use crate::config::error::ConfigError;
use crate::dm::error::DmError;
use crate::escape::{line, Esc};
use crate::status::error::StatusError;

/// Everything that can go wrong in ephemcrypt.
#[derive(Debug)]
pub(crate) enum Error {
    /// Bad command-line usage (exit code 2).
    Usage(String),
    /// A configuration file or kernel command-line problem (exit code 2).
    Config(Box<ConfigError>),
    /// A system call or file operation failed: `op` on `object`, with the OS error.
    Os { op: &'static str, object: String, source: io::Error },
    /// A value read from the host that is not what it must be: `what` (a path), what was
    /// expected, and what was found.
    Invalid { what: String, expected: &'static str, found: String },
    /// A device-mapper request that could not be encoded, or a reply that could not be decoded.
    Dm { op: &'static str, object: String, why: DmError },
    /// A TPM command whose response was refused: the command, the device, why.
    Tpm { op: &'static str, object: String, why: crate::tpm::codec::TpmError },
    /// The kernel has no dm-crypt target, even after trying to load `dm_crypt`.
    NoCryptTarget,
    /// The kernel's crypto API does not offer an algorithm the cipher needs (`xts(aes)`).
    KernelCrypto { name: String, source: io::Error },
    /// A program to run is not installed.
    ProgramNotFound { program: String },
    /// A program ran and failed: its arguments, exit status and the last lines of its stderr.
    Program { argv: Vec<String>, status: String, stderr: String },
    /// `/run/ephemcrypt/status.json` is not a status document.
    Status { path: String, why: StatusError },
    /// No status file: setup did not run in this boot's initramfs.
    NotRun { path: String },
    /// `ephemcrypt recover` cannot go on: what it found, and why not.
    Recover(String),
    /// An invariant of ephemcrypt's own code does not hold (a bug): what was expected. Never a
    /// panic on the boot path: it fails the step, and the failure policy applies.
    Internal(&'static str),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An OS error from an `io::Error`.
    pub(crate) fn os(op: &'static str, object: impl fmt::Display, source: io::Error) -> Error {
        Error::Os { op, object: object.to_string(), source }
    }

    /// An OS error from a nix errno.
    pub(crate) fn errno(op: &'static str, object: impl fmt::Display, errno: nix::errno::Errno) -> Error {
        Error::os(op, object, io::Error::from_raw_os_error(errno as i32))
    }

    pub(crate) fn invalid(what: impl fmt::Display, expected: &'static str, found: impl fmt::Display) -> Error {
        Error::Invalid { what: what.to_string(), expected, found: found.to_string() }
    }

    /// The errno of an OS error.
    pub(crate) fn errno_value(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// An OS error with errno EBUSY: the device or mount is still in use.
    pub(crate) fn is_busy(&self) -> bool {
        self.errno_value() == Some(libc::EBUSY)
    }

    /// The process exit code `main` maps this error to.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) => 2,
            Error::NotRun { .. } => 3,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Strings from outside (paths, values, program output) are escaped here: `Esc` for a value
            // shown in quotes, `line` (control characters only; systemd's `\x2d` in unit names
            // stays) for objects and messages that may quote one.
            Error::Usage(m) => write!(f, "usage: {}", line(m)),
            Error::Config(e) => e.fmt(f),
            Error::Os { op, object, source } => {
                write!(f, "{op} {}: {source}", line(object))?;
                if let Some(errno) = source.raw_os_error() {
                    let name = nix::errno::Errno::from_raw(errno);
                    write!(f, " ({name:?})")?;
                }
                Ok(())
            }
            Error::Invalid { what, expected, found } => {
                write!(f, "{}: expected {expected}, found '{}'", line(what), Esc(found))
            }
            Error::Dm { op, object, why } => write!(f, "{op} {}: {why}", line(object)),
            Error::Tpm { op, object, why } => write!(f, "{op} {}: {why}", line(object)),
            Error::NoCryptTarget => f.write_str(
                "the kernel has no dm-crypt target: module dm_crypt is neither built in nor loadable \
                 (add it to the initramfs)",
            ),
            Error::KernelCrypto { name, source } => {
                write!(
                    f,
                    "the kernel does not offer {} ({source}): add its modules to the initramfs: {}",
                    Esc(name),
                    Esc(&crypto_modules(name))
                )
            }
            Error::ProgramNotFound { program } => {
                write!(f, "run {}: not found on PATH (add it to the initramfs)", Esc(program))
            }
            Error::Program { argv, status, stderr } => {
                write!(f, "{} failed ({})", line(&argv.join(" ")), line(status))?;
                if !stderr.is_empty() {
                    write!(f, ": {}", Esc(stderr))?;
                }
                Ok(())
            }
            Error::Status { path, why } => write!(f, "read status {}: {}", line(path), line(&why.to_string())),
            Error::Recover(why) => write!(f, "recover: {}", line(why)),
            Error::Internal(what) => write!(f, "internal error (a bug in ephemcrypt): {what}"),
            Error::NotRun { path } => write!(
                f,
                "ephemcrypt did not run in this boot's initramfs ({path} is missing), so the ephemeral disks \
                 are not encrypted and /var/log, /tmp and /var/tmp are on the root disk. Likely causes: the \
                 machine booted without an initramfs (Ubuntu cloud images boot initrd-less while \
                 GRUB_FORCE_PARTUUID is set: see docs/install.md), ephemcrypt is not in the image (install its \
                 hook, then update-initramfs -u, dracut -f or mkinitcpio -P), or the image was not rebuilt \
                 after ephemcrypt was installed or upgraded",
                path = line(path)
            ),
        }
    }
}

/// The modules that provide a kernel crypto algorithm such as `xts(aes)` or `sha256`.
fn crypto_modules(name: &str) -> String {
    let parts: Vec<String> = name
        .split(['(', ')', ','])
        .filter(|p| !p.is_empty())
        .map(|p| match p {
            "aes" => "aesni_intel (x86_64) or aes_ce_blk and aes_neon_blk (arm64), or aes_generic".to_string(),
            "sha256" => "sha256_generic".to_string(),
            "xts" | "cbc" | "ecb" | "essiv" => p.to_string(),
            other => format!("{other}_generic"),
        })
        .collect();
    parts.join(", ")
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_operation_object_and_errno() {
        let e = Error::os("open", "/dev/x", io::Error::from_raw_os_error(libc::ENOENT));
        assert!(e.to_string().starts_with("open /dev/x: ") && e.to_string().ends_with("(ENOENT)"), "{e}");
        let e = Error::Program {
            argv: vec!["mkfs.ext4".into(), "-q".into(), "/dev/mapper/x".into()],
            status: "exit status: 1".into(),
            stderr: "mkfs.ext4: No space left".into(),
        };
        assert_eq!(e.to_string(), "mkfs.ext4 -q /dev/mapper/x failed (exit status: 1): mkfs.ext4: No space left");
        let e = Error::invalid("/sys/block/sda/size", "a number", "12x");
        assert_eq!(e.to_string(), "/sys/block/sda/size: expected a number, found '12x'");
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        // What came from outside cannot break the line, forge a journal priority or act on a
        // terminal.
        let e = Error::invalid("/sys/block/sda/device/model", "text", "x\n<0>emerg\x1b[2J");
        assert_eq!(e.to_string(), "/sys/block/sda/device/model: expected text, found 'x\\n<0>emerg\\x1b[2J'");
        let e = Error::os("open", "/dev/x\n<0>y", io::Error::from_raw_os_error(libc::ENOENT));
        assert!(e.to_string().starts_with("open /dev/x\\n<0>y: "), "{e}");
        let e =
            Error::Program { argv: vec!["mkfs".into()], status: "exit status: 1".into(), stderr: "a\x1b[2Jb".into() };
        assert_eq!(e.to_string(), "mkfs failed (exit status: 1): a\\x1b[2Jb");
        assert_eq!(Error::NoCryptTarget.exit_code(), 1);
        let e = Error::KernelCrypto { name: "xts(aes)".into(), source: io::Error::from_raw_os_error(libc::ENOENT) };
        assert!(e.to_string().starts_with("the kernel does not offer xts(aes) ("), "{e}");
        assert!(
            e.to_string().ends_with(
                "to the initramfs: xts, aesni_intel (x86_64) or aes_ce_blk and aes_neon_blk (arm64), or aes_generic"
            ),
            "{e}"
        );
    }
}
