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
        let blob = escrow(&tree.host(), &found).unwrap();
        let key = key(&blob, &identity(&tree, id), &found).unwrap();
        assert_eq!(key.expose(), [PLANTED; 64]);
        let mut fake = Fake::new();
        fake.dirs.insert(PathBuf::from("/mnt/recovery"));
        let out = open(&found, key, &mut fake, Some(Path::new("/mnt/recovery"))).unwrap();
        let loads: Vec<&String> = fake.calls.iter().filter(|c| c.starts_with("dm_load")).collect();
        assert_eq!(loads.len(), 3, "{:?}", fake.calls);
        assert!(loads.iter().all(|c| c.contains(" read-only ")), "{loads:?}");
        assert!(loads[0].starts_with("dm_load ephemcrypt-recovered-stripe secure=false read-only 0 "));
        assert!(loads[1].contains(" crypt aes-xts-plain64 :64:logon:ephemcrypt:ephemcrypt-recovered:"));
        assert!(loads[1].contains(" sector_size:4096"));
        assert!(loads[2].starts_with("dm_load ephemcrypt-recovered-data secure=false read-only 0 "));
        assert!(fake.keys.is_empty(), "the logon key is invalidated");
        assert!(
            fake.calls.iter().any(|c| c == "mount /dev/mapper/ephemcrypt-recovered-data /mnt/recovery ext4 ro,noload"),
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
    let blob = escrow(&tree.host(), &found).unwrap();
    let mut reference = Fake::new();
    open(&found, key(&blob, &identity(&tree, AGE_IDENTITY), &found).unwrap(), &mut reference, None).unwrap();
    for at in 0..reference.calls.len() {
        let mut fake = Fake { fail_at: Some(at), ..Fake::new() };
        let k = key(&blob, &identity(&tree, AGE_IDENTITY), &found).unwrap();
        assert!(open(&found, k, &mut fake, None).is_err(), "call {at}");
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
    let blob = escrow(&tree.host(), &found).unwrap();
    let e = key(&blob, &identity(&tree, AGE_IDENTITY), &found).unwrap_err().to_string();
    assert!(e.contains("the identity matches none of its recipients (an ssh-ed25519 key tagged "), "{e}");
    assert!(e.contains(&format!("(the identity file is for {AGE_RECIPIENT})")), "{e}");
    let e = key(&blob, &identity(&tree, "not a key"), &found).unwrap_err().to_string();
    assert!(e.starts_with("identity file "), "{e}");
    // No escrow when it was made.
    let (tree, _) = volume("");
    let found = find(&tree.host(), &[]).unwrap();
    let e = escrow(&tree.host(), &found).unwrap_err().to_string();
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
fn the_script_uses_stock_tools_with_the_volume_s_layout() {
    let (tree, fake) = escrowed();
    let found = find(&tree.host(), &[]).unwrap();
    let s = commands(&found);
    let h = found.header();
    for want in [
        "#!/bin/sh\n".to_string(),
        "m0=$(dev_of 'A')\nm1=$(dev_of 'B')\n".into(),
        format!("dd if=\"$m0\" of=\"$work/escrow.age\" bs=1 skip=4096 count={} 2>/dev/null\n", h.escrow.1),
        "age -d -i \"$identity\" -o \"$work/key\" \"$work/escrow.age\"\n".into(),
        format!("dmsetup create --readonly ephemcrypt-recovered-stripe --table \"0 {} striped 2 512 $m0 2048 $m1 2048\"\n", h.volume_len.0),
        format!(
            "cryptsetup open --readonly --type plain --cipher 'aes-xts-plain64' --key-size 512 --sector-size 4096 \
             --offset 0 --skip 0 --size {} --key-file \"$work/key\" \"/dev/mapper/ephemcrypt-recovered-stripe\" ephemcrypt-recovered\n",
            h.volume_len.0
        ),
        format!("dmsetup create --readonly ephemcrypt-recovered-data --table \"0 {} linear /dev/mapper/ephemcrypt-recovered {}\"\n", h.data.1 .0, h.data.0 .0),
        "\tmount -t ext4 -o ro,noload /dev/mapper/ephemcrypt-recovered-data \"$mnt\"\n".into(),
    ] {
        assert!(s.contains(&want), "{want}\nin\n{s}");
    }
    // The tables the script makes are setup's own, with other names.
    let setup_stripe = fake.tables.iter().find(|t| t.contains(" striped ")).unwrap();
    assert!(setup_stripe.starts_with(&format!("0 {} striped 2 512 ", h.volume_len.0)), "{setup_stripe}");
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
