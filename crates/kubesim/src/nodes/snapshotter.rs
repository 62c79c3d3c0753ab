//! The csi-snapshotter sidecar and the snapshot half of kubesim's CSI driver
//! (`hostpath.kubesim.io`), for VolumeSnapshotContents of that driver, beside kubesim's own
//! API server and beside a real snapshot-controller alike (external-snapshotter's
//! pkg/sidecar-controller):
//!
//! - a dynamic content (`source.volumeHandle`) not ready yet: take the snapshot (a copy of
//!   the volume, see [`snapshot_data`]) and set `status` (`snapshotHandle`, `readyToUse`,
//!   `restoreSize` = the source PV's capacity, `creationTime`); a content gone before that
//!   status could be written (deleted before it was protected) has its new snapshot deleted;
//! - a pre-provisioned content (`source.snapshotHandle`) not ready yet: check the snapshot
//!   exists and set the same status from its record;
//! - a content being deleted that the snapshot-controller marked `volumesnapshot-being-deleted`
//!   (or a pre-provisioned one never bound): with policy Delete delete the snapshot, then
//!   remove the `volumesnapshotcontent-bound-protection` finalizer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio_util::sync::CancellationToken;

use super::bootstrap::PROVISIONER;
use super::cache::ClusterCache;
use super::events::{EventRecorder, object_reference};
use super::snapshot_data::{self, SnapshotRecord};
use super::snapshot_types::{BEING_DELETED_ANNOTATION, CONTENT_FINALIZER, VolumeSnapshotContent};
use super::snapshot_watch::SnapshotWatch;
use super::volume_data::pv_data_path;
use super::volume_matching::pv_capacity_bytes;

/// How often every content is looked at again without a change (a failed step is retried).
const RESYNC_INTERVAL: Duration = Duration::from_secs(2);

pub struct Snapshotter {
    client: kube::Client,
    data_dir: PathBuf,
    recorder: EventRecorder,
}

/// Whether the sidecar deletes the snapshot and lets the content go (`shouldDelete`).
fn should_delete(content: &VolumeSnapshotContent) -> bool {
    if content.metadata.deletion_timestamp.is_none() {
        return false;
    }
    let unbound = content
        .spec
        .volume_snapshot_ref
        .uid
        .as_deref()
        .is_none_or(str::is_empty);
    (content.spec.source.snapshot_handle.is_some() && unbound)
        || content
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(BEING_DELETED_ANNOTATION))
}

/// The kubesim PV whose CSI handle is `handle`.
fn volume_with_handle(cache: &ClusterCache, handle: &str) -> Option<Arc<PersistentVolume>> {
    cache
        .read()
        .pvs
        .values()
        .find(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .is_some_and(|c| c.driver == PROVISIONER && c.volume_handle == handle)
        })
        .cloned()
}

fn ready_status(handle: &str, record: &SnapshotRecord) -> serde_json::Value {
    serde_json::json!({"status": {
        "snapshotHandle": handle,
        "readyToUse": true,
        "restoreSize": record.restore_size,
        "creationTime": record.creation_time,
        "error": null,
    }})
}

impl Snapshotter {
    pub fn new(client: kube::Client, data_dir: &Path) -> Self {
        Snapshotter {
            recorder: EventRecorder::new(client.clone(), "csi-snapshotter hostpath.kubesim.io"),
            client,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub async fn run(
        self,
        watch: Arc<SnapshotWatch>,
        cache: Arc<ClusterCache>,
        stop: CancellationToken,
    ) {
        let mut changes = watch.subscribe();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = watch.ready() => {}
        }

        loop {
            changes.borrow_and_update();
            for content in watch.contents.state() {
                if content.spec.driver != PROVISIONER {
                    continue;
                }
                if let Err(error) = self.sync(&content, &cache).await {
                    tracing::debug!(%error, content = content.metadata.name, "kubesim snapshotter: retrying later");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC_INTERVAL) => {}
            }
        }
    }

    async fn sync(
        &self,
        content: &VolumeSnapshotContent,
        cache: &ClusterCache,
    ) -> anyhow::Result<()> {
        let name = content.metadata.name.clone().unwrap_or_default();
        let api: Api<VolumeSnapshotContent> = Api::all(self.client.clone());
        if should_delete(content) {
            let handle = content
                .status
                .as_ref()
                .and_then(|s| s.snapshot_handle.clone());
            if content.spec.deletion_policy == "Delete"
                && let Some(handle) = handle
            {
                let data_dir = self.data_dir.clone();
                tokio::task::spawn_blocking(move || snapshot_data::delete(&data_dir, &handle))
                    .await??;
            }
            let finalizers = content.metadata.finalizers.clone().unwrap_or_default();
            if finalizers.iter().any(|f| f == CONTENT_FINALIZER) {
                let kept: Vec<&String> = finalizers
                    .iter()
                    .filter(|f| *f != CONTENT_FINALIZER)
                    .collect();
                let patch = serde_json::json!({"metadata": {
                    "finalizers": kept,
                    "resourceVersion": content.metadata.resource_version,
                }});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            return Ok(());
        }
        if content.metadata.deletion_timestamp.is_some() || content.is_ready() {
            return Ok(());
        }
        let taken_here = content.spec.source.volume_handle.is_some();
        let result = if let Some(volume_handle) = &content.spec.source.volume_handle {
            self.take(content, volume_handle, cache).await
        } else if let Some(handle) = &content.spec.source.snapshot_handle {
            let data_dir = self.data_dir.clone();
            let h = handle.clone();
            match tokio::task::spawn_blocking(move || snapshot_data::read(&data_dir, &h)).await? {
                Ok(Some(record)) => Ok((handle.clone(), record)),
                Ok(None) => Err(anyhow::anyhow!("snapshot {handle} does not exist")),
                Err(e) => Err(e),
            }
        } else {
            return Ok(());
        };
        match result {
            Ok((handle, record)) => {
                match api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&ready_status(&handle, &record)),
                    )
                    .await
                {
                    Ok(_) => {}
                    // The content went while its snapshot was taken (deleted before it was
                    // protected): nothing names the new snapshot, so it goes too.
                    Err(kube::Error::Api(e)) if e.code == 404 && taken_here => {
                        let data_dir = self.data_dir.clone();
                        tokio::task::spawn_blocking(move || {
                            snapshot_data::delete(&data_dir, &handle)
                        })
                        .await??;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(error) => {
                let message = format!("Failed to check and update snapshot content: {error:#}");
                let patch = serde_json::json!({"status": {"readyToUse": false, "error": {
                    "message": message,
                    "time": k8s_openapi::jiff::Timestamp::now().to_string(),
                }}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                self.recorder
                    .record(
                        object_reference(content),
                        "Warning",
                        "SnapshotContentCheckandUpdateFailed",
                        &message,
                    )
                    .await;
            }
        }
        Ok(())
    }

    /// CreateSnapshot: copies the volume with handle `volume_handle`.
    async fn take(
        &self,
        content: &VolumeSnapshotContent,
        volume_handle: &str,
        cache: &ClusterCache,
    ) -> anyhow::Result<(String, SnapshotRecord)> {
        let uid = content.metadata.uid.clone().unwrap_or_default();
        let handle = snapshot_data::snapshot_handle(&uid);
        let Some(pv) = volume_with_handle(cache, volume_handle) else {
            anyhow::bail!("volume {volume_handle} not found");
        };
        let Some(path) = pv_data_path(&pv, &self.data_dir) else {
            anyhow::bail!("volume {volume_handle} has no data on this machine");
        };
        let size = pv_capacity_bytes(&pv).max(0.0) as i64;
        let data_dir = self.data_dir.clone();
        let (h, source) = (handle.clone(), volume_handle.to_string());
        let record = tokio::task::spawn_blocking(move || {
            snapshot_data::take(&data_dir, &h, &path, &source, size)
        })
        .await??;
        Ok((handle, record))
    }
}

/// For a claim whose `dataSource` is a VolumeSnapshot, the handle of the snapshot to fill
/// the new volume from (as external-provisioner's `getSnapshotSource`); Ok(None) for a claim
/// without one; Err with external-provisioner's message while the snapshot is not usable
/// (provisioning is retried).
pub async fn claim_snapshot_handle(
    client: &kube::Client,
    claim: &k8s_openapi::api::core::v1::PersistentVolumeClaim,
    requested_bytes: u64,
) -> Result<Option<String>, String> {
    use super::snapshot_types::{GROUP, VolumeSnapshot};
    let Some(source) = claim.spec.as_ref().and_then(|s| s.data_source.as_ref()) else {
        return Ok(None);
    };
    if source.kind != "VolumeSnapshot" || source.api_group.as_deref() != Some(GROUP) {
        return Ok(None);
    }
    let name = &source.name;
    let namespace = claim.metadata.namespace.as_deref().unwrap_or("default");
    let failed = |e: String| {
        format!("error getting handle for DataSource Type VolumeSnapshot by Name {name}: {e}")
    };
    let snapshot = Api::<VolumeSnapshot>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| {
            failed(format!(
                "error getting snapshot {name} from api server: {e}"
            ))
        })?;
    if snapshot.metadata.deletion_timestamp.is_some() {
        return Err(failed(format!(
            "snapshot {name} is currently being deleted"
        )));
    }
    if !snapshot.is_ready() {
        return Err(failed(format!("snapshot {name} is not Ready")));
    }
    let Some(content_name) = snapshot.bound_content_name() else {
        return Err(failed(format!("snapshot {name} not bound")));
    };
    let content = Api::<VolumeSnapshotContent>::all(client.clone())
        .get(content_name)
        .await
        .map_err(|e| {
            failed(format!(
                "error getting snapshot content {content_name}: {e}"
            ))
        })?;
    if content.spec.driver != PROVISIONER {
        return Err(failed(format!(
            "snapshot {name} was taken by driver {}, not {PROVISIONER}",
            content.spec.driver
        )));
    }
    let status = content.status.unwrap_or_default();
    let Some(handle) = status.snapshot_handle else {
        return Err(failed(format!(
            "snapshot handle of content {content_name} is missing"
        )));
    };
    if let Some(size) = status.restore_size
        && (size as u64) > requested_bytes
    {
        return Err(failed(format!(
            "requested volume size {requested_bytes} is less than the size {size} for the source snapshot {name}"
        )));
    }
    Ok(Some(handle))
}
