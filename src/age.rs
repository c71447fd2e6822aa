//! The age v1 file format (age-encryption.org/v1), as much of it as key escrow needs: a writer
//! that encrypts a small secret to X25519 (`age1…`) and `ssh-ed25519` recipients, and a reader that
//! decrypts it with an X25519 identity (`AGE-SECRET-KEY-1…`) or an unencrypted OpenSSH ed25519
//! private key, so that `age -d -i KEY` and `ephemcrypt recover` read the same files.
//!
//! Secrets (the file key, the derived keys, the plaintext) live in mlocked, wiped buffers
//! ([`Key`]); the plaintext is encrypted in place in one. Nothing here prints a secret.
//!
//! Format (<https://age-encryption.org/v1>): a text header of one line per recipient stanza
//! (`-> X25519 <share>` / `-> ssh-ed25519 <tag> <share>` and the wrapped 16-byte file key), a MAC
//! line (`--- <HMAC-SHA256>`), then a 16-byte nonce and the payload in ChaCha20-Poly1305 chunks of
//! 64 KiB (one here). Armor: PEM-like, base64 in 64 columns.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::escape::Esc;
use crate::key::Key;

const INTRO: &str = "age-encryption.org/v1\n";
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const SSH_LABEL: &[u8] = b"age-encryption.org/v1/ssh-ed25519";
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
const FILE_KEY_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// The largest payload this reader takes (one chunk): escrow holds a key of at most 64 bytes.
pub(crate) const MAX_PAYLOAD: usize = 64 * 1024;

/// Someone the escrow is encrypted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recipient {
    /// An age X25519 public key (`age1…`).
    X25519 { public: [u8; 32], text: String },
    /// An OpenSSH ed25519 public key: its wire blob and its Montgomery form.
    SshEd25519 { blob: Vec<u8>, montgomery: [u8; 32], fingerprint: String },
}

impl Recipient {
    /// `age1…` (Bech32) or `ssh-ed25519 AAAA… [comment]`; the error says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Recipient, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("ssh-ed25519 ") {
            let b64 = rest.split_whitespace().next().unwrap_or("");
            let blob = base64_decode(b64, true).ok_or("its key is not base64")?;
            let public = ssh_ed25519_public(&blob).ok_or("not an ssh-ed25519 public key")?;
            let fingerprint = ssh_fingerprint(&blob);
            let montgomery = match edwards_to_montgomery(&public) {
                Some(Ok(m)) if !is_low_order(&m) => m,
                None => return Err("not a point on the ed25519 curve".into()),
                Some(_) => {
                    return Err(format!(
                        "ssh-ed25519 {}: the identity or another point of small order, with which anyone could \
                         open the escrow (the stock age refuses it too)",
                        Esc(&fingerprint)
                    ))
                }
            };
            return Ok(Recipient::SshEd25519 { fingerprint, blob, montgomery });
        }
        if text.starts_with("ssh-") {
            return Err("only ssh-ed25519 keys can be recipients (age's ssh-rsa is not supported)".into());
        }
        let (hrp, data) = bech32_decode(text).ok_or("neither an age1… recipient nor an ssh-ed25519 key")?;
        if hrp != "age" {
            return Err(format!("a Bech32 string of kind '{hrp}', not an age1… recipient"));
        }
        let public: [u8; 32] = data[..].try_into().map_err(|_| "an age1… recipient of the wrong length")?;
        if is_low_order(&public) {
            return Err(format!(
                "{}: a low-order X25519 point, whose shared secret with any key is zero, so that anyone could \
                 open the escrow (the stock age refuses it too)",
                Esc(text)
            ));
        }
        Ok(Recipient::X25519 { public, text: text.to_string() })
    }

    /// How `status` shows it: the age recipient, or the ssh key's SHA256 fingerprint.
    pub(crate) fn describe(&self) -> String {
        match self {
            Recipient::X25519 { text, .. } => text.clone(),
            Recipient::SshEd25519 { fingerprint, .. } => format!("ssh-ed25519 {fingerprint}"),
        }
    }
}

/// Who can decrypt: an age X25519 secret key or an OpenSSH ed25519 private key.
pub(crate) enum Identity {
    /// The secret scalar, and its public key (computed once: every X25519 stanza needs it).
    X25519 {
        secret: Key,
        public: [u8; 32],
    },
    SshEd25519 {
        scalar: Key,
        blob: Vec<u8>,
        montgomery: [u8; 32],
    },
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::X25519 { .. } => f.write_str("Identity::X25519(<redacted>)"),
            Identity::SshEd25519 { blob, .. } => write!(f, "Identity::SshEd25519({})", ssh_fingerprint(blob)),
        }
    }
}

/// The largest identity file read: a key is 74 bytes in age's format, about 400 in OpenSSH's.
const MAX_IDENTITY_FILE: usize = 64 * 1024;

/// Read and parse the identity file at `path` (`recover --identity`). Its text goes into one
/// wiped buffer allocated once, at the file's size (at [`MAX_IDENTITY_FILE`] for a pipe such as
/// `--identity <(pass show …)`), and is parsed in place: no secret buffer grows, so no copy is
/// left behind in freed memory.
pub(crate) fn read_identities(path: &std::path::Path) -> crate::Result<Vec<Identity>> {
    use std::io::Read as _;
    let what = || format!("identity file {}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| Error::os("read identity file", path.display(), e))?;
    let meta = file.metadata().map_err(|e| Error::os("read identity file", path.display(), e))?;
    let size = if meta.is_file() { usize::try_from(meta.len()).unwrap_or(usize::MAX) } else { MAX_IDENTITY_FILE };
    let too_big = || Error::invalid(what(), "an identity file of at most 64 KiB", "a larger file");
    if size > MAX_IDENTITY_FILE {
        return Err(too_big());
    }
    // One byte more than expected, to tell a file that grew (or a pipe that has more).
    let mut buf = Zeroizing::new(vec![0u8; size + 1]);
    let mut len = 0;
    while let Some(room) = buf.get_mut(len..).filter(|r| !r.is_empty()) {
        match file.read(room) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::os("read identity file", path.display(), e)),
        }
    }
    if len > size {
        return Err(too_big());
    }
    let text = buf.get(..len).and_then(|b| std::str::from_utf8(b).ok()).ok_or_else(|| {
        Error::invalid(
            what(),
            "an age identity or an unencrypted OpenSSH ed25519 private key",
            "bytes that are not text",
        )
    })?;
    parse_identities(text).map_err(|why| Error::Invalid {
        what: what(),
        expected: "an age identity or an unencrypted OpenSSH ed25519 private key",
        found: why,
    })
}

/// The identities in an identity file: `AGE-SECRET-KEY-1…` lines (with `#` comments), or one
/// unencrypted OpenSSH ed25519 private key.
pub(crate) fn parse_identities(text: &str) -> Result<Vec<Identity>, String> {
    if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return Ok(vec![parse_openssh(text)?]);
    }
    let mut ids = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (hrp, data) = bech32_decode(line).ok_or("a line that is not an AGE-SECRET-KEY-1… identity")?;
        let data = Zeroizing::new(data);
        if hrp != "age-secret-key-" || data.len() != 32 {
            return Err("a line that is not an AGE-SECRET-KEY-1… identity".into());
        }
        let mut secret = Key::locked(32);
        secret.expose_mut().copy_from_slice(&data);
        let public = public_of(secret.expose());
        ids.push(Identity::X25519 { secret, public });
    }
    if ids.is_empty() {
        return Err("no identity in it (AGE-SECRET-KEY-1… or an OpenSSH ed25519 private key)".into());
    }
    Ok(ids)
}

impl Identity {
    /// The recipient this identity answers to.
    pub(crate) fn recipient(&self) -> Recipient {
        match self {
            Identity::X25519 { public, .. } => {
                Recipient::X25519 { public: *public, text: bech32_encode("age", public) }
            }
            Identity::SshEd25519 { blob, montgomery, .. } => Recipient::SshEd25519 {
                blob: blob.clone(),
                montgomery: *montgomery,
                fingerprint: ssh_fingerprint(blob),
            },
        }
    }

    /// The file key of `stanza`, if it is addressed to this identity.
    fn unwrap(&self, stanza: &Stanza) -> Option<Key> {
        match (self, stanza.kind.as_str(), stanza.args.as_slice()) {
            (Identity::X25519 { secret, public }, "X25519", [share]) => {
                let share: [u8; 32] = base64_decode(share, false)?.try_into().ok()?;
                let shared = dh(secret.expose(), &share)?;
                let wrap = derive(shared.as_bytes(), &[&share[..], &public[..]].concat(), X25519_LABEL);
                unwrap_file_key(&wrap, &stanza.body)
            }
            (Identity::SshEd25519 { scalar, blob, montgomery }, "ssh-ed25519", [tag, share]) => {
                if *tag != ssh_tag(blob) {
                    return None;
                }
                let share: [u8; 32] = base64_decode(share, false)?.try_into().ok()?;
                let shared = dh(scalar.expose(), &share)?;
                let tweak = derive(&[], blob, SSH_LABEL);
                let shared = dh(tweak.expose(), shared.as_bytes())?;
                let wrap = derive(shared.as_bytes(), &[&share[..], &montgomery[..]].concat(), SSH_LABEL);
                unwrap_file_key(&wrap, &stanza.body)
            }
            _ => None,
        }
    }
}

/// Why an age file cannot be decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgeError {
    Malformed(&'static str),
    /// No stanza is addressed to any of the identities.
    NoMatch {
        recipients: Vec<String>,
    },
    /// The header MAC or the payload tag does not check: tampered or truncated.
    BadMac,
}

impl std::fmt::Display for AgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgeError::Malformed(why) => write!(f, "not an age file this reader takes ({why})"),
            AgeError::NoMatch { recipients } => write!(
                f,
                "the identity matches none of its recipients ({}): use the identity the escrow was made for",
                recipients.join(", ")
            ),
            AgeError::BadMac => f.write_str("its MAC does not check: the escrow is damaged or was tampered with"),
        }
    }
}

/// One recipient stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stanza {
    pub(crate) kind: String,
    pub(crate) args: Vec<String>,
    pub(crate) body: Vec<u8>,
}

/// Encrypt `plaintext` to `recipients` (at least one); returns the binary age file. `random`
/// gives the file key, the ephemeral secrets and the nonce (the kernel RNG, through `System`).
pub(crate) fn encrypt(
    recipients: &[Recipient],
    plaintext: &Key,
    random: &mut dyn FnMut(usize) -> crate::Result<Key>,
) -> crate::Result<Vec<u8>> {
    assert!(!recipients.is_empty(), "escrow to at least one recipient");
    let file_key = random(FILE_KEY_LEN)?;
    let mut header = String::from(INTRO);
    for r in recipients {
        let ephemeral = random(32)?;
        // A shared secret of all zeros (a low-order point, which Recipient::parse refuses already)
        // would make the wrap key public: refused here too, as the stock age does.
        let zero = || {
            Error::invalid(
                format!("escrow recipient {}", Esc(&r.describe())),
                "a recipient whose X25519 shared secret is not all zeros (with a low-order point anyone could \
                 open the escrow)",
                "an all-zero shared secret",
            )
        };
        let share = public_of(ephemeral.expose());
        let (line, wrap) = match r {
            Recipient::X25519 { public, .. } => {
                let shared = dh(ephemeral.expose(), public).ok_or_else(zero)?;
                let wrap = derive(shared.as_bytes(), &[&share[..], &public[..]].concat(), X25519_LABEL);
                (format!("-> X25519 {}\n", base64_encode(&share, false)), wrap)
            }
            Recipient::SshEd25519 { blob, montgomery, .. } => {
                let shared = dh(ephemeral.expose(), montgomery).ok_or_else(zero)?;
                let tweak = derive(&[], blob, SSH_LABEL);
                let shared = dh(tweak.expose(), shared.as_bytes()).ok_or_else(zero)?;
                let wrap = derive(shared.as_bytes(), &[&share[..], &montgomery[..]].concat(), SSH_LABEL);
                (format!("-> ssh-ed25519 {} {}\n", ssh_tag(blob), base64_encode(&share, false)), wrap)
            }
        };
        header.push_str(&line);
        let mut body = [0u8; FILE_KEY_LEN + TAG_LEN];
        body[..FILE_KEY_LEN].copy_from_slice(file_key.expose());
        seal(&wrap, &[0; 12], &mut body);
        header.push_str(&base64_encode(&body, false));
        header.push('\n');
    }
    header.push_str("---");
    let mac = header_mac(&file_key, header.as_bytes());
    header.push(' ');
    header.push_str(&base64_encode(&mac, false));
    header.push('\n');
    let nonce = random(16)?;
    let payload_key = derive(file_key.expose(), nonce.expose(), b"payload");
    let mut payload = Key::locked(plaintext.len() + TAG_LEN);
    payload.expose_mut()[..plaintext.len()].copy_from_slice(plaintext.expose());
    seal(&payload_key, &chunk_nonce(0, true), payload.expose_mut());
    let mut out = header.into_bytes();
    out.extend_from_slice(nonce.expose());
    out.extend_from_slice(payload.expose());
    Ok(out)
}

/// Decrypt an age file (binary or armored) with the first identity a stanza is addressed to.
pub(crate) fn decrypt(file: &[u8], identities: &[Identity]) -> Result<Key, AgeError> {
    let binary;
    let file = if file.starts_with(ARMOR_BEGIN.as_bytes()) {
        binary = dearmor(file).ok_or(AgeError::Malformed("bad armor"))?;
        &binary[..]
    } else {
        file
    };
    let (stanzas, mac, header_len, payload) = parse_header(file)?;
    let file_key = stanzas
        .iter()
        .find_map(|s| identities.iter().find_map(|id| id.unwrap(s)))
        .ok_or_else(|| AgeError::NoMatch { recipients: stanzas.iter().map(describe_stanza).collect() })?;
    if header_mac(&file_key, &file[..header_len]) != mac {
        return Err(AgeError::BadMac);
    }
    if payload.len() < 16 + TAG_LEN || payload.len() > 16 + MAX_PAYLOAD + TAG_LEN {
        return Err(AgeError::Malformed("a payload of one chunk (at most 64 KiB) was expected"));
    }
    let (nonce, sealed) = payload.split_at(16);
    let payload_key = derive(file_key.expose(), nonce, b"payload");
    let mut plain = Key::locked(sealed.len());
    plain.expose_mut().copy_from_slice(sealed);
    let len = open(&payload_key, &chunk_nonce(0, true), plain.expose_mut()).ok_or(AgeError::BadMac)?;
    let mut out = Key::locked(len);
    out.expose_mut().copy_from_slice(&plain.expose()[..len]);
    Ok(out)
}

/// The recipients an age file names (X25519 stanzas name only an ephemeral share; ssh stanzas
/// the key's tag), for an error message.
fn describe_stanza(s: &Stanza) -> String {
    match (s.kind.as_str(), s.args.as_slice()) {
        ("ssh-ed25519", [tag, ..]) => format!("an ssh-ed25519 key tagged {tag}"),
        ("X25519", _) => "an age X25519 recipient".into(),
        (other, _) => format!("a {other} recipient"),
    }
}

/// The text form, as `age -a` writes it.
pub(crate) fn armor(file: &[u8]) -> String {
    let b64 = base64_encode(file, true);
    let mut out = format!("{ARMOR_BEGIN}\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(ARMOR_END);
    out.push('\n');
    out
}

fn dearmor(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let body = text.strip_prefix(ARMOR_BEGIN)?.strip_suffix(ARMOR_END)?;
    let b64: String = body.split_whitespace().collect();
    base64_decode(&b64, true)
}

/// The stanzas, the MAC, the header's length up to and including `---`, and the payload.
#[allow(clippy::type_complexity)]
pub(crate) fn parse_header(file: &[u8]) -> Result<(Vec<Stanza>, [u8; 32], usize, &[u8]), AgeError> {
    let bad = AgeError::Malformed;
    let rest = file.strip_prefix(INTRO.as_bytes()).ok_or(bad("no age-encryption.org/v1 line"))?;
    let mut pos = INTRO.len();
    let mut stanzas = Vec::new();
    let mut lines = rest.split(|b| *b == b'\n');
    let line_str = |l: &[u8]| std::str::from_utf8(l).map(str::to_string).map_err(|_| bad("a header line is not text"));
    loop {
        let line = line_str(lines.next().ok_or(bad("no --- line"))?)?;
        if let Some(mac) = line.strip_prefix("--- ") {
            let mac: [u8; 32] =
                base64_decode(mac, false).and_then(|m| m.try_into().ok()).ok_or(bad("a bad MAC line"))?;
            let header_len = pos + 3;
            let payload = file.get(pos + line.len() + 1..).ok_or(bad("no payload after the --- line"))?;
            return Ok((stanzas, mac, header_len, payload));
        }
        pos += line.len() + 1;
        let mut words = line.strip_prefix("-> ").ok_or(bad("a line that is neither a stanza nor ---"))?.split(' ');
        let kind = words.next().filter(|k| !k.is_empty()).ok_or(bad("a stanza without a type"))?.to_string();
        let args = words.map(str::to_string).collect();
        let mut body = String::new();
        loop {
            let l = line_str(lines.next().ok_or(bad("a stanza body without its end"))?)?;
            pos += l.len() + 1;
            if l.len() > 64 {
                return Err(bad("a stanza body line longer than 64 columns"));
            }
            body.push_str(&l);
            if l.len() < 64 {
                break;
            }
        }
        let body = base64_decode(&body, false).ok_or(bad("a stanza body that is not base64"))?;
        stanzas.push(Stanza { kind, args, body });
        if stanzas.len() > 64 {
            return Err(bad("more than 64 stanzas"));
        }
    }
}

// ---- primitives ------------------------------------------------------------------------------

/// X25519 of a 32-byte secret scalar (clamped) and a point, through x25519-dalek's StaticSecret
/// and SharedSecret, which wipe their copies when dropped. `None` for a scalar of another length
/// and for a result that is all zeros (`was_contributory` false: the point has low order), which
/// age refuses.
fn dh(scalar: &[u8], point: &[u8; 32]) -> Option<SharedSecret> {
    let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(scalar.try_into().ok()?);
    let shared = StaticSecret::from(*bytes).diffie_hellman(&PublicKey::from(*point));
    shared.was_contributory().then_some(shared)
}

/// The X25519 public key of a 32-byte secret scalar (all zeros for another length, which no
/// caller passes: every scalar here is a 32-byte buffer made for it). With the Montgomery ladder
/// of [`dh`]: `PublicKey::from(&StaticSecret)` would link a second scalar multiplication
/// (Edwards, about 30 KB without precomputed tables).
fn public_of(scalar: &[u8]) -> [u8; 32] {
    let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(scalar.try_into().unwrap_or([0; 32]));
    StaticSecret::from(*bytes).diffie_hellman(&PublicKey::from(x25519_dalek::X25519_BASEPOINT_BYTES)).to_bytes()
}

/// Whether `point` has small order, on Curve25519 or its twist (0, 1, the two points of order 8,
/// p-1, and their non-canonical encodings: ≥ p, or bit 255 set), so that X25519 with any key
/// gives all zeros. Any scalar tells: a clamped scalar is a multiple of the cofactor 8, which
/// sends exactly those points to zero (the large prime orders divide no clamped scalar).
pub(crate) fn is_low_order(point: &[u8; 32]) -> bool {
    x25519_dalek::x25519([0x55; 32], *point) == [0; 32]
}

/// HKDF-SHA256 (RFC 5869) of 32 bytes, into locked memory.
fn derive(ikm: &[u8], salt: &[u8], info: &[u8]) -> Key {
    let mut out = Key::locked(32);
    hkdf::Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, out.expose_mut()).expect("32 bytes is a valid HKDF length");
    out
}

fn header_mac(file_key: &Key, header: &[u8]) -> [u8; 32] {
    let key = derive(file_key.expose(), &[], b"header");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(header);
    mac.finalize().into_bytes().into()
}

fn chunk_nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// ChaCha20-Poly1305 in place: `buf` is the plaintext followed by 16 bytes for the tag.
fn seal(key: &Key, nonce: &[u8; 12], buf: &mut [u8]) {
    let cipher = ChaCha20Poly1305::new_from_slice(key.expose()).expect("a 32-byte key");
    let (text, tag_out) = buf.split_at_mut(buf.len() - TAG_LEN);
    let tag = cipher.encrypt_in_place_detached(nonce.into(), &[], text).expect("a small buffer");
    tag_out.copy_from_slice(&tag);
}

/// The reverse of [`seal`]: the plaintext's length, or `None` when the tag does not check.
fn open(key: &Key, nonce: &[u8; 12], buf: &mut [u8]) -> Option<usize> {
    let cipher = ChaCha20Poly1305::new_from_slice(key.expose()).expect("a 32-byte key");
    let len = buf.len().checked_sub(TAG_LEN)?;
    let (text, tag) = buf.split_at_mut(len);
    cipher.decrypt_in_place_detached(nonce.into(), &[], text, (&*tag).into()).ok()?;
    Some(len)
}

fn unwrap_file_key(wrap: &Key, body: &[u8]) -> Option<Key> {
    if body.len() != FILE_KEY_LEN + TAG_LEN {
        return None;
    }
    let mut buf = Key::locked(body.len());
    buf.expose_mut().copy_from_slice(body);
    open(wrap, &[0; 12], buf.expose_mut())?;
    let mut key = Key::locked(FILE_KEY_LEN);
    key.expose_mut().copy_from_slice(&buf.expose()[..FILE_KEY_LEN]);
    Some(key)
}

// ---- ssh keys --------------------------------------------------------------------------------

/// Read an SSH wire string (u32 length, bytes) from `data`, advancing it.
fn ssh_string<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let s = data.get(4..4 + len)?;
    *data = &data[4 + len..];
    Some(s)
}

/// The 32-byte key of an `ssh-ed25519` public key blob.
fn ssh_ed25519_public(blob: &[u8]) -> Option<[u8; 32]> {
    let mut d = blob;
    (ssh_string(&mut d)? == b"ssh-ed25519").then_some(())?;
    let key = ssh_string(&mut d)?.try_into().ok()?;
    d.is_empty().then_some(key)
}

/// `SHA256:…`, as `ssh-keygen -l` shows it.
fn ssh_fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64_encode(&Sha256::digest(blob), false))
}

/// The stanza tag of an ssh key: the first 4 bytes of the SHA-256 of its blob.
fn ssh_tag(blob: &[u8]) -> String {
    base64_encode(&Sha256::digest(blob)[..4], false)
}

/// The Montgomery form of an ed25519 public key; `None` when it is not on the curve, `Err` when
/// it is the identity or another point of small order (whose X25519 shared secrets are zero).
fn edwards_to_montgomery(public: &[u8; 32]) -> Option<Result<[u8; 32], ()>> {
    let point = curve25519_dalek::edwards::CompressedEdwardsY(*public).decompress()?;
    Some(if point.is_small_order() { Err(()) } else { Ok(point.to_montgomery().to_bytes()) })
}

/// An unencrypted OpenSSH ed25519 private key (`ssh-keygen -t ed25519 -N ''`).
fn parse_openssh(text: &str) -> Result<Identity, String> {
    let body = text
        .split("-----BEGIN OPENSSH PRIVATE KEY-----")
        .nth(1)
        .and_then(|t| t.split("-----END OPENSSH PRIVATE KEY-----").next())
        .ok_or("an OpenSSH private key without its END line")?;
    // Sized once (collecting would grow the string by doubling, leaving copies in freed memory).
    let mut b64 = Zeroizing::new(String::with_capacity(body.len()));
    body.split_whitespace().for_each(|w| b64.push_str(w));
    let raw = base64_decode_secret(&b64, true).ok_or("an OpenSSH private key that is not base64")?;
    let bad = || "an OpenSSH private key this reader cannot read".to_string();
    let mut d = raw.strip_prefix(b"openssh-key-v1\0".as_slice()).ok_or_else(bad)?;
    let (cipher, kdf) = (ssh_string(&mut d).ok_or_else(bad)?, ssh_string(&mut d).ok_or_else(bad)?);
    ssh_string(&mut d).ok_or_else(bad)?; // kdf options
    if cipher != b"none" || kdf != b"none" {
        return Err("an OpenSSH private key protected by a passphrase: decrypt a copy first \
                    (ssh-keygen -p -N '' -f COPY)"
            .into());
    }
    let count = u32::from_be_bytes(d.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    if count != 1 {
        return Err("an OpenSSH private key file with more than one key".into());
    }
    d = &d[4..];
    let blob = ssh_string(&mut d).ok_or_else(bad)?.to_vec();
    let public = ssh_ed25519_public(&blob).ok_or("an OpenSSH private key that is not ed25519")?;
    let mut p = ssh_string(&mut d).ok_or_else(bad)?;
    let (c1, c2) = (p.get(..4).ok_or_else(bad)?, p.get(4..8).ok_or_else(bad)?);
    if c1 != c2 {
        return Err(bad());
    }
    p = &p[8..];
    (ssh_string(&mut p).ok_or_else(bad)? == b"ssh-ed25519").then_some(()).ok_or_else(bad)?;
    (ssh_string(&mut p).ok_or_else(bad)? == public).then_some(()).ok_or_else(bad)?;
    let private = ssh_string(&mut p).ok_or_else(bad)?;
    if private.len() != 64 || private[32..] != public {
        return Err(bad());
    }
    // The X25519 scalar of an ed25519 key: the first half of SHA-512 of its seed (clamped by x25519).
    let mut digest = Key::locked(64);
    Sha512::new()
        .chain_update(&private[..32])
        .finalize_into(sha2::digest::generic_array::GenericArray::from_mut_slice(digest.expose_mut()));
    let mut scalar = Key::locked(32);
    scalar.expose_mut().copy_from_slice(&digest.expose()[..32]);
    let montgomery = edwards_to_montgomery(&public).and_then(Result::ok).ok_or_else(bad)?;
    // The public key the file names must be the seed's (found by fuzzing, openssh_key): else the
    // identity answers to a recipient it cannot decrypt for, and `recover` blames the escrow. In
    // Montgomery form, what X25519 uses (the sign of x, which it drops, does not matter here).
    if public_of(scalar.expose()) != montgomery {
        return Err("an OpenSSH private key whose public key is not its private key's (damaged or altered)".into());
    }
    Ok(Identity::SshEd25519 { scalar, blob, montgomery })
}

// ---- encodings -------------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn base64_encode(data: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
        }
        if pad {
            out.push_str(&"=="[..3 - chunk.len()]);
        }
    }
    out
}

/// Standard base64; with `pad`, padding is required where due, without it refused. Non-canonical
/// trailing bits are refused (age requires it).
pub(crate) fn base64_decode(text: &str, pad: bool) -> Option<Vec<u8>> {
    base64_decode_secret(text, pad).map(|v| v.to_vec())
}

/// [`base64_decode`] into a wiped buffer sized once, for a secret (a private key file).
pub(crate) fn base64_decode_secret(text: &str, pad: bool) -> Option<Zeroizing<Vec<u8>>> {
    let bytes = text.as_bytes();
    let body = if pad {
        if bytes.len() % 4 != 0 {
            return None;
        }
        let trimmed = text.trim_end_matches('=');
        if bytes.len() - trimmed.len() > 2 {
            return None;
        }
        trimmed.as_bytes()
    } else {
        bytes
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() * 3 / 4));
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = u32::try_from(B64.iter().position(|b| b == c)?).ok()?;
            n |= v << (18 - 6 * i);
        }
        let len = chunk.len() - 1;
        let all = n.to_be_bytes();
        if len < 3 && (n & (0xff_ffff >> (8 * len))) != 0 {
            return None; // bits beyond the last byte
        }
        out.extend_from_slice(&all[1..1 + len]);
    }
    Some(out)
}

const BECH32: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn bech32_polymod(values: impl Iterator<Item = u8>) -> u32 {
    const GEN: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
    values.fold(1u32, |chk, v| {
        let top = chk >> 25;
        let mut chk = ((chk & 0x1ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
        chk
    })
}

fn hrp_expand(hrp: &str) -> impl Iterator<Item = u8> + '_ {
    hrp.bytes().map(|b| b >> 5).chain([0]).chain(hrp.bytes().map(|b| b & 31))
}

/// Bech32 (BIP 173, without its length limit, as age uses it): the lower-case human-readable
/// part and the data, or `None` for a bad string or checksum. All lower or all upper case.
pub(crate) fn bech32_decode(text: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
    if text.chars().any(|c| c.is_ascii_lowercase()) && text.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let lower = Zeroizing::new(text.to_ascii_lowercase());
    let sep = lower.rfind('1')?;
    let (hrp, data) = (&lower[..sep], &lower[sep + 1..]);
    if hrp.is_empty() || data.len() < 6 || !hrp.bytes().all(|b| (33..=126).contains(&b)) {
        return None;
    }
    // Both buffers sized once: collecting or pushing into an empty Vec grows it by doubling,
    // leaving copies of the secret in freed memory.
    let mut values = Zeroizing::new(Vec::with_capacity(data.len()));
    for c in data.bytes() {
        values.push(u8::try_from(BECH32.iter().position(|b| *b == c)?).ok()?);
    }
    if bech32_polymod(hrp_expand(hrp).chain(values.iter().copied())) != 1 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(data.len() * 5 / 8));
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in &values[..values.len() - 6] {
        acc = (acc << 5) | u32::from(*v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            #[allow(clippy::cast_possible_truncation)] // the low 8 bits, on purpose: the next byte
            let byte = (acc >> bits) as u8;
            out.push(byte);
        }
    }
    if bits >= 5 || (acc & ((1 << bits) - 1)) != 0 {
        return None; // padding must be short and zero
    }
    Some((hrp.to_string(), out))
}

pub(crate) fn bech32_encode(hrp: &str, data: &[u8]) -> String {
    let mut values = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in data {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            values.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        values.push(((acc << (5 - bits)) & 31) as u8);
    }
    let chk = bech32_polymod(hrp_expand(hrp).chain(values.iter().copied()).chain([0; 6])) ^ 1;
    let mut out = format!("{hrp}1");
    for v in values.iter().copied().chain((0..6).map(|i| ((chk >> (5 * (5 - i))) & 31) as u8)) {
        out.push(char::from(BECH32[usize::from(v)]));
    }
    out
}

#[cfg(test)]
#[path = "age_tests.rs"]
pub(crate) mod tests;
