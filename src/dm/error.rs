//! PURE: what can be wrong with a device-mapper request or reply. A leaf: the error type wraps it
//! ([`crate::error::Error::Dm`]) without depending on the ioctl code.

/// Why a device-mapper request could not be encoded or its reply not decoded. Never quotes a
/// table's parameters: they may hold a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DmError {
    InvalidName,
    NameTooLong,
    UuidTooLong,
    NulInParams,
    RequestTooLarge,
    /// A planned table that still holds a placeholder (a bug in the plan, never loaded).
    Unresolved(&'static str),
    ReplyTooLarge {
        mib: usize,
    },
    ShortReply {
        len: usize,
        header: usize,
    },
    DataArea {
        start: usize,
        end: usize,
        len: usize,
    },
    Overrun {
        what: &'static str,
        at: usize,
        len: usize,
    },
    NoNul {
        what: &'static str,
        at: usize,
    },
    PointsBack {
        at: usize,
        next: usize,
    },
}

impl std::fmt::Display for DmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DmError::InvalidName => f.write_str("invalid device name"),
            DmError::NameTooLong => f.write_str("device name too long"),
            DmError::UuidTooLong => f.write_str("uuid too long"),
            DmError::NulInParams => f.write_str("target parameters contain a NUL byte"),
            DmError::RequestTooLarge => f.write_str("request too large"),
            DmError::Unresolved(why) => write!(f, "table not ready to load: {why}"),
            DmError::ReplyTooLarge { mib } => write!(f, "reply larger than {mib} MiB"),
            DmError::ShortReply { len, header } => {
                write!(f, "reply of {len} bytes is shorter than the {header}-byte header")
            }
            DmError::DataArea { start, end, len } => {
                write!(f, "data area {start}..{end} outside the {len}-byte buffer")
            }
            DmError::Overrun { what, at, len } => write!(f, "{what} at offset {at} overruns the {len}-byte data area"),
            DmError::NoNul { what, at } => write!(f, "{what} at offset {at} has no NUL terminator"),
            DmError::PointsBack { at, next } => write!(f, "target spec at offset {at} points back to {next}"),
        }
    }
}
