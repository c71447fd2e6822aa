//! Whole `ephemcrypt plan` runs against the host trees in tests/fixtures/.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ephemcrypt::json::{self, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ephemcrypt")).args(args).output().expect("run ephemcrypt")
}

fn plan_json(tree: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--json", "--host", tree.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    json::parse(&String::from_utf8(out.stdout).unwrap()).expect("plan --json prints JSON")
}

/// (name, use, reason) of every disk, in plan order.
fn verdicts(plan: &Value) -> Vec<(String, bool, String)> {
    plan.get("disks")
        .unwrap()
        .as_array()
        .iter()
        .map(|d| {
            (
                d.get("name").unwrap().as_str().unwrap().to_string(),
                d.get("use") == Some(&Value::Bool(true)),
                d.get("reason").unwrap().as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn used(plan: &Value) -> Vec<String> {
    verdicts(plan).into_iter().filter(|v| v.1).map(|v| v.0).collect()
}

fn reason<'a>(v: &'a [(String, bool, String)], name: &str) -> &'a str {
    &v.iter().find(|d| d.0 == name).unwrap_or_else(|| panic!("{name} listed")).2
}

/// A copy of a fixture tree in a fresh temporary directory, to vary one file.
fn copy_tree(name: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!(
        "ephemcrypt-test-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dst);
    let st = Command::new("cp").arg("-a").arg(fixture(name)).arg(&dst).status().unwrap();
    assert!(st.success());
    dst
}

#[test]
fn aws_instance_store_beside_ebs_root() {
    let p = plan_json(&fixture("aws"), &[]);
    // Ordered by serial (AWS11… before AWS22…), not by nvme number.
    assert_eq!(used(&p), ["nvme2n1", "nvme1n1"]);
    let v = verdicts(&p);
    assert!(reason(&v, "nvme0n1").starts_with("an AWS EBS volume (model 'Amazon Elastic Block Store')"));
    assert!(reason(&v, "nvme3n1").contains("EBS"));
    let disk0 = &p.get("disks").unwrap().as_array()[0];
    assert_eq!(disk0.get("model").unwrap().as_str(), Some("Amazon EC2 NVMe Instance Storage"));
    assert_eq!(disk0.get("serial").unwrap().as_str(), Some("AWS11A1C5F8A1D0E0002"));
    assert_eq!(disk0.get("path").unwrap().as_str(), Some("/dev/nvme2n1"));
    assert_eq!(disk0.get("size_bytes"), Some(&Value::Num(1769u64 << 30)));
    let vol = p.get("volume").unwrap();
    assert_eq!(vol.get("stripe").unwrap().get("name").unwrap().as_str(), Some("ephemcrypt-stripe"));
    assert_eq!(vol.get("crypt").unwrap().get("cipher").unwrap().as_str(), Some("aes-xts-plain64"));
    assert_eq!(p.get("state").unwrap().as_str(), Some("ready"));
}

#[test]
fn gcp_local_ssds_beside_persistent_disk() {
    let p = plan_json(&fixture("gcp"), &[]);
    // Equal serials (one controller): ordered by path.
    assert_eq!(used(&p), ["nvme1n1", "nvme1n2"]);
    assert!(reason(&verdicts(&p), "nvme0n1").starts_with("a GCP persistent disk (model 'nvme_card-pd')"));
    let crypt = p.get("volume").unwrap().get("crypt").unwrap().clone();
    assert_eq!(crypt.get("sector_size"), Some(&Value::Num(4096)));
}

#[test]
fn azure_direct_disks_beside_remote_os_disk() {
    let p = plan_json(&fixture("azure"), &[]);
    assert_eq!(used(&p), ["nvme2n1", "nvme1n1"]);
    assert!(reason(&verdicts(&p), "nvme0n1").starts_with("an Azure remote disk (model 'MSFT NVMe Accelerator v1.0')"));
}

#[test]
fn every_refusal_rule() {
    let p = plan_json(&fixture("refusals"), &[]);
    let v = verdicts(&p);
    assert_eq!(used(&p), ["sdk"]);
    let expect = [
        ("nvme0n1", "an AWS EBS volume (model 'Amazon Elastic Block Store'): persistent disks are never used"),
        ("sda", "holds the root file system (mounted at /sysroot)"),
        ("sdb", "mounted at /data disk"),
        ("sdc", "has partitions (sdc1)"),
        ("sdd", "in use by dm-3 (holders)"),
        ("sde", "active swap (sde)"),
        ("sdf", "read-only"),
        ("sdg", "removable"),
        ("sdh", "too small (256M < min-size 1G)"),
        ("sdi", "carries a signature: ext2/3/4 file system (set force=yes to overwrite it)"),
        ("sdj", "excluded by 'exclude' (serial:EXCLUDED)"),
        ("sdl", "not selected by 'devices'"),
    ];
    for (name, why) in expect {
        assert_eq!(reason(&v, name), why, "{name}");
    }
    assert_eq!(v.len(), expect.len() + 1, "virtual devices (loop0, dm-3) are not listed: {v:?}");
}

#[test]
fn force_takes_signed_disks_but_nothing_else() {
    let tree = copy_tree("refusals");
    let conf = tree.join("etc/ephemcrypt.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}force = yes\n")).unwrap();
    let p = plan_json(&tree, &[]);
    assert_eq!(used(&p), ["sdk", "sdi"]); // serial GOOD < SIGNATURE
    std::fs::remove_dir_all(tree).unwrap();
}

#[test]
fn cmdline_selects_by_path_link_and_disables() {
    let tree = copy_tree("refusals");
    std::fs::write(
        tree.join("proc/cmdline"),
        "root=/dev/sda rd.ephemcrypt.devices=path:/dev/disk/by-id/nvme-Other_disk_OTHER\n",
    )
    .unwrap();
    assert_eq!(used(&plan_json(&tree, &[])), ["sdl"]);
    std::fs::write(tree.join("proc/cmdline"), "root=/dev/sda rd.ephemcrypt=0\n").unwrap();
    let p = plan_json(&tree, &[]);
    assert_eq!(p.get("state").unwrap().as_str(), Some("disabled"));
    std::fs::remove_dir_all(tree).unwrap();
}

#[test]
fn image_cmdline_d_is_read_and_the_boot_loader_wins() {
    let tree = copy_tree("aws");
    std::fs::create_dir_all(tree.join("etc/cmdline.d")).unwrap();
    std::fs::write(tree.join("etc/cmdline.d/50-ephemcrypt.conf"), "rd.ephemcrypt.devices=gcp rd.ephemcrypt.swap=1G\n")
        .unwrap();
    assert_eq!(plan_json(&tree, &[]).get("state").unwrap().as_str(), Some("absent"));
    std::fs::write(tree.join("proc/cmdline"), "root=/dev/nvme0n1p1 rd.ephemcrypt.devices=aws\n").unwrap();
    let p = plan_json(&tree, &[]);
    assert_eq!(used(&p), ["nvme2n1", "nvme1n1"]);
    assert!(p.get("volume").unwrap().get("swap").unwrap().get("size_bytes").is_some(), "swap from cmdline.d kept");
    std::fs::remove_dir_all(tree).unwrap();
}

#[test]
fn no_disk_is_exit_0_and_says_so() {
    let tree = copy_tree("aws");
    std::fs::write(tree.join("proc/cmdline"), "rd.ephemcrypt.devices=gcp\n").unwrap();
    let p = plan_json(&tree, &[]);
    assert_eq!(p.get("state").unwrap().as_str(), Some("absent"));
    assert_eq!(p.get("volume"), Some(&Value::Null));
    let out = run(&["plan", "--host", tree.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("result: absent (no eligible disk; nothing to do)"));
    std::fs::remove_dir_all(tree).unwrap();
}

#[test]
fn text_output_lists_disks_and_steps() {
    let out = run(&["plan", "--host", fixture("aws").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("nvme2n1"), "{text}");
    assert!(text.contains("-> use: blank (every probed region reads as zeros)"), "{text}");
    assert!(text.contains("-> skip: an AWS EBS volume"), "{text}");
    // Each step as the table or command it is.
    for want in [
        "write ephemcrypt's header (4096 bytes, no key) at the start of each member, side by side:\n        /dev/nvme2n1: volume new 'ephemcrypt', member 1 of 2, data from sector 2048; the rest of the reserved MiB was read as zeros\n",
        "create mapping ephemcrypt-stripe (uuid EPHEMCRYPT-STRIPE-ephemcrypt-stripe) with table:\n        0 7419719680 striped 2 512 259:4 2048 259:3 2048\n",
        " crypt aes-xts-plain64 KEY 0 /dev/mapper/ephemcrypt-stripe 0 3 no_read_workqueue no_write_workqueue sector_size:4096\n",
        "mkfs.ext4 -q -F -L ephemcrypt -O sparse_super2,^resize_inode -E nodiscard,lazy_itable_init=1,lazy_journal_init=1,num_backup_sb=0 -G 4096 /dev/mapper/ephemcrypt\n",
        "mount -t ext4 -o nosuid,nodev,noinit_itable /dev/mapper/ephemcrypt /sysroot/mnt/ephemcrypt (its root labelled as /sysroot/mnt/ephemcrypt was)\n",
        "mount --bind /sysroot/mnt/ephemcrypt/var/log /sysroot/var/log\n",
        "on failure: undo the steps taken, in reverse order, then on-failure=tmpfs:\n",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    assert!(out.stderr.is_empty(), "stdout carries data, stderr logs: {}", String::from_utf8_lossy(&out.stderr));
}

/// The aws machine with its kernel in FIPS mode (proc/sys/crypto/fips_enabled is 1): the default
/// cipher is planned as usual; a cipher the kernel refuses in FIPS mode, from the command line, is
/// refused with no step at all, naming FIPS mode and the cipher.
#[test]
fn fips_mode_plans_the_default_and_refuses_a_cipher_the_kernel_refuses() {
    let p = plan_json(&fixture("aws-fips"), &[]);
    assert_eq!(p.get("state").unwrap().as_str(), Some("ready"));
    assert_eq!(p.get("fips_mode"), Some(&Value::Bool(true)));
    assert_eq!(plan_json(&fixture("aws"), &[]).get("fips_mode"), Some(&Value::Bool(false)));
    let out = run(&["plan", "--host", fixture("aws-fips").to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FIPS mode: the kernel's approved aes-xts-plain64 encrypts the disks\n"), "{text}");

    let tree = copy_tree("aws-fips");
    std::fs::write(tree.join("proc/cmdline"), "ro rd.ephemcrypt.cipher=twofish-xts-plain64\n").unwrap();
    let p = plan_json(&tree, &[]);
    assert_eq!(p.get("state").unwrap().as_str(), Some("invalid"));
    let why = p.get("reason").unwrap().as_str().unwrap();
    assert_eq!(
        why,
        "the kernel runs in FIPS mode (/proc/sys/crypto/fips_enabled is 1) and refuses cipher twofish-xts-plain64 \
         with key-bits 512: twofish is not a FIPS-approved cipher: the kernel disables it in FIPS mode (use \
         aes-xts-plain64)"
    );
    assert_eq!(p.get("steps").unwrap().as_array(), []);
    assert!(used(&p).is_empty());
    // Not in FIPS mode, the same cipher is planned.
    std::fs::write(tree.join("proc/sys/crypto/fips_enabled"), "0\n").unwrap();
    assert_eq!(plan_json(&tree, &[]).get("state").unwrap().as_str(), Some("ready"));
    std::fs::remove_dir_all(tree).unwrap();
}

#[test]
fn config_errors_exit_2_naming_key_value_and_source() {
    let tree = copy_tree("aws");
    let conf = tree.join("my.conf");
    std::fs::write(&conf, "# test\nchunk = 3K\n").unwrap();
    let out = run(&["plan", "--host", tree.to_str().unwrap(), "--config", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "invalid value '3K' for 'chunk' (from {} line 2): expected a power of two",
            conf.display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    std::fs::write(tree.join("proc/cmdline"), "rd.ephemcrypt.fs=zfs\n").unwrap();
    let out = run(&["plan", "--host", tree.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("invalid value 'zfs' for 'fs' (from the kernel command line): expected ext4, xfs or none"));
    std::fs::remove_dir_all(tree).unwrap();
}

#[test]
fn usage_errors_help_and_version() {
    for (args, code, needle) in [
        (&["plan", "--bogus"][..], 2, "unknown option '--bogus' for 'plan'"),
        (&["frobnicate"][..], 2, "unknown command 'frobnicate'"),
        (&[][..], 2, "no command given"),
        (&["plan", "--host"][..], 2, "--host needs a value"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}");
    }
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ephemcrypt plan [--host DIR]"));
    let out = run(&["--version"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("ephemcrypt {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn missing_host_files_are_named() {
    let out = run(&["plan", "--host", "/nonexistent/host"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read /nonexistent/host/proc/cmdline: No such file or directory")
    );
}

/// A disk is taken only when it is positively free: blank or ephemcrypt's own. Everything else is
/// refused, named where a signature says what it is, as data where none does.
#[test]
fn only_blank_and_our_own_disks_are_taken() {
    let p = plan_json(&fixture("content"), &[]);
    let v = verdicts(&p);
    assert_eq!(used(&p), ["sda", "sdb"]);
    assert_eq!(reason(&v, "sda"), "blank (every probed region reads as zeros)");
    assert_eq!(
        reason(&v, "sdb"),
        "previous ephemcrypt volume 'ephemcrypt' 5e5e5e5e, created 2026-11-18 11:06:40 UTC, member 1 of 2"
    );
    let named = [
        ("sdc", "holds an ephemcrypt header whose checksum fails: foreign data"),
        ("sdd", "holds data that is neither blank nor an ephemcrypt volume"),
        ("sde", "Ceph BlueStore OSD"),
        ("sdf", "Stratis pool member"),
        ("sdg", "DRBD meta data"),
        ("sdh", "Oracle ASM disk"),
        ("sdi", "LUKS header"),
        ("sdj", "ZFS pool member"),
    ];
    for (name, what) in named {
        assert!(reason(&v, name).contains(what), "{name}: {}", reason(&v, name));
        assert!(reason(&v, name).contains("set force=yes"), "{name}: how to take it anyway");
    }
    // force=yes takes them all, and says so.
    let tree = copy_tree("content");
    std::fs::write(tree.join("etc/ephemcrypt.conf"), "devices = model:Test*\nforce = yes\n").unwrap();
    let p = plan_json(&tree, &[]);
    assert_eq!(used(&p).len(), 10);
    assert!(reason(&verdicts(&p), "sdd").starts_with("forced (force=yes) over unrecognised data"));
    std::fs::remove_dir_all(tree).unwrap();
}

/// One odd block device or a stray byte on the command line refuses that disk only; the scan and
/// the volume go on.
#[test]
fn bad_host_data_refuses_one_disk_and_never_stops_the_scan() {
    let p = plan_json(&fixture("hostile"), &[]);
    let v = verdicts(&p);
    assert_eq!(used(&p), ["sda"]);
    assert_eq!(p.get("state").unwrap().as_str(), Some("ready"));
    assert!(reason(&v, "sdc").contains("sys/block/sdc/dev: expected major:minor, found ''"), "{}", reason(&v, "sdc"));
    assert!(reason(&v, "sdd").contains("sys/block/sdd/size: expected a number of 512-byte sectors"));
    assert!(reason(&v, "sde").contains("logical_block_size: expected a power of two"));
    assert_eq!(reason(&v, "sdb"), "not selected by 'devices'");
    // A byte that is not UTF-8 inside one of ephemcrypt's own keys is an error naming the key.
    let tree = copy_tree("hostile");
    std::fs::write(tree.join("proc/cmdline"), b"quiet rd.ephemcrypt.devices=serial:G\xffOD\n").unwrap();
    let out = run(&["plan", "--host", tree.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("for 'devices' (from the kernel command line): expected text that is valid UTF-8"), "{err}");
    std::fs::remove_dir_all(tree).unwrap();
}

/// An exclude naming a /dev/disk link that matches no disk is never ignored: no disk is taken, and
/// the plan names the exclusion. udev's own by-id names match before udev has run.
#[test]
fn an_exclude_that_cannot_be_checked_takes_no_disk() {
    let tree = copy_tree("aws");
    std::fs::remove_dir_all(tree.join("dev/disk")).unwrap(); // udev has not run
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    let conf = tree.join("etc/ephemcrypt.conf");
    std::fs::write(
        &conf,
        "exclude = path:/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS22B2C5F8A1D0E0001\n",
    )
    .unwrap();
    let p = plan_json(&tree, &[]);
    assert_eq!(used(&p), ["nvme2n1"], "the exclusion holds without the link");
    assert!(reason(&verdicts(&p), "nvme1n1").starts_with("excluded by 'exclude'"));
    std::fs::write(&conf, "exclude = path:/dev/disk/by-id/aws-ephemeral-scratch\n").unwrap();
    let p = plan_json(&tree, &[]);
    assert!(used(&p).is_empty());
    // A failure, not "nothing to do": the failure policy covers the bind targets.
    assert_eq!(p.get("state").unwrap().as_str(), Some("invalid"));
    assert!(p.get("reason").unwrap().as_str().unwrap().contains("path:/dev/disk/by-id/aws-ephemeral-scratch"));
    let why = reason(&verdicts(&p), "nvme1n1").to_string();
    assert!(why.contains("path:/dev/disk/by-id/aws-ephemeral-scratch") && why.contains("no disk is taken"), "{why}");
    std::fs::remove_dir_all(tree).unwrap();
}

/// Strings from sysfs and from forged headers that would act on a terminal or the journal (issue
/// 19): `plan` and `status` show them escaped, `--json` carries them raw (JSON-escaped); a forged
/// header is refused as foreign data naming its field; a serial udev would change is refused with
/// the reason.
#[test]
fn hostile_strings_are_shown_escaped_and_forged_headers_refused() {
    let tree = fixture("forged");
    let out = run(&["plan", "--host", tree.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(['\x1b', '\x07', '\u{9b}']) && !text.contains("\n<0>"), "{text:?}");
    for shown in [
        r"sdb               10G  Test \x1b[2J model\n<0>emerg \x9bx, serial EVILMODEL  -> use: blank",
        r"serial SER\x1b]0;pwned\x07IAL  -> skip: its serial 'SER\x1b]0;pwned\x07IAL' has a character udev",
        r"skip: holds an ephemcrypt header that cannot be right (name: 'x\n<0>emerg' is not a volume name",
        r"(name: 'x\x1b[2J;touch PWNED' is not a volume name",
    ] {
        assert!(text.contains(shown), "{shown}\nin\n{text}");
    }

    // JSON: the raw values, JSON-escaped.
    let out = run(&["plan", "--json", "--host", tree.to_str().unwrap()]);
    let json_text = String::from_utf8(out.stdout).unwrap();
    assert!(!json_text.contains(['\x1b', '\x07', '\u{9b}']), "{json_text:?}");
    assert!(json_text.contains(r#""model": "Test \u001b[2J model\n<0>emerg \u009bx""#), "{json_text}");
    let p = json::parse(&json_text).unwrap();
    assert_eq!(used(&p), ["sdb", "sda"]);
    let disk = |name: &str| {
        p.get("disks")
            .unwrap()
            .as_array()
            .iter()
            .find(|d| d.get("name").unwrap().as_str() == Some(name))
            .unwrap()
            .clone()
    };
    assert_eq!(disk("sdb").get("model").unwrap().as_str(), Some("Test \x1b[2J model\n<0>emerg \u{9b}x"));
    assert_eq!(disk("sdc").get("serial").unwrap().as_str(), Some("SER\x1b]0;pwned\x07IAL"));
    let v = verdicts(&p);
    assert!(reason(&v, "sdd").starts_with("its serial 'AB CD' has a character udev does not keep in serials (' '"));
    for name in ["sde", "sdf"] {
        assert!(reason(&v, name).contains("set force=yes"), "{name}: {}", reason(&v, name));
    }

    // status: a status file made of these disks (as setup writes it), a reason and a step title
    // with a line break, quotes and a backslash.
    let copy = copy_tree("forged");
    std::fs::create_dir_all(copy.join("run/ephemcrypt")).unwrap();
    let status = ephemcrypt::json::Value::obj([
        ("result", Value::from("degraded")),
        ("reason", Value::from("x\n<0>emerg \x1b[2J")),
        ("disks", p.get("disks").unwrap().clone()),
        ("steps", Value::Arr(vec![Value::obj([("step", Value::from("a\"b\nc\\")), ("ms", Value::Num(1500))])])),
    ]);
    std::fs::write(copy.join("run/ephemcrypt/status.json"), status.pretty()).unwrap();
    let host = copy.to_str().unwrap();
    let out = run(&["status", "--host", host]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(['\x1b', '\x07', '\u{9b}']) && !text.contains("\n<0>"), "{text:?}");
    assert!(text.starts_with("result: degraded (x\\n<0>emerg \\x1b[2J)\n"), "{text}");
    assert!(text.contains(r"disk /dev/sdb (Test \x1b[2J model\n<0>emerg \x9bx EVILMODEL): used: blank"), "{text}");
    assert!(text.contains(r"disk /dev/sdc (Test serial SER\x1b]0;pwned\x07IAL): refused: its serial"), "{text}");
    assert!(text.contains(r"disk /dev/sde (Test forged name FORGED1): refused: holds an ephemcrypt header that cannot be right (name: 'x\n<0>emerg'"), "{text}");
    let out = run(&["status", "--json", "--host", host]);
    let back = json::parse(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(back.get("disks"), p.get("disks"), "status --json carries the raw values");
    // Prometheus: a label value escapes backslash, quote and line break as the exposition format
    // wants.
    let out = run(&["status", "--format", "prometheus", "--host", host]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("ephemcrypt_setup_step_duration_seconds{kind=\"other\",step=\"a\\\"b\\nc\\\\\"} 1.500\n"),
        "{text}"
    );
    std::fs::remove_dir_all(copy).unwrap();

    // A value from the kernel command line in an error: escaped too.
    let copy = copy_tree("forged");
    std::fs::write(copy.join("proc/cmdline"), "rd.ephemcrypt.fs=x\x1b[2J\n").unwrap();
    let out = run(&["plan", "--host", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r"invalid value 'x\x1b[2J' for 'fs' (from the kernel command line)"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
    // A path with a control character is no path ephemcrypt takes.
    std::fs::write(copy.join("proc/cmdline"), "rd.ephemcrypt.mount=/mnt/e\x1b[2Jx\n").unwrap();
    let out = run(&["plan", "--host", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r"invalid value '/mnt/e\x1b[2Jx' for 'mount' (from the kernel command line)"), "{err}");
    std::fs::remove_dir_all(copy).unwrap();
}

/// A CIS layout in the new root's fstab (tests/fixtures/cis-root, a systemd root): `plan` binds
/// none of the targets in the initramfs, writes a unit named after each, and says what becomes
/// of each fstab mount at, above or inside a target (issue 20).
#[test]
fn a_cis_root_gets_units_for_every_bind_and_a_line_for_every_fstab_mount() {
    let p = plan_json(&fixture("aws"), &["--newroot", fixture("cis-root").to_str().unwrap()]);
    let steps = p.get("steps").unwrap().as_array();
    let kind = |s: &Value| s.get("kind").unwrap().as_str().unwrap().to_string();
    assert!(!steps.iter().any(|s| kind(s) == "bind"), "no bind in the initramfs");
    let units: Vec<&str> =
        steps.iter().filter(|s| kind(s) == "unit").map(|s| s.get("name").unwrap().as_str().unwrap()).collect();
    for u in ["var-log.mount", "tmp.mount", "var-tmp.mount"] {
        assert!(units.contains(&u), "{u} in {units:?}");
    }
    let var_log = steps.iter().find(|s| s.get("name").and_then(Value::as_str) == Some("var-log.mount")).unwrap();
    let text = var_log.get("text").unwrap().as_str().unwrap();
    assert!(
        text.contains("\nOptions=bind,nosuid,nodev,noexec\n") && text.contains("\nBefore=rsyslog.service\n"),
        "{text}"
    );
    let fstab: Vec<&str> = p.get("fstab").unwrap().as_array().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(fstab.len(), 4, "{fstab:#?}");
    assert!(fstab[1].starts_with("/var/log: its own file system in /etc/fstab is NOT mounted"), "{}", fstab[1]);
    assert!(fstab[2].contains("kept across reboots"), "{}", fstab[2]);
    let out =
        run(&["plan", "--host", fixture("aws").to_str().unwrap(), "--newroot", fixture("cis-root").to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("fstab of the real root:\n  /var: mounted as /etc/fstab says"), "{text}");
}
