//! The progress record, and setup's death at every call on the fake kernel followed by the boot
//! hook's second invocation (`setup --died`): nothing of the dead run is left, the policy holds,
//! the status says that setup died, how, and at which step.

use std::path::{Path, PathBuf};

use super::*;
use crate::fake::{Died, Fake, Tree};
use crate::setup::{after_death, setup};
use crate::status::SetupResult;

const SYSROOT: &str = "/sysroot";

fn two_disks(config: &str) -> Tree {
    let t = Tree::new(config);
    t.disk("nvme2n1", 2, "B").disk("nvme1n1", 1, "A");
    t
}

/// The root as dracut mounts it: read-only, without the mount point.
fn ro_fake() -> Fake {
    Fake { read_only: [PathBuf::from(SYSROOT)].into(), ..Fake::new() }
}

#[test]
fn records_read_back_as_written_with_any_path() {
    let r = Record {
        pid: 42,
        step: Some((3, "bind /sysroot/mnt/a b\\c\nd on /sysroot/var/log\u{1b}[2J".into())),
        leftovers: vec![
            Leftover::Mapping("ephemcrypt-stripe".into()),
            Leftover::Swap("ephemcrypt-swap".into()),
            Leftover::Mount("/sysroot/with space".into()),
            Leftover::Remount {
                path: "/sysroot".into(),
                read_only: true,
                options: vec!["nosuid".into(), "nodev".into()],
            },
            Leftover::Remount { path: "/sysroot".into(), read_only: false, options: Vec::new() },
            Leftover::Dir("/sysroot/mnt".into()),
            Leftover::Unit { name: "var-log.mount".into(), wanted_by: "local-fs.target".into() },
            Leftover::Escrow("/run/ephemcrypt/escrow.age".into()),
        ],
    };
    let text = r.to_text();
    assert_eq!(text.lines().count(), 3 + r.leftovers.len(), "{text}");
    assert_eq!(Record::parse(&text).unwrap(), r);
    assert_eq!(Record::parse(&Record::reading().to_text()).unwrap().step_title(), READING);
    for bad in
        ["", "ephemcrypt-progress 2\n", "ephemcrypt-progress 1\nundo rm -rf /\n", "ephemcrypt-progress 1\npid x\n"]
    {
        assert!(Record::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn deaths_read_from_the_shell_and_from_systemd() {
    assert_eq!(Death::parse("137"), Some(Death::Signal(9)));
    assert_eq!(Death::parse("134"), Some(Death::Signal(6)));
    assert_eq!(Death::parse("2"), Some(Death::Exit(2)));
    assert_eq!(Death::parse("killed/KILL"), Some(Death::Signal(9)));
    assert_eq!(Death::parse("dumped/ABRT"), Some(Death::Signal(6)));
    assert_eq!(Death::parse("killed/SIGTERM"), Some(Death::Signal(15)));
    assert_eq!(Death::parse("exited/1"), Some(Death::Exit(1)));
    assert_eq!(Death::parse("/"), Some(Death::Unknown));
    for bad in ["", "x", "killed/NOPE", "exited/x", "300", "later/1"] {
        assert_eq!(Death::parse(bad), None, "{bad}");
    }
    assert_eq!(Death::Signal(9).describe(), "killed by signal 9 (SIGKILL)");
    assert_eq!(Death::Signal(6).describe(), "killed by signal 6 (SIGABRT)");
}

/// Setup runs until the fake kernel "kills" it at call `at`; true when it died there.
fn die_at(fake: &mut Fake, tree: &Tree, at: usize) -> bool {
    fake.die_at = Some(at);
    let host = tree.host();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(&host, None, Path::new(SYSROOT), fake)));
    fake.die_at = None;
    match r {
        Ok(_) => false,
        Err(e) if e.is::<Died>() => true,
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// Death at every call of setup (every step kind: headers, stripe, key and crypt mapping, swap,
/// data mapping, mkfs, remounts and directories of a read-only root, mount, binds, escrow, the
/// status), under each policy, then the second invocation: nothing left, the policy applied, the
/// status names the death and the step, the record gone.
#[test]
fn death_at_every_call_is_undone_and_the_policy_holds() {
    use crate::age::tests::AGE_RECIPIENT;
    quiet_deaths();
    let targets = ["/sysroot/var/log", "/sysroot/tmp", "/sysroot/var/tmp"].map(PathBuf::from);
    for policy in ["tmpfs", "halt"] {
        let config = format!("swap = 4G\non-failure = {policy}\nescrow = {AGE_RECIPIENT}");
        let tree = two_disks(&config);
        let mut reference = ro_fake();
        setup(&tree.host(), None, Path::new(SYSROOT), &mut reference);
        let total = reference.calls.len();
        assert!(total > 30, "{total}");
        assert!(reference.progress.is_none(), "a finished setup leaves no record");
        for at in 0..total {
            let call = &reference.calls[at];
            let mut fake = ro_fake();
            assert!(die_at(&mut fake, &tree, at), "call {at} ({call}): setup did not die");
            let record = Record::parse(fake.progress.as_deref().expect("a record")).unwrap();
            let (plan, o) = after_death(&tree.host(), None, Path::new(SYSROOT), &mut fake, Death::Signal(9))
                .unwrap_or_else(|| panic!("call {at} ({call}): nothing done after the death"));
            let calls = fake.calls[at..].join("\n");
            fake.assert_clean(&[SYSROOT], &["/sysroot/mnt", "/sysroot/mnt/ephemcrypt"]);
            assert!(fake.progress.is_none(), "call {at} ({call}): the record stays");
            assert!(o.reason.contains("setup killed by signal 9 (SIGKILL) at step '"), "{}", o.reason);
            assert_eq!(o.failed_step.as_deref(), Some(record.step_title().as_str()), "call {at} ({call})");
            let before_plan = ["crypt_version", "identity"].contains(&call.as_str());
            assert_eq!(record.step.is_none(), before_plan, "call {at} ({call}): {:?}", record.step);
            let written = crate::status::parse(fake.status.as_deref().expect("status written")).unwrap();
            assert_eq!(written, o, "the status file says what the second invocation did");
            assert_eq!(plan.on_failure.name(), policy);
            if policy == "tmpfs" {
                assert_eq!(o.result, SetupResult::Degraded);
                assert_eq!(fake.tmpfs, targets, "call {at} ({call}); after the death:\n{calls}");
            } else {
                assert_eq!(o.result, SetupResult::Failed);
                assert!(fake.tmpfs.is_empty());
            }
        }
    }
}

/// A [`Died`] panic is the fake's kill: not worth a message; every other panic keeps its own.
fn quiet_deaths() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Died>() {
                default(info)
            }
        }));
    });
}

/// The first run finished on its own: the second invocation does nothing (systemd runs it after
/// every run, and at switch-root).
#[test]
fn after_a_finished_setup_the_second_invocation_does_nothing() {
    let tree = two_disks("swap = 4G");
    let mut fake = ro_fake();
    setup(&tree.host(), None, Path::new(SYSROOT), &mut fake);
    let calls = fake.calls.len();
    for how in [Death::Exit(0), Death::Exit(1), Death::Unknown] {
        assert!(after_death(&tree.host(), None, Path::new(SYSROOT), &mut fake, how).is_none());
    }
    assert_eq!(fake.calls.len(), calls);
    // An exit status that setup never returns (a usage error before it started): the policy.
    let (_, o) = after_death(&tree.host(), None, Path::new(SYSROOT), &mut Fake::new(), Death::Exit(2)).unwrap();
    assert_eq!(o.result, SetupResult::Degraded);
    assert!(o.reason.starts_with("setup exited with status 2 at step 'read the configuration"), "{}", o.reason);
}

/// `ephemcrypt status` with no status file but a dead run's record: not "did not run".
#[test]
fn status_of_a_dead_run_says_it_died_and_what_it_left() {
    let tree = two_disks("swap = 4G");
    let mut fake = ro_fake();
    let mut reference = ro_fake();
    setup(&tree.host(), None, Path::new(SYSROOT), &mut reference);
    let at = reference.calls.iter().position(|c| c.starts_with("bind ")).unwrap();
    quiet_deaths();
    assert!(die_at(&mut fake, &tree, at));
    let s = crate::setup::status(&tree.host(), &mut fake).unwrap();
    assert_eq!(s.result, SetupResult::Failed);
    assert!(s.reason.contains("setup died (pid "), "{}", s.reason);
    assert!(s.reason.contains("mapping ephemcrypt-data") && s.reason.contains("swap on"), "{}", s.reason);
    assert!(s.failed_step.as_deref().is_some_and(|t| t.starts_with("bind ")), "{:?}", s.failed_step);
    fake.progress = None;
    assert!(matches!(crate::setup::status(&tree.host(), &mut fake), Err(crate::error::Error::NotRun { .. })));
}

#[test]
fn only_a_systemd_initrd_without_emergency_service_is_halted_by_ephemcrypt() {
    let dir = std::env::temp_dir().join(format!("ephemcrypt-emergency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.as_path();
    let put = |p: &str| {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "").unwrap();
    };
    assert!(!no_emergency_shell(root), "no systemd: the shell hook stops the boot");
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    assert!(!no_emergency_shell(root), "systemd, but not an initrd");
    put("/etc/initrd-release");
    assert!(no_emergency_shell(root), "a systemd initrd without emergency.service");
    put("/usr/lib/systemd/system/emergency.service");
    assert!(!no_emergency_shell(root), "OnFailure=emergency.target has its service");
    std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    std::os::unix::fs::symlink("/dev/null", root.join("etc/systemd/system/emergency.service")).unwrap();
    assert!(no_emergency_shell(root), "masked in /etc");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An invariant broken in ephemcrypt's own code is an error that takes the failure policy, never a
/// panic (release builds abort): a header step without the volume's id (a plan made without one,
/// as `ephemcrypt plan` makes it) fails, is undone, and tmpfs covers the bind targets.
#[test]
fn a_header_without_a_volume_id_fails_through_the_policy() {
    let tree = two_disks("swap = 4G");
    let mut fake = Fake::new();
    let plan = crate::setup::show(&tree.host(), None, Some(Path::new(SYSROOT)), &mut fake).unwrap();
    assert!(matches!(plan.state, crate::plan::State::Ready(_)));
    let o = crate::execute::execute(&plan, &mut fake, Vec::new());
    assert_eq!(o.result, SetupResult::Degraded);
    assert!(
        o.reason.contains("internal error (a bug in ephemcrypt): a header is written with the volume's id"),
        "{}",
        o.reason
    );
    assert!(fake.headers.is_empty(), "no header written");
    assert_eq!(fake.tmpfs.len(), 3);
}

/// The step kinds the first test's setup does not take: units for a systemd root whose fstab mounts
/// /var (binds made after switch_root), and a held boot's own tmpfs steps. Death at each call, then
/// the second invocation: the dead run's units are gone (the policy's tmpfs units stay), and tmpfs
/// covers every target.
#[test]
fn death_amid_units_and_amid_a_held_boot_is_undone() {
    quiet_deaths();
    let systemd_root = || {
        let mut f = Fake::new();
        f.files.insert("/sysroot/etc/fstab".into(), "UUID=1 / ext4 defaults 0 1\nUUID=2 /var ext4 nodev 0 2\n".into());
        f.links.insert("/sysroot/sbin/init".into(), "/lib/systemd/systemd".into());
        f
    };
    for (config, held) in [("", false), ("hold = yes", true)] {
        let tree = two_disks(config);
        let mut reference = if held { Fake::new() } else { systemd_root() };
        setup(&tree.host(), None, Path::new(SYSROOT), &mut reference);
        let kind = if held { "tmpfs " } else { "write_unit " };
        assert!(reference.calls.iter().any(|c| c.starts_with(kind)), "{:?}", reference.calls);
        for at in 0..reference.calls.len() {
            let call = &reference.calls[at];
            let mut fake = if held { Fake::new() } else { systemd_root() };
            assert!(die_at(&mut fake, &tree, at), "call {at} ({call}): setup did not die");
            let (_, o) = after_death(&tree.host(), None, Path::new(SYSROOT), &mut fake, Death::Signal(6)).unwrap();
            fake.assert_clean(&[], &[]);
            assert_eq!(o.result, SetupResult::Degraded, "call {at} ({call}): {}", o.reason);
            assert!(o.reason.contains("killed by signal 6 (SIGABRT)"), "{}", o.reason);
            if held {
                for t in ["/sysroot/var/log", "/sysroot/tmp", "/sysroot/var/tmp"] {
                    assert!(fake.tmpfs.iter().any(|m| m == Path::new(t)), "call {at} ({call}): no tmpfs on {t}");
                }
            } else {
                // /tmp in the initramfs; /var/log and /var/tmp by units after /var is mounted.
                assert_eq!(fake.tmpfs, [PathBuf::from("/sysroot/tmp")], "call {at} ({call})");
                assert_eq!(fake.units.len(), 2, "call {at} ({call}): {:?}", fake.units.keys());
            }
        }
    }
}

/// Both invocations died (the record is still there): the next setup (the rescue shell's "leave
/// to run setup again") undoes what the dead run left before it starts, and makes the volume.
#[test]
fn setup_after_two_deaths_undoes_the_dead_run_first() {
    quiet_deaths();
    let tree = two_disks("swap = 4G");
    let mut reference = ro_fake();
    setup(&tree.host(), None, Path::new(SYSROOT), &mut reference);
    let at = reference.calls.iter().position(|c| c.starts_with("bind ")).unwrap();
    let mut fake = ro_fake();
    assert!(die_at(&mut fake, &tree, at));
    assert!(!fake.mappings.is_empty() && !fake.mounts.is_empty() && !fake.swaps.is_empty());
    let o = setup(&tree.host(), None, Path::new(SYSROOT), &mut fake).1;
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    assert_eq!(fake.mounts.len(), 4, "the volume and its three binds, once: {:?}", fake.mounts);
    assert!(fake.progress.is_none());
}
