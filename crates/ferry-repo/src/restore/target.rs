//! The restore target directory, reached only through its directory descriptor: every entry
//! is created relative to a directory fd, and every path below the target is resolved
//! without following symlinks (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or a
//! walk of `openat(O_NOFOLLOW | O_DIRECTORY)` where `openat2` is missing). So whatever the
//! snapshot holds and whatever the target already contains, nothing is written outside it.
//!
//! Existing entries: a directory is kept where the snapshot has a directory and refused where
//! it has anything else; a file, symlink or special file is removed (never followed, never
//! written through) and created anew.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The directory a restore writes below.
pub(crate) struct TargetDir {
    root: OwnedFd,
    path: PathBuf,
}

/// Cleared once the kernel says it has no `openat2` (Linux < 5.6): then paths are walked.
static HAVE_OPENAT2: AtomicBool = AtomicBool::new(true);

fn kind_of(mode: u32) -> &'static str {
    match rfs::FileType::from_raw_mode(mode as _) {
        rfs::FileType::Directory => "a directory",
        rfs::FileType::Symlink => "a symlink",
        rfs::FileType::RegularFile => "a file",
        _ => "a special file",
    }
}

/// An entry of the wrong type is in the way.
fn conflict(found: &str, want: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "the target already holds {found} here where the snapshot has {want}; move it away \
             or restore into an empty directory"
        ),
    )
}

/// `ELOOP`/`ENOTDIR` on the way down mean a symlink or a non-directory sits where restore
/// needs a directory: say so instead of "too many levels of symbolic links".
fn explain(e: Errno) -> io::Error {
    match e {
        Errno::LOOP | Errno::NOTDIR | Errno::XDEV => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a symlink or non-directory is in the way ({e}); restore never follows symlinks \
                 below its target"
            ),
        ),
        e => e.into(),
    }
}

/// Splits a relative path into its parent and last component.
fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a path below the target"),
        )),
    }
}

impl TargetDir {
    /// Creates `path` (and its parents) when missing and opens it. The target itself may be
    /// reached through symlinks: the caller chose it.
    pub(crate) fn open(path: &Path) -> io::Result<TargetDir> {
        std::fs::create_dir_all(path)?;
        let root = rfs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(TargetDir {
            root,
            path: path.to_path_buf(),
        })
    }

    /// The full path of an entry, for messages.
    pub(crate) fn display(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens `rel` below the root with `flags`, following no symlink on the way or at the end.
    fn open_beneath(&self, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        if rel.as_os_str().is_empty() {
            return Ok(rfs::openat(&self.root, ".", flags, mode)?);
        }
        if HAVE_OPENAT2.load(Ordering::Relaxed) {
            let how =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rfs::openat2(&self.root, rel, flags, mode, how) {
                Err(Errno::NOSYS) => HAVE_OPENAT2.store(false, Ordering::Relaxed),
                // Some container seccomp profiles answer EPERM for syscalls they do not know.
                Err(Errno::PERM) => {}
                r => return r.map_err(explain),
            }
        }
        let (parent, name) = split(rel)?;
        let dir = self.walk(parent)?;
        rfs::openat(&dir, name, flags, mode).map_err(explain)
    }

    /// Opens a directory below the root one component at a time, never following a symlink.
    fn walk(&self, rel: &Path) -> io::Result<OwnedFd> {
        let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let mut dir = rfs::openat(&self.root, ".", dir_flags, Mode::empty())?;
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{rel:?} is not a plain path below the target"),
                ));
            };
            dir = rfs::openat(&dir, name, dir_flags, Mode::empty()).map_err(explain)?;
        }
        Ok(dir)
    }

    /// Opens a directory below the root (the root itself for an empty path).
    pub(crate) fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open_beneath(rel, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
    }

    /// Writes everything dirty on the target's file system to stable storage (`syncfs`): the
    /// restored files' data, their metadata and the directories, in one call.
    pub(crate) fn sync_file_system(&self) -> io::Result<()> {
        Ok(rfs::syncfs(&self.root)?)
    }

    /// Bytes free on the target's file system for an unprivileged writer.
    pub(crate) fn free_bytes(&self) -> io::Result<u64> {
        let st = rfs::fstatvfs(&self.root)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Opens an existing regular file below the root for reading.
    pub(crate) fn open_read(&self, rel: &Path) -> io::Result<File> {
        Ok(File::from(self.open_beneath(
            rel,
            OFlags::RDONLY,
            Mode::empty(),
        )?))
    }

    /// Opens an existing file that this restore created, for writing.
    pub(crate) fn open_write(&self, rel: &Path) -> io::Result<File> {
        Ok(File::from(self.open_beneath(
            rel,
            OFlags::WRONLY,
            Mode::empty(),
        )?))
    }

    /// Creates a new regular file (mode 0600 until its metadata is applied), replacing a
    /// file, symlink or special file of that name; an existing directory is refused.
    pub(crate) fn create_file(&self, rel: &Path) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let mode = Mode::from_raw_mode(0o600);
        match self.open_beneath(rel, flags, mode) {
            Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                let (parent, name) = split(rel)?;
                let dir = self.open_dir(parent)?;
                remove_non_dir(&dir, name, "a file")?;
                Ok(File::from(rfs::openat(
                    &dir,
                    name,
                    flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    mode,
                )?))
            }
            r => Ok(File::from(r?)),
        }
    }

    /// Renames `from` to `to` in the same directory, replacing a non-directory at `to`.
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (parent, from_name) = split(from)?;
        let (_, to_name) = split(to)?;
        let dir = self.open_dir(parent)?;
        match rfs::renameat(&dir, from_name, &dir, to_name) {
            Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => {
                Err(conflict("a directory", "a file"))
            }
            r => Ok(r?),
        }
    }

    /// Removes a non-directory below the root (a missing one is not an error).
    pub(crate) fn remove_file(&self, rel: &Path) -> io::Result<()> {
        let (parent, name) = split(rel)?;
        let dir = self.open_dir(parent)?;
        match rfs::unlinkat(&dir, name, AtFlags::empty()) {
            Err(Errno::NOENT) => Ok(()),
            r => Ok(r?),
        }
    }

    /// Removes a directory when it is empty; whether it was removed.
    pub(crate) fn remove_empty_dir(&self, rel: &Path) -> io::Result<bool> {
        let (parent, name) = split(rel)?;
        let dir = self.open_dir(parent)?;
        match rfs::unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(Errno::NOTEMPTY | Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Hard-links `dst` to the already restored `src`, replacing a non-directory at `dst`.
    pub(crate) fn hard_link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let (src_parent, src_name) = split(src)?;
        let (dst_parent, dst_name) = split(dst)?;
        let src_dir = self.open_dir(src_parent)?;
        let dst_dir = self.open_dir(dst_parent)?;
        // No AT_SYMLINK_FOLLOW: a symlink at `src` would be linked itself, never its target.
        let link = || rfs::linkat(&src_dir, src_name, &dst_dir, dst_name, AtFlags::empty());
        match link() {
            Err(Errno::EXIST) => {
                remove_non_dir(&dst_dir, dst_name, "a file")?;
                Ok(link()?)
            }
            r => Ok(r?),
        }
    }
}

/// Creates directory `name` in `dir` (mode 0700 until its metadata is applied); an existing
/// directory is kept, anything else there is refused. Whether it was created.
pub(crate) fn make_dir(dir: &impl AsFd, name: &OsStr) -> io::Result<bool> {
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => {
            let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            match rfs::FileType::from_raw_mode(st.st_mode) {
                rfs::FileType::Directory => Ok(false),
                _ => Err(conflict(kind_of(st.st_mode as u32), "a directory")),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates symlink `name` → `target` in `dir`, replacing a non-directory of that name.
pub(crate) fn make_symlink(dir: &impl AsFd, name: &OsStr, target: &[u8]) -> io::Result<()> {
    let target = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(target);
    let make = || rfs::symlinkat(target, dir, name);
    match make() {
        Err(Errno::EXIST) => {
            remove_non_dir(dir, name, "a symlink")?;
            Ok(make()?)
        }
        r => Ok(r?),
    }
}

/// Creates a fifo, socket or device node `name` in `dir`, replacing a non-directory.
pub(crate) fn make_node(
    dir: &impl AsFd,
    name: &OsStr,
    kind: rfs::FileType,
    perm: u32,
    dev: u64,
) -> io::Result<()> {
    let make = || rfs::mknodat(dir, name, kind, Mode::from_raw_mode(perm as _), dev as _);
    match make() {
        Err(Errno::EXIST) => {
            remove_non_dir(dir, name, "a special file")?;
            Ok(make()?)
        }
        r => Ok(r?),
    }
}

/// Removes `name` from `dir` unless it is a directory (which is refused: restore never
/// deletes directories).
fn remove_non_dir(dir: &impl AsFd, name: &OsStr, want: &str) -> io::Result<()> {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
        return Err(conflict("a directory", want));
    }
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::NOENT) => Ok(()),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_below_the_target_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"keep").unwrap();
        let target = TargetDir::open(&t.path().join("target")).unwrap();
        std::os::unix::fs::symlink(&outside, t.path().join("target/d")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), t.path().join("target/f")).unwrap();

        // Through a symlinked directory: refused, in both the openat2 and the walk paths.
        for openat2 in [true, false] {
            HAVE_OPENAT2.store(openat2, Ordering::Relaxed);
            let err = target.create_file(Path::new("d/new")).unwrap_err();
            assert!(err.to_string().contains("never follows symlinks"), "{err}");
            assert!(target.open_dir(Path::new("d")).is_err());
        }
        HAVE_OPENAT2.store(true, Ordering::Relaxed);
        assert!(!outside.join("new").exists());

        // A symlink where a file goes is replaced, not written through.
        use std::io::Write;
        target
            .create_file(Path::new("f"))
            .unwrap()
            .write_all(b"new")
            .unwrap();
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep");
        assert_eq!(std::fs::read(t.path().join("target/f")).unwrap(), b"new");

        // A symlink where a directory goes is refused.
        let root = target.open_dir(Path::new("")).unwrap();
        let err = make_dir(&root, OsStr::new("d")).unwrap_err();
        assert!(err.to_string().contains("holds a symlink"), "{err}");
        // An existing directory is kept for a directory and refused for anything else.
        std::fs::create_dir(t.path().join("target/real")).unwrap();
        assert!(!make_dir(&root, OsStr::new("real")).unwrap());
        let err = target.create_file(Path::new("real")).unwrap_err();
        assert!(err.to_string().contains("holds a directory"), "{err}");
        let err = make_symlink(&root, OsStr::new("real"), b"/x").unwrap_err();
        assert!(err.to_string().contains("holds a directory"), "{err}");
    }
}
