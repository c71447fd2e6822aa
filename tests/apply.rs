//! `apply` against a fake kernel: the order of operations, rollback after a failure injected at
//! every step, each failure policy, idempotence, and a planted key that must never leak.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use ephemcrypt::apply::setup;
use ephemcrypt::config::{Config, Fs};
use ephemcrypt::dm::{TableLine, Target};
use ephemcrypt::error::{Error, Result};
use ephemcrypt::host::{Disk, Probe};
use ephemcrypt::key::{Key, KeySerial};
use ephemcrypt::status::{Outcome, SetupResult};
use ephemcrypt::system::System;
use ephemcrypt::units::{Bytes, DevNo};

const PLANTED: u8 = 0xA5;

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

/// A kernel that remembers what exists, records every call and fails the `fail_at`-th one.
#[derive(Default)]
struct Fake {
    calls: Vec<String>,
    fail_at: Option<usize>,
    /// How many more removes of a mapping fail with EBUSY (udev probing it).
    busy: BTreeMap<String, u32>,
    crypt_version: Option<[u32; 3]>,
    next_minor: u32,
    mappings: BTreeMap<String, DevNo>,
    live: BTreeSet<String>,
    tables: Vec<String>,
    /// The table lines of each mapping, as `dmsetup table` shows them.
    loaded: BTreeMap<String, Vec<String>>,
    nodes: BTreeSet<String>,
    keys: BTreeMap<i32, String>,
    swaps: BTreeSet<String>,
    mounts: Vec<PathBuf>,
    dirs: BTreeSet<PathBuf>,
    tmpfs: Vec<PathBuf>,
    status: Option<String>,
    clock: u64,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            crypt_version: Some([1, 27, 0]),
            dirs: ["/sysroot/var/log", "/sysroot/tmp", "/sysroot/var/tmp"].iter().map(PathBuf::from).collect(),
            ..Fake::default()
        }
    }

    /// Record a call; fail it if it is the chosen one.
    fn call(&mut self, what: String) -> Result<()> {
        self.calls.push(what.clone());
        if self.fail_at == Some(self.calls.len() - 1) {
            return Err(Error::os("fake", what, std::io::Error::from_raw_os_error(libc::EIO)));
        }
        Ok(())
    }

    /// Nothing of ours left behind.
    fn assert_clean(&self) {
        assert!(self.mappings.is_empty(), "mappings left: {:?}\ncalls: {:#?}", self.mappings, self.calls);
        assert!(self.nodes.is_empty(), "nodes left: {:?}", self.nodes);
        assert!(self.keys.is_empty(), "keys left: {:?}", self.keys);
        assert!(self.swaps.is_empty(), "swaps left: {:?}", self.swaps);
        assert!(self.mounts.is_empty(), "mounts left: {:?}", self.mounts);
        assert!(!self.dirs.contains(Path::new("/sysroot/mnt/ephemcrypt")), "mount point left");
    }
}

impl System for Fake {
    fn crypt_version(&mut self) -> Result<[u32; 3]> {
        self.call("crypt_version".into())?;
        self.crypt_version.ok_or_else(|| Error::msg("no crypt target"))
    }
    fn make_key(&mut self, len: usize) -> Result<Key> {
        self.call(format!("make_key {len}"))?;
        Ok(Key::from_bytes_for_test(&vec![PLANTED; len]))
    }
    fn add_logon_key(&mut self, description: &str, key: &Key) -> Result<KeySerial> {
        self.call(format!("add_logon_key {description}"))?;
        assert!(key.expose().iter().all(|b| *b == PLANTED));
        let serial = 100 + self.keys.len() as i32;
        self.keys.insert(serial, description.to_string());
        Ok(KeySerial(serial))
    }
    fn invalidate_key(&mut self, serial: KeySerial) -> Result<()> {
        self.call(format!("invalidate_key {}", serial.0))?;
        self.keys.remove(&serial.0);
        Ok(())
    }
    fn dm_create(&mut self, name: &str, uuid: &str) -> Result<DevNo> {
        self.call(format!("dm_create {name} {uuid}"))?;
        let dev = DevNo { major: 253, minor: self.next_minor };
        self.next_minor += 1;
        self.mappings.insert(name.into(), dev);
        Ok(dev)
    }
    fn dm_load(&mut self, name: &str, targets: &[Target], secure: bool) -> Result<()> {
        let line: Vec<String> =
            targets.iter().map(|t| format!("{} {} {} {}", t.start, t.len, t.kind.type_name(), *t.params())).collect();
        self.tables.push(line.join("\n"));
        let shown: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        self.call(format!("dm_load {name} secure={secure} {}", shown.join(" | ")))?;
        self.loaded.insert(name.into(), line);
        Ok(())
    }
    fn dm_resume(&mut self, name: &str) -> Result<()> {
        self.call(format!("dm_resume {name}"))?;
        self.live.insert(name.into());
        Ok(())
    }
    fn dm_remove(&mut self, name: &str) -> Result<()> {
        self.call(format!("dm_remove {name}"))?;
        if let Some(n) = self.busy.get_mut(name).filter(|n| **n > 0) {
            *n -= 1;
            return Err(Error::os("device-mapper remove", name, std::io::Error::from_raw_os_error(libc::EBUSY)));
        }
        self.mappings.remove(name);
        self.live.remove(name);
        Ok(())
    }
    fn dm_dev(&mut self, name: &str) -> Result<Option<DevNo>> {
        Ok(self.mappings.get(name).copied().filter(|_| self.live.contains(name)))
    }
    fn dm_table(&mut self, name: &str) -> Result<Vec<TableLine>> {
        Ok(self.loaded.get(name).into_iter().flatten().map(|l| l.parse().unwrap()).collect())
    }
    fn make_node(&mut self, name: &str, _dev: DevNo) -> Result<bool> {
        self.call(format!("make_node {name}"))?;
        Ok(self.nodes.insert(name.into()))
    }
    fn remove_node(&mut self, name: &str) -> Result<()> {
        self.call(format!("remove_node {name}"))?;
        self.nodes.remove(name);
        Ok(())
    }
    fn make_swap(&mut self, name: &str, len: Bytes) -> Result<()> {
        self.call(format!("make_swap {name} {}", len.0))
    }
    fn swapon(&mut self, name: &str) -> Result<()> {
        self.call(format!("swapon {name}"))?;
        self.swaps.insert(name.into());
        Ok(())
    }
    fn swapoff(&mut self, name: &str) -> Result<()> {
        self.call(format!("swapoff {name}"))?;
        self.swaps.remove(name);
        Ok(())
    }
    fn mkfs(&mut self, fs: Fs, name: &str) -> Result<()> {
        self.call(format!("mkfs {} {name}", fs.name()))
    }
    fn mkdir(&mut self, path: &Path) -> Result<bool> {
        self.call(format!("mkdir {}", path.display()))?;
        Ok(self.dirs.insert(path.into()))
    }
    fn rmdir(&mut self, path: &Path) -> Result<()> {
        self.call(format!("rmdir {}", path.display()))?;
        self.dirs.remove(path);
        Ok(())
    }
    fn mount_dm(&mut self, name: &str, target: &Path, fs: Fs) -> Result<()> {
        self.call(format!("mount {name} {} {}", target.display(), fs.name()))?;
        self.mounts.push(target.into());
        Ok(())
    }
    fn bind(&mut self, source: &Path, target: &Path) -> Result<()> {
        self.call(format!("bind {} {}", source.display(), target.display()))?;
        self.mounts.push(target.into());
        Ok(())
    }
    fn mount_tmpfs(&mut self, target: &Path) -> Result<()> {
        self.calls.push(format!("tmpfs {}", target.display()));
        self.tmpfs.push(target.into());
        Ok(())
    }
    fn umount(&mut self, target: &Path) -> Result<()> {
        self.call(format!("umount {}", target.display()))?;
        let i = self.mounts.iter().rposition(|m| m == target).expect("unmount of something mounted");
        self.mounts.remove(i);
        Ok(())
    }
    fn is_mountpoint(&mut self, target: &Path) -> Result<bool> {
        Ok(self.mounts.iter().any(|m| m == target))
    }
    fn copy_skeleton(&mut self, from: &Path, to: &Path) -> Result<()> {
        self.call(format!("copy_skeleton {} {}", from.display(), to.display()))
    }
    fn write_status(&mut self, json: &str) -> Result<()> {
        self.status = Some(json.into());
        Ok(())
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.clock += ms;
    }
    fn now_ms(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

fn disk(name: &str, serial: &str, minor: u32) -> Disk {
    let d = Disk::new(name, DevNo { major: 259, minor }, Bytes(100 << 30));
    Disk { model: "Amazon EC2 NVMe Instance Storage".into(), serial: serial.into(), probe: Probe::Clean, ..d }
}

fn two_disks() -> Vec<Disk> {
    vec![disk("nvme2n1", "B", 2), disk("nvme1n1", "A", 1)]
}

fn config(text: &str) -> Config {
    Config::load(Some((Path::new("test.conf"), text)), "").unwrap()
}

fn run(fake: &mut Fake, cfg: &Config, disks: Vec<Disk>) -> Outcome {
    let (plan, outcome) = setup(cfg, Path::new("/sysroot"), fake, &mut || Ok(disks.clone()));
    fake.write_status(&outcome.to_json(plan.as_ref()).pretty()).unwrap();
    outcome
}

/// Calls with the unique key description folded, for comparison.
fn shape(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .map(|c| match c.find("ephemcrypt:ephemcrypt:") {
            Some(i) => {
                let end = c[i..].find(|ch: char| ch.is_whitespace()).map_or(c.len(), |e| i + e);
                format!("{}<desc>{}", &c[..i], &c[end..])
            }
            None => c.clone(),
        })
        .collect()
}

#[test]
fn order_of_operations_two_disks_with_swap() {
    let mut fake = Fake::new();
    let o = run(&mut fake, &config("swap = 4G"), two_disks());
    assert_eq!(o.result(), SetupResult::Ok, "{}", o.reason);
    let want = [
        "crypt_version",
        "dm_create ephemcrypt-stripe EPHEMCRYPT-STRIPE-ephemcrypt-stripe",
        "dm_load ephemcrypt-stripe secure=false 0 419430400 striped 2 512 259:1 0 259:2 0",
        "dm_resume ephemcrypt-stripe",
        "make_node ephemcrypt-stripe",
        "dm_create ephemcrypt CRYPT-PLAIN-ephemcrypt",
        "make_key 64",
        "add_logon_key <desc>",
        "dm_load ephemcrypt secure=true 0 419430400 crypt aes-xts-plain64 :64:logon:<desc> 0 253:0 0 3 no_read_workqueue no_write_workqueue sector_size:4096",
        "invalidate_key 100",
        "dm_resume ephemcrypt",
        "make_node ephemcrypt",
        "dm_create ephemcrypt-swap EPHEMCRYPT-SWAP-ephemcrypt-swap",
        "dm_load ephemcrypt-swap secure=false 0 8388608 linear 253:1 0",
        "dm_resume ephemcrypt-swap",
        "make_node ephemcrypt-swap",
        "dm_create ephemcrypt-data EPHEMCRYPT-DATA-ephemcrypt-data",
        "dm_load ephemcrypt-data secure=false 0 411041792 linear 253:1 8388608",
        "dm_resume ephemcrypt-data",
        "make_node ephemcrypt-data",
        "make_swap ephemcrypt-swap 4294967296",
        "swapon ephemcrypt-swap",
        "mkfs ext4 ephemcrypt-data",
        "mkdir /sysroot/mnt/ephemcrypt",
        "mount ephemcrypt-data /sysroot/mnt/ephemcrypt ext4",
        "mkdir /sysroot/var/log",
        "copy_skeleton /sysroot/var/log /sysroot/mnt/ephemcrypt/var/log",
        "bind /sysroot/mnt/ephemcrypt/var/log /sysroot/var/log",
        "mkdir /sysroot/tmp",
        "copy_skeleton /sysroot/tmp /sysroot/mnt/ephemcrypt/tmp",
        "bind /sysroot/mnt/ephemcrypt/tmp /sysroot/tmp",
        "mkdir /sysroot/var/tmp",
        "copy_skeleton /sysroot/var/tmp /sysroot/mnt/ephemcrypt/var/tmp",
        "bind /sysroot/mnt/ephemcrypt/var/tmp /sysroot/var/tmp",
    ];
    assert_eq!(shape(&fake.calls), want);
    assert!(fake.keys.is_empty(), "keyring entry invalidated");
    assert_eq!(o.mappings.len(), 4);
    assert_eq!(o.swap.as_deref(), Some("/dev/mapper/ephemcrypt-swap"));
    assert_eq!(o.binds.len(), 3);
    let status = fake.status.unwrap();
    for needle in ["\"result\": \"ok\"", "kernel keyring (logon), never stored", "\"dev\": \"253:1\"", "\"ms\":"] {
        assert!(status.contains(needle), "{needle} in {status}");
    }
}

#[test]
fn one_disk_no_swap_is_crypt_directly_on_the_disk() {
    let mut fake = Fake::new();
    let o = run(&mut fake, &Config::default(), vec![disk("nvme1n1", "A", 1)]);
    assert_eq!(o.result(), SetupResult::Ok);
    let creates: Vec<&String> = fake.calls.iter().filter(|c| c.starts_with("dm_create")).collect();
    assert_eq!(creates, ["dm_create ephemcrypt CRYPT-PLAIN-ephemcrypt"]);
    assert!(fake.calls.iter().any(|c| c.contains(" 259:1 0 3 ")), "crypt on the disk itself: {:#?}", fake.calls);
    assert!(fake.calls.contains(&"mount ephemcrypt /sysroot/mnt/ephemcrypt ext4".to_string()));
}

/// A failure injected at every operation: nothing is left behind, and each policy does its part.
#[test]
fn failure_at_every_step_leaves_nothing_behind() {
    let mut reference = Fake::new();
    run(&mut reference, &config("swap = 4G"), two_disks());
    let total = reference.calls.len();
    assert!(total > 30);
    for policy in ["tmpfs", "continue", "halt"] {
        for at in 0..total {
            let mut fake = Fake { fail_at: Some(at), ..Fake::new() };
            let o = run(&mut fake, &config(&format!("swap = 4G\non-failure = {policy}")), two_disks());
            let failed = &reference.calls[at];
            fake.assert_clean();
            assert!(o.reason.contains("fake"), "step {at} ({failed}): reason {}", o.reason);
            assert!(o.mappings.is_empty() && o.binds.is_empty() && o.swap.is_none());
            let status = fake.status.as_deref().unwrap();
            match policy {
                "tmpfs" => {
                    assert_eq!(o.result(), SetupResult::Degraded);
                    assert_eq!(fake.tmpfs, ["/sysroot/var/log", "/sysroot/tmp", "/sysroot/var/tmp"].map(PathBuf::from));
                    assert!(status.contains("\"result\": \"degraded\""));
                }
                "continue" => {
                    assert_eq!(o.result(), SetupResult::Degraded);
                    assert!(fake.tmpfs.is_empty());
                }
                _ => {
                    assert_eq!(o.result(), SetupResult::Failed);
                    assert!(fake.tmpfs.is_empty());
                    assert!(status.contains("\"result\": \"failed\""));
                }
            }
        }
    }
}

/// Fail at the mount point (a read-only root without it), with the data mapping held by udev for
/// `busy` removes after mkfs, as in a dracut systemd initrd with the dm rules.
fn fail_at_mount_point_with_busy_data(busy: u32) -> (Fake, Outcome) {
    let mut reference = Fake::new();
    run(&mut reference, &config("swap = 4G"), two_disks());
    let at = reference.calls.iter().position(|c| c == "mkdir /sysroot/mnt/ephemcrypt").unwrap();
    let mut fake = Fake { fail_at: Some(at), busy: [("ephemcrypt-data".into(), busy)].into(), ..Fake::new() };
    let o = run(&mut fake, &config("swap = 4G"), two_disks());
    (fake, o)
}

#[test]
fn rollback_waits_for_udev_to_let_go_of_a_mapping() {
    let (fake, o) = fail_at_mount_point_with_busy_data(3);
    fake.assert_clean();
    assert_eq!(o.result(), SetupResult::Degraded);
    assert!(!o.reason.contains("cleanup"), "{}", o.reason);
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
    let mut fake = Fake::new();
    let o = run(&mut fake, &Config::default(), vec![]);
    assert_eq!(o.result(), SetupResult::Absent);
    assert!(fake.calls.is_empty(), "{:?}", fake.calls);
    assert!(fake.tmpfs.is_empty());
}

#[test]
fn too_few_disks_after_waiting_is_a_failure() {
    let mut fake = Fake::new();
    let o = run(&mut fake, &config("expect = 3\nwait = 2"), two_disks());
    assert_eq!(o.result(), SetupResult::Degraded);
    assert_eq!(o.reason, "2 eligible disk(s), 3 expected");
    assert!(fake.clock >= 2000, "waited {} ms", fake.clock);
    assert_eq!(fake.tmpfs.len(), 3);
    assert!(fake.mappings.is_empty());
}

#[test]
fn late_disks_are_waited_for() {
    let mut fake = Fake::new();
    let cfg = config("expect = 2\nwait = 5");
    let mut scans = 0;
    let (_, o) = setup(&cfg, Path::new("/sysroot"), &mut fake, &mut || {
        scans += 1;
        Ok(if scans < 4 { vec![disk("nvme1n1", "A", 1)] } else { two_disks() })
    });
    assert_eq!(o.result(), SetupResult::Ok, "{}", o.reason);
    assert_eq!(scans, 4);
    assert_eq!(o.steps[0].0, "wait for disks");
}

#[test]
fn disabled_does_nothing() {
    let mut fake = Fake::new();
    let cfg = Config::load(None, "rd.ephemcrypt=0").unwrap();
    let o = run(&mut fake, &cfg, two_disks());
    assert_eq!(o.result(), SetupResult::Disabled);
    assert!(fake.calls.is_empty() && fake.tmpfs.is_empty());
}

#[test]
fn second_run_finds_the_live_volume_and_changes_nothing() {
    let mut fake = Fake::new();
    let cfg = config("swap = 4G");
    assert_eq!(run(&mut fake, &cfg, two_disks()).result(), SetupResult::Ok);
    let before = fake.calls.len();
    // On the second run the disks are held by the stripe: the plan alone would find none.
    let mut held = two_disks();
    held.iter_mut().for_each(|d| d.holders = vec!["dm-0".into()]);
    let (_, o) = setup(&cfg, Path::new("/sysroot"), &mut fake, &mut || Ok(held.clone()));
    assert_eq!(o.result(), SetupResult::Ok);
    assert!(o.already_active);
    assert_eq!(fake.calls.len(), before, "no operation: {:?}", &fake.calls[before..]);
}

#[test]
fn a_foreign_mapping_with_our_name_is_not_taken_for_the_volume() {
    let mut fake = Fake::new();
    // Someone else's linear mapping happens to be called "ephemcrypt".
    fake.mappings.insert("ephemcrypt".into(), DevNo { major: 253, minor: 9 });
    fake.live.insert("ephemcrypt".into());
    fake.loaded.insert("ephemcrypt".into(), vec!["0 2048 linear 8:16 0".into()]);
    let o = run(&mut fake, &Config::default(), two_disks());
    assert_eq!(o.result(), SetupResult::Degraded);
    assert!(o.reason.contains("/dev/mapper/ephemcrypt exists but is not a dm-crypt volume (linear)"), "{}", o.reason);
    assert!(fake.calls.iter().all(|c| c.starts_with("tmpfs ")), "only the fallback: {:?}", fake.calls);
    assert_eq!(fake.tmpfs.len(), 3);
    assert_eq!(fake.mappings.len(), 1, "the foreign mapping is left alone");
}

#[test]
fn old_kernel_gets_a_hex_key_with_secure_flag_and_no_keyring() {
    let mut fake = Fake { crypt_version: Some([1, 14, 1]), ..Fake::new() };
    let o = run(&mut fake, &Config::default(), two_disks());
    assert_eq!(o.result(), SetupResult::Ok);
    assert!(!fake.calls.iter().any(|c| c.starts_with("add_logon_key")));
    let hex = "a5".repeat(64);
    assert!(fake.tables.iter().any(|t| t.contains(&hex)), "the table carries the key on this path");
    let load = fake.calls.iter().find(|c| c.starts_with("dm_load ephemcrypt secure=true")).unwrap();
    assert!(load.contains("<redacted>") && !load.contains(&hex), "{load}");
    assert!(fake.status.unwrap().contains("hex key in the dm table"));
}

#[test]
fn missing_crypt_target_is_a_failure() {
    let mut fake = Fake { crypt_version: None, ..Fake::new() };
    let o = run(&mut fake, &Config::default(), two_disks());
    assert_eq!(o.result(), SetupResult::Degraded);
    assert_eq!(o.reason, "no crypt target");
    fake.assert_clean();
}

/// The planted key must never show up in a log line, an error, the status or Debug output, in
/// any form: hex (either case), decimal bytes or raw.
#[test]
fn planted_key_never_leaks() {
    let _g = SERIAL.lock().unwrap();
    capture_logs();
    LOG.lock().unwrap().clear();
    let forms = ["a5a5a5a5".to_string(), "A5A5A5A5".to_string(), "165, 165".to_string(), "\u{a5}\u{a5}".to_string()];
    let mut texts = Vec::new();
    for (caps, at) in [([1, 27, 0], None), ([1, 14, 1], None), ([1, 27, 0], Some(8)), ([1, 14, 1], Some(7))] {
        let mut fake = Fake { crypt_version: Some(caps), fail_at: at, ..Fake::new() };
        let o = run(&mut fake, &config("swap = 4G"), two_disks());
        texts.push(format!("{o:?}"));
        texts.push(o.reason.clone());
        texts.push(fake.status.clone().unwrap());
        texts.extend(fake.calls.clone());
    }
    texts.extend(LOG.lock().unwrap().iter().cloned());
    assert!(texts.len() > 100);
    texts.push(format!("{:?}", Key::from_bytes_for_test(&[PLANTED; 64])));
    for t in &texts {
        for f in &forms {
            assert!(!t.contains(f.as_str()), "key material ({f}) in: {t}");
        }
    }
}
