//! The removal of a backup's objects (after completion, failure, cancel or deletion): the
//! backup pod, PVC and VolumeSnapshot, and the source snapshot and content the take-over
//! released. Each call requests what is left and says how far the removal is, so the caller
//! decides whether to wait for [`Removal::Gone`] or only until nothing more is ferry's to do.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::cluster::RestoreCluster;

use super::controller::Controller;
use super::effects::StepError;
use super::upload_snapshots::SnapshotKind;
use super::upload_view::{
    ObservedUpload, SOURCE_CONTENT_ANNOTATION, annotation, upload_finalizers,
};

/// Where the removal of a backup's objects stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    /// A step of ferry's is still to come (the source content, deleted once its snapshot is
    /// gone).
    Pending,
    /// Every object is gone or being deleted: the rest is their controllers' (the kubelet's,
    /// the PV controller's, the snapshot controller's) and needs nothing more of ferry.
    Requested,
    /// Every object is gone.
    Gone,
}

/// Deletes `name` unless it is gone already.
pub(super) async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

impl Controller {
    /// The source snapshot, then its (retained) content once taken over, are deleted, as
    /// Velero's exposer deletes them: the snapshot was made for this backup alone, and once
    /// taken over the data lives on in the backup snapshot. Before the take-over (a backup
    /// canceled or failed while New or waiting for its snapshot) only the snapshot is deleted;
    /// its content follows its class's deletion policy. Returns how far their removal is.
    pub(super) async fn release_source(&self, o: &ObservedUpload) -> Result<Removal, kube::Error> {
        if self.upload_memo.source_gone(&o.du) {
            return Ok(Removal::Gone);
        }
        let removal = self.request_source_removal(o).await?;
        if removal == Removal::Gone {
            self.upload_memo.found_source_gone(&o.du);
        }
        Ok(removal)
    }

    async fn request_source_removal(&self, o: &ObservedUpload) -> Result<Removal, kube::Error> {
        let csi = o.du.spec.csi_snapshot.clone().unwrap_or_default();
        let source_ns = o.du.spec.source_namespace.as_str();
        let requested = |there: bool| {
            if there {
                Removal::Requested
            } else {
                Removal::Gone
            }
        };
        let Some(content_name) = annotation(&o.du, SOURCE_CONTENT_ANNOTATION) else {
            return Ok(requested(
                !csi.volume_snapshot.is_empty()
                    && self
                        .delete_snapshot_object(
                            SnapshotKind::Snapshot,
                            source_ns,
                            &csi.volume_snapshot,
                        )
                        .await?,
            ));
        };
        if self
            .delete_snapshot_object(SnapshotKind::Snapshot, source_ns, &csi.volume_snapshot)
            .await?
        {
            // The content goes once the snapshot is gone (its controller must see that first).
            self.poll_soon
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(Removal::Pending);
        }
        Ok(requested(
            self.delete_snapshot_object(SnapshotKind::Content, "", content_name)
                .await?,
        ))
    }

    /// Removes the backup pod, PVC (its PV deleted with it, whatever the class's reclaim
    /// policy) and the backup snapshot (its content, policy Delete, goes with it), and the
    /// source snapshot once taken over. Returns how far their removal is, looked at no further
    /// than `needed`: a caller that needs only [`Removal::Requested`] is spared reading back
    /// what it has just deleted.
    pub(super) async fn upload_cleanup(
        &self,
        o: &ObservedUpload,
        needed: Removal,
    ) -> Result<Removal, StepError> {
        let name = o.name.as_str();
        let client = &self.options.client;
        let ns = &self.options.namespace;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        // What is being deleted already is only looked at again, not deleted again.
        let pod = self.backup_pod(name).await?;
        if pod
            .as_ref()
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
        {
            delete_if_present(&pods, name).await?;
        }
        let pvc = self.exposer.cluster.get_pvc(ns, name).await?;
        let pvc_to_delete = pvc
            .as_ref()
            .filter(|p| p.metadata.deletion_timestamp.is_none());
        if let Some(pv_name) = pvc_to_delete
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty())
        {
            let pvs: Api<PersistentVolume> = Api::all(client.clone());
            if let Some(pv) = pvs.get_opt(&pv_name).await?
                && pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                    .is_some_and(|p| p != "Delete")
            {
                pvs.patch(
                    &pv_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": { "persistentVolumeReclaimPolicy": "Delete" } })),
                )
                .await?;
            }
        }
        if pvc_to_delete.is_some() {
            delete_if_present(&pvcs, name).await?;
        }
        let snapshot_was_there = self
            .delete_snapshot_object(SnapshotKind::Snapshot, ns, name)
            .await?;
        let source = self.release_source(o).await?;
        if source == Removal::Pending {
            self.upload_memo.wait(&o.du);
            return Ok(Removal::Pending);
        }
        if needed == Removal::Requested {
            return Ok(Removal::Requested);
        }
        // Only what was there is looked at again (it may have gone at once).
        let gone = source == Removal::Gone
            && (pod.is_none() || pods.get_opt(name).await?.is_none())
            && (pvc.is_none() || self.exposer.cluster.get_pvc(ns, name).await?.is_none())
            && (!snapshot_was_there
                || self
                    .read_snapshot_object(SnapshotKind::Snapshot, ns, name)
                    .await?
                    .is_none());
        if !gone {
            // Deletions of snapshots wake no pass: look again soon, but not on every pass.
            self.poll_soon
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.upload_memo.wait(&o.du);
        }
        Ok(if gone {
            Removal::Gone
        } else {
            Removal::Requested
        })
    }

    /// An ended DataUpload whose cleanup needed another step: take it, then let go.
    pub(super) async fn upload_finish_cleanup(&self, o: &ObservedUpload) -> Result<(), StepError> {
        if self.upload_cleanup(o, Removal::Requested).await? == Removal::Pending {
            return Ok(());
        }
        self.patch_upload(
            &o.name,
            json!({ "metadata": { "finalizers": upload_finalizers(&o.du, false) } }),
        )
        .await?;
        Ok(())
    }
}
