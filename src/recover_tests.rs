//! `recover` against host trees whose disks carry what a fake setup wrote: finding the volume by
//! its headers, every way that can fail, the escrow and the key, the read-only mappings, and the
//! stock-tool script.
use super::*;
use crate::age::tests::{AGE_IDENTITY, AGE_RECIPIENT, SSH_PRIVATE, SSH_PUBLIC};
use crate::fake::{Fake, Tree, PLANTED};
use std::path::Path;

/// Two disks that a setup with escrow (and swap) made a volume on; the fake that made it.
fn volume(config: &str) -> (Tree, Fake) {
    let tree = Tree::new(config);
    tree.disk("nvme2n1", 2, "B").disk("nvme1n1", 1, "A");
    let mut fake = Fake::new();
    let status = crate::setup::setup(&tree.host(), None, Path::new("/sysroot"), &mut fake).1;
    assert_eq!(status.result, crate::status::SetupResult::Ok, "{}", status.reason);
    tree.keep_headers(&fake);
    (tree, fake)
}

fn escrowed() -> (Tree, Fake) {
    volume(&format!("swap = 4G\nescrow = {AGE_RECIPIENT}, {SSH_PUBLIC}"))
}

fn identity(tree: &Tree, text: &str) -> PathBuf {
    let p = tree.root.join("identity");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_volume_opens_read_only_with_either_identity() {
    let (tree, _) = escrowed();
    let found = find(&tree.host(), &[]).unwrap();
    let serials: Vec<&str> = found.members.iter().map(|m| m.disk.serial.as_str()).collect();
    assert_eq!(serials, ["A", "B"], "stripe order, not enumeration order");
    for id in [AGE_IDENTITY, SSH_PRIVATE] {
        let key = escrowed_key(&tree.host(), &found, &identity(&tree, id)).unwrap();
        assert_eq!(key.expose(), [PLANTED; 64]);
        let mut fake = Fake::new();
        fake.dirs.insert(PathBuf::from("/mnt/recovery"));
        let steps = plan(&found, Some(Path::new("/mnt/recovery"))).unwrap();
        let out = open(&found, &steps, key, &mut fake).unwrap();
        let loads: Vec<&String> = fake.calls.iter().filter(|c| c.starts_with("dm_load")).collect();
        assert_eq!(loads.len(), 3, "{:?}", fake.calls);
        assert!(loads.iter().all(|c| c.contains(" read-only ")), "{loads:?}");
        assert!(loads[0].starts_with("dm_load ephemcrypt-recovered-stripe secure=false read-only 0 "));
        assert!(loads[1].contains(" crypt aes-xts-plain64 :64:logon:ephemcrypt:ephemcrypt-recovered:"));
        assert!(loads[1].contains(" sector_size:4096"));
        assert!(loads[2].starts_with("dm_load ephemcrypt-recovered-data secure=false read-only 0 "));
        assert!(fake.keys.is_empty(), "the logon key is invalidated");
        assert!(
            fake.calls
                .iter()
                .any(|c| c == "mount /dev/mapper/ephemcrypt-recovered-data /mnt/recovery ext4 ro,noload,nosuid,nodev"),
            "{:?}",
            fake.calls
        );
        assert!(out.contains("mounted read-only (ext4, noload) at /mnt/recovery"), "{out}");
        assert!(
            out.contains("dmsetup remove ephemcrypt-recovered-data ephemcrypt-recovered ephemcrypt-recovered-stripe"),
            "{out}"
        );
    }
}

#[test]
fn a_failed_open_removes_what_it_made() {
    let (tree, _) = escrowed();
    let found = find(&tree.host(), &[]).unwrap();
    let id = identity(&tree, AGE_IDENTITY);
    let steps = plan(&found, Some(Path::new("/mnt/recovery"))).unwrap();
    let mut reference = Fake::new();
    reference.dirs.insert(PathBuf::from("/mnt/recovery"));
    open(&found, &steps, escrowed_key(&tree.host(), &found, &id).unwrap(), &mut reference).unwrap();
    assert!(reference.calls.last().unwrap().starts_with("mount "), "{:?}", reference.calls);
    for at in 0..reference.calls.len() {
        let mut fake = Fake { fail_at: Some(at), ..Fake::new() };
        fake.dirs.insert(PathBuf::from("/mnt/recovery"));
        let k = escrowed_key(&tree.host(), &found, &id).unwrap();
        assert!(open(&found, &steps, k, &mut fake).is_err(), "call {at}");
        assert!(fake.mounts.is_empty(), "call {at}: {:?}", fake.calls);
        assert!(fake.status.is_none() && fake.tmpfs.is_empty(), "no policy, no status: {:?}", fake.calls);
        assert!(fake.mappings.is_empty(), "call {at}: {:?}", fake.calls);
        // A key whose invalidation itself failed goes with the process keyring when recover exits.
        assert!(
            fake.keys.is_empty() || reference.calls[at].starts_with("invalidate_key"),
            "call {at}: {:?}",
            fake.calls
        );
    }
}

#[test]
fn what_cannot_be_recovered_is_said_plainly() {
    // No header at all.
    let tree = Tree::new("");
    tree.disk("nvme1n1", 1, "A");
    let e = find(&tree.host(), &[]).unwrap_err().to_string();
    assert_eq!(e, "recover: no ephemcrypt header on any disk looked at (nvme1n1): nothing to recover");
    // A member missing (its disk gone, or selected away).
    let (tree, _) = escrowed();
    let only_a = crate::config::parse_selectors_value("serial:A").unwrap();
    let e = find(&tree.host(), &only_a).unwrap_err().to_string();
    assert!(e.contains("is missing: member 2 of 2 (serial 'B')"), "{e}");
    // A header whose checksum fails.
    use std::os::unix::fs::FileExt;
    let image = tree.root.join("dev/nvme2n1");
    std::fs::OpenOptions::new().write(true).open(&image).unwrap().write_all_at(b"X", 300).unwrap();
    let e = find(&tree.host(), &[]).unwrap_err().to_string();
    assert!(
        e.contains("is missing: member 2 of 2 (serial 'B'); damaged or forged headers on /dev/nvme2n1 (an ephemcrypt header whose checksum fails)"),
        "{e}"
    );
    // The identity of someone else.
    let (tree, _) = volume(&format!("escrow = {SSH_PUBLIC}"));
    let found = find(&tree.host(), &[]).unwrap();
    let e = escrowed_key(&tree.host(), &found, &identity(&tree, AGE_IDENTITY)).unwrap_err().to_string();
    assert!(e.contains("the identity matches none of its recipients (an ssh-ed25519 key tagged "), "{e}");
    assert!(e.contains(&format!("(the identity file is for {AGE_RECIPIENT})")), "{e}");
    assert!(e.contains("no member's escrow copy opens: /dev/nvme1n1: ") && e.contains("; /dev/nvme2n1: "), "{e}");
    let e = escrowed_key(&tree.host(), &found, &identity(&tree, "not a key")).unwrap_err().to_string();
    assert!(e.contains("/dev/nvme1n1: identity file "), "{e}");
    // No escrow when it was made.
    let (tree, _) = volume("");
    let found = find(&tree.host(), &[]).unwrap();
    let e = escrowed_key(&tree.host(), &found, Path::new("/nonexistent")).unwrap_err().to_string();
    assert!(e.contains("was made without escrow"), "{e}");
}

#[test]
fn two_volumes_must_be_chosen_between() {
    let (tree, _) = escrowed();
    let other = volume("");
    // A third disk carrying the other volume's member 1.
    crate::fake::add_disk(&tree.root, "nvme3n1", 3, "C");
    use std::os::unix::fs::FileExt;
    // The fake draws the same volume id every time: this one is another volume's.
    let mut h = crate::header::Header::decode(other.1.headers.get(Path::new("/dev/nvme1n1")).unwrap()).unwrap();
    h.volume_id = [7; 16];
    h.escrow = (0, 0);
    let disk = std::fs::OpenOptions::new().write(true).open(tree.root.join("dev/nvme3n1")).unwrap();
    disk.write_all_at(&h.encode(), 0).unwrap();
    let e = find(&tree.host(), &[]).unwrap_err().to_string();
    assert!(e.contains("the disks hold several ephemcrypt volumes (") && e.contains("choose one with --disks"), "{e}");
    let ab = crate::config::parse_selectors_value("serial:A,serial:B").unwrap();
    assert_eq!(find(&tree.host(), &ab).unwrap().members.len(), 2);
}

#[test]
fn two_disks_claiming_one_member_are_refused() {
    let (tree, fake) = escrowed();
    crate::fake::add_disk(&tree.root, "nvme3n1", 3, "C");
    use std::os::unix::fs::FileExt;
    let first = fake.headers.get(Path::new("/dev/nvme1n1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(tree.root.join("dev/nvme3n1"))
        .unwrap()
        .write_all_at(first, 0)
        .unwrap();
    let e = find(&tree.host(), &[]).unwrap_err().to_string();
    assert!(e.contains("/dev/nvme1n1 and /dev/nvme3n1 both carry member 1 of 2"), "{e}");
}

#[test]
fn a_damaged_escrow_copy_falls_back_to_the_next_member() {
    let (tree, _) = escrowed();
    let found = find(&tree.host(), &[]).unwrap();
    let id = identity(&tree, AGE_IDENTITY);
    use std::os::unix::fs::FileExt;
    let (at, len) = found.members[0].header.escrow;
    let image = tree.root.join("dev/nvme1n1");
    let f = std::fs::OpenOptions::new().write(true).open(&image).unwrap();
    // Member 1's copy damaged near its end (the payload: the AEAD fails).
    f.write_all_at(b"XXXX", u64::from(at + len - 8)).unwrap();
    let key = escrowed_key(&tree.host(), &found, &id).unwrap();
    assert_eq!(key.expose(), [PLANTED; 64]);
    // Member 1's copy cut short by the disk's end: unreadable.
    f.set_len(u64::from(at) + 10).unwrap();
    let key = escrowed_key(&tree.host(), &found, &id).unwrap();
    assert_eq!(key.expose(), [PLANTED; 64]);
    // Both damaged: each named.
    let g = std::fs::OpenOptions::new().write(true).open(tree.root.join("dev/nvme2n1")).unwrap();
    g.write_all_at(b"XXXX", u64::from(at + len - 8)).unwrap();
    let e = escrowed_key(&tree.host(), &found, &id).unwrap_err().to_string();
    assert!(e.contains("no member's escrow copy opens: /dev/nvme1n1: read the escrow from "), "{e}");
    assert!(e.contains("; /dev/nvme2n1: recover: the escrow of volume 'ephemcrypt'"), "{e}");
}

/// A found volume of `n` members on 100 GiB disks, as setup would have written it (with escrow).
fn found_of(n: u32, swap: bool) -> Found {
    let members = (0..n)
        .map(|i| {
            let mut h = crate::header::tests::sample();
            h.member = i;
            h.members = n;
            h.chunk = Sectors(if n > 1 { 512 } else { 0 });
            h.member_len = Sectors(2_097_152);
            h.volume_len = Sectors(h.member_len.0 * u64::from(n));
            h.swap = if swap { (Sectors(0), Sectors(131_072)) } else { (Sectors(0), Sectors(0)) };
            h.data = (h.swap.1, Sectors(h.volume_len.0 - h.swap.1 .0));
            h.serials = (0..n).map(|j| format!("SER{j}")).collect();
            h.escrow = (4096, 300);
            let disk = crate::testutil::disk(&format!("nvme{}n1", i + 1), &format!("SER{i}"));
            Member { disk, header: h }
        })
        .collect();
    Found { members }
}

/// Every layout field that differs on one member is refused, naming the field and each disk.
#[test]
fn every_layout_field_must_agree() {
    let tree = Tree::new("");
    tree.disk("nvme1n1", 1, "SER0").disk("nvme2n1", 2, "SER1");
    type Change = fn(&mut crate::header::Header);
    let changes: [(&str, Change); 14] = [
        ("member count", |h| {
            h.members = 3;
            h.serials.push("SER2".into());
        }),
        ("data offset", |h| h.data_offset = Sectors(4096)),
        ("stripe chunk", |h| h.chunk = Sectors(256)),
        ("member length", |h| h.member_len = Sectors(1 << 20)),
        ("volume length", |h| h.volume_len = Sectors(1 << 20)),
        ("key size", |h| h.key_bits = 256),
        ("sector size", |h| h.sector_size = 512),
        ("swap extent", |h| h.swap = (Sectors(0), Sectors(4096))),
        ("file-system extent", |h| h.data = (Sectors(8), Sectors(4096))),
        ("file system", |h| h.fs = "xfs".into()),
        ("cipher", |h| h.cipher = "serpent-xts-plain64".into()),
        ("name", |h| h.name = "other\n<0>x".into()),
        ("member serials", |h| h.serials[1] = "SER9".into()),
        ("escrow", |h| h.escrow = (4096, 299)),
    ];
    let base = found_of(2, true);
    // Headers as they come out of memory: many of these changes make a header that decode
    // refuses on its own (a forged one), so the comparison is checked by itself too.
    for (field, change) in changes {
        let mut members = base.members.clone();
        change(&mut members[1].header);
        let e = disagreement(&members).unwrap_err().to_string();
        assert!(e.contains(&format!("the members' headers disagree about the {field}: /dev/nvme1n1 says ")), "{e}");
        assert!(e.contains(", /dev/nvme2n1 says "), "{e}");
        assert!(!e.contains('\n'), "escaped: {e}");
    }
    // On the disks: a change that leaves a header valid is a disagreement; one that does not
    // makes that disk's header damaged, so the member is missing.
    for (field, change) in changes {
        for (i, m) in base.members.iter().enumerate() {
            let mut h = m.header.clone();
            if i == 1 {
                change(&mut h);
            }
            use std::os::unix::fs::FileExt;
            let image = tree.root.join(format!("dev/nvme{}n1", i + 1));
            let f = std::fs::OpenOptions::new().write(true).open(&image).unwrap();
            f.write_all_at(&h.encode(), 0).unwrap();
            f.write_all_at(b"age-encryption.org/v1\n", 4096).unwrap();
        }
        let mut changed = base.members[1].header.clone();
        change(&mut changed);
        let e = find(&tree.host(), &[]).unwrap_err().to_string();
        if changed.check().is_ok() && changed.fits(100 << 30).is_ok() {
            assert!(e.contains(&format!("disagree about the {field}: /dev/nvme1n1 says ")), "{field}: {e}");
        } else {
            assert!(e.contains("damaged or forged headers on /dev/nvme2n1"), "{field}: {e}");
        }
        assert!(!e.contains('\n'), "escaped: {e}");
    }
}

#[test]
fn a_layout_setup_could_not_have_written_is_refused_before_any_key() {
    type Change = fn(&mut crate::header::Header);
    let cases: [(Change, &str); 10] = [
        (
            |h| h.cipher = "cipher_null-ecb".into(),
            "the header's cipher 'cipher_null-ecb': cipher_null does not encrypt",
        ),
        (|h| h.cipher = "aes-xts-plain64 0 7:0 0".into(), "the header's cipher 'aes-xts-plain64 0 7:0 0': IV "),
        (|h| h.cipher = "aes-ecb".into(), "the header's cipher 'aes-ecb'"),
        (|h| h.key_bits = 1024, "the header's key size 1024 is not one aes-xts-plain64 takes"),
        (|h| h.name = "x;touch PWNED;".into(), "volume 'x;touch PWNED;' "),
        (|h| h.name = "x\ntouch PWNED #".into(), "volume 'x\\ntouch PWNED #' "),
        (|h| h.fs = "ext4 -o".into(), "the header's file system 'ext4 -o' is not ext4, xfs or none"),
        (|h| h.sector_size = 3, "the header's sector size 3"),
        (|h| h.data = (Sectors(1), Sectors(u64::MAX)), "does not fit together"),
        (|h| h.member_len = Sectors(1 << 40), "the header's member length reaches past the end of /dev/nvme1n1"),
    ];
    for (change, want) in cases {
        let mut found = found_of(2, true);
        for m in &mut found.members {
            change(&mut m.header);
        }
        let e = plan(&found, None).map(|_| ()).expect_err(want).to_string();
        assert!(e.contains(want), "{want}\nin {e}");
        assert!(script(&found).is_err());
        assert!(!e.contains('\n'), "{e}");
    }
    // The cipher in the table is the parsed spec, rebuilt from its parts.
    let steps = plan(&found_of(1, false), None).unwrap();
    let Step::Mapping(m) = &steps[0] else { panic!("{steps:?}") };
    assert!(m.read_only, "{m:?}");
    assert_eq!(m.table[0].to_string(), "0 2097152 crypt aes-xts-plain64 KEY 0 259:11 2048 1 sector_size:4096");
}

/// The script of the escrowed volume, line by line where it matters.
#[test]
fn the_script_uses_stock_tools_with_the_volume_s_layout() {
    let (tree, fake) = escrowed();
    let found = find(&tree.host(), &[]).unwrap();
    let s = script(&found).unwrap();
    let h = found.header();
    for want in [
        "#!/bin/sh\n".to_string(),
        "m0=$(dev_of 'A' 1)\nm1=$(dev_of 'B' 2)\n".into(),
        format!("if try_escrow \"$m0\" 4096 {len}; then\n\t:\nelif try_escrow \"$m1\" 4096 {len}; then\n", len = h.escrow.1),
        "age -d -i \"$identity\" -o \"$work/key\" \"$work/escrow.age\"".into(),
        format!(
            "dmsetup create --readonly --uuid 'EPHEMCRYPT-RECOVERED-ephemcrypt-recovered-stripe' --table '0 {} striped 2 \
             512 '\"$m0\"' 2048 '\"$m1\"' 2048' -- 'ephemcrypt-recovered-stripe'\n",
            h.volume_len.0
        ),
        format!(
            "cryptsetup open --readonly --type plain --cipher 'aes-xts-plain64' --key-size 512 --sector-size 4096 \
             --offset 0 --skip 0 --size {} --key-file \"$work/key\" -- '/dev/mapper/ephemcrypt-recovered-stripe' \
             'ephemcrypt-recovered'\nrm -f -- \"$work/key\"\n",
            h.volume_len.0
        ),
        format!(
            "dmsetup create --readonly --uuid 'EPHEMCRYPT-RECOVERED-ephemcrypt-recovered-data' --table '0 {} linear \
             /dev/mapper/ephemcrypt-recovered {}' -- 'ephemcrypt-recovered-data'\n",
            h.data.1 .0, h.data.0 .0
        ),
        "\tmount -t 'ext4' -o 'ro,noload,nosuid,nodev' -- '/dev/mapper/ephemcrypt-recovered-data' \"$mnt\"\n".into(),
        "trap 'cleanup; trap - EXIT; exit 130' INT\n".into(),
    ] {
        assert!(s.contains(&want), "{want}\nin\n{s}");
    }
    // The tables the script makes are setup's own, with other names.
    let setup_stripe = fake.tables.iter().find(|t| t.contains(" striped ")).unwrap();
    assert!(setup_stripe.starts_with(&format!("0 {} striped 2 512 ", h.volume_len.0)), "{setup_stripe}");
    // One volume without swap and without file system: the crypt mapping on the disk, no mount.
    let mut one = found_of(1, false);
    one.members[0].header.fs = "none".into();
    let s = script(&one).unwrap();
    assert!(s.contains("--size 2097152 --key-file \"$work/key\" -- \"$m0\" 'ephemcrypt-recovered'\n"), "{s}");
    assert!(!s.contains("mount ") && !s.contains("dmsetup create"), "{s}");
    assert!(s.contains("printf '%s is open read-only; when done: ' '/dev/mapper/ephemcrypt-recovered'\n"), "{s}");
}

/// Shell metacharacters, quotes, newlines, control characters, option look-alikes: what a forged
/// header may hold.
pub(crate) const HOSTILE: [&str; 34] = [
    "x;touch PWNED;",
    "x\ntouch PWNED #",
    "x$(touch PWNED)",
    "`touch PWNED`",
    "'; touch PWNED; '",
    "x'\"$(touch PWNED)\"'",
    "'\\''",
    "\\",
    "'",
    "\"",
    "--help",
    "-rf",
    "--table=0 1 zero",
    "${IFS}",
    "$0$1$work",
    "*",
    "~root",
    "a b",
    "\t",
    "\r",
    "\u{1b}[2J",
    "<0>emerg",
    "!",
    "#",
    "&& touch PWNED",
    "| touch PWNED",
    ">PWNED",
    "<",
    "%s%n%d",
    "é ✓",
    "\u{202e}",
    "\u{85}",
    "-",
    "",
];

/// A small deterministic generator (xorshift64*), so that a failure repeats.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
    /// One to three hostile pieces and random characters from a hostile alphabet.
    fn hostile(&mut self) -> String {
        const CHARS: &[char] = &[
            '\'', '"', '\\', '$', '`', '(', ')', '{', '}', ';', '&', '|', '<', '>', '*', '?', '[', ']', '~', '#', '!',
            '\n', '\t', '\r', ' ', '-', '=', '%', '\u{1b}', '\u{7f}', 'a', 'Z', '0', 'é',
        ];
        let mut s = String::new();
        for _ in 0..1 + self.below(3) {
            if self.below(2) == 0 {
                s.push_str(HOSTILE[self.below(HOSTILE.len())]);
            } else {
                for _ in 0..self.below(8) {
                    s.push(CHARS[self.below(CHARS.len())]);
                }
            }
        }
        s
    }
}

/// The sh the tests run: dash where it is installed, else sh.
fn shell() -> &'static str {
    if Path::new("/bin/dash").exists() {
        "/bin/dash"
    } else {
        "/bin/sh"
    }
}

/// A directory for one run of a script with stub programs: `bin/` (the only PATH), a sysfs with
/// the members' serials, the identity and mount paths; removed when dropped.
struct Stubs {
    dir: PathBuf,
}

impl Drop for Stubs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a script run did: its exit status, stderr and each program it ran with its argv.
struct Ran {
    code: Option<i32>,
    stderr: String,
    calls: Vec<Vec<String>>,
}

impl Stubs {
    fn new(found: &Found, key_bytes: usize) -> Stubs {
        use std::os::unix::fs::PermissionsExt;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ephemcrypt-stubs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("mnt")).unwrap();
        std::fs::write(dir.join("id"), "identity").unwrap();
        for m in &found.members {
            let d = dir.join("sys/block").join(&m.disk.name).join("device");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("serial"), format!("{}\n", m.header.serials[m.header.member as usize])).unwrap();
        }
        let log =
            "{ printf '%s\\0' \"$#\" \"${0##*/}\"; for a in \"$@\"; do printf '%s\\0' \"$a\"; done; } >>\"$T/log\"\n";
        let real =
            |p: &str| ["/usr/bin/", "/bin/"].iter().map(|d| format!("{d}{p}")).find(|f| Path::new(f).exists()).unwrap();
        let key = "K".repeat(key_bytes);
        let programs = [
            ("mktemp", format!("{} \"$T/work\" && printf '%s\\n' \"$T/work\"", real("mkdir"))),
            ("modprobe", String::new()),
            ("sed", format!("exec {} \"$@\"", real("sed"))),
            ("rm", format!("exec {} \"$@\"", real("rm"))),
            ("wc", format!("exec {} \"$@\"", real("wc"))),
            ("dd", "for a; do case $a in of=*) printf 'blob' >\"${a#of=}\";; esac; done".into()),
            (
                "age",
                format!(
                    "read n <\"$T/age-fails\"; if [ \"$n\" -gt 0 ]; then echo $((n - 1)) >\"$T/age-fails\"; exit 1; fi\n\
                     while [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then printf '{key}' >\"$2\"; fi; shift; done\n\
                     if [ -n \"${{SIGNAL:-}}\" ]; then kill -\"$SIGNAL\" $PPID; fi"
                ),
            ),
            ("cryptsetup", "if [ -s \"$T/work/key\" ]; then : >\"$T/key-was-there\"; fi".into()),
            ("dmsetup", String::new()),
            ("mount", String::new()),
            ("touch", String::new()),
        ];
        for (name, body) in programs {
            let p = dir.join("bin").join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{log}{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Stubs { dir }
    }

    /// Run `script` (its /sys/block made this directory's) as `sh SCRIPT ID MNT`, age failing
    /// `age_fails` times first.
    fn run(&self, script: &str, age_fails: usize, signal: Option<&str>) -> Ran {
        assert_eq!(script.matches("/sys/block/*").count(), 1);
        let script = script.replace("/sys/block/*", &format!("{}/sys/block/*", self.dir.display()));
        let file = self.dir.join("script.sh");
        std::fs::write(&file, &script).unwrap();
        std::fs::write(self.dir.join("age-fails"), format!("{age_fails}\n")).unwrap();
        let _ = std::fs::remove_file(self.dir.join("log"));
        // HUP, INT and TERM at their defaults in the script, whatever this process inherited (a
        // shell cannot trap a signal ignored when it started, as under nohup): coreutils' env.
        let mut cmd = std::process::Command::new("/usr/bin/env");
        cmd.arg("--default-signal=HUP,INT,TERM")
            .arg(shell())
            .arg(&file)
            .arg(self.dir.join("id"))
            .arg(self.dir.join("mnt"))
            .current_dir(&self.dir)
            .env_clear();
        cmd.env("PATH", self.dir.join("bin")).env("T", &self.dir);
        if let Some(s) = signal {
            cmd.env("SIGNAL", s);
        }
        let out = cmd.output().unwrap();
        let log = std::fs::read(self.dir.join("log")).unwrap_or_default();
        let mut fields = log.split(|b| *b == 0).map(|f| String::from_utf8(f.to_vec()).unwrap());
        let mut calls = Vec::new();
        while let Some(count) = fields.next().filter(|c| !c.is_empty()) {
            let argc: usize = count.parse().unwrap();
            calls.push(fields.by_ref().take(argc + 1).collect());
        }
        Ran { code: out.status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned(), calls }
    }

    fn path(&self, p: &str) -> String {
        self.dir.join(p).display().to_string()
    }
}

/// The mapping names of `steps`, in order, and the file system's device.
fn mapping_names(steps: &[Step]) -> Vec<String> {
    steps.iter().filter_map(|s| if let Step::Mapping(m) = s { Some(m.name.clone()) } else { None }).collect()
}

/// The programs a run of the script must make, with their argv, worked out from the header and
/// the mapping names (not from the script), the escrow tried on `tries` members.
fn expected(found: &Found, names: &[String], tries: usize, st: &Stubs) -> Vec<Vec<String>> {
    let h = found.header();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let dev = |i: usize| format!("/dev/{}", found.members[i].disk.name);
    let (work, key) = (st.path("work"), st.path("work/key"));
    let escrow = format!("{work}/escrow.age");
    let mut out = Vec::new();
    for i in 0..tries {
        let (at, len) = found.members[i].header.escrow;
        out.push(v(&["dd", &format!("if={}", dev(i)), &format!("of={escrow}"), "bs=1"]));
        out.last_mut().unwrap().extend([format!("skip={at}"), format!("count={len}")]);
        out.push(v(&["age", "-d", "-i", &st.path("id"), "-o", &key, &escrow]));
    }
    let n = found.members.len();
    let mut names = names.iter();
    let mut crypt_dev = dev(0);
    let mut offset = h.data_offset.0;
    if n > 1 {
        let stripe = names.next().unwrap();
        let devs: Vec<String> = (0..n).map(|i| format!("{} {}", dev(i), h.data_offset.0)).collect();
        let table = format!("0 {} striped {n} {} {}", h.volume_len.0, h.chunk.0, devs.join(" "));
        let uuid = format!("EPHEMCRYPT-RECOVERED-{stripe}");
        out.push(v(&["dmsetup", "create", "--readonly", "--uuid", &uuid, "--table", &table, "--", stripe]));
        crypt_dev = format!("/dev/mapper/{stripe}");
        offset = 0;
    }
    let crypt = names.next().unwrap();
    let (bits, sector, len) = (h.key_bits.to_string(), h.sector_size.to_string(), h.volume_len.0.to_string());
    out.push(v(&[
        "cryptsetup",
        "open",
        "--readonly",
        "--type",
        "plain",
        "--cipher",
        &h.cipher,
        "--key-size",
        &bits,
        "--sector-size",
        &sector,
        "--offset",
        &offset.to_string(),
        "--skip",
        "0",
        "--size",
        &len,
        "--key-file",
        &key,
        "--",
        &crypt_dev,
        crypt,
    ]));
    let mut fs_dev = format!("/dev/mapper/{crypt}");
    if let Some(data) = names.next() {
        let table = format!("0 {} linear /dev/mapper/{crypt} {}", h.data.1 .0, h.data.0 .0);
        let uuid = format!("EPHEMCRYPT-RECOVERED-{data}");
        out.push(v(&["dmsetup", "create", "--readonly", "--uuid", &uuid, "--table", &table, "--", data]));
        fs_dev = format!("/dev/mapper/{data}");
    }
    if h.fs != "none" {
        let options = format!("ro,{},nosuid,nodev", if h.fs == "xfs" { "norecovery" } else { "noload" });
        out.push(v(&["mount", "-t", &h.fs, "-o", &options, "--", &fs_dev, &st.path("mnt")]));
    }
    out
}

/// Run `script` with stubs and check it made exactly the expected programs, the hostile strings
/// arriving intact as single words, the key file gone right after cryptsetup and at the end.
fn check_run(found: &Found, steps: &[Step], script: &str, age_fails: usize) -> bool {
    let syntax = std::process::Command::new(shell()).arg("-n").arg("-c").arg(script).output().unwrap();
    assert!(syntax.status.success(), "{} -n: {}\n{script}", shell(), String::from_utf8_lossy(&syntax.stderr));
    let key_bytes = found.header().key_bits as usize / 8;
    let st = Stubs::new(found, key_bytes);
    let ran = st.run(script, age_fails, None);
    // The fake sysfs file holds the serial and a newline; `sed 's/ *$//'` trims spaces at each line's
    // end (a real sysfs serial is one line): a serial with spaces before a newline is not found.
    let survives = |s: &str| s.split('\n').map(|l| l.trim_end_matches(' ')).collect::<Vec<_>>().join("\n") == s;
    if !found.header().serials.iter().all(|s| survives(s)) {
        assert_eq!(ran.code, Some(1), "{}\n{script}", ran.stderr);
        assert!(ran.stderr.contains("no disk with the serial of member "), "{}", ran.stderr);
        let allowed = ["mktemp", "modprobe", "sed", "rm"];
        assert!(ran.calls.iter().all(|c| allowed.contains(&c[0].as_str())), "{:?}\n{script}", ran.calls);
        return false;
    }
    assert_eq!(ran.code, Some(0), "{}\n{script}", ran.stderr);
    let allowed = ["mktemp", "modprobe", "sed", "rm", "wc", "dd", "age", "cryptsetup", "dmsetup", "mount"];
    assert!(ran.calls.iter().all(|c| allowed.contains(&c[0].as_str())), "{:?}\n{script}", ran.calls);
    let important = ["dd", "age", "cryptsetup", "dmsetup", "mount"];
    let made: Vec<&Vec<String>> = ran.calls.iter().filter(|c| important.contains(&c[0].as_str())).collect();
    let want = expected(found, &mapping_names(steps), 1 + age_fails, &st);
    assert_eq!(made, want.iter().collect::<Vec<_>>(), "\n{script}");
    let at = ran.calls.iter().position(|c| c[0] == "cryptsetup").unwrap();
    assert_eq!(ran.calls[at + 1], ["rm", "-f", "--", &st.path("work/key")], "the key file goes right after");
    assert!(st.dir.join("key-was-there").exists(), "cryptsetup had the key");
    assert!(!st.dir.join("work").exists(), "the work directory is removed");
    assert!(!st.dir.join("PWNED").exists() && !st.dir.join("mnt/PWNED").exists());
    true
}

/// Found volumes with hostile serials (and names, ciphers, fs that the plan must refuse): the
/// script passes `sh -n` and, run with stub programs, makes nothing but the expected programs.
#[test]
fn the_script_of_any_header_runs_only_the_expected_programs() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ran, mut refused) = (0usize, 0);
    for case in 0..120 {
        let n = 1 + u32::try_from(rng.below(3)).unwrap();
        let mut found = found_of(n, rng.below(2) == 0);
        let serials: Vec<String> = (0..n).map(|i| format!("{}#{i}", rng.hostile())).collect();
        let name = match rng.below(4) {
            0 => rng.hostile(),
            _ => "vol_1-x".to_string(),
        };
        let cipher = match rng.below(5) {
            0 => rng.hostile(),
            1 => "serpent-cbc-essiv:sha256".into(),
            _ => "aes-xts-plain64".into(),
        };
        let fs = ["ext4", "xfs", "none", "ext4 -o x"][rng.below(4)];
        for m in &mut found.members {
            m.header.serials = serials.clone();
            m.header.name = name.clone();
            m.header.cipher = cipher.clone();
            m.header.fs = fs.into();
            if cipher.starts_with("serpent-cbc") {
                m.header.key_bits = 256;
            }
        }
        let Ok(s) = script(&found) else {
            refused += 1;
            continue;
        };
        let mount = (fs != "none").then_some(Path::new("/x"));
        let steps = plan(&found, mount).unwrap();
        ran += usize::from(check_run(&found, &steps, &s, case % n as usize));
    }
    assert!(ran >= 30 && refused >= 20, "ran through {ran}, refused {refused}");
}

/// The rendering alone is safe for names the plan would refuse: steps with hostile mapping names.
#[test]
fn the_rendering_quotes_even_names_the_plan_refuses() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for case in 0..60 {
        let n = 1 + u32::try_from(rng.below(3)).unwrap();
        let found = found_of(n, case % 2 == 0);
        let mut steps = plan(&found, Some(Path::new("/x"))).unwrap();
        let renames: Vec<(String, String)> =
            mapping_names(&steps).into_iter().map(|old| (old, format!("{}{case}", rng.hostile()))).collect();
        let new = |old: &str| renames.iter().find(|(o, _)| o == old).map(|(_, n)| n.clone()).unwrap();
        for step in &mut steps {
            match step {
                Step::Mapping(m) => {
                    m.name = new(&m.name);
                    m.uuid = format!("EPHEMCRYPT-RECOVERED-{}", m.name);
                    for t in &mut m.table {
                        match &mut t.kind {
                            TargetKind::Crypt(CryptTarget { dev: Dev::Mapping(d), .. })
                            | TargetKind::Linear(Linear { dev: Dev::Mapping(d), .. }) => *d = new(d),
                            _ => {}
                        }
                    }
                }
                Step::Mount { source, .. } => {
                    let old = source.file_name().unwrap().to_str().unwrap().to_string();
                    *source = PathBuf::from(format!("/dev/mapper/{}", new(&old)));
                }
                _ => {}
            }
        }
        let s = render(&found, &steps).unwrap();
        assert!(check_run(&found, &steps, &s, 0));
    }
}

/// A signal while the key file exists: the trap removes it, and the script stops.
#[test]
fn a_signal_removes_the_key_file() {
    let found = found_of(2, true);
    let s = script(&found).unwrap();
    for (signal, code) in [("HUP", 129), ("INT", 130), ("TERM", 143)] {
        let st = Stubs::new(&found, 64);
        let ran = st.run(&s, 0, Some(signal));
        assert_eq!(ran.code, Some(code), "{signal}: {}", ran.stderr);
        assert!(!st.dir.join("work").exists(), "{signal}: the key file is left");
        assert!(!ran.calls.iter().any(|c| c[0] == "cryptsetup"), "{signal}: {:?}", ran.calls);
    }
}
