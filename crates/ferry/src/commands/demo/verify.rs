//! Byte-for-byte verification: a hash tree (the SHA-256 and size of every file, by path) of
//! what was written, compared with one of what was restored.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A file's size and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Every regular file under a root, by `/`-separated relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashTree {
    files: BTreeMap<String, FileDigest>,
}

/// One way a restored tree differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing(String),
    Unexpected(String),
    Size {
        path: String,
        expected: u64,
        actual: u64,
    },
    Content(String),
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Missing(path) => write!(f, "{path}: missing"),
            Difference::Unexpected(path) => write!(f, "{path}: not in the backup"),
            Difference::Size {
                path,
                expected,
                actual,
            } => write!(f, "{path}: {actual} bytes, expected {expected}"),
            Difference::Content(path) => write!(f, "{path}: content differs"),
        }
    }
}

impl HashTree {
    pub fn insert(&mut self, path: String, size: u64, sha256: [u8; 32]) {
        self.files.insert(path, FileDigest { size, sha256 });
    }

    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Hashes every regular file under `root`, on as many threads as there are cores.
    pub fn of_directory(root: &Path) -> io::Result<HashTree> {
        let mut paths = Vec::new();
        collect_files(root, root, &mut paths)?;
        let next = Mutex::new(paths.into_iter());
        let results = Mutex::new(Vec::new());
        let first_error: Mutex<Option<io::Error>> = Mutex::new(None);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut buffer = vec![0u8; 1 << 20];
                    loop {
                        let Some((relative, absolute)) = next.lock().unwrap().next() else {
                            break;
                        };
                        match hash_file(&absolute, &mut buffer) {
                            Ok(digest) => results.lock().unwrap().push((relative, digest)),
                            Err(err) => {
                                let err = io::Error::new(
                                    err.kind(),
                                    format!("reading {}: {err}", absolute.display()),
                                );
                                first_error.lock().unwrap().get_or_insert(err);
                                break;
                            }
                        }
                    }
                });
            }
        });
        if let Some(err) = first_error.into_inner().unwrap() {
            return Err(err);
        }
        Ok(HashTree {
            files: results.into_inner().unwrap().into_iter().collect(),
        })
    }

    /// How `actual` differs from `self` (the expected tree); empty when every byte matches.
    pub fn differences(&self, actual: &HashTree) -> Vec<Difference> {
        let mut out = Vec::new();
        for (path, expected) in &self.files {
            match actual.files.get(path) {
                None => out.push(Difference::Missing(path.clone())),
                Some(found) if found.size != expected.size => out.push(Difference::Size {
                    path: path.clone(),
                    expected: expected.size,
                    actual: found.size,
                }),
                Some(found) if found.sha256 != expected.sha256 => {
                    out.push(Difference::Content(path.clone()))
                }
                Some(_) => {}
            }
        }
        for path in actual.files.keys() {
            if !self.files.contains_key(path) {
                out.push(Difference::Unexpected(path.clone()));
            }
        }
        out
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    let entries = fs::read_dir(dir)
        .map_err(|err| io::Error::new(err.kind(), format!("listing {}: {err}", dir.display())))?;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            let relative = path
                .strip_prefix(root)
                .expect("walked paths are under the root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((relative, path));
        }
    }
    Ok(())
}

fn hash_file(path: &Path, buffer: &mut [u8]) -> io::Result<FileDigest> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = file.read(buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok(FileDigest {
        size,
        sha256: hasher.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(files: &[(&str, &[u8])]) -> (tempfile::TempDir, HashTree) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        let tree = HashTree::of_directory(dir.path()).unwrap();
        (dir, tree)
    }

    #[test]
    fn identical_trees_have_no_differences_and_equal_roots() {
        let (_a, a) = tree_of(&[("x", b"one"), ("d/y", b"two")]);
        let (_b, b) = tree_of(&[("d/y", b"two"), ("x", b"one")]);
        assert!(a.differences(&b).is_empty());
        assert_eq!(a.files(), 2);
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let (_a, expected) = tree_of(&[
            ("same", b"1"),
            ("gone", b"2"),
            ("short", b"333"),
            ("flip", b"abc"),
        ]);
        let (_b, actual) = tree_of(&[
            ("same", b"1"),
            ("short", b"33"),
            ("flip", b"abd"),
            ("new", b"4"),
        ]);
        let differences = expected.differences(&actual);
        assert_eq!(
            differences,
            vec![
                Difference::Content("flip".into()),
                Difference::Missing("gone".into()),
                Difference::Size {
                    path: "short".into(),
                    expected: 3,
                    actual: 2
                },
                Difference::Unexpected("new".into()),
            ]
        );
    }

    #[test]
    fn a_single_flipped_byte_in_a_large_file_is_found() {
        let big = vec![7u8; 3 << 20];
        let mut flipped = big.clone();
        flipped[2 << 20] ^= 1;
        let (_a, expected) = tree_of(&[("big", &big)]);
        let (_b, actual) = tree_of(&[("big", &flipped)]);
        assert_eq!(
            expected.differences(&actual),
            vec![Difference::Content("big".into())]
        );
    }
}
