//! Backing the workload's volumes up into the demo's repository with ferry's own engine, as
//! Velero's DataUpload side would have done before a restore.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use ferry_repo::Repository;
use ferry_repo::backup::{BackupOptions, BackupSource};

/// The repository password the demo uses (and puts in the repository secret).
pub const REPOSITORY_PASSWORD: &str = "ferry-demo-password";

/// Creates the repository at `dir` (which must not hold one yet).
pub async fn init_repository(dir: &Path) -> anyhow::Result<Repository> {
    init_repository_with_kdf(dir, None).await
}

/// [`init_repository`] with the key's scrypt parameters given (`None`: calibrated, as restic
/// does), so that a benchmark of many data movers can make opening the repository cheap.
pub async fn init_repository_with_kdf(
    dir: &Path,
    kdf: Option<ferry_repo::kdf::KdfParams>,
) -> anyhow::Result<Repository> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the repository directory {}", dir.display()))?;
    let location = dir.to_string_lossy();
    let backend = ferry_repo::backend::open(&location)
        .with_context(|| format!("opening the repository location {location}"))?;
    Repository::init_with_kdf(backend, REPOSITORY_PASSWORD, kdf)
        .await
        .with_context(|| format!("creating a repository at {location}"))
}

/// Backs up the contents of `volume_dir` (its entries at the snapshot's top, as a volume
/// root) and returns the snapshot id. `done` counts bytes processed, for progress.
pub async fn backup_volume(
    repository: &Repository,
    volume_dir: &Path,
    claim: &str,
    done: Arc<AtomicU64>,
) -> anyhow::Result<String> {
    // The volume's entries at the snapshot's root, as the data mover restores them.
    let base = done.load(Ordering::Relaxed);
    let progress_done = done.clone();
    let summary = repository
        .backup(
            BackupSource::Contents(volume_dir.to_path_buf()),
            BackupOptions {
                host: Some("ferry-demo".into()),
                tags: vec![format!("pvc={claim}")],
                no_parent: true,
                ..Default::default()
            },
            Arc::new(move |p: &ferry_repo::RestoreProgress| {
                progress_done.store(base + p.bytes_done, Ordering::Relaxed);
            }),
        )
        .await
        .with_context(|| format!("backing up volume {claim}"))?;
    Ok(summary.snapshot_id.to_string())
}
