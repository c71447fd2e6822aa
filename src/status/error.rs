//! PURE: what can be wrong with a status document. A leaf: the error type wraps it
//! ([`crate::error::Error::Status`]) without depending on the status code.

use std::fmt;

/// What is wrong with a status document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatusError {
    TooLarge {
        max: u64,
    },
    NotJson,
    NotAnObject,
    /// A field that is missing or of the wrong kind.
    Field {
        key: &'static str,
        expected: &'static str,
    },
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::TooLarge { max } => write!(f, "larger than {max} bytes: not a status file of ours"),
            StatusError::NotJson => f.write_str("not valid JSON (or nested deeper than 32 levels)"),
            StatusError::NotAnObject => f.write_str("not a JSON object"),
            StatusError::Field { key, expected } => write!(f, "field '{key}': expected {expected}"),
        }
    }
}
