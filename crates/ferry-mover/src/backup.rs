//! What runs inside a backup pod (`ferry data-mover backup`): read the DataUpload, open (or
//! create) the repository of its BackupStorageLocation for the source namespace
//! (`<prefix>/plugins/ferry/<sourceNamespace>`), back up the mounted volume — its entries at the
//! snapshot's root for a Filesystem volume, one stream for a Block volume — incrementally
//! against the previous snapshot of the same volume, tagged as Velero tags its snapshots,
//! report progress into `status.progress` and leave the summary as the termination message.

use std::path::PathBuf;
use std::time::Duration;

use ferry_repo::RepoError;
use ferry_repo::backup::{BackupOptions, BackupSource, DirectReader};
use ferry_repo::snapshot::Snapshot;

use ferry_controller::crds::{
    ASYNC_OPERATION_ID_LABEL, BACKUP_NAME_LABEL, BACKUP_UID_LABEL, DataUpload,
};
use ferry_controller::data_mover_exit::DataMoverResult;

use crate::VolumeMode;
use crate::error::DataMoverError;
use crate::location::{PasswordSource, open_location_backend};
use crate::objects::{read_location, read_own};
use crate::progress::ProgressReporter;

/// Velero's uploader tags (pkg/uploader/types.go) with ferry's values.
pub const REQUESTER_TAG: &str = "snapshot-requester";
pub const REQUESTER: &str = "snapshot-data-upload";
pub const UPLOADER_TAG: &str = "snapshot-uploader";
pub const UPLOADER: &str = "ferry";
/// The host recorded in the data mover's snapshots (pods come and go; Velero's kopia
/// snapshots use the repository's domain "default" likewise).
pub const SNAPSHOT_HOST: &str = "ferry";

#[derive(Debug, Clone)]
pub struct BackupMoverOptions {
    pub namespace: String,
    pub data_upload: String,
    pub volume_path: PathBuf,
    pub volume_mode: VolumeMode,
    pub password: PasswordSource,
    pub progress_interval: Duration,
}

fn volume_mode_name(mode: VolumeMode) -> &'static str {
    match mode {
        VolumeMode::Filesystem => "Filesystem",
        VolumeMode::Block => "Block",
    }
}

/// The tags of a DataUpload's snapshot, `key=value` as restic tags go: Velero's backup name
/// and uid, the source namespace, PVC and volume mode, the DataUpload, requester and
/// uploader, and the async operation id when Velero set one.
pub fn snapshot_tags(du: &DataUpload, mode: VolumeMode) -> Vec<String> {
    let label = |key: &str| {
        du.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
    };
    let mut tags = Vec::new();
    if let Some(backup) = label(BACKUP_NAME_LABEL) {
        tags.push(format!("backup={backup}"));
    }
    if let Some(uid) = label(BACKUP_UID_LABEL) {
        tags.push(format!("backup-uid={uid}"));
    }
    tags.push(format!("ns={}", du.spec.source_namespace));
    tags.push(format!("pvc={}", du.spec.source_pvc));
    tags.push(format!("volume-mode={}", volume_mode_name(mode)));
    tags.push(format!(
        "data-upload={}",
        du.metadata.name.as_deref().unwrap_or_default()
    ));
    tags.push(format!("{REQUESTER_TAG}={REQUESTER}"));
    tags.push(format!("{UPLOADER_TAG}={UPLOADER}"));
    if let Some(id) = label(ASYNC_OPERATION_ID_LABEL) {
        tags.push(format!("{ASYNC_OPERATION_ID_LABEL}={id}"));
    }
    tags
}

/// The parent of a new backup of `ns/pvc`: the latest snapshot the data mover made of the
/// same volume in the same mode (by tags: the pod's mount path changes between backups, so
/// restic's choice by paths would never find one).
pub fn previous_snapshot(
    snapshots: Vec<Snapshot>,
    namespace: &str,
    pvc: &str,
    mode: VolumeMode,
) -> Option<Snapshot> {
    let wanted = [
        format!("ns={namespace}"),
        format!("pvc={pvc}"),
        format!("volume-mode={}", volume_mode_name(mode)),
        format!("{UPLOADER_TAG}={UPLOADER}"),
    ];
    snapshots
        .into_iter()
        .filter(|s| wanted.iter().all(|t| s.tags.contains(t)))
        .max_by_key(|s| s.unix_time())
}

/// The backend of the repository a DataUpload's snapshot lives in (its location's, for its
/// source namespace): what the backup and the forget of a DataUpload both open.
pub(crate) async fn upload_repository(
    client: &kube::Client,
    ns: &str,
    du: &DataUpload,
    du_id: &str,
) -> Result<std::sync::Arc<dyn ferry_repo::backend::Backend>, DataMoverError> {
    let named_by = format!("DataUpload {du_id}");
    let bsl = read_location(client, ns, &du.spec.backup_storage_location, &named_by).await?;
    open_location_backend(client, ns, &bsl, &du.spec.source_namespace).await
}

/// How long a data mover waits for another one that is creating the repository (deriving
/// its key takes about half a second; the rest is two small writes).
const REPOSITORY_CREATION_WAIT: Duration = Duration::from_secs(30);

/// Backs up the DataUpload's volume. Progress goes into the DataUpload every
/// `progress_interval`.
pub async fn backup_data_upload(
    client: &kube::Client,
    options: &BackupMoverOptions,
) -> Result<DataMoverResult, DataMoverError> {
    let ns = &options.namespace;
    let du_id = format!("{ns}/{}", options.data_upload);
    let (uploads, du) = read_own::<DataUpload>(client, ns, &options.data_upload).await?;
    let backend = upload_repository(client, ns, &du, &du_id).await?;
    // The first backup of a namespace creates its repository, as Velero's repository
    // ensurer does. Velero makes one DataUpload per volume and their data movers run at
    // once, on different nodes: exactly one creates the repository, the others wait for it.
    let repo = options
        .password
        .open_repository(client, ns, backend, Some(REPOSITORY_CREATION_WAIT))
        .await?;
    let (snapshots, _) = repo.snapshots_skipping_unreadable().await?;
    let parent = previous_snapshot(
        snapshots,
        &du.spec.source_namespace,
        &du.spec.source_pvc,
        options.volume_mode,
    );
    tracing::info!(data_upload = %du_id, location = %repo.location(), parent = ?parent.as_ref().map(|p| p.id.to_hex()), "backing up");

    let reporter = ProgressReporter::start(
        uploads.clone(),
        &options.data_upload,
        options.progress_interval,
    );
    let source = match options.volume_mode {
        VolumeMode::Filesystem => BackupSource::Contents(options.volume_path.clone()),
        VolumeMode::Block => {
            let file = std::fs::File::open(&options.volume_path)
                .map_err(|e| RepoError::io(&options.volume_path, e))?;
            reporter.set_total(device_size(&file));
            BackupSource::Stream {
                reader: Box::new(DirectReader::new(file)),
                filename: format!("{}.img", du.spec.source_pvc),
            }
        }
    };
    let backup_options = BackupOptions {
        host: Some(SNAPSHOT_HOST.to_string()),
        tags: snapshot_tags(&du, options.volume_mode),
        no_parent: parent.is_none(),
        parent,
        workers: 0,
    };
    let result = repo
        .backup(source, backup_options, reporter.callback())
        .await;
    let summary = result?;
    let total_bytes = summary.total_bytes_processed;
    reporter.finish(total_bytes).await;
    Ok(DataMoverResult {
        ok: true,
        error: None,
        snapshot_id: summary.snapshot_id.to_hex(),
        total_bytes,
        bytes_done: total_bytes,
        files: summary.total_files_processed,
        seconds: summary.seconds,
        incremental_bytes: Some(summary.data_added),
        kept: None,
        warnings: Vec::new(),
    })
}

/// A block device's size (a regular file's length for a file standing in for one).
fn device_size(file: &std::fs::File) -> u64 {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    let size = f.seek(SeekFrom::End(0)).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(0));
    size
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use ferry_controller::crds::DataUploadSpec;

    fn snapshot(time: &str, tags: &[&str]) -> Snapshot {
        serde_json::from_value(json!({
            "time": time, "tree": "0".repeat(64), "paths": ["/x"],
            "tags": tags,
        }))
        .unwrap()
    }

    #[test]
    fn the_parent_is_the_latest_snapshot_of_the_same_volume_and_mode() {
        let same = [
            "ns=app",
            "pvc=data",
            "volume-mode=Filesystem",
            "snapshot-uploader=ferry",
        ];
        let snapshots = vec![
            snapshot("2026-01-01T00:00:00Z", &same),
            snapshot("2026-01-03T00:00:00Z", &same),
            snapshot(
                "2026-01-04T00:00:00Z",
                &[
                    "ns=app",
                    "pvc=other",
                    "volume-mode=Filesystem",
                    "snapshot-uploader=ferry",
                ],
            ),
            snapshot(
                "2026-01-05T00:00:00Z",
                &[
                    "ns=app",
                    "pvc=data",
                    "volume-mode=Block",
                    "snapshot-uploader=ferry",
                ],
            ),
        ];
        let parent = previous_snapshot(snapshots.clone(), "app", "data", VolumeMode::Filesystem);
        assert_eq!(parent.unwrap().time, "2026-01-03T00:00:00Z");
        assert!(previous_snapshot(snapshots, "other", "data", VolumeMode::Filesystem).is_none());
    }

    #[test]
    fn tags_name_the_backup_the_volume_and_the_uploader() {
        let mut du = DataUpload::new(
            "du-1",
            DataUploadSpec {
                source_namespace: "app".into(),
                source_pvc: "data".into(),
                ..Default::default()
            },
        );
        du.metadata.labels = Some(
            [(BACKUP_NAME_LABEL.to_string(), "nightly".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            snapshot_tags(&du, VolumeMode::Block),
            [
                "backup=nightly",
                "ns=app",
                "pvc=data",
                "volume-mode=Block",
                "data-upload=du-1",
                "snapshot-requester=snapshot-data-upload",
                "snapshot-uploader=ferry",
            ]
        );
    }
}
