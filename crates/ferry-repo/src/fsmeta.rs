//! Applying a node's metadata (extended attributes, owner, permissions, times) to restored
//! entries, through descriptors: an open file or directory, or an entry of an open directory
//! that is never followed.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Gid, Mode, Timespec, Timestamps, Uid};

use crate::restore_report::Warnings;
use crate::tree::{ExtendedAttribute, Node, parse_time, unix_perm_from_go};

fn timespec(s: &str) -> Timespec {
    match parse_time(s) {
        Some((secs, nanos)) => Timespec {
            tv_sec: secs as _,
            tv_nsec: nanos as _,
        },
        None => Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT as _,
        },
    }
}

fn times(node: &Node) -> Timestamps {
    let mtime = timespec(&node.mtime);
    let atime = if node.atime.is_empty() {
        timespec(&node.mtime)
    } else {
        timespec(&node.atime)
    };
    Timestamps {
        last_access: atime,
        last_modification: mtime,
    }
}

/// Adds what was being done and to which path to an error.
fn context(what: &str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> io::Error {
    let path = path.display().to_string();
    let what = what.to_string();
    move |e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("{what} {path}: {e}"))
    }
}

fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: geteuid has no preconditions.
    *ROOT.get_or_init(|| unsafe { libc::geteuid() } == 0)
}

fn owner(node: &Node) -> (Option<Uid>, Option<Gid>) {
    // Unchecked: a snapshot's id is any u32, and the kernel judges it (u32::MAX = leave as is).
    (
        Some(Uid::from_raw_unchecked(node.uid)),
        Some(Gid::from_raw_unchecked(node.gid)),
    )
}

/// Reports attributes that could not be set: one warning per attribute name and error.
fn warn_xattrs(failed: Vec<(&ExtendedAttribute, io::Error)>, path: &Path, warnings: &Warnings) {
    for (a, e) in failed {
        warnings.add(format!("xattr {} {:?}", a.name, e.kind()), || {
            format!(
                "cannot restore extended attribute {:?} of {}: {e} (the file system or the \
                 user's rights do not allow it)",
                a.name,
                path.display()
            )
        });
    }
}

/// Sets xattrs, owner (when running as root), permissions and times on an open regular file
/// or directory. Xattrs go first: a read-only mode or another owner would forbid them.
pub(crate) fn apply_to_fd(
    fd: impl AsFd,
    node: &Node,
    path: &Path,
    warnings: &Warnings,
) -> io::Result<()> {
    if !node.extended_attributes.is_empty() {
        warn_xattrs(
            crate::xattr::apply_fd(&fd, &node.extended_attributes),
            path,
            warnings,
        );
    }
    if is_root() {
        let (u, g) = owner(node);
        rfs::fchown(&fd, u, g).map_err(context("chown", path))?;
    }
    rfs::fchmod(&fd, Mode::from_raw_mode(unix_perm_from_go(node.mode) as _))
        .map_err(context("chmod", path))?;
    rfs::futimens(&fd, &times(node)).map_err(context("set times of", path))
}

/// Sets xattrs, owner, permissions (not for symlinks) and times on entry `name` of `dir`,
/// a symlink or special file this restore just created, without following it.
pub(crate) fn apply_at(
    dir: impl AsFd,
    name: &OsStr,
    node: &Node,
    path: &Path,
    warnings: &Warnings,
) -> io::Result<()> {
    if !node.extended_attributes.is_empty() {
        warn_xattrs(
            crate::xattr::apply_at(&dir, name, &node.extended_attributes),
            path,
            warnings,
        );
    }
    if is_root() {
        let (u, g) = owner(node);
        rfs::chownat(&dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(context("chown", path))?;
    }
    if node.kind != "symlink" {
        // Not a symlink (we just created a fifo, socket or device here), so following it
        // cannot lead elsewhere; Linux has no chmod that refuses to follow.
        rfs::chmodat(
            &dir,
            name,
            Mode::from_raw_mode(unix_perm_from_go(node.mode) as _),
            AtFlags::empty(),
        )
        .map_err(context("chmod", path))?;
    }
    rfs::utimensat(&dir, name, &times(node), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(context("set times of", path))
}

/// The file type, permissions and device number of a special node (fifo, socket, device).
pub(crate) fn special(node: &Node) -> io::Result<(rfs::FileType, u32, u64)> {
    let perm = unix_perm_from_go(node.mode);
    match node.kind.as_str() {
        "fifo" => Ok((rfs::FileType::Fifo, perm, 0)),
        "socket" => Ok((rfs::FileType::Socket, perm, 0)),
        "dev" => Ok((rfs::FileType::BlockDevice, perm, node.device)),
        "chardev" => Ok((rfs::FileType::CharacterDevice, perm, node.device)),
        other => Err(io::Error::other(format!("unknown node type {other:?}"))),
    }
}
