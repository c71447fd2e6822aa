//! Setup against a fake kernel ([`Fake`]) on host trees: the order of operations, the steps that
//! `plan` prints against the calls setup makes, rollback after a failure injected at every call,
//! each failure policy, idempotence, late disks, and a planted key that must never leak.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use crate::fake::{add_disk, Fake, Tree, PLANTED};
use crate::host::Host;
use crate::json::Value;
use crate::setup::{setup, show};
use crate::status::{self, SetupResult, Status};
use crate::system::LinuxSystem;
use crate::units::DevNo;

/// Every log line of the test process.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Tests that read the shared log run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Capture;
impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        LOG.lock().unwrap().push(r.args().to_string());
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

const SYSROOT: &str = "/sysroot";

/// Two instance-store disks whose enumeration order differs from their serial order.
fn two_disks(config: &str) -> Tree {
    let t = Tree::new(config);
    t.disk("nvme2n1", 2, "B").disk("nvme1n1", 1, "A");
    t
}

/// Setup on the fake against `tree`, with the new root at /sysroot (all its directories there).
fn run(fake: &mut Fake, tree: &Tree) -> Status {
    setup(&tree.host(), None, Path::new(SYSROOT), fake).1
}

fn parse_status(fake: &Fake) -> Status {
    status::parse(fake.status.as_deref().expect("status written")).unwrap()
}

#[test]
fn order_of_operations_two_disks_with_swap() {
    let tree = two_disks("swap = 4G");
    let mut fake = Fake::new();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    let want = [
        "crypt_version",
        "identity",
        "write_header /dev/nvme1n1 1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d 1/2",
        "write_header /dev/nvme2n1 1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d 2/2",
        "dm_create ephemcrypt-stripe EPHEMCRYPT-STRIPE-ephemcrypt-stripe",
        "dm_load ephemcrypt-stripe secure=false 0 419426304 striped 2 512 259:1 2048 259:2 2048",
        "dm_resume ephemcrypt-stripe",
        "make_node ephemcrypt-stripe",
        "check_kernel_crypto xts(aes)",
        "dm_create ephemcrypt CRYPT-PLAIN-ephemcrypt",
        "make_key 64",
        "add_logon_key ephemcrypt:ephemcrypt:100",
        "dm_load ephemcrypt secure=true 0 419426304 crypt aes-xts-plain64 :64:logon:ephemcrypt:ephemcrypt:100 0 253:0 0 3 no_read_workqueue no_write_workqueue sector_size:4096",
        "invalidate_key 100",
        "dm_resume ephemcrypt",
        "make_node ephemcrypt",
        "dm_create ephemcrypt-swap EPHEMCRYPT-SWAP-ephemcrypt-swap",
        "dm_load ephemcrypt-swap secure=false 0 8388608 linear 253:1 0",
        "dm_resume ephemcrypt-swap",
        "make_node ephemcrypt-swap",
        "dm_create ephemcrypt-data EPHEMCRYPT-DATA-ephemcrypt-data",
        "dm_load ephemcrypt-data secure=false 0 411037696 linear 253:1 8388608",
        "dm_resume ephemcrypt-data",
        "make_node ephemcrypt-data",
        "make_swap ephemcrypt-swap 4294967296",
        "swapon ephemcrypt-swap",
        "run mkfs.ext4 -q -F -L ephemcrypt -O sparse_super2,^resize_inode -E nodiscard,lazy_itable_init=1,lazy_journal_init=1,num_backup_sb=0 -G 4096 /dev/mapper/ephemcrypt-data",
        "mkdir /sysroot/mnt",
        "mkdir /sysroot/mnt/ephemcrypt",
        "mount /dev/mapper/ephemcrypt-data /sysroot/mnt/ephemcrypt ext4 nosuid,nodev,noinit_itable",
        "copy_skeleton /sysroot/var/log /sysroot/mnt/ephemcrypt/var/log",
        "bind /sysroot/mnt/ephemcrypt/var/log /sysroot/var/log",
        "copy_skeleton /sysroot/tmp /sysroot/mnt/ephemcrypt/tmp",
        "bind /sysroot/mnt/ephemcrypt/tmp /sysroot/tmp",
        "copy_skeleton /sysroot/var/tmp /sysroot/mnt/ephemcrypt/var/tmp",
        "bind /sysroot/mnt/ephemcrypt/var/tmp /sysroot/var/tmp",
        "write_status",
    ];
    assert_eq!(fake.calls, want);
    assert!(fake.keys.is_empty(), "keyring entry invalidated");
    assert_eq!(o.mappings.len(), 4);
    assert_eq!(o.swap.as_deref(), Some("/dev/mapper/ephemcrypt-swap"));
    assert_eq!(o.binds, ["/var/log", "/tmp", "/var/tmp"].map(PathBuf::from));
    assert_eq!(o.mount.as_deref(), Some(Path::new("/mnt/ephemcrypt")));
    let written = parse_status(&fake);
    assert_eq!(written.result, SetupResult::Ok);
    assert_eq!(written.key.as_deref(), Some("kernel keyring (logon), never stored"));
    assert_eq!(written.mappings[1].dev, DevNo { major: 253, minor: 1 });
    assert_eq!(
        written.steps.iter().map(|t| t.step.as_str()).collect::<Vec<_>>()[..5],
        [
            "read sysfs: 2 disks",
            "probe 2 disks side by side",
            "load dm_mod, dm_crypt, the cipher's (beside the probe)",
            "kernel: dm-crypt 1.27.0, names checked",
            "headers on 2 disk(s): /dev/nvme1n1, /dev/nvme2n1"
        ]
    );
    // The written status keeps each timing's kind (the metric's stable label).
    assert_eq!(
        written.steps.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>(),
        [
            "read", "read", "kernel", "kernel", "header", "stripe", "crypt", "linear", "linear", "swap", "mkfs",
            "mkdir", "mkdir", "mount", "bind", "bind", "bind"
        ]
    );
    assert_eq!(written.disks.len(), 2);
    // The kernel phase is the only place modules are loaded, before the one planning call.
    assert_eq!(fake.modules, ["dm_mod", "dm_crypt", "skcipher:xts(aes)"]);
}

/// Nothing outside `System` reads the clock, the pid or the environment: two runs on the same
/// machine make the same calls and write the same status.
#[test]
fn setup_is_deterministic_under_the_fake() {
    let tree = two_disks("swap = 4G");
    let (mut a, mut b) = (Fake::new(), Fake::new());
    run(&mut a, &tree);
    run(&mut b, &tree);
    assert_eq!(a.calls, b.calls);
    assert_eq!(a.status, b.status);
}

#[test]
fn one_disk_no_swap_is_crypt_directly_on_the_disk() {
    let tree = Tree::new("");
    tree.disk("nvme1n1", 1, "A");
    let mut fake = Fake::new();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok);
    let creates: Vec<&String> = fake.calls.iter().filter(|c| c.starts_with("dm_create")).collect();
    assert_eq!(creates, ["dm_create ephemcrypt CRYPT-PLAIN-ephemcrypt"]);
    assert!(fake.calls.iter().any(|c| c.contains(" 0 259:1 2048 3 ")), "crypt on the disk itself: {:#?}", fake.calls);
    assert!(fake
        .calls
        .contains(&"mount /dev/mapper/ephemcrypt /sysroot/mnt/ephemcrypt ext4 nosuid,nodev,noinit_itable".to_string()));
}

/// Fill a printed table line's placeholders from what the fake made: `KEY` with the key as the
/// table carries it, `/dev/mapper/NAME` with that mapping's number.
fn filled(line: &str, fake: &Fake, key: &str) -> String {
    line.split(' ')
        .map(|w| match w {
            "KEY" => key.to_string(),
            _ => match w.strip_prefix("/dev/mapper/") {
                Some(name) => fake.mappings[name].to_string(),
                None => w.to_string(),
            },
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fake machine for the fixture comparison: the new root at /sysroot with the default bind
/// targets, read-only or not; dm-crypt with or without keyring keys.
fn fixture_fake(read_only: bool, crypt: [u32; 3]) -> Fake {
    let dirs = ["/", "/sysroot", "/sysroot/var", "/sysroot/var/log", "/sysroot/tmp", "/sysroot/var/tmp"];
    Fake {
        dirs: dirs.iter().map(PathBuf::from).collect(),
        read_only: if read_only { [PathBuf::from(SYSROOT)].into() } else { Default::default() },
        crypt_version: Some(crypt),
        ..Fake::new()
    }
}

/// Walk the printed steps along the calls: each step is its calls, in order, with nothing left
/// over. Mapping tables are compared with their placeholders filled in.
fn check_steps_are_calls(name: &str, steps: &[Value], fake: &Fake, calls: &[String]) {
    let mut calls = calls.iter().map(String::as_str);
    let mut next = |prefix: &str| -> String {
        let c = calls.next().unwrap_or_else(|| panic!("{name}: no call left for {prefix}"));
        assert!(c.starts_with(prefix), "{name}: expected {prefix}…, got {c}");
        c[prefix.len()..].to_string()
    };
    let s = |v: &Value, k: &str| v.get(k).unwrap().as_str().unwrap().to_string();
    let strs = |v: &Value, k: &str| -> Vec<String> {
        v.get(k).unwrap().as_array().iter().map(|a| a.as_str().unwrap().to_string()).collect()
    };
    for step in steps {
        match step.get("kind").unwrap().as_str().unwrap() {
            "headers" => {
                for step in step.get("members").unwrap().as_array() {
                    let Some(Value::Num(member)) = step.get("member") else { panic!("{name}: header member") };
                    let Some(Value::Num(members)) = step.get("members") else { panic!("{name}: header members") };
                    let call = next("write_header ");
                    let (device, rest) = call.split_once(' ').unwrap();
                    assert_eq!(device, s(step, "device"), "{name}");
                    // The plan shows the volume id as new: setup draws it then.
                    assert_eq!(s(step, "volume_id"), "new", "{name}");
                    assert!(rest.ends_with(&format!(" {member}/{members}")), "{name}: {call}");
                    let written = crate::header::Header::decode(&fake.headers[Path::new(device)]).unwrap();
                    let Some(Value::Num(offset)) = step.get("data_offset_sectors") else { panic!("{name}: offset") };
                    assert_eq!(written.data_offset.0, *offset, "{name}");
                    let Some(Value::Num(bytes)) = step.get("write_bytes") else { panic!("{name}: write_bytes") };
                    assert_eq!(fake.headers[Path::new(device)].len() as u64, *bytes, "{name}");
                }
            }
            "mapping" => {
                let mname = s(step, "name");
                let kernel = strs(step, "kernel");
                if !kernel.is_empty() {
                    assert_eq!(next("check_kernel_crypto "), kernel.join(" "), "{name}");
                }
                assert_eq!(next("dm_create "), format!("{mname} {}", s(step, "uuid")));
                let key = match step.get("key").unwrap().as_str() {
                    Some("logon") => {
                        next("make_key ");
                        format!(":64:logon:{}", next("add_logon_key "))
                    }
                    Some("hex") => {
                        next("make_key ");
                        format!("{PLANTED:02x}").repeat(64)
                    }
                    _ => String::new(),
                };
                let shown: Vec<String> = strs(step, "table")
                    .iter()
                    .map(|l| filled(l, fake, if key.len() == 128 { "<redacted>" } else { &key }))
                    .collect();
                let loaded = next(&format!("dm_load {mname} "));
                assert_eq!(loaded.split_once(' ').unwrap().1, shown.join(" | "), "{name}");
                let lines: Vec<String> = strs(step, "table").iter().map(|l| filled(l, fake, &key)).collect();
                assert_eq!(fake.loaded[&mname], lines, "{name}: as dmsetup table shows it");
                if key.starts_with(':') {
                    next("invalidate_key ");
                }
                assert_eq!(next("dm_resume "), mname);
                assert_eq!(next("make_node "), mname);
            }
            "swap" => {
                let dev = s(step, "device");
                let dev = dev.strip_prefix("/dev/mapper/").unwrap();
                let Some(Value::Num(size)) = step.get("size_bytes") else { panic!("{name}: swap size") };
                assert_eq!(next("make_swap "), format!("{dev} {size}"));
                assert_eq!(next("swapon "), dev);
            }
            "mkfs" => assert_eq!(next("run "), strs(step, "argv").join(" ")),
            "remount" => {
                let opts = strs(step, "options");
                let (how, kept) = opts.split_first().unwrap();
                assert_eq!(next("remount "), format!("{} {how} {}", s(step, "path"), kept.join(",")));
            }
            "mkdir" => assert_eq!(next("mkdir "), s(step, "path")),
            "mount" => {
                let want = [s(step, "source"), s(step, "target"), s(step, "fstype"), strs(step, "options").join(",")];
                assert_eq!(next("mount "), want.join(" "));
            }
            "bind" => {
                assert_eq!(next("copy_skeleton "), format!("{} {}", s(step, "target"), s(step, "source")));
                assert_eq!(next("bind "), format!("{} {}", s(step, "source"), s(step, "target")));
            }
            "tmpfs" => assert_eq!(next("tmpfs "), s(step, "target")),
            "unit" => assert_eq!(next("write_unit "), format!("{} {}", s(step, "name"), s(step, "wanted_by"))),
            "status" => assert_eq!(next("write_status"), ""),
            other => panic!("{name}: unknown step {other}"),
        }
    }
    assert_eq!(calls.next(), None, "{name}: a call that no printed step accounts for");
}

/// For every fixture host, configuration, root (writable, read-only) and kernel (keyring keys or
/// hex): the steps `plan` prints are, one for one, the calls setup makes. Each mapping's loaded
/// table is the printed one with its placeholders filled; mkfs runs the printed argv; remounts,
/// directories, mounts, binds and the status write are the printed ones, in the printed order.
/// And after a failure at mkfs, what follows the rollback is the printed failure policy.
#[test]
fn printed_steps_are_the_calls_setup_makes_on_every_fixture_host() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let conf = std::env::temp_dir().join(format!("ephemcrypt-fixture-conf-{}", std::process::id()));
    let mut checked = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let host_dir = entry.unwrap().path();
        if !host_dir.join("sys/block").is_dir() {
            continue;
        }
        let host = Host::new(&host_dir);
        for config in ["", "swap = 10%", "fs = xfs\nmount = /ephemeral\nbind = /var/log,/srv/cache"] {
            for (read_only, crypt) in [(false, [1, 27, 0]), (true, [1, 27, 0]), (true, [1, 14, 1])] {
                std::fs::write(&conf, config).unwrap();
                let name = format!("{} [{config}] ro={read_only} crypt={crypt:?}", host_dir.display());
                let plan =
                    show(&host, Some(&conf), Some(Path::new(SYSROOT)), &mut fixture_fake(read_only, crypt)).unwrap();
                let printed = crate::json::parse(&plan.to_json().pretty()).unwrap();
                let mut fake = fixture_fake(read_only, crypt);
                let status = setup(&host, Some(&conf), Path::new(SYSROOT), &mut fake).1;
                let calls: Vec<String> =
                    fake.calls.iter().filter(|c| *c != "crypt_version" && *c != "identity").cloned().collect();
                // A plan that cannot make the volume has only the failure policy to take.
                let which = if plan.failure().is_some() { "on_failure_steps" } else { "steps" };
                check_steps_are_calls(&name, printed.get(which).unwrap().as_array(), &fake, &calls);
                if printed.get("state").unwrap().as_str() != Some("ready") {
                    continue;
                }
                assert_eq!(status.result, SetupResult::Ok, "{name}: {}", status.reason);
                if read_only {
                    assert!(fake.read_only.contains(Path::new(SYSROOT)), "{name}");
                    assert!(calls.iter().any(|c| c.starts_with("remount")), "{name}: no remount on a read-only root");
                }
                // A failure at mkfs: the calls after the rollback are the printed policy.
                let at = fake.calls.iter().position(|c| c.starts_with("run mkfs")).unwrap();
                let mut failing = Fake { fail_at: Some(at), ..fixture_fake(read_only, crypt) };
                setup(&host, Some(&conf), Path::new(SYSROOT), &mut failing);
                let after_undo: Vec<String> = failing
                    .calls
                    .iter()
                    .skip(at + 1)
                    .skip_while(|c| !c.starts_with("tmpfs") && *c != "write_status")
                    .cloned()
                    .collect();
                check_steps_are_calls(
                    &name,
                    printed.get("on_failure_steps").unwrap().as_array(),
                    &failing,
                    &after_undo,
                );
                checked += 1;
            }
        }
    }
    std::fs::remove_file(&conf).unwrap();
    assert!(checked >= 24, "fixture cases with a volume: {checked}");
}

/// The root as dracut mounts it: read-only, without the mount point (nor /mnt).
fn ro_fake() -> Fake {
    Fake { read_only: [PathBuf::from(SYSROOT)].into(), ..Fake::new() }
}

#[test]
fn a_read_only_root_is_writable_only_while_the_mount_point_is_made() {
    let tree = two_disks("swap = 4G");
    let mut fake = ro_fake();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    let window: Vec<&str> =
        fake.calls.iter().map(String::as_str).skip_while(|c| !c.starts_with("remount")).take(4).collect();
    assert_eq!(
        window,
        [
            "remount /sysroot rw nosuid,nodev",
            "mkdir /sysroot/mnt",
            "mkdir /sysroot/mnt/ephemcrypt",
            "remount /sysroot ro nosuid,nodev"
        ]
    );
    assert!(fake.read_only.contains(Path::new(SYSROOT)));
}

/// A failure injected at every call, under every policy, on a read-only root: nothing is left
/// behind, the root is read-only again, the status names the failed step, and each policy does
/// its part.
#[test]
fn failure_at_every_call_leaves_nothing_behind() {
    let tree = two_disks("swap = 4G");
    let mut reference = ro_fake();
    run(&mut reference, &tree);
    let total = reference.calls.len();
    assert!(total > 30, "{total}");
    let targets = ["/sysroot/var/log", "/sysroot/tmp", "/sysroot/var/tmp"].map(PathBuf::from);
    let in_root = ["/var/log", "/tmp", "/var/tmp"].map(PathBuf::from);
    for policy in ["tmpfs", "continue", "halt"] {
        let tree = two_disks(&format!("swap = 4G\non-failure = {policy}"));
        for at in 0..total {
            let failed = &reference.calls[at];
            let mut fake = Fake { fail_at: Some(at), ..ro_fake() };
            let o = run(&mut fake, &tree);
            fake.assert_clean(&[SYSROOT], &["/sysroot/mnt", "/sysroot/mnt/ephemcrypt"]);
            assert!(o.reason.contains("fake"), "call {at} ({failed}): reason {}", o.reason);
            // Reading the kernel comes before the plan: no step has failed then.
            let before_plan = ["crypt_version", "identity"].contains(&failed.as_str());
            assert_eq!(o.failed_step.is_some(), !before_plan, "call {at} ({failed})");
            assert!(o.mappings.is_empty() && o.binds.is_empty() && o.swap.is_none() && o.mount.is_none());
            assert!(o.disks.iter().all(|d| !d.used), "no disk is left marked as used: {:?}", o.disks);
            let written = parse_status(&fake);
            assert_eq!(written, o);
            match policy {
                "tmpfs" => {
                    assert_eq!(o.result, SetupResult::Degraded);
                    assert_eq!(fake.tmpfs, targets);
                    assert_eq!(o.tmpfs, in_root, "the status names paths as the real root sees them");
                }
                "continue" => {
                    assert_eq!(o.result, SetupResult::Degraded);
                    assert!(fake.tmpfs.is_empty());
                }
                _ => {
                    assert_eq!(o.result, SetupResult::Failed);
                    assert!(fake.tmpfs.is_empty());
                }
            }
        }
    }
}

/// A failure during the rollback itself (each undo call in turn, after a failure at mkfs): the
/// rest is still undone, the status says what could not be, and a mapping left behind is listed.
#[test]
fn a_failed_undo_is_reported_and_the_rest_undone() {
    let tree = two_disks("swap = 4G");
    let mut reference = ro_fake();
    run(&mut reference, &tree);
    let at = reference.calls.iter().position(|c| c.starts_with("run mkfs")).unwrap();
    let mut failing = Fake { fail_at: Some(at), ..ro_fake() };
    run(&mut failing, &tree);
    let undo_calls: Vec<String> =
        failing.calls[at + 1..].iter().take_while(|c| !c.starts_with("tmpfs")).cloned().collect();
    assert!(undo_calls.len() >= 8, "{undo_calls:?}");
    for (i, call) in undo_calls.iter().enumerate() {
        let mut fake = Fake { fail_at: Some(at), fail_also: [at + 1 + i].into(), ..ro_fake() };
        let o = run(&mut fake, &tree);
        assert!(o.reason.contains("; cleanup: "), "{call}: {}", o.reason);
        assert_eq!(fake.tmpfs.len(), 3, "{call}: the policy still runs");
        assert!(fake.keys.is_empty() && fake.swaps.is_empty() || call.starts_with("swapoff"), "{call}");
        if let Some(name) = call.strip_prefix("dm_remove ") {
            // The mapping stays, with whatever holds it; the status lists it.
            assert!(fake.mappings.contains_key(name), "{call}");
            assert!(o.mappings.iter().any(|m| m.name == name), "{call}: {:?}", o.mappings);
        } else {
            assert!(fake.mappings.is_empty(), "{call}: {:?}", fake.mappings);
            assert!(o.mappings.is_empty());
        }
    }
}

/// The failure policy's own steps fail one at a time: every other bind target still gets its
/// tmpfs and the status is still written; a bind target the root lacks gets none.
#[test]
fn failure_in_the_fallback_spares_the_other_targets() {
    let tree = two_disks("expect = 3\nwait = 0");
    let mut reference = Fake::new();
    let o = run(&mut reference, &tree);
    assert_eq!(o.result, SetupResult::Degraded);
    assert_eq!(
        reference.calls,
        ["tmpfs /sysroot/var/log", "tmpfs /sysroot/tmp", "tmpfs /sysroot/var/tmp", "write_status"]
    );
    for at in 0..3 {
        let mut fake = Fake { fail_at: Some(at), ..Fake::new() };
        let o = run(&mut fake, &tree);
        assert_eq!(fake.tmpfs.len(), 2, "{:?}", fake.calls);
        assert_eq!(o.tmpfs.len(), 2);
        assert_eq!(parse_status(&fake).tmpfs, o.tmpfs);
    }
    let mut fake = Fake::new();
    fake.dirs.remove(Path::new("/sysroot/var/tmp"));
    run(&mut fake, &tree);
    assert_eq!(fake.calls, ["tmpfs /sysroot/var/log", "tmpfs /sysroot/tmp", "write_status"]);
}

/// Fail at the mount point (a read-only root without it), with the data mapping held by udev for
/// `busy` removes after mkfs, as in a dracut systemd initrd with the dm rules.
fn fail_at_mount_point_with_busy_data(busy: u32) -> (Fake, Status) {
    let tree = two_disks("swap = 4G");
    let mut reference = Fake::new();
    run(&mut reference, &tree);
    let at = reference.calls.iter().position(|c| c == "mkdir /sysroot/mnt/ephemcrypt").unwrap();
    let mut fake = Fake { fail_at: Some(at), busy: [("ephemcrypt-data".into(), busy)].into(), ..Fake::new() };
    let o = run(&mut fake, &tree);
    (fake, o)
}

#[test]
fn rollback_waits_for_udev_to_let_go_of_a_mapping() {
    let (fake, o) = fail_at_mount_point_with_busy_data(3);
    fake.assert_clean(&[], &["/sysroot/mnt/ephemcrypt"]);
    assert_eq!(o.result, SetupResult::Degraded);
    assert!(!o.reason.contains("cleanup"), "{}", o.reason);
    assert_eq!(o.failed_step.as_deref(), Some("mkdir /sysroot/mnt/ephemcrypt"));
    assert_eq!(fake.calls.iter().filter(|c| *c == "dm_remove ephemcrypt-data").count(), 4);
    assert!(fake.clock >= 600, "waited {} ms", fake.clock);
}

#[test]
fn rollback_gives_up_on_a_mapping_that_stays_busy() {
    let (fake, o) = fail_at_mount_point_with_busy_data(u32::MAX);
    assert_eq!(fake.calls.iter().filter(|c| *c == "dm_remove ephemcrypt-data").count(), 25);
    assert!(o.reason.contains("cleanup: device-mapper remove ephemcrypt-data: "), "{}", o.reason);
    assert!(o.reason.contains("(EBUSY)"), "{}", o.reason);
    assert!(fake.mappings.contains_key("ephemcrypt-data"));
    assert_eq!(fake.tmpfs.len(), 3, "the failure policy still runs");
}

#[test]
fn no_disk_is_absent_and_touches_nothing() {
    let tree = Tree::new("");
    let mut fake = Fake::new();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Absent);
    assert_eq!(fake.calls, ["write_status"], "not even dm-crypt's version is asked for");
    assert!(fake.modules.is_empty(), "no module is loaded: {:?}", fake.modules);
    assert!(fake.tmpfs.is_empty());
}

/// The root's own unit for a target's mount (here a mask) outranks setup's: the volume is made,
/// the status is degraded and names the unit.
#[test]
fn a_roots_own_unit_for_a_target_leaves_it_uncovered_and_says_so() {
    let tree = two_disks("");
    let mut fake = Fake::new();
    fake.files.insert("/sysroot/etc/fstab".into(), "UUID=1 / ext4 defaults 0 1\nUUID=2 /var ext4 nodev 0 2\n".into());
    fake.links.insert("/sysroot/sbin/init".into(), "/lib/systemd/systemd".into());
    fake.links.insert("/sysroot/etc/systemd/system/var-tmp.mount".into(), "/dev/null".into());
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Degraded, "{}", o.reason);
    assert!(
        o.reason
            .contains("/etc/systemd/system/var-tmp.mount in the real root outranks the unit setup writes for /var/tmp"),
        "{}",
        o.reason
    );
    assert!(!o.reason.contains("var-log.mount"), "{}", o.reason);
}

/// A root whose fstab mounts /var (CIS-hardened images do): after switch_root that mount would
/// hide binds made now on /var/log and /var/tmp. On a systemd root, units bind them again after
/// it; /tmp is bound now. A failure anywhere removes the units too.
#[test]
fn binds_under_a_separate_fstab_mount_are_made_after_it_by_units() {
    let tree = two_disks("");
    let root = |systemd: bool| {
        let mut f = Fake::new();
        f.files.insert("/sysroot/etc/fstab".into(), "UUID=1 / ext4 defaults 0 1\nUUID=2 /var ext4 nodev 0 2\n".into());
        if systemd {
            f.links.insert("/sysroot/sbin/init".into(), "/lib/systemd/systemd".into());
        }
        f
    };
    let mut fake = root(true);
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    assert_eq!(o.binds, [PathBuf::from("/tmp")], "only /tmp is bound in the initramfs");
    assert_eq!(
        o.units,
        [
            "ephemcrypt-skeleton-var-log.service",
            "var-log.mount",
            "ephemcrypt-skeleton-var-tmp.service",
            "var-tmp.mount"
        ]
    );
    // The skeleton of the real /var/log (on the /var disk) is copied before the bind.
    let skel = &fake.units["ephemcrypt-skeleton-var-log.service"];
    assert!(skel.contains("ExecStart=/usr/sbin/ephemcrypt skeleton /var/log /mnt/ephemcrypt/var/log\n"), "{skel}");
    assert!(skel.contains("Before=var-log.mount\n") && skel.contains("DefaultDependencies=no\n"), "{skel}");
    let unit = &fake.units["var-log.mount"];
    assert!(unit.contains("Wants=ephemcrypt-skeleton-var-log.service\nAfter=ephemcrypt-skeleton-var-log.service\n"));
    for line in [
        "What=/mnt/ephemcrypt/var/log",
        "Where=/var/log",
        // The volume's restrictions named again (a bind with options is remounted with exactly
        // those), /var's from the fstab with them.
        "Options=bind,nosuid,nodev",
        "RequiresMountsFor=/mnt/ephemcrypt /var",
        "ConditionPathExists=!/etc/initrd-release",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in\n{unit}");
    }
    assert!(fake.calls.contains(&"mkdir /sysroot/mnt/ephemcrypt/var/log".to_string()));
    let var = fake.calls.iter().filter(|c| *c == "mkdir /sysroot/mnt/ephemcrypt/var").count();
    assert_eq!(var, 1, "a directory two targets share is made once");
    assert!(fake.calls.contains(&"write_unit var-log.mount local-fs.target".to_string()));
    // A failure at every call after the units: they are removed with the rest, and the policy's
    // tmpfs over /var/log and /var/tmp comes from units after /var too.
    let first_unit = fake.calls.iter().position(|c| c.starts_with("write_unit")).unwrap();
    for at in first_unit..fake.calls.len() {
        let mut f = Fake { fail_at: Some(at), ..root(true) };
        let o = run(&mut f, &tree);
        f.assert_clean(&[], &["/sysroot/mnt", "/sysroot/mnt/ephemcrypt"]);
        assert_eq!(f.tmpfs, [PathBuf::from("/sysroot/tmp")], "in the initramfs, /tmp only");
        assert_eq!(f.units.keys().collect::<Vec<_>>(), ["var-log.mount", "var-tmp.mount"]);
        assert!(f.units["var-tmp.mount"].contains("Options=nosuid,nodev,mode=1777\n"));
        assert_eq!(o.units, ["var-log.mount", "var-tmp.mount"]);
    }
    // /var/log itself in fstab: NOT bound in the initramfs (systemd would take the unit for
    // active, finding the path mounted, and never apply its options), but by the unit that
    // replaces the fstab's mount of it, with its restrictions, after the skeleton is copied.
    let mut fake = root(true);
    fake.files.insert("/sysroot/etc/fstab".into(), "LABEL=logs /var/log ext4 nodev,noexec,nosuid 0 2\n".into());
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok);
    assert_eq!(o.binds, [PathBuf::from("/tmp"), PathBuf::from("/var/tmp")]);
    assert_eq!(o.units, ["ephemcrypt-skeleton-var-log.service", "var-log.mount"]);
    assert_eq!(o.targets, ["/var/log", "/tmp", "/var/tmp"].map(PathBuf::from));
    assert_eq!(o.data_mapping.as_deref(), Some("ephemcrypt"));
    let unit = &fake.units["var-log.mount"];
    assert!(unit.contains("Options=bind,nosuid,nodev,noexec\n"), "{unit}");
    assert!(unit.contains("RequiresMountsFor=/mnt/ephemcrypt /var\n"), "{unit}");
    assert!(!fake.calls.iter().any(|c| c.starts_with("bind") && c.contains("/sysroot/var/log")), "{:?}", fake.calls);
    // Not a systemd root: nothing can bind them again; they are left off the volume, and the
    // status is not ok and says why.
    let mut fake = root(false);
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Degraded);
    assert!(o.reason.contains("/var/log would be hidden by /var from /etc/fstab"), "{}", o.reason);
    assert_eq!(o.binds, [PathBuf::from("/tmp")]);
    assert!(o.units.is_empty() && fake.units.is_empty());
    // A failure there: the policy's tmpfs goes on /tmp, and the status says the others are bare.
    let mut fake = Fake { fail_all: Some("run mkfs".into()), ..root(false) };
    let o = run(&mut fake, &tree);
    assert_eq!(fake.tmpfs, [PathBuf::from("/sysroot/tmp")]);
    assert!(o.reason.contains("neither on the volume nor on tmpfs"), "{}", o.reason);
}

/// With no volume at stake, a status that cannot be written (a full /run) is only reported: the
/// root is fine and gets no tmpfs.
#[test]
fn a_status_that_cannot_be_written_without_a_volume_changes_nothing() {
    let tree = Tree::new("");
    let mut fake = Fake { fail_all: Some("write_status".into()), ..Fake::new() };
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Absent);
    assert_eq!(fake.calls, ["write_status"]);
    // With a volume, it is a step like any other: undone, and the policy applies.
    let tree = two_disks("");
    let mut fake = Fake { fail_all: Some("write_status".into()), ..Fake::new() };
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Degraded);
    assert_eq!(o.failed_step.as_deref(), Some("write /run/ephemcrypt/status.json"));
    fake.assert_clean(&[], &["/sysroot/mnt", "/sysroot/mnt/ephemcrypt"]);
    assert_eq!(fake.tmpfs.len(), 3);
}

#[test]
fn too_few_disks_after_waiting_is_a_failure() {
    let tree = two_disks("expect = 3\nwait = 2");
    let mut fake = Fake::new();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Degraded);
    assert_eq!(o.reason, "2 eligible disk(s), 3 expected");
    assert!(fake.clock >= 2000, "waited {} ms", fake.clock);
    assert_eq!(fake.tmpfs.len(), 3);
    assert!(fake.mappings.is_empty());
    assert_eq!(o.steps[0].step, "wait for disks");
    assert!(o.disks.iter().all(|d| !d.used), "no disk is used: {:?}", o.disks);
}

#[test]
fn a_slow_read_with_every_disk_present_is_no_wait() {
    let tree = two_disks("expect = 2");
    let mut fake = Fake::new();
    fake.tick = 400; // each clock reading 400 ms on: the first read of the disks takes 800 ms
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    assert_eq!(fake.sleeps, 0);
    assert!(o.steps.iter().all(|t| t.step != "wait for disks"), "{:?}", o.steps);
    assert!(o.steps[0].step == "read sysfs: 2 disks" && o.steps[0].ms >= 400, "{:?}", o.steps[0]);
}

#[test]
fn late_disks_are_waited_for() {
    let tree = Tree::new("expect = 2\nwait = 5");
    tree.disk("nvme1n1", 1, "A");
    let root = tree.root.clone();
    let mut fake = Fake::new();
    fake.on_sleep = Some(Box::new(move |n| {
        if n == 3 {
            add_disk(&root, "nvme2n1", 2, "B");
        }
    }));
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    assert_eq!(fake.sleeps, 3);
    assert_eq!(o.steps[0].step, "wait for disks");
}

#[test]
fn disabled_does_nothing_but_say_so() {
    let tree = two_disks("");
    std::fs::write(tree.root.join("proc/cmdline"), "root=/dev/vda rd.ephemcrypt=0").unwrap();
    let mut fake = Fake::new();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Disabled);
    assert_eq!(fake.calls, ["write_status"]);
    assert!(fake.modules.is_empty(), "{:?}", fake.modules);
    assert!(o.disks.iter().all(|d| !d.used && d.reason.contains("disabled")), "{:?}", o.disks);
}

#[test]
fn a_bad_configuration_gets_tmpfs_and_failed() {
    let tree = two_disks("cipher = rot13");
    let mut fake = Fake::new();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Failed);
    assert!(o.reason.contains("invalid value 'rot13' for 'cipher'"), "{}", o.reason);
    assert_eq!(fake.tmpfs.len(), 3);
    assert!(fake.mappings.is_empty());
}

#[test]
fn second_run_finds_the_live_volume_and_changes_nothing() {
    let tree = two_disks("swap = 4G");
    let mut fake = Fake::new();
    assert_eq!(run(&mut fake, &tree).result, SetupResult::Ok);
    let before = fake.calls.len();
    // On the second run the disks are held by the stripe: the plan alone would find none.
    for d in ["nvme1n1", "nvme2n1"] {
        std::fs::create_dir_all(tree.root.join(format!("sys/block/{d}/holders/dm-0"))).unwrap();
    }
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok);
    assert!(o.already_active);
    assert_eq!(fake.calls.len(), before, "no operation: {:?}", &fake.calls[before..]);
}

#[test]
fn a_live_volume_is_mounted_in_a_new_root() {
    let tree = two_disks("swap = 4G");
    let mut fake = Fake::new();
    run(&mut fake, &tree);
    fake.mounts.clear();
    let before = fake.calls.len();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok);
    assert_eq!(
        fake.calls[before..],
        [
            "mount /dev/mapper/ephemcrypt-data /sysroot/mnt/ephemcrypt ext4 nosuid,nodev,noinit_itable",
            "copy_skeleton /sysroot/var/log /sysroot/mnt/ephemcrypt/var/log",
            "bind /sysroot/mnt/ephemcrypt/var/log /sysroot/var/log",
            "copy_skeleton /sysroot/tmp /sysroot/mnt/ephemcrypt/tmp",
            "bind /sysroot/mnt/ephemcrypt/tmp /sysroot/tmp",
            "copy_skeleton /sysroot/var/tmp /sysroot/mnt/ephemcrypt/var/tmp",
            "bind /sysroot/mnt/ephemcrypt/var/tmp /sysroot/var/tmp",
        ]
    );
}

#[test]
fn a_foreign_mapping_with_our_name_is_not_taken_for_the_volume() {
    let tree = two_disks("");
    let mut fake = Fake::new();
    // Someone else's linear mapping happens to be called "ephemcrypt".
    fake.mappings.insert("ephemcrypt".into(), DevNo { major: 253, minor: 9 });
    fake.live.insert("ephemcrypt".into());
    fake.loaded.insert("ephemcrypt".into(), vec!["0 2048 linear 8:16 0".into()]);
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Degraded);
    assert!(o.reason.contains("/dev/mapper/ephemcrypt exists but is not a dm-crypt volume (linear)"), "{}", o.reason);
    assert!(
        fake.calls.iter().all(|c| c.starts_with("tmpfs ") || c == "write_status"),
        "only the fallback: {:?}",
        fake.calls
    );
    assert_eq!(fake.tmpfs.len(), 3);
    assert_eq!(fake.mappings.len(), 1, "the foreign mapping is left alone");
}

#[test]
fn a_leftover_mapping_with_a_name_the_volume_needs_stops_setup_before_any_header() {
    for name in ["ephemcrypt-stripe", "ephemcrypt-swap", "ephemcrypt-data"] {
        let tree = two_disks("swap = 1G");
        let mut fake = Fake::new();
        // A leftover of a setup killed in this boot, or another program's mapping.
        fake.mappings.insert(name.into(), DevNo { major: 253, minor: 7 });
        fake.live.insert(name.into());
        let o = run(&mut fake, &tree);
        assert_eq!(o.result, SetupResult::Degraded);
        let want = format!("a mapping named {name} (253:7) exists already, without the volume");
        assert!(o.reason.starts_with(&want), "{}", o.reason);
        assert!(
            fake.calls.iter().all(|c| ["crypt_version", "identity", "write_status"].contains(&c.as_str())
                || c.starts_with("tmpfs ")),
            "kernel facts, then only the fallback: {:?}",
            fake.calls
        );
        assert_eq!(fake.mappings.len(), 1, "the mapping is left alone");
    }
}

#[test]
fn old_kernel_gets_a_hex_key_with_secure_flag_and_no_keyring() {
    let tree = two_disks("");
    let mut fake = Fake { crypt_version: Some([1, 14, 1]), ..Fake::new() };
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok);
    assert!(!fake.calls.iter().any(|c| c.starts_with("add_logon_key")));
    let hex = "a5".repeat(64);
    assert!(fake.tables.iter().any(|t| t.contains(&hex)), "the table carries the key on this path");
    let load = fake.calls.iter().find(|c| c.starts_with("dm_load ephemcrypt secure=true")).unwrap();
    assert!(load.contains("<redacted>") && !load.contains(&hex), "{load}");
    assert!(fake.status.unwrap().contains("hex key in the dm table"));
}

#[test]
fn missing_crypt_target_is_a_failure() {
    let tree = two_disks("");
    let mut fake = Fake { crypt_version: None, ..Fake::new() };
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Degraded);
    assert!(o.reason.contains("the kernel has no dm-crypt target"), "{}", o.reason);
    fake.assert_clean(&[], &[]);
}

/// The planted key must never show up in a log line, an error, the status or Debug output, in
/// any form: hex (either case), decimal bytes or raw.
#[test]
fn planted_key_never_leaks() {
    let _g = SERIAL.lock().unwrap();
    capture_logs();
    LOG.lock().unwrap().clear();
    let p = format!("{PLANTED:02x}");
    let forms = [
        p.repeat(4),
        p.to_uppercase().repeat(4),
        format!("{PLANTED}, {PLANTED}"),
        String::from_utf8_lossy(&[PLANTED; 2]).into_owned(),
    ];
    let tree = two_disks("swap = 4G");
    let mut texts = Vec::new();
    for (caps, at) in [([1, 27, 0], None), ([1, 14, 1], None), ([1, 27, 0], Some(8)), ([1, 14, 1], Some(7))] {
        let mut fake = Fake { crypt_version: Some(caps), fail_at: at, ..Fake::new() };
        let o = run(&mut fake, &tree);
        texts.push(format!("{o:?}"));
        texts.push(o.reason.clone());
        texts.push(fake.status.clone().unwrap());
        texts.extend(fake.calls.clone());
    }
    texts.extend(LOG.lock().unwrap().iter().cloned());
    assert!(texts.len() > 100);
    texts.push(format!("{:?}", crate::key::Key::from_bytes_for_test(&[PLANTED; 64])));
    for t in &texts {
        for f in &forms {
            assert!(!t.contains(f.as_str()), "key material ({f}) in: {t}");
        }
    }
}

#[test]
fn plan_of_a_fixture_host_shows_tables_argv_and_mounts() {
    let host = Host::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws"));
    let newroot = std::env::temp_dir().join(format!("ephemcrypt-nr-{}", std::process::id()));
    std::fs::create_dir_all(&newroot).unwrap();
    let plan = show(&host, None, Some(&newroot), &mut LinuxSystem::observer(host.path("/"))).unwrap();
    let p = crate::json::parse(&plan.to_json().pretty()).unwrap();
    let steps = p.get("steps").unwrap().as_array();
    let kinds: Vec<&str> = steps.iter().map(|s| s.get("kind").unwrap().as_str().unwrap()).collect();
    // An empty new root: /mnt, /mnt/ephemcrypt, /var, /var/log, /tmp and /var/tmp are made.
    let mkdirs = ["mkdir"; 6];
    let want: Vec<&str> = ["headers", "mapping", "mapping", "mkfs"]
        .into_iter()
        .chain(mkdirs)
        .chain(["mount", "bind", "bind", "bind", "status"])
        .collect();
    assert_eq!(kinds, want);
    std::fs::remove_dir_all(&newroot).unwrap();
}

/// Escrow: the key, encrypted while it exists to both test identities' recipients, is written
/// after each member's header (which says where) and armored to /run; both identities read the
/// key back; the status names the recipients.
#[test]
fn escrow_follows_each_header_and_reads_back_with_either_identity() {
    use crate::age::tests::{AGE_IDENTITY, AGE_RECIPIENT, SSH_PRIVATE, SSH_PUBLIC};
    let tree = two_disks(&format!("swap = 4G\nescrow = {AGE_RECIPIENT}, {SSH_PUBLIC}"));
    let mut fake = Fake::new();
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    let fp = crate::age::Recipient::parse(SSH_PUBLIC).unwrap().describe();
    assert_eq!(o.escrow, [AGE_RECIPIENT.to_string(), fp]);
    let key = "kernel keyring (logon); escrowed to 2 recipients: stored, encrypted to them, after every member's \
               header and in /run/ephemcrypt/escrow.age";
    assert_eq!(o.key.as_deref(), Some(key));
    assert!(o.render().contains(&format!("key: {key}\n")) && !o.render().contains("never stored"));
    // The headers first (no escrow yet), the crypt mapping with the key, then the escrow.
    let pos = |p: &str| fake.calls.iter().position(|c| c.starts_with(p)).unwrap_or_else(|| panic!("{p}"));
    assert!(pos("write_header") < pos("make_key 64"));
    assert!(pos("make_key 64") < pos("write_escrow"));
    assert_eq!(fake.calls.iter().filter(|c| c.starts_with("write_header")).count(), 4);
    let planted = [crate::fake::PLANTED; 64];
    for id in [AGE_IDENTITY, SSH_PRIVATE] {
        let ids = crate::age::parse_identities(id).unwrap();
        for area in fake.headers.values() {
            let h = crate::header::Header::decode(area).unwrap();
            assert_eq!(h.escrow.0 as usize, crate::header::SIZE);
            let blob = &area[h.escrow.0 as usize..][..h.escrow.1 as usize];
            assert_eq!(crate::age::decrypt(blob, &ids).unwrap().expose(), planted);
        }
        let armored = fake.escrow.as_deref().unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert_eq!(crate::age::decrypt(armored.as_bytes(), &ids).unwrap().expose(), planted);
    }
    // The next boot takes the disks back: a header followed by its escrow is ours.
    tree.keep_headers(&fake);
    let mut next = Fake::new();
    let o = run(&mut next, &tree);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    assert!(
        o.disks.iter().filter(|d| d.used).all(|d| d.reason.starts_with("previous ephemcrypt volume")),
        "{:?}",
        o.disks
    );
    // A boot without escrow after one with it: the header step writes zeros over the old blob (an
    // escrowed key must not survive beside the new volume's data), and no further.
    tree.keep_headers(&next);
    let ends: Vec<usize> = next
        .headers
        .values()
        .map(|a| crate::header::Header::decode(a).map(|h| (h.escrow.0 + h.escrow.1) as usize).unwrap())
        .collect();
    std::fs::write(tree.root.join("etc/ephemcrypt.conf"), "swap = 4G\n").unwrap();
    let mut third = Fake::new();
    let p = crate::setup::setup(&tree.host(), None, Path::new(SYSROOT), &mut third).0;
    let writes: Vec<usize> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            crate::step::Step::Headers(members) => Some(members.iter().map(|m| m.write)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(writes, ends.iter().map(|e| e.div_ceil(4096) * 4096).collect::<Vec<_>>());
    tree.keep_headers(&third);
    for device in third.headers.keys() {
        use std::os::unix::fs::FileExt;
        let mut image = vec![0xa5; crate::header::RESERVED_LEN];
        let file = std::fs::File::open(tree.root.join(device.strip_prefix("/").unwrap())).unwrap();
        file.read_exact_at(&mut image, 0).unwrap();
        let h = crate::header::Header::decode(&image[..crate::header::SIZE]).unwrap();
        assert_eq!(h.escrow, (0, 0));
        assert!(image[crate::header::SIZE..crate::header::RESERVED_LEN].iter().all(|&b| b == 0), "{device:?}");
    }
}

#[test]
fn a_failure_with_escrow_leaves_no_escrow_behind() {
    use crate::age::tests::AGE_RECIPIENT;
    let tree = two_disks(&format!("escrow = {AGE_RECIPIENT}"));
    let mut reference = ro_fake();
    run(&mut reference, &tree);
    for at in 0..reference.calls.len() {
        let mut fake = Fake { fail_at: Some(at), ..ro_fake() };
        let o = run(&mut fake, &tree);
        fake.assert_clean(&[SYSROOT], &["/sysroot/mnt", "/sysroot/mnt/ephemcrypt"]);
        assert!(o.escrow.is_empty() || o.result == SetupResult::Ok, "call {at}: {o:?}");
    }
}

#[test]
fn a_bad_escrow_recipient_is_a_configuration_error_naming_it() {
    let tree = two_disks("escrow = age1qqqqq, ssh-rsa AAAA");
    let o = run(&mut Fake::new(), &tree);
    assert_eq!(o.result, SetupResult::Failed);
    assert!(o.reason.contains("'escrow' value 'age1qqqqq'") || o.reason.contains("age1qqqqq"), "{}", o.reason);
}

/// Hold: by the configuration (rd.ephemcrypt.hold) or by the hold file in the new root, setup
/// touches no disk, covers the bind targets with tmpfs (also with on-failure=halt) and reports
/// held, naming the earlier volume it left alone.
#[test]
fn hold_touches_no_disk_and_names_the_volume_left_alone() {
    let tree = two_disks("");
    let mut first = Fake::new();
    assert_eq!(run(&mut first, &tree).result, SetupResult::Ok);
    tree.keep_headers(&first);
    let id = crate::header::Header::decode(first.headers.values().next().unwrap()).unwrap().volume_id_hex();
    for (config, file, by) in [
        ("hold = yes", false, "hold=yes (configuration or rd.ephemcrypt.hold)"),
        ("on-failure = halt", true, "/etc/ephemcrypt.hold in the real root"),
    ] {
        std::fs::write(tree.root.join("etc/ephemcrypt.conf"), config).unwrap();
        let mut fake = Fake::new();
        if file {
            fake.files.insert(PathBuf::from("/sysroot/etc/ephemcrypt.hold"), String::new());
        }
        let o = run(&mut fake, &tree);
        assert_eq!(o.result, SetupResult::Held);
        let want = format!("held by {by}: no disk touched; left alone: volume 'ephemcrypt' {}", &id[..8]);
        assert!(o.reason.starts_with(&want), "{}", o.reason);
        assert!(fake.calls.iter().all(|c| c.starts_with("tmpfs ") || c == "write_status"), "{:?}", fake.calls);
        assert!(fake.modules.is_empty(), "a held boot loads nothing: {:?}", fake.modules);
        assert_eq!(fake.tmpfs.len(), 3);
        assert!(
            o.disks.iter().all(|d| !d.used && d.reason == format!("eligible, but held by {by}: left alone")),
            "{:?}",
            o.disks
        );
    }
}

/// The guard: a unit for the real root that holds a systemd inhibitor lock until the hold file
/// appears; none (and the status says why) where the real root does not run systemd.
#[test]
fn the_guard_is_a_unit_of_a_systemd_root() {
    let tree = two_disks("guard = yes");
    let mut fake = Fake::new();
    fake.links.insert(PathBuf::from("/sysroot/sbin/init"), PathBuf::from("/lib/systemd/systemd"));
    let o = run(&mut fake, &tree);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    assert_eq!(o.guard.as_deref(), Some("ephemcrypt-guard.service"));
    assert!(o.units.is_empty());
    let unit = &fake.units["ephemcrypt-guard.service"];
    for want in [
        "ConditionPathExists=!/etc/ephemcrypt.hold",
        "systemd-inhibit --what=shutdown --mode=block",
        "[ ! -e /etc/ephemcrypt.hold ]",
        "\nProtectSystem=strict\n",
        "\nCapabilityBoundingSet=CAP_SYS_BOOT\n",
    ] {
        assert!(unit.contains(want), "{want} in {unit}");
    }
    if let Ok(out) = std::env::var("EPHEMCRYPT_GUARD_UNIT_OUT") {
        std::fs::write(out, unit).unwrap(); // for systemd-analyze security --offline=yes
    }
    // The power button (a cloud's stop) goes through the lock: logind's drop-in, read when logind
    // starts in the real root.
    let dropin = &fake.configs[Path::new("/run/systemd/logind.conf.d/ephemcrypt-guard.conf")];
    assert!(dropin.contains("[Login]\nPowerKeyIgnoreInhibited=yes\n"), "{dropin}");
    let mut plain = Fake::new();
    let o = run(&mut plain, &tree);
    assert!(plain.units.is_empty() && plain.configs.is_empty());
    assert!(o.guard.unwrap().starts_with("not installed: the real root does not run systemd"));
}

/// `recover`'s steps: a read-only crypt mapping over a disk, then a read-only mount.
fn read_only_steps(key_bytes: usize) -> Vec<crate::step::Step> {
    use crate::dm::{Crypt, CryptKey, Dev, Target, TargetKind};
    use crate::step::{KeyPath, Mapping, Step};
    use crate::units::Sectors;
    vec![
        Step::Mapping(Mapping {
            name: "v-recovered".into(),
            uuid: "EPHEMCRYPT-RECOVERED-v-recovered".into(),
            table: vec![Target {
                start: Sectors(0),
                len: Sectors(8192),
                kind: TargetKind::Crypt(Crypt {
                    cipher: "aes-xts-plain64".into(),
                    key: CryptKey::Placeholder { bytes: key_bytes },
                    iv_offset: Sectors(0),
                    dev: Dev::Num(DevNo { major: 259, minor: 1 }),
                    offset: Sectors(2048),
                    options: Vec::new(),
                }),
            }],
            key: Some((KeyPath::Keyring, 512)),
            kernel: vec![("skcipher", "xts(aes)".into())],
            escrow: Vec::new(),
            read_only: true,
        }),
        Step::Mount {
            source: "/dev/mapper/v-recovered".into(),
            target: "/mnt/r".into(),
            fs: crate::config::Fs::Ext4,
            options: vec!["ro".into(), "noload".into()],
        },
    ]
}

#[test]
fn interpret_loads_the_given_key_read_only_and_makes_none() {
    let mut fake = Fake::new();
    fake.dirs.insert(PathBuf::from("/mnt/r"));
    let key = crate::key::Key::from_bytes_for_test(&[PLANTED; 64]);
    crate::execute::interpret(&read_only_steps(64), &mut fake, key).unwrap();
    assert!(!fake.calls.iter().any(|c| c.starts_with("make_key")), "{:?}", fake.calls);
    let load = fake.calls.iter().find(|c| c.starts_with("dm_load")).unwrap();
    assert!(
        load.starts_with("dm_load v-recovered secure=true read-only 0 8192 crypt aes-xts-plain64 :64:logon:"),
        "{load}"
    );
    assert!(fake.keys.is_empty(), "the logon key is invalidated");
    assert_eq!(fake.mounts, [PathBuf::from("/mnt/r")]);
    assert!(fake.status.is_none(), "no status file");
}

#[test]
fn interpret_takes_only_read_only_steps_and_undoes_on_failure() {
    use crate::step::Step;
    let key = || crate::key::Key::from_bytes_for_test(&[PLANTED; 64]);
    // A step that writes: refused before anything is made.
    let mut steps = read_only_steps(64);
    steps.push(Step::Status { path: "/run/x".into() });
    let mut fake = Fake::new();
    let e = crate::execute::interpret(&steps, &mut fake, key()).unwrap_err().to_string();
    assert!(e.contains("expected a read-only mapping or mount, found 'write /run/x'"), "{e}");
    assert!(fake.calls.is_empty(), "{:?}", fake.calls);
    // A mount that would replay the journal: refused.
    let mut steps = read_only_steps(64);
    if let Step::Mount { options, .. } = &mut steps[1] {
        options.pop();
    }
    assert!(crate::execute::interpret(&steps, &mut Fake::new(), key()).is_err());
    // A key of the wrong size: refused at the crypt step, nothing left.
    let mut fake = Fake::new();
    let e = crate::execute::interpret(&read_only_steps(32), &mut fake, key()).unwrap_err().to_string();
    assert!(e.contains("key of v-recovered"), "{e}");
    assert!(fake.mappings.is_empty(), "{:?}", fake.calls);
    // The mount fails: the mapping goes, no key stays, no policy (no tmpfs), no status.
    let mut fake = Fake { fail_all: Some("mount ".into()), ..Fake::new() };
    fake.dirs.insert(PathBuf::from("/mnt/r"));
    assert!(crate::execute::interpret(&read_only_steps(64), &mut fake, key()).is_err());
    fake.assert_clean(&[], &[]);
    assert!(fake.tmpfs.is_empty() && fake.status.is_none(), "{:?}", fake.calls);
}

/// FIPS mode (/proc/sys/crypto/fips_enabled under the host root is 1): a cipher the kernel refuses
/// there, or escrow without `escrow-fips = allow`, stops setup before any header is written,
/// with a reason that names FIPS mode and what it refuses; the default cipher goes on.
#[test]
fn fips_mode_refuses_what_the_kernel_would_before_any_header() {
    use crate::age::tests::AGE_RECIPIENT;
    let fips = |config: &str| {
        let tree = two_disks(config);
        std::fs::create_dir_all(tree.root.join("proc/sys/crypto")).unwrap();
        std::fs::write(tree.root.join("proc/sys/crypto/fips_enabled"), "1\n").unwrap();
        tree
    };
    let cases = [
        ("cipher = twofish-xts-plain64", "refuses cipher twofish-xts-plain64 with key-bits 512: twofish is not"),
        ("key-bits = 384", "refuses cipher aes-xts-plain64 with key-bits 384: xts with a 384-bit key"),
        (&format!("escrow = {AGE_RECIPIENT}") as &str, "and 'escrow' is set"),
    ];
    for (config, want) in cases {
        let tree = fips(config);
        let mut fake = Fake::new();
        let o = run(&mut fake, &tree);
        assert_eq!(o.result, SetupResult::Degraded, "{config}");
        assert!(
            o.reason.starts_with("the kernel runs in FIPS mode (/proc/sys/crypto/fips_enabled is 1)"),
            "{}",
            o.reason
        );
        assert!(o.reason.contains(want), "{config}: {}", o.reason);
        assert!(
            fake.calls.iter().all(|c| ["crypt_version", "identity", "write_status"].contains(&c.as_str())
                || c.starts_with("tmpfs ")),
            "{config}: kernel facts, then only the fallback: {:?}",
            fake.calls
        );
        assert!(fake.headers.is_empty() && fake.mappings.is_empty(), "{config}: nothing written");
    }
    let _g = SERIAL.lock().unwrap();
    capture_logs();
    for config in ["", &format!("escrow = {AGE_RECIPIENT}\nescrow-fips = allow") as &str] {
        LOG.lock().unwrap().clear();
        let mut fake = Fake::new();
        let o = run(&mut fake, &fips(config));
        assert_eq!(o.result, SetupResult::Ok, "{config}: {}", o.reason);
        assert!(fake.calls.contains(&"check_kernel_crypto xts(aes)".to_string()));
        let warned = LOG.lock().unwrap().iter().any(|l| l.starts_with("FIPS mode: the escrow to 1 recipient(s) uses"));
        assert_eq!(warned, !config.is_empty(), "{config}: the log says the escrow is not FIPS-approved");
    }
}
