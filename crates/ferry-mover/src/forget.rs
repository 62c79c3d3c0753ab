//! `ferry data-mover forget`, what runs in the pod the controller starts when Velero deletes a
//! backup whose volume data ferry moved (the decision is the controller's `backup_deletion`):
//! remove exactly the DataUpload's snapshot from the repository, and only if its tags say the
//! data mover made it for that DataUpload of that backup.

use std::time::Duration;

use ferry_controller::crds::{BACKUP_NAME_LABEL, BACKUP_UID_LABEL, DataUpload};
use ferry_controller::data_mover_exit::DataMoverResult;
use ferry_repo::backend::FileType;
use ferry_repo::{Id, RepoError, Repository};

use crate::backup::{UPLOADER, UPLOADER_TAG, upload_repository};
use crate::error::DataMoverError;
use crate::location::PasswordSource;
use crate::objects::read_own;

/// How long the data mover waits for a repository lock held by a backup or another forget.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

/// What `ferry data-mover forget` needs.
#[derive(Debug, Clone)]
pub struct ForgetOptions {
    pub namespace: String,
    pub data_upload: String,
    pub password: PasswordSource,
    pub lock_wait: Duration,
}

/// Forgets the snapshot of the (deleted) DataUpload: opens the repository of its location for
/// its source namespace, checks the snapshot's tags ([`forget_refusal`]: a refusal is
/// reported in `kept`, nothing is removed), takes the exclusive lock (waiting up to
/// `lock_wait` for a backup or another forget) and removes the snapshot. A snapshot already
/// gone is success. Any error removes nothing.
pub async fn forget_data_upload_snapshot(
    client: &kube::Client,
    options: &ForgetOptions,
) -> Result<DataMoverResult, DataMoverError> {
    let ns = &options.namespace;
    let du_id = format!("{ns}/{}", options.data_upload);
    let (_, du) = read_own::<DataUpload>(client, ns, &options.data_upload).await?;
    let snapshot_id = du
        .status
        .as_ref()
        .and_then(|s| s.snapshot_id.clone())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DataMoverError::Kube(format!("DataUpload {du_id} has no snapshotID")))?;
    let id: Id = snapshot_id.parse().map_err(|_| {
        DataMoverError::Kube(format!(
            "DataUpload {du_id} snapshotID {snapshot_id:?} is not a snapshot id"
        ))
    })?;
    let backend = upload_repository(client, ns, &du, &du_id).await?;
    // A missing repository is an error, not "nothing to forget": the location may be
    // misconfigured, and the snapshot must not be given up on that.
    let repo = options
        .password
        .open_repository(client, ns, backend, None)
        .await?;
    let done = |kept: Option<String>| DataMoverResult {
        ok: true,
        snapshot_id: snapshot_id.clone(),
        kept,
        ..DataMoverResult::default()
    };
    if !repo.list_ids(FileType::Snapshot).await?.contains(&id) {
        tracing::info!(data_upload = %du_id, snapshot = %snapshot_id, location = %repo.location(), "snapshot already gone");
        return Ok(done(None));
    }
    let snapshot = repo.load_snapshot(&id).await?;
    if let Some(why) = forget_refusal(&du, &snapshot.tags) {
        tracing::warn!(data_upload = %du_id, snapshot = %snapshot_id, %why, "snapshot kept");
        return Ok(done(Some(why)));
    }
    let lock = lock_waiting(&repo, options.lock_wait).await?;
    let removed = repo.remove_snapshots(&[id]).await;
    lock.release().await;
    removed?;
    tracing::info!(data_upload = %du_id, snapshot = %snapshot_id, location = %repo.location(), "snapshot forgotten");
    Ok(done(None))
}

/// The exclusive lock, retried while another process holds a lock, for up to `wait`.
async fn lock_waiting(
    repo: &Repository,
    wait: Duration,
) -> Result<ferry_repo::lock::RepoLock, RepoError> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        match repo.lock(true).await {
            Err(RepoError::Locked { .. }) if start.elapsed() + pause < wait => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Why the snapshot with `tags` must not be forgotten for the deleted DataUpload `du` (None:
/// it may): it must carry the tags the data mover gave this DataUpload's snapshot — the
/// backup's name (and uid when labelled), the DataUpload's name and ferry's uploader.
pub fn forget_refusal(du: &DataUpload, tags: &[String]) -> Option<String> {
    let mut wanted = Vec::new();
    match du.label(BACKUP_NAME_LABEL) {
        Some(name) => wanted.push(format!("backup={name}")),
        None => return Some(format!("the DataUpload has no {BACKUP_NAME_LABEL} label")),
    }
    if let Some(uid) = du.label(BACKUP_UID_LABEL) {
        wanted.push(format!("backup-uid={uid}"));
    }
    wanted.push(format!(
        "data-upload={}",
        du.metadata.name.as_deref().unwrap_or_default()
    ));
    wanted.push(format!("{UPLOADER_TAG}={UPLOADER}"));
    let missing: Vec<&String> = wanted.iter().filter(|t| !tags.contains(t)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the snapshot lacks the tag(s) {} (it has {}): not made for this DataUpload by ferry",
            missing
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            tags.join(",")
        )
    })
}

#[cfg(test)]
mod tests {
    use ferry_controller::crds::{DataUploadPhase, DataUploadSpec, DataUploadStatus};

    use super::*;

    fn velero_upload() -> DataUpload {
        let mut du = DataUpload::new("b1-abcde", DataUploadSpec::default());
        du.metadata.labels = Some(
            [(BACKUP_NAME_LABEL, "b1"), (BACKUP_UID_LABEL, "uid-1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        du.status = Some(DataUploadStatus {
            phase: Some(DataUploadPhase::Completed),
            snapshot_id: Some("abc".into()),
            ..Default::default()
        });
        du
    }

    #[test]
    fn only_a_snapshot_tagged_for_this_data_upload_by_ferry_is_forgotten() {
        let du = velero_upload();
        let tags = |list: &[&str]| list.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let full = [
            "backup=b1",
            "backup-uid=uid-1",
            "ns=shop",
            "pvc=data-db-0",
            "data-upload=b1-abcde",
            "snapshot-uploader=ferry",
        ];
        assert_eq!(forget_refusal(&du, &tags(&full)), None);
        for missing in [
            "backup=b1",
            "backup-uid=uid-1",
            "data-upload=b1-abcde",
            "snapshot-uploader=ferry",
        ] {
            let without: Vec<&str> = full.iter().copied().filter(|t| *t != missing).collect();
            let why = forget_refusal(&du, &tags(&without)).expect(missing);
            assert!(why.contains(missing), "{why}");
        }
        let other_backup: Vec<&str> = full
            .iter()
            .map(|t| if *t == "backup=b1" { "backup=b2" } else { t })
            .collect();
        assert!(forget_refusal(&du, &tags(&other_backup)).is_some());
        let mut standalone = velero_upload();
        standalone.metadata.labels = None;
        assert!(forget_refusal(&standalone, &tags(&full)).is_some());
    }
}
