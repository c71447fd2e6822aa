//! Entry points of the coverage-guided fuzz targets in `fuzz/` (see fuzz/README.md). `cargo fuzz`
//! builds the crate with `--cfg fuzzing`; nothing here exists in any other build.
//!
//! Each function takes the fuzzer's bytes, hands them to one parser the way ephemcrypt reads that
//! input, and asserts what must hold whatever the bytes are. Beyond "no panic, no hang, no
//! unbounded allocation" (which the fuzzer itself catches): round trips where the format has a
//! writer, outputs bounded by the input, and the safety rules the parsed result must keep (a disk
//! taken is a free one; a volume never runs past the end of a member disk; an error never quotes a
//! key).

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use zeroize::Zeroizing;

use crate::age::{base64_encode, Recipient};
use crate::classify::{selects, PERSISTENT_MODELS};
use crate::config::{
    glob_match, parse_size, split_cmdline, CipherSpec, Config, ConfigError, Fs, SectorSize, Selector, Source, Swap,
    Workqueues,
};
use crate::disk::{Disk, Probe};
use crate::dm::{Control, Crypt, CryptKey, Dev, Linear, Striped, TableLine, Target, TargetKind, TargetVersion};
use crate::header::{self, Header, HeaderError};
use crate::host::Host;
use crate::json::{self, Value};
use crate::paths::unescape_octal;
use crate::plan::{Plan, State, Volume};
use crate::signature::{self, Content, Regions};
use crate::status::{self, Status};
use crate::step::Step;
use crate::system::LinuxSystem;
use crate::units::{DevNo, Sectors};

// ---- the configuration file ----

/// The configuration file (`/etc/ephemcrypt.conf`): the bytes up to the first NUL are the file,
/// the bytes after it a kernel command line that overrides it (none without a NUL).
pub fn config(data: &[u8]) {
    let (file, cmdline) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let file = String::from_utf8_lossy(file);
    let cmdline = String::from_utf8_lossy(cmdline);
    let cmdline = cmdline.trim();
    let result = Config::load(Some((Path::new("/etc/ephemcrypt.conf"), &file)), cmdline);
    check_config(&result, file.len() + cmdline.len(), file.lines().count());
}

/// The kernel command line: `/proc/cmdline` is read as bytes and taken lossily, so any bytes reach
/// the parser. A word of ours (`rd.ephemcrypt`, `rd.ephemcrypt.<key>`) with a byte that was not
/// UTF-8 must be refused, never taken as some other value.
pub fn cmdline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.trim();
    let words = split_cmdline(text);
    assert!(words.iter().map(String::len).sum::<usize>() <= text.len(), "{words:?}");
    assert!(words.iter().all(|w| !w.contains('"')), "{words:?}");
    let result = Config::load(None, text);
    let ours_not_utf8 = words.iter().any(|w| {
        let name = w.split_once('=').map_or(w.as_str(), |(n, _)| n);
        (name == "rd.ephemcrypt" || name.starts_with("rd.ephemcrypt.")) && w.contains('\u{FFFD}')
    });
    assert!(!ours_not_utf8 || result.is_err(), "{text:?} gave {result:?}");
    check_config(&result, text.len(), 0);
}

/// A configuration either resolves to valid settings that read back the same when written out,
/// or fails with a message that names where the problem is and stays about the size of the input.
fn check_config(result: &Result<Config, ConfigError>, input_len: usize, file_lines: usize) {
    match result {
        Ok(c) => {
            check_valid(c);
            let (text, cmdline) = render(c);
            // A value with a line break (quoted on the kernel command line) has no file form.
            if text.lines().count() == crate::config::KEYS.len() {
                let again = Config::load(Some((Path::new("/rendered.conf"), &text)), cmdline);
                assert_eq!(again.as_ref(), Ok(c), "written out as:\n{text}{cmdline}");
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("configuration: "), "{msg}");
            // It quotes at most two values (a cipher's part twice), plus a list of what is accepted.
            assert!(msg.len() <= 2 * input_len + 2048, "{} bytes of message for {input_len} of input", msg.len());
            let sources: Vec<&Source> = match e {
                ConfigError::Syntax { source, .. }
                | ConfigError::UnknownKey { source, .. }
                | ConfigError::BadValue { source, .. } => vec![source],
                ConfigError::Conflict { a, b, .. } => vec![&a.source, &b.source],
            };
            for s in sources {
                if let Source::File { line, .. } = s {
                    assert!((1..=file_lines).contains(line), "line {line} of {file_lines}: {msg}");
                }
            }
        }
    }
}

/// What `Raw::resolve` promises of every configuration it returns (see `config::KEYS`).
fn check_valid(c: &Config) {
    assert!(!c.devices.is_empty());
    for s in c.devices.iter().chain(&c.exclude) {
        match s {
            Selector::Preset(_) => {}
            // Items are trimmed whole: `model: x` is the glob " x".
            Selector::Model(g) | Selector::Serial(g) => assert!(!g.is_empty() && !g.contains(',') && g.trim_end() == g),
            Selector::Path(g) => assert!(g.starts_with("/dev/") && !g.contains(',') && g.trim_end() == g),
        }
    }
    assert!(c.expect <= 64 && c.wait_secs <= 600);
    let spec = CipherSpec::parse(&c.cipher).expect("a resolved cipher parses");
    assert!(spec.key_bits().contains(&c.key_bits), "{} with {} bits", c.cipher, c.key_bits);
    if let SectorSize::Fixed(s) = c.sector_size {
        assert!([512, 1024, 2048, 4096].contains(&s));
    }
    assert!(c.chunk.0.is_power_of_two() && (4096..=1 << 30).contains(&c.chunk.0));
    match c.swap {
        Swap::None => {}
        Swap::Size(b) => assert!(b.0 >= 40 << 10),
        Swap::Percent(p) => assert!((1..=99).contains(&p)),
    }
    check_dir(&c.mount);
    for (i, b) in c.bind.iter().enumerate() {
        check_dir(b);
        assert!(!c.mount.starts_with(b) && !b.starts_with(&c.mount), "{} and {}", c.mount.display(), b.display());
        assert!(c.bind[i + 1..].iter().all(|o| !o.starts_with(b) && !b.starts_with(o)));
    }
    assert!(c.fs != Fs::None || c.bind.is_empty());
    assert!((1..=64).contains(&c.name.len()) && c.name.starts_with(|ch: char| ch.is_ascii_alphabetic()));
    assert!(c.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{}", c.name);
}

/// An absolute directory other than `/`, in normal form, that goes into a unit file unquoted.
fn check_dir(p: &Path) {
    let s = p.to_str().expect("configured paths are text");
    assert!(s.starts_with('/') && s != "/" && !s.ends_with('/') && !s.contains("//"), "{s}");
    assert!(!s.contains(|c: char| c.is_whitespace() || c == '%' || c == '\\'), "{s}");
    assert!(p.components().skip(1).all(|c| matches!(c, Component::Normal(_))), "{s}");
}

/// A configuration as a file (every key) and a kernel command line (only the off switch).
fn render(c: &Config) -> (String, &'static str) {
    let selectors = |v: &[Selector]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let yes = |b: bool| if b { "yes" } else { "no" };
    let sector_size = match c.sector_size {
        SectorSize::Auto => "auto".to_string(),
        SectorSize::Fixed(s) => s.to_string(),
    };
    let swap = match c.swap {
        Swap::None => "0".to_string(),
        Swap::Size(b) => b.0.to_string(),
        Swap::Percent(p) => format!("{p}%"),
    };
    let workqueues = match c.workqueues {
        Workqueues::Bypass => "bypass",
        Workqueues::BypassRead => "bypass-read",
        Workqueues::BypassWrite => "bypass-write",
        Workqueues::Kernel => "kernel",
    };
    let binds = c.bind.iter().map(|b| b.display().to_string()).collect::<Vec<_>>().join(",");
    let escrow = c
        .escrow
        .iter()
        .map(|r| match r {
            Recipient::X25519 { text, .. } => text.clone(),
            Recipient::SshEd25519 { blob, .. } => format!("ssh-ed25519 {}", base64_encode(blob, true)),
        })
        .collect::<Vec<_>>()
        .join(",");
    // Every key of KEYS, one a line: check_config counts the lines.
    let text = format!(
        "devices = {}\nexclude = {}\nforce = {}\nmin-size = {}\nexpect = {}\nwait = {}\ncipher = {}\nkey-bits = {}\n\
         sector-size = {sector_size}\ndiscard = {}\nworkqueues = {workqueues}\nchunk = {}\nswap = {swap}\nfs = {}\n\
         mount = {}\nbind = {binds}\non-failure = {}\nname = {}\nescrow = {escrow}\nescrow-fips = {}\nhold = {}\nguard = {}\n\
         measure = {}\nmeasure-pcr = {}\nnode-features = {}\n",
        selectors(&c.devices),
        selectors(&c.exclude),
        yes(c.force),
        c.min_size.0,
        c.expect,
        c.wait_secs,
        c.cipher,
        c.key_bits,
        yes(c.discard),
        c.chunk.0,
        c.fs.name(),
        c.mount.display(),
        c.on_failure.name(),
        c.name,
        if c.escrow_fips { "allow" } else { "refuse" },
        yes(c.hold),
        yes(c.guard),
        match c.measure {
            crate::config::Measure::No => "no",
            crate::config::Measure::Auto => "auto",
            crate::config::Measure::Required => "required",
        },
        c.measure_pcr,
        c.node_features.as_ref().map_or_else(|| "none".to_string(), |d| d.display().to_string()),
    );
    // A key added to KEYS and not written here would be lost on the way back (found by fuzzing,
    // cmdline: three were missing, and the round trip ran only on values with three line breaks).
    let written: Vec<&str> = text.lines().filter_map(|l| l.split_once(" = ").map(|(k, _)| k)).collect();
    assert!(crate::config::KEYS.iter().all(|k| written.contains(&k.name)), "render() lacks a key: {written:?}");
    (text, if c.enabled { "" } else { "rd.ephemcrypt=0" })
}

// ---- sizes, globs and the small parsers of sysfs and /proc text ----

/// Sizes (`min-size`, `chunk`, `swap`), device numbers (sysfs `dev`) and octal escapes (/proc)
/// from the bytes before the first NUL; a glob from those bytes matched against the bytes after
/// it, checked against a plain dynamic-programming matcher.
pub fn size_glob(data: &[u8]) {
    let (a, b) = match data.iter().position(|&c| c == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));

    let size = parse_size(&a);
    assert_eq!(size.map(|b| b.0), size_reference(&a), "{a:?}");
    if let Some(s) = size {
        assert_eq!(parse_size(&s.0.to_string()), Some(s));
        // The human form reads back where it is exact ("4G", "100B"; not "1.5G").
        let shown = s.to_string();
        if !shown.contains('.') {
            assert_eq!(parse_size(&shown), Some(s), "{shown}");
        }
    }
    if let Some(d) = DevNo::parse(&a) {
        assert_eq!(DevNo::parse(&d.to_string()), Some(d));
        assert_eq!(DevNo::from_dev_t(d.to_dev_t()), d);
    }
    let unescaped = unescape_octal(&a);
    if !a.contains('\\') {
        assert_eq!(unescaped, *a);
    }

    assert_eq!(glob_match(&a, &b), glob_reference(&a, &b), "pattern {a:?} text {b:?}");
    assert!(glob_match("*", &b));
    assert!(glob_match(&glob_literal(&b), &b), "{b:?}");
}

/// `parse_size` written another way: digits into a wide integer, then the suffix.
fn size_reference(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_suffix("iB").or_else(|| v.strip_suffix('B')).unwrap_or(v);
    let shift = match v.chars().last()?.to_ascii_uppercase() {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => 0,
    };
    let digits = if shift > 0 { &v[..v.len() - 1] } else { v };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u128 = 0;
    for d in digits.bytes() {
        n = n * 10 + u128::from(d - b'0');
        if n > u128::from(u64::MAX) {
            return None;
        }
    }
    u64::try_from(n << shift).ok()
}

/// A glob that matches exactly `text`: each special character in a class of its own.
fn glob_literal(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '*' | '?' | '[' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

/// One element of a glob, as `config::glob_match` documents them.
enum Element {
    Star,
    Any,
    Char(char),
    Class { negate: bool, ranges: Vec<(char, char)> },
}

impl Element {
    fn matches(&self, c: char) -> bool {
        match self {
            Element::Star | Element::Any => true,
            Element::Char(x) => *x == c,
            Element::Class { negate, ranges } => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negate,
        }
    }
}

/// The elements of a glob: `*`, `?`, a class `[...]` closed by the first `]` at least two
/// characters on (`[]]` is the class of `]`; `[!...]` and `[^...]` negate; `a-z` is a range), and
/// characters, an unclosed `[` among them.
fn glob_elements(pattern: &[char]) -> Vec<Element> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '*' => out.push(Element::Star),
            '?' => out.push(Element::Any),
            '[' => {
                if let Some(end) = (i + 2..pattern.len()).find(|&j| pattern[j] == ']') {
                    let negate = matches!(pattern[i + 1], '!' | '^');
                    let body = &pattern[if negate { i + 2 } else { i + 1 }..end];
                    let mut ranges = Vec::new();
                    let mut k = 0;
                    while k < body.len() {
                        if k + 2 < body.len() && body[k + 1] == '-' {
                            ranges.push((body[k], body[k + 2]));
                            k += 3;
                        } else {
                            ranges.push((body[k], body[k]));
                            k += 1;
                        }
                    }
                    out.push(Element::Class { negate, ranges });
                    i = end + 1;
                    continue;
                }
                out.push(Element::Char('['));
            }
            c => out.push(Element::Char(c)),
        }
        i += 1;
    }
    out
}

/// Whether a glob matches a text, by dynamic programming over (element, text position).
fn glob_reference(pattern: &str, text: &str) -> bool {
    let elements = glob_elements(&pattern.chars().collect::<Vec<_>>());
    let text: Vec<char> = text.chars().collect();
    // row[j]: the elements so far match the first j characters.
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for e in &elements {
        let mut next = vec![false; text.len() + 1];
        match e {
            Element::Star => {
                let mut any = false;
                for j in 0..=text.len() {
                    any |= row[j];
                    next[j] = any;
                }
            }
            _ => {
                for j in 0..text.len() {
                    next[j + 1] = row[j] && e.matches(text[j]);
                }
            }
        }
        row = next;
    }
    row[text.len()]
}

// ---- the host: sysfs, /proc and /dev under a root directory ----

/// The most entries an input makes, and the largest file (a probe image) it makes, in bytes.
const MAX_ENTRIES: usize = 256;
const MAX_FILE: u64 = 8 << 20;

/// Where host trees are made: `$EPHEMCRYPT_FUZZ_TMP` (fuzz/run.sh makes one under /dev/shm), else
/// /dev/shm, else the temp directory; one tree per process, made anew for every input.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("EPHEMCRYPT_FUZZ_TMP").map(PathBuf::from).unwrap_or_else(|| {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            }
        });
        base.join(format!("ephemcrypt-fuzz-host-{}", std::process::id()))
    })
}

/// `EPHEMCRYPT_FUZZ_SHOW=1`: print the plan of each input to stderr (to see what an input means).
fn show() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("EPHEMCRYPT_FUZZ_SHOW").is_some_and(|v| v == "1"))
}

/// A whole machine from a directory tree, as `ephemcrypt plan --host DIR` (and `needs`, `status`)
/// read it. The input is a list of entries, each on a line that starts with `%`; what follows an
/// entry's line, up to the newline before the next `%` line, is its content:
///
/// ```text
/// %f PATH          a file holding the content
/// %w PATH OFFSET   the content written at OFFSET into the file (made if missing)
/// %s PATH SIZE     the file cut or extended (sparse) to SIZE bytes
/// %d PATH          a directory
/// %l PATH TARGET   a symbolic link (only at dev/disk/*/* and sysroot/{,usr/}sbin/init)
/// ```
///
/// PATH is relative to the root and starts with sys, proc, dev, etc, run or sysroot (the new root,
/// passed as `--newroot` when it is there). The tree is made under /dev/shm; nothing is ever made
/// outside it, and no link is made where the code under test would follow it.
pub fn host_sysfs(data: &[u8]) {
    let root = scratch();
    if fs::symlink_metadata(root).is_ok() {
        fs::remove_dir_all(root).expect("remove the previous tree");
    }
    fs::create_dir_all(root).expect("make the tree's root");
    build_tree(root, data);

    let host = Host::new(root);
    let newroot = root.join("sysroot");
    let newroot = fs::symlink_metadata(&newroot).is_ok_and(|m| m.is_dir()).then_some(newroot);
    let mut sys = LinuxSystem::observer(root);
    let config = host.config(None);
    let plan = crate::setup::show(&host, None, newroot.as_deref(), &mut sys);
    if show() {
        match &plan {
            Ok(p) => eprint!("{p}"),
            Err(e) => eprintln!("error: {e}"),
        }
    }
    match plan {
        Ok(plan) => check_plan(&plan, config.as_ref().expect("a plan was made: the configuration reads")),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(c) = host.config_file_only(None) {
        check_valid(&c);
    }
    match crate::setup::status(&host, &mut sys) {
        Ok(s) => check_status(&s),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    fs::remove_dir_all(root).expect("remove the tree");
}

/// Make the entries of `data` under `root` (see [`host_sysfs`]); entries that cannot be made are
/// skipped.
fn build_tree(root: &Path, data: &[u8]) {
    let mut made = HashSet::new();
    let starts: Vec<usize> = (0..data.len()).filter(|&i| data[i] == b'%' && (i == 0 || data[i - 1] == b'\n')).collect();
    for (n, &start) in starts.iter().enumerate().take(MAX_ENTRIES) {
        let end = starts.get(n + 1).map_or(data.len(), |&next| next - 1);
        let entry = &data[start + 1..end];
        let (line, content) = match entry.iter().position(|&c| c == b'\n') {
            Some(i) => (&entry[..i], &entry[i + 1..]),
            None => (entry, &[][..]),
        };
        let Some((&op, args)) = line.split_first() else { continue };
        let args = args.strip_prefix(b" ").unwrap_or(args);
        let _ = make_entry(root, &mut made, op, args, content);
    }
}

fn make_entry(root: &Path, made: &mut HashSet<PathBuf>, op: u8, args: &[u8], content: &[u8]) -> Option<()> {
    match op {
        b'f' => {
            let file = file_path(root, made, args)?;
            fs::write(file, content).ok()
        }
        b'w' => {
            let (path, offset) = number(args)?;
            offset.checked_add(content.len() as u64).filter(|end| *end <= MAX_FILE)?;
            let file =
                fs::OpenOptions::new().write(true).create(true).truncate(false).open(file_path(root, made, path)?);
            file.ok()?.write_all_at(content, offset).ok()
        }
        b's' => {
            let (path, size) = number(args)?;
            (size <= MAX_FILE).then_some(())?;
            let file =
                fs::OpenOptions::new().write(true).create(true).truncate(false).open(file_path(root, made, path)?);
            file.ok()?.set_len(size).ok()
        }
        b'd' => {
            let parts = parts(args)?;
            make_dirs(root, made, &parts).map(drop)
        }
        b'l' => {
            let i = args.iter().position(|&c| c == b' ')?;
            let (path, target) = (&args[..i], &args[i + 1..]);
            let parts = parts(path)?;
            let linkable = |p: &[&[u8]]| {
                p == [&b"sysroot"[..], b"sbin", b"init"] || p == [&b"sysroot"[..], b"usr", b"sbin", b"init"]
            };
            let allowed = (parts.len() == 4 && parts[0] == b"dev" && parts[1] == b"disk") || linkable(&parts);
            (allowed && !target.is_empty() && !target.contains(&0)).then_some(())?;
            let dir = make_dirs(root, made, &parts[..parts.len() - 1])?;
            std::os::unix::fs::symlink(OsStr::from_bytes(target), dir.join(OsStr::from_bytes(parts[parts.len() - 1])))
                .ok()
        }
        _ => None,
    }
}

/// A path and the number after its last space (an offset, a size).
fn number(args: &[u8]) -> Option<(&[u8], u64)> {
    let i = args.iter().rposition(|&c| c == b' ')?;
    let n = std::str::from_utf8(&args[i + 1..]).ok()?.parse().ok()?;
    Some((&args[..i], n))
}

/// The components of a relative path of the tree: at most 10, none empty, `.` or `..`, the first
/// one of the tops a machine has.
fn parts(path: &[u8]) -> Option<Vec<&[u8]>> {
    let parts: Vec<&[u8]> = path.split(|&c| c == b'/').filter(|p| !p.is_empty()).collect();
    let top = [&b"sys"[..], b"proc", b"dev", b"etc", b"run", b"sysroot"];
    let ok = (1..=10).contains(&parts.len())
        && top.contains(&parts[0])
        && parts.iter().all(|p| *p != b"." && *p != b".." && !p.contains(&0));
    ok.then_some(parts)
}

/// Make the directories of `parts` under `root`, refusing to go through anything but a directory
/// (a link made earlier): the tree never reaches outside `root`. `made`: the directories made so
/// far, which need no second look.
fn make_dirs(root: &Path, made: &mut HashSet<PathBuf>, parts: &[&[u8]]) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(OsStr::from_bytes(part));
        if made.contains(&p) {
            continue;
        }
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return None,
            Err(_) => fs::create_dir(&p).ok()?,
        }
        made.insert(p.clone());
    }
    Some(p)
}

/// The full path of a file entry, its directories made; `None` where a directory or a link is.
fn file_path(root: &Path, made: &mut HashSet<PathBuf>, path: &[u8]) -> Option<PathBuf> {
    let parts = parts(path)?;
    let (name, dirs) = parts.split_last()?;
    let file = make_dirs(root, made, dirs)?.join(OsStr::from_bytes(name));
    match fs::symlink_metadata(&file) {
        Ok(m) if !m.is_file() => None,
        _ => Some(file),
    }
}

/// What every plan must keep, whatever the machine looks like.
fn check_plan(plan: &Plan, config: &Config) {
    let text = plan.to_string();
    assert!(text.starts_with("disks:\n"), "{text}");
    let json = plan.to_json();
    assert_eq!(json::parse(&json.pretty()).as_ref(), Some(&json));

    // Entries named alike (not UTF-8, taken lossily) are refused unread; the others are read once.
    let mut names: Vec<&str> =
        plan.disks.iter().filter(|a| a.disk.broken.is_none()).map(|a| a.disk.name.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "a disk read twice");

    let used: Vec<&Disk> = plan.disks.iter().filter(|a| a.verdict.is_use()).map(|a| &a.disk).collect();
    for d in &used {
        check_free(d, config);
    }
    match &plan.state {
        State::Ready(v) => check_volume(v, &used, plan),
        other => assert!(used.is_empty(), "disks to use but no volume ({other:?})"),
    }
    for s in plan.steps.iter().chain(&plan.fallback) {
        check_step(s, &plan.newroot);
    }
}

/// A disk is taken only when it is selected, not excluded, not in use and positively free.
fn check_free(d: &Disk, config: &Config) {
    assert!(d.broken.is_none(), "{d:?}");
    assert!(d.mounts.is_empty() && d.partitions.is_empty() && d.holders.is_empty() && d.swaps.is_empty(), "{d:?}");
    assert!(!d.read_only && !d.removable && d.size >= config.min_size, "{d:?}");
    assert!(!PERSISTENT_MODELS.iter().any(|(m, _)| *m == d.model), "{d:?}");
    assert!(config.devices.iter().any(|s| selects(s, d)), "{d:?}");
    assert!(!config.exclude.iter().any(|s| selects(s, d)), "{d:?}");
    match &d.probe {
        Probe::Blank | Probe::Ours(_) => {}
        Probe::Found(_) | Probe::Damaged(_) | Probe::Data => assert!(config.force, "{d:?}"),
        Probe::NotProbed | Probe::Failed(_) => panic!("a disk used without a probe that read it: {d:?}"),
    }
}

/// The layout: one member per disk taken (never one device twice), none written past its end,
/// and the slices and tables adding up.
fn check_volume(v: &Volume, used: &[&Disk], plan: &Plan) {
    let n = v.members.len();
    assert!((1..=header::MAX_MEMBERS).contains(&n));
    assert_eq!(
        v.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        used.iter().map(|d| d.name.as_str()).collect::<Vec<_>>()
    );
    let mut devs: Vec<DevNo> = v.members.iter().map(|m| m.dev).collect();
    devs.sort_unstable();
    devs.dedup();
    assert_eq!(devs.len(), n, "one device twice in the volume: {:?}", v.members);
    let per_member = v.stripe.as_ref().map_or(v.crypt.len, |s| s.per_disk);
    for m in &v.members {
        assert!(header::RESERVED.0 + per_member.0 <= m.size.sectors().0, "the volume runs past the end of {m:?}");
    }
    match &v.stripe {
        Some(s) => {
            assert!(n > 1);
            assert_eq!(s.len.0, s.per_disk.0 * n as u64);
            assert_eq!(s.per_disk.0 % s.chunk.0, 0);
            assert_eq!(v.crypt.len, s.len);
        }
        None => assert_eq!(n, 1),
    }
    assert!(v.crypt.len.0 > 0);
    assert_eq!(v.crypt.len.0 * 512 % u64::from(v.crypt.sector_size), 0, "{:?}", v.crypt);
    for d in used {
        assert!(d.logical_block_size <= v.crypt.sector_size, "{d:?}");
    }
    match (&v.swap, &v.data) {
        (None, None) => {}
        (Some(s), Some(d)) => {
            assert_eq!(s.start.0, 0);
            assert_eq!(d.start, s.len);
            assert_eq!(s.len.0 + d.len.0, v.crypt.len.0);
            assert!(s.len.0 > 0 && d.len.0 > 0 && s.len.0 % 8 == 0);
        }
        other => panic!("swap without data or data without swap: {other:?}"),
    }
    let crypt = plan.steps.iter().find_map(|s| match s {
        Step::Mapping(m) if m.name == v.crypt.name => Some(m),
        _ => None,
    });
    let crypt = crypt.expect("a crypt mapping step");
    assert_eq!(crypt.table.iter().map(|t| t.len.0).sum::<u64>(), v.crypt.len.0);
}

fn check_step(s: &Step, newroot: &Path) {
    let _ = (s.to_string(), s.title());
    let j = s.to_json();
    assert_eq!(json::parse(&j.pretty()).as_ref(), Some(&j));
    let under =
        |p: &Path| assert!(p.starts_with(newroot) && p != newroot, "{} outside {}", p.display(), newroot.display());
    match s {
        Step::Mapping(m) => {
            // What device-mapper takes (DM_NAME_LEN 128, DM_UUID_LEN 129, with the NUL).
            assert!(!m.name.is_empty() && m.name.len() < 128 && !m.name.contains(['/', '\0']), "{}", m.name);
            assert!(m.uuid.len() < 129 && !m.uuid.contains('\0'), "{}", m.uuid);
            let mut at = 0;
            for t in &m.table {
                assert_eq!(t.start.0, at, "{}: a gap or an overlap in the table", m.name);
                at += t.len.0;
            }
        }
        Step::Headers(members) => {
            for h in members.iter().map(|m| &m.header) {
                let back = Header::decode(&h.encode()).expect("a planned header decodes");
                assert_eq!(
                    (back.member, back.members, back.volume_len, back.member_len),
                    (h.member, h.members, h.volume_len, h.member_len)
                );
            }
        }
        Step::Mkdir { path } | Step::Tmpfs { target: path } | Step::Mount { target: path, .. } => under(path),
        Step::Bind { source, target } => {
            under(source);
            under(target);
        }
        _ => {}
    }
}

// ---- the signature probe and the on-disk header ----

/// The first byte chooses: even, a disk image for the probe; odd, a header block.
///
/// A disk image is `size: u64 LE`, `head_len: u32 LE`, `tail_at: u64 LE`, then `head_len` bytes
/// at offset 0 and the rest at `tail_at` (at most the end of the disk), zeros elsewhere; an input
/// of fewer than 20 bytes is a whole disk. The probe reads what it always reads of such a disk.
///
/// A header block is checked as it is, then with the magic and a checksum that fits put in, so
/// that the fields behind them are reached.
pub fn signature_header(data: &[u8]) {
    match data.split_first() {
        Some((&mode, rest)) if mode & 1 == 1 => header_block(rest),
        Some((_, rest)) => disk_image(rest),
        None => {}
    }
}

fn disk_image(data: &[u8]) {
    let le = |b: &[u8]| -> u64 { b.iter().rev().fold(0, |n, &c| n << 8 | u64::from(c)) };
    let (size, head, tail_at, tail) = match data.len() {
        0..20 => (data.len() as u64, data, 0, &[][..]),
        _ => {
            let body = &data[20..];
            let (head, tail) = body.split_at(usize::try_from(le(&data[8..12])).unwrap_or(usize::MAX).min(body.len()));
            (le(&data[..8]), head, le(&data[12..20]), tail)
        }
    };
    let tail_at = tail_at.min(size.saturating_sub(tail.len() as u64));
    // The bytes of each piece that `len` bytes at `off` of the disk hold: (offset in the read,
    // bytes); the later piece wins where they overlap.
    let covered = |off: u64, len: usize| {
        [(0, head), (tail_at, tail)].into_iter().filter_map(move |(at, piece)| {
            let start = at.max(off);
            let end = (at + piece.len() as u64).min(off + len as u64).min(size);
            // Each difference is below `len` or `piece.len()`, a usize.
            let us = |n: u64| usize::try_from(n).expect("below a slice's length");
            (start < end).then(|| (us(start - off), &piece[us(start - at)..us(end - at)]))
        })
    };
    let read = |off: u64, len: usize| -> Vec<u8> {
        let mut b = vec![0u8; len];
        for (at, bytes) in covered(off, len) {
            b[at..at + bytes.len()].copy_from_slice(bytes);
        }
        b
    };
    let regions = signature::regions(size);
    check_regions(size, &regions);
    let parts: Vec<(u64, Vec<u8>)> = regions.iter().map(|&(off, len)| (off, read(off, len))).collect();
    let content = signature::examine(&Regions::from_parts(&parts, size));
    // Zeros everywhere but where the pieces are: look there only (a 2 MiB scan per input would
    // halve the speed), at what was read (where the pieces overlap, the later one's bytes).
    let all_zero = regions.iter().zip(&parts).all(|(&(off, len), (_, read))| {
        covered(off, len).all(|(at, bytes)| read[at..at + bytes.len()].iter().all(|&c| c == 0))
    });
    assert_eq!(matches!(content, Content::Blank), all_zero, "{content:?}");
    match &content {
        Content::Ours(h) => assert_eq!(Header::decode(&read(0, header::SIZE)).as_ref(), Ok(&**h)),
        Content::Damaged(_) => assert!(read(0, 16) == header::MAGIC),
        _ => {}
    }
}

/// What the probe reads: the whole of a small disk; else the first and last MiB and 4 KiB blocks
/// between them, inside the disk, apart, and about 2.3 MiB in all.
fn check_regions(size: u64, regions: &[(u64, usize)]) {
    let p = signature::PROBE_BYTES as u64;
    let block = signature::BLOCK as u64;
    if size <= 2 * p {
        assert_eq!(regions, [(0, usize::try_from(size).expect("at most 2 MiB"))]);
        return;
    }
    assert_eq!(regions[..2], [(0, signature::PROBE_BYTES), (size - p, signature::PROBE_BYTES)]);
    assert!(regions.len() <= 2 + 9 + usize::try_from(signature::SPREAD_BLOCKS).expect("64"), "{regions:?}");
    for &(off, len) in &regions[2..] {
        assert!(len as u64 == block && off % block == 0 && off >= p && off + block <= size - p, "{regions:?}");
    }
    let mut sorted = regions.to_vec();
    sorted.sort_unstable();
    assert!(sorted.windows(2).all(|w| w[0].0 + w[0].1 as u64 <= w[1].0), "{regions:?}");
}

fn header_block(data: &[u8]) {
    match Header::decode(data) {
        // What decode takes is what encode writes, byte for byte.
        Ok(h) => {
            check_header(&h);
            assert_eq!(h.encode(), data[..header::SIZE]);
        }
        Err(e) => check_refused(&e),
    }
    let mut b = data.to_vec();
    b.resize(header::SIZE, 0);
    b[..16].copy_from_slice(header::MAGIC);
    let crc = header::crc32c(&b[..header::SIZE - 4]);
    b[header::SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
    match Header::decode(&b) {
        Ok(h) => {
            check_header(&h);
            assert_eq!(h.encode(), b, "a header decoded from bytes encode would not write");
            // On a disk, with the rest of the reserved area zero but for the escrow (an age file)
            // where the header says it is, it is ours unless a signature (which always wins) is
            // in it too. A header naming an escrow that is not there is someone's data (found by
            // fuzzing, signature_header: this target had not learnt the escrow).
            const AGE: &[u8] = b"age-encryption.org/v1\n";
            let (at, len) = (h.escrow.0 as usize, h.escrow.1 as usize);
            let mut disk = b;
            disk.resize((2 * header::SIZE).max(at + len.max(AGE.len())), 0);
            // The disk is as large as the member's share of the volume needs (zeros where nothing
            // is read), or one sector smaller: then the header is foreign data.
            let fit = (h.data_offset.0 + h.member_len.0) * 512;
            let examine = |disk: &[u8], size: u64| {
                let parts = [(0, disk.to_vec()), (size - 4096, vec![0; 4096])];
                signature::examine(&Regions::from_parts(&parts, size))
            };
            match examine(&disk, fit - 512) {
                Content::Damaged(HeaderError::BadField { field: "member length", .. }) | Content::Known(_) => {}
                other => panic!("a header longer than its disk read as {other:?}"),
            }
            if len > 0 {
                match examine(&disk, fit) {
                    Content::Data | Content::Known(_) => {}
                    other => panic!("a header whose escrow is missing read as {other:?}"),
                }
                disk[at..at + AGE.len()].copy_from_slice(AGE);
            }
            match examine(&disk, fit) {
                Content::Ours(found) => assert_eq!((*found, len == 0 || len >= AGE.len()), (h, true)),
                Content::Known(_) => {}
                // An escrow shorter than the age file's first line cannot hold one.
                Content::Data if len > 0 && len < AGE.len() => {}
                other => panic!("a valid header read as {other:?}"),
            }
        }
        Err(e) => {
            assert!(
                matches!(
                    e,
                    HeaderError::UnknownVersion(_) | HeaderError::Inconsistent(_) | HeaderError::BadField { .. }
                ),
                "{e:?}"
            );
            check_refused(&e);
        }
    }
}

/// A refusal is shown on one line, with nothing a terminal or the journal acts on.
fn check_refused(e: &HeaderError) {
    let shown = e.to_string();
    assert!(!shown.is_empty());
    assert!(crate::escape::is_plain(&shown.replace('\\', "")), "{shown:?}");
}

fn check_header(h: &Header) {
    assert!((1..=u32::try_from(header::MAX_MEMBERS).expect("64")).contains(&h.members) && h.member < h.members);
    assert_eq!(h.serials.len(), h.members as usize);
    assert_eq!(h.check(), Ok(()));
    assert!(crate::escape::is_plain(&h.to_string()), "{h}");
    assert_eq!(Header::decode(&h.encode()).as_ref(), Ok(h));
}

// ---- the status file and the JSON reader ----

// ---- TPM responses ----

/// A TPM's response to one of the three commands setup sends (`/dev/tpmrm0`: hostile bytes). Byte
/// 0 chooses the command (GetCapability of the PCR banks, PCR_Extend, PCR_Read); for PCR_Read
/// bytes 1 and 2 the PCR and the bank asked for; the rest is the response. Whatever the bytes: a
/// response accepted is exactly as long as its header says, with code 0; the banks are unique,
/// sorted, not empty, and a response written from them decodes to them again; a PCR value has its
/// bank's size; an error's text is short and free of control characters.
pub fn tpm_response(data: &[u8]) {
    use crate::tpm::codec::{self, Bank, TpmError};
    let Some((&which, rest)) = data.split_first() else { return };
    let sized = |r: &[u8]| {
        r.len() >= 10
            && r.get(2..6).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) == u32::try_from(r.len()).ok()
            && r.get(6..10) == Some(&[0, 0, 0, 0][..])
    };
    let error = |e: TpmError| {
        let text = e.to_string();
        assert!(text.len() < 200 && !text.chars().any(char::is_control), "{text:?}");
    };
    match which % 3 {
        0 => match codec::parse_pcr_banks(rest) {
            Ok(banks) => {
                assert!(sized(rest) && !banks.is_empty() && banks.windows(2).all(|w| w[0] < w[1]), "{banks:?}");
                let mut body = vec![0u8, 0, 0, 0, 5];
                body.extend_from_slice(&u32::try_from(banks.len()).unwrap_or(0).to_be_bytes());
                for b in &banks {
                    body.extend_from_slice(&b.alg().to_be_bytes());
                    body.extend_from_slice(&[3, 0xff, 0xff, 0xff]);
                }
                let mut again = vec![0x80, 0x01];
                again.extend_from_slice(&u32::try_from(10 + body.len()).unwrap_or(0).to_be_bytes());
                again.extend_from_slice(&[0, 0, 0, 0]);
                again.extend_from_slice(&body);
                assert_eq!(codec::parse_pcr_banks(&again), Ok(banks));
            }
            Err(e) => error(e),
        },
        1 => match codec::parse_pcr_extend(rest) {
            Ok(()) => assert!(sized(rest) && rest.len() >= 19),
            Err(e) => error(e),
        },
        _ => {
            let (Some(&pcr), Some(&bank), Some(resp)) = (rest.first(), rest.get(1), rest.get(2..)) else { return };
            let bank = Bank::ALL[usize::from(bank) % Bank::ALL.len()];
            match codec::parse_pcr_read(resp, u32::from(pcr % 24), bank) {
                Ok(value) => assert!(sized(resp) && value.len() == bank.len()),
                Err(e) => error(e),
            }
        }
    }
}

/// `/run/ephemcrypt/status.json` (read as text: here lossily, so that any bytes count). Any JSON
/// reads back the same after writing it out, nests at most 32 levels, and writes out at most a
/// fixed multiple of its size; a status document reads back the same after writing it out.
pub fn status_json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(v) = json::parse(&text) {
        assert!(depth(&v) <= 32);
        let pretty = v.pretty();
        assert!(pretty.len() <= 64 * text.len() + 16, "{} bytes written out of {}", pretty.len(), text.len());
        assert_eq!(json::parse(&pretty).as_ref(), Some(&v));
    }
    match status::parse(&text) {
        Ok(s) => check_status(&s),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Arr(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Obj(o) => 1 + o.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 1,
    }
}

fn check_status(s: &Status) {
    let text = s.to_json().pretty();
    assert_eq!(status::parse(&text).as_ref(), Ok(s), "written out as:\n{text}");
    let _ = s.render();
}

// ---- device-mapper: the kernel's replies ----

/// One answer of the stand-in kernel: an errno, or bytes copied over the request buffer.
#[derive(Debug, Clone)]
enum Reply {
    Errno(i32),
    Bytes(Vec<u8>),
}

/// The stand-in for the kernel's device-mapper while [`dm_reply`] runs.
#[derive(Default)]
struct Kernel {
    replies: VecDeque<Reply>,
    calls: usize,
    /// The first 312 bytes (`struct dm_ioctl`) of the last request, after the reply was copied.
    last_header: Vec<u8>,
    last_errno: Option<i32>,
    /// The last DM_TABLE_LOAD request, as sent.
    load: Option<Vec<u8>>,
}

thread_local! {
    static KERNEL: RefCell<Kernel> = RefCell::new(Kernel::default());
}

const DM_HEADER: usize = 312;
const DM_SPEC: usize = 40;

/// The device-mapper ioctls of the `dm_reply` fuzz target. Its binary defines `ioctl` itself (the
/// executable's symbol wins over the C library's), so ephemcrypt's requests on the control device
/// come here instead of to the kernel: `nr` is the request's number (`_IOC_NR`: 9 for
/// DM_TABLE_LOAD) and `buf` the whole request buffer, `data_size` bytes. The answer is the next reply of the input: an errno, or its
/// bytes over the start of the buffer (the rest stays as sent). No reply left is EIO.
pub fn dm_kernel(nr: u8, buf: &mut [u8]) -> Result<(), i32> {
    KERNEL.with_borrow_mut(|k| {
        k.calls += 1;
        if nr == 9 {
            k.load = Some(buf.to_vec());
        }
        let reply = k.replies.pop_front().unwrap_or(Reply::Errno(libc::EIO));
        k.last_errno = None;
        match reply {
            Reply::Errno(e) => {
                k.last_errno = Some(e);
                Err(e)
            }
            Reply::Bytes(b) => {
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                k.last_header = buf[..DM_HEADER.min(buf.len())].to_vec();
                Ok(())
            }
        }
    })
}

/// Queue the stand-in kernel's replies; forget the last request.
fn kernel_replies(replies: impl IntoIterator<Item = Reply>) {
    KERNEL.with_borrow_mut(|k| *k = Kernel { replies: replies.into_iter().collect(), ..Kernel::default() });
}

fn kernel<T>(f: impl FnOnce(&Kernel) -> T) -> T {
    KERNEL.with_borrow(f)
}

/// The replies of an input: each an errno byte (0: bytes follow), a length (u16 LE) and that many
/// bytes (or what is left).
fn parse_replies(mut data: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while let Some((&errno, rest)) = data.split_first() {
        if out.len() == 32 {
            break;
        }
        if errno != 0 {
            out.push(Reply::Errno(i32::from(errno)));
            data = rest;
            continue;
        }
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (reply, rest) = rest.split_at(len.min(rest.len()));
        out.push(Reply::Bytes(reply.to_vec()));
        data = rest;
    }
    out
}

fn ne32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn ne64(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A length or offset in a device-mapper reply built from a fuzz input (a few KiB) as the u32 the
/// kernel writes.
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("a reply of a fuzz input's size")
}

/// A reply's `struct dm_ioctl`: data area right after it, `data_len` bytes long.
fn reply_header(data_len: usize, target_count: u32) -> Vec<u8> {
    let mut b = vec![0u8; DM_HEADER];
    for (at, v) in
        [(0, 4), (4, 48), (8, 0), (12, len32(DM_HEADER + data_len)), (16, len32(DM_HEADER)), (20, target_count)]
    {
        b[at..at + 4].copy_from_slice(&u32::to_ne_bytes(v));
    }
    b
}

/// A DM_LIST_VERSIONS reply as the kernel writes it: a chain of entries whose `next` counts from
/// the entry, 0 on the last.
fn versions_reply(versions: &[TargetVersion]) -> Vec<u8> {
    let mut data = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let len = (16 + v.name.len() + 1).next_multiple_of(8);
        let next = if i + 1 == versions.len() { 0 } else { len32(len) };
        data.extend(next.to_ne_bytes());
        v.version.iter().for_each(|n| data.extend(n.to_ne_bytes()));
        data.extend(v.name.as_bytes());
        data.resize(data.len() + len - 16 - v.name.len(), 0);
    }
    let mut b = reply_header(data.len(), 0);
    b.extend(data);
    b
}

/// A DM_TABLE_STATUS reply as the kernel writes it: `next` counts from the data area's start.
fn table_reply(lines: &[TableLine]) -> Vec<u8> {
    let mut data = Vec::new();
    for l in lines {
        data.resize(data.len().next_multiple_of(8), 0);
        let at = data.len();
        data.extend(l.start.0.to_ne_bytes());
        data.extend(l.len.0.to_ne_bytes());
        data.extend(0i32.to_ne_bytes());
        data.extend(len32((at + DM_SPEC + l.params.len() + 1).next_multiple_of(8)).to_ne_bytes());
        let mut ty = [0u8; 16];
        ty[..l.target_type.len()].copy_from_slice(l.target_type.as_bytes());
        data.extend(ty);
        data.extend(l.params.as_bytes());
        data.push(0);
    }
    let mut b = reply_header(data.len(), len32(lines.len()));
    b.extend(data);
    b
}

/// The device-mapper requests ephemcrypt makes, answered by the input as the kernel would (see
/// [`dm_kernel`]). The first byte chooses the request: list target versions (the crypt target's
/// version), a table (the live check), a device's status, a create, or a table load whose targets
/// and name the input gives; then the replies (see `parse_replies`). A sixth choice parses table
/// lines in the `dmsetup table` form.
pub fn dm_reply(data: &[u8]) {
    let Some((&op, rest)) = data.split_first() else { return };
    let control = Control::open(Path::new("/dev/null")).expect("open /dev/null");
    let reached = || {
        let calls = kernel(|k| k.calls);
        assert!(calls > 0, "the stand-in kernel was not reached: the fuzz binary must define ioctl (dm_reply.rs)");
    };
    match op % 6 {
        0 => {
            kernel_replies(parse_replies(rest));
            let result = control.target_versions();
            reached();
            if let Ok(versions) = result {
                assert!(versions.iter().all(|v| !v.name.contains('\0')));
                // Written out as the kernel would, they read back the same.
                kernel_replies([Reply::Bytes(versions_reply(&versions))]);
                assert_eq!(control.target_versions().ok().as_ref(), Some(&versions));
            }
        }
        1 => {
            kernel_replies(parse_replies(rest));
            let result = control.table("ephemcrypt");
            reached();
            if let Ok(lines) = result {
                assert_eq!(lines.len(), ne32(&kernel(|k| k.last_header.clone()), 20) as usize);
                lines.iter().for_each(check_redacted);
                if lines.iter().all(|l| l.target_type.len() < 16) {
                    kernel_replies([Reply::Bytes(table_reply(&lines))]);
                    assert_eq!(control.table("ephemcrypt").ok().as_ref(), Some(&lines));
                }
            }
        }
        2 => {
            kernel_replies(parse_replies(rest));
            let result = control.info("ephemcrypt");
            reached();
            match result {
                Ok(Some(info)) => {
                    let h = kernel(|k| k.last_header.clone());
                    assert_eq!(info.dev, DevNo::from_dev_t(ne64(&h, 40)));
                    assert_eq!((info.active, info.suspended), (ne32(&h, 28) & 1 << 5 != 0, ne32(&h, 28) & 1 << 1 != 0));
                }
                Ok(None) => assert_eq!(kernel(|k| k.last_errno), Some(libc::ENXIO)),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        3 => {
            kernel_replies(parse_replies(rest));
            let result = control.create("ephemcrypt", "CRYPT-PLAIN-ephemcrypt", crate::dm::DM_UDEV_PRIMARY_SOURCE_FLAG);
            reached();
            if let Ok(dev) = result {
                assert_eq!(dev, DevNo::from_dev_t(ne64(&kernel(|k| k.last_header.clone()), 40)));
            }
        }
        4 => table_load(&control, rest),
        _ => {
            for line in String::from_utf8_lossy(rest).lines() {
                match line.parse::<TableLine>() {
                    Ok(l) => {
                        check_redacted(&l);
                        if l.target_type != "crypt" {
                            assert_eq!(l.to_string().parse::<TableLine>().ok().as_ref(), Some(&l));
                        }
                    }
                    // Never quote the line, which may hold a key: the message is the same for all.
                    Err(e) => assert_eq!(e.to_string(), "?".parse::<TableLine>().map(drop).unwrap_err().to_string()),
                }
            }
        }
    }
}

/// A crypt line prints its key as `<redacted>` unless it is a keyring reference: what `Display`
/// and `Debug` show does not depend on the key at all.
fn check_redacted(l: &TableLine) {
    if l.target_type != "crypt" {
        return;
    }
    // The second word of the parameters, as `split_whitespace` finds it.
    let p = l.params.as_str();
    let words: Vec<(usize, &str)> =
        p.split_whitespace().map(|w| (w.as_ptr() as usize - p.as_ptr() as usize, w)).take(2).collect();
    let Some(&(at, key)) = words.get(1) else { return };
    if key.starts_with(':') {
        return;
    }
    let other = if key.starts_with('0') { "1" } else { "0" }.repeat(key.len());
    let with_other =
        TableLine { params: Zeroizing::new(format!("{}{other}{}", &p[..at], &p[at + key.len()..])), ..l.clone() };
    assert_eq!(l.to_string(), with_other.to_string(), "the key shows");
    assert_eq!(format!("{l:?}"), format!("{with_other:?}"), "the key shows");
}

/// Fields of a table load, from the input.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }
    fn u64(&mut self) -> u64 {
        self.bytes(8).iter().rev().fold(0, |n, &c| n << 8 | u64::from(c))
    }
    fn u32(&mut self) -> u32 {
        self.bytes(4).iter().rev().fold(0, |n, &c| n << 8 | u32::from(c))
    }
    /// A string of a length the input gives, up to `max` bytes.
    fn string(&mut self, max: u8) -> String {
        let n = self.u8() % max.max(1);
        String::from_utf8_lossy(self.bytes(usize::from(n))).into_owned()
    }
    fn dev(&mut self) -> Dev {
        if self.u8() % 8 == 0 {
            Dev::Mapping(self.string(16))
        } else {
            Dev::Num(DevNo { major: self.u32(), minor: self.u32() })
        }
    }
    fn target(&mut self) -> Target {
        let (start, len) = (Sectors(self.u64()), Sectors(self.u64()));
        let kind = match self.u8() % 3 {
            0 => TargetKind::Linear(Linear { dev: self.dev(), offset: Sectors(self.u64()) }),
            1 => TargetKind::Striped(Striped {
                chunk: Sectors(self.u64()),
                devs: (0..self.u8() % 128).map(|_| (self.dev(), Sectors(self.u64()))).collect(),
            }),
            _ => TargetKind::Crypt(Crypt {
                cipher: self.string(40),
                key: match self.u8() % 4 {
                    0 => CryptKey::Placeholder { bytes: 64 },
                    1 => CryptKey::Logon { bytes: 64, description: self.string(80) },
                    _ => CryptKey::Hex(Zeroizing::new(self.string(160))),
                },
                iv_offset: Sectors(self.u64()),
                dev: self.dev(),
                offset: Sectors(self.u64()),
                options: (0..self.u8() % 4).map(|_| self.string(24)).collect(),
            }),
        };
        Target { start, len, kind }
    }
}

/// A table load: encoded only when the kernel can take it, then exactly the targets' parameters
/// in the kernel's layout; an error never quotes a hex key.
fn table_load(control: &Control, data: &[u8]) {
    let mut r = Reader(data);
    let name = r.string(160);
    let flags = r.u8();
    let (secure, read_only) = (flags & 1 == 1, flags & 2 == 2);
    let targets: Vec<Target> = (0..r.u8() % 5).map(|_| r.target()).collect();
    kernel_replies([Reply::Bytes(Vec::new())]);
    let result = control.load(&name, &targets, secure, read_only);
    let params: Vec<Zeroizing<String>> = targets.iter().map(Target::params).collect();
    let valid = !name.is_empty()
        && name.len() < 128
        && !name.contains(['/', '\0'])
        && targets.iter().all(|t| t.unresolved().is_none())
        && params.iter().all(|p| !p.contains('\0'));
    assert_eq!(result.is_ok(), valid, "{result:?}");
    match result {
        Ok(()) => {
            let req = kernel(|k| k.load.clone()).expect("the load reached the kernel");
            assert_eq!(ne32(&req, 12) as usize, req.len());
            assert_eq!((ne32(&req, 16) as usize, ne32(&req, 20) as usize), (DM_HEADER, targets.len()));
            assert_eq!(ne32(&req, 28) & 1 << 15 != 0, secure);
            assert_eq!(ne32(&req, 28) & 1 != 0, read_only);
            assert_eq!(&req[48..48 + name.len() + 1], [name.as_bytes(), b"\0"].concat());
            let mut at = DM_HEADER;
            for (t, p) in targets.iter().zip(&params) {
                assert_eq!((ne64(&req, at), ne64(&req, at + 8)), (t.start.0, t.len.0));
                let ty = t.kind.type_name().as_bytes();
                assert_eq!(&req[at + 24..at + 24 + ty.len() + 1], [ty, b"\0"].concat());
                let next = ne32(&req, at + 20) as usize;
                assert_eq!(next, (DM_SPEC + p.len() + 1).next_multiple_of(8));
                assert_eq!(&req[at + DM_SPEC..at + DM_SPEC + p.len() + 1], [p.as_bytes(), b"\0"].concat());
                at += next;
            }
            assert_eq!(at, req.len());
        }
        Err(e) => {
            let text = e.to_string();
            for t in &targets {
                if let TargetKind::Crypt(Crypt { key: CryptKey::Hex(hex), .. }) = &t.kind {
                    let quoted =
                        hex.len() >= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !name.contains(&**hex);
                    assert!(!quoted || !text.contains(&**hex), "the error quotes a key: {text}");
                }
            }
        }
    }
}

// ---- recover's script ----

/// `recover --print-commands` for a volume whose header strings are the fuzzer's: refused, or a
/// script that differs from the one of a reference volume (marker strings) only inside quoted
/// words, each reading back as its string (src/recover_check.rs). No shell is run.
pub fn recover_script(data: &[u8]) {
    crate::recover::check::fuzz(data);
}

// ---- age: the escrow's header and payload, Bech32 and base64, OpenSSH keys ----

/// The fixed identities of the age targets: the unit tests' `age-keygen` and `ssh-keygen -t
/// ed25519` keys (test vectors, not secrets), and the recipients they answer to.
const FUZZ_AGE_IDENTITY: &str = "AGE-SECRET-KEY-19KUCRSH5VRMVLY00N85HHPGWK3WCF4WR52ZQGGGZ5Y5F62S7G34S6UHSXV\n";
const FUZZ_SSH_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBA7WWAdUqzXJSKNgSowo8h4etYM6GIuPJJkLkyUsGq1wAAAIgL5BGCC+QR\nggAAAAtzc2gtZWQyNTUxOQAAACBA7WWAdUqzXJSKNgSowo8h4etYM6GIuPJJkLkyUsGq1w\nAAAEB/o717IU3vIO7QISNx9HL7jvMwKXQQpbYgyR9iu9a0YEDtZYB1SrNclIo2BKjCjyHh\n61gzoYi48kmQuTJSwarXAAAABHRlc3QB\n-----END OPENSSH PRIVATE KEY-----\n";

/// The fixed identities (age, then ssh), their recipients, and a file encrypted to both (made
/// once: scalar multiplications are most of this target's time).
struct AgeFixture {
    ids: Vec<crate::age::Identity>,
    recipients: Vec<Recipient>,
    file: Vec<u8>,
}

fn age_fixture() -> &'static AgeFixture {
    static FIXTURE: OnceLock<AgeFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ids: Vec<crate::age::Identity> = [FUZZ_AGE_IDENTITY, FUZZ_SSH_PRIVATE]
            .iter()
            .flat_map(|t| crate::age::parse_identities(t).expect("the test identities"))
            .collect();
        let recipients: Vec<Recipient> = ids.iter().map(crate::age::Identity::recipient).collect();
        let plain = crate::key::Key::locked(64);
        let file = crate::age::encrypt(&recipients, &plain, &mut fuzz_random(b"")).expect("fixed recipients");
        AgeFixture { ids, recipients, file }
    })
}

/// A deterministic stand-in for the kernel RNG (the age writer's file key, shares and nonce),
/// seeded by the input: SplitMix64.
fn fuzz_random(seed: &[u8]) -> impl FnMut(usize) -> crate::Result<crate::key::Key> {
    let mut state =
        seed.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    move |n| {
        let mut key = crate::key::Key::locked(n);
        for chunk in key.expose_mut().chunks_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Ok(key)
    }
}

/// The age v1 reader (`recover`'s escrow) with the two fixed identities. Byte 0 chooses:
/// 0: the rest is an age file, binary or armored, as read from a disk's reserved area;
/// 1: a valid header to both identities (written from the input), then the rest as the payload
///    (nonce and chunk), so that the payload path runs behind a MAC that checks;
/// 2: the rest is a plaintext: encrypted to one of the two recipients (the next byte chooses
///    which, binary or armored), it decrypts back, the other identity alone finds no stanza, and
///    a flipped byte is refused.
/// The identities' recipients and a file to both are made once (scalar multiplications are most
/// of this target's time).
/// Whatever the file: a header that parses is canonical (written back, stanza by stanza, it is
/// the same bytes: nothing in it is ignored), and a key comes out only of a file that
/// authenticates.
pub fn age_header(data: &[u8]) {
    use crate::age::{armor, decrypt, encrypt, parse_header, MAX_PAYLOAD};
    let Some((&mode, rest)) = data.split_first() else { return };
    let AgeFixture { ids, recipients, file } = age_fixture();
    match mode % 3 {
        0 => {
            check_age_file(rest, ids);
            if let Ok((stanzas, _, header_len, _)) = parse_header(rest) {
                let mut text = String::from("age-encryption.org/v1\n");
                text.extend(stanzas.iter().map(render_stanza));
                text.push_str("---");
                assert_eq!(text.as_bytes(), &rest[..header_len], "the header is not what its stanzas say");
            }
        }
        1 => {
            let (.., payload) = parse_header(file).expect("our own header");
            let header = &file[..file.len() - payload.len()];
            let forged = [header, rest].concat();
            let r = decrypt(&forged, ids);
            assert_eq!(r.is_ok(), rest == payload, "a payload that is not the one written: {:?}", r.err());
            check_age_file(&forged, ids);
        }
        _ => {
            let Some((&which, plain)) = rest.split_first() else { return };
            let plain = &plain[..plain.len().min(MAX_PAYLOAD)];
            let (to, id) = if which & 1 == 0 { (0, 1) } else { (1, 0) };
            let mut key = crate::key::Key::locked(plain.len());
            key.expose_mut().copy_from_slice(plain);
            let file = encrypt(&recipients[to..=to], &key, &mut fuzz_random(rest)).expect("fixed recipients");
            let text = if which & 2 == 0 { file.clone() } else { armor(&file).into_bytes() };
            assert_eq!(decrypt(&text, ids).expect("encrypted to it").expose(), plain);
            // The other identity alone: no stanza for it.
            let e = decrypt(&text, std::slice::from_ref(&ids[id])).err();
            assert!(matches!(e, Some(crate::age::AgeError::NoMatch { .. })), "{e:?}");
            let at = usize::from(which) * 7919 % file.len();
            let mut bad = file.clone();
            bad[at] ^= 1 << (which % 8);
            assert!(decrypt(&bad, ids).is_err(), "byte {at} flipped went unnoticed");
        }
    }
}

/// What must hold for any file: a key comes out only at most one chunk long; an error stays
/// about the input's size.
fn check_age_file(file: &[u8], ids: &[crate::age::Identity]) {
    match crate::age::decrypt(file, ids) {
        Ok(k) => assert!(k.len() <= crate::age::MAX_PAYLOAD),
        Err(e) => assert!(e.to_string().len() <= 512 + 2 * file.len(), "{e}"),
    }
}

/// A stanza as age writes it: `-> TYPE ARGS…`, the body in base64 lines of 64 columns, the last
/// one shorter (empty when the body fills its lines).
fn render_stanza(s: &crate::age::Stanza) -> String {
    let mut out = format!("-> {}", s.kind);
    for a in &s.args {
        out.push(' ');
        out.push_str(a);
    }
    out.push('\n');
    let b64 = base64_encode(&s.body, false);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    if b64.len() % 64 == 0 {
        out.push('\n');
    }
    out
}

/// Bech32 and base64, and what is parsed from them: `age1…` recipients (the `escrow` setting)
/// and `AGE-SECRET-KEY-1…` identities (`recover --identity`), from the input as text. Decoded
/// strings encode back to themselves (lower case), the secret decoder's buffer never grows, a
/// recipient parsed is never of low order and reads back the same, an identity's recipient too.
pub fn bech32(data: &[u8]) {
    use crate::age::{base64_decode, base64_decode_secret, bech32_decode, bech32_encode, parse_identities};
    let text = String::from_utf8_lossy(data);
    if let Some((hrp, bytes)) = bech32_decode(&text) {
        assert_eq!(bech32_encode(&hrp, &bytes), text.to_ascii_lowercase());
        let groups = text.len() - text.rfind('1').expect("a separator") - 1;
        assert_eq!(bytes.capacity(), groups * 5 / 8, "the decoder's buffer grew");
    }
    for pad in [false, true] {
        if let Some(bytes) = base64_decode(&text, pad) {
            assert_eq!(base64_encode(&bytes, pad), text);
        }
        if let Some(secret) = base64_decode_secret(&text, pad) {
            assert_eq!(secret.len(), secret.capacity(), "the decoder's buffer grew");
        }
    }
    match Recipient::parse(&text) {
        Ok(r) => check_recipient(&r),
        Err(why) => assert!(why.len() <= 512 + 10 * text.len(), "{why}"),
    }
    if let Ok(ids) = parse_identities(&text) {
        for id in &ids {
            check_recipient(&id.recipient());
            if let crate::age::Identity::X25519 { secret, .. } = id {
                let again = bech32_encode("age-secret-key-", secret.expose()).to_ascii_uppercase();
                let back = parse_identities(&again).expect("an identity written out");
                assert_eq!(back[0].recipient(), id.recipient());
            }
        }
    }
}

/// A recipient parse returns can have no low-order point, and its canonical form parses the same.
fn check_recipient(r: &Recipient) {
    match r {
        Recipient::X25519 { public, .. } => {
            assert!(!crate::age::is_low_order(public));
            let again = Recipient::parse(&crate::age::bech32_encode("age", public)).expect("a recipient written out");
            assert!(matches!(again, Recipient::X25519 { public: p, .. } if p == *public));
        }
        Recipient::SshEd25519 { blob, montgomery, fingerprint } => {
            assert!(!crate::age::is_low_order(montgomery));
            assert!(fingerprint.starts_with("SHA256:") && r.describe().starts_with("ssh-ed25519 SHA256:"));
            let line = format!("ssh-ed25519 {}", base64_encode(blob, true));
            assert_eq!(&Recipient::parse(&line).expect("a key written out"), r);
        }
    }
}

/// OpenSSH keys: ed25519 private keys (`recover --identity`) and `ssh-ed25519` public keys (the
/// `escrow` setting). Byte 0 chooses: 0: the rest is a private key file as text; 1: the rest is
/// the binary key (`openssh-key-v1\0…`), wrapped here in its PEM lines, so the fuzzer works on
/// the structure and not on its base64; 2: a public key line as text; 3: the rest is the public
/// key's wire blob, on an `ssh-ed25519` line. A private key read answers to a recipient that
/// parses back and decrypts what is encrypted to it; a public key read is of no small order.
pub fn openssh_key(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = match mode % 4 {
        0 | 2 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let b64 = base64_encode(rest, true);
            let lines: Vec<&str> =
                b64.as_bytes().chunks(70).map(|l| std::str::from_utf8(l).expect("base64 is ASCII")).collect();
            format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n", lines.join("\n"))
        }
        _ => format!("ssh-ed25519 {} fuzz", base64_encode(rest, true)),
    };
    if mode % 4 < 2 {
        let Ok(ids) = crate::age::parse_identities(&text) else { return };
        for id in &ids {
            let r = id.recipient();
            check_recipient(&r);
            let plain = crate::key::Key::locked(64);
            let file = crate::age::encrypt(&[r], &plain, &mut fuzz_random(rest)).expect("a valid recipient");
            let key = crate::age::decrypt(&file, std::slice::from_ref(id)).expect("its own identity");
            assert_eq!(key.expose(), plain.expose());
        }
    } else {
        match Recipient::parse(&text) {
            Ok(r) => check_recipient(&r),
            Err(why) => assert!(why.len() <= 512 + 10 * text.len(), "{why}"),
        }
    }
}
