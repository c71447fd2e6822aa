//! PURE: strings ephemcrypt does not own (from a disk, sysfs, the kernel command line, another
//! account's files) made safe to show on a terminal, in the journal and in /dev/kmsg.
//!
//! [`Esc`] writes a string with every character that a terminal or a log reader would act on
//! escaped: C0 and C1 control characters and DEL (a line break would start a forged log line, a
//! `<N>` after it a forged priority; ESC starts terminal sequences), the Unicode characters that
//! reorder or hide text (bidirectional overrides and isolates, zero-width marks, line and paragraph
//! separators), and the backslash itself, so that what is shown reads back unambiguously. A `<`
//! that starts the string is escaped too: written alone to /dev/kmsg or to a journal stream,
//! `<N>` there would set the entry's priority. Everything else is shown as it is.
//!
//! This is for showing, not for shell: a string becomes shell only through the one quoting
//! function of `recover`'s script.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` must be escaped when shown.
fn unsafe_char(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || c == '\\'
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{FEFF}' // zero-width no-break space (byte order mark)
        )
}

/// A string shown with the characters of [`unsafe_char`] escaped (`\n`, `\t`, `\\`, `\x1b`,
/// `\u{202e}`) and a leading `<` as `\x3c`.
#[derive(Clone, Copy)]
pub(crate) struct Esc<'a>(pub(crate) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            match c {
                '<' if i == 0 => f.write_str("\\x3c")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                '\\' => f.write_str("\\\\")?,
                c if unsafe_char(c) && (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c if unsafe_char(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `s` escaped as [`Esc`] shows it; borrowed when nothing needs escaping.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if s.starts_with('<') || s.chars().any(unsafe_char) {
        Cow::Owned(Esc(s).to_string())
    } else {
        Cow::Borrowed(s)
    }
}

/// A whole log line, whose start is ephemcrypt's own: the characters of [`unsafe_char`] but the
/// backslash escaped, so that a string that reached it unescaped still cannot break the line, forge
/// a priority or act on a terminal (strings escaped where they were read keep their backslashes).
pub(crate) fn line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\\' && unsafe_char(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push(c),
            c if unsafe_char(c) => {
                let _ = write!(out, "{}", Esc(c.encode_utf8(&mut [0; 4])));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `s` would be shown as it is.
pub(crate) fn is_plain(s: &str) -> bool {
    matches!(escape(s), Cow::Borrowed(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        for s in ["", "ephemcrypt", "Amazon EC2 NVMe Instance Storage", "AWS1234 5678", "a<b>", "é ü ✓"] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s:?}");
            assert!(is_plain(s));
        }
    }

    #[test]
    fn what_acts_on_a_terminal_or_a_log_is_escaped() {
        assert_eq!(escape("x\ntouch PWNED #"), "x\\ntouch PWNED #");
        assert_eq!(escape("x\n<0>emerg"), "x\\n<0>emerg");
        assert_eq!(escape("<0>emerg"), "\\x3c0>emerg");
        assert_eq!(escape("\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape("a\tb\rc\\d"), "a\\tb\\rc\\\\d");
        assert_eq!(escape("\u{7f}\u{85}\u{9b}"), "\\x7f\\x85\\x9b");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape("\u{2028}\u{feff}"), "\\u{2028}\\u{feff}");
    }

    #[test]
    fn log_lines_keep_backslashes_and_lose_controls() {
        assert_eq!(line("ephemcrypt: a\\nb"), "ephemcrypt: a\\nb");
        assert_eq!(line("ephemcrypt: x\n<0>y\x1b[2J"), "ephemcrypt: x\\n<0>y\\x1b[2J");
        assert!(matches!(line("ephemcrypt: plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_text_has_no_control_characters() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let shown = escape(&all);
        assert!(!shown.chars().any(|c| c != ' ' && unsafe_char(c) && c != '\\'), "{shown:?}");
        assert!(!shown.contains('\n') && !shown.contains('\x1b'));
    }
}
