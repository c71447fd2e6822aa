//! The few system calls nix 0.29 lacks besides the key calls in `key.rs`: swapon/swapoff and the
//! extended-attribute calls used to copy SELinux labels and ACLs. Each is a thin, checked wrapper.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

fn cpath(op: &'static str, p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::msg(format!("{op} {}: the path contains a NUL byte", p.display())))
}

/// swapon(2) with default priority and no discard (the volume is freshly keyed; nothing to trim).
pub fn swapon(dev: &Path) -> Result<()> {
    let c = cpath("swapon", dev)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; flags 0 are valid.
    let r = unsafe { libc::swapon(c.as_ptr(), 0) };
    if r != 0 {
        return Err(Error::os("swapon", dev.display(), io::Error::last_os_error()));
    }
    Ok(())
}

pub fn swapoff(dev: &Path) -> Result<()> {
    let c = cpath("swapoff", dev)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let r = unsafe { libc::swapoff(c.as_ptr()) };
    if r != 0 {
        return Err(Error::os("swapoff", dev.display(), io::Error::last_os_error()));
    }
    Ok(())
}

/// Call a size-query-then-fill xattr function until the buffer is large enough.
fn sized_call(mut f: impl FnMut(*mut libc::c_void, usize) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    loop {
        let n = f(std::ptr::null_mut(), 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; n as usize];
        let m = f(buf.as_mut_ptr().cast(), buf.len());
        if m >= 0 {
            buf.truncate(m as usize);
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
pub fn list_xattrs(p: &Path) -> Result<Vec<CString>> {
    let c = cpath("list extended attributes of", p)?;
    // SAFETY: `c` is NUL-terminated and lives across the call; `buf`/`len` describe a writable
    // buffer of exactly `len` bytes (or null/0 to query the size), as llistxattr(2) requires.
    let r = sized_call(|buf, len| unsafe { libc::llistxattr(c.as_ptr(), buf.cast(), len) });
    match r {
        Ok(list) => Ok(list.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| CString::new(n).unwrap()).collect()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(Error::os("list extended attributes of", p.display(), e)),
    }
}

pub fn get_xattr(p: &Path, name: &CStr) -> Result<Vec<u8>> {
    let c = cpath("read extended attribute of", p)?;
    // SAFETY: both strings are NUL-terminated and live across the call; `buf`/`len` describe a
    // writable buffer of `len` bytes (or null/0 to query the size), as lgetxattr(2) requires.
    sized_call(|buf, len| unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf, len) })
        .map_err(|e| Error::os("read extended attribute", format!("{} of {}", name.to_string_lossy(), p.display()), e))
}

pub fn set_xattr(p: &Path, name: &CStr, value: &[u8]) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
