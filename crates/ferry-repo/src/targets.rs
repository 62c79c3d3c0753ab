//! Where backup targets go in a snapshot, as restic 0.14 lays them out for the same command
//! line (checked against the restic binary in the interop tests):
//!
//! - an absolute target keeps its whole path: `/data/vol` is stored as `/` → `data` → `vol`,
//!   the intermediate directories with their own metadata;
//! - a relative target keeps its relative components, without `.` and leading `..`:
//!   `x/sub` is stored as `x` → `sub`, `../data` as `data`;
//! - a target with no components left (`.`, `..`, `/`) puts its entries at the root;
//! - a target below another target adds nothing to the tree;
//! - the snapshot's `paths` are the targets made absolute (lexically, from the working
//!   directory, as Go's `filepath.Abs`), sorted.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{RepoError, Result};

/// A directory of the snapshot's tree made from the targets.
#[derive(Debug, Default, PartialEq)]
pub struct Layout {
    /// When set, the entries of this directory are at the root (`.`, `/`).
    pub contents_of: Option<PathBuf>,
    /// Entries at this level, by name.
    pub entries: BTreeMap<Vec<u8>, LayoutEntry>,
}

#[derive(Debug, PartialEq)]
pub enum LayoutEntry {
    /// A target: stored with everything below it.
    Target(PathBuf),
    /// A directory on the way to targets: its own metadata from `path`, and only the
    /// entries that lead to targets.
    Between { path: PathBuf, below: Layout },
}

/// Go's `filepath.Clean` for Unix paths: one slash between elements, no `.` elements, `..`
/// removed together with the element before it (and at the start of an absolute path).
pub fn clean(p: &[u8]) -> Vec<u8> {
    let rooted = p.first() == Some(&b'/');
    let mut out: Vec<&[u8]> = Vec::new();
    for part in p.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match out.last() {
                Some(&last) if last != b".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(part),
            },
            _ => out.push(part),
        }
    }
    let mut s = Vec::new();
    if rooted {
        s.push(b'/');
    }
    s.extend(out.join(&b'/'));
    if s.is_empty() {
        s.push(b'.');
    }
    s
}

/// The working directory as Go's `os.Getwd` reports it: `$PWD` when it names the same
/// directory (so a path through a symlink stays as the user typed it), else getcwd.
pub fn working_dir() -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let cwd = std::env::current_dir().map_err(|e| RepoError::io(".", e))?;
    if let Some(pwd) = std::env::var_os("PWD").map(PathBuf::from)
        && pwd.is_absolute()
        && let (Ok(a), Ok(b)) = (std::fs::metadata(&pwd), std::fs::metadata("."))
        && (a.dev(), a.ino()) == (b.dev(), b.ino())
    {
        return Ok(pwd);
    }
    Ok(cwd)
}

/// `p` made absolute against `cwd` and cleaned (Go's `filepath.Abs`).
pub fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.as_os_str().as_bytes().to_vec()
    } else {
        let mut j = cwd.as_os_str().as_bytes().to_vec();
        j.push(b'/');
        j.extend_from_slice(p.as_os_str().as_bytes());
        j
    };
    PathBuf::from(OsString::from_vec(clean(&joined)))
}

/// A target's names in the snapshot's tree, each with the file-system path its metadata
/// comes from.
type Components = Vec<(Vec<u8>, PathBuf)>;

/// The components a target has in the snapshot's tree.
fn components(cwd: &Path, target: &Path) -> Components {
    let cleaned = clean(target.as_os_str().as_bytes());
    // restic roots a relative path before cleaning it, which drops leading `..`.
    let mut rooted = vec![b'/'];
    rooted.extend_from_slice(&cleaned);
    let rooted = clean(&rooted);
    let names: Vec<Vec<u8>> = rooted
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    // The file-system path of the last component is the target itself; each earlier one is
    // the target with its trailing components taken off.
    let abs = absolute(cwd, target);
    let mut out = Vec::with_capacity(names.len());
    let mut path = abs.clone();
    for name in names.iter().rev() {
        out.push((name.clone(), path.clone()));
        path = path.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    out.reverse();
    out
}

/// The snapshot paths and the tree layout of `targets`, resolved against `cwd`.
pub fn layout(cwd: &Path, targets: &[PathBuf]) -> Result<(Vec<String>, Layout)> {
    let mut paths: Vec<String> = targets
        .iter()
        .map(|t| absolute(cwd, t).to_string_lossy().into_owned())
        .collect();
    paths.sort();
    paths.dedup();

    // Shortest first, so a target below another one finds it already placed.
    let mut placed: Vec<(Components, PathBuf)> = targets
        .iter()
        .map(|t| (components(cwd, t), absolute(cwd, t)))
        .collect();
    placed.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.1.cmp(&b.1)));
    let mut root = Layout::default();
    for (comps, abs) in placed {
        place(&mut root, &comps, &abs)?;
    }
    Ok((paths, root))
}

fn conflict(a: &Path, b: &Path) -> RepoError {
    RepoError::Invalid(format!(
        "backup targets {} and {} would be stored at the same place in the snapshot; back them up separately or give absolute paths",
        a.display(),
        b.display()
    ))
}

fn place(level: &mut Layout, comps: &[(Vec<u8>, PathBuf)], abs: &Path) -> Result<()> {
    if let Some(dir) = &level.contents_of {
        // Everything below is already in: fine if it is the same file-system place.
        let mut want = dir.clone();
        for (name, _) in comps {
            want.push(std::ffi::OsStr::from_bytes(name));
        }
        return if want == abs {
            Ok(())
        } else {
            Err(conflict(dir, abs))
        };
    }
    let Some(((name, path), rest)) = comps.split_first() else {
        if let Some((_, other)) = level.entries.iter().next() {
            let other = match other {
                LayoutEntry::Target(p) | LayoutEntry::Between { path: p, .. } => p.clone(),
            };
            return Err(conflict(&other, abs));
        }
        level.contents_of = Some(abs.to_path_buf());
        return Ok(());
    };
    match level.entries.get_mut(name) {
        None if rest.is_empty() => {
            level
                .entries
                .insert(name.clone(), LayoutEntry::Target(abs.to_path_buf()));
            Ok(())
        }
        None => {
            let mut below = Layout::default();
            place(&mut below, rest, abs)?;
            level.entries.insert(
                name.clone(),
                LayoutEntry::Between {
                    path: path.clone(),
                    below,
                },
            );
            Ok(())
        }
        Some(LayoutEntry::Target(existing)) => {
            // Same place again, or below a target already stored whole.
            let mut want = existing.clone();
            for (n, _) in rest {
                want.push(std::ffi::OsStr::from_bytes(n));
            }
            if want == abs {
                Ok(())
            } else {
                Err(conflict(existing, abs))
            }
        }
        Some(LayoutEntry::Between { path: p, below }) => {
            if p != path {
                return Err(conflict(p, abs));
            }
            if rest.is_empty() {
                // A target that contains targets placed before: store it whole.
                *level.entries.get_mut(name).expect("present") =
                    LayoutEntry::Target(abs.to_path_buf());
                Ok(())
            } else {
                place(below, rest, abs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        String::from_utf8(clean(s.as_bytes())).unwrap()
    }

    #[test]
    fn clean_matches_go() {
        for (i, o) in [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("a/./b", "a/b"),
            ("a//b/", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/..", "/"),
            ("/../a/./b/..", "/a"),
            ("a/..", "."),
            ("/", "/"),
        ] {
            assert_eq!(c(i), o, "clean({i:?})");
        }
    }

    fn names(l: &Layout) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(l: &Layout, prefix: &str, out: &mut Vec<String>) {
            if let Some(d) = &l.contents_of {
                out.push(format!("{prefix}/* = {}", d.display()));
            }
            for (n, e) in &l.entries {
                let p = format!("{prefix}/{}", String::from_utf8_lossy(n));
                match e {
                    LayoutEntry::Target(t) => out.push(format!("{p} = {}", t.display())),
                    LayoutEntry::Between { path, below } => {
                        out.push(format!("{p} ({})", path.display()));
                        walk(below, &p, out);
                    }
                }
            }
        }
        walk(l, "", &mut out);
        out
    }

    fn lay(cwd: &str, targets: &[&str]) -> (Vec<String>, Vec<String>) {
        let t: Vec<PathBuf> = targets.iter().map(PathBuf::from).collect();
        let (paths, l) = layout(Path::new(cwd), &t).unwrap();
        (paths, names(&l))
    }

    #[test]
    fn targets_lay_out_as_restic_014_stores_them() {
        assert_eq!(
            lay("/w", &["/data/vol"]),
            (
                vec!["/data/vol".to_string()],
                vec!["/data (/data)".into(), "/data/vol = /data/vol".into()]
            )
        );
        assert_eq!(
            lay("/tmp/x", &["."]),
            (vec!["/tmp/x".to_string()], vec!["/* = /tmp/x".into()])
        );
        assert_eq!(
            lay("/tmp/x/sub", &[".."]),
            (vec!["/tmp/x".to_string()], vec!["/* = /tmp/x".into()])
        );
        assert_eq!(
            lay("/tmp/rx", &["x/sub"]),
            (
                vec!["/tmp/rx/x/sub".to_string()],
                vec!["/x (/tmp/rx/x)".into(), "/x/sub = /tmp/rx/x/sub".into()]
            )
        );
        assert_eq!(
            lay("/tmp/rx/x", &["../data"]).1,
            vec!["/data = /tmp/rx/data".to_string()]
        );
        // Sorted paths; a nested target adds nothing.
        assert_eq!(
            lay("/tmp/rx/x", &["./sub/../top", "sub"]),
            (
                vec!["/tmp/rx/x/sub".to_string(), "/tmp/rx/x/top".into()],
                vec!["/sub = /tmp/rx/x/sub".into(), "/top = /tmp/rx/x/top".into()]
            )
        );
        assert_eq!(
            lay("/w", &["data/vol", "./data"]).1,
            vec!["/data = /w/data".to_string()]
        );
        assert_eq!(lay("/w", &[".", "data"]).1, vec!["/* = /w".to_string()]);
        assert_eq!(lay("/", &["/"]).1, vec!["/* = /".to_string()]);
    }

    #[test]
    fn targets_that_would_collide_are_refused() {
        let t = [PathBuf::from("../foo"), PathBuf::from("foo")];
        let err = layout(Path::new("/a/b"), &t).unwrap_err().to_string();
        assert!(err.contains("same place"), "{err}");
    }
}
