//! The few system calls nix 0.29 lacks: getrandom, mlock and the locked pages of secrets, the kernel keyring (add_key,
//! keyctl), swapon/swapoff, the extended-attribute calls used to copy SELinux labels and ACLs, and
//! posix_spawn, and Linux AIO (io_setup, io_submit, io_getevents) for the probe's reads.
//! Each is a thin, checked wrapper; with `dm/ioctl.rs` this is the only `unsafe` in the crate.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use libc::{c_long, c_void};
use nix::errno::Errno;

use crate::error::{Error, Result};

fn cpath(op: &'static str, p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("{op} {}", p.display()), "a path without NUL bytes", "a NUL byte"))
}

/// One getrandom(2) call into `buf`; returns how many bytes it filled.
pub(crate) fn getrandom(buf: &mut [u8], nonblocking: bool) -> std::result::Result<usize, Errno> {
    let flags = if nonblocking { libc::GRND_NONBLOCK } else { 0 };
    // SAFETY: `buf` is a valid, exclusively borrowed region of `buf.len()` writable bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast::<c_void>(), buf.len(), flags) };
    Errno::result(n).map(isize::unsigned_abs)
}

/// mlock(2) the pages of `buf`.
pub(crate) fn mlock(buf: &[u8]) -> std::result::Result<(), Errno> {
    // SAFETY: `buf` is a live allocation of `buf.len()` bytes; mlock only changes page residency
    // and does not touch the contents.
    Errno::result(unsafe { libc::mlock(buf.as_ptr().cast::<c_void>(), buf.len()) }).map(drop)
}

/// A fresh anonymous private mapping of `len` bytes (a multiple of the page size) for secrets
/// (key.rs's arena): zero-filled, excluded from core dumps (MADV_DONTDUMP, where the kernel has
/// it) and locked into RAM. It is never unmapped or unlocked: it lives until the process exits,
/// which is what makes handing it out as `&'static mut` sound, as `Box::leak` does. The second
/// value is mlock's result (it fails without CAP_IPC_LOCK beyond RLIMIT_MEMLOCK).
pub(crate) fn secret_pages(
    len: usize,
) -> std::result::Result<(&'static mut [u8], std::result::Result<(), Errno>), Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: an anonymous private mapping at an address the kernel chooses (no fd, offset 0)
    // touches no existing memory; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: `p` is a fresh mapping of `len` readable, writable, zero-filled bytes that nothing
    // else refers to, and nothing ever unmaps it: one unique slice over it for the rest of the
    // process is sound.
    let mem = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
    // SAFETY: advice on the mapping just made, which changes what a core dump contains, not the
    // memory. Best effort: kernels before 3.4 lack it, and recover and setup are non-dumpable anyway.
    unsafe { libc::madvise(p, len, libc::MADV_DONTDUMP) };
    let locked = mlock(mem);
    Ok((mem, locked))
}

// From include/uapi/linux/keyctl.h (stable ABI).
pub(crate) const KEY_SPEC_PROCESS_KEYRING: c_long = -2;
pub(crate) const KEYCTL_REVOKE: c_long = 3;
pub(crate) const KEYCTL_UNLINK: c_long = 9;
#[cfg(test)]
pub(crate) const KEYCTL_SEARCH: c_long = 10;
#[cfg(test)]
pub(crate) const KEYCTL_READ: c_long = 11;
pub(crate) const KEYCTL_INVALIDATE: c_long = 21; // Linux 3.5

/// add_key(2): a key of `key_type` with `description` and `payload` into `keyring`; returns its
/// serial.
pub(crate) fn add_key(
    key_type: &CStr,
    description: &CStr,
    payload: &[u8],
    keyring: c_long,
) -> std::result::Result<i32, Errno> {
    // SAFETY: both strings are NUL-terminated and live across the call; `payload` is valid for
    // reads of `payload.len()` bytes. The kernel copies all three before returning.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            key_type.as_ptr(),
            description.as_ptr(),
            payload.as_ptr().cast::<c_void>(),
            payload.len(),
            keyring,
        )
    };
    Errno::result(serial).and_then(|s| i32::try_from(s).map_err(|_| Errno::ERANGE))
}

/// keyctl(2) with integer arguments only.
///
/// Every argument is passed as a full `c_long`: `syscall(2)` is variadic and reads each
/// argument as a long, so passing an `i32` would leave the upper register half undefined.
pub(crate) fn keyctl(op: c_long, arg2: c_long, arg3: c_long) -> std::result::Result<c_long, Errno> {
    assert!([KEYCTL_REVOKE, KEYCTL_UNLINK, KEYCTL_INVALIDATE].contains(&op), "keyctl {op} takes pointers");
    // SAFETY: the operations allowed above take only integers; no memory is passed to the kernel.
    Errno::result(unsafe { libc::syscall(libc::SYS_keyctl, op, arg2, arg3, 0 as c_long) })
}

/// KEYCTL_SEARCH of `keyring` for a key of `key_type` and `description` (tests use it to prove
/// that nothing is left behind).
#[cfg(test)]
pub(crate) fn keyctl_search(keyring: c_long, key_type: &CStr, description: &CStr) -> std::result::Result<i32, Errno> {
    // SAFETY: both strings are NUL-terminated and outlive the call; the last argument (0) means
    // "do not link the result anywhere".
    let rc = unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_SEARCH, keyring, key_type.as_ptr(), description.as_ptr(), 0 as c_long)
    };
    Errno::result(rc).and_then(|s| i32::try_from(s).map_err(|_| Errno::ERANGE))
}

/// KEYCTL_READ of key `serial` into `buf` (tests prove with it that a logon key cannot be read).
#[cfg(test)]
pub(crate) fn keyctl_read(serial: i32, buf: &mut [u8]) -> std::result::Result<c_long, Errno> {
    // SAFETY: `buf` is writable for its full length, which is passed as the size.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_READ, c_long::from(serial), buf.as_mut_ptr(), buf.len()) };
    Errno::result(rc)
}

/// Bind an AF_ALG socket to the algorithm `name` of `kind` (`skcipher`, `hash`): the kernel's
/// crypto API then has it, loading its modules on demand as it does for dm-crypt.
/// EAFNOSUPPORT: no AF_ALG here (modules af_alg, algif_*); ENOENT: no such algorithm.
pub(crate) fn alg_bind(kind: &str, name: &str) -> std::result::Result<(), Errno> {
    let mut addr = libc::sockaddr_alg {
        salg_family: libc::sa_family_t::try_from(libc::AF_ALG).map_err(|_| Errno::EAFNOSUPPORT)?,
        salg_type: [0; 14],
        salg_feat: 0,
        salg_mask: 0,
        salg_name: [0; 64],
    };
    if kind.len() >= addr.salg_type.len() || name.len() >= addr.salg_name.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    addr.salg_type[..kind.len()].copy_from_slice(kind.as_bytes());
    addr.salg_name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: plain socket(2) with constant arguments; it takes no memory.
    let fd = Errno::result(unsafe { libc::socket(libc::AF_ALG, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is the socket just made and closed only below; `addr` is a fully initialised
    // sockaddr_alg that lives across the call, and its exact size is passed.
    let bound = Errno::result(unsafe {
        libc::bind(
            fd,
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_alg>()).map_err(|_| Errno::EINVAL)?,
        )
    });
    // SAFETY: `fd` is ours and not used after this.
    unsafe { libc::close(fd) };
    bound.map(drop)
}

/// swapon(2) with default priority and no discard (the volume is freshly keyed; nothing to trim).
pub(crate) fn swapon(dev: &Path) -> Result<()> {
    let c = cpath("swapon", dev)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; flags 0 are valid.
    let r = unsafe { libc::swapon(c.as_ptr(), 0) };
    if r != 0 {
        return Err(Error::os("swapon", dev.display(), io::Error::last_os_error()));
    }
    Ok(())
}

pub(crate) fn swapoff(dev: &Path) -> Result<()> {
    let c = cpath("swapoff", dev)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let r = unsafe { libc::swapoff(c.as_ptr()) };
    if r != 0 {
        return Err(Error::os("swapoff", dev.display(), io::Error::last_os_error()));
    }
    Ok(())
}

/// How a program run by [`spawn_wait`] ended, and the last of what it wrote to stderr.
pub(crate) struct Exited {
    pub(crate) success: bool,
    /// `exit status: N` or `signal: N (SIGNAME)`, as std's `ExitStatus` shows them.
    pub(crate) status: String,
    /// The last 8 KiB of its stderr.
    pub(crate) stderr: Vec<u8>,
}

/// Run `program` with `args` (argv[0] is `program`) and the current environment; wait for it.
/// stdin and stdout are /dev/null, stderr is kept. SIGPIPE is reset to its default, which this
/// process (as every Rust program) ignores. posix_spawn(3) instead of std::process::Command: the
/// latter costs ~50 KB of a binary that lives in every initramfs.
pub(crate) fn spawn_wait(program: &Path, args: &[String]) -> io::Result<Exited> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitStatus};
    use std::os::fd::AsRawFd;

    let nul = |_| io::Error::from(io::ErrorKind::InvalidInput);
    let path = CString::new(program.as_os_str().as_bytes()).map_err(nul)?;
    let mut argv = vec![path.clone()];
    for a in args {
        argv.push(CString::new(a.as_bytes()).map_err(nul)?);
    }
    let mut envp = Vec::new();
    for (k, v) in std::env::vars_os() {
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(CString::new(kv).map_err(nul)?);
    }
    let ptrs = |v: &[CString]| v.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
    let (argv_p, envp_p) = (ptrs(&argv), ptrs(&envp));
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut sigdef = SigSet::empty();
    sigdef.add(Signal::SIGPIPE);
    let empty = SigSet::empty();
    let flags = libc::c_short::try_from(libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;

    let mut pid: libc::pid_t = 0;
    // SAFETY: the file-actions and attribute objects are initialised before use and destroyed
    // after posix_spawn, on this stack frame; every pointer passed (the /dev/null literal, `path`,
    // the NULL-terminated `argv_p`/`envp_p` arrays into `argv`/`envp`, the sigsets) outlives the
    // call; `write` is an open fd that stays open until after it. The return values of init and
    // the adders are checked: each fails only for lack of memory.
    let rc = unsafe {
        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        let mut rc = libc::posix_spawn_file_actions_init(actions.as_mut_ptr());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        rc = libc::posix_spawnattr_init(attr.as_mut_ptr());
        if rc != 0 {
            libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
            return Err(io::Error::from_raw_os_error(rc));
        }
        let (a, at) = (actions.as_mut_ptr(), attr.as_mut_ptr());
        let null = c"/dev/null".as_ptr();
        for r in [
            libc::posix_spawn_file_actions_addopen(a, 0, null, libc::O_RDONLY, 0),
            libc::posix_spawn_file_actions_addopen(a, 1, null, libc::O_WRONLY, 0),
            libc::posix_spawn_file_actions_adddup2(a, write.as_raw_fd(), 2),
            libc::posix_spawnattr_setsigdefault(at, sigdef.as_ref()),
            libc::posix_spawnattr_setsigmask(at, empty.as_ref()),
            libc::posix_spawnattr_setflags(at, flags),
        ] {
            if rc == 0 {
                rc = r;
            }
        }
        if rc == 0 {
            rc = libc::posix_spawn(&mut pid, path.as_ptr(), a, at, argv_p.as_ptr().cast(), envp_p.as_ptr().cast());
        }
        libc::posix_spawn_file_actions_destroy(a);
        libc::posix_spawnattr_destroy(at);
        rc
    };
    drop(write); // only the child holds the pipe's write end now: EOF when it is done
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let mut stderr = Vec::new();
    let mut file = std::fs::File::from(read);
    let mut buf = [0u8; 4096];
    loop {
        match io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                stderr.extend_from_slice(&buf[..n]);
                if stderr.len() > 16 << 10 {
                    stderr.drain(..stderr.len() - (8 << 10));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break, // the status below still says how it ended
        }
    }
    if stderr.len() > 8 << 10 {
        stderr.drain(..stderr.len() - (8 << 10));
    }
    let pid = nix::unistd::Pid::from_raw(pid);
    loop {
        let (success, status) = match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(WaitStatus::Exited(_, code)) => (code == 0, format!("exit status: {code}")),
            Ok(WaitStatus::Signaled(_, sig, _)) => (false, format!("signal: {} ({})", sig as i32, sig.as_str())),
            Ok(_) => continue, // stopped or continued: not an end
        };
        return Ok(Exited { success, status, stderr });
    }
}

/// Call a size-query-then-fill xattr function until the buffer is large enough.
fn sized_call(mut f: impl FnMut(*mut libc::c_void, usize) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    loop {
        let n = f(std::ptr::null_mut(), 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; n.unsigned_abs()];
        let m = f(buf.as_mut_ptr().cast(), buf.len());
        if m >= 0 {
            buf.truncate(m.unsigned_abs());
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e); // ERANGE: it grew between the calls; ask again
        }
    }
}

/// The names of a file's extended attributes (not following symlinks). Empty where the file
/// system has none or does not support them.
pub(crate) fn list_xattrs(p: &Path) -> Result<Vec<CString>> {
    let c = cpath("list extended attributes of", p)?;
    // SAFETY: `c` is NUL-terminated and lives across the call; `buf`/`len` describe a writable
    // buffer of exactly `len` bytes (or null/0 to query the size), as llistxattr(2) requires.
    let r = sized_call(|buf, len| unsafe { libc::llistxattr(c.as_ptr(), buf.cast(), len) });
    match r {
        Ok(list) => {
            Ok(list.split(|b| *b == 0).filter(|n| !n.is_empty()).filter_map(|n| CString::new(n).ok()).collect())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(Error::os("list extended attributes of", p.display(), e)),
    }
}

pub(crate) fn get_xattr(p: &Path, name: &CStr) -> Result<Vec<u8>> {
    let c = cpath("read extended attribute of", p)?;
    // SAFETY: both strings are NUL-terminated and live across the call; `buf`/`len` describe a
    // writable buffer of `len` bytes (or null/0 to query the size), as lgetxattr(2) requires.
    sized_call(|buf, len| unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf, len) })
        .map_err(|e| Error::os("read extended attribute", format!("{} of {}", name.to_string_lossy(), p.display()), e))
}

pub(crate) fn set_xattr(p: &Path, name: &CStr, value: &[u8]) -> Result<()> {
    let c = cpath("set extended attribute of", p)?;
    // SAFETY: both strings are NUL-terminated and live across the call; `value` is a readable
    // buffer of `value.len()` bytes; flags 0 means create or replace.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r != 0 {
        let what = format!("{} of {}", name.to_string_lossy(), p.display());
        return Err(Error::os("set extended attribute", what, io::Error::last_os_error()));
    }
    Ok(())
}

/// Check that the kernel's crypto API offers each (AF_ALG type, name) dm-crypt will ask for, after
/// loading what modules it may need with `modprobe` (`crypto-<name>` aliases, as the kernel's own
/// request_module does). Without AF_ALG in the kernel nothing can be checked ahead: the table load
/// then says what is missing (execute.rs names it).
pub(crate) fn check_kernel_crypto(algorithms: &[(&'static str, String)], mut modprobe: impl FnMut(&str)) -> Result<()> {
    for (kind, name) in algorithms {
        let mut r = alg_bind(kind, name);
        if r == Err(Errno::EAFNOSUPPORT) {
            modprobe("af_alg");
            modprobe(&format!("algif_{kind}"));
            r = alg_bind(kind, name);
        }
        if r == Err(Errno::ENOENT) {
            // "xts(aes)": crypto-xts(aes), crypto-xts, crypto-aes; and the socket type itself,
            // whose absence says ENOENT too.
            modprobe(&format!("algif_{kind}"));
            modprobe(&format!("crypto-{name}"));
            for part in name.split(['(', ')', ',']).filter(|p| !p.is_empty()) {
                modprobe(&format!("crypto-{part}"));
            }
            r = alg_bind(kind, name);
        }
        // ENOENT still: the algorithm is missing, or the socket type is (algif_* not in the
        // image). An algorithm every kernel has tells which: without the type nothing can be
        // checked ahead.
        let sentinel = if *kind == "hash" { "digest_null" } else { "ecb(cipher_null)" };
        if r == Err(Errno::ENOENT) && alg_bind(kind, sentinel) == Err(Errno::ENOENT) {
            r = Err(Errno::EAFNOSUPPORT);
        }
        match r {
            Ok(()) => {}
            Err(Errno::EAFNOSUPPORT) => {
                log::debug!("AF_ALG is not available: {name} is checked at the table load");
                return Ok(());
            }
            Err(e) => {
                return Err(Error::KernelCrypto { name: name.clone(), source: io::Error::from_raw_os_error(e as i32) })
            }
        }
    }
    Ok(())
}

/// One Linux AIO request (`struct iocb`, linux/aio_abi.h): 64 bytes, laid out for a
/// little-endian machine (x86_64, aarch64: `aio_key` before `aio_rw_flags`).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

/// One completion (`struct io_event`).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const IOCB_CMD_PREAD: u16 = 0;
// The kernel's sizes, and the field order above holds only on a little-endian machine.
const _: () = assert!(std::mem::size_of::<Iocb>() == 64 && std::mem::size_of::<IoEvent>() == 32);
const _: () = assert!(cfg!(target_endian = "little"), "struct iocb's aio_key/aio_rw_flags order is little-endian");

/// An AIO context, destroyed when dropped: io_destroy(2) waits for every request still in
/// flight, so the buffers they write into must outlive it (declared before it).
struct AioContext(libc::c_ulong);

impl Drop for AioContext {
    fn drop(&mut self) {
        // SAFETY: io_destroy takes the context by value; it was made by io_setup below and is
        // destroyed once, here.
        unsafe { libc::syscall(libc::SYS_io_destroy, self.0) };
    }
}

/// Read every `(offset, len)` of `reads` from `fd` at once, through Linux AIO: one io_submit of
/// all of them, so the device gets them together (a disk's 70 probe reads one after the other
/// cost a round trip each). `fd` must be open with O_DIRECT (without it io_submit reads one at a
/// time); `buf` receives the reads back to back, in order, and must be aligned and sized as
/// O_DIRECT wants (the caller's business: the kernel says EINVAL otherwise). An error of any
/// kind, a short read included, is returned as is: the caller then reads the ordinary way.
pub(crate) fn read_all_at(
    fd: std::os::fd::BorrowedFd<'_>,
    reads: &[(u64, usize)],
    buf: &mut [u8],
) -> std::result::Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let total: usize = reads.iter().map(|&(_, len)| len).sum();
    if total > buf.len() || reads.is_empty() {
        return Err(Errno::EINVAL);
    }
    let n = reads.len();
    let fildes = u32::try_from(fd.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let mut iocbs: Vec<Iocb> = Vec::with_capacity(n);
    let mut at = 0usize;
    for (i, &(offset, len)) in reads.iter().enumerate() {
        let region = buf.get_mut(at..at + len).ok_or(Errno::EINVAL)?;
        iocbs.push(Iocb {
            data: i as u64,
            opcode: IOCB_CMD_PREAD,
            fildes,
            buf: region.as_mut_ptr() as u64,
            nbytes: len as u64,
            offset: i64::try_from(offset).map_err(|_| Errno::EINVAL)?,
            ..Iocb::default()
        });
        at += len;
    }
    let mut ctx: libc::c_ulong = 0;
    let nr = libc::c_long::try_from(n).map_err(|_| Errno::EINVAL)?;
    // SAFETY: io_setup writes one aio_context_t (an unsigned long) to `ctx`, which it must be 0.
    Errno::result(unsafe { libc::syscall(libc::SYS_io_setup, nr, &mut ctx as *mut libc::c_ulong) })?;
    let ctx = AioContext(ctx);
    let mut ptrs: Vec<*mut Iocb> = iocbs.iter_mut().map(|c| c as *mut Iocb).collect();
    let mut submitted = 0usize;
    while submitted < n {
        let rest = ptrs.get_mut(submitted..).ok_or(Errno::EINVAL)?;
        let count = libc::c_long::try_from(rest.len()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `rest` holds pointers to live iocbs (in `iocbs`, not moved or freed until after
        // the context is destroyed) whose buffers are disjoint parts of `buf`, which outlives
        // the context too; the kernel reads `count` pointers from `rest`.
        let r = unsafe { libc::syscall(libc::SYS_io_submit, ctx.0, count, rest.as_mut_ptr()) };
        match Errno::result(r) {
            Ok(k) if k > 0 => submitted += usize::try_from(k).map_err(|_| Errno::EINVAL)?,
            Ok(_) => return Err(Errno::EAGAIN),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e), // the context's drop waits for those in flight
        }
    }
    let mut events = vec![IoEvent::default(); n];
    let mut done = 0usize;
    let mut result = Ok(());
    while done < n {
        let rest = events.get_mut(done..).ok_or(Errno::EINVAL)?;
        let count = libc::c_long::try_from(rest.len()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: the kernel writes at most `count` io_events into `rest`, which has room for
        // them; no timeout (a null pointer): as a blocking pread would.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_getevents,
                ctx.0,
                1 as libc::c_long,
                count,
                rest.as_mut_ptr(),
                std::ptr::null::<u8>(),
            )
        };
        match Errno::result(r) {
            Ok(k) => {
                let k = usize::try_from(k).map_err(|_| Errno::EINVAL)?;
                for e in rest.iter().take(k) {
                    let want = usize::try_from(e.data)
                        .ok()
                        .and_then(|i| reads.get(i))
                        .and_then(|&(_, len)| i64::try_from(len).ok());
                    if e.res < 0 {
                        result = result.and(Err(Errno::from_raw(i32::try_from(-e.res).unwrap_or(libc::EIO))));
                    } else if Some(e.res) != want {
                        result = result.and(Err(Errno::EIO)); // short: the end of the device
                    }
                }
                done += k;
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    drop(ctx);
    result
}

/// openat(2) of `path` relative to `dir` (the working directory when `None`), as an owned
/// descriptor (nix 0.29 returns a raw one).
pub(crate) fn openat(
    dir: Option<&std::os::fd::OwnedFd>,
    path: &(impl nix::NixPath + ?Sized),
    flags: nix::fcntl::OFlag,
    mode: nix::sys::stat::Mode,
) -> std::result::Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = nix::fcntl::openat(dir.map(|d| d.as_raw_fd()), path, flags | nix::fcntl::OFlag::O_CLOEXEC, mode)?;
    // SAFETY: openat just returned `fd`, a new descriptor that nothing else owns or closes.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_crypto_api_is_asked() {
        // This machine's kernel may lack AF_ALG: then nothing is checked ahead, by design.
        let mut loaded = Vec::new();
        let r = check_kernel_crypto(&[("skcipher", "no-such-mode(aes)".into())], |m| loaded.push(m.to_string()));
        match alg_bind("skcipher", "cbc(aes)") {
            Err(Errno::EAFNOSUPPORT) => assert!(r.is_ok()),
            _ => {
                let e = r.unwrap_err().to_string();
                assert!(e.starts_with("the kernel does not offer no-such-mode(aes)"), "{e}");
                assert!(loaded.contains(&"crypto-no-such-mode(aes)".to_string()), "{loaded:?}");
                assert!(loaded.contains(&"crypto-aes".to_string()), "{loaded:?}");
            }
        }
        assert_eq!(alg_bind("skcipher", &"x".repeat(64)), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn xattr_roundtrip_on_a_temp_dir() {
        let d = std::env::temp_dir().join(format!("ephemcrypt-xattr-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let name = CString::new("user.ephemcrypt-test").unwrap();
        match set_xattr(&d, &name, b"v1") {
            Ok(()) => {
                assert!(list_xattrs(&d).unwrap().contains(&name));
                assert_eq!(get_xattr(&d, &name).unwrap(), b"v1");
            }
            // tmpfs without user xattrs: the error still names attribute and path.
            Err(e) => assert!(e.to_string().contains("user.ephemcrypt-test of"), "{e}"),
        }
        let e = get_xattr(Path::new("/nonexistent/x"), &name).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x") && e.contains("ENOENT"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
