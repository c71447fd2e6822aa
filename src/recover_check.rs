//! A structural check of `recover --print-commands` scripts, for the `recover_script` fuzz target
//! and the unit tests: no shell is run. A small tokenizer of the POSIX shell subset the script is
//! written in finds every single-quoted word as the shell reads it; the script of a volume with
//! hostile strings is compared with the script of the same volume whose strings are markers.
//! Everything outside the quoted words must be the same in both (nothing there depends on a
//! string from a header), and each quoted word must read back as the reference's word with the
//! markers replaced by the hostile strings (each string inside one word, intact).

use std::path::{Path, PathBuf};

use crate::dm::{Crypt, Dev, Linear, TargetKind};
use crate::header::Header;
use crate::step::Step;
use crate::units::{Bytes, DevNo, Sectors};

use super::{plan, render, script, Found, Member};

/// A piece of a script as the shell reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A run of single-quoted strings and `\'`s with nothing between them: what it stands for.
    Quoted(String),
    /// Anything else, verbatim.
    Raw(String),
}

/// The tokens of `script`, or what in it is outside the subset this reads (backquotes, here
/// documents, an unterminated quote, unbalanced `$(`).
pub(crate) fn tokens(script: &str) -> Result<Vec<Token>, String> {
    let mut t = Tokenizer { c: script.chars().collect(), i: 0, out: Vec::new(), raw: String::new() };
    t.plain(false)?;
    if t.i != t.c.len() {
        return Err(format!("an unbalanced ')' at {}", t.i));
    }
    t.flush();
    Ok(t.out)
}

struct Tokenizer {
    c: Vec<char>,
    i: usize,
    out: Vec<Token>,
    raw: String,
}

impl Tokenizer {
    fn flush(&mut self) {
        if !self.raw.is_empty() {
            self.out.push(Token::Raw(std::mem::take(&mut self.raw)));
        }
    }

    fn peek(&self, k: usize) -> Option<char> {
        self.c.get(self.i + k).copied()
    }

    /// Whether a `#` here starts a comment: at the start of a word.
    fn word_start(&self) -> bool {
        self.i == 0 || matches!(self.c[self.i - 1], ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')')
    }

    /// A quoted run from here (at a `'` or a `\'`).
    fn quoted(&mut self) -> Result<(), String> {
        self.flush();
        let mut value = String::new();
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some('\''), _) => {
                    self.i += 1;
                    loop {
                        match self.peek(0) {
                            None => return Err("an unterminated single quote".into()),
                            Some('\'') => break,
                            Some(ch) => value.push(ch),
                        }
                        self.i += 1;
                    }
                    self.i += 1;
                }
                (Some('\\'), Some('\'')) => {
                    value.push('\'');
                    self.i += 2;
                }
                _ => break,
            }
        }
        self.out.push(Token::Quoted(value));
        Ok(())
    }

    /// Unquoted text, up to the end or, inside `$(`, the `)` that closes it.
    fn plain(&mut self, in_subst: bool) -> Result<(), String> {
        while let Some(ch) = self.peek(0) {
            match ch {
                '\'' => self.quoted()?,
                '\\' if self.peek(1) == Some('\'') => self.quoted()?,
                '\\' => {
                    self.raw.push(ch);
                    self.raw.extend(self.peek(1));
                    self.i += 2;
                }
                '"' => {
                    self.raw.push(ch);
                    self.i += 1;
                    self.double()?;
                }
                '#' if self.word_start() => {
                    while let Some(ch) = self.peek(0).filter(|c| *c != '\n') {
                        self.raw.push(ch);
                        self.i += 1;
                    }
                }
                '$' if self.peek(1) == Some('(') => {
                    self.raw.push_str("$(");
                    self.i += 2;
                    self.plain(true)?;
                    if self.peek(0) != Some(')') {
                        return Err("an unterminated $(".into());
                    }
                    self.raw.push(')');
                    self.i += 1;
                }
                '(' => {
                    // A function definition's `()` or a case pattern: kept balanced.
                    self.raw.push(ch);
                    self.i += 1;
                    if self.peek(0) == Some(')') {
                        self.raw.push(')');
                        self.i += 1;
                    }
                }
                ')' if in_subst => return Ok(()),
                '`' => return Err("a backquote".into()),
                '<' if self.peek(1) == Some('<') => return Err("a here document".into()),
                _ => {
                    self.raw.push(ch);
                    self.i += 1;
                }
            }
        }
        if in_subst {
            return Err("an unterminated $(".into());
        }
        Ok(())
    }

    /// Inside double quotes (after the opening one), through the closing one.
    fn double(&mut self) -> Result<(), String> {
        while let Some(ch) = self.peek(0) {
            match ch {
                '"' => {
                    self.raw.push(ch);
                    self.i += 1;
                    return Ok(());
                }
                '\\' => {
                    self.raw.push(ch);
                    self.raw.extend(self.peek(1));
                    self.i += 2;
                }
                '$' if self.peek(1) == Some('(') => {
                    self.raw.push_str("$(");
                    self.i += 2;
                    self.plain(true)?;
                    if self.peek(0) != Some(')') {
                        return Err("an unterminated $( in double quotes".into());
                    }
                    self.raw.push(')');
                    self.i += 1;
                }
                '`' => return Err("a backquote in double quotes".into()),
                _ => {
                    self.raw.push(ch);
                    self.i += 1;
                }
            }
        }
        Err("an unterminated double quote".into())
    }
}

/// The markers the reference script carries in place of the strings: valid names (letters and
/// digits), none a prefix of another.
const NAME: &str = "Qzqxn";
fn serial_marker(i: usize) -> String {
    format!("Qzqxs{i}")
}
fn mapping_marker(i: usize) -> String {
    format!("Qzqxm{i}")
}

/// A volume of `strings.len()` members (1 to 3) on 100 GiB disks, as setup writes it.
pub(crate) fn volume(name: &str, cipher: &str, key_bits: u32, fs: &str, swap: bool, serials: &[String]) -> Found {
    let n = u32::try_from(serials.len()).expect("1 to 3 members");
    let members = (0..n)
        .map(|i| {
            let member_len = Sectors(2_097_152);
            let volume_len = Sectors(member_len.0 * u64::from(n));
            let swap = if swap { (Sectors(0), Sectors(131_072)) } else { (Sectors(0), Sectors(0)) };
            let header = Header {
                volume_id: [0x5e; 16],
                boot_id: [0xb0; 16],
                created: 1_795_000_000,
                member: i,
                members: n,
                data_offset: crate::header::RESERVED,
                chunk: Sectors(if n > 1 { 512 } else { 0 }),
                member_len,
                volume_len,
                key_bits,
                sector_size: 4096,
                swap,
                data: (swap.1, Sectors(volume_len.0 - swap.1 .0)),
                fs: fs.into(),
                cipher: cipher.into(),
                name: name.into(),
                escrow: (4096, 300 + i),
                serials: serials.to_vec(),
            };
            let disk = crate::disk::Disk::new(
                &format!("nvme{}n1", i + 1),
                DevNo { major: 259, minor: i + 1 },
                Bytes(100 << 30),
            );
            Member { disk, header }
        })
        .collect();
    Found { members }
}

/// The mapping names of `steps` replaced, in order, by `names` (with their uuids and every use).
fn renamed(steps: &[Step], names: &[String]) -> Vec<Step> {
    let old: Vec<String> =
        steps.iter().filter_map(|s| if let Step::Mapping(m) = s { Some(m.name.clone()) } else { None }).collect();
    let new = |o: &str| old.iter().position(|x| x == o).map_or_else(|| o.to_string(), |i| names[i].clone());
    let mut steps = steps.to_vec();
    for step in &mut steps {
        match step {
            Step::Mapping(m) => {
                m.name = new(&m.name);
                m.uuid = format!("EPHEMCRYPT-RECOVERED-{}", m.name);
                for t in &mut m.table {
                    if let TargetKind::Crypt(Crypt { dev: Dev::Mapping(d), .. })
                    | TargetKind::Linear(Linear { dev: Dev::Mapping(d), .. }) = &mut t.kind
                    {
                        *d = new(d);
                    }
                }
            }
            Step::Mount { source, .. } => {
                let last = source.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                *source = PathBuf::from(format!("/dev/mapper/{}", new(&last)));
            }
            _ => {}
        }
    }
    steps
}

/// `hostile` has the shape of `reference` outside its quoted words, and each quoted word reads as
/// the reference's with each marker replaced by its string.
pub(crate) fn same_shape(hostile: &str, reference: &str, markers: &[(String, String)]) -> Result<(), String> {
    let (h, r) = (tokens(hostile)?, tokens(reference)?);
    if h.len() != r.len() {
        return Err(format!("{} tokens where the reference has {}", h.len(), r.len()));
    }
    for (a, b) in h.iter().zip(&r) {
        match (a, b) {
            (Token::Raw(a), Token::Raw(b)) if a == b => {}
            (Token::Quoted(a), Token::Quoted(b)) => {
                let want = substituted(b, markers);
                if *a != want {
                    return Err(format!("a quoted word reads {a:?}, not {want:?}"));
                }
            }
            _ => return Err(format!("{a:?} where the reference has {b:?}")),
        }
    }
    Ok(())
}

/// `text` with each marker replaced by its value in one pass (a value holding a marker's text is
/// not replaced again). No marker is a prefix of another.
fn substituted(text: &str, markers: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while let Some(ch) = rest.chars().next() {
        for (marker, value) in markers {
            if let Some(after) = rest.strip_prefix(marker.as_str()) {
                out.push_str(value);
                rest = after;
                continue 'outer;
            }
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// The fuzz target: the fuzzer's bytes as a volume's header strings, split at NUL: control bytes
/// (members, swap, cipher, fs, whether the mapping names are replaced), then the name, the cipher,
/// the fs, three serials and three mapping names, each taken lossily as UTF-8.
pub(crate) fn fuzz(data: &[u8]) {
    let mut fields = data.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    let control = fields.next().unwrap_or_default().into_bytes();
    let byte = |i: usize| control.get(i).copied().unwrap_or(0);
    let mut next = || fields.next().unwrap_or_default();
    let (name, cipher, fs) = (next(), next(), next());
    let serials: Vec<String> = (0..3).map(|_| next()).collect();
    let mappings: Vec<String> = (0..3).map(|_| next()).collect();
    let n = 1 + usize::from(byte(0)) % 3;
    let swap = byte(1) & 1 == 1;
    let (cipher, key_bits) = match byte(2) % 4 {
        0 => (cipher, 512),
        1 => ("serpent-cbc-essiv:sha256".to_string(), 256),
        _ => ("aes-xts-plain64".to_string(), 512),
    };
    let fs = match byte(3) % 4 {
        0 => fs,
        1 => "xfs".into(),
        2 => "none".into(),
        _ => "ext4".into(),
    };
    let name = if byte(4) & 1 == 1 { name } else { "ephemcrypt".into() };
    let serials = &serials[..n];
    let hostile = volume(&name, &cipher, key_bits, &fs, swap, serials);
    let markers: Vec<String> = (0..n).map(serial_marker).collect();
    let mut pairs: Vec<(String, String)> = markers.iter().cloned().zip(serials.iter().cloned()).collect();
    pairs.push((NAME.into(), name.clone()));
    let reference = volume(NAME, &cipher, key_bits, &fs, swap, &markers);
    if byte(5) & 1 == 0 {
        // The script of the found volume: refused, or of the reference's shape.
        match script(&hostile) {
            Err(e) => {
                let e = e.to_string();
                assert!(!e.chars().any(|c| c.is_control()), "an error with a control character: {e:?}");
            }
            Ok(s) => {
                let r = script(&reference).expect("the reference's strings are valid");
                if let Err(why) = same_shape(&s, &r, &pairs) {
                    panic!("{why}\n--- script:\n{s}\n--- reference:\n{r}");
                }
                // The cipher is a parsed spec, never found outside a quoted word.
                for t in tokens(&s).unwrap_or_default() {
                    if let Token::Raw(raw) = t {
                        assert!(!raw.contains(cipher.as_str()), "the cipher outside a quoted word: {raw:?}");
                    }
                }
            }
        }
        return;
    }
    // The rendering alone, with mapping names the plan would refuse.
    let mount = (fs != "none").then_some(Path::new("/MOUNT-DIR"));
    let (Ok(steps_h), Ok(steps_r)) =
        (plan(&volume("ephemcrypt", &cipher, key_bits, &fs, swap, serials), mount), plan(&reference, mount))
    else {
        return;
    };
    let count = steps_h.iter().filter(|s| matches!(s, Step::Mapping(_))).count();
    let names: Vec<String> = mappings[..count].to_vec();
    if names.iter().any(|m| !crate::shell::quotable(m)) {
        return;
    }
    let marks: Vec<String> = (0..count).map(mapping_marker).collect();
    pairs.pop();
    pairs.extend(marks.iter().cloned().zip(names.iter().cloned()));
    let r = render(&reference, &renamed(&steps_r, &marks)).expect("the reference renders");
    let found = volume("ephemcrypt", &cipher, key_bits, &fs, swap, serials);
    let s = render(&found, &renamed(&steps_h, &names)).expect("steps of a plan render");
    // The reference's header name is the marker; the rendered one 'ephemcrypt'.
    pairs.push((NAME.into(), "ephemcrypt".into()));
    if let Err(why) = same_shape(&s, &r, &pairs) {
        panic!("{why}\n--- script:\n{s}\n--- reference:\n{r}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokenizer_reads_quotes_as_the_shell_does() {
        let t = tokens("a 'b c'\\''d' \"x'y$(e 'f)' g)\" # 'no\nh").unwrap();
        assert_eq!(
            t,
            [
                Token::Raw("a ".into()),
                Token::Quoted("b c'd".into()),
                Token::Raw(" \"x'y$(e ".into()),
                Token::Quoted("f)".into()),
                Token::Raw(" g)\" # 'no\nh".into()),
            ]
        );
        assert!(tokens("a 'b").is_err());
        assert!(tokens("a `b`").is_err());
        assert!(tokens("a \"b").is_err());
        assert!(tokens("cat <<EOF").is_err());
    }

    #[test]
    fn markers_are_replaced_once() {
        let m = [("Qzqxs0".to_string(), "Qzqxn;".to_string()), ("Qzqxn".to_string(), "vol".to_string())];
        assert_eq!(substituted("a Qzqxs0 Qzqxn é", &m), "a Qzqxn; vol é");
        // A hostile serial holding the name's marker text still checks.
        let mut data = vec![1u8, 1, 2, 3, 1, 0];
        for f in ["vol", "", "", "Qzqxn", "Qzqxs1x", "Qzqxs0"] {
            data.push(0);
            data.extend_from_slice(f.as_bytes());
        }
        fuzz(&data);
    }

    #[test]
    fn an_unquoted_string_changes_the_shape() {
        let r = "dmsetup create -- 'Qzqxm0'\n";
        let pairs = [("Qzqxm0".to_string(), "x;touch PWNED".to_string())];
        assert!(same_shape("dmsetup create -- 'x;touch PWNED'\n", r, &pairs).is_ok());
        assert!(same_shape("dmsetup create -- x;touch PWNED\n", r, &pairs).is_err());
        assert!(same_shape("dmsetup create -- 'x;touch' PWNED\n", r, &pairs).is_err());
        assert!(same_shape("dmsetup create -- \"x;touch PWNED\"\n", r, &pairs).is_err());
    }

    /// The fuzz target's check over the hostile strings of the unit tests, both ways.
    #[test]
    fn the_fuzz_check_holds_for_hostile_strings() {
        let hostile = super::super::tests::HOSTILE;
        for (i, s) in hostile.iter().enumerate() {
            let other = hostile[(i + 7) % hostile.len()];
            for control in
                [[0u8, 0, 0, 3, 1, 0], [2, 1, 2, 0, 1, 0], [1, 1, 2, 3, 0, 1], [2, 0, 1, 1, 0, 1], [2, 1, 0, 3, 1, 0]]
            {
                let mut data = control.to_vec();
                for f in [*s, other, *s, other, s, "", other, s, ""] {
                    data.push(0);
                    data.extend_from_slice(f.as_bytes());
                }
                fuzz(&data);
            }
        }
    }
}
