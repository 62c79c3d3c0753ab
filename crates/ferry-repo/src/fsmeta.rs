//! Applying a node's metadata (owner, permissions, times) to restored files, and reading it
//! back from the file system for backup.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::tree::{Node, parse_time, unix_perm_from_go};

fn timespec(s: &str) -> libc::timespec {
    match parse_time(s) {
        Some((secs, nanos)) => libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: nanos as _,
        },
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT as _,
        },
    }
}

fn times(node: &Node) -> [libc::timespec; 2] {
    let mtime = timespec(&node.mtime);
    let atime = if node.atime.is_empty() {
        mtime
    } else {
        timespec(&node.atime)
    };
    [atime, mtime]
}

fn check(rc: libc::c_int, what: &str, path: &Path) -> std::io::Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: geteuid has no preconditions.
    *ROOT.get_or_init(|| unsafe { libc::geteuid() == 0 })
}

/// Sets owner (when running as root), permissions and times on an open regular file.
pub fn apply_to_fd(file: &std::fs::File, node: &Node, path: &Path) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    if is_root() {
        // SAFETY: fd is an open descriptor.
        check(
            unsafe { libc::fchown(fd, node.uid, node.gid) },
            "chown",
            path,
        )?;
    }
    // SAFETY: fd is an open descriptor.
    check(
        unsafe { libc::fchmod(fd, unix_perm_from_go(node.mode) as libc::mode_t) },
        "chmod",
        path,
    )?;
    let ts = times(node);
    // SAFETY: ts is a valid array of two timespecs.
    check(
        unsafe { libc::futimens(fd, ts.as_ptr()) },
        "set times of",
        path,
    )
}

/// Sets owner, permissions (not for symlinks) and times on a path without following symlinks.
pub fn apply_to_path(path: &Path, node: &Node) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains NUL"))?;
    let symlink = node.kind == "symlink";
    if is_root() {
        // SAFETY: c is a valid C string.
        check(
            unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) },
            "chown",
            path,
        )?;
    }
    if !symlink {
        // SAFETY: c is a valid C string.
        check(
            unsafe { libc::chmod(c.as_ptr(), unix_perm_from_go(node.mode) as libc::mode_t) },
            "chmod",
            path,
        )?;
    }
    let ts = times(node);
    // SAFETY: valid C string and timespec array.
    check(
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        },
        "set times of",
        path,
    )
}

/// Creates a special file (fifo, socket placeholder, device) for a node.
pub fn make_special(path: &Path, node: &Node) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains NUL"))?;
    let perm = unix_perm_from_go(node.mode) as libc::mode_t;
    let (fmt, dev) = match node.kind.as_str() {
        "fifo" => (libc::S_IFIFO, 0),
        "socket" => (libc::S_IFSOCK, 0),
        "dev" => (libc::S_IFBLK, node.device),
        "chardev" => (libc::S_IFCHR, node.device),
        other => {
            return Err(std::io::Error::other(format!(
                "unknown node type {other:?}"
            )));
        }
    };
    // SAFETY: valid C string.
    check(
        unsafe { libc::mknod(c.as_ptr(), fmt | perm, dev as libc::dev_t) },
        "mknod",
        path,
    )
}
