//! The planner's tests.

use super::*;
use std::path::{Path, PathBuf};

use super::layout::*;
use super::render::*;
use crate::config::Config;
use crate::disk::{DirState, Disk, NewRoot};
use crate::json::Value;
use crate::paths::under;
use crate::step::{KeyPath, Step};
use crate::testutil::disk;
use crate::units::{Bytes, DevNo, Sectors};

fn cfg(text: &str) -> Config {
    Config::load(Some((Path::new("t.conf"), text)), "").unwrap()
}

fn facts(disks: &[Disk]) -> Facts {
    Facts {
        disks: disks.to_vec(),
        caps: Caps::ASSUMED,
        newroot: NewRoot::assumed("/sysroot"),
        live: None,
        identity: None,
        taken: Vec::new(),
    }
}

/// FIPS mode refuses what the kernel would refuse there, and escrow unless allowed; the
/// plan says so. Outside FIPS mode the same configurations are ready.
#[test]
fn fips_mode_refusals() {
    let d = [disk("nvme1n1", "A")];
    let fips = |c: &Config| plan(c, &Facts { caps: Caps { fips: true, ..Caps::ASSUMED }, ..facts(&d) });
    let p = fips(&cfg("cipher = serpent-cbc-essiv:sha256\nkey-bits = 256"));
    assert!(p.steps.is_empty());
    assert_eq!(
        state_reason(&p.state),
        "the kernel runs in FIPS mode (/proc/sys/crypto/fips_enabled is 1) and refuses cipher \
         serpent-cbc-essiv:sha256 with key-bits 256: serpent is not a FIPS-approved cipher: the kernel \
         disables it in FIPS mode (use aes-xts-plain64)"
    );
    assert!(p.disks[0].verdict.reason().contains("FIPS mode"), "{:?}", p.disks[0].verdict);
    assert!(matches!(plan_of(&cfg("cipher = serpent-cbc-essiv:sha256\nkey-bits = 256"), &d).state, State::Ready(_)));
    let escrow = format!("escrow = {}", crate::age::tests::AGE_RECIPIENT);
    assert_eq!(fips(&cfg(&escrow)).state, State::Invalid(PlanError::FipsEscrow));
    let p = fips(&cfg(&format!("{escrow}\nescrow-fips = allow")));
    assert!(matches!(p.state, State::Ready(_)), "{:?}", p.state);
    let text = p.to_string();
    assert!(text.contains("FIPS mode: the kernel's approved aes-xts-plain64 encrypts the disks\n"), "{text}");
    assert!(text.contains("FIPS mode: the escrow's X25519 and ChaCha20-Poly1305 are not FIPS-approved"), "{text}");
    assert_eq!(p.to_json().get("fips_mode"), Some(&Value::Bool(true)));
    assert!(matches!(fips(&Config::default()).state, State::Ready(_)));
}

fn plan_of(config: &Config, disks: &[Disk]) -> Plan {
    plan(config, &facts(disks))
}

fn with_caps(config: &Config, disks: &[Disk], crypt: [u32; 3]) -> Plan {
    plan(config, &Facts { caps: Caps { crypt: Some(crypt), fips: false }, ..facts(disks) })
}

fn ready(p: &Plan) -> &Volume {
    p.volume().unwrap_or_else(|| panic!("not ready: {:?}", p.state))
}

fn mapping_names(p: &Plan) -> Vec<&str> {
    p.steps
        .iter()
        .filter_map(|s| match s {
            Step::Mapping(m) => Some(m.name.as_str()),
            _ => None,
        })
        .collect()
}

fn tables(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .filter_map(|s| match s {
            Step::Mapping(m) => Some(m.table.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
            _ => None,
        })
        .collect()
}

#[test]
fn order_is_by_serial_then_path_not_enumeration() {
    let disks = [disk("nvme1n1", "B"), disk("nvme3n1", "A"), disk("nvme2n1", "A")];
    let p = plan_of(&Config::default(), &disks);
    let names: Vec<&str> = ready(&p).members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["nvme2n1", "nvme3n1", "nvme1n1"]);
    // The same set in another order plans the same.
    let mut rev = disks.to_vec();
    rev.reverse();
    assert_eq!(plan_of(&Config::default(), &rev), p);
}

#[test]
fn one_disk_has_no_stripe_and_rounds_to_4k() {
    let mut d = disk("nvme1n1", "A");
    // The reserved area (header) first, then an odd number of sectors past 10 GiB.
    d.size = Bytes((10 << 30) + (1 << 20) + 512 * 7);
    let p = plan_of(&Config::default(), &[d.clone()]);
    let v = ready(&p);
    assert!(v.stripe.is_none());
    assert_eq!(v.crypt.len.bytes(), Bytes(10 << 30));
    assert_eq!(mapping_names(&p), ["ephemcrypt"]);
    // The crypt table names the disk itself by number.
    assert_eq!(
        tables(&p),
        [format!(
            "0 20971520 crypt aes-xts-plain64 KEY 0 {} 2048 3 no_read_workqueue no_write_workqueue sector_size:4096",
            d.dev
        )]
    );
}

#[test]
fn stripe_rounds_smallest_disk_down_to_whole_chunks() {
    let mut a = disk("nvme1n1", "A");
    let mut b = disk("nvme2n1", "B");
    a.size = Bytes((10 << 30) + (1 << 20) + (100 << 10)); // the header's MiB, 100K over: less than a chunk
    b.size = Bytes(20 << 30);
    let p = plan_of(&Config::default(), &[a.clone(), b.clone()]);
    let v = ready(&p);
    let st = v.stripe.as_ref().unwrap();
    assert_eq!(st.chunk, Sectors(512));
    assert_eq!(st.per_disk.bytes(), Bytes(10 << 30));
    assert_eq!(st.len.bytes(), Bytes(20 << 30));
    assert_eq!(v.crypt.len, st.len);
    assert_eq!(st.len.0 % (st.chunk.0 * 2), 0);
    assert_eq!(mapping_names(&p), ["ephemcrypt-stripe", "ephemcrypt"]);
    assert_eq!(
        tables(&p),
        [
            format!("0 41943040 striped 2 512 {} 2048 {} 2048", a.dev, b.dev),
            "0 41943040 crypt aes-xts-plain64 KEY 0 /dev/mapper/ephemcrypt-stripe 0 3 no_read_workqueue \
             no_write_workqueue sector_size:4096"
                .to_string(),
        ]
    );
}

#[test]
fn steps_of_a_two_disk_volume_with_swap_on_a_read_only_root() {
    let (mut a, mut b) = (disk("nvme1n1", "A"), disk("nvme2n1", "B"));
    (a.dev, b.dev) = (DevNo { major: 259, minor: 1 }, DevNo { major: 259, minor: 2 });
    let ro = crate::disk::parse_mountinfo("40 1 254:0 / /sysroot ro,nosuid,relatime - ext4 /dev/vda ro\n");
    let newroot = NewRoot {
        path: "/sysroot".into(),
        dirs: vec![
            ("/mnt/ephemcrypt".into(), DirState::Missing { depth: 1, read_only: Some(ro[0].clone()) }),
            ("/var/tmp".into(), DirState::Missing { depth: 1, read_only: Some(ro[0].clone()) }),
        ],
        read: true,
        ..NewRoot::assumed("/sysroot")
    };
    let p = plan(&cfg("swap = 4G"), &Facts { newroot, ..facts(&[a, b]) });
    let text: Vec<String> = p.steps.iter().map(ToString::to_string).collect();
    let want = [
        "write ephemcrypt's header (4096 bytes, no key) at the start of each member, side by side:\n        \
         /dev/nvme1n1: volume new 'ephemcrypt', member 1 of 2, data from sector 2048; the rest of the reserved MiB \
         was read as zeros\n        \
         /dev/nvme2n1: volume new 'ephemcrypt', member 2 of 2, data from sector 2048; the rest of the reserved MiB \
         was read as zeros",
        "create mapping ephemcrypt-stripe (uuid EPHEMCRYPT-STRIPE-ephemcrypt-stripe) with table:\n        \
         0 419426304 striped 2 512 259:1 2048 259:2 2048",
        "create mapping ephemcrypt (uuid CRYPT-PLAIN-ephemcrypt) with table:\n        \
         0 419426304 crypt aes-xts-plain64 KEY 0 /dev/mapper/ephemcrypt-stripe 0 3 no_read_workqueue \
         no_write_workqueue sector_size:4096\n      the kernel must offer xts(aes) (checked first)\n      \
         KEY: 512 bits from getrandom(2), in a logon key of the process keyring that is invalidated right \
         after the load; never stored",
        "create mapping ephemcrypt-swap (uuid EPHEMCRYPT-SWAP-ephemcrypt-swap) with table:\n        \
         0 8388608 linear /dev/mapper/ephemcrypt 0",
        "create mapping ephemcrypt-data (uuid EPHEMCRYPT-DATA-ephemcrypt-data) with table:\n        \
         0 411037696 linear /dev/mapper/ephemcrypt 8388608",
        "write a swap signature for 4G on /dev/mapper/ephemcrypt-swap; swapon /dev/mapper/ephemcrypt-swap",
        "mkfs.ext4 -q -F -L ephemcrypt -O sparse_super2,^resize_inode -E nodiscard,lazy_itable_init=1,lazy_journal_init=1,num_backup_sb=0 -G 4096 /dev/mapper/ephemcrypt-data",
        "mount -o remount,rw,nosuid,relatime /sysroot",
        "mkdir -m 0755 /sysroot/mnt/ephemcrypt (labelled as its parent)",
        "mkdir -m 0755 /sysroot/var/tmp (labelled as its parent)",
        "mount -o remount,ro,nosuid,relatime /sysroot",
        "mount -t ext4 -o nosuid,nodev,noinit_itable /dev/mapper/ephemcrypt-data /sysroot/mnt/ephemcrypt (its root labelled as /sysroot/mnt/ephemcrypt was)",
        "copy the directories of /sysroot/var/log (owner, mode, ACLs, labels; no files) to \
         /sysroot/mnt/ephemcrypt/var/log; mount --bind /sysroot/mnt/ephemcrypt/var/log /sysroot/var/log",
        "copy the directories of /sysroot/tmp (owner, mode, ACLs, labels; no files) to \
         /sysroot/mnt/ephemcrypt/tmp; mount --bind /sysroot/mnt/ephemcrypt/tmp /sysroot/tmp",
        "copy the directories of /sysroot/var/tmp (owner, mode, ACLs, labels; no files) to \
         /sysroot/mnt/ephemcrypt/var/tmp; mount --bind /sysroot/mnt/ephemcrypt/var/tmp /sysroot/var/tmp",
        "write /run/ephemcrypt/status.json",
    ];
    assert_eq!(text, want);
    // The metric's stable kind of each step, from the step itself (never from its title).
    let kinds: Vec<&str> = p.steps.iter().map(Step::kind).collect();
    assert_eq!(
        kinds,
        [
            "header", "stripe", "crypt", "linear", "linear", "swap", "mkfs", "remount", "mkdir", "mkdir", "remount",
            "mount", "bind", "bind", "bind", "status"
        ]
    );
    for s in p.steps.iter().chain(&p.fallback) {
        assert!(crate::step::STEP_KINDS.contains(&s.kind()), "{} not in STEP_KINDS", s.kind());
    }
    assert_eq!(p.fallback.iter().map(Step::kind).collect::<Vec<_>>(), ["tmpfs", "tmpfs", "status"]);
    // The failure policy covers the bind targets the root has; /var/tmp is missing.
    let fallback: Vec<String> = p.fallback.iter().map(ToString::to_string).collect();
    assert_eq!(
        fallback,
        [
            "mount -t tmpfs -o nosuid,nodev,mode=M,uid=U,gid=G tmpfs /sysroot/var/log (M, U, G: the directory's own)",
            "mount -t tmpfs -o nosuid,nodev,mode=M,uid=U,gid=G tmpfs /sysroot/tmp (M, U, G: the directory's own)",
            "write /run/ephemcrypt/status.json",
        ]
    );
}

#[test]
fn no_remount_when_the_directories_exist_or_the_root_is_writable() {
    let newroot = NewRoot {
        path: "/new_root".into(),
        dirs: vec![
            ("/data/ephemeral".into(), DirState::Missing { depth: 2, read_only: None }),
            ("/data/log".into(), DirState::Missing { depth: 2, read_only: None }),
        ],
        read: true,
        ..NewRoot::assumed("/new_root")
    };
    let config = cfg("mount = /data/ephemeral\nbind = /data/log");
    let p = plan(&config, &Facts { newroot, ..facts(&[disk("nvme1n1", "A")]) });
    assert!(!p.steps.iter().any(|s| matches!(s, Step::Remount { .. })));
    // One step per directory, parents first, each once: an undo removes exactly these.
    let mkdirs: Vec<&Step> = p.steps.iter().filter(|s| matches!(s, Step::Mkdir { .. })).collect();
    assert_eq!(
        mkdirs,
        [
            &Step::Mkdir { path: "/new_root/data".into() },
            &Step::Mkdir { path: "/new_root/data/ephemeral".into() },
            &Step::Mkdir { path: "/new_root/data/log".into() }
        ]
    );
    let p = plan_of(&Config::default(), &[disk("nvme1n1", "A")]);
    assert!(!p.steps.iter().any(|s| matches!(s, Step::Remount { .. } | Step::Mkdir { .. })));
}

#[test]
fn crypt_flags_follow_config_and_kernel() {
    let d = [disk("nvme1n1", "A")];
    let v = plan_of(&cfg("discard = yes"), &d);
    assert_eq!(
        ready(&v).crypt.flags,
        ["allow_discards", "no_read_workqueue", "no_write_workqueue", "sector_size:4096"]
    );
    let v = plan_of(&cfg("workqueues = kernel\nsector-size = 512"), &d);
    assert!(ready(&v).crypt.flags.is_empty());
    let v = plan_of(&cfg("workqueues = bypass-read"), &d);
    assert_eq!(ready(&v).crypt.flags, ["no_read_workqueue", "sector_size:4096"]);
    let v = plan_of(&cfg("workqueues = bypass-write"), &d);
    assert_eq!(ready(&v).crypt.flags, ["no_write_workqueue", "sector_size:4096"]);
    let v = plan_of(&cfg("workqueues = bypass"), &d);
    assert_eq!(ready(&v).crypt.flags, ["no_read_workqueue", "no_write_workqueue", "sector_size:4096"]);
    // A 5.4 kernel (crypt 1.19): no workqueue bypass, keyring and 4K sectors fine.
    let v = with_caps(&Config::default(), &d, [1, 19, 0]);
    assert_eq!(ready(&v).crypt.flags, ["sector_size:4096"]);
    assert_eq!(ready(&v).crypt.key_path, KeyPath::Keyring);
    // A 4.9 kernel (crypt 1.14): 512-byte sectors, hex key.
    let v = with_caps(&Config::default(), &d, [1, 14, 1]);
    assert_eq!(ready(&v).crypt.sector_size, 512);
    assert_eq!(ready(&v).crypt.key_path, KeyPath::HexTable);
    let crypt = v.steps.iter().find(|s| matches!(s, Step::Mapping(m) if m.key.is_some())).unwrap();
    assert!(crypt.to_string().contains("in hex in the table"), "{crypt}");
    let v = with_caps(&cfg("sector-size = 4096"), &d, [1, 14, 1]);
    assert_eq!(v.state, State::Invalid(PlanError::SectorSizeUnsupported { sector_size: 4096 }));
    assert!(state_reason(&v.state).contains("needs dm-crypt 1.17"));
}

#[test]
fn sector_size_respects_logical_blocks() {
    let mut d = disk("nvme1n1", "A");
    d.logical_block_size = 4096;
    let v = plan_of(&cfg("sector-size = 512"), &[d.clone()]);
    assert!(state_reason(&v.state).contains("/dev/nvme1n1 has 4096-byte logical blocks"), "{:?}", v.state);
    assert_eq!(ready(&plan_of(&Config::default(), &[d])).crypt.sector_size, 4096);
}

#[test]
fn swap_slices() {
    let d = [disk("nvme1n1", "A")]; // 100G
    let v = plan_of(&cfg("swap = 4G"), &d);
    let v = ready(&v);
    let (sw, data) = (v.swap.as_ref().unwrap(), v.data.as_ref().unwrap());
    assert_eq!((sw.start, sw.len.bytes()), (Sectors(0), Bytes(4 << 30)));
    // 100 GiB less the reserved MiB.
    assert_eq!((data.start, data.len.bytes()), (sw.len, Bytes((96 << 30) - (1 << 20))));
    assert_eq!(v.data_name(), "ephemcrypt-data");
    let v = plan_of(&cfg("swap = 10%"), &d);
    let sw = ready(&v).swap.clone().unwrap();
    assert_eq!(sw.len.0 % 8, 0);
    assert!(sw.len.bytes().0 <= 10 << 30 && sw.len.bytes().0 > (10 << 30) - (1 << 20));
    let v = plan_of(&cfg("swap = 100G"), &d);
    assert!(state_reason(&v.state).contains("swap (100G) leaves 0B"), "{:?}", v.state);
}

#[test]
fn xfs_and_no_file_system() {
    let d = [disk("nvme1n1", "A")];
    let p = plan_of(&cfg("fs = xfs"), &d);
    let mkfs = p.steps.iter().find(|s| matches!(s, Step::Mkfs { .. })).unwrap();
    assert_eq!(mkfs.to_string(), "mkfs.xfs -q -f -K -L ephemcrypt /dev/mapper/ephemcrypt");
    let p = plan_of(&cfg("fs = none\nbind ="), &d);
    let kinds: Vec<String> = p.steps.iter().map(|s| s.title()).collect();
    assert_eq!(
        kinds,
        ["headers on 1 disk(s): /dev/nvme1n1", "crypt mapping ephemcrypt", "write /run/ephemcrypt/status.json"]
    );
}

/// More disks than a header lists: the first 64 by serial are taken; no size overflows.
#[test]
fn at_most_64_members_and_no_overflow() {
    let disks: Vec<Disk> = (0..70)
        .map(|i| {
            let mut d = disk(&format!("nvme{i}n1"), &format!("S{i:03}"));
            d.size = Sectors(1 << 47).bytes(); // the largest the host reader takes
            d
        })
        .collect();
    let p = plan_of(&cfg("swap = 50%"), &disks);
    let v = ready(&p);
    assert_eq!(v.members.len(), 64);
    assert!(p.disks.iter().filter(|a| !a.verdict.is_use()).all(|a| a.verdict.reason().contains("at most 64 disks")));
    assert!(v.crypt.len.bytes().0 > 1 << 61);
    let _ = p.to_json().pretty();
}

#[test]
fn absent_too_few_and_disabled() {
    let p = plan_of(&Config::default(), &[]);
    assert_eq!(p.state, State::Absent);
    assert_eq!(p.steps, [status_step()]);
    let p = plan_of(&cfg("expect = 2"), &[disk("nvme1n1", "A")]);
    assert_eq!(p.state, State::TooFew { found: 1, expected: 2 });
    assert!(p.steps.is_empty());
    assert_eq!(p.failure().as_deref(), Some("1 eligible disk(s), 2 expected"));
    // An eligible disk that is not taken says why.
    assert_eq!(p.disks[0].verdict.reason(), "eligible, but no volume is made: 1 eligible disk(s), 2 expected");
    let c = Config::load(None, "rd.ephemcrypt=0").unwrap();
    let p = plan_of(&c, &[disk("nvme1n1", "A")]);
    assert_eq!(p.state, State::Disabled);
    assert!(!p.disks[0].verdict.is_use());
    assert_eq!(p.disks[0].verdict.reason(), "eligible, but ephemcrypt is disabled (rd.ephemcrypt=0)");
    assert_eq!(p.steps, [status_step()]);
}

#[test]
fn a_live_volume_is_mounted_where_it_is_not_and_a_foreign_one_is_refused() {
    let live = Live {
        dev: DevNo { major: 253, minor: 1 },
        targets: vec!["crypt".into()],
        data: "ephemcrypt-data".into(),
        mounted: false,
    };
    let p = plan(&Config::default(), &Facts { live: Some(live.clone()), ..facts(&[disk("nvme1n1", "A")]) });
    assert!(matches!(p.state, State::Live(_)));
    let titles: Vec<String> = p.steps.iter().map(|s| s.title()).collect();
    assert_eq!(
        titles,
        ["mount /sysroot/mnt/ephemcrypt", "bind /sysroot/var/log", "bind /sysroot/tmp", "bind /sysroot/var/tmp"]
    );
    let p = plan(&Config::default(), &Facts { live: Some(Live { mounted: true, ..live.clone() }), ..facts(&[]) });
    assert!(p.steps.is_empty());
    let foreign = Live { targets: vec!["linear".into()], ..live };
    let p = plan(&Config::default(), &Facts { live: Some(foreign), ..facts(&[]) });
    assert_eq!(
        p.failure().unwrap(),
        "/dev/mapper/ephemcrypt exists but is not a dm-crypt volume (linear); set 'name' to another prefix"
    );
}

#[test]
fn a_mapping_name_taken_stops_the_plan_before_any_header() {
    let taken = vec![("ephemcrypt-stripe".to_string(), DevNo { major: 253, minor: 0 })];
    let p = plan(&Config::default(), &Facts { taken, ..facts(&[disk("nvme1n1", "A"), disk("nvme2n1", "B")]) });
    assert_eq!(
        p.failure().unwrap(),
        "a mapping named ephemcrypt-stripe (253:0) exists already, without the volume (left by an interrupted \
         setup, or another program's): remove it (dmsetup remove ephemcrypt-stripe) or set 'name' to another prefix"
    );
    assert!(p.steps.iter().all(|s| !matches!(s, Step::Headers(_) | Step::Mapping(_))));
    assert!(p.disks.iter().all(|a| !a.verdict.is_use()));
}

#[test]
fn fallback_follows_the_policy() {
    let d = [disk("nvme1n1", "A")];
    let titles = |p: &Plan| p.fallback.iter().map(|s| s.title()).collect::<Vec<_>>();
    assert_eq!(
        titles(&plan_of(&Config::default(), &d)),
        [
            "tmpfs on /sysroot/var/log",
            "tmpfs on /sysroot/tmp",
            "tmpfs on /sysroot/var/tmp",
            "write /run/ephemcrypt/status.json"
        ]
    );
    for policy in ["continue", "halt"] {
        assert_eq!(
            titles(&plan_of(&cfg(&format!("on-failure = {policy}")), &d)),
            ["write /run/ephemcrypt/status.json"]
        );
    }
}

/// With escrow the key is stored, encrypted, on every member: plan says so, in text and
/// JSON, where it says "never stored" without.
#[test]
fn escrow_says_where_the_key_is_stored() {
    use crate::age::tests::{AGE_RECIPIENT, SSH_PUBLIC};
    let want = "escrowed to 2 recipients: stored, encrypted to them, after every member's header and in \
                /run/ephemcrypt/escrow.age";
    for (config, stored) in [
        (format!("escrow = {AGE_RECIPIENT}, {SSH_PUBLIC}"), want),
        (format!("escrow = {AGE_RECIPIENT}"), &want.replace("2 recipients", "1 recipient").replace("them", "it")),
        (String::new(), "never stored"),
    ] {
        let p = plan_of(&cfg(&config), &[disk("nvme1n1", "A"), disk("nvme2n1", "B")]);
        let text: String = p.steps.iter().map(|s| format!("{s}\n")).collect();
        assert!(text.contains(&format!("invalidated right after the load; {stored}\n")), "{config}: {text}");
        assert_eq!(text.contains("never stored"), config.is_empty(), "{config}: {text}");
        let j = crate::json::parse(&p.to_json().pretty()).unwrap();
        let key = j.get("volume").unwrap().get("crypt").unwrap().get("key").unwrap().as_str().unwrap().to_string();
        let sep = if config.is_empty() { ", " } else { "; " };
        assert_eq!(key, format!("kernel keyring (logon){sep}{stored}"), "{config}");
    }
    assert_eq!(
        KeyPath::HexTable.describe(3),
        "hex key in the dm table (kernel lacks keyring keys); escrowed to 3 recipients: stored, encrypted to \
         them, after every member's header and in /run/ephemcrypt/escrow.age"
    );
}

/// A systemd root with this /etc/fstab, its directories present.
fn root_with(fstab: &str) -> NewRoot {
    NewRoot { fstab: crate::disk::parse_fstab(fstab), systemd: true, read: true, ..NewRoot::assumed("/sysroot") }
}

fn unit<'a>(p: &'a Plan, name: &str) -> &'a str {
    p.steps
        .iter()
        .find_map(|s| match s {
            Step::Unit { name: n, text, .. } if n == name => Some(text.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no unit {name} in {:#?}", p.steps))
}

fn bound_now(p: &Plan) -> Vec<PathBuf> {
    p.steps
        .iter()
        .filter_map(|s| match s {
            Step::Bind { target, .. } => Some(target.clone()),
            _ => None,
        })
        .collect()
}

const CIS: &str = "/dev/vda / ext4 errors=remount-ro 0 1\n/dev/vdb /var ext4 nodev,nosuid 0 2\n\
                   /dev/vdc /var/log ext4 nodev,nosuid,noexec 0 2\n/dev/vdd /var/log/audit ext4 nodev,nosuid,noexec 0 2\n\
                   tmpfs /tmp tmpfs nodev,nosuid,noexec,mode=1777 0 0\n";

/// Issue 20's layout: nothing is bound in the initramfs (a later mount of the fstab would hide
/// it, and systemd would take the target's unit for active); each target gets a unit of its own
/// name, with the options of the mount it replaces or lies on.
#[test]
fn a_cis_layout_binds_every_target_by_a_unit_with_the_fstab_options() {
    let p = plan(&Config::default(), &Facts { newroot: root_with(CIS), ..facts(&[disk("nvme1n1", "A")]) });
    assert!(bound_now(&p).is_empty(), "{:?}", bound_now(&p));
    let var_log = unit(&p, "var-log.mount");
    for line in [
        "What=/mnt/ephemcrypt/var/log",
        "Where=/var/log",
        "Options=bind,nosuid,nodev,noexec",
        "RequiresMountsFor=/mnt/ephemcrypt /var",
    ] {
        assert!(var_log.lines().any(|l| l == line), "{line} in\n{var_log}");
    }
    let tmp = unit(&p, "tmp.mount");
    assert!(
        tmp.contains("Options=bind,nosuid,nodev,noexec\n") && tmp.contains("RequiresMountsFor=/mnt/ephemcrypt /\n"),
        "{tmp}"
    );
    // /var/tmp lies on /var: /var's restrictions.
    assert!(unit(&p, "var-tmp.mount").contains("Options=bind,nosuid,nodev\n"));
    // Each target's skeleton is copied once its parents are mounted, before the bind.
    let skel = unit(&p, "ephemcrypt-skeleton-tmp.service");
    assert!(skel.contains("RequiresMountsFor=/mnt/ephemcrypt /\nBefore=tmp.mount\n"), "{skel}");
    assert!(p.steps.contains(&Step::Mkdir { path: "/sysroot/mnt/ephemcrypt/tmp".into() }));
    // No unit for /var or /var/log/audit: the fstab's own.
    assert!(!p
        .steps
        .iter()
        .any(|s| matches!(s, Step::Unit { name, .. } if name == "var.mount" || name == "var-log-audit.mount")));
    // What becomes of each fstab mount, in `plan`.
    assert_eq!(p.fstab.len(), 4, "{:#?}", p.fstab);
    assert!(
        p.fstab[0].starts_with("/var: mounted as /etc/fstab says; /var/log, /var/tmp bound onto the volume after it")
    );
    assert!(p.fstab[1]
        .starts_with("/var/log: its own file system in /etc/fstab is NOT mounted in this boot: var-log.mount"));
    assert!(p.fstab[2].starts_with("/var/log/audit: mounted as /etc/fstab says, over the volume's /var/log/audit"));
    assert!(p.fstab[2].contains("kept across reboots"));
    assert!(p.fstab[3].starts_with("/tmp: its own file system in /etc/fstab is NOT mounted"));
    let text = p.to_string();
    assert!(text.contains("\nfstab of the real root:\n  /var: mounted"), "{text}");
    // The failure policy's tmpfs: units too, with the same restrictions.
    let fallback: Vec<&Step> = p.fallback.iter().filter(|s| matches!(s, Step::Unit { .. })).collect();
    assert_eq!(fallback.len(), 3);
    assert!(fallback[1].to_string().contains("Options=nosuid,nodev,noexec,mode=1777"), "{}", fallback[1]);
    assert!(fallback[0].to_string().contains("RequiresMountsFor=/var\n"), "{}", fallback[0]);
}

/// Every combination of separate /var, /var/log, /var/log/audit, /var/tmp, /home and /tmp: a
/// target is bound in the initramfs exactly when no fstab mount is at or above it, else by a
/// unit named after it (which then takes the place of the fstab's unit for that path); a unit
/// binds only after the mounts of its parent directory.
#[test]
fn every_fstab_combination_leaves_no_target_to_a_bind_made_too_early() {
    let mounts = ["/var", "/var/log", "/var/log/audit", "/var/tmp", "/home", "/tmp"];
    let config = cfg("bind = /var/log,/tmp,/var/tmp,/home");
    for set in 0u32..(1 << mounts.len()) {
        let fstab: String = mounts
            .iter()
            .enumerate()
            .filter(|(i, _)| set & (1 << i) != 0)
            .map(|(i, m)| {
                format!(
                    "/dev/vd{} {m} ext4 nodev,nosuid{} 0 2\n",
                    char::from(b'b' + u8::try_from(i).unwrap()),
                    if i % 2 == 0 { ",noexec" } else { "" }
                )
            })
            .collect();
        let root = root_with(&fstab);
        let p = plan(&config, &Facts { newroot: root.clone(), ..facts(&[disk("nvme1n1", "A")]) });
        let now = bound_now(&p);
        for t in &config.bind {
            let name = format!("{}.mount", crate::paths::systemd_escape_path(t));
            let has_unit = p.steps.iter().any(|s| matches!(s, Step::Unit { name: n, .. } if *n == name));
            match root.shadowed_by(t) {
                None => assert!(now.contains(&under(Path::new("/sysroot"), t)) && !has_unit, "{t:?} with\n{fstab}"),
                Some(by) => {
                    assert!(!now.contains(&under(Path::new("/sysroot"), t)) && has_unit, "{t:?} with\n{fstab}");
                    let text = unit(&p, &name);
                    let parent = t.parent().unwrap().display().to_string();
                    assert!(text.contains(&format!("RequiresMountsFor=/mnt/ephemcrypt {parent}\n")), "{text}");
                    let noexec = root.fstab_options(by).iter().any(|o| o == "noexec");
                    assert_eq!(text.contains("noexec"), noexec, "{text}");
                }
            }
        }
    }
}

#[test]
fn x_systemd_options_keep_their_ordering_and_leave_the_file_system_s_own() {
    let fstab = "LABEL=logs /var/log ext4 nodev,nosuid,noexec,x-systemd.after=network-online.target,\
                 x-systemd.before=rsyslog.service,x-systemd.requires=unlock-logs.service,\
                 x-systemd.requires-mounts-for=/srv/keys,x-systemd.device-timeout=5s,x-systemd.makefs 0 2\n";
    let p = plan(&Config::default(), &Facts { newroot: root_with(fstab), ..facts(&[disk("nvme1n1", "A")]) });
    let u = unit(&p, "var-log.mount");
    for line in [
        "After=network-online.target",
        "Before=rsyslog.service",
        "RequiresMountsFor=/srv/keys",
        "Options=bind,nosuid,nodev,noexec",
    ] {
        assert!(u.lines().any(|l| l == line), "{line} in\n{u}");
    }
    assert!(!u.contains("unlock-logs") && !u.contains("timeout") && !u.contains("makefs"), "{u}");
    // Without x-systemd options: none of those lines.
    let p = plan(
        &Config::default(),
        &Facts { newroot: root_with("LABEL=logs /var/log ext4 noexec 0 2\n"), ..facts(&[disk("nvme1n1", "A")]) },
    );
    let u = unit(&p, "var-log.mount");
    assert!(!u.contains("\nBefore=") && u.contains("\nAfter=ephemcrypt-skeleton-var-log.service\n\n"), "{u}");
    // A root that does not run systemd: the fstab's mounts are said to leave the targets bare.
    let root = NewRoot { systemd: false, ..root_with(CIS) };
    let p = plan(&Config::default(), &Facts { newroot: root, ..facts(&[disk("nvme1n1", "A")]) });
    assert!(p.fstab[1].contains("/var/log is NOT on the volume"), "{:?}", p.fstab);
    assert_eq!(p.exposed.len(), 3);
}

/// A mount unit of the root's own for a bind target (a unit file, an alias or a mask in
/// /etc/systemd/system) outranks the one setup writes to /run: the target is not covered, and
/// plan and the result say so.
#[test]
fn a_unit_of_the_roots_own_for_a_target_is_not_covered() {
    let root = NewRoot { units: vec!["var-log.mount".into()], ..root_with(CIS) };
    let p = plan(&Config::default(), &Facts { newroot: root, ..facts(&[disk("nvme1n1", "A")]) });
    assert_eq!(p.exposed.len(), 1, "{:?}", p.exposed);
    assert_eq!(p.exposed[0].0, Path::new("/var/log"));
    assert!(p.exposed[0].1.starts_with("/etc/systemd/system/var-log.mount in the real root outranks"));
    assert!(p.to_string().contains("not covered: /etc/systemd/system/var-log.mount"), "{p}");
    // Without it, every target is covered by the units.
    let p = plan(&Config::default(), &Facts { newroot: root_with(CIS), ..facts(&[disk("nvme1n1", "A")]) });
    assert!(p.exposed.is_empty(), "{:?}", p.exposed);
}

#[test]
fn json_has_the_documented_fields() {
    let mut refused = disk("nvme0n1", "vol");
    refused.model = "Amazon Elastic Block Store".into();
    let p = plan_of(&Config::default(), &[refused, disk("nvme1n1", "A")]);
    let j = crate::json::parse(&p.to_json().pretty()).unwrap();
    let disks = j.get("disks").unwrap().as_array();
    assert_eq!(disks.len(), 2);
    assert_eq!(disks[0].get("name").unwrap().as_str(), Some("nvme1n1"));
    assert_eq!(disks[0].get("use"), Some(&Value::Bool(true)));
    assert_eq!(disks[0].get("reason").unwrap().as_str(), Some("blank (every probed region reads as zeros)"));
    assert_eq!(disks[0].get("size_bytes"), Some(&Value::Num(100u64 << 30)));
    assert_eq!(disks[1].get("use"), Some(&Value::Bool(false)));
    assert!(disks[1].get("reason").unwrap().as_str().unwrap().contains("EBS"));
    for k in ["path", "model", "serial"] {
        assert!(disks[0].get(k).is_some(), "{k}");
    }
    assert_eq!(j.get("state").unwrap().as_str(), Some("ready"));
    assert!(j.get("volume").unwrap().get("crypt").is_some());
    let steps = j.get("steps").unwrap().as_array();
    assert_eq!(steps[0].get("kind").unwrap().as_str(), Some("headers"));
    let members = steps[0].get("members").unwrap().as_array();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].get("volume_id").unwrap().as_str(), Some("new"));
    assert_eq!(members[0].get("write_bytes"), Some(&Value::from(4096u64)));
    assert_eq!(steps[1].get("kind").unwrap().as_str(), Some("mapping"));
    assert_eq!(steps[1].get("uuid").unwrap().as_str(), Some("CRYPT-PLAIN-ephemcrypt"));
    assert_eq!(steps[1].get("kernel").unwrap().as_array(), [Value::from("xts(aes)")]);
    let table = steps[1].get("table").unwrap().as_array();
    assert!(table[0].as_str().unwrap().contains(" crypt aes-xts-plain64 KEY 0 259:"), "{table:?}");
    let mkfs = steps.iter().find(|s| s.get("kind").unwrap().as_str() == Some("mkfs")).unwrap();
    assert_eq!(mkfs.get("argv").unwrap().as_array()[0].as_str(), Some("mkfs.ext4"));
}

/// The header step writes the header block where the probe vouched for the rest of the reserved
/// MiB (blank; ours as left), up to the end of an earlier escrow, and the whole MiB over what a
/// forced disk held there.
#[test]
fn a_header_write_covers_what_the_probe_could_not_vouch_for() {
    use crate::disk::Probe;
    let ours =
        |escrow: (u32, u32)| Probe::Ours(Box::new(crate::header::Header { escrow, ..crate::header::tests::sample() }));
    let mib = crate::header::RESERVED_LEN;
    for (probe, want) in [
        (Probe::Blank, 4096),
        (ours((0, 0)), 4096),
        (ours((4096, 1)), 8192),
        (ours((4096, 4096)), 8192),
        (ours((4096, 4097)), 12288),
        (ours((4096, 1_044_480)), mib),
        (Probe::Data, mib),
        (Probe::Found(crate::signature::Signature::Ext), mib),
        (Probe::NotProbed, mib),
        (Probe::Failed("read".into()), mib),
    ] {
        assert_eq!(reserved_to_clear(&probe), want, "{probe:?}");
    }
    // A forced disk's step says so.
    let mut d = disk("nvme1n1", "A");
    d.probe = Probe::Data;
    let p = plan(&cfg("force = yes"), &facts(&[d]));
    let header = p.steps.iter().find(|s| matches!(s, Step::Headers(_))).map(ToString::to_string);
    assert!(header.is_some_and(|h| h.ends_with("; zeros to the end of the reserved MiB")), "{:?}", p.steps);
}
