//! The volume key, and how it reaches dm-crypt without ever being written down.
//!
//! The key lives in a slot of the secret arena (below): locked pages that are never unlocked,
//! wiped when the key is dropped. It is handed to the kernel as a *logon* key in the kernel keyring, which dm-crypt
//! copies at table load; the keyring entry is invalidated right after. Logon keys cannot be read
//! back from userspace, so after that the only copy is inside dm-crypt. The system calls are in
//! `syscall.rs`.

use std::ffi::CString;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use libc::c_long;
use nix::errno::Errno;
use zeroize::{Zeroize, Zeroizing};

use crate::syscall::{self, KEYCTL_INVALIDATE, KEYCTL_REVOKE, KEYCTL_UNLINK, KEY_SPEC_PROCESS_KEYRING};
use crate::{Error, Result};

// ---- the secret arena ------------------------------------------------------------------------
//
// Every secret (the volume key, the escrow's file key and derived keys, an identity) lives in one
// place: pages mapped for secrets alone, locked once when they are mapped and never unlocked or
// unmapped, cut into slots. A dropped key's slot is wiped and goes back to the free list; its
// page stays locked. Before, each key was its own heap buffer, mlocked and munlocked on drop:
// locks are per page and not counted, so dropping any small derived key (a 32-byte HKDF output)
// munlocked the page under the volume key next to it on the heap.
//
// Why an arena and not mlockall(MCL_CURRENT | MCL_FUTURE): in an initramfs memory is what there
// is least of (a small instance boots with hundreds of MiB, before swap exists), and mlockall
// would pin the whole binary, every heap buffer (setup's header writes and probes go through
// MiB-sized ones) and, with MCL_FUTURE, every later mapping in full; a lock that then fails makes
// that allocation itself fail. The arena pins a page per slot size in use (two or three pages
// for setup) and never fails an allocation: where the pages cannot be locked (no CAP_IPC_LOCK
// beyond RLIMIT_MEMLOCK) it warns once and goes on, as an initramfs has no swap; where they cannot
// even be mapped it takes heap memory, wiped and reused all the same.

/// The smallest slot: 16-byte file keys and volume ids, 32-byte scalars share a page.
const MIN_SLOT: usize = 32;

struct Arena {
    /// Wiped slots no key holds, of the sizes of [`slot_size`].
    free: Vec<&'static mut [u8]>,
    /// A lock or a mapping failed and that was said once.
    warned: bool,
}

static ARENA: Mutex<Arena> = Mutex::new(Arena { free: Vec::new(), warned: false });

fn page_size() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).map(|n| n.map(usize::try_from)) {
        Ok(Some(Ok(n))) if n > 0 => n,
        _ => 4096,
    }
}

/// The slot for `len` bytes: a power of two from [`MIN_SLOT`] up to a page (a slot never
/// straddles pages), whole pages beyond.
fn slot_size(len: usize, page: usize) -> usize {
    let class = len.max(MIN_SLOT).next_power_of_two();
    if class <= page {
        class
    } else {
        len.div_ceil(page) * page
    }
}

impl Arena {
    /// A wiped slot for `len` bytes: a free one of its size (the last freed first), or a fresh
    /// locked mapping cut into slots of that size.
    fn take(&mut self, len: usize) -> &'static mut [u8] {
        let page = page_size();
        let size = slot_size(len, page);
        if let Some(i) = self.free.iter().rposition(|s| s.len() == size) {
            return self.free.swap_remove(i);
        }
        let map = size.max(page);
        let mem = match crate::syscall::secret_pages(map) {
            Ok((mem, locked)) => {
                if let Err(e) = locked {
                    self.warn(format_args!(
                        "could not lock the memory of keys ({e}); continuing, an initramfs has no swap"
                    ));
                }
                mem
            }
            Err(e) => {
                self.warn(format_args!("could not map memory for keys ({e}); they go on the heap, unlocked"));
                Box::leak(vec![0u8; map].into_boxed_slice())
            }
        };
        match mem.split_at_mut_checked(size) {
            Some((slot, rest)) => {
                self.free.extend(rest.chunks_exact_mut(size));
                slot
            }
            None => Box::leak(vec![0u8; size].into_boxed_slice()), // map >= size: never
        }
    }

    fn warn(&mut self, what: fmt::Arguments<'_>) {
        if !self.warned {
            self.warned = true;
            log::warn!("{what}");
        }
    }
}

/// A secret key: bytes in a slot of the locked secret arena, wiped on drop.
///
/// Deliberately not `Clone`, `Copy` or `Display`, and `Debug` prints only the length: a copy
/// or a formatted key is a leak waiting to happen.
pub(crate) struct Key {
    /// The whole slot (wiped as a whole); the key is its first `len` bytes.
    slot: &'static mut [u8],
    len: usize,
}

impl Key {
    /// `len` (> 0) bytes from the kernel RNG via getrandom(2), blocking until it is seeded.
    ///
    /// There is deliberately no fallback to `/dev/urandom` or any other non-blocking source: a
    /// disk key drawn from an unseeded RNG would be guessable. Early in boot the wait is logged.
    pub(crate) fn generate(len: usize) -> Result<Key> {
        if len == 0 {
            return Err(Error::Internal("a key has at least one byte"));
        }
        let mut key = Key::locked_zeroed(len);
        fill_random(key.expose_mut())?;
        Ok(key)
    }

    /// A key with known bytes, for tests.
    #[cfg(test)]
    pub(crate) fn from_bytes_for_test(bytes: &[u8]) -> Key {
        let mut key = Key::locked_zeroed(bytes.len());
        key.expose_mut().copy_from_slice(bytes);
        key
    }

    /// A zeroed, locked buffer of `len` bytes for a secret derived from another (the escrow's
    /// keys, a plaintext encrypted in place): written through [`Key::expose_mut`].
    pub(crate) fn locked(len: usize) -> Key {
        Key::locked_zeroed(len)
    }

    /// A slot of the locked arena, taken *before* the secret is written into it, so the secret
    /// never sits in swappable memory. Slots come wiped.
    fn locked_zeroed(len: usize) -> Key {
        let slot = ARENA.lock().unwrap_or_else(PoisonError::into_inner).take(len);
        Key { slot, len }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The raw key bytes. This is the only way to read a key; its callers are
    /// [`add_logon_key`] and the hex fallback [`Key::to_hex`]. Keep the borrow short.
    pub(crate) fn expose(&self) -> &[u8] {
        self.slot.get(..self.len).unwrap_or_default() // the slot holds `len`: taken for it
    }

    /// The bytes, to write a derived secret into (age.rs).
    pub(crate) fn expose_mut(&mut self) -> &mut [u8] {
        self.slot.get_mut(..self.len).unwrap_or_default()
    }

    /// Lower-case hex, for kernels whose dm-crypt predates keyring keys (< 4.10) and must be
    /// given the key in the table itself. The string is wiped when dropped; it is allocated at
    /// its final size so no reallocation leaves a partial copy behind.
    pub(crate) fn to_hex(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = Zeroizing::new(String::with_capacity(2 * self.len()));
        for &b in self.expose() {
            hex.push(char::from(DIGITS[usize::from(b >> 4)]));
            hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        hex
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("len", &self.len()).field("bytes", &format_args!("<redacted>")).finish()
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // Wipe the whole slot (volatile writes the optimiser keeps) and give it back; its page
        // stays locked, for the keys beside it and the next one.
        self.slot.zeroize();
        let slot = std::mem::take(&mut self.slot);
        ARENA.lock().unwrap_or_else(PoisonError::into_inner).free.push(slot);
    }
}

/// Fill `buf` from the kernel RNG, waiting for it to be seeded; retries EINTR and short reads.
fn fill_random(buf: &mut [u8]) -> Result<()> {
    let len = buf.len();
    let what = || format!("{len} key bytes");
    let mut filled = 0;
    // One non-blocking try first, only to learn whether we are about to wait and say so. Its
    // output, when it succeeds, comes from the same seeded pool as the blocking call's.
    match syscall::getrandom(buf, true) {
        Ok(n) => filled = n,
        Err(Errno::EAGAIN) => log::info!("waiting for the kernel random number generator to be seeded"),
        Err(Errno::EINTR) => {}
        Err(e) => return Err(Error::errno("getrandom", what(), e)),
    }
    while filled < buf.len() {
        match syscall::getrandom(&mut buf[filled..], false) {
            Ok(n) => filled += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::errno("getrandom", what(), e)),
        }
    }
    Ok(())
}

/// Forbid core dumps and ptrace attach by unprivileged processes: a dump taken while the key
/// exists would contain it.
pub(crate) fn set_non_dumpable() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| Error::errno("prctl(PR_SET_DUMPABLE)", "this process", e))
}

// ---- kernel keyring --------------------------------------------------------------------------

/// The serial number of a key in the kernel keyring: an id, not a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySerial(pub(crate) i32);

/// A logon key description must be `prefix:rest` with a non-empty prefix (the kernel's
/// `logon_vet_description`), and dm-crypt rejects whitespace in its key argument.
fn check_logon_description(description: &str) -> Result<CString> {
    let qualified = matches!(description.find(':'), Some(i) if i > 0 && i + 1 < description.len());
    let expected = "\"prefix:name\" without whitespace or NUL";
    if !qualified || description.contains(char::is_whitespace) {
        return Err(Error::invalid("logon key description", expected, description));
    }
    CString::new(description).map_err(|_| Error::invalid("logon key description", expected, description.escape_debug()))
}

/// Put `key` into the calling thread's process keyring as a `logon` key and return its serial.
///
/// dm-crypt resolves a table key `:<bytes>:logon:<description>` with `request_key()` in the
/// context of the task issuing `DM_TABLE_LOAD`, which searches that task's thread, process and
/// session keyrings, so the process keyring suffices and nothing outside this process sees the
/// key. The process keyring hangs off the thread's credentials: threads that already exist when
/// it is created do not see it, so issue the table load from the thread that called this.
///
/// Logon keys can be used by the kernel but never read back by userspace (`KEYCTL_READ` fails).
/// Invalidate the key with [`invalidate_key`] as soon as the table is loaded.
pub(crate) fn add_logon_key(description: &str, key: &Key) -> Result<KeySerial> {
    let desc = check_logon_description(description)?;
    syscall::add_key(c"logon", &desc, key.expose(), KEY_SPEC_PROCESS_KEYRING)
        .map(KeySerial)
        .map_err(|e| Error::errno("add logon key", description, e))
}

/// Remove a key from the keyring at once: `KEYCTL_INVALIDATE`, or on kernels without it
/// (< 3.5) `KEYCTL_REVOKE` (which destroys the payload) then unlink from the process keyring.
pub(crate) fn invalidate_key(serial: KeySerial) -> Result<()> {
    let id = c_long::from(serial.0);
    match syscall::keyctl(KEYCTL_INVALIDATE, id, 0) {
        Ok(_) => Ok(()),
        Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => {
            syscall::keyctl(KEYCTL_REVOKE, id, 0)
                .map_err(|e| Error::errno("revoke logon key", format!("(serial {})", serial.0), e))?;
            // The payload is gone once revoked; a failed unlink only leaves an empty husk.
            if let Err(e) = syscall::keyctl(KEYCTL_UNLINK, id, KEY_SPEC_PROCESS_KEYRING) {
                log::warn!("unlink revoked key {} from the process keyring: {e}", serial.0);
            }
            Ok(())
        }
        Err(e) => Err(Error::errno("invalidate logon key", format!("(serial {})", serial.0), e)),
    }
}

/// Look for a usable logon key with this description in the process keyring (tests prove with it
/// that nothing is left behind). Revoked or expired keys that are still linked count as absent:
/// their payload is gone.
#[cfg(test)]
fn find_logon_key(description: &str) -> Result<Option<KeySerial>> {
    let desc = CString::new(description).expect("test descriptions have no NUL");
    match syscall::keyctl_search(KEY_SPEC_PROCESS_KEYRING, c"logon", &desc) {
        Ok(serial) => Ok(Some(KeySerial(serial))),
        Err(Errno::ENOKEY | Errno::EKEYREVOKED | Errno::EKEYEXPIRED) => Ok(None),
        Err(e) => Err(Error::errno("search keyring for", description, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_gives_random_bytes() {
        let a = Key::generate(64).unwrap();
        let b = Key::generate(64).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.expose().iter().any(|&x| x != 0));
        assert_ne!(a.expose(), b.expose());
        // Longer than one getrandom chunk, to exercise the short-read loop.
        let big = Key::generate(1 << 20).unwrap();
        assert!(big.expose()[(1 << 20) - 64..].iter().any(|&x| x != 0));
    }

    /// The `Locked:` size in kB of the mapping that holds `addr`, from /proc/self/smaps.
    fn locked_kb(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            // A mapping's first line: "start-end perms offset dev inode [path]", in hex.
            let first = line.split(' ').next().unwrap_or("");
            if let Some((start, end)) = first.split_once('-') {
                if let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) {
                    inside = (start..end).contains(&addr);
                    continue;
                }
            }
            if let Some(kb) = line.strip_prefix("Locked:").filter(|_| inside) {
                return kb.trim().trim_end_matches("kB").trim().parse().unwrap();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// Locks are per page and not counted: before the arena, dropping a small derived key
    /// munlocked the heap page under the volume key beside it.
    #[test]
    fn dropping_a_key_leaves_the_keys_on_its_page_locked() {
        let page = page_size();
        // Two keys on one page (other tests take slots at the same time: look for a pair).
        let mut keys: Vec<Key> = Vec::new();
        let (a, b) = loop {
            keys.push(Key::from_bytes_for_test(&[0x5A; 64]));
            let last = keys.len() - 1;
            let page_of = |k: &Key| k.expose().as_ptr() as usize / page;
            if let Some(i) = (0..last).find(|&i| page_of(&keys[i]) == page_of(&keys[last])) {
                break (keys.swap_remove(last), keys.swap_remove(i));
            }
            assert!(keys.len() < 1000, "no two 64-byte keys on one page");
        };
        let addr = a.expose().as_ptr() as usize;
        assert!(
            locked_kb(addr) > 0,
            "the key's page is not locked: mlock failed (see Max locked memory in /proc/self/limits)"
        );
        drop(b);
        drop(keys);
        assert!(locked_kb(addr) > 0, "dropping a key unlocked the page of another");
        assert_eq!(a.expose(), &[0x5A; 64]);
    }

    #[test]
    fn slots_come_wiped_and_are_reused() {
        let planted: Vec<Key> = (0..64).map(|_| Key::from_bytes_for_test(&[0xAB; 48])).collect();
        let at: Vec<usize> = planted.iter().map(|k| k.expose().as_ptr() as usize).collect();
        drop(planted);
        let fresh: Vec<Key> = (0..64).map(|_| Key::locked(48)).collect();
        for k in &fresh {
            assert!(k.expose().iter().all(|&b| b == 0), "a slot came back with its old key in it");
        }
        // Other tests take slots meanwhile; most of ours come back (no new pages per key).
        let reused = fresh.iter().filter(|k| at.contains(&(k.expose().as_ptr() as usize))).count();
        assert!(reused > 32, "{reused} of 64 slots reused");
    }

    #[test]
    fn slots_never_straddle_pages() {
        for (len, size) in [(0, 32), (1, 32), (16, 32), (32, 32), (33, 64), (64, 64), (80, 128), (4096, 4096)] {
            assert_eq!(slot_size(len, 4096), size, "{len}");
        }
        assert_eq!(slot_size(4097, 4096), 8192);
        assert_eq!(slot_size(65552, 4096), 69632);
        let big = Key::locked(10_000);
        assert_eq!(big.expose().as_ptr() as usize % page_size(), 0);
        assert_eq!(big.len(), 10_000);
    }

    #[test]
    fn debug_never_shows_bytes() {
        let key = Key::from_bytes_for_test(&[0xAB; 64]);
        assert_eq!(format!("{key:?}"), "Key { len: 64, bytes: <redacted> }");
        for text in [format!("{key:?}"), format!("{key:#?}")] {
            let lower = text.to_lowercase();
            // Two adjacent bytes in hex (any leak of 0xab bytes contains "abab"), or one byte
            // in decimal as a derived Debug of the slice would print it.
            assert!(!lower.contains("abab") && !text.contains("171"), "{text}");
        }
    }

    #[test]
    fn hex_of_planted_key() {
        let key = Key::from_bytes_for_test(&[0x00, 0x01, 0x7f, 0x80, 0xab, 0xff]);
        assert_eq!(key.to_hex().as_str(), "00017f80abff");
        assert_eq!(Key::generate(64).unwrap().to_hex().len(), 128);
    }

    #[test]
    fn descriptions() {
        for bad in ["nocolon", ":leading", "trailing:", "has space:x", "a:b\tc", "a:\0"] {
            assert!(check_logon_description(bad).is_err(), "{bad:?}");
        }
        assert!(check_logon_description("ephemcrypt:crypt:1-2").is_ok());
    }

    /// The tests that change this process's dumpable flag, one at a time.
    static DUMPABLE: Mutex<()> = Mutex::new(());

    #[test]
    fn non_dumpable() {
        let _one = DUMPABLE.lock().unwrap_or_else(PoisonError::into_inner);
        set_non_dumpable().unwrap();
        let dumpable = nix::sys::prctl::get_dumpable().unwrap();
        // Restore: other tests in this binary may read /proc/self, which this makes root-owned.
        nix::sys::prctl::set_dumpable(true).unwrap();
        assert!(!dumpable);
    }

    /// `recover` is non-dumpable before it reads anything (here it fails right after: no disks).
    #[test]
    fn recover_makes_itself_non_dumpable_first() {
        let _one = DUMPABLE.lock().unwrap_or_else(PoisonError::into_inner);
        let host = std::env::temp_dir().join(format!("ephemcrypt-nodump-{}", std::process::id()));
        std::fs::create_dir_all(&host).unwrap();
        let args: Vec<String> =
            ["recover", "--host", host.to_str().unwrap(), "--identity", "/nonexistent"].map(String::from).into();
        let cmd = crate::cli::parse(&args).unwrap();
        nix::sys::prctl::set_dumpable(true).unwrap();
        let r = crate::cli::run(&cmd, &mut Vec::new());
        let dumpable = nix::sys::prctl::get_dumpable().unwrap();
        nix::sys::prctl::set_dumpable(true).unwrap();
        std::fs::remove_dir_all(&host).unwrap();
        assert!(r.is_err());
        assert!(!dumpable, "recover left the process dumpable");
    }

    /// Needs the kernel keyring (add_key, keyctl): `make unit` runs it where the kernel has one and
    /// reports it as skipped where it does not.
    #[test]
    #[ignore = "needs the kernel keyring: run by 'make unit' where add_key(2) works"]
    fn logon_key_lifecycle() {
        let key = Key::from_bytes_for_test(&[0x5A; 64]);
        let desc = format!("ephemcrypt-test:{}", std::process::id());
        let serial = add_logon_key(&desc, &key).unwrap();
        assert_eq!(find_logon_key(&desc).unwrap(), Some(serial));

        // A logon key must never be readable from userspace.
        let mut buf = [0u8; 128];
        assert!(syscall::keyctl_read(serial.0, &mut buf).is_err(), "KEYCTL_READ worked on a logon key");
        assert!(buf.iter().all(|&b| b == 0));

        invalidate_key(serial).unwrap();
        assert_eq!(find_logon_key(&desc).unwrap(), None);
    }

    #[test]
    fn add_logon_key_errors_name_the_description_only() {
        let key = Key::from_bytes_for_test(&[0x5A; 64]);
        let err = add_logon_key("bad description", &key).unwrap_err().to_string();
        assert!(err.contains("bad description") && !err.contains("5a5a") && !err.contains("90"));
    }
}
