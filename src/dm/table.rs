//! Device-mapper table lines as plain values (pure: no I/O, no `unsafe`).
//!
//! A [`Target`] renders the kernel's parameter string through [`Target::params`], which returns a
//! [`Zeroizing`] string because a crypt target with a hex key carries the key itself. `Display` and
//! `Debug` are for logs and the plan and print `<redacted>` in place of a hex key; a keyring
//! reference (`:64:logon:desc`) names a key without revealing it, so it is shown.
//!
//! A planned table has two placeholders that setup fills in at the step that makes the mapping: a
//! crypt key not made yet ([`CryptKey::Placeholder`], shown as `KEY`) and a device that is a mapping
//! made earlier in the plan ([`Dev::Mapping`], shown as `/dev/mapper/<name>`). The kernel never
//! sees either: [`Target::unresolved`] says whether a target still has one.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::units::{DevNo, Sectors};
use crate::{Error, Result};

/// One line of a device-mapper table: `len` sectors from `start` mapped by `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) start: Sectors,
    pub(crate) len: Sectors,
    pub(crate) kind: TargetKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetKind {
    Linear(Linear),
    Striped(Striped),
    Crypt(Crypt),
}

/// A device a table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dev {
    /// `major:minor`: no device node and no udev needed.
    Num(DevNo),
    /// A mapping made earlier in the plan, by name; its number is known once it exists.
    Mapping(String),
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dev::Num(d) => d.fmt(f),
            Dev::Mapping(name) => write!(f, "/dev/mapper/{name}"),
        }
    }
}

/// `linear <dev> <offset>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Linear {
    pub(crate) dev: Dev,
    pub(crate) offset: Sectors,
}

/// `striped <#devs> <chunk> (<dev> <offset>)+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Striped {
    pub(crate) chunk: Sectors,
    pub(crate) devs: Vec<(Dev, Sectors)>,
}

/// `crypt <cipher> <key> <iv_offset> <dev> <offset> [<#opts> <opt>...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crypt {
    pub(crate) cipher: String,
    pub(crate) key: CryptKey,
    pub(crate) iv_offset: Sectors,
    pub(crate) dev: Dev,
    pub(crate) offset: Sectors,
    /// Optional arguments (`sector_size:4096`, `no_read_workqueue`, ...), each one word.
    pub(crate) options: Vec<String>,
}

/// A table names a mapping that has not been made (a plan whose steps are out of order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotMade(pub(crate) String);

/// How a crypt target gets its key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum CryptKey {
    /// The key of `bytes` bytes that the step making this mapping will make: `KEY` in the plan.
    Placeholder { bytes: usize },
    /// A `logon` key in the kernel keyring: the table names it, no ioctl can read it back.
    Logon { bytes: usize, description: String },
    /// The key itself, hex-encoded, in the table (readable by any root process).
    Hex(Zeroizing<String>),
}

/// Hand-written so that `{:?}` of a plan or target can never print key material.
impl fmt::Debug for CryptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptKey::Placeholder { bytes } => f.debug_struct("Placeholder").field("bytes", bytes).finish(),
            CryptKey::Logon { bytes, description } => {
                f.debug_struct("Logon").field("bytes", bytes).field("description", description).finish()
            }
            CryptKey::Hex(_) => f.write_str("Hex(<redacted>)"),
        }
    }
}

impl TargetKind {
    /// The kernel's target type name.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            TargetKind::Linear(_) => "linear",
            TargetKind::Striped(_) => "striped",
            TargetKind::Crypt(_) => "crypt",
        }
    }
}

impl Target {
    /// The parameter string the kernel gets, key included. Use this (never `Display`) to load a table.
    pub(crate) fn params(&self) -> Zeroizing<String> {
        // Sized up front so the String never reallocates and leaves a stray copy of a key behind.
        let capacity = self.params_capacity();
        let mut s = Zeroizing::new(String::with_capacity(capacity));
        let r = match &self.kind {
            TargetKind::Linear(l) => fmt::write(&mut *s, format_args!("{l}")),
            TargetKind::Striped(st) => fmt::write(&mut *s, format_args!("{st}")),
            TargetKind::Crypt(c) => fmt::write(&mut *s, format_args!("{}", ShowKey(c))),
        };
        // Writing into a String cannot fail; were it to, the kernel refuses the empty table.
        if r.is_err() {
            s.clear();
        }
        debug_assert!(s.len() <= capacity, "params_capacity is not an upper bound");
        s
    }
}

impl Target {
    /// What keeps this target from being loaded as it is: a key not made yet, or a device named
    /// by mapping name. `None` when the kernel can take it.
    pub(crate) fn unresolved(&self) -> Option<&'static str> {
        let by_name = |d: &Dev| matches!(d, Dev::Mapping(_));
        match &self.kind {
            TargetKind::Crypt(c) if matches!(c.key, CryptKey::Placeholder { .. }) => Some("the key is not made yet"),
            TargetKind::Crypt(Crypt { dev, .. }) | TargetKind::Linear(Linear { dev, .. }) if by_name(dev) => {
                Some("a device is named by mapping name, not number")
            }
            TargetKind::Striped(s) if s.devs.iter().any(|(d, _)| by_name(d)) => {
                Some("a device is named by mapping name, not number")
            }
            _ => None,
        }
    }

    /// This target with every device named by mapping name replaced by its number from `made`
    /// (the mappings made so far); `None` names the first one that is not there.
    pub(crate) fn with_devices(&self, made: &dyn Fn(&str) -> Option<DevNo>) -> Result<Target, NotMade> {
        let num = |d: &Dev| match d {
            Dev::Num(n) => Ok(Dev::Num(*n)),
            Dev::Mapping(name) => made(name).map(Dev::Num).ok_or_else(|| NotMade(name.clone())),
        };
        let kind = match &self.kind {
            TargetKind::Linear(l) => TargetKind::Linear(Linear { dev: num(&l.dev)?, offset: l.offset }),
            TargetKind::Striped(s) => TargetKind::Striped(Striped {
                chunk: s.chunk,
                devs: s.devs.iter().map(|(d, o)| Ok((num(d)?, *o))).collect::<Result<_, NotMade>>()?,
            }),
            TargetKind::Crypt(c) => TargetKind::Crypt(Crypt { dev: num(&c.dev)?, ..c.clone() }),
        };
        Ok(Target { start: self.start, len: self.len, kind })
    }

    /// This target with its key placeholder replaced by `key` (other targets are returned as
    /// they are).
    pub(crate) fn with_key(&self, key: CryptKey) -> Target {
        match &self.kind {
            TargetKind::Crypt(c) if matches!(c.key, CryptKey::Placeholder { .. }) => {
                Target { kind: TargetKind::Crypt(Crypt { key, ..c.clone() }), ..self.clone() }
            }
            _ => self.clone(),
        }
    }

    /// The key size a placeholder asks for.
    pub(crate) fn key_placeholder(&self) -> Option<usize> {
        match &self.kind {
            TargetKind::Crypt(Crypt { key: CryptKey::Placeholder { bytes }, .. }) => Some(*bytes),
            _ => None,
        }
    }

    /// An upper bound on the length of `params()`: the variable-length words plus room for every
    /// number (at most 20 digits each, a device number 21).
    fn params_capacity(&self) -> usize {
        let dev_len = |d: &Dev| match d {
            Dev::Num(_) => 21,
            Dev::Mapping(name) => name.len() + 12,
        };
        128 + match &self.kind {
            TargetKind::Striped(s) => s.devs.iter().map(|(d, _)| dev_len(d) + 21).sum(),
            TargetKind::Linear(l) => dev_len(&l.dev),
            TargetKind::Crypt(c) => {
                let key = match &c.key {
                    CryptKey::Placeholder { .. } => 3,
                    CryptKey::Logon { description, .. } => description.len() + 32,
                    CryptKey::Hex(hex) => hex.len(),
                };
                c.cipher.len() + key + dev_len(&c.dev) + c.options.iter().map(|o| o.len() + 1).sum::<usize>()
            }
        }
    }
}

/// `<start> <len> <type> <params>`, as `dmsetup table` prints it; hex keys redacted.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.start, self.len, self.kind.type_name())?;
        match &self.kind {
            TargetKind::Linear(l) => l.fmt(f),
            TargetKind::Striped(s) => s.fmt(f),
            TargetKind::Crypt(c) => c.fmt(f),
        }
    }
}

impl fmt::Display for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.dev, self.offset)
    }
}

impl fmt::Display for Striped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.devs.len(), self.chunk)?;
        for (dev, offset) in &self.devs {
            write!(f, " {dev} {offset}")?;
        }
        Ok(())
    }
}

impl Crypt {
    fn write(&self, f: &mut fmt::Formatter<'_>, show_key: bool) -> fmt::Result {
        write!(f, "{} ", self.cipher)?;
        match &self.key {
            CryptKey::Placeholder { .. } => f.write_str("KEY")?,
            CryptKey::Logon { bytes, description } => write!(f, ":{bytes}:logon:{description}")?,
            CryptKey::Hex(hex) if show_key => f.write_str(hex)?,
            CryptKey::Hex(_) => f.write_str("<redacted>")?,
        }
        write!(f, " {} {} {}", self.iv_offset, self.dev, self.offset)?;
        if !self.options.is_empty() {
            write!(f, " {}", self.options.len())?;
            for opt in &self.options {
                write!(f, " {opt}")?;
            }
        }
        Ok(())
    }
}

/// For logs only: a hex key prints as `<redacted>`.
impl fmt::Display for Crypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

/// The one way to format a crypt target with its key; private to this module.
struct ShowKey<'a>(&'a Crypt);

impl fmt::Display for ShowKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, true)
    }
}

/// One target of a live table, as the kernel reports it (`DM_TABLE_STATUS` with
/// `DM_STATUS_TABLE_FLAG`). `params` may hold a hex key, hence `Zeroizing` and the redacting
/// `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TableLine {
    pub(crate) start: Sectors,
    pub(crate) len: Sectors,
    pub(crate) target_type: String,
    pub(crate) params: Zeroizing<String>,
}

impl TableLine {
    /// `params` with the key of a crypt line replaced unless it is a keyring reference.
    fn redacted_params(&self) -> String {
        if self.target_type != "crypt" {
            return self.params.to_string();
        }
        self.params
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| if i == 1 && !w.starts_with(':') { "<redacted>" } else { w })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Parses `<start> <len> <type> <params>` (the `dmsetup table` form). The error never quotes the
/// line: it may hold a key.
impl FromStr for TableLine {
    type Err = Error;

    fn from_str(s: &str) -> Result<TableLine> {
        // Never quote the line: it may hold a key.
        let bad = || Error::invalid("device-mapper table line", "'<start> <length> <type> <params>'", "(not shown)");
        let mut rest = s;
        let start = next_word(&mut rest).parse().map_err(|_| bad())?;
        let len = next_word(&mut rest).parse().map_err(|_| bad())?;
        let target_type = next_word(&mut rest);
        if target_type.is_empty() {
            return Err(bad());
        }
        Ok(TableLine {
            start: Sectors(start),
            len: Sectors(len),
            target_type: target_type.to_owned(),
            params: Zeroizing::new(rest.trim().to_owned()),
        })
    }
}

/// Splits the first whitespace-separated word off `s`.
fn next_word<'a>(s: &mut &'a str) -> &'a str {
    let t = s.trim_start();
    let (word, rest) = t.split_at(t.find(char::is_whitespace).unwrap_or(t.len()));
    *s = rest;
    word
}

impl fmt::Display for TableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, len, ty) = (self.start, self.len, &self.target_type);
        write!(f, "{start} {len} {ty} {}", self.redacted_params())
    }
}

impl fmt::Debug for TableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableLine")
            .field("start", &self.start)
            .field("len", &self.len)
            .field("target_type", &self.target_type)
            .field("params", &self.redacted_params())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn dev(major: u32, minor: u32) -> Dev {
        Dev::Num(DevNo { major, minor })
    }

    fn crypt(key: CryptKey, options: &[&str]) -> Target {
        Target {
            start: Sectors(0),
            len: Sectors(2048),
            kind: TargetKind::Crypt(Crypt {
                cipher: "aes-xts-plain64".into(),
                key,
                iv_offset: Sectors(0),
                dev: dev(253, 0),
                offset: Sectors(0),
                options: options.iter().map(|o| o.to_string()).collect(),
            }),
        }
    }

    fn logon() -> CryptKey {
        CryptKey::Logon { bytes: 64, description: "ephemcrypt:abc".into() }
    }

    fn hex() -> CryptKey {
        CryptKey::Hex(Zeroizing::new(HEX.into()))
    }

    #[test]
    fn linear() {
        let t = Target {
            start: Sectors(0),
            len: Sectors(1000),
            kind: TargetKind::Linear(Linear { dev: dev(259, 1), offset: Sectors(2048) }),
        };
        assert_eq!(t.kind.type_name(), "linear");
        assert_eq!(*t.params(), "259:1 2048");
        assert_eq!(t.to_string(), "0 1000 linear 259:1 2048");
    }

    #[test]
    fn striped_three_devices() {
        let t = Target {
            start: Sectors(0),
            len: Sectors(3 * 512 * 100),
            kind: TargetKind::Striped(Striped {
                chunk: Sectors(512),
                devs: vec![(dev(259, 0), Sectors(0)), (dev(259, 1), Sectors(0)), (dev(259, 2), Sectors(8))],
            }),
        };
        assert_eq!(t.kind.type_name(), "striped");
        assert_eq!(*t.params(), "3 512 259:0 0 259:1 0 259:2 8");
        assert_eq!(t.to_string(), "0 153600 striped 3 512 259:0 0 259:1 0 259:2 8");
    }

    #[test]
    fn crypt_logon_key_without_options() {
        let t = crypt(logon(), &[]);
        assert_eq!(t.kind.type_name(), "crypt");
        assert_eq!(*t.params(), "aes-xts-plain64 :64:logon:ephemcrypt:abc 0 253:0 0");
        // A keyring reference is not secret: logs show it.
        assert_eq!(t.to_string(), "0 2048 crypt aes-xts-plain64 :64:logon:ephemcrypt:abc 0 253:0 0");
    }

    #[test]
    fn crypt_options_are_counted() {
        let t = crypt(logon(), &["no_read_workqueue", "no_write_workqueue", "sector_size:4096"]);
        assert_eq!(
            *t.params(),
            "aes-xts-plain64 :64:logon:ephemcrypt:abc 0 253:0 0 3 no_read_workqueue no_write_workqueue sector_size:4096"
        );
        let one = crypt(logon(), &["allow_discards"]);
        assert!(one.params().ends_with(" 0 253:0 0 1 allow_discards"));
    }

    #[test]
    fn hex_key_only_in_params() {
        let t = crypt(hex(), &["sector_size:4096"]);
        assert_eq!(*t.params(), format!("aes-xts-plain64 {HEX} 0 253:0 0 1 sector_size:4096"));
        let TargetKind::Crypt(c) = &t.kind else { unreachable!() };
        assert_eq!(c.to_string(), "aes-xts-plain64 <redacted> 0 253:0 0 1 sector_size:4096");
        for shown in [t.to_string(), format!("{t:?}"), format!("{t:#?}"), format!("{:?}", c.key)] {
            assert!(!shown.contains(HEX) && !shown.contains("0011"), "{shown}");
        }
        assert_eq!(format!("{:?}", c.key), "Hex(<redacted>)");
    }

    #[test]
    fn parse_table_line() {
        let l: TableLine = "0 153600 striped 3 512 259:0 0 259:1 0 259:2 8\n".parse().unwrap();
        assert_eq!((l.start, l.len, l.target_type.as_str()), (Sectors(0), Sectors(153600), "striped"));
        assert_eq!(*l.params, "3 512 259:0 0 259:1 0 259:2 8");
        assert_eq!(l.to_string(), "0 153600 striped 3 512 259:0 0 259:1 0 259:2 8");

        let e: TableLine = "0 10 error".parse().unwrap();
        assert_eq!(*e.params, "");
        for bad in ["", "x 10 linear 1:2 0", "0 linear", "0 10 "] {
            assert!(bad.parse::<TableLine>().is_err(), "{bad:?}");
        }
        let err = format!("0 x crypt aes {HEX} 0 1:2 0").parse::<TableLine>().unwrap_err();
        assert!(!err.to_string().contains(HEX));
    }

    #[test]
    fn table_line_redacts_hex_keys_only() {
        let hex_line: TableLine = format!("0 2048 crypt aes-xts-plain64 {HEX} 0 253:0 0").parse().unwrap();
        assert_eq!(hex_line.to_string(), "0 2048 crypt aes-xts-plain64 <redacted> 0 253:0 0");
        assert!(!format!("{hex_line:?}").contains(HEX));
        let logon_line: TableLine = "0 2048 crypt aes-xts-plain64 :64:logon:ephemcrypt:abc 0 253:0 0".parse().unwrap();
        assert!(logon_line.to_string().contains(":64:logon:ephemcrypt:abc"));
    }

    #[test]
    fn planned_table_shows_placeholders_and_is_not_loadable() {
        let mut t = crypt(CryptKey::Placeholder { bytes: 64 }, &["sector_size:4096"]);
        let TargetKind::Crypt(c) = &mut t.kind else { unreachable!() };
        c.dev = Dev::Mapping("ephemcrypt-stripe".into());
        assert_eq!(
            t.to_string(),
            "0 2048 crypt aes-xts-plain64 KEY 0 /dev/mapper/ephemcrypt-stripe 0 1 sector_size:4096"
        );
        assert_eq!(t.key_placeholder(), Some(64));
        assert!(t.unresolved().is_some());
        // Devices first: the key is still missing.
        let made = |name: &str| (name == "ephemcrypt-stripe").then_some(DevNo { major: 253, minor: 0 });
        let t = t.with_devices(&made).unwrap();
        assert_eq!(t.unresolved(), Some("the key is not made yet"));
        let t = t.with_key(logon());
        assert_eq!(t.unresolved(), None);
        assert_eq!(*t.params(), "aes-xts-plain64 :64:logon:ephemcrypt:abc 0 253:0 0 1 sector_size:4096");
        assert_eq!(t.key_placeholder(), None);
        // A mapping that was not made is named.
        let l = Target {
            start: Sectors(0),
            len: Sectors(8),
            kind: TargetKind::Linear(Linear { dev: Dev::Mapping("nope".into()), offset: Sectors(0) }),
        };
        assert_eq!(l.with_devices(&made), Err(NotMade("nope".into())));
        assert!(l.unresolved().is_some());
        let s = Target {
            start: Sectors(0),
            len: Sectors(8),
            kind: TargetKind::Striped(Striped {
                chunk: Sectors(8),
                devs: vec![(Dev::Mapping("x".into()), Sectors(0))],
            }),
        };
        assert!(s.unresolved().is_some());
    }
}
