//! The documentation checked against the code:
//! - every `ephemcrypt plan` example shown with its output in README.md and docs/ (a fenced block
//!   whose first line is `$ ephemcrypt plan ...`, the rest its output) is run on its fixture by the
//!   debug binary and must print exactly that; a line `...` alone stands for any number of lines;
//! - the commands and options of the argument parser (`ephemcrypt::cli::COMMANDS` and `OPTIONS`,
//!   the lists `parse` checks words against) are each in `ephemcrypt --help` and in ephemcrypt(8),
//!   and neither shows an option the parser does not take;
//! - every `rd.ephemcrypt.KEY` and `KEY = value` line shown in the docs names a key of
//!   ephemcrypt.conf(5), whose keys a unit test in config.rs compares with the code's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ephemcrypt::cli::{COMMANDS, OPTIONS};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/, as (path relative to the repository, text).
fn documents() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    let mut paths = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.strip_prefix(root()).unwrap().display().to_string(), text)
        })
        .collect()
}

/// The fenced code blocks of a Markdown text: (line number of the opening fence, its language,
/// lines inside).
fn blocks(text: &str) -> Vec<(usize, &str, Vec<&str>)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, &str, Vec<&str>)> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            match open.take() {
                Some(block) => out.push(block),
                None => open = Some((n + 1, info.trim(), Vec::new())),
            }
        } else if let Some((_, _, lines)) = open.as_mut() {
            lines.push(line);
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    out
}

/// Whether `want` (with `...` lines standing for any run of lines) matches `got`.
fn matches(want: &[&str], got: &[&str]) -> bool {
    match want.split_first() {
        None => got.is_empty(),
        Some((&"...", rest)) => (0..=got.len()).any(|skip| matches(rest, &got[skip..])),
        Some((w, rest)) => {
            got.split_first().is_some_and(|(g, grest)| g.trim_end() == w.trim_end() && matches(rest, grest))
        }
    }
}

#[test]
fn plan_examples_print_what_the_docs_show() {
    let mut ran = 0;
    for (path, text) in documents() {
        for (line, _, block) in blocks(&text) {
            let Some(command) = block.first().and_then(|l| l.strip_prefix("$ ephemcrypt plan")) else {
                // Output of plan shown without the command that makes it could not be checked.
                assert!(
                    !block.iter().any(|l| l.starts_with("steps:") || l.starts_with("disks:")),
                    "{path}:{line}: plan output must follow its command, '$ ephemcrypt plan --host tests/fixtures/...'"
                );
                continue;
            };
            let args: Vec<&str> = std::iter::once("plan").chain(command.split_whitespace()).collect();
            assert!(
                args.windows(2).any(|w| w[0] == "--host" && w[1].starts_with("tests/fixtures/")),
                "{path}:{line}: a plan example runs on a fixture: --host tests/fixtures/NAME"
            );
            let out = Command::new(env!("CARGO_BIN_EXE_ephemcrypt"))
                .args(&args)
                .current_dir(root())
                .output()
                .expect("run ephemcrypt");
            assert_eq!(out.status.code(), Some(0), "{path}:{line}: {}", String::from_utf8_lossy(&out.stderr));
            let stdout = String::from_utf8(out.stdout).unwrap();
            let got: Vec<&str> = stdout.lines().collect();
            assert!(
                matches(&block[1..], &got),
                "{path}:{line}: 'ephemcrypt {}' prints something else than the docs show; it prints:\n{stdout}",
                args.join(" ")
            );
            ran += 1;
        }
    }
    assert!(ran > 0, "no plan example found in README.md or docs/");
}

/// The options a text shows: words that start with `-` and a letter, with the punctuation around
/// them and any `=value` taken off.
fn option_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || "[]()|,;`'\"".contains(c))
        .map(|w| w.split('=').next().unwrap_or(w).trim_end_matches(['.', ':']))
        .filter(|w| {
            let name = w.trim_start_matches('-');
            w.starts_with('-')
                && w.len() - name.len() <= 2
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .collect()
}

fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ephemcrypt")).arg("--help").output().expect("run ephemcrypt");
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap()
}

fn man8() -> String {
    std::fs::read_to_string(root().join("doc/ephemcrypt.8")).unwrap()
}

/// The options ephemcrypt(8) shows: each `Fl X` (mdoc for `-X`), and the words of its examples
/// that run ephemcrypt (`.Dl ephemcrypt ...`).
fn man_options(man: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in man.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2).filter(|w| w[0] == "Fl" || w[0] == ".Fl") {
            out.extend(option_words(&format!("-{}", w[1].replace("\\-", "-"))));
        }
        if let Some(example) = line.strip_prefix(".Dl ephemcrypt ") {
            out.extend(option_words(example));
        }
    }
    out
}

#[test]
fn help_shows_every_command_and_option_of_the_parser_and_no_other() {
    let help = help();
    let options: BTreeSet<String> = OPTIONS.iter().map(|o| o.to_string()).collect();
    let shown = option_words(&help);
    let missing: Vec<&String> = options.difference(&shown).collect();
    let unknown: Vec<&String> = shown.difference(&options).collect();
    assert!(missing.is_empty(), "ephemcrypt --help does not show the options {missing:?}");
    assert!(unknown.is_empty(), "ephemcrypt --help shows {unknown:?}, which the parser does not take");
    // Commands: the first word after `ephemcrypt` on the usage lines.
    let commands: BTreeSet<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("ephemcrypt "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| !w.starts_with('-'))
        .collect();
    assert_eq!(commands, COMMANDS.iter().copied().collect(), "the commands of ephemcrypt --help against the parser's");
}

#[test]
fn the_man_page_shows_every_command_and_option_of_the_parser_and_no_other() {
    let man = man8();
    let options: BTreeSet<String> = OPTIONS.iter().map(|o| o.to_string()).collect();
    let shown = man_options(&man);
    let missing: Vec<&String> = options.difference(&shown).collect();
    let unknown: Vec<&String> = shown.difference(&options).collect();
    assert!(missing.is_empty(), "ephemcrypt(8) does not show the options {missing:?}");
    assert!(unknown.is_empty(), "ephemcrypt(8) shows {unknown:?}, which the parser does not take");
    // Commands: in the SYNOPSIS, the `.Cm` right after each `.Nm`.
    let synopsis = man.split(".Sh SYNOPSIS\n").nth(1).unwrap().split("\n.Sh ").next().unwrap();
    let lines: Vec<&str> = synopsis.lines().collect();
    let commands: BTreeSet<&str> = lines
        .windows(2)
        .filter(|w| w[0] == ".Nm")
        .filter_map(|w| w[1].strip_prefix(".Cm "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        COMMANDS.iter().copied().collect(),
        "the commands of ephemcrypt(8)'s SYNOPSIS against the parser's"
    );
    // And each command but help has its entry under COMMANDS.
    for c in COMMANDS.iter().filter(|c| **c != "help") {
        assert!(man.contains(&format!("\n.It Cm {c}\n")), "ephemcrypt(8) has no '.It Cm {c}' under COMMANDS");
    }
}

/// The keys of ephemcrypt.conf(5): its `.It Cm KEY` entries (config.rs checks them against the code).
fn keys() -> BTreeSet<String> {
    let man = std::fs::read_to_string(root().join("doc/ephemcrypt.conf.5")).unwrap();
    man.lines().filter_map(|l| l.strip_prefix(".It Cm ")).map(str::to_string).collect()
}

#[test]
fn configuration_keys_in_the_docs_exist() {
    let keys = keys();
    assert!(keys.contains("devices") && keys.contains("on-failure"), "{keys:?}");
    let mut docs = documents();
    docs.push(("doc/ephemcrypt.8".into(), man8()));
    docs.push(("doc/ephemcrypt.conf.5".into(), std::fs::read_to_string(root().join("doc/ephemcrypt.conf.5")).unwrap()));
    for (path, text) in docs {
        for (n, line) in text.lines().enumerate() {
            // rd.ephemcrypt.KEY=... on a kernel command line.
            for part in line.split("rd.ephemcrypt.").skip(1) {
                let key: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                let key = key.trim_end_matches('-');
                let placeholder = ["KEY", "key", ""].contains(&key) || part.starts_with('*') || part.starts_with('<');
                assert!(placeholder || keys.contains(key), "{path}:{}: rd.ephemcrypt.{key} is not a key", n + 1);
            }
        }
        // `key = value` lines of configuration files shown in code blocks (untagged, or conf/ini).
        for (line, _, block) in blocks(&text).into_iter().filter(|b| ["", "conf", "ini"].contains(&b.1)) {
            for l in block.iter().map(|l| l.trim_start_matches('#').trim()) {
                let Some((key, _)) = l.split_once(" = ") else { continue };
                if key.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !key.is_empty() {
                    assert!(keys.contains(key), "{path}:{line}: '{key} = ...' is not a key");
                }
            }
        }
    }
}

/// The matcher's elision is explicit: `...` stands for lines, nothing else does.
#[test]
fn elision_is_explicit() {
    assert!(matches(&["a", "...", "d"], &["a", "b", "c", "d"]));
    assert!(matches(&["a", "..."], &["a"]));
    assert!(!matches(&["a", "d"], &["a", "b", "d"]));
    assert!(!matches(&["a", "b"], &["a", "c"]));
    assert!(!matches(&["a"], &["a", "b"]));
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings (outside code blocks), with GitHub's `-1` suffixes.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let Some(h) = line.strip_prefix('#').filter(|_| !fenced) else { continue };
        let base = slug(h.trim_start_matches('#'));
        let mut s = base.clone();
        let mut n = 0;
        while out.contains(&s) {
            n += 1;
            s = format!("{base}-{n}");
        }
        out.insert(s);
    }
    out
}

/// Every relative link in README.md and docs/ leads to a file that exists and, with `#anchor`,
/// to a heading of it: moving a section cannot leave a link behind.
#[test]
fn links_lead_somewhere() {
    let mut checked = 0;
    for (path, text) in documents() {
        let dir = root().join(&path).parent().unwrap().to_path_buf();
        for part in text.split("](").skip(1) {
            let Some(target) = part.split(')').next() else { continue };
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() { root().join(&path) } else { dir.join(file) };
            assert!(file.exists(), "{path}: the link ({target}) leads to no file");
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(&file).unwrap();
                assert!(anchors(&text).contains(anchor), "{path}: the link ({target}) leads to no heading");
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} links found");
}

/// Every `ephemcrypt COMMAND --option ...` the README and docs/ show (in prose or in code) uses
/// options the parser takes.
#[test]
fn command_lines_in_the_docs_use_options_the_parser_takes() {
    let mut seen = 0;
    for (path, text) in documents() {
        for (n, line) in text.lines().enumerate() {
            for part in line.split("ephemcrypt ").skip(1) {
                let Some(command) = part.split_whitespace().next() else { continue };
                if !COMMANDS.contains(&command) {
                    continue;
                }
                // The command line ends where the code span, a comment, a pipe or a redirection does.
                let words = part.split(['`', '#', '|', '>', ';', ')']).next().unwrap_or("");
                for option in option_words(words) {
                    assert!(
                        OPTIONS.contains(&option.as_str()),
                        "{path}:{}: 'ephemcrypt {command} ... {option}': no such option",
                        n + 1
                    );
                    seen += 1;
                }
            }
        }
    }
    assert!(seen > 5, "only {seen} options found on command lines in the docs");
}
