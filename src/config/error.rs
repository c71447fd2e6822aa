//! PURE: what can be wrong with a configuration, and where a value came from. A leaf: the error
//! type wraps it ([`crate::error::Error::Config`]) without depending on the configuration's code.

use std::fmt;
use std::path::PathBuf;

use crate::escape::Esc;

/// Where a raw value came from, for error messages and `plan` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Cmdline,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::File { path, line } => write!(f, "{} line {}", crate::escape::EscPath(path), line),
            Source::Cmdline => f.write_str("the kernel command line"),
        }
    }
}

/// A configuration problem. Its text names the key, the value, the source and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// A line of the file that is not `key = value`.
    Syntax {
        source: Source,
        text: String,
    },
    UnknownKey {
        key: String,
        source: Source,
        /// The keys there are, for the message.
        known: &'static [&'static str],
    },
    BadValue {
        key: &'static str,
        value: String,
        source: Source,
        expected: String,
    },
    /// Two settings that cannot hold together.
    Conflict {
        a: Box<Setting>,
        b: Box<Setting>,
        why: &'static str,
    },
}

/// One key's raw value and its source, as quoted in a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) key: &'static str,
    pub(crate) value: String,
    pub(crate) source: Source,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = '{}' (from {})", self.key, Esc(&self.value), self.source)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax { source, text } => write!(
                f,
                "configuration: {source}: expected 'key = value', a '#' comment or a blank line, found '{}'",
                Esc(text)
            ),
            ConfigError::UnknownKey { key, source, known } => {
                write!(f, "configuration: unknown key '{}' (from {source}); known keys: {}", Esc(key), known.join(", "))
            }
            ConfigError::BadValue { key, value, source, expected } => {
                // `expected` escapes what it quotes (`CipherSpec::parse`).
                let value = Esc(value);
                write!(f, "configuration: invalid value '{value}' for '{key}' (from {source}): expected {expected}")
            }
            ConfigError::Conflict { a, b, why } => {
                write!(f, "configuration: {a} conflicts with {b}: {why}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}
