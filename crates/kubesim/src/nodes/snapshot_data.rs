//! The storage side of kubesim's CSI snapshots: a snapshot of a `hostpath.kubesim.io` volume
//! is a point-in-time copy of its directory (or, for Block, its sparse file) at
//! `DATA_DIR/snapshots/<handle>`, with `<handle>.json` recording its size and time. A volume
//! provisioned from a snapshot starts as a copy of it.
//!
//! Copies are `cp -a --sparse=always` (modes, owners, times, symlinks, hard links, extended
//! attributes and holes are kept), as a storage system's snapshot keeps them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// What `<handle>.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// The source volume's capacity, bytes (the CSI restore size).
    pub restore_size: i64,
    /// Nanoseconds since the epoch.
    pub creation_time: i64,
    pub source_volume: String,
    pub block: bool,
}

pub fn snapshots_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// The handle of the snapshot taken for content `content_uid`.
pub fn snapshot_handle(content_uid: &str) -> String {
    format!("snapshot-{content_uid}")
}

/// A handle kubesim could have made: one plain file name, so it never leaves the folder.
fn checked(handle: &str) -> anyhow::Result<&str> {
    if handle.is_empty() || handle.contains('/') || handle == "." || handle == ".." {
        bail!("{handle:?} is not a snapshot handle of hostpath.kubesim.io");
    }
    Ok(handle)
}

pub fn snapshot_path(data_dir: &Path, handle: &str) -> anyhow::Result<PathBuf> {
    Ok(snapshots_dir(data_dir).join(checked(handle)?))
}

fn record_path(data_dir: &Path, handle: &str) -> anyhow::Result<PathBuf> {
    Ok(snapshots_dir(data_dir).join(format!("{}.json", checked(handle)?)))
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let output = Command::new("cp")
        .args(["-a", "--sparse=always", "--no-target-directory"])
        .arg(from)
        .arg(to)
        .output()
        .context("cannot run cp")?;
    if !output.status.success() {
        bail!(
            "cp {} {} failed: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn remove(path: &Path) -> std::io::Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Takes the snapshot `handle` of the volume at `volume`: copies it (into a temporary name
/// first, so a half copy is never taken for a snapshot) and writes its record. Taking a
/// snapshot that exists returns its record.
pub fn take(
    data_dir: &Path,
    handle: &str,
    volume: &Path,
    source_volume: &str,
    restore_size: i64,
) -> anyhow::Result<SnapshotRecord> {
    if let Some(record) = read(data_dir, handle)? {
        return Ok(record);
    }
    let dir = snapshots_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = std::fs::metadata(volume)
        .with_context(|| format!("volume {source_volume} has no data at {}", volume.display()))?;
    let target = snapshot_path(data_dir, handle)?;
    let partial = dir.join(format!(".{handle}.partial"));
    remove(&partial)?;
    copy(volume, &partial)?;
    remove(&target)?;
    std::fs::rename(&partial, &target)?;
    let creation_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default();
    let record = SnapshotRecord {
        restore_size,
        creation_time,
        source_volume: source_volume.to_string(),
        block: !meta.is_dir(),
    };
    let record_file = record_path(data_dir, handle)?;
    let temp = dir.join(format!(".{handle}.json.partial"));
    std::fs::write(&temp, serde_json::to_vec(&record)?)?;
    std::fs::rename(&temp, &record_file)?;
    Ok(record)
}

/// The record of snapshot `handle`; None when there is no such snapshot.
pub fn read(data_dir: &Path, handle: &str) -> anyhow::Result<Option<SnapshotRecord>> {
    let path = record_path(data_dir, handle)?;
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not a snapshot record", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Deletes snapshot `handle` (nothing when it is already gone).
pub fn delete(data_dir: &Path, handle: &str) -> anyhow::Result<()> {
    remove(&record_path(data_dir, handle)?)?;
    remove(&snapshot_path(data_dir, handle)?)?;
    Ok(())
}

/// Fills the new volume at `volume` from snapshot `handle`; a Block volume's file is then
/// grown to `bytes` (a claim may ask for more than the snapshot's size).
pub fn restore_into(
    data_dir: &Path,
    handle: &str,
    volume: &Path,
    bytes: u64,
) -> anyhow::Result<()> {
    let Some(record) = read(data_dir, handle)? else {
        bail!("snapshot {handle} does not exist");
    };
    if volume.exists() {
        // A retry after a crash: the copy may be partial, start over.
        remove(volume)?;
    }
    if let Some(parent) = volume.parent() {
        std::fs::create_dir_all(parent)?;
    }
    copy(&snapshot_path(data_dir, handle)?, volume)?;
    if record.block {
        let file = std::fs::OpenOptions::new().write(true).open(volume)?;
        if file.metadata()?.len() < bytes {
            file.set_len(bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_snapshot_is_a_point_in_time_copy_that_restores_with_links_modes_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let volume = data.join("volumes/pvc-1");
        std::fs::create_dir_all(volume.join("sub/empty")).unwrap();
        std::fs::write(volume.join("sub/file"), b"before").unwrap();
        std::fs::set_permissions(
            volume.join("sub/file"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::hard_link(volume.join("sub/file"), volume.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/file", volume.join("sym")).unwrap();
        let sparse = std::fs::File::create(volume.join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();

        let record = take(data, "snapshot-a", &volume, "pvc-1", 1 << 30).unwrap();
        assert_eq!(record.restore_size, 1 << 30);
        assert!(!record.block);
        // Later writes do not reach the snapshot.
        std::fs::write(volume.join("sub/file"), b"after").unwrap();

        let restored = data.join("volumes/pvc-2");
        restore_into(data, "snapshot-a", &restored, 1 << 30).unwrap();
        assert_eq!(std::fs::read(restored.join("sub/file")).unwrap(), b"before");
        let meta = std::fs::metadata(restored.join("sub/file")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        assert_eq!(
            meta.ino(),
            std::fs::metadata(restored.join("link")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read_link(restored.join("sym")).unwrap(),
            Path::new("sub/file")
        );
        assert!(restored.join("sub/empty").is_dir());
        let sparse = std::fs::metadata(restored.join("sparse")).unwrap();
        assert_eq!(sparse.len(), 64 << 20);
        assert!(sparse.blocks() * 512 < 1 << 20, "the hole was filled");

        delete(data, "snapshot-a").unwrap();
        assert!(read(data, "snapshot-a").unwrap().is_none());
        assert!(!snapshot_path(data, "snapshot-a").unwrap().exists());
    }

    #[test]
    fn block_snapshots_grow_to_the_claimed_size() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let volume = data.join("volumes/pvc-b");
        std::fs::create_dir_all(volume.parent().unwrap()).unwrap();
        std::fs::write(&volume, b"block data").unwrap();
        let record = take(data, "snapshot-b", &volume, "pvc-b", 10).unwrap();
        assert!(record.block);
        let restored = data.join("volumes/pvc-c");
        restore_into(data, "snapshot-b", &restored, 4096).unwrap();
        let bytes = std::fs::read(&restored).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(&bytes[..10], b"block data");
    }

    #[test]
    fn handles_never_leave_the_snapshots_folder() {
        let data = Path::new("/sim");
        assert!(snapshot_path(data, "../x").is_err());
        assert!(snapshot_path(data, "a/b").is_err());
        assert!(snapshot_path(data, "").is_err());
        assert!(read(data, "..").is_err());
    }
}
