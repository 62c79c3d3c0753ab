//! `ferry data-mover restore`, what runs inside a restore pod: read the DataDownload, open the
//! repository of its BackupStorageLocation, restore the snapshot into the mounted volume (a
//! directory tree or a raw block device) and report progress into `status.progress`.

use std::path::PathBuf;
use std::time::Duration;

use ferry_controller::crds::DataDownload;
use ferry_controller::data_mover_exit::DataMoverResult;
use ferry_repo::{RestoreOptions, RestoreTarget};

use crate::VolumeMode;
use crate::error::DataMoverError;
use crate::location::{PasswordSource, open_location_backend};
use crate::objects::{read_location, read_own};
use crate::progress::ProgressReporter;

#[derive(Debug, Clone)]
pub struct DataMoverOptions {
    pub namespace: String,
    pub data_download: String,
    pub volume_path: PathBuf,
    pub volume_mode: VolumeMode,
    pub password: PasswordSource,
    /// How often progress goes into the DataDownload's status.
    pub progress_interval: Duration,
}

/// Restores the DataDownload's snapshot into the volume. Progress goes into the DataDownload
/// every `progress_interval`.
pub async fn restore_data_download(
    client: &kube::Client,
    options: &DataMoverOptions,
) -> Result<DataMoverResult, DataMoverError> {
    let ns = &options.namespace;
    let dd_id = format!("{ns}/{}", options.data_download);
    let (downloads, dd) = read_own::<DataDownload>(client, ns, &options.data_download).await?;
    let named_by = format!("DataDownload {dd_id}");
    let bsl = read_location(client, ns, &dd.spec.backup_storage_location, &named_by).await?;
    let backend = open_location_backend(client, ns, &bsl, &dd.spec.source_namespace).await?;
    let repo = options
        .password
        .open_repository(client, ns, backend, None)
        .await?;
    let snapshot = repo.find_snapshot(&dd.spec.snapshot_id).await?;
    tracing::info!(data_download = %dd_id, snapshot = %dd.spec.snapshot_id, location = %repo.location(), "restoring");

    let reporter = ProgressReporter::start(
        downloads.clone(),
        &options.data_download,
        options.progress_interval,
    );
    let target = match options.volume_mode {
        VolumeMode::Filesystem => RestoreTarget::Directory {
            path: options.volume_path.clone(),
            subpath: None,
        },
        VolumeMode::Block => RestoreTarget::Device {
            path: options.volume_path.clone(),
        },
    };
    let result = repo
        .restore(
            &snapshot,
            target,
            // Completed hands the volume to its workload (and tells Velero the data is
            // back): the data must then survive a crash of the node, not only sit in its
            // page cache.
            RestoreOptions {
                flush: true,
                ..Default::default()
            },
            reporter.callback(),
        )
        .await;
    let summary = result?;
    tracing::info!(data_download = %dd_id, seconds = summary.seconds, flush_seconds = summary.flush_seconds, "restored");
    let total_bytes = summary.total_bytes;
    reporter.finish(total_bytes).await;
    Ok(DataMoverResult {
        ok: true,
        error: None,
        snapshot_id: snapshot.id.to_hex(),
        total_bytes,
        bytes_done: total_bytes,
        files: summary.files,
        seconds: summary.seconds,
        incremental_bytes: None,
        kept: None,
        warnings: summary
            .warnings
            .iter()
            .take(MAX_WARNINGS)
            .map(|w| {
                let mut w = w.clone();
                ferry_text::truncate(&mut w, WARNING_BYTES);
                w
            })
            .collect(),
    })
}

/// At most this many warnings, of at most this many bytes each, go into the termination
/// message (the pod's log has them all): they share its 4,000 bytes with the error.
const MAX_WARNINGS: usize = 5;
const WARNING_BYTES: usize = 300;
