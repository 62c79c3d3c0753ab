//! While the password's key is derived, opening a repository reads its snapshot and index
//! files; the reads that follow take them from there, and still see the repository as it is
//! when they run (files added or removed since the open).

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ferry_repo::Repository;
use ferry_repo::backend::{FileType, Handle};
use ferry_repo::backup::{BackupOptions, BackupSource};

/// Hooks under which key files load slowly (a key derivation's time, whatever the process
/// has cached) and whole-file loads are counted by kind.
#[derive(Debug, Default)]
struct SlowKeys {
    loads: Mutex<HashMap<FileType, usize>>,
}

impl SlowKeys {
    fn loads(&self, kind: FileType) -> usize {
        self.loads.lock().unwrap().get(&kind).copied().unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl BackendHooks for SlowKeys {
    async fn before_load(&self, h: &Handle, range: Option<&std::ops::Range<u64>>) {
        if h.kind == FileType::Key {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if range.is_none() {
            *self.loads.lock().unwrap().entry(h.kind).or_default() += 1;
        }
    }
}

async fn back_up(repo: &Repository, src: &std::path::Path, seed: u64) {
    std::fs::create_dir_all(src).unwrap();
    std::fs::write(src.join(format!("file-{seed}")), random_bytes(seed, 10_000)).unwrap();
    repo.backup(
        BackupSource::Paths(vec![src.to_path_buf()]),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_index_files_are_read_while_the_key_is_derived() {
    let t = tempfile::tempdir().unwrap();
    let (dir, src) = (t.path().join("repo"), t.path().join("src"));
    let writer = init_repo(&dir).await;
    for seed in 1..=2 {
        back_up(&writer, &src, seed).await;
    }
    let on_disk = |kind| {
        std::fs::read_dir(dir.join(match kind {
            FileType::Index => "index",
            _ => "snapshots",
        }))
        .unwrap()
        .count()
    };
    assert_eq!(
        (on_disk(FileType::Snapshot), on_disk(FileType::Index)),
        (2, 2)
    );

    let backend = Arc::new(HookedBackend::new(&dir, SlowKeys::default()));
    let repo = Repository::open(backend.clone(), PASSWORD).await.unwrap();
    assert_eq!(
        backend.hooks.loads(FileType::Snapshot),
        2,
        "read during the open"
    );
    assert_eq!(
        backend.hooks.loads(FileType::Index),
        2,
        "read during the open"
    );

    // A third backup after the open, and one of the first snapshots forgotten.
    back_up(&writer, &src, 3).await;
    let newest = writer.find_snapshot("latest").await.unwrap();
    let oldest = writer.snapshots().await.unwrap()[0].id;
    writer
        .backend()
        .remove(&Handle::new(FileType::Snapshot, oldest.to_hex()))
        .await
        .unwrap();

    let snaps = repo.snapshots().await.unwrap();
    let ids: Vec<_> = snaps.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!ids.contains(&oldest) && ids.contains(&newest.id));
    // Only the new snapshot file was read again.
    assert_eq!(backend.hooks.loads(FileType::Snapshot), 3);

    let index = repo.index().await.unwrap();
    assert_eq!(
        backend.hooks.loads(FileType::Index),
        3,
        "only the new index file"
    );
    let out = t.path().join("out");
    let summary = restore_latest(&repo, &out).await.unwrap();
    assert_eq!(summary.files, 3);
    assert!(index.blob_count() >= 3, "the blobs of all three backups");
    assert_same_tree(&src, &in_snapshot(&out, &src));
}
