//! `ephemcrypt setup` and `ephemcrypt status` on paths that need no device-mapper: usage
//! errors, nothing to do, disabled, a configuration error at boot, and reading the status back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ephemcrypt::json::{self, Value};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ephemcrypt")).args(args).output().expect("run ephemcrypt")
}

/// A copy of a fixture host tree plus an empty new root, in a fresh temporary directory.
struct Machine {
    base: PathBuf,
}

impl Machine {
    fn new(fixture: &str, cmdline: &str) -> Machine {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("ephemcrypt-cli-{fixture}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("newroot")).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture);
        assert!(Command::new("cp").arg("-a").arg(src).arg(base.join("host")).status().unwrap().success());
        std::fs::write(base.join("host/proc/cmdline"), cmdline).unwrap();
        Machine { base }
    }
    fn host(&self) -> String {
        self.base.join("host").display().to_string()
    }
    fn newroot(&self) -> String {
        self.base.join("newroot").display().to_string()
    }
    fn setup(&self) -> Output {
        run(&["setup", "--host", &self.host(), "--newroot", &self.newroot()])
    }
    fn status_json(&self) -> Value {
        let text = std::fs::read_to_string(self.base.join("host/run/ephemcrypt/status.json")).expect("status written");
        json::parse(&text).expect("status is JSON")
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn setup_usage_errors() {
    let o = run(&["setup"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("setup needs --newroot DIR"), "{}", stderr(&o));
    let o = run(&["setup", "--newroot", "/nonexistent/sysroot"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--newroot /nonexistent/sysroot: not a directory"));
    let o = run(&["setup", "--newroot", "/", "--json"]);
    assert!(stderr(&o).contains("--json does not go with 'setup'"));
    let o = run(&["plan", "--newroot", "/nonexistent/sysroot"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--newroot /nonexistent/sysroot: not a directory"));
    let o = run(&["status", "--newroot", "/"]);
    assert!(stderr(&o).contains("--newroot does not go with 'status'"));
}

#[test]
fn setup_with_no_eligible_disk_is_absent() {
    let m = Machine::new("aws", "root=/dev/nvme0n1p1 rd.ephemcrypt.devices=gcp");
    let o = m.setup();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("ephemcrypt: result: absent (no eligible disk; nothing to do)"), "{}", stderr(&o));
    let s = m.status_json();
    assert_eq!(s.get("result").unwrap().as_str(), Some("absent"));
    let disks = s.get("disks").unwrap().as_array();
    assert_eq!(disks.len(), 4);
    assert!(disks.iter().all(|d| d.get("use") == Some(&Value::Bool(false))));
    // status reads it back
    let o = run(&["status", "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("result: absent (no eligible disk; nothing to do)"), "{text}");
    assert!(
        text.contains(
            "disk /dev/nvme1n1 (Amazon EC2 NVMe Instance Storage AWS22B2C5F8A1D0E0001): refused: not selected"
        ),
        "{text}"
    );
}

#[test]
fn setup_disabled() {
    let m = Machine::new("aws", "root=/dev/nvme0n1p1 rd.ephemcrypt=0");
    assert_eq!(m.setup().status.code(), Some(0));
    assert_eq!(m.status_json().get("result").unwrap().as_str(), Some("disabled"));
}

#[test]
fn setup_with_a_configuration_error_reports_failed_and_lets_the_boot_go_on() {
    let m = Machine::new("aws", "root=/dev/nvme0n1p1 rd.ephemcrypt.fs=zfs");
    let o = m.setup();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = m.status_json();
    assert_eq!(s.get("result").unwrap().as_str(), Some("failed"));
    assert!(s
        .get("reason")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("invalid value 'zfs' for 'fs' (from the kernel command line)"));
    // The empty new root has no bind targets, so the tmpfs fallback had nothing to cover.
    assert_eq!(s.get("tmpfs").unwrap().as_array(), &[]);
    assert!(!stderr(&o).contains("tmpfs mounted"), "{}", stderr(&o));
}

#[test]
fn unreadable_disks_follow_the_failure_policy() {
    let m = Machine::new("aws", "rd.ephemcrypt.on-failure=halt");
    std::fs::remove_dir_all(m.base.join("host/sys/block")).unwrap();
    let o = m.setup();
    assert_eq!(o.status.code(), Some(1), "halt exits non-zero: {}", stderr(&o));
    let s = m.status_json();
    assert_eq!(s.get("result").unwrap().as_str(), Some("failed"));
    assert!(
        s.get("reason").unwrap().as_str().unwrap().contains("list")
            && s.get("reason").unwrap().as_str().unwrap().contains("sys/block")
    );
}

#[test]
fn status_json_adds_a_live_check() {
    let m = Machine::new("aws", "rd.ephemcrypt.devices=gcp");
    let dir = m.base.join("host/run/ephemcrypt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("status.json"),
        r#"{"result": "ok", "reason": "2 disk(s) encrypted", "mappings": [{"name": "ephemcrypt", "dev": "253:1"}],
            "disks": [{"name": "vda", "path": "/dev/vda", "dev": "254:0", "model": "", "serial": "", "size_bytes": 1024,
                       "use": false, "reason": "not selected by 'devices'"}],
            "cipher": "aes-xts-plain64", "key_bits": 512, "sector_size": 4096, "flags": ["sector_size:4096"], "fs": "ext4",
            "key": "kernel keyring (logon), never stored", "mount": "/mnt/ephemcrypt", "binds": ["/var/log"],
            "steps": [{"step": "mkfs", "ms": 120}]}"#,
    )
    .unwrap();
    let o = run(&["status", "--host", &m.host(), "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let s = json::parse(&String::from_utf8_lossy(&o.stdout)).unwrap();
    let map = &s.get("mappings").unwrap().as_array()[0];
    assert_eq!(map.get("live"), Some(&Value::Null), "no control device under this host tree");
    let text = String::from_utf8(run(&["status", "--host", &m.host()]).stdout).unwrap();
    for needle in [
        "result: ok (2 disk(s) encrypted)",
        "mapping /dev/mapper/ephemcrypt (253:1): unknown",
        "cipher: aes-xts-plain64, 512-bit key, sector 4096, flags: sector_size:4096",
        "key: kernel keyring (logon), never stored",
        "bind: /var/log",
        "120 ms  mkfs",
        "disk /dev/vda (no model or serial): refused: not selected by 'devices'",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
}

#[test]
fn status_without_a_status_file_says_why() {
    let m = Machine::new("aws", "");
    for cmd in ["status", "check"] {
        let o = run(&[cmd, "--host", &m.host()]);
        assert_eq!(o.status.code(), Some(3), "{cmd}");
        let e = stderr(&o);
        assert!(e.contains("ephemcrypt did not run in this boot's initramfs ("), "{e}");
        assert!(e.contains("/run/ephemcrypt/status.json is missing)"), "{e}");
        for cause in ["GRUB_FORCE_PARTUUID", "update-initramfs -u", "not rebuilt"] {
            assert!(e.contains(cause), "{cause} in {e}");
        }
    }
}

/// `ephemcrypt check` (ephemcrypt-check.service in the real root): one line; exit 0 while the
/// volume is there or there was nothing to do, 1 (a warning) when setup failed or a mapping is
/// gone.
#[test]
fn check_says_in_one_line_whether_the_volume_is_there() {
    let m = Machine::new("aws", "");
    let write = |json: &str| {
        std::fs::create_dir_all(format!("{}/run/ephemcrypt", m.host())).unwrap();
        std::fs::write(format!("{}/run/ephemcrypt/status.json", m.host()), json).unwrap();
    };
    let doc = |result: &str, reason: &str| {
        format!(
            "{{\"version\": \"0.1.0\", \"result\": \"{result}\", \"reason\": \"{reason}\", \"disks\": [], \
             \"mappings\": [], \"steps\": [], \"binds\": [], \"tmpfs\": [], \"units\": []}}"
        )
    };
    for (result, reason, code, line) in [
        ("ok", "2 disk(s) encrypted", 0, "ephemcrypt: ok: 2 disk(s) encrypted\n"),
        ("absent", "no eligible disk; nothing to do", 0, "ephemcrypt: absent: no eligible disk; nothing to do\n"),
        ("degraded", "mkfs failed", 1, ""),
        ("failed", "mkfs failed", 1, ""),
    ] {
        write(&doc(result, reason));
        let o = run(&["check", "--host", &m.host()]);
        assert_eq!(o.status.code(), Some(code), "{result}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), line);
        if code == 1 {
            let want = format!("ephemcrypt: warning: setup {result} in this boot's initramfs: {reason}");
            assert!(stderr(&o).contains(&want), "{}", stderr(&o));
        }
    }
}

/// `ephemcrypt needs`: the programs of the configuration file (not the build host's command
/// line), for image builders; a bad configuration is an error naming the key.
#[test]
fn needs_names_the_programs_of_the_configuration() {
    let m = Machine::new("aws", "rd.ephemcrypt.fs=xfs");
    let o = run(&["needs", "--host", &m.host()]);
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned()), (Some(0), "mkfs.ext4\n".into()));
    std::fs::create_dir_all(m.base.join("host/etc")).unwrap();
    std::fs::write(m.base.join("host/etc/ephemcrypt.conf"), "fs = xfs\n").unwrap();
    let o = run(&["needs", "--host", &m.host()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "mkfs.xfs\n");
    std::fs::write(m.base.join("host/etc/ephemcrypt.conf"), "fs = none\nbind =\n").unwrap();
    assert_eq!(run(&["needs", "--host", &m.host()]).stdout, b"");
    std::fs::write(m.base.join("host/etc/ephemcrypt.conf"), "fs = zfs\n").unwrap();
    let o = run(&["needs", "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid value 'zfs' for 'fs'"), "{}", stderr(&o));
}

/// `ephemcrypt needs --modules` reads the image kernel's modules.dep and modules.builtin (under
/// --host, or --moddir) and names the modules not built in; `--files` what the host has.
#[test]
fn needs_names_the_modules_and_files_of_the_configuration() {
    let m = Machine::new("aws", "rd.ephemcrypt.cipher=serpent-xts-plain64");
    let dir = m.base.join("host/lib/modules/6.1.0-9-cloud-amd64");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("modules.dep"),
        "kernel/drivers/md/dm-mod.ko:\nkernel/drivers/md/dm-crypt.ko: kernel/drivers/md/dm-mod.ko\n\
         kernel/crypto/xts.ko:\nkernel/crypto/ecb.ko:\nkernel/arch/x86/crypto/aesni-intel.ko:\nkernel/fs/xfs/xfs.ko:\n",
    )
    .unwrap();
    std::fs::write(dir.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\nkernel/crypto/aes_generic.ko\n").unwrap();
    let modules = |extra: &[&str]| {
        let o =
            run(&[&["needs", "--modules", "--kver", "6.1.0-9-cloud-amd64", "--host", &m.host()][..], extra].concat());
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), stderr(&o))
    };
    // The file's cipher (the command line's is the booted machine's), ext4 built in.
    let (code, out, _) = modules(&[]);
    assert_eq!((code, out.as_str()), (Some(0), "dm_mod\ndm_crypt\naesni_intel\nxts\necb\n"));
    let (code, out, _) = modules(&["--moddir", &dir.display().to_string()]);
    assert_eq!((code, out.as_str()), (Some(0), "dm_mod\ndm_crypt\naesni_intel\nxts\necb\n"));
    std::fs::create_dir_all(m.base.join("host/etc")).unwrap();
    std::fs::write(m.base.join("host/etc/ephemcrypt.conf"), "cipher = twofish-xts-plain64\nfs = xfs\n").unwrap();
    let (code, _, err) = modules(&[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("the cipher twofish (twofish-xts-plain64): no module and nothing built in"), "{err}");
    let o = run(&["needs", "--files", "--host", &m.host()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "/etc/ephemcrypt.conf\n");
    for (args, want) in [
        (&["needs", "--modules"][..], "needs --modules needs --kver KVER"),
        (&["needs", "--kver", "6.1"][..], "--kver or --moddir without --modules does not go with 'needs'"),
        (&["needs", "--modules", "--files", "--kver", "6.1"][..], "--files with --modules"),
        (&["needs", "--modules", "--kver", "../x"][..], "--kver '../x': a kernel release"),
        (&["plan", "--modules"][..], "--modules goes with 'needs' only"),
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

/// `recover`'s arguments: --identity or --print-commands; its options go with it only.
#[test]
fn recover_usage() {
    for (args, want) in [
        (&["recover"][..], "recover needs --identity FILE (or --print-commands for a stock-tool script)"),
        (
            &["recover", "--print-commands", "--identity", "k"][..],
            "--identity with --print-commands (the script takes it) does not go with 'recover'",
        ),
        (&["status", "--identity", "k"][..], "--identity goes with 'recover' only"),
        (&["recover", "--identity", "k", "--disks", "bogus"][..], "--disks 'bogus': a comma-separated list of"),
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // On a machine without any ephemcrypt header: said plainly, exit 1.
    let m = Machine::new("aws", "");
    let o = run(&["recover", "--print-commands", "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("recover: no ephemcrypt header on any disk looked at ("), "{}", stderr(&o));
}

/// A held boot, the escrow and the guard, as `status` and `check` show them; the guard's lock is
/// looked for in logind's inhibitor files.
#[test]
fn status_shows_held_escrow_and_the_guard() {
    let m = Machine::new("aws", "");
    let dir = format!("{}/run/ephemcrypt", m.host());
    std::fs::create_dir_all(&dir).unwrap();
    let doc = |result: &str, reason: &str, extra: &str| {
        format!(
            "{{\"result\": \"{result}\", \"reason\": \"{reason}\", \"disks\": [], \"mappings\": [], \"steps\": [], \
             \"binds\": [], \"tmpfs\": [], \"units\": []{extra}}}"
        )
    };
    std::fs::write(format!("{dir}/status.json"), doc("held", "held by /etc/ephemcrypt.hold in the real root", ""))
        .unwrap();
    let o = run(&["status", "--host", &m.host()]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("result: held (held by /etc/ephemcrypt.hold"));
    let o = run(&["check", "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("warning: no volume in this boot: held by"), "{}", stderr(&o));
    let extra = ", \"escrow\": [\"age1xyz\", \"ssh-ed25519 SHA256:abc\"], \"guard\": \"ephemcrypt-guard.service\"";
    std::fs::write(format!("{dir}/status.json"), doc("ok", "2 disk(s) encrypted", extra)).unwrap();
    let text = |m: &Machine| String::from_utf8_lossy(&run(&["status", "--host", &m.host()]).stdout).into_owned();
    let t = text(&m);
    assert!(t.contains("escrow: on, to age1xyz, ssh-ed25519 SHA256:abc (after each member's header"), "{t}");
    assert!(t.contains("guard: ephemcrypt-guard.service: not active\n"), "{t}");
    let inhibit = format!("{}/run/systemd/inhibit", m.host());
    std::fs::create_dir_all(&inhibit).unwrap();
    // A lock with WHO=ephemcrypt alone is not the guard's: root's, blocking, by its process.
    std::fs::write(format!("{inhibit}/7"), "WHAT=shutdown\nMODE=block\nWHO=ephemcrypt\n").unwrap();
    assert!(text(&m).contains("guard: ephemcrypt-guard.service: not active\n"));
    std::fs::write(format!("{inhibit}/7"), "WHAT=shutdown\nMODE=block\nUID=0\nPID=4242\nWHO=ephemcrypt\n").unwrap();
    std::fs::create_dir_all(format!("{}/proc/4242", m.host())).unwrap();
    std::fs::write(format!("{}/proc/4242/cgroup", m.host()), "0::/system.slice/ephemcrypt-guard.service\n").unwrap();
    assert!(text(&m).contains("guard: ephemcrypt-guard.service: active, reboots are blocked\n"));
}

/// `status --format prometheus`: the textfile collector's format, a result gauge per result (with
/// not_run when setup did not run, so a fleet can alert on it), written atomically with --output.
#[test]
fn status_as_prometheus_metrics() {
    let m = Machine::new("aws", "");
    // Every sample line: a name with the ephemcrypt_ prefix, optional labels, a number; every
    // metric with its HELP and TYPE first.
    let valid = |text: &str| {
        let mut declared = Vec::new();
        let mut series = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
                assert!(rest.ends_with(" gauge"), "{l}");
                continue;
            }
            if l.starts_with("# HELP ephemcrypt_") {
                continue;
            }
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(series.insert(name.to_string()), "{name} twice: node_exporter rejects the file");
            let name = name.split('{').next().unwrap();
            assert!(declared.iter().any(|d| d == name), "{name} without TYPE");
            assert!(name.starts_with("ephemcrypt_") && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{l}");
            assert!(value.chars().all(|c| c.is_ascii_digit() || c == '.'), "{l}");
        }
        text.to_string()
    };
    let o = run(&["status", "--format", "prometheus", "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = valid(&String::from_utf8_lossy(&o.stdout));
    assert!(t.contains("ephemcrypt_setup_result{result=\"not_run\"} 1\n"), "{t}");
    assert!(t.contains("ephemcrypt_setup_result{result=\"ok\"} 0\n"), "{t}");
    let dir = format!("{}/run/ephemcrypt", m.host());
    std::fs::create_dir_all(&dir).unwrap();
    let doc = r#"{"result": "ok", "reason": "2 disk(s) encrypted", "version": "0.1.0",
        "disks": [{"name": "a", "path": "/dev/a", "dev": "259:1", "model": "m", "serial": "s", "size_bytes": 1, "use": true, "reason": "blank"},
                  {"name": "b", "path": "/dev/b", "dev": "259:2", "model": "m", "serial": "t", "size_bytes": 1, "use": false, "reason": "ext4"}],
        "cipher": "aes-xts-plain64", "key_bits": 512, "sector_size": 4096, "flags": [], "fs": "ext4", "volume_bytes": 1073741824,
        "mappings": [{"name": "ephemcrypt", "dev": "253:0", "live": null}],
        "steps": [{"kind": "mkfs", "step": "mkfs \"ext4\" on /dev/mapper/x", "ms": 1234}, {"kind": "mount", "step": "mount", "ms": 5},
                  {"kind": "mount", "step": "mount", "ms": 7}, {"step": "older", "ms": 1}, {"kind": "bogus\"", "step": "x", "ms": 0}]}"#;
    std::fs::write(format!("{dir}/status.json"), doc).unwrap();
    let out = format!("{}/textfile/ephemcrypt.prom", m.host());
    let o = run(&["status", "--format", "prometheus", "--output", &out, "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let t = valid(&std::fs::read_to_string(&out).unwrap());
    for want in [
        "ephemcrypt_setup_result{result=\"ok\"} 1\n",
        "ephemcrypt_setup_result{result=\"not_run\"} 0\n",
        "ephemcrypt_disks{verdict=\"used\"} 1\nephemcrypt_disks{verdict=\"refused\"} 1\n",
        "ephemcrypt_volume_bytes 1073741824\n",
        "ephemcrypt_mappings{state=\"unknown\"} 1\n",
        "ephemcrypt_setup_step_duration_seconds{kind=\"mkfs\",step=\"mkfs \\\"ext4\\\" on /dev/mapper/x\"} 1.234\n",
        "ephemcrypt_setup_step_duration_seconds{kind=\"mount\",step=\"mount\"} 0.012\n",
        // A status without a kind (an older version's) or with one not known: other.
        "ephemcrypt_setup_step_duration_seconds{kind=\"other\",step=\"older\"} 0.001\n",
        "ephemcrypt_setup_step_duration_seconds{kind=\"other\",step=\"x\"} 0.000\n",
        "ephemcrypt_setup_duration_seconds 1.247\n",
        "ephemcrypt_info{version=\"0.1.0\"} 1\n",
    ] {
        assert!(t.contains(want), "{want} in\n{t}");
    }
    let o = run(&["status", "--output", &out, "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(2));
    // A path that names no file is refused, naming it (it aborted the program before).
    for bad in ["", "/", "x/.."] {
        let o = run(&["status", "--format", "prometheus", "--output", bad, "--host", &m.host()]);
        assert_eq!(o.status.code(), Some(1), "--output {bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("expected a path that ends in a file name"), "{}", stderr(&o));
    }
    let o = run(&["plan", "--format", "prometheus"]);
    assert!(stderr(&o).contains("--format goes with 'status' only"), "{}", stderr(&o));

    // The textfile directory belongs to another account (prometheus), which planted links at the
    // final name, at the fixed temporary name of old versions, and a linked directory: nothing is
    // written through any of them; the final name's link is replaced by the file (rename).
    use std::os::unix::fs::{symlink, PermissionsExt};
    let textfile = format!("{}/textfile", m.host());
    std::fs::set_permissions(&textfile, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = format!("{}/victim", m.host());
    std::fs::write(&victim, "precious").unwrap();
    std::fs::remove_file(&out).unwrap();
    symlink(&victim, &out).unwrap();
    symlink(&victim, format!("{textfile}/.ephemcrypt.prom.tmp")).unwrap();
    let o = run(&["status", "--format", "prometheus", "--output", &out, "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    valid(&std::fs::read_to_string(&out).unwrap());
    std::fs::create_dir_all(format!("{}/etc", m.host())).unwrap();
    symlink(format!("{}/etc", m.host()), format!("{textfile}/sub")).unwrap();
    let through = format!("{textfile}/sub/ephemcrypt.prom");
    let o = run(&["status", "--format", "prometheus", "--output", &through, "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("{textfile}/sub")) && stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert!(!std::path::Path::new(&format!("{}/etc/ephemcrypt.prom", m.host())).exists());
}

/// `ephemcrypt check` writes node-feature-discovery's feature file (Kubernetes node labels) in
/// the configured directory under the host root, or the one `--node-features` names; nothing
/// where the directory does not exist or the configuration says none; the check's own exit
/// status is unchanged.
#[test]
fn check_writes_the_node_feature_file() {
    let m = Machine::new("aws", "");
    let run_dir = format!("{}/run/ephemcrypt", m.host());
    std::fs::create_dir_all(&run_dir).unwrap();
    let features = m.base.join("host/etc/kubernetes/node-feature-discovery/features.d");
    // No directory: no file, and none made.
    let o = run(&["check", "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(!m.base.join("host/etc/kubernetes").exists());
    std::fs::create_dir_all(&features).unwrap();
    let o = run(&["check", "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(3));
    let file = features.join("ephemcrypt");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with("\nephemcrypt.encrypted=false\nephemcrypt.result=not_run\n"), "{text}");
    std::fs::write(
        format!("{run_dir}/status.json"),
        "{\"version\": \"0.1.0\", \"result\": \"ok\", \"reason\": \"1 disk(s) encrypted\", \"disks\": [], \
         \"cipher\": \"aes-xts-plain64\", \"key_bits\": 512, \"sector_size\": 4096, \"flags\": [], \
         \"fs\": \"ext4\", \"volume_bytes\": 1073741824, \
         \"mappings\": [], \"steps\": [], \"binds\": [], \"tmpfs\": [], \"units\": []}",
    )
    .unwrap();
    let o = run(&["check", "--host", &m.host()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.ends_with(
            "\nephemcrypt.encrypted=true\nephemcrypt.result=ok\nephemcrypt.cipher=aes-xts-plain64\nephemcrypt.key-bits=512\n"
        ),
        "{text}"
    );
    // --node-features names another directory (a path on this machine).
    let other = m.base.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let o = run(&["check", "--host", &m.host(), "--node-features", &other.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read_to_string(other.join("ephemcrypt")).unwrap().contains("encrypted=true"));
    // node-features = none: nothing written.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(m.base.join("host/etc/ephemcrypt.conf"), "node-features = none\n").unwrap();
    run(&["check", "--host", &m.host()]);
    assert!(!file.exists());
    let o = run(&["status", "--host", &m.host(), "--node-features", "/x"]);
    assert!(stderr(&o).contains("--node-features goes with 'check' only"), "{}", stderr(&o));
}
