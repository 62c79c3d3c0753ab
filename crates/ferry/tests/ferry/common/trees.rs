//! Volume trees for the backup tests: one with everything a volume can hold (modes, owners,
//! times, hard links, symlinks, an empty directory, a sparse file), and a description of a
//! tree that two trees share exactly when a backup and restore gave everything back.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// A tree with what a volume holds: modes, owners, times, links, an empty directory, holes.
pub fn fill(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc/empty")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for i in 0..20u32 {
        let bytes: Vec<u8> = (0..(5000 + i * 3001))
            .map(|b| (b.wrapping_mul(2654435761u32.wrapping_add(i)) >> 24) as u8)
            .collect();
        std::fs::write(dir.join(format!("data/file-{i}.bin")), bytes).unwrap();
    }
    std::fs::write(dir.join("etc/secret"), b"s3cr3t").unwrap();
    std::fs::set_permissions(
        dir.join("etc/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::chown(dir.join("etc/secret"), Some(1234), Some(5678)).unwrap();
    std::fs::hard_link(dir.join("data/file-1.bin"), dir.join("hard")).unwrap();
    std::os::unix::fs::symlink("data/file-2.bin", dir.join("sym")).unwrap();
    let sparse = std::fs::File::create(dir.join("sparse")).unwrap();
    sparse.set_len(32 << 20).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(dir.join("etc/secret"))
        .unwrap()
        .set_modified(old)
        .unwrap();
}

/// Everything a restore must give back, per relative path.
pub fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let kind = if m.file_type().is_symlink() {
                format!("link->{}", std::fs::read_link(&path).unwrap().display())
            } else if m.is_dir() {
                stack.push(path.clone());
                "dir".into()
            } else {
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
                let bytes = std::fs::read(&path).unwrap();
                format!(
                    "file len={} sum={:x} same-as={first}",
                    bytes.len(),
                    bytes
                        .iter()
                        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(*b as u64))
                )
            };
            let mtime = m.mtime();
            out.insert(
                rel,
                format!(
                    "{kind} mode={:o} owner={}:{} mtime={mtime}",
                    m.mode(),
                    m.uid(),
                    m.gid()
                ),
            );
        }
    }
    out
}
