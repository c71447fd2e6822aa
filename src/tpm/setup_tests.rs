//! Setup measuring its outcome, against the fake kernel and a fake TPM: every bank extended, the
//! log replaying to the PCR, each outcome its own value, no TPM handled as `measure` says, a
//! hostile TPM refused, and the key nowhere.

use std::path::Path;

use crate::fake::{Fake, FakeTpm, Tree, PLANTED};
use crate::setup::setup;
use crate::status::{SetupResult, Status};
use crate::tpm::Bank;

fn tree(config: &str) -> Tree {
    let t = Tree::new(config);
    t.disk("nvme2n1", 2, "B").disk("nvme1n1", 1, "A");
    t
}

fn with_tpm(banks: &[Bank]) -> Fake {
    Fake { tpm: Some(FakeTpm::new(banks)), ..Fake::new() }
}

fn run(fake: &mut Fake, tree: &Tree) -> Status {
    setup(&tree.host(), None, Path::new("/sysroot"), fake).1
}

/// The PCR computed from the log alone, from zeros: what a verifier does.
fn replay(log: &str, pcr: u32, bank: Bank) -> Vec<u8> {
    let mut value = vec![0u8; bank.len()];
    for record in log.split('\u{1e}').filter(|r| !r.is_empty()) {
        let v = crate::json::parse(record).unwrap();
        if v.get("pcr") != Some(&crate::json::Value::Num(u64::from(pcr))) {
            continue;
        }
        let text = v.get("content").and_then(|c| c.get("string")).and_then(|s| s.as_str()).unwrap();
        value = bank.extend(&value, &bank.digest(text.as_bytes()));
    }
    value
}

fn pcr(fake: &Fake, bank: Bank) -> Vec<u8> {
    fake.tpm.as_ref().unwrap().pcr(15, bank)
}

#[test]
fn the_outcome_is_measured_into_every_bank_and_the_log_replays_it() {
    let t = tree("measure = auto");
    let mut fake = with_tpm(&[Bank::Sha1, Bank::Sha256, Bank::Sha384]);
    let o = run(&mut fake, &t);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    let m = o.measurement.clone().unwrap();
    let names: Vec<&str> = m.banks.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!((m.pcr, names.join(","), m.not_measured), (15, "sha1,sha256,sha384".to_string(), None));
    assert!(m.event.contains(r#""result":"ok","policy":null,"died":false,"cipher":"aes-xts-plain64""#), "{}", m.event);
    assert!(m.event.ends_with(r#""fs":"ext4","serials":["A","B"]}"#), "{}", m.event);
    for (i, bank) in [Bank::Sha1, Bank::Sha256, Bank::Sha384].into_iter().enumerate() {
        assert_eq!(replay(&fake.measure_log, 15, bank), pcr(&fake, bank), "{}", bank.name());
        // The value the status reports is the one read back from the TPM.
        let hex: String = pcr(&fake, bank).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(m.banks[i].1, hex);
        assert_ne!(pcr(&fake, bank), vec![0; bank.len()]);
    }
    assert_eq!(fake.measure_log.matches('\u{1e}').count(), 1, "one event");
    assert!(!fake.measure_locked);
    // After every step that makes the volume, under the log's lock, right before the status.
    let calls = &fake.calls;
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c}: {calls:?}"));
    assert!(at("lock_measure_log") < at("tpm 0x182") && at("tpm 0x182") < at("unlock_measure_log with a record"));
    let tail = ["tpm 0x17a", "lock_measure_log", "tpm 0x182", "unlock_measure_log with a record", "tpm 0x17e"];
    assert_eq!(&calls[calls.len() - 8..calls.len() - 3], tail);
    assert_eq!(&calls[calls.len() - 3..], ["tpm 0x17e", "tpm 0x17e", "write_status"]);
    // The status written carries it, and `status` shows it.
    let written = crate::status::parse(fake.status.as_deref().unwrap()).unwrap();
    assert_eq!(written.measurement, o.measurement);
    assert!(written.render().contains("measured: PCR 15 (sha1, sha256, sha384): {"), "{}", written.render());
    // No key byte in the event, the log or the status (the fake's keys are all 0xA5).
    let key_hex = format!("{PLANTED:02x}").repeat(8);
    for text in [&fake.measure_log, fake.status.as_ref().unwrap()] {
        assert!(!text.to_lowercase().contains(&key_hex), "{text}");
    }
}

#[test]
fn each_outcome_gives_its_own_value_reproducible_from_the_log() {
    let value = |config: &str, cmdline: &str, fail: Option<&str>| {
        let t = tree(config);
        std::fs::write(t.root.join("proc/cmdline"), cmdline).unwrap();
        let mut fake = with_tpm(&[Bank::Sha256]);
        fake.fail_all = fail.map(str::to_string);
        let o = run(&mut fake, &t);
        assert_eq!(replay(&fake.measure_log, 15, Bank::Sha256), pcr(&fake, Bank::Sha256));
        (o, pcr(&fake, Bank::Sha256))
    };
    let (ok, v_ok) = value("measure = auto", "ro", None);
    let (failed, v_failed) = value("measure = auto", "ro", Some("mount /dev/mapper/ephemcrypt"));
    let (held, v_held) = value("measure = auto\nhold = yes", "ro", None);
    let (disabled, v_disabled) = value("measure = auto", "ro rd.ephemcrypt=0", None);
    assert_eq!(ok.result, SetupResult::Ok);
    assert_eq!(failed.result, SetupResult::Degraded, "{}", failed.reason);
    assert!(failed.measurement.unwrap().event.contains(r#""result":"degraded","policy":"tmpfs""#));
    assert_eq!(held.result, SetupResult::Held);
    assert!(held.measurement.unwrap().event.contains(r#""result":"held","policy":null"#));
    assert_eq!(disabled.result, SetupResult::Disabled);
    let values = [&v_ok, &v_failed, &v_held, &v_disabled];
    for (i, a) in values.iter().enumerate() {
        for b in &values[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // The same outcome, the same value: nothing of the boot (ids, times) is in the event.
    assert_eq!(value("measure = auto", "ro", None).1, v_ok);
}

#[test]
fn without_a_tpm_auto_goes_on_and_required_is_a_failure() {
    let t = tree("measure = auto");
    let mut fake = Fake::new();
    let o = run(&mut fake, &t);
    assert_eq!(o.result, SetupResult::Ok, "{}", o.reason);
    let m = o.measurement.clone().unwrap();
    assert!(m.banks.is_empty() && m.not_measured.as_deref().unwrap().contains("no TPM"), "{m:?}");
    assert!(o.render().contains("not measured (PCR 15): no TPM"), "{}", o.render());
    assert!(fake.measure_log.is_empty() && !fake.calls.iter().any(|c| c.contains("measure_log")));

    let t = tree("measure = required\nmeasure-pcr = 14");
    let mut fake = Fake::new();
    let o = run(&mut fake, &t);
    assert_eq!(o.result, SetupResult::Degraded);
    assert_eq!(o.failed_step.as_deref(), Some("measure the outcome into PCR 14"));
    assert!(o.reason.contains("a TPM to measure into (measure = required)"), "{}", o.reason);
    // The failure policy took over: the volume undone, tmpfs over the targets.
    assert!(fake.mappings.is_empty());
    assert_eq!(fake.tmpfs.len(), 3);
    let m = o.measurement.unwrap();
    assert!(m.event.contains(r#""result":"degraded","policy":"tmpfs""#), "{}", m.event);

    // measure = no (the default): no TPM call at all.
    let t = tree("");
    let mut fake = with_tpm(&[Bank::Sha256]);
    let o = run(&mut fake, &t);
    assert_eq!((o.result, o.measurement), (SetupResult::Ok, None));
    assert!(!fake.calls.iter().any(|c| c.starts_with("tpm")));
}

#[test]
fn a_hostile_tpm_is_refused_and_nothing_is_logged() {
    for answer in ["", "80010000", "8001000000ff00000000", "800100000010000000000000"] {
        let bytes: Vec<u8> =
            (0..answer.len()).step_by(2).map(|i| u8::from_str_radix(&answer[i..i + 2], 16).unwrap()).collect();
        let t = tree("measure = auto");
        let mut fake = with_tpm(&[Bank::Sha256]);
        fake.tpm.as_mut().unwrap().answer = Some(bytes);
        let o = run(&mut fake, &t);
        assert_eq!(o.result, SetupResult::Ok);
        let why = o.measurement.unwrap().not_measured.unwrap();
        assert!(why.starts_with("read the PCR banks of the TPM: "), "{why}");
        assert!(fake.measure_log.is_empty() && !fake.measure_locked);
    }
    // A TPM that refuses the extend (TPM_RC_LOCALITY): the lock is released without a record.
    let t = tree("measure = auto");
    let mut fake = with_tpm(&[Bank::Sha256]);
    fake.fail_all = Some("tpm 0x182".into());
    let o = run(&mut fake, &t);
    assert!(o.measurement.unwrap().not_measured.is_some());
    assert!(fake.calls.contains(&"unlock_measure_log empty".to_string()), "{:?}", fake.calls);
    assert!(fake.measure_log.is_empty() && !fake.measure_locked);
}

#[test]
fn plan_shows_the_event() {
    let t = tree("measure = required");
    let plan = crate::setup::show(&t.host(), None, None, &mut Fake::new()).unwrap();
    let text = plan.steps.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(text.contains("extend PCR 15 in every active bank with the digest of {\"ephemcrypt\":"), "{text}");
    assert!(text.contains(r#""result":"RESULT","policy":null"#), "{text}");
    assert!(text.contains("no TPM is a failure (measure = required)"), "{text}");
    assert!(plan.fallback.iter().any(|s| matches!(s, crate::step::Step::Measure(e) if e.policy == Some("tmpfs"))));
}

/// tools/pcr-replay (what the docs give verifiers) computes from the log what the TPM holds.
#[test]
fn the_replay_script_agrees_with_the_tpm() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pcr-replay");
    if std::process::Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no python3 to run tools/pcr-replay");
        return;
    }
    let t = tree("measure = auto");
    let mut fake = with_tpm(&[Bank::Sha1, Bank::Sha256, Bank::Sha512]);
    run(&mut fake, &t);
    // A second event (systemd's, say) in the same PCR: replay takes both, in order.
    let mut second = Fake { tpm: fake.tpm.clone(), measure_log: fake.measure_log.clone(), ..Fake::new() };
    crate::tpm::measure(&mut second, 15, "enter-initrd").unwrap();
    let log = t.root.join("tpm2-measure.log");
    std::fs::write(&log, &second.measure_log).unwrap();
    let out = std::process::Command::new("python3").arg(&script).args(["--pcr", "15"]).arg(&log).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let want: String = [Bank::Sha1, Bank::Sha256, Bank::Sha512]
        .iter()
        .map(|b| format!("15 {} {}\n", b.name(), hex(&pcr(&second, *b))))
        .collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    // systemd-cryptsetup's volume-key record in the same PCR: its digest is an HMAC keyed by the
    // volume key, not the hash of its string; it is replayed, not refused.
    let volume_key = "\u{1e}{\"pcr\":15,\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\"".to_string()
        + &"ab".repeat(32)
        + "\"}],\"content_type\":\"systemd\",\"content\":{\"eventType\":\"volume-key\",\"string\":\"cryptsetup:root\"}}\n";
    std::fs::write(&log, second.measure_log.clone() + &volume_key).unwrap();
    let out = std::process::Command::new("python3").arg(&script).args(["--pcr", "15"]).arg(&log).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A record whose digest is not the hash of its string is refused.
    let forged = second.measure_log.replacen(r#"\"result\":\"ok\""#, r#"\"result\":\"OK\""#, 1);
    assert_ne!(forged, second.measure_log);
    std::fs::write(&log, forged).unwrap();
    let out = std::process::Command::new("python3").arg(&script).arg(&log).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not the hash of content.string"));
}

/// The real log: made with its directory, appended under the lock, 0600 after (the sticky bit only
/// while appending), never through a planted link, and left alone when a record is half written.
#[test]
fn the_log_is_appended_as_systemd_does() {
    use crate::system::{LinuxSystem, System};
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!("ephemcrypt-measure-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let log_path = Path::new(crate::tpm::event::LOG_PATH);
    let file = root.join("run/log/systemd/tpm2-measure.log");
    let mut sys = LinuxSystem::new(&root);
    sys.lock_measure_log(log_path).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777, 0o1600, "sticky while appending");
    sys.unlock_measure_log(Some("\u{1e}{\"pcr\":15}\n")).unwrap();
    sys.lock_measure_log(log_path).unwrap();
    sys.unlock_measure_log(None).unwrap();
    sys.lock_measure_log(log_path).unwrap();
    sys.unlock_measure_log(Some("\u{1e}{\"pcr\":15}\n")).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "\u{1e}{\"pcr\":15}\n\u{1e}{\"pcr\":15}\n");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777, 0o600);
    // A half-written record (the sticky bit left set): nothing more is appended.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o1600)).unwrap();
    let e = sys.lock_measure_log(log_path).unwrap_err().to_string();
    assert!(e.contains("half-written record"), "{e}");
    // A link planted at the log's name is not followed.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(root.join("target"), "").unwrap();
    std::os::unix::fs::symlink(root.join("target"), &file).unwrap();
    assert!(sys.lock_measure_log(log_path).is_err());
    assert_eq!(std::fs::read_to_string(root.join("target")).unwrap(), "");
    std::fs::remove_dir_all(&root).unwrap();
}
