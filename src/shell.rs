//! PURE: the one place where a string becomes POSIX shell.
//!
//! [`quote`] makes any string one shell word that stands for exactly that string: wrapped in
//! single quotes, inside which no character is special, with each `'` of the string written as
//! `'\''` (close the quotes, an escaped quote, open them again). It always quotes, even a string
//! that would not need it, so that a reader of a script sees at once where a string from outside
//! sits: nowhere but inside one quoted word. A NUL cannot be in a shell word at all: callers
//! refuse such a string before it gets here ([`quotable`]).

/// `s` as one single-quoted shell word.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Whether [`quote`] can carry `s` (a shell reads no NUL byte).
pub(crate) fn quotable(s: &str) -> bool {
    !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_is_one_single_quoted_word() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("ephemcrypt"), "'ephemcrypt'");
        assert_eq!(quote("x;touch PWNED;"), "'x;touch PWNED;'");
        assert_eq!(quote("x$(touch PWNED)"), "'x$(touch PWNED)'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("'"), "''\\'''");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert!(quotable("a\nb") && !quotable("a\0b"));
    }

    /// The shell reads each quoted word back as the string itself (dash where it is installed).
    #[test]
    fn the_shell_reads_back_the_string() {
        let strings = [
            "plain",
            "x;touch PWNED;",
            "x\ntouch PWNED #",
            "x$(touch PWNED)",
            "`touch PWNED`",
            "'; touch PWNED; '",
            "\\'\\\"",
            "-rf --help",
            "${IFS}*?[a]~",
            "\u{1b}[2J\r\t",
            "é ✓ \u{202e}",
            "",
        ];
        let sh = if std::path::Path::new("/bin/dash").exists() { "/bin/dash" } else { "/bin/sh" };
        let script: String = strings.iter().map(|s| format!("printf '%s\\0' {}\n", quote(s))).collect();
        let out = std::process::Command::new(sh).arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = strings.iter().map(|s| s.as_bytes()).chain([&b""[..]]).collect();
        assert_eq!(got, want);
    }
}
