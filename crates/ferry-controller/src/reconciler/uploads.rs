//! The DataUpload half of the controller, after Velero's `data_upload_controller.go` with the
//! CSI snapshot exposer (`csi_snapshot.go`): New → Accepted → Prepared → InProgress →
//! Completed | Failed, or Canceling → Canceled.
//!
//! Accepted waits for the VolumeSnapshot to be ready, takes its data over (the source content
//! is retained; a VolumeSnapshot and a pre-provisioned content of the DataUpload's name in
//! ferry's namespace carry the same snapshot handle; the source snapshot and content are
//! deleted), chooses a node as restores do (`loadAffinity`, `loadConcurrency` slots shared
//! with restores, least loaded first) and creates the backup PVC from the snapshot and the
//! backup pod there. As for restores, every step is decided from what the cluster shows, so a
//! restarted controller continues where the last one stopped.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::DynamicObject;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::cluster::RestoreCluster;
use crate::crds::DataUpload;
use crate::data_mover_exit::data_mover_failure;
use crate::data_mover_exit::parse_termination_message;
use crate::expose::{ExposeState, Movement, PodSettings, hostname_of, termination_message};
use crate::placement::{NodeInfo, choose_node};
use ferry_text::human_bytes;

use super::controller::Controller;
use super::effects::StepError;
use super::effects::{human, now, since};
use super::intent::{Facts, Intent, Phase, next_intent};
use super::node_load::NodeLoad;
use super::upload_cleanup::{Removal, delete_if_present};
use super::upload_snapshots::SnapshotKind;
use super::upload_view::{
    ObservedUpload, SOURCE_CONTENT_ANNOTATION, UPLOADED_ANNOTATION, annotation,
    has_upload_finalizer, upload_finalizers,
};
use super::view::{created_at, finalizers_with, pod_phase};
use crate::backup_deletion::{
    BackupView, DeleteRequestView, FORGET_ANNOTATION, FORGET_FAILED_ANNOTATION, SNAPSHOT_FINALIZER,
    SnapshotFate, backup_resource, delete_request_resource, forget_pod_for, forget_pod_name,
    snapshot_fate,
};
use crate::crds::BACKUP_NAME_LABEL;
use crate::crds::{BackupStorageLocation, DataUploadPhase};
use crate::expose::{SELECTED_NODE_ANNOTATION, pod_abnormal};
use crate::expose_snapshot::{
    BACKUP_DEVICE_PATH, BACKUP_MOUNT_PATH, backup_content_for, backup_pod_for, backup_pvc_for,
    backup_snapshot_for,
};
use crate::queue::{Stage, Waiting, admit};

/// How long an error on the source VolumeSnapshot must stand before it fails the backup.
const SNAPSHOT_ERROR_GRACE_SECONDS: i64 = 15;

/// Where the take-over of the snapshot stands.
enum SnapshotState {
    /// Not ready yet; the text says what is awaited.
    Waiting(String),
    /// The backup snapshot is ready: its restore size.
    Ready { restore_size: Option<Quantity> },
}

fn to_json(obj: &DynamicObject) -> serde_json::Value {
    serde_json::to_value(obj).unwrap_or_default()
}

fn from_json(value: serde_json::Value) -> Result<DynamicObject, kube::Error> {
    serde_json::from_value(value).map_err(kube::Error::SerdeError)
}

impl Controller {
    /// The DataUploads of this data mover, oldest first: from the store once it is synced
    /// (unless the store is behind a write of this controller), else from the API server. A
    /// cluster without the DataUpload CRD has none.
    pub(super) async fn observe_uploads(&self) -> Vec<ObservedUpload> {
        let observed = self
            .observe(
                self.watches.uploads_synced(),
                &self.watches.uploads,
                &self.uploads,
                "dataupload",
            )
            .await;
        let all = observed.unwrap_or_else(|err| {
            tracing::debug!(error = %err, "cannot read DataUploads");
            Vec::new()
        });
        let mut ours: Vec<ObservedUpload> = all
            .into_iter()
            .filter(|du| du.spec.is_for_data_mover(&self.options.data_mover_name))
            .map(|du| ObservedUpload {
                name: du.metadata.name.clone().unwrap_or_default(),
                du,
            })
            .collect();
        ours.sort_by(|a, b| {
            created_at(&a.du.metadata)
                .cmp(&created_at(&b.du.metadata))
                .then_with(|| a.name.cmp(&b.name))
        });
        ours
    }

    /// Adds the slots the uploads hold to the restores' (`loadConcurrency` is per node,
    /// whatever the direction).
    pub(super) fn count_upload_slots(
        uploads: &[ObservedUpload],
        slots: &mut BTreeMap<String, usize>,
    ) {
        for node in uploads.iter().filter_map(ObservedUpload::slot) {
            *slots.entry(node.to_string()).or_default() += 1;
        }
    }

    /// Moves each DataUpload one step.
    pub(super) async fn upload_steps(
        &self,
        uploads: &[ObservedUpload],
        load: &mut NodeLoad,
        nodes: &[NodeInfo],
    ) {
        let mut phases: BTreeMap<String, u64> = BTreeMap::new();
        for o in uploads {
            *phases.entry(o.du.phase().as_str().to_string()).or_default() += 1;
        }
        self.metrics.set_upload_phases(phases);
        // The prepare queue, with the restores' rule: New uploads are accepted oldest first
        // while fewer than prepareQueueLength are being exposed.
        let entries = uploads
            .iter()
            .map(|o| Waiting {
                name: o.name.clone(),
                stage: match o.du.phase() {
                    DataUploadPhase::New => Stage::New,
                    DataUploadPhase::Accepted | DataUploadPhase::Prepared => Stage::Preparing,
                    _ => Stage::Past,
                },
                created: created_at(&o.du.metadata),
            })
            .collect();
        let admitted = admit(entries, self.config.prepare_queue_length());
        self.upload_memo
            .keep_only(uploads.iter().map(|o| o.name.as_str()));
        for o in uploads {
            if !self.leading() {
                break;
            }
            if let Err(err) = self.step_upload(o, &admitted, load, nodes).await {
                err.report("DataUpload", &o.name);
            }
        }
    }

    async fn step_upload(
        &self,
        o: &ObservedUpload,
        admitted: &[String],
        load: &mut NodeLoad,
        nodes: &[NodeInfo],
    ) -> Result<(), StepError> {
        let facts = Facts {
            phase: Phase::named(o.du.phase().as_str()),
            deleting: o.du.metadata.deletion_timestamp.is_some(),
            holds_finalizer: has_upload_finalizer(&o.du),
            cancel_requested: o.du.spec.cancel == Some(true),
            data_moved: annotation(&o.du, UPLOADED_ANNOTATION).is_some(),
            admitted: admitted.contains(&o.name),
        };
        let intent = next_intent(&facts);
        let paced = matches!(
            intent,
            Intent::Place
                | Intent::Follow
                | Intent::Cancel
                | Intent::CleanUpDeleted
                | Intent::FinishCleanUp
        );
        if paced {
            // A step that waits for an unwatched object runs again when the DataUpload changes
            // or its poll is due, not on every pass.
            if !self.upload_memo.due(&o.du) {
                self.poll_soon
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
            self.upload_memo.moved_on(&o.du);
        }
        match intent {
            Intent::CleanUpDeleted => self.upload_deleted(o).await,
            Intent::Wait => Ok(()),
            Intent::FinishCleanUp => self.upload_finish_cleanup(o).await,
            Intent::AddFinalizer => {
                self.patch_upload(
                    &o.name,
                    json!({ "metadata": { "finalizers": upload_finalizers(&o.du, true) } }),
                )
                .await?;
                Ok(())
            }
            Intent::Cancel => self.upload_cancel(o).await,
            Intent::Accept => {
                let patch = self.acceptance(upload_finalizers(&o.du, true), &o.du.metadata);
                self.patch_upload(&o.name, patch).await?;
                self.record_accepted(&o.du).await;
                Ok(())
            }
            Intent::Place => self.upload_accepted(o, load, nodes).await,
            Intent::Start => self.upload_prepared(o).await,
            Intent::Follow => self.upload_in_progress(o).await,
        }
    }

    async fn upload_accepted(
        &self,
        o: &ObservedUpload,
        load: &mut NodeLoad,
        nodes: &[NodeInfo],
    ) -> Result<(), StepError> {
        let status = o.du.status.clone().unwrap_or_default();
        let waited = since(status.accepted_timestamp.as_ref());
        let ns = &self.options.namespace;
        if let Some(problem) = crate::spec_checks::data_upload_problem(&o.name, &o.du.spec) {
            return self.upload_fail(o, &format!("refused: {problem}")).await;
        }
        if let Some(node) = status.node.clone() {
            return self.upload_exposed(o, &node).await;
        }
        // Checked first: without a location the data has nowhere to go.
        let location = &o.du.spec.backup_storage_location;
        if !self.upload_memo.location_found(&o.du) {
            let locations: Api<BackupStorageLocation> =
                Api::namespaced(self.options.client.clone(), ns);
            if locations.get_opt(location).await?.is_none() {
                return self
                    .upload_fail(
                        o,
                        &format!("BackupStorageLocation {ns}/{location} not found"),
                    )
                    .await;
            }
            self.upload_memo.found_location(&o.du);
        }
        if o.du.spec.snapshot_type != crate::crds::SNAPSHOT_TYPE_CSI
            || o.du.spec.csi_snapshot.is_none()
        {
            return self
                .upload_fail(
                    o,
                    &format!(
                        "unsupported snapshotType {:?}: ferry backs up CSI snapshots (spec.csiSnapshot)",
                        o.du.spec.snapshot_type
                    ),
                )
                .await;
        }
        let restore_size = match self.taken_over_snapshot(o).await {
            Ok(SnapshotState::Ready { restore_size }) => restore_size,
            Ok(SnapshotState::Waiting(why)) => {
                let limit = self.options.prepare_timeout;
                if waited > limit {
                    return self
                        .upload_fail(
                            o,
                            &format!(
                                "timed out after {} (the prepare timeout, --prepare-timeout) waiting for {why}",
                                human(limit)
                            ),
                        )
                        .await;
                }
                self.poll_soon
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.upload_memo.wait(&o.du);
                return self
                    .set_upload_message(o, &format!("waiting for {why}"))
                    .await;
            }
            Err(TakeOver::Step(err)) => return Err(err),
            Err(TakeOver::Fail(message)) => return self.upload_fail(o, &message).await,
        };
        // Where: as restores without a selected node (the snapshot can be provisioned anywhere
        // the class allows).
        let source_class =
            o.du.spec
                .csi_snapshot
                .as_ref()
                .map(|c| c.storage_class.clone())
                .filter(|c| !c.is_empty());
        let class = match &source_class {
            Some(c) => self.exposer.cluster.get_storage_class(c).await?,
            None => None,
        };
        let input =
            self.placement_input(nodes, load, None, source_class.as_deref(), class.as_ref());
        let choice = match choose_node(&input) {
            Ok(c) => c,
            Err(err) => {
                if !err.is_wait() && waited > self.options.expose_timeout {
                    return self
                        .upload_fail(
                            o,
                            &format!(
                                "timed out after {} choosing a node: {}",
                                human(self.options.expose_timeout),
                                err
                            ),
                        )
                        .await;
                }
                return self
                    .set_upload_message(o, &format!("waiting for a node: {}", err))
                    .await;
            }
        };
        load.chose(&choice.node);
        self.patch_upload(
            &o.name,
            json!({
                "metadata": { "resourceVersion": o.du.metadata.resource_version },
                "status": { "node": choice.node, "nodeOS": "linux", "message": null },
            }),
        )
        .await?;
        self.event(
            &o.du,
            "Normal",
            "NodeChosen",
            &format!("backup runs on node {}", choice.node),
        );
        self.expose_upload(o, &choice.node, restore_size).await
    }

    /// The take-over as [`Self::take_over_snapshot`] does it, or its result once done: a
    /// backup snapshot once ready stays so.
    async fn taken_over_snapshot(&self, o: &ObservedUpload) -> Result<SnapshotState, TakeOver> {
        if let Some(restore_size) = self.upload_memo.taken_over(&o.du) {
            return Ok(SnapshotState::Ready { restore_size });
        }
        let state = self.take_over_snapshot(o).await?;
        if let SnapshotState::Ready { restore_size } = &state {
            self.upload_memo.took_over(&o.du, restore_size.clone());
        }
        Ok(state)
    }

    /// Velero's take-over of the snapshot's data, step by step and idempotent: retain the
    /// source content, create the backup snapshot and its pre-provisioned content, delete the
    /// source snapshot and content.
    async fn take_over_snapshot(&self, o: &ObservedUpload) -> Result<SnapshotState, TakeOver> {
        let ns = &self.options.namespace;
        let csi = o.du.spec.csi_snapshot.clone().unwrap_or_default();
        let source_ns = &o.du.spec.source_namespace;
        let source_id = format!("{source_ns}/{}", csi.volume_snapshot);
        let backup = self
            .read_snapshot_object(SnapshotKind::Snapshot, ns, &o.name)
            .await
            .map_err(TakeOver::kube)?
            .map(|s| to_json(&s));

        let Some(backup) = backup else {
            // Not taken over yet: the source snapshot must be ready. Its absence fails the
            // backup, so a store that may lag behind its creation is not the last word.
            let source = self
                .read_snapshot_object_or_api(
                    SnapshotKind::Snapshot,
                    source_ns,
                    &csi.volume_snapshot,
                )
                .await
                .map_err(TakeOver::kube)?
                .map(|s| to_json(&s));
            let Some(source) = source else {
                return Err(TakeOver::Fail(format!(
                    "VolumeSnapshot {source_id} not found"
                )));
            };
            let ready = source["status"]["readyToUse"].as_bool() == Some(true);
            if let Some(message) = source["status"]["error"]["message"]
                .as_str()
                .filter(|_| !ready)
            {
                // The snapshot controller retries what may pass (a claim its cache does not
                // show bound yet) and keeps the error's first time: only an error that
                // stands fails the backup.
                let since = source["status"]["error"]["time"]
                    .as_str()
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
                let standing = since.is_none_or(|t| {
                    k8s_openapi::jiff::Timestamp::now()
                        .duration_since(t)
                        .as_secs()
                        >= SNAPSHOT_ERROR_GRACE_SECONDS
                });
                if standing {
                    return Err(TakeOver::Fail(format!(
                        "VolumeSnapshot {source_id} failed: {message}"
                    )));
                }
                return Ok(SnapshotState::Waiting(format!(
                    "VolumeSnapshot {source_id} to be ready (it reports: {message})"
                )));
            }
            if !ready {
                return Ok(SnapshotState::Waiting(format!(
                    "VolumeSnapshot {source_id} to be ready"
                )));
            }
            let Some(content_name) = source["status"]["boundVolumeSnapshotContentName"]
                .as_str()
                .map(str::to_string)
            else {
                return Ok(SnapshotState::Waiting(format!(
                    "VolumeSnapshot {source_id} to be bound to a content"
                )));
            };
            let Some(content) = self
                .read_snapshot_object_or_api(SnapshotKind::Content, "", &content_name)
                .await
                .map_err(TakeOver::kube)?
                .map(|c| to_json(&c))
            else {
                return Err(TakeOver::Fail(format!(
                    "VolumeSnapshotContent {content_name} of VolumeSnapshot {source_id} not found"
                )));
            };
            if content["status"]["snapshotHandle"].as_str().is_none() {
                return Ok(SnapshotState::Waiting(format!(
                    "VolumeSnapshotContent {content_name} to have a snapshot handle"
                )));
            }
            // Remembered for the deletion of the source content (step 4), before it is
            // retained: a cleanup that knows the content deletes it whatever its policy.
            if annotation(&o.du, SOURCE_CONTENT_ANNOTATION) != Some(content_name.as_str()) {
                self.patch_upload(
                    &o.name,
                    json!({ "metadata": { "annotations": { SOURCE_CONTENT_ANNOTATION: content_name } } }),
                )
                .await
                .map_err(TakeOver::kube)?;
            }
            // 1. The data outlives the source snapshot's deletion.
            if content["spec"]["deletionPolicy"].as_str() != Some("Retain") {
                self.patch_snapshot_object(
                    SnapshotKind::Content,
                    &content_name,
                    json!({ "spec": { "deletionPolicy": "Retain" } }),
                )
                .await
                .map_err(TakeOver::kube)?;
            }
            // 2. The backup snapshot (its content comes next, bound to its uid).
            let mut vs = backup_snapshot_for(&o.du, ns, &source);
            vs["metadata"]["ownerReferences"] = json!([crate::expose::owner_reference(&o.du)]);
            self.create_snapshot_object(
                SnapshotKind::Snapshot,
                ns,
                &from_json(vs).map_err(TakeOver::kube)?,
            )
            .await
            .map_err(TakeOver::kube)?;
            return Ok(SnapshotState::Waiting(format!(
                "the backup VolumeSnapshot {ns}/{} to be bound",
                o.name
            )));
        };

        let source_content = annotation(&o.du, SOURCE_CONTENT_ANNOTATION).map(str::to_string);
        // 3. The backup content, with the source content's handle.
        if self
            .read_snapshot_object(SnapshotKind::Content, "", &o.name)
            .await
            .map_err(TakeOver::kube)?
            .is_none()
        {
            let Some(content_name) = source_content.clone() else {
                return Err(TakeOver::Fail(format!(
                    "backup VolumeSnapshot {ns}/{} exists but the source content is unknown",
                    o.name
                )));
            };
            let Some(content) = self
                .read_snapshot_object_or_api(SnapshotKind::Content, "", &content_name)
                .await
                .map_err(TakeOver::kube)?
                .map(|c| to_json(&c))
            else {
                return Err(TakeOver::Fail(format!(
                    "VolumeSnapshotContent {content_name} disappeared before its data was taken over"
                )));
            };
            let uid = backup["metadata"]["uid"].as_str().unwrap_or_default();
            let vsc = backup_content_for(&o.du, ns, &content, uid);
            self.create_snapshot_object(
                SnapshotKind::Content,
                "",
                &from_json(vsc).map_err(TakeOver::kube)?,
            )
            .await
            .map_err(TakeOver::kube)?;
        }
        // 4. The source snapshot and content go (the retained data stays).
        self.release_source(o).await.map_err(TakeOver::kube)?;
        if backup["status"]["readyToUse"].as_bool() != Some(true) {
            // Its error is not final: the snapshot controller reports the missing content
            // until step 3's content appears, then binds the two.
            let reported = backup["status"]["error"]["message"]
                .as_str()
                .map(|m| format!(" (it reports: {m})"))
                .unwrap_or_default();
            return Ok(SnapshotState::Waiting(format!(
                "the backup VolumeSnapshot {ns}/{} to be ready{reported}",
                o.name
            )));
        }
        let restore_size = backup["status"]["restoreSize"]
            .as_str()
            .map(|s| Quantity(s.to_string()));
        Ok(SnapshotState::Ready { restore_size })
    }

    /// Creates the backup PVC (from the backup snapshot, provisioned on `node`) and pod.
    async fn expose_upload(
        &self,
        o: &ObservedUpload,
        node: &str,
        restore_size: Option<Quantity>,
    ) -> Result<(), StepError> {
        let ns = &self.options.namespace;
        let cluster = &self.exposer.cluster;
        let source_class =
            o.du.spec
                .csi_snapshot
                .as_ref()
                .map(|c| c.storage_class.clone())
                .unwrap_or_default();
        let source = cluster
            .get_pvc(&o.du.spec.source_namespace, &o.du.spec.source_pvc)
            .await?;
        let block = source
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.volume_mode.as_deref())
            == Some("Block");
        let size = restore_size
            .or_else(|| {
                source
                    .as_ref()
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|c| c.get("storage").cloned())
            })
            .unwrap_or_else(|| Quantity("1Gi".to_string()));
        let mut pvc = backup_pvc_for(&o.du, ns, &source_class, size, block, &self.config);
        pvc.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SELECTED_NODE_ANNOTATION.to_string(), node.to_string());
        let node_object = self
            .observe_nodes()
            .await?
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(node));
        let settings = PodSettings {
            image: self.options.image.clone(),
            service_account: self.options.service_account.clone(),
            log_filter: self.options.data_mover_log.clone(),
            password_secret: None,
            tolerations: Vec::new(),
        };
        let hostname = node_object
            .as_ref()
            .map(hostname_of)
            .unwrap_or_else(|| node.to_string());
        let pod = backup_pod_for(
            &o.du,
            ns,
            &source_class,
            block,
            Some(&hostname),
            &self.config,
            &settings,
        );
        // The restore side's expose: the pod only once a provisioned PVC is Bound, so the
        // scheduler and the PV controller never race on the claim (a Warning event each time).
        match self.exposer.expose(Movement::Backup, &pvc, &pod).await {
            Ok(ExposeState::PodCreated) => Ok(()),
            Ok(ExposeState::WaitingForVolume { since: created }) => {
                if since(created.as_ref()) > self.options.expose_timeout {
                    return self.upload_expose_timed_out(o, None).await;
                }
                self.set_upload_message(
                    o,
                    &format!(
                        "waiting for backup PVC {ns}/{} to be provisioned on node {node} before its pod starts",
                        o.name
                    ),
                )
                .await
            }
            Err(err) if err.is_transient() => Err(err.into()),
            Err(err) => {
                self.upload_fail(o, &format!("cannot expose the snapshot: {err}"))
                    .await
            }
        }
    }

    /// The backup pod of an exposed upload: Prepared once it runs.
    async fn upload_exposed(&self, o: &ObservedUpload, node: &str) -> Result<(), StepError> {
        let ns = &self.options.namespace;
        let pod = match self.backup_pod(&o.name).await? {
            Some(pod) => pod,
            None => {
                // Exposed on a previous pass that stopped half-way: finish it.
                let restore_size = match self.taken_over_snapshot(o).await {
                    Ok(SnapshotState::Ready { restore_size }) => restore_size,
                    Ok(SnapshotState::Waiting(_)) => return Ok(()),
                    Err(TakeOver::Step(err)) => return Err(err),
                    Err(TakeOver::Fail(message)) => return self.upload_fail(o, &message).await,
                };
                return self.expose_upload(o, node, restore_size).await;
            }
        };
        if let Some(problem) = pod_problem(&pod) {
            return self
                .upload_fail(o, &format!("backup pod {ns}/{}: {problem}", o.name))
                .await;
        }
        let phase = pod_phase(&pod);
        if phase == "Running" || phase == "Succeeded" {
            self.patch_upload(&o.name, json!({ "status": { "phase": "Prepared" } }))
                .await?;
            self.event(
                &o.du,
                "Normal",
                "Prepared",
                &format!("backup pod {ns}/{} is running on node {node}", o.name),
            );
        } else if since(pod.metadata.creation_timestamp.as_ref()) > self.options.expose_timeout {
            return self.upload_expose_timed_out(o, Some(&pod)).await;
        }
        Ok(())
    }

    /// Fails an upload whose backup PVC or pod did not come up within the expose timeout,
    /// saying why (the diagnosis the restore side uses).
    async fn upload_expose_timed_out(
        &self,
        o: &ObservedUpload,
        pod: Option<&Pod>,
    ) -> Result<(), StepError> {
        let why = self.diagnose(Movement::Backup, &o.name, pod).await;
        self.upload_fail(
            o,
            &format!(
                "timed out after {} exposing the snapshot: {why}",
                human(self.options.expose_timeout)
            ),
        )
        .await
    }

    pub(super) async fn backup_pod(&self, name: &str) -> Result<Option<Pod>, kube::Error> {
        let ns = &self.options.namespace;
        if self.watches.uploads_synced() {
            let key = ObjectRef::new(name).within(ns);
            let cached = self.watches.backup_pods.get(&key);
            if self
                .watches
                .own_writes
                .caught_up("pod", ns, name, cached.as_deref())
            {
                return Ok(cached.map(|p| (*p).clone()));
            }
        }
        Api::<Pod>::namespaced(self.options.client.clone(), ns)
            .get_opt(name)
            .await
    }

    async fn upload_prepared(&self, o: &ObservedUpload) -> Result<(), StepError> {
        let ns = &self.options.namespace;
        let Some(pod) = self.backup_pod(&o.name).await? else {
            return self
                .upload_fail(
                    o,
                    &format!(
                        "backup pod {ns}/{} disappeared before the data mover started",
                        o.name
                    ),
                )
                .await;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        self.patch_upload(
            &o.name,
            json!({ "status": { "phase": "InProgress", "startTimestamp": now() } }),
        )
        .await?;
        self.event(
            &o.du,
            "Normal",
            "InProgress",
            &format!(
                "data mover backing up {}/{} on node {node}",
                o.du.spec.source_namespace, o.du.spec.source_pvc
            ),
        );
        Ok(())
    }

    async fn upload_in_progress(&self, o: &ObservedUpload) -> Result<(), StepError> {
        let ns = &self.options.namespace;
        if annotation(&o.du, UPLOADED_ANNOTATION).is_some() {
            // The result is recorded: request the removal of the backup's objects, then
            // complete, as Velero's node-agent does. Waiting until they are gone would hold
            // the backup (and the node's slot) while the snapshot controller, at its rate
            // limit, removes finalizers: 10-15 s per backup on a busy control plane, with
            // nothing of the data at stake.
            if self.upload_cleanup(o, Removal::Requested).await? == Removal::Pending {
                return Ok(());
            }
            let status = o.du.status.clone().unwrap_or_default();
            let total = status
                .progress
                .as_ref()
                .and_then(|p| p.total_bytes)
                .unwrap_or(0);
            self.finish_upload(
                o,
                json!({ "phase": "Completed", "completionTimestamp": now(), "message": null }),
            )
            .await?;
            self.metrics.backup_ended("completed", total.max(0) as u64);
            self.event(
                &o.du,
                "Normal",
                "Completed",
                &format!(
                    "{}/{} backed up as snapshot {} ({}, {total} bytes)",
                    o.du.spec.source_namespace,
                    o.du.spec.source_pvc,
                    status.snapshot_id.unwrap_or_default(),
                    human_bytes(total.max(0) as u64)
                ),
            );
            return Ok(());
        }
        let Some(pod) = self.backup_pod(&o.name).await? else {
            return self
                .upload_fail(
                    o,
                    &format!(
                        "backup pod {ns}/{} was deleted before the data mover finished",
                        o.name
                    ),
                )
                .await;
        };
        let message = termination_message(&pod);
        let result = message.as_deref().and_then(parse_termination_message);
        match pod_phase(&pod).as_str() {
            "Succeeded" => {
                let Some(result) = result.filter(|r| r.ok && !r.snapshot_id.is_empty()) else {
                    return self
                        .upload_fail(
                            o,
                            &format!(
                                "the data mover ended without reporting a snapshot: {}",
                                message.unwrap_or_default()
                            ),
                        )
                        .await;
                };
                let block = pod
                    .spec
                    .as_ref()
                    .map(|s| &s.containers[0])
                    .and_then(|c| c.volume_devices.as_ref())
                    .is_some_and(|d| !d.is_empty());
                // From now on the snapshot is in the repository: a Velero backup's DataUpload
                // keeps it until its deletion is decided (`velero backup delete`).
                let finalizers = if o
                    .du
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.get(BACKUP_NAME_LABEL).is_some_and(|v| !v.is_empty()))
                {
                    finalizers_with(&o.du.metadata, SNAPSHOT_FINALIZER, true)
                } else {
                    o.du.metadata.finalizers.clone().unwrap_or_default()
                };
                let patch = json!({
                    "metadata": {
                        "annotations": { UPLOADED_ANNOTATION: now() },
                        "finalizers": finalizers,
                    },
                    "status": {
                        "snapshotID": result.snapshot_id,
                        "path": if block { BACKUP_DEVICE_PATH } else { BACKUP_MOUNT_PATH },
                        "progress": { "totalBytes": result.total_bytes, "bytesDone": result.total_bytes },
                        "incrementalBytes": result.incremental_bytes,
                    },
                });
                self.patch_upload(&o.name, patch).await?;
                self.event(
                    &o.du,
                    "Normal",
                    "DataMoved",
                    &format!(
                        "{} ({} bytes) backed up as snapshot {}; removing the backup's objects",
                        human_bytes(result.total_bytes),
                        result.total_bytes,
                        result.snapshot_id
                    ),
                );
                Ok(())
            }
            "Failed" | "Unknown" => {
                // Its own error from the termination message, else how it ended.
                let why = data_mover_failure(&pod);
                self.upload_fail(o, &format!("data mover failed: {why}"))
                    .await
            }
            _ => {
                if let Some(problem) = pod_problem(&pod) {
                    return self
                        .upload_fail(o, &format!("backup pod {ns}/{}: {problem}", o.name))
                        .await;
                }
                Ok(())
            }
        }
    }

    async fn upload_cancel(&self, o: &ObservedUpload) -> Result<(), StepError> {
        let previous = o.du.status.as_ref().and_then(|s| s.message.clone());
        let reason = if o.du.phase() != DataUploadPhase::Canceling {
            let reason = match previous.filter(|m| !m.is_empty()) {
                Some(m) => format!("spec.cancel was set (message then: {m})"),
                None => "spec.cancel was set".to_string(),
            };
            self.patch_upload(
                &o.name,
                json!({ "status": { "phase": "Canceling", "message": reason } }),
            )
            .await?;
            self.event(
                &o.du,
                "Normal",
                "Canceling",
                &format!("{reason}: removing the backup's objects"),
            );
            reason
        } else {
            previous.unwrap_or_else(|| "spec.cancel was set".to_string())
        };
        if self.upload_cleanup(o, Removal::Gone).await? == Removal::Gone {
            self.finish_upload(
                o,
                json!({
                    "phase": "Canceled",
                    "completionTimestamp": now(),
                    "message": format!("canceled: {reason}"),
                }),
            )
            .await?;
            self.metrics.backup_ended("canceled", 0);
            self.event(
                &o.du,
                "Normal",
                "Canceled",
                "backup canceled; its pod, PVC and snapshot are removed",
            );
        }
        Ok(())
    }

    async fn upload_fail(&self, o: &ObservedUpload, message: &str) -> Result<(), StepError> {
        // The failure is final whatever the cleanup does; what it could not finish keeps the
        // finalizer, and a later step ([`Intent::FinishCleanUp`]) finishes it.
        let unfinished = match self.upload_cleanup(o, Removal::Requested).await {
            Ok(removal) => removal == Removal::Pending,
            Err(err) => {
                tracing::warn!(data_upload = %o.name, error = %err, "cleanup after failure incomplete");
                true
            }
        };
        self.finish_upload_keeping(
            o,
            json!({ "phase": "Failed", "completionTimestamp": now(), "message": message }),
            unfinished,
        )
        .await?;
        self.metrics.backup_ended("failed", 0);
        self.event(&o.du, "Warning", "Failed", message);
        tracing::warn!(data_upload = %o.name, %message, "backup failed");
        Ok(())
    }

    async fn upload_deleted(&self, o: &ObservedUpload) -> Result<(), StepError> {
        if !has_upload_finalizer(&o.du) {
            if o.du.holds_finalizer(SNAPSHOT_FINALIZER) {
                return self.snapshot_deleted(o).await;
            }
            return Ok(());
        }
        if self.upload_cleanup(o, Removal::Gone).await? != Removal::Gone {
            return Ok(());
        }
        if !o.du.phase().is_terminal() {
            self.metrics.backup_ended("canceled", 0);
        }
        self.patch_upload(
            &o.name,
            json!({ "metadata": { "finalizers": upload_finalizers(&o.du, false) } }),
        )
        .await?;
        Ok(())
    }

    /// A deleted DataUpload whose snapshot is in the repository: decide (once, recorded in
    /// [`FORGET_ANNOTATION`]) whether Velero is deleting its backup; if so run a forget pod
    /// until it succeeds, then let the DataUpload go; if not, let it go at once.
    async fn snapshot_deleted(&self, o: &ObservedUpload) -> Result<(), StepError> {
        let snapshot =
            o.du.status
                .as_ref()
                .and_then(|s| s.snapshot_id.clone())
                .unwrap_or_default();
        if annotation(&o.du, FORGET_ANNOTATION).is_none() {
            match self.snapshot_fate(&o.du).await? {
                SnapshotFate::Keep(why) => {
                    tracing::info!(data_upload = %o.name, %snapshot, %why, "DataUpload deleted; its snapshot is kept");
                    self.event(
                        &o.du,
                        "Normal",
                        "SnapshotKept",
                        &format!("snapshot {snapshot} kept in the repository: {why}"),
                    );
                    self.metrics.snapshot_deletion("kept");
                    return self.release_snapshot(o).await;
                }
                SnapshotFate::Wait(why) => {
                    tracing::info!(data_upload = %o.name, %snapshot, %why, "waiting before deciding on the snapshot");
                    self.poll_soon
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                SnapshotFate::Forget { backup } => {
                    self.patch_upload(
                        &o.name,
                        json!({ "metadata": { "annotations": { FORGET_ANNOTATION: now() } } }),
                    )
                    .await?;
                    tracing::info!(data_upload = %o.name, %snapshot, %backup, "Velero is deleting the backup: forgetting its snapshot");
                    self.event(
                        &o.du,
                        "Normal",
                        "ForgettingSnapshot",
                        &format!(
                            "Velero is deleting backup {backup}: forgetting snapshot {snapshot}"
                        ),
                    );
                }
            }
        }
        let ns = &self.options.namespace;
        let pod_name = forget_pod_name(&o.name);
        let pods: Api<Pod> = Api::namespaced(self.options.client.clone(), ns);
        // When the last forget pod failed, if one did.
        let failed_at = annotation(&o.du, FORGET_FAILED_ANNOTATION)
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
        let Some(pod) = self.backup_pod(&pod_name).await? else {
            // A failed forget is retried, not at once.
            if let Some(at) = failed_at {
                let waited = std::time::Duration::try_from(
                    k8s_openapi::jiff::Timestamp::now().duration_since(at),
                )
                .unwrap_or_default();
                if waited < self.options.forget_retry {
                    self.poll_soon
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
            }
            let settings = PodSettings {
                image: self.options.image.clone(),
                service_account: self.options.service_account.clone(),
                log_filter: self.options.data_mover_log.clone(),
                password_secret: None,
                tolerations: Vec::new(),
            };
            let pod = forget_pod_for(&o.du, ns, &self.config, &settings);
            match pods.create(&PostParams::default(), &pod).await {
                Ok(created) => self.watches.own_writes.wrote("pod", &created),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(err) => return Err(err.into()),
            }
            return Ok(());
        };
        // A failed pod already reported (the store may show it until its deletion arrives).
        let reported = failed_at
            .zip(pod.metadata.creation_timestamp.as_ref())
            .is_some_and(|(failed, created)| failed.as_second() >= created.0.as_second());
        if reported {
            delete_if_present(&pods, &pod_name).await?;
            return Ok(());
        }
        let message = termination_message(&pod);
        let result = message.as_deref().and_then(parse_termination_message);
        let failure = match pod_phase(&pod).as_str() {
            "Succeeded" => match result.filter(|r| r.ok) {
                Some(r) => {
                    delete_if_present(&pods, &pod_name).await?;
                    match r.kept {
                        Some(why) => {
                            tracing::warn!(data_upload = %o.name, %snapshot, %why, "snapshot kept");
                            self.event(
                                &o.du,
                                "Warning",
                                "SnapshotKept",
                                &format!("snapshot {snapshot} kept in the repository: {why}"),
                            );
                            self.metrics.snapshot_deletion("kept");
                        }
                        None => {
                            self.event(&o.du, "Normal", "SnapshotForgotten", &format!("snapshot {snapshot} removed from the repository (its data goes with the next `ferry repo prune`)"));
                            self.metrics.snapshot_deletion("forgotten");
                        }
                    }
                    return self.release_snapshot(o).await;
                }
                None => format!(
                    "the data mover ended without a result: {}",
                    message.unwrap_or_default()
                ),
            },
            "Failed" | "Unknown" => data_mover_failure(&pod),
            _ => match pod_problem(&pod) {
                Some(problem) => problem,
                None => return Ok(()),
            },
        };
        tracing::warn!(data_upload = %o.name, %snapshot, error = %failure, "forgetting the snapshot failed; retrying");
        self.event(
            &o.du,
            "Warning",
            "ForgetFailed",
            &format!(
                "forgetting snapshot {snapshot} failed (retried in {}s): {failure}",
                self.options.forget_retry.as_secs()
            ),
        );
        self.metrics.snapshot_deletion("failed");
        self.patch_upload(
            &o.name,
            json!({ "metadata": { "annotations": { FORGET_FAILED_ANNOTATION: now() } } }),
        )
        .await?;
        delete_if_present(&pods, &pod_name).await?;
        Ok(())
    }

    /// The Backup the deleted DataUpload names and Velero's deletion requests for it, judged
    /// by [`snapshot_fate`]. The Backup and DeleteBackupRequest kinds missing (no Velero) read
    /// as none.
    async fn snapshot_fate(&self, du: &DataUpload) -> Result<SnapshotFate, kube::Error> {
        let ns = &self.options.namespace;
        let client = &self.options.client;
        let name = du
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(BACKUP_NAME_LABEL))
            .cloned()
            .unwrap_or_default();
        if name.is_empty() {
            return Ok(snapshot_fate(du, None, &[]));
        }
        let backups = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &backup_resource());
        let backup = match backups.get_opt(&name).await {
            Ok(b) => b.map(|b| BackupView::from_object(&b)),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(err) => return Err(err),
        };
        let requests = if backup.is_none() {
            let api = Api::<DynamicObject>::namespaced_with(
                client.clone(),
                ns,
                &delete_request_resource(),
            );
            match api
                .list(&ListParams::default().labels(&format!("{BACKUP_NAME_LABEL}={name}")))
                .await
            {
                Ok(list) => list
                    .items
                    .iter()
                    .map(DeleteRequestView::from_object)
                    .collect(),
                Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
                Err(err) => return Err(err),
            }
        } else {
            Vec::new()
        };
        Ok(snapshot_fate(du, backup.as_ref(), &requests))
    }

    /// Lets a deleted DataUpload go (its snapshot forgotten or kept).
    async fn release_snapshot(&self, o: &ObservedUpload) -> Result<(), StepError> {
        self.patch_upload(
            &o.name,
            json!({ "metadata": { "finalizers": finalizers_with(&o.du.metadata, SNAPSHOT_FINALIZER, false) } }),
        )
        .await?;
        Ok(())
    }

    /// Writes a terminal status and releases the finalizer (the objects are gone, or going
    /// without ferry).
    async fn finish_upload(
        &self,
        o: &ObservedUpload,
        status: serde_json::Value,
    ) -> Result<(), kube::Error> {
        self.finish_upload_keeping(o, status, false).await
    }

    /// Writes a terminal status, keeping the finalizer if `keep` (a cleanup step is left).
    async fn finish_upload_keeping(
        &self,
        o: &ObservedUpload,
        status: serde_json::Value,
        keep: bool,
    ) -> Result<(), kube::Error> {
        let patch = if has_upload_finalizer(&o.du) && !keep {
            json!({ "metadata": { "finalizers": upload_finalizers(&o.du, false) }, "status": status })
        } else {
            json!({ "status": status })
        };
        self.patch_upload(&o.name, patch).await
    }

    async fn set_upload_message(&self, o: &ObservedUpload, message: &str) -> Result<(), StepError> {
        let current = o.du.status.as_ref().and_then(|s| s.message.as_deref());
        if current != Some(message) {
            self.patch_upload(&o.name, json!({ "status": { "message": message } }))
                .await?;
            self.event(&o.du, "Normal", "Waiting", message);
        }
        Ok(())
    }

    pub(super) async fn patch_upload(
        &self,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<(), kube::Error> {
        self.uploads
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }
}

/// A take-over step's error: retried (an API error that may pass) or the backup's failure.
enum TakeOver {
    Step(StepError),
    Fail(String),
}

impl TakeOver {
    fn kube(err: kube::Error) -> TakeOver {
        if crate::cluster::is_transient(&err) {
            TakeOver::Step(err.into())
        } else {
            TakeOver::Fail(format!("taking over the snapshot failed: {err}"))
        }
    }
}

/// Why a backup pod will not get anywhere (failed, or waiting for what waiting won't fix).
fn pod_problem(pod: &Pod) -> Option<String> {
    pod_abnormal(pod).map(|(phase, detail)| format!("{phase}{detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(phase: &str, node: Option<&str>) -> ObservedUpload {
        let du: DataUpload = serde_json::from_value(json!({
            "metadata": {"name": "du"},
            "spec": {"snapshotType": "CSI", "sourcePVC": "p", "backupStorageLocation": "default",
                     "sourceNamespace": "app", "operationTimeout": "10m"},
            "status": {"phase": phase, "node": node},
        }))
        .unwrap();
        ObservedUpload {
            name: "du".into(),
            du,
        }
    }

    #[test]
    fn uploads_hold_node_slots_while_they_run_and_not_after() {
        let uploads = [
            observed("Accepted", Some("n1")),
            observed("InProgress", Some("n1")),
            observed("Canceling", Some("n2")),
            observed("Accepted", None),
            observed("Completed", Some("n2")),
            observed("Failed", Some("n3")),
        ];
        let mut slots = BTreeMap::from([("n2".to_string(), 1)]);
        Controller::count_upload_slots(&uploads, &mut slots);
        assert_eq!(
            slots,
            BTreeMap::from([("n1".to_string(), 2), ("n2".to_string(), 2)])
        );
    }

    #[test]
    fn a_failed_backup_pod_names_the_data_movers_error() {
        let pod: Pod = serde_json::from_value(json!({
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": crate::expose::DATA_MOVER_CONTAINER, "image": "i", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1,
                    "message": "{\"ok\":false,\"error\":\"wrong password\",\"snapshotId\":\"\",\"totalBytes\":0,\"bytesDone\":0,\"files\":0,\"seconds\":0}"}}}]},
        }))
        .unwrap();
        assert_eq!(pod_problem(&pod).unwrap(), "Failed: wrong password");
        let waiting: Pod = serde_json::from_value(json!({
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]},
        }))
        .unwrap();
        assert_eq!(
            pod_problem(&waiting).unwrap(),
            "ImagePullBackOff: no such image"
        );
    }
}
