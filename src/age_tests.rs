//! Tests of the age reader and writer: vectors made once by age 1.1.1 (Debian's `age`,
//! `age-keygen` and `ssh-keygen -t ed25519`), round trips, damage, and, where the tools are
//! installed (`make unit` runs the `#[ignore]`d tests then), the stock `age` decrypting what we
//! write and writing what we read.
use super::*;

/// `age-keygen` output and the recipient it printed.
pub(crate) const AGE_IDENTITY: &str = "# created: 2026-11-29T21:27:58Z\n# public key: age1q7arm3ec8pulumstfqfq7k3canfn4gc3ycau906rhz9tff2xw4tqeymzxx\nAGE-SECRET-KEY-19KUCRSH5VRMVLY00N85HHPGWK3WCF4WR52ZQGGGZ5Y5F62S7G34S6UHSXV\n";
pub(crate) const AGE_RECIPIENT: &str = "age1q7arm3ec8pulumstfqfq7k3canfn4gc3ycau906rhz9tff2xw4tqeymzxx";
/// `ssh-keygen -t ed25519 -N '' -C test`.
pub(crate) const SSH_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBA7WWAdUqzXJSKNgSowo8h4etYM6GIuPJJkLkyUsGq1wAAAIgL5BGCC+QR\nggAAAAtzc2gtZWQyNTUxOQAAACBA7WWAdUqzXJSKNgSowo8h4etYM6GIuPJJkLkyUsGq1w\nAAAEB/o717IU3vIO7QISNx9HL7jvMwKXQQpbYgyR9iu9a0YEDtZYB1SrNclIo2BKjCjyHh\n61gzoYi48kmQuTJSwarXAAAABHRlc3QB\n-----END OPENSSH PRIVATE KEY-----\n";
pub(crate) const SSH_PUBLIC: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEDtZYB1SrNclIo2BKjCjyHh61gzoYi48kmQuTJSwarX test";
/// `age -a -r AGE_RECIPIENT -R ssh.pub` of the bytes 0..64.
const BOTH: &str = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBLSENqNytGcFhnUkFSYURo\nSDYwbnh4ckZzVFZ3anRZOUhrcDczUjRVSW1jCjVNTkdHZC9oeFVvWlhnOGlsbEV5\nYnY1OGtXcUVwNVZpWFZCYzc4VkJHbkEKLT4gc3NoLWVkMjU1MTkgYlNmOUZBIFVw\nN0J5R1FRa08zQ3VmUzdRakx4NDFoaytLcnVqWlkreHhFRnZpelFzVWsKb2cveFV5\ncW8wV01RbFBrTCtjeGxUWVkveGlLOUZuL1pHNjVKVWNaLzdRZwotLS0gcFVCenN2\nMDEvbk1xQTk4b1Rsd2lqLzFhK2VRRmovM1dlcTB0UjZCS1k5OAohYJMFO0UGmuYE\n+GdcccbEeUaEyyv2HV8rKH64k+DzY4iSqmfK8npX47mrNM4RyMmeubg9fby4+YY3\nK4jsoJjrU1Qs83vFFwcPPFYSsE27m8/5i2m58LTls9HgucATCrU=\n-----END AGE ENCRYPTED FILE-----\n";

fn plaintext() -> Key {
    Key::from_bytes_for_test(&(0..64).collect::<Vec<u8>>())
}

#[test]
fn what_age_wrote_is_read_with_either_identity() {
    for ids in [AGE_IDENTITY, SSH_PRIVATE] {
        let ids = parse_identities(ids).unwrap();
        let key = decrypt(BOTH.as_bytes(), &ids).unwrap();
        assert_eq!(key.expose(), plaintext().expose());
    }
}

#[test]
fn identities_answer_to_their_recipients() {
    let ids = parse_identities(&format!("# a comment\n\n{AGE_IDENTITY}\n")).unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].recipient(), Recipient::parse(AGE_RECIPIENT).unwrap());
    assert_eq!(ids[0].recipient().describe(), AGE_RECIPIENT);
    let ssh = &parse_identities(SSH_PRIVATE).unwrap()[0];
    let r = Recipient::parse(SSH_PUBLIC).unwrap();
    assert_eq!(ssh.recipient(), r);
    assert_eq!(r.describe(), "ssh-ed25519 SHA256:bSf9FBzdZ+6laBqNsq9EmeCEmyfzEVqa/Eczz/8yJb0");
    assert!(!format!("{ssh:?}").contains("AAAA"), "{ssh:?}");
}

#[test]
fn round_trip_to_several_recipients() {
    let recipients = [Recipient::parse(AGE_RECIPIENT).unwrap(), Recipient::parse(SSH_PUBLIC).unwrap()];
    let file = encrypt(&recipients, &plaintext(), &mut Key::generate).unwrap();
    assert!(file.starts_with(b"age-encryption.org/v1\n-> X25519 "));
    for ids in [AGE_IDENTITY, SSH_PRIVATE] {
        let ids = parse_identities(ids).unwrap();
        assert_eq!(decrypt(&file, &ids).unwrap().expose(), plaintext().expose());
        assert_eq!(decrypt(armor(&file).as_bytes(), &ids).unwrap().expose(), plaintext().expose());
    }
    // Every encryption is new: another file key, shares and nonce.
    assert_ne!(encrypt(&recipients, &plaintext(), &mut Key::generate).unwrap(), file);
}

#[test]
fn a_wrong_identity_or_a_damaged_file_is_refused_by_name() {
    let recipients = [Recipient::parse(SSH_PUBLIC).unwrap()];
    let file = encrypt(&recipients, &plaintext(), &mut Key::generate).unwrap();
    let other = parse_identities(AGE_IDENTITY).unwrap();
    let e = decrypt(&file, &other).unwrap_err();
    assert!(
        matches!(&e, AgeError::NoMatch { recipients } if recipients[0].starts_with("an ssh-ed25519 key tagged ")),
        "{e}"
    );
    let ids = parse_identities(SSH_PRIVATE).unwrap();
    // Any flipped byte: in a stanza (no match or a bad MAC), the MAC, the nonce, the payload.
    for i in 0..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x01;
        assert!(decrypt(&bad, &ids).is_err(), "byte {i} flipped went unnoticed");
    }
    for cut in [0, 10, file.len() - 17, file.len() - 1] {
        assert!(decrypt(&file[..cut], &ids).is_err(), "cut at {cut}");
    }
    assert_eq!(decrypt(b"not age", &ids).unwrap_err(), AgeError::Malformed("no age-encryption.org/v1 line"));
}

#[test]
fn bad_recipients_and_identities_say_what_is_wrong() {
    for (text, why) in [
        ("age1qqqq", "neither an age1… recipient nor an ssh-ed25519 key"),
        (&AGE_RECIPIENT.replace('q', "p"), "neither an age1… recipient nor an ssh-ed25519 key"),
        ("ssh-rsa AAAAB3NzaC1yc2E", "only ssh-ed25519 keys can be recipients (age's ssh-rsa is not supported)"),
        ("ssh-ed25519 !!!", "its key is not base64"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "not an ssh-ed25519 public key"),
        (AGE_IDENTITY.lines().last().unwrap(), "a Bech32 string of kind 'age-secret-key-', not an age1… recipient"),
    ] {
        assert_eq!(Recipient::parse(text).unwrap_err(), why, "{text}");
    }
    assert!(parse_identities("# nothing\n").unwrap_err().starts_with("no identity in it"));
    assert!(parse_identities(AGE_RECIPIENT).unwrap_err().contains("not an AGE-SECRET-KEY-1"));
    let locked = SSH_PRIVATE.replace("AAAABG5vbmUAAAAEbm9uZQ", "AAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0");
    assert!(parse_identities(&locked).is_err());
}

#[test]
fn base64_and_bech32_match_their_specifications() {
    // RFC 4648 section 10.
    for (plain, enc) in
        [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
    {
        assert_eq!(base64_encode(plain.as_bytes(), true), enc);
        assert_eq!(base64_decode(enc, true).unwrap(), plain.as_bytes());
        let raw = enc.trim_end_matches('=');
        assert_eq!(base64_encode(plain.as_bytes(), false), raw);
        assert_eq!(base64_decode(raw, false).unwrap(), plain.as_bytes());
    }
    for bad in ["Zg=", "Zh==", "Z", "Zm9v!", "Zg==Zg=="] {
        assert_eq!(base64_decode(bad, true), None, "{bad}");
    }
    assert_eq!(base64_decode("Zh", false), None, "non-canonical trailing bits");
    // BIP 173 valid strings, and their mixed-case and bad-checksum variants.
    for ok in ["a12uel5l", "A12UEL5L", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw"] {
        assert!(bech32_decode(ok).is_some(), "{ok}");
    }
    for bad in ["A12uEL5L", "a12uel5m", "1pzry9x0s0muk", "a1", "x1b4n0q5v"] {
        assert!(bech32_decode(bad).is_none(), "{bad}");
    }
    let (hrp, data) = bech32_decode(AGE_RECIPIENT).unwrap();
    assert_eq!(bech32_encode(&hrp, &data), AGE_RECIPIENT);
}

/// The stock tool reads what we write and writes what we read (with fresh keys from its own
/// keygen). Run by `make unit` where `age`, `age-keygen` and `ssh-keygen` are installed.
#[test]
#[ignore = "needs age, age-keygen and ssh-keygen: run by make unit where they are installed"]
fn stock_age_interoperates() {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("ephemcrypt-age-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).current_dir(&dir).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    run(&["age-keygen", "-o", "id.txt"]);
    run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "ssh"]);
    let age_r = String::from_utf8(run(&["age-keygen", "-y", "id.txt"])).unwrap();
    let ssh_r = std::fs::read_to_string(dir.join("ssh.pub")).unwrap();
    let key = Key::generate(64).unwrap();
    let file =
        encrypt(&[Recipient::parse(&age_r).unwrap(), Recipient::parse(&ssh_r).unwrap()], &key, &mut Key::generate)
            .unwrap();
    std::fs::write(dir.join("ours.age"), armor(&file)).unwrap();
    for id in ["id.txt", "ssh"] {
        assert_eq!(run(&["age", "-d", "-i", id, "ours.age"]), key.expose(), "age -d -i {id}");
    }
    std::fs::write(dir.join("plain"), key.expose()).unwrap();
    run(&["age", "-r", age_r.trim(), "-R", "ssh.pub", "-o", "theirs.age", "plain"]);
    let theirs = std::fs::read(dir.join("theirs.age")).unwrap();
    for id in ["id.txt", "ssh"] {
        let ids = parse_identities(&std::fs::read_to_string(dir.join(id)).unwrap()).unwrap();
        assert_eq!(decrypt(&theirs, &ids).unwrap().expose(), key.expose(), "ours with {id}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn unhex(s: &str) -> [u8; 32] {
    let v: Vec<u8> = (0..64).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    v.try_into().unwrap()
}

/// The X25519 points of small order (libsodium's blocklist: 0, 1, the two points of order 8,
/// p-1, p, p+1), each also with bit 255 set, which X25519 ignores: 14 encodings.
fn x25519_low_order_points() -> Vec<[u8; 32]> {
    let mut points: Vec<[u8; 32]> = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ]
    .iter()
    .map(|h| unhex(h))
    .collect();
    for i in 0..points.len() {
        let mut high = points[i];
        high[31] |= 0x80;
        points.push(high);
    }
    points
}

/// The eight ed25519 points of small order, compressed: the identity, (0, -1), the two of order
/// 4 (y = 0, either sign of x) and the four of order 8.
const ED25519_SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

fn ssh_public(point: &[u8; 32]) -> String {
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], &point[..]] {
        blob.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {} low", base64_encode(&blob, true))
}

#[test]
fn low_order_age_recipients_are_refused_by_name() {
    for p in x25519_low_order_points() {
        assert!(is_low_order(&p), "{p:02x?}");
        let text = bech32_encode("age", &p);
        let e = Recipient::parse(&text).unwrap_err();
        assert!(e.starts_with(&format!("{text}: a low-order X25519 point")), "{e}");
    }
    // Real keys are not: ours, and the Montgomery form of the ssh test key.
    let Recipient::X25519 { public, .. } = Recipient::parse(AGE_RECIPIENT).unwrap() else { unreachable!() };
    assert!(!is_low_order(&public));
    let Recipient::SshEd25519 { montgomery, .. } = Recipient::parse(SSH_PUBLIC).unwrap() else { unreachable!() };
    assert!(!is_low_order(&montgomery));
    assert!(!is_low_order(&x25519_dalek::X25519_BASEPOINT_BYTES));
}

#[test]
fn small_order_ssh_ed25519_recipients_are_refused_by_name() {
    for hex in ED25519_SMALL_ORDER {
        let point = unhex(hex);
        assert!(curve25519_dalek::edwards::CompressedEdwardsY(point).decompress().is_some(), "{hex} is on the curve");
        let text = ssh_public(&point);
        let e = Recipient::parse(&text).unwrap_err();
        assert!(e.starts_with("ssh-ed25519 SHA256:"), "{hex}: {e}");
        assert!(e.contains("the identity or another point of small order"), "{hex}: {e}");
    }
    // A key that is not a point at all says so.
    let mut off = unhex(ED25519_SMALL_ORDER[0]);
    off[0] = 2;
    assert_eq!(Recipient::parse(&ssh_public(&off)).unwrap_err(), "not a point on the ed25519 curve");
}

#[test]
fn encryption_refuses_an_all_zero_shared_secret() {
    // Recipients as parse would never make them: what encrypt does on its own.
    for p in x25519_low_order_points() {
        let r = Recipient::X25519 { public: p, text: "age1planted\x1b[2J".into() };
        let e = encrypt(&[r], &plaintext(), &mut Key::generate).unwrap_err().to_string();
        assert!(e.starts_with("escrow recipient age1planted\\x1b[2J: expected a recipient whose X25519"), "{e}");
        assert!(e.contains("all-zero shared secret"), "{e}");
    }
    let Recipient::SshEd25519 { blob, .. } = Recipient::parse(SSH_PUBLIC).unwrap() else { unreachable!() };
    let r = Recipient::SshEd25519 { blob, montgomery: [0; 32], fingerprint: "SHA256:x".into() };
    let e = encrypt(&[r], &plaintext(), &mut Key::generate).unwrap_err().to_string();
    assert!(e.starts_with("escrow recipient ssh-ed25519 SHA256:x: "), "{e}");
}

#[test]
fn decryption_refuses_a_low_order_share() {
    // A stanza whose share is a low-order point: the shared secret is zero, so no file key.
    // The body is sealed with the wrap key anyone can derive from that zero secret: without the
    // check it would unwrap.
    let ids = parse_identities(AGE_IDENTITY).unwrap();
    let Recipient::X25519 { public, .. } = ids[0].recipient() else { unreachable!() };
    for p in x25519_low_order_points() {
        let wrap = derive(&[0; 32], &[&p[..], &public[..]].concat(), X25519_LABEL);
        let mut body = vec![7u8; FILE_KEY_LEN + TAG_LEN];
        seal(&wrap, &[0; 12], &mut body);
        let stanza = Stanza { kind: "X25519".into(), args: vec![base64_encode(&p, false)], body };
        assert!(ids[0].unwrap(&stanza).is_none(), "{p:02x?}");
    }
}

#[test]
fn identity_files_are_read_into_one_buffer_from_files_and_pipes() {
    let dir = std::env::temp_dir().join(format!("ephemcrypt-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [("age.txt", AGE_IDENTITY), ("ssh", SSH_PRIVATE)] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let ids = read_identities(&path).unwrap();
        assert_eq!(ids.len(), 1, "{name}");
        assert_eq!(decrypt(BOTH.as_bytes(), &ids).unwrap().expose(), plaintext().expose());
    }
    // A pipe has no size: read up to the limit.
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, AGE_IDENTITY).unwrap())
    };
    assert_eq!(read_identities(&fifo).unwrap().len(), 1);
    writer.join().unwrap();
    // Too large, not text, not there: named.
    let big = dir.join("big");
    std::fs::write(&big, vec![b'#'; MAX_IDENTITY_FILE + 1]).unwrap();
    let e = read_identities(&big).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("identity file {}: expected an identity file of at most 64 KiB", big.display())),
        "{e}"
    );
    let binary = dir.join("binary");
    std::fs::write(&binary, b"\xff\xfe").unwrap();
    assert!(read_identities(&binary).unwrap_err().to_string().contains("bytes that are not text"));
    let e = read_identities(&dir.join("none")).unwrap_err().to_string();
    assert!(e.starts_with("read identity file ") && e.contains("ENOENT"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The decoders of secrets write into buffers sized once: a buffer that grew was reallocated,
/// and the old copy of the secret was freed unwiped.
#[test]
fn secret_decoders_never_grow_their_buffers() {
    let line = AGE_IDENTITY.lines().last().unwrap();
    let (_, data) = bech32_decode(line).unwrap();
    let chars = line.len() - line.rfind('1').unwrap() - 1;
    assert_eq!((data.len(), data.capacity()), (32, chars * 5 / 8));
    for text in ["", "Zg", "Zm8", "Zm9v", "Zm9vYg", &"QUJD".repeat(100)] {
        let out = base64_decode_secret(text, false).unwrap();
        assert_eq!(out.capacity(), text.len() * 3 / 4, "{text}");
        assert_eq!(out.len(), out.capacity(), "{text}");
    }
}

/// Found by fuzzing (openssh_key, fuzz/seeds/openssh_key/found-public-not-the-seeds): a key file
/// whose public key (in the blob and after the seed) is not the seed's was taken, and the
/// identity then answered to a recipient it cannot decrypt for.
#[test]
fn an_openssh_key_whose_public_key_is_not_its_seeds_is_refused() {
    let other = "AAAAC3NzaC1lZDI1NTE5AAAAID62i/sW+UE6hCoAHT8LbEbh7qflOMiMSR5Mlx1nxy7X";
    let Recipient::SshEd25519 { blob: other_blob, .. } = Recipient::parse(&format!("ssh-ed25519 {other}")).unwrap()
    else {
        unreachable!()
    };
    let body: String = SSH_PRIVATE.lines().filter(|l| !l.starts_with("-----")).collect();
    let raw = base64_decode(&body, true).unwrap();
    let Recipient::SshEd25519 { blob, .. } = Recipient::parse(SSH_PUBLIC).unwrap() else { unreachable!() };
    // Every copy of the public key replaced by another key's: only the seed is left as it was.
    let (mine, theirs) = (&blob[blob.len() - 32..], &other_blob[other_blob.len() - 32..]);
    let mut swapped = raw.clone();
    let mut at = 0;
    while let Some(i) = swapped[at..].windows(32).position(|w| w == mine) {
        swapped[at + i..at + i + 32].copy_from_slice(theirs);
        at += i + 32;
    }
    assert_ne!(swapped, raw);
    let pem = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        base64_encode(&swapped, true)
    );
    let e = parse_identities(&pem).unwrap_err();
    assert_eq!(e, "an OpenSSH private key whose public key is not its private key's (damaged or altered)");
    assert!(parse_identities(SSH_PRIVATE).is_ok());
}
