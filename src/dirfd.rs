//! Files written where another account may plant links: node_exporter's textfile directory
//! (owned by `prometheus` on Debian), /run/systemd/system, /run/ephemcrypt, a path an operator
//! names. Every write goes through a directory file descriptor: the directory is reached one
//! component at a time, each opened `O_DIRECTORY|O_NOFOLLOW`; the file is made under a fresh
//! random name with `O_CREAT|O_EXCL|O_NOFOLLOW`, written, fsynced and renamed over its final
//! name with `renameat` (which replaces a link planted at that name, never writes through it).
//!
//! A symbolic link on the way to the directory is followed only where nobody but root (or this
//! process's own user) could have put it: in a directory owned by one of them that neither group
//! nor others may write (`/var/run -> /run` on Debian). In a directory another account can
//! write, or a sticky one like /tmp, a link is refused and the error names it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::error::{Error, Result};

/// How many fresh names are tried before giving up (each collision is someone else's file).
const NAME_TRIES: usize = 16;

/// An open directory and the path it was reached by (for errors).
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl Dir {
    /// The directory `path` (relative paths from the working directory), its missing components
    /// made with mode 0755 when `create`; see the module comment for links on the way.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Dir> {
        let start = if path.is_absolute() { Path::new("/") } else { Path::new(".") };
        let fd = crate::syscall::openat(None, start, dir_flags(), Mode::empty())
            .map_err(|e| Error::errno("open directory", start.display(), e))?;
        let mut dir = Dir { fd, path: start.to_path_buf() };
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => dir = dir.child(OsStr::new(".."), false)?,
                Component::Normal(name) => dir = dir.child(name, create)?,
            }
        }
        Ok(dir)
    }

    /// The subdirectory `name`, made (0755) when missing and `create`.
    pub(crate) fn child(&self, name: &OsStr, create: bool) -> Result<Dir> {
        let path = self.path.join(name);
        let open = || crate::syscall::openat(Some(&self.fd), name, dir_flags(), Mode::empty());
        let fd = match open() {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                match nix::sys::stat::mkdirat(Some(self.fd.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(Error::errno("create directory", path.display(), e)),
                }
                open().map_err(|e| Error::errno("open directory", path.display(), e))?
            }
            // O_NOFOLLOW on a link: ELOOP (or ENOTDIR with O_DIRECTORY on some kernels).
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) if self.is_link(name) => {
                if !self.trusted()? {
                    return Err(Error::os(
                        "open directory",
                        path.display(),
                        std::io::Error::other(
                            "a symbolic link in a directory another account can write: not followed \
                             (name the real directory)",
                        ),
                    ));
                }
                // A link root (or we) made: follow it, as the kernel would.
                let follow = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                crate::syscall::openat(Some(&self.fd), name, follow, Mode::empty())
                    .map_err(|e2| Error::errno("open directory", path.display(), if e2 == e { e } else { e2 }))?
            }
            Err(e) => return Err(Error::errno("open directory", path.display(), e)),
        };
        Ok(Dir { fd, path })
    }

    fn stat_at(&self, name: &OsStr) -> std::result::Result<FileStat, Errno> {
        nix::sys::stat::fstatat(Some(self.fd.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    fn is_link(&self, name: &OsStr) -> bool {
        self.stat_at(name).is_ok_and(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
    }

    /// Only root or this process's user could have put a link here.
    fn trusted(&self) -> Result<bool> {
        let s = nix::sys::stat::fstat(self.fd.as_raw_fd()).map_err(|e| Error::errno("stat", self.path.display(), e))?;
        let owner_ok = s.st_uid == 0 || s.st_uid == nix::unistd::geteuid().as_raw();
        Ok(owner_ok && s.st_mode & 0o022 == 0)
    }

    /// A fresh name for a temporary file: random, hidden, never one a reader collects (`.tmp`).
    fn fresh_name() -> OsString {
        let mut r = [0u8; 8];
        if crate::syscall::getrandom(&mut r, true).ok() != Some(r.len()) {
            // Before the RNG is seeded: unique enough with the pid and the clock; O_EXCL makes a
            // collision a retry, never a write through someone else's file.
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            #[allow(clippy::cast_possible_truncation)] // the clock's low 64 bits, on purpose
            let nanos = t.as_nanos() as u64;
            r = (nanos ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
        }
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        OsString::from(format!(".ephemcrypt.{hex}.tmp"))
    }

    /// The regular file `name` in this directory opened for appending (created with `mode` where
    /// missing): never through a link, never blocking on a FIFO planted there.
    pub(crate) fn open_append(&self, name: &OsStr, mode: u32) -> Result<std::fs::File> {
        let path = self.path.join(name);
        check_name(name, &path)?;
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_APPEND
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = crate::syscall::openat(Some(&self.fd), name, flags, Mode::from_bits_truncate(mode))
            .map_err(|e| Error::errno("open", path.display(), e))?;
        let s = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::errno("stat", path.display(), e))?;
        if SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(Error::invalid(path.display(), "a regular file", "another kind of file"));
        }
        Ok(std::fs::File::from(fd))
    }

    /// Write `bytes` as `name` in this directory, atomically, with exactly `mode`: a reader sees
    /// the old file or the new one; a link at `name` is replaced, never written through.
    pub(crate) fn write_file(&self, name: &OsStr, bytes: &[u8], mode: u32) -> Result<()> {
        self.write_file_via(name, bytes, mode, Dir::fresh_name)
    }

    /// [`Dir::write_file`] with the temporary names from `fresh` (tests plant links at them).
    fn write_file_via(&self, name: &OsStr, bytes: &[u8], mode: u32, mut fresh: impl FnMut() -> OsString) -> Result<()> {
        let target = self.path.join(name);
        check_name(name, &target)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut tries = 0;
        let (tmp, fd) = loop {
            let tmp = fresh();
            match crate::syscall::openat(Some(&self.fd), tmp.as_os_str(), flags, Mode::from_bits_truncate(0o600)) {
                Ok(fd) => break (tmp, fd),
                Err(Errno::EEXIST) if tries + 1 < NAME_TRIES => tries += 1,
                Err(e) => return Err(Error::errno("create", self.path.join(&tmp).display(), e)),
            }
        };
        let tmp_path = self.path.join(&tmp);
        let written = (|| {
            let mut f = File::from(fd);
            nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| Error::errno("set mode of", tmp_path.display(), e))?;
            f.write_all(bytes).map_err(|e| Error::os("write", tmp_path.display(), e))?;
            f.sync_all().map_err(|e| Error::os("sync", tmp_path.display(), e))?;
            let fd = Some(self.fd.as_raw_fd());
            nix::fcntl::renameat(fd, tmp.as_os_str(), fd, name)
                .map_err(|e| Error::errno("rename into place", target.display(), e))
        })();
        if let Err(e) = written {
            let _ = nix::unistd::unlinkat(Some(self.fd.as_raw_fd()), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        self.sync();
        Ok(())
    }

    /// Make `name` a symbolic link to `target`, atomically (replacing what was there).
    pub(crate) fn symlink(&self, target: &Path, name: &OsStr) -> Result<()> {
        let link = self.path.join(name);
        check_name(name, &link)?;
        let mut tries = 0;
        let tmp = loop {
            let tmp = Dir::fresh_name();
            match nix::unistd::symlinkat(target, Some(self.fd.as_raw_fd()), tmp.as_os_str()) {
                Ok(()) => break tmp,
                Err(Errno::EEXIST) if tries + 1 < NAME_TRIES => tries += 1,
                Err(e) => return Err(Error::errno("link", link.display(), e)),
            }
        };
        let fd = Some(self.fd.as_raw_fd());
        if let Err(e) = nix::fcntl::renameat(fd, tmp.as_os_str(), fd, name) {
            let _ = nix::unistd::unlinkat(fd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(Error::errno("link", link.display(), e));
        }
        self.sync();
        Ok(())
    }

    /// Remove the file (or link) `name`; one already gone is fine.
    pub(crate) fn remove(&self, name: &OsStr) -> Result<()> {
        match nix::unistd::unlinkat(Some(self.fd.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::errno("remove", self.path.join(name).display(), e)),
        }
    }

    /// The directory's entries to its disk (the rename); a file system that cannot is no error.
    fn sync(&self) {
        let _ = nix::unistd::fsync(self.fd.as_raw_fd());
    }
}

/// `name` is one plain component (no `/`, not `.` or `..`).
fn check_name(name: &OsStr, path: &Path) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(Error::invalid("file path", "a path that ends in a file name", path.display()));
    }
    Ok(())
}

/// Write `text` to `path` through [`Dir`]: its directory reached without following a link
/// another account could have planted (made where missing), the file renamed into place.
pub(crate) fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<()> {
    // A path without a file name ("", "/", "x/..") names nothing to write.
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::invalid("file path", "a path that ends in a file name", path.display()));
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    Dir::open(dir, true)?.write_file(name, text.as_bytes(), mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A directory another account can write, as node_exporter's textfile directory is for
    /// `prometheus`: mode 0777, and as root also owned by nobody (works unprivileged too).
    fn hostile_dir(p: &Path) {
        fs::create_dir_all(p).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o777)).unwrap();
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(p, Some(65534.into()), Some(65534.into())).unwrap();
        }
    }

    fn base(name: &str) -> PathBuf {
        let b = std::env::temp_dir().join(format!("ephemcrypt-dirfd-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&b);
        fs::create_dir_all(&b).unwrap();
        fs::set_permissions(&b, fs::Permissions::from_mode(0o755)).unwrap();
        b
    }

    fn is_link(p: &Path) -> bool {
        fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
    }

    #[test]
    fn a_link_at_the_final_name_is_replaced_not_written_through() {
        let b = base("final");
        let (textfile, victim) = (b.join("textfile"), b.join("shadow"));
        hostile_dir(&textfile);
        fs::write(&victim, "precious").unwrap();
        let prom = textfile.join("ephemcrypt.prom");
        symlink(&victim, &prom).unwrap();
        // A dangling link too: it must not create its target.
        let dangling = textfile.join("other.prom");
        symlink(b.join("created-through-link"), &dangling).unwrap();
        write_atomic(&prom, "metrics\n", 0o644).unwrap();
        write_atomic(&dangling, "metrics\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!b.join("created-through-link").exists());
        // rename(2) replaced the link itself with the new file.
        assert!(!is_link(&prom) && !is_link(&dangling));
        assert_eq!(fs::read_to_string(&prom).unwrap(), "metrics\n");
        assert_eq!(fs::metadata(&prom).unwrap().mode() & 0o7777, 0o644);
        // Nothing else was left behind in the directory.
        let mut names: Vec<_> = fs::read_dir(&textfile).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["ephemcrypt.prom", "other.prom"]);
        fs::remove_dir_all(&b).unwrap();
    }

    #[test]
    fn links_at_the_temporary_names_are_never_followed() {
        let b = base("tmp");
        let (textfile, victim) = (b.join("textfile"), b.join("shadow"));
        hostile_dir(&textfile);
        fs::write(&victim, "precious").unwrap();
        // The name the old writer used, and two the random generator will "draw".
        for n in [".ephemcrypt.prom.tmp", ".planted-1", ".planted-2"] {
            symlink(&victim, textfile.join(n)).unwrap();
        }
        write_atomic(&textfile.join("ephemcrypt.prom"), "fresh\n", 0o600).unwrap();
        let dir = Dir::open(&textfile, false).unwrap();
        let mut names = [".planted-1", ".planted-2", ".ours"].into_iter().map(OsString::from);
        dir.write_file_via(OsStr::new("ephemcrypt.prom"), b"again\n", 0o600, || names.next().unwrap()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(fs::read_to_string(textfile.join("ephemcrypt.prom")).unwrap(), "again\n");
        assert_eq!(fs::metadata(textfile.join("ephemcrypt.prom")).unwrap().mode() & 0o7777, 0o600);
        for n in [".ephemcrypt.prom.tmp", ".planted-1", ".planted-2"] {
            assert!(is_link(&textfile.join(n)), "{n} untouched");
        }
        // Every name taken: an error naming the directory and EEXIST, the victim unchanged.
        let e = dir.write_file_via(OsStr::new("x.prom"), b"x", 0o644, || ".planted-1".into()).unwrap_err().to_string();
        assert!(e.contains(&textfile.join(".planted-1").display().to_string()) && e.contains("EEXIST"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        fs::remove_dir_all(&b).unwrap();
    }

    #[test]
    fn a_linked_directory_is_refused_where_another_account_could_have_made_it() {
        let b = base("dir");
        let (owned, elsewhere) = (b.join("prometheus"), b.join("etc"));
        hostile_dir(&owned);
        fs::create_dir_all(&elsewhere).unwrap();
        symlink(&elsewhere, owned.join("node-exporter")).unwrap();
        let e = write_atomic(&owned.join("node-exporter/ephemcrypt.prom"), "x", 0o644).unwrap_err().to_string();
        assert!(e.contains(&owned.join("node-exporter").display().to_string()) && e.contains("symbolic link"), "{e}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing written through the link");
        // A link in a directory only we (or root) can write is ours: followed (/var/run -> /run).
        let trusted = b.join("trusted");
        fs::create_dir_all(&trusted).unwrap();
        fs::set_permissions(&trusted, fs::Permissions::from_mode(0o755)).unwrap();
        symlink(&elsewhere, trusted.join("run")).unwrap();
        write_atomic(&trusted.join("run/status.json"), "{}", 0o644).unwrap();
        assert_eq!(fs::read_to_string(elsewhere.join("status.json")).unwrap(), "{}");
        // Missing directories are made (0755), relative paths and `..` work.
        write_atomic(&b.join("new/sub/../deep/file"), "y", 0o644).unwrap();
        assert_eq!(fs::read_to_string(b.join("new/deep/file")).unwrap(), "y");
        assert!(write_atomic(&b.join("new/.."), "z", 0o644).is_err());
        fs::remove_dir_all(&b).unwrap();
    }

    #[test]
    fn links_are_replaced_atomically_and_removal_tolerates_absence() {
        let b = base("link");
        let d = Dir::open(&b, false).unwrap();
        d.symlink(Path::new("../a.service"), OsStr::new("a.service")).unwrap();
        d.symlink(Path::new("../b.service"), OsStr::new("a.service")).unwrap();
        assert_eq!(fs::read_link(b.join("a.service")).unwrap(), Path::new("../b.service"));
        d.remove(OsStr::new("a.service")).unwrap();
        d.remove(OsStr::new("a.service")).unwrap();
        assert_eq!(fs::read_dir(&b).unwrap().count(), 0);
        fs::remove_dir_all(&b).unwrap();
    }
}
