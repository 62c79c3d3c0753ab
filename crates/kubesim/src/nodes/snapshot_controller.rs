//! kubesim's stand-in for the external-snapshotter's snapshot-controller (its "common
//! controller"), run only beside kubesim's own API server; on a real control plane the real
//! snapshot-controller does this. For every driver, it:
//!
//! - binds a VolumeSnapshot of a claim: finds the claim's bound CSI PV and the class
//!   (named, or the driver's default), creates the content `snapcontent-<snapshot uid>`
//!   (`source.volumeHandle`, the class's deletionPolicy, `volumeSnapshotRef` with uid);
//! - binds a VolumeSnapshot of a pre-provisioned content whose `volumeSnapshotRef` names it
//!   (setting the ref's uid when missing);
//! - copies the bound content's status to the snapshot (`readyToUse`, `restoreSize` as a
//!   quantity, `creationTime`, `error`) and keeps the finalizers: on every snapshot
//!   `volumesnapshot-as-source-protection`, set before its content is made, and
//!   `volumesnapshot-bound-protection` once bound to a content of policy Delete;
//!   `volumesnapshotcontent-bound-protection` on bound contents;
//! - deletes a snapshot: marks its content (named by its status, or for a snapshot of a
//!   claim by the fixed `snapcontent-<uid>`) `volumesnapshot-being-deleted` (the driver's
//!   sidecar then lets it go), deletes the content when its policy is Delete and waits for
//!   it to be gone, then removes the snapshot's finalizers.
//!
//! Left out: the claim's `snapshot-as-source` finalizer while a snapshot is taken, group
//! snapshots, the source protection of a snapshot a claim is being provisioned from.
//! Errors are written into `status.error` with the real controller's wording.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::cache::ClusterCache;
use super::events::{EventRecorder, object_reference};
use super::snapshot_types::*;
use super::snapshot_watch::SnapshotWatch;
use super::volume_matching::{name_of, namespace_of};

const RESYNC_INTERVAL: Duration = Duration::from_secs(2);

pub struct SnapshotController {
    client: kube::Client,
    recorder: EventRecorder,
}

/// A restore size in bytes as the controller writes it: a binary-suffixed quantity when
/// exact (1Gi), else plain bytes.
pub fn restore_size_quantity(bytes: i64) -> String {
    for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes > 0 && bytes % (1i64 << shift) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn nanos_to_rfc3339(nanos: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_nanosecond(nanos as i128)
        .map(|t| {
            t.round(k8s_openapi::jiff::Unit::Second)
                .unwrap_or(t)
                .to_string()
        })
        .unwrap_or_default()
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The name the controller gives the content it makes for a snapshot of a claim.
fn dynamic_content_name(snapshot: &VolumeSnapshot) -> String {
    format!(
        "snapcontent-{}",
        snapshot.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn has(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

impl SnapshotController {
    pub fn new(client: kube::Client) -> Self {
        SnapshotController {
            recorder: EventRecorder::new(client.clone(), "snapshot-controller"),
            client,
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
            for snapshot in watch.snapshots.state() {
                if let Err(error) = self.sync_snapshot(&snapshot, &watch, &cache).await {
                    tracing::debug!(%error, snapshot = snapshot.metadata.name, "kubesim snapshot-controller: retrying later");
                }
            }
            for content in watch.contents.state() {
                if let Err(error) = self.sync_content(&content).await {
                    tracing::debug!(%error, content = content.metadata.name, "kubesim snapshot-controller: retrying later");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC_INTERVAL) => {}
            }
        }
    }

    fn snapshots(&self, namespace: &str) -> Api<VolumeSnapshot> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn contents(&self) -> Api<VolumeSnapshotContent> {
        Api::all(self.client.clone())
    }

    /// A bound content without the protection finalizer gets it.
    async fn sync_content(&self, content: &VolumeSnapshotContent) -> anyhow::Result<()> {
        let bound = content
            .spec
            .volume_snapshot_ref
            .uid
            .as_deref()
            .is_some_and(|u| !u.is_empty());
        if bound
            && content.metadata.deletion_timestamp.is_none()
            && !has(&content.metadata, CONTENT_FINALIZER)
        {
            let mut finalizers = content.metadata.finalizers.clone().unwrap_or_default();
            finalizers.push(CONTENT_FINALIZER.into());
            let patch = serde_json::json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": content.metadata.resource_version,
            }});
            self.contents()
                .patch(
                    name_of(content),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        Ok(())
    }

    async fn sync_snapshot(
        &self,
        snapshot: &VolumeSnapshot,
        watch: &SnapshotWatch,
        cache: &ClusterCache,
    ) -> anyhow::Result<()> {
        if snapshot.metadata.deletion_timestamp.is_some() {
            return self.delete_snapshot(snapshot, watch).await;
        }
        // The finalizers come first, before any content is made: a snapshot deleted while
        // its content is being created waits for the deletion to find that content.
        let bound_content = snapshot
            .bound_content_name()
            .and_then(|n| watch.content(n))
            .filter(|c| c.bound_to(snapshot));
        let mut wanted = vec![SNAPSHOT_SOURCE_FINALIZER];
        if bound_content
            .as_ref()
            .is_some_and(|c| c.spec.deletion_policy == "Delete")
        {
            wanted.push(SNAPSHOT_BOUND_FINALIZER);
        }
        if wanted.iter().any(|f| !has(&snapshot.metadata, f)) {
            let mut finalizers = snapshot.metadata.finalizers.clone().unwrap_or_default();
            for f in wanted {
                if !finalizers.iter().any(|x| x == f) {
                    finalizers.push(f.into());
                }
            }
            let patch = serde_json::json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": snapshot.metadata.resource_version,
            }});
            self.snapshots(namespace_of(snapshot))
                .patch(
                    name_of(snapshot),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            return Ok(());
        }
        let Some(content_name) = snapshot.bound_content_name() else {
            return self.bind(snapshot, watch, cache).await;
        };
        let Some(content) = watch.content(content_name) else {
            return Ok(());
        };
        let Some(status) = content.status.as_ref() else {
            return Ok(());
        };
        let current = snapshot.status.clone().unwrap_or_default();
        let ready = status.ready_to_use.unwrap_or(false);
        let size = status.restore_size.map(restore_size_quantity);
        let creation = status.creation_time.map(nanos_to_rfc3339);
        let error = status.error.clone();
        if current.ready_to_use == Some(ready)
            && current.restore_size.as_ref().map(|q| q.0.clone()) == size
            && current.creation_time.is_some() == creation.is_some()
            && current.error == error
        {
            return Ok(());
        }
        let patch = serde_json::json!({"status": {
            "boundVolumeSnapshotContentName": content_name,
            "readyToUse": ready,
            "restoreSize": size,
            "creationTime": creation,
            "error": error,
        }});
        self.snapshots(namespace_of(snapshot))
            .patch_status(
                name_of(snapshot),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    async fn fail(
        &self,
        snapshot: &VolumeSnapshot,
        reason: &str,
        message: String,
    ) -> anyhow::Result<()> {
        let current = snapshot.status.as_ref().and_then(|s| s.error.as_ref());
        if current.and_then(|e| e.message.as_deref()) != Some(message.as_str()) {
            let patch = serde_json::json!({"status": {"readyToUse": false, "error": {
                "message": message, "time": now(),
            }}});
            self.snapshots(namespace_of(snapshot))
                .patch_status(
                    name_of(snapshot),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        self.recorder
            .record(object_reference(snapshot), "Warning", reason, &message)
            .await;
        Ok(())
    }

    async fn bind(
        &self,
        snapshot: &VolumeSnapshot,
        watch: &SnapshotWatch,
        cache: &ClusterCache,
    ) -> anyhow::Result<()> {
        let namespace = namespace_of(snapshot).to_string();
        let name = name_of(snapshot).to_string();
        let uid = snapshot.metadata.uid.clone().unwrap_or_default();
        let source = &snapshot.spec.source;
        let content_name = match (
            &source.persistent_volume_claim_name,
            &source.volume_snapshot_content_name,
        ) {
            (Some(_), Some(_)) | (None, None) => {
                let message = "Exactly one of PersistentVolumeClaimName and VolumeSnapshotContentName should be specified".to_string();
                return self
                    .fail(snapshot, "SnapshotValidationError", message)
                    .await;
            }
            (None, Some(content_name)) => {
                let Some(content) = watch.content(content_name) else {
                    let message = format!(
                        "VolumeSnapshotContent is missing: snapshot {namespace}/{name} requests an non-existing content {content_name}"
                    );
                    return self.fail(snapshot, "SnapshotContentMissing", message).await;
                };
                let r = &content.spec.volume_snapshot_ref;
                if r.name.as_deref() != Some(name.as_str())
                    || r.namespace.as_deref() != Some(namespace.as_str())
                    || r.uid.as_deref().is_some_and(|u| !u.is_empty() && u != uid)
                {
                    let message = format!(
                        "Could not bind snapshot {name} and content {content_name}, the VolumeSnapshotRef does not match"
                    );
                    return self.fail(snapshot, "SnapshotBindFailed", message).await;
                }
                if r.uid.as_deref().is_none_or(str::is_empty) {
                    let patch = serde_json::json!({"spec": {"volumeSnapshotRef": {"uid": uid}}});
                    self.contents()
                        .patch(content_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
                content_name.clone()
            }
            (Some(claim), None) => match self.create_content(snapshot, claim, watch, cache).await {
                Ok(content_name) => content_name,
                Err(message) => {
                    let message = format!("Failed to create snapshot content with error {message}");
                    return self
                        .fail(snapshot, "SnapshotContentCreationFailed", message)
                        .await;
                }
            },
        };
        let patch = serde_json::json!({"status": {
            "boundVolumeSnapshotContentName": content_name,
            "readyToUse": false,
        }});
        self.snapshots(&namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Creates the content of a dynamic snapshot; Err is the message for `status.error`.
    async fn create_content(
        &self,
        snapshot: &VolumeSnapshot,
        claim_name: &str,
        watch: &SnapshotWatch,
        cache: &ClusterCache,
    ) -> Result<String, String> {
        let namespace = namespace_of(snapshot);
        let name = name_of(snapshot);
        let uid = snapshot.metadata.uid.clone().unwrap_or_default();
        let input_error =
            |e: String| format!("failed to get input parameters to create snapshot {name}: {e:?}");
        let (claim, pv) = {
            let snap = cache.read();
            let claim: Option<Arc<PersistentVolumeClaim>> =
                snap.pvc(namespace, claim_name).cloned();
            let Some(claim) = claim else {
                return Err(input_error(format!(
                    "failed to retrieve PVC {claim_name} from the lister: \"persistentvolumeclaim \\\"{claim_name}\\\" not found\""
                )));
            };
            let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
            let pv = volume.and_then(|v| snap.pvs.get(&v).cloned());
            (claim, pv)
        };
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let Some(pv) = pv.filter(|_| bound) else {
            return Err(input_error(format!(
                "the PVC {claim_name} is not yet bound to a PV, will not attempt to take a snapshot"
            )));
        };
        let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.clone()) else {
            return Err(format!(
                "snapshotting non-CSI volumes is not supported, snapshot:{namespace}/{name}"
            ));
        };
        let classes = watch.classes.state();
        let class = match &snapshot.spec.volume_snapshot_class_name {
            Some(class_name) => classes
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(class_name.as_str()))
                .cloned()
                .ok_or_else(|| {
                    input_error(format!(
                        "volumesnapshotclass.snapshot.storage.k8s.io \"{class_name}\" not found"
                    ))
                })?,
            None => {
                let defaults: Vec<_> = classes
                    .iter()
                    .filter(|c| class_driver(c) == Some(csi.driver.as_str()))
                    .filter(|c| {
                        c.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                            .is_some_and(|v| v == "true")
                    })
                    .collect();
                match defaults.as_slice() {
                    [one] => (*one).clone(),
                    [] => return Err(input_error("cannot find default snapshot class".into())),
                    many => {
                        return Err(input_error(format!(
                            "{} default snapshot classes were found",
                            many.len()
                        )));
                    }
                }
            }
        };
        let class_name = class.metadata.name.clone().unwrap_or_default();
        let content_name = dynamic_content_name(snapshot);
        let content = serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name},
            "spec": {
                "volumeSnapshotRef": {
                    "kind": "VolumeSnapshot", "apiVersion": "snapshot.storage.k8s.io/v1",
                    "namespace": namespace, "name": name, "uid": uid,
                    "resourceVersion": snapshot.metadata.resource_version,
                },
                "deletionPolicy": class_deletion_policy(&class).unwrap_or("Delete"),
                "driver": csi.driver,
                "volumeSnapshotClassName": class_name,
                "source": {"volumeHandle": csi.volume_handle},
                "sourceVolumeMode": pv.spec.as_ref().and_then(|s| s.volume_mode.clone()).unwrap_or_else(|| "Filesystem".into()),
            },
        });
        let content: VolumeSnapshotContent =
            serde_json::from_value(content).map_err(|e| e.to_string())?;
        match self
            .contents()
            .create(&PostParams::default(), &content)
            .await
        {
            Ok(_) => Ok(content_name),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(content_name),
            Err(e) => Err(format!(
                "snapshot controller failed to update {content_name} on API server: {e}"
            )),
        }
    }

    async fn delete_snapshot(
        &self,
        snapshot: &VolumeSnapshot,
        watch: &SnapshotWatch,
    ) -> anyhow::Result<()> {
        // A dynamic snapshot's content may exist before the snapshot's status names it (the
        // snapshot deleted right after its content was made): it is found by its fixed name.
        let content_name = match snapshot.bound_content_name() {
            Some(name) => Some(name.to_string()),
            None => snapshot
                .spec
                .source
                .persistent_volume_claim_name
                .as_ref()
                .map(|_| dynamic_content_name(snapshot)),
        };
        // The watch may not have shown a content this controller made a moment ago: ask the
        // server before letting the snapshot go without it.
        let content = match content_name {
            Some(name) => match watch.content(&name) {
                Some(content) => Some(content),
                None => self.contents().get_opt(&name).await?.map(Arc::new),
            },
            None => None,
        }
        .filter(|c| c.bound_to(snapshot));
        if let Some(content) = content {
            let annotated = content
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(BEING_DELETED_ANNOTATION));
            if !annotated {
                let patch = serde_json::json!({"metadata": {"annotations": {BEING_DELETED_ANNOTATION: "yes"}}});
                self.contents()
                    .patch(
                        name_of(content.as_ref()),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                return Ok(());
            }
            if content.spec.deletion_policy == "Delete" {
                if content.metadata.deletion_timestamp.is_none() {
                    match self
                        .contents()
                        .delete(name_of(content.as_ref()), &DeleteParams::default())
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // The snapshot goes once its content is gone.
                return Ok(());
            }
        }
        let finalizers = snapshot.metadata.finalizers.clone().unwrap_or_default();
        let kept: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != SNAPSHOT_SOURCE_FINALIZER && *f != SNAPSHOT_BOUND_FINALIZER)
            .collect();
        if kept.len() != finalizers.len() {
            let patch = serde_json::json!({"metadata": {
                "finalizers": kept,
                "resourceVersion": snapshot.metadata.resource_version,
            }});
            self.snapshots(namespace_of(snapshot))
                .patch(
                    name_of(snapshot),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_sizes_read_as_the_controller_writes_them() {
        assert_eq!(restore_size_quantity(1 << 30), "1Gi");
        assert_eq!(restore_size_quantity(3 << 20), "3Mi");
        assert_eq!(restore_size_quantity(1000), "1000");
        assert_eq!(restore_size_quantity(0), "0");
    }
}
