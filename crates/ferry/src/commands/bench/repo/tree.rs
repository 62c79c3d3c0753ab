//! Walking, sizing and comparing the generated and the restored trees.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Every regular file below `root` (not following symlinks).
pub(super) fn files_below(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            files_below(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// The sum of the file lengths below `p`.
pub(super) fn du(p: &Path) -> u64 {
    let mut files = Vec::new();
    files_below(p, &mut files);
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// The bytes the files below `p` take on disk (holes take none).
pub(super) fn allocated(p: &Path) -> u64 {
    let mut files = Vec::new();
    files_below(p, &mut files);
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// Where a tool restored the source directory `name` (backed up as the relative path `name`
/// from its parent): `target/name`, or below the full absolute path (older restic versions
/// stored it so).
pub(super) fn restored_root(target: &Path, source: &Path) -> PathBuf {
    let name = source.file_name().unwrap_or_default();
    [
        target.join(name),
        target.join(source.strip_prefix("/").unwrap_or(source)),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .unwrap_or_else(|| target.join(name))
}

/// Whether two files have the same bytes, read in 1 MiB pieces.
fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (fa, fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (
        std::io::BufReader::with_capacity(1 << 20, fa),
        std::io::BufReader::with_capacity(1 << 20, fb),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut ra, &mut ba)?;
        let m = read_full(&mut rb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Compares every file below `want` with the same path below `got`, and that `got` holds no
/// other files; returns the file count.
pub(super) fn verify_restore(want: &Path, got: &Path, who: &str) -> anyhow::Result<u64> {
    let mut files = Vec::new();
    files_below(want, &mut files);
    for f in &files {
        let rel = f.strip_prefix(want).expect("below root");
        let restored = got.join(rel);
        if !restored.is_file() {
            bail!("{who} restore lacks {}", restored.display());
        }
        if !same_content(f, &restored).with_context(|| format!("compare {}", restored.display()))? {
            bail!(
                "{who} restored {} with different content",
                restored.display()
            );
        }
    }
    let mut extra = Vec::new();
    files_below(got, &mut extra);
    if extra.len() != files.len() {
        bail!(
            "{who} restored {} files into {}, the source has {}",
            extra.len(),
            got.display(),
            files.len()
        );
    }
    Ok(files.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_finds_missing_different_and_extra_files() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("x/y")).unwrap();
            std::fs::write(d.join("x/y/f"), vec![7u8; (1 << 20) + 3]).unwrap();
            std::fs::write(d.join("g"), b"gg").unwrap();
        }
        assert_eq!(verify_restore(a.path(), b.path(), "t").unwrap(), 2);
        std::fs::write(b.path().join("extra"), b"").unwrap();
        assert!(verify_restore(a.path(), b.path(), "t").is_err());
        std::fs::remove_file(b.path().join("extra")).unwrap();
        let mut other = vec![7u8; (1 << 20) + 3];
        other[(1 << 20) + 1] = 8;
        std::fs::write(b.path().join("x/y/f"), other).unwrap();
        let e = verify_restore(a.path(), b.path(), "t").unwrap_err();
        assert!(e.to_string().contains("different content"), "{e}");
        std::fs::remove_file(b.path().join("g")).unwrap();
        assert!(verify_restore(a.path(), b.path(), "t").is_err());
    }

    #[test]
    fn the_restored_root_is_found_under_either_path() {
        let t = tempfile::tempdir().unwrap();
        let source = Path::new("/bench/small/data");
        assert_eq!(restored_root(t.path(), source), t.path().join("data"));
        std::fs::create_dir_all(t.path().join("bench/small/data")).unwrap();
        assert_eq!(
            restored_root(t.path(), source),
            t.path().join("bench/small/data")
        );
        std::fs::create_dir_all(t.path().join("data")).unwrap();
        assert_eq!(restored_root(t.path(), source), t.path().join("data"));
    }
}
