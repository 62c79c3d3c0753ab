//! Extended attributes, stored as restic stores them: the node's `extended_attributes`, a
//! list of name and (base64) value. Read for backup without following symlinks; applied on
//! restore where the file system allows (a refusal is a warning, never a failure).

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{self as rfs, XattrFlags};
use rustix::io::Errno;

use crate::tree::ExtendedAttribute;

/// Grows a buffer until a size-query-then-read call fits (the value may grow in between).
fn read_sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut Vec<u8>) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    for _ in 0..8 {
        let size = query()?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size + 64];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// The extended attributes of `path` (a symlink's own, not its target's), sorted by name.
/// A file system without xattr support has none.
pub(crate) fn read(path: &Path) -> io::Result<Vec<ExtendedAttribute>> {
    let list = match read_sized(
        || rfs::llistxattr_query(path),
        |buf| rfs::llistxattr(path, &mut buf[..]),
    ) {
        Ok(l) => l,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        let value = match read_sized(
            || rfs::lgetxattr_query(path, name_os),
            |buf| rfs::lgetxattr(path, name_os, &mut buf[..]),
        ) {
            Ok(v) => v,
            // Removed since it was listed.
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push(ExtendedAttribute {
            name: String::from_utf8_lossy(name).into_owned(),
            value,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Sets each attribute on an open file or directory; returns the ones that failed.
pub(crate) fn apply_fd(
    fd: impl AsFd,
    attrs: &[ExtendedAttribute],
) -> Vec<(&ExtendedAttribute, io::Error)> {
    attrs
        .iter()
        .filter_map(|a| {
            rfs::fsetxattr(&fd, a.name.as_str(), &a.value, XattrFlags::empty())
                .err()
                .map(|e| (a, e.into()))
        })
        .collect()
}

/// Sets each attribute on entry `name` of the open directory `dir` without following it
/// (for symlinks and special files, which cannot be opened for this).
pub(crate) fn apply_at<'a>(
    dir: impl AsFd,
    name: &OsStr,
    attrs: &'a [ExtendedAttribute],
) -> Vec<(&'a ExtendedAttribute, io::Error)> {
    use std::os::fd::AsRawFd;
    // The directory is named through its descriptor, so no path outside it is resolved.
    let path = Path::new("/proc/self/fd")
        .join(dir.as_fd().as_raw_fd().to_string())
        .join(name);
    attrs
        .iter()
        .filter_map(|a| {
            rfs::lsetxattr(&path, a.name.as_str(), &a.value, XattrFlags::empty())
                .err()
                .map(|e| (a, e.into()))
        })
        .collect()
}
