//! One error type for the whole program.
//!
//! Every variant names the operation and the object it failed on; OS failures carry the errno.
//! No variant ever carries key material: keys are never formatted anywhere (see `key.rs`).

use std::fmt;
use std::io;

/// Everything that can go wrong in ephemcrypt.
#[derive(Debug)]
pub enum Error {
    /// Bad command-line usage (exit code 2).
    Usage(String),
    /// A configuration file or kernel command-line problem (exit code 2).
    Config(Box<crate::config::ConfigError>),
    /// A system call or file operation failed: `op` on `object`, with the OS error.
    Os { op: &'static str, object: String, source: io::Error },
    /// Something else that a person can act on; the text names the object.
    Msg(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An OS error from an `io::Error`.
    pub fn os(op: &'static str, object: impl fmt::Display, source: io::Error) -> Error {
        Error::Os { op, object: object.to_string(), source }
    }

    /// An OS error from a nix errno.
    pub fn errno(op: &'static str, object: impl fmt::Display, errno: nix::errno::Errno) -> Error {
        Error::os(op, object, io::Error::from_raw_os_error(errno as i32))
    }

    pub fn msg(text: impl Into<String>) -> Error {
        Error::Msg(text.into())
    }

    /// An OS error with errno EBUSY: the device or mount is still in use.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Os { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
    }

    /// The process exit code `main` maps this error to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "usage: {m}"),
            Error::Config(e) => e.fmt(f),
            Error::Os { op, object, source } => {
                write!(f, "{op} {object}: {source}")?;
                if let Some(errno) = source.raw_os_error() {
                    let name = nix::errno::Errno::from_raw(errno);
                    write!(f, " ({name:?})")?;
                }
                Ok(())
            }
            Error::Msg(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Error {
        Error::Config(Box::new(e))
    }
}
