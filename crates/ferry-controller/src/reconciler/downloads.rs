//! The DataDownload's steps, one per phase: accept, wait for the target and choose a node,
//! expose the restore PVC and pod, follow the data mover, rebind, and cancel, fail or clean up.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::cluster::RestoreCluster;
use crate::crds::DataDownloadPhase;
use crate::data_mover_exit::data_mover_failure;
use crate::data_mover_exit::parse_termination_message;
use crate::expose::{
    ExposeState, Movement, PodSettings, RebindState, TargetState, check_target, hostname_of,
    restore_pod_for, restore_pvc_for, termination_message, tolerations_for,
};
use crate::placement::{NodeInfo, PlacementInput, TopologyTerm, choose_node};
use ferry_text::human_bytes;

use super::controller::Controller;
use super::effects::StepError;
use super::effects::{human, now, since};
use super::intent::{Facts, Intent, Phase, next_intent};
use super::node_load::NodeLoad;
use super::view::DATA_MOVED_ANNOTATION;
use super::view::{
    Observed, data_moved, data_moved_at, has_finalizer, pod_phase, with_finalizer,
    without_finalizer,
};

impl Controller {
    pub(super) async fn step(
        &self,
        o: &Observed,
        admitted: &[String],
        load: &mut NodeLoad,
        nodes: &[NodeInfo],
    ) -> Result<(), StepError> {
        let facts = Facts {
            phase: Phase::named(o.dd.phase().as_str()),
            deleting: o.dd.metadata.deletion_timestamp.is_some(),
            holds_finalizer: has_finalizer(&o.dd),
            cancel_requested: o.dd.spec.cancel == Some(true),
            data_moved: data_moved(&o.dd),
            admitted: admitted.contains(&o.name),
        };
        match next_intent(&facts) {
            Intent::CleanUpDeleted => self.deleted(o).await,
            Intent::Wait => Ok(()),
            // Never left so by this ferry (a restore's cleanup is one step), but an object
            // found so is cleaned up and let go.
            Intent::FinishCleanUp => self.clean_up_and_let_go(o).await.map(|_| ()),
            Intent::AddFinalizer => {
                self.patch_meta(&o.name, json!({ "finalizers": with_finalizer(&o.dd) }))
                    .await?;
                Ok(())
            }
            Intent::Cancel => self.cancel(o).await,
            Intent::Accept => {
                let patch = self.acceptance(with_finalizer(&o.dd), &o.dd.metadata);
                self.downloads
                    .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                self.record_accepted(&o.dd).await;
                Ok(())
            }
            Intent::Place => self.accepted(o, load, nodes).await,
            Intent::Start => self.prepared(o).await,
            Intent::Follow => self.in_progress(o).await,
        }
    }

    /// What placement weighs for a volume of StorageClass `class_name`: the nodes, the slots
    /// taken (restores and backups alike), `loadAffinity` for the class and its
    /// `allowedTopologies`.
    pub(super) fn placement_input(
        &self,
        nodes: &[NodeInfo],
        load: &NodeLoad,
        selected_node: Option<String>,
        class_name: Option<&str>,
        class: Option<&StorageClass>,
    ) -> PlacementInput {
        PlacementInput {
            nodes: nodes.to_vec(),
            in_flight: load.in_flight.clone(),
            placed: load.placed.clone(),
            selected_node,
            load_affinity: self
                .config
                .load_affinity_for_storage_class(class_name)
                .map(|a| a.node_selector.clone()),
            allowed_topologies: class
                .and_then(|c| c.allowed_topologies.as_ref())
                .map(|terms| terms.iter().map(TopologyTerm::from_k8s).collect())
                .unwrap_or_default(),
        }
    }

    pub(super) async fn accepted(
        &self,
        o: &Observed,
        load: &mut NodeLoad,
        nodes: &[NodeInfo],
    ) -> Result<(), StepError> {
        if let Some(problem) = crate::spec_checks::data_download_problem(&o.name, &o.dd.spec) {
            return self.fail(o, &format!("refused: {problem}")).await;
        }
        let status = o.dd.status.clone().unwrap_or_default();
        let ns = &self.options.namespace;
        let spec = &o.dd.spec.target_volume;
        let target_id = format!("{}/{}", spec.namespace, spec.pvc);
        let cluster = &self.exposer.cluster;
        let waited = since(status.accepted_timestamp.as_ref());

        let Some(node) = status.node.clone() else {
            // Not exposed yet: is the target ready, and where does the restore go?
            let target = self.target_pvc(o).await?;
            let prepare_limit = self.options.prepare_timeout;
            if target.is_none() {
                // Velero's restore creates the DataDownload before the target PVC: wait for it.
                if waited > prepare_limit {
                    return self
                        .fail(o, &format!(
                            "timed out after {} waiting for target PVC {target_id} to be created (the prepare timeout, --prepare-timeout)",
                            human(prepare_limit)
                        ))
                        .await;
                }
                return self
                    .set_message(
                        o,
                        &format!("waiting for target PVC {target_id} to be created"),
                    )
                    .await;
            }
            let class_name = target
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.storage_class_name.clone());
            let class = match &class_name {
                Some(c) => cluster.get_storage_class(c).await?,
                None => None,
            };
            let ignore = self.config.ignore_delay_binding();
            let state = match check_target(&target_id, target.as_ref(), class.as_ref(), ignore) {
                Ok(s) => s,
                Err(err) => return self.fail(o, &err.to_string()).await,
            };
            let selected_node = match state {
                TargetState::WaitingForConsumer => {
                    if waited > prepare_limit {
                        return self
                            .fail(o, &format!(
                                "timed out after {} (the prepare timeout, --prepare-timeout) waiting for target PVC {target_id} to be consumed: no pod using it was scheduled (StorageClass {} is WaitForFirstConsumer; set restorePVC.ignoreDelayBinding to restore without a workload)",
                                human(prepare_limit),
                                class_name.unwrap_or_default()
                            ))
                            .await;
                    }
                    return self
                        .set_message(o, &format!("waiting for target PVC {target_id} to be consumed by a scheduled pod (WaitForFirstConsumer)"))
                        .await;
                }
                TargetState::Ready { selected_node } => selected_node,
            };
            let input = self.placement_input(
                nodes,
                load,
                selected_node,
                class_name.as_deref(),
                class.as_ref(),
            );
            let choice = match choose_node(&input) {
                Ok(c) => c,
                Err(err) => {
                    // Waiting for a free slot is queueing, not a failure to expose.
                    if !err.is_wait() && waited > self.options.expose_timeout {
                        return self
                            .fail(
                                o,
                                &format!(
                                    "timed out after {} choosing a node: {err}",
                                    human(self.options.expose_timeout)
                                ),
                            )
                            .await;
                    }
                    return self
                        .set_message(o, &format!("waiting for a node: {err}"))
                        .await;
                }
            };
            load.chose(&choice.node);
            // Conditional, as the acceptance: the slot counted for this node must be the
            // only node choice made for what was observed.
            let patch = json!({
                "metadata": { "resourceVersion": o.dd.metadata.resource_version },
                "status": { "node": choice.node, "message": null },
            });
            self.downloads
                .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            self.event(
                &o.dd,
                "Normal",
                "NodeChosen",
                &format!("restore runs on node {} ({:?})", choice.node, choice.reason),
            );
            return self.expose(o, &choice.node).await;
        };

        // Exposed (or being exposed) on `node`.
        let pod = match self.exposer.peek_exposed(&o.name).await {
            Ok(p) => p,
            // A transient API error is retried on the next pass, never a failure.
            Err(err) if err.is_transient() => return Err(err.into()),
            Err(err) => return self.fail(o, &err.to_string()).await,
        };
        match pod {
            None => self.expose(o, &node).await,
            Some(pod) => {
                let phase = pod_phase(&pod);
                if phase == "Running" || phase == "Succeeded" {
                    self.patch_status(&o.name, json!({ "phase": "Prepared" }))
                        .await?;
                    self.event(
                        &o.dd,
                        "Normal",
                        "Prepared",
                        &format!("restore pod {ns}/{} is running on node {node}", o.name),
                    );
                    // Nothing else is waited for between the two phases: going on in this
                    // pass spares every restore a pass (a wake-up and the pass's reads).
                    self.start_moving(o, &node).await
                } else if since(self.exposing_since(o, &pod).await?.as_ref())
                    > self.options.expose_timeout
                {
                    let why = self.diagnose(Movement::Restore, &o.name, Some(&pod)).await;
                    self.fail(
                        o,
                        &format!(
                            "timed out after {} exposing the restore: {why}",
                            human(self.options.expose_timeout)
                        ),
                    )
                    .await
                } else {
                    Ok(())
                }
            }
        }
    }

    /// When exposing began: the restore PVC's creation (its pod follows once a provisioner
    /// made the volume), else the pod's. Time spent waiting for a workload or a slot before
    /// exposing is not exposing.
    pub(super) async fn exposing_since(
        &self,
        o: &Observed,
        pod: &Pod,
    ) -> Result<Option<Time>, StepError> {
        let pvc = self
            .exposer
            .cluster
            .get_pvc(&self.options.namespace, &o.name)
            .await?;
        Ok(pvc
            .and_then(|p| p.metadata.creation_timestamp)
            .or_else(|| pod.metadata.creation_timestamp.clone()))
    }

    /// The target PVC. Someone else creates it, so a store may not show it yet: its absence,
    /// which fails the restore, is confirmed with the API server.
    pub(super) async fn target_pvc(
        &self,
        o: &Observed,
    ) -> Result<Option<PersistentVolumeClaim>, StepError> {
        let spec = &o.dd.spec.target_volume;
        if let Some(pvc) = self
            .exposer
            .cluster
            .get_pvc(&spec.namespace, &spec.pvc)
            .await?
        {
            return Ok(Some(pvc));
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.options.client.clone(), &spec.namespace);
        Ok(api.get_opt(&spec.pvc).await?)
    }

    /// Creates the restore PVC and pod for `node`.
    pub(super) async fn expose(&self, o: &Observed, node: &str) -> Result<(), StepError> {
        let spec = &o.dd.spec.target_volume;
        let Some(target) = self.target_pvc(o).await? else {
            return self
                .fail(
                    o,
                    &format!("target PVC {}/{} not found", spec.namespace, spec.pvc),
                )
                .await;
        };
        let ns = &self.options.namespace;
        let pvc = restore_pvc_for(&o.dd, ns, &target, Some(node));
        // Pinned by the node's hostname label (it may differ from its name), tolerating its
        // taints (only the workload's node can have any: placement skips tainted nodes).
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
            tolerations: node_object
                .as_ref()
                .map(tolerations_for)
                .unwrap_or_default(),
        };
        let hostname = node_object
            .as_ref()
            .map(hostname_of)
            .unwrap_or_else(|| node.to_string());
        let pod = restore_pod_for(&o.dd, ns, &target, Some(&hostname), &self.config, &settings);
        match self.exposer.expose(Movement::Restore, &pvc, &pod).await {
            Ok(ExposeState::PodCreated) => Ok(()),
            Ok(ExposeState::WaitingForVolume { since: created }) => {
                // Exposing started with the restore PVC: its provisioning counts.
                if since(created.as_ref()) > self.options.expose_timeout {
                    let why = self.diagnose(Movement::Restore, &o.name, None).await;
                    return self
                        .fail(
                            o,
                            &format!(
                                "timed out after {} exposing the restore: {why}",
                                human(self.options.expose_timeout)
                            ),
                        )
                        .await;
                }
                self.set_message(
                    o,
                    &format!(
                        "waiting for restore PVC {ns}/{} to be provisioned on node {node} before its pod starts",
                        o.name
                    ),
                )
                .await
            }
            // A transient API error is retried on the next pass, never a failure.
            Err(err) if err.is_transient() => Err(err.into()),
            Err(err) => self.fail(o, &err.to_string()).await,
        }
    }

    pub(super) async fn prepared(&self, o: &Observed) -> Result<(), StepError> {
        let pod = match self.exposer.peek_exposed(&o.name).await {
            Ok(p) => p,
            // A transient API error is retried on the next pass, never a failure.
            Err(err) if err.is_transient() => return Err(err.into()),
            Err(err) => return self.fail(o, &err.to_string()).await,
        };
        let Some(pod) = pod else {
            return self
                .fail(
                    o,
                    &format!(
                        "restore pod {}/{} disappeared before the data mover started",
                        self.options.namespace, o.name
                    ),
                )
                .await;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        self.start_moving(o, &node).await
    }

    /// Prepared → InProgress: the data mover in the restore pod on `node` moves the data.
    async fn start_moving(&self, o: &Observed, node: &str) -> Result<(), StepError> {
        self.patch_status(
            &o.name,
            json!({ "phase": "InProgress", "startTimestamp": now() }),
        )
        .await?;
        self.event(
            &o.dd,
            "Normal",
            "InProgress",
            &format!(
                "data mover restoring snapshot {} on node {node}",
                o.dd.spec.snapshot_id
            ),
        );
        Ok(())
    }

    pub(super) async fn in_progress(&self, o: &Observed) -> Result<(), StepError> {
        if !data_moved(&o.dd) {
            let pod = self
                .exposer
                .cluster
                .get_pod(&self.options.namespace, &o.name)
                .await?;
            let Some(pod) = pod else {
                return self
                    .fail(
                        o,
                        &format!(
                            "restore pod {}/{} was deleted before the data mover finished",
                            self.options.namespace, o.name
                        ),
                    )
                    .await;
            };
            let message = termination_message(&pod);
            let result = message.as_deref().and_then(parse_termination_message);
            match pod_phase(&pod).as_str() {
                "Succeeded" => {
                    let total = result.as_ref().map(|r| r.total_bytes).unwrap_or(0);
                    // The value is when: rebind's time limit counts from it.
                    let patch = json!({
                        "metadata": { "annotations": { DATA_MOVED_ANNOTATION: now() } },
                        "status": { "progress": { "totalBytes": total, "bytesDone": total } },
                    });
                    self.downloads
                        .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    self.event(
                        &o.dd,
                        "Normal",
                        "DataMoved",
                        &format!(
                            "{} restored ({total} bytes); rebinding the volume to the target PVC",
                            human_bytes(total)
                        ),
                    );
                    let warnings = result.map(|r| r.warnings).unwrap_or_default();
                    if !warnings.is_empty() {
                        // Every byte is back, but not everything (see MKNOD in
                        // docs/controller.md): worth a look, not a failure.
                        self.event(
                            &o.dd,
                            "Warning",
                            "RestoredWithWarnings",
                            &format!(
                                "the data is restored, with {} warning(s) from the data mover: {}",
                                warnings.len(),
                                warnings.join("; ")
                            ),
                        );
                    }
                    return Ok(());
                }
                "Failed" | "Unknown" => {
                    // Its own error from the termination message, else how it ended.
                    let why = data_mover_failure(&pod);
                    return self.fail(o, &format!("data mover failed: {why}")).await;
                }
                // The data movement itself has no time limit (spec.operationTimeout bounds
                // waits for resources, as Velero uses it): only a cancel ends it.
                _ => return Ok(()),
            }
        }
        let spec = &o.dd.spec.target_volume;
        match self
            .exposer
            .rebind(&o.name, &spec.namespace, &spec.pvc)
            .await
        {
            Ok(RebindState::Waiting(why)) => self.rebind_waiting(o, &why).await,
            Ok(RebindState::WaitingForBinding(why)) => {
                // The PV controller may have looked at the target before it saw the PV handed
                // to it, and no change ferry watches need follow: look again (and touch the
                // target again) within the touch interval, not at the next resync.
                self.poll_soon
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.rebind_waiting(o, &why).await
            }
            Ok(RebindState::Done { pv }) => {
                let status = o.dd.status.clone().unwrap_or_default();
                let total = status
                    .progress
                    .as_ref()
                    .and_then(|p| p.total_bytes)
                    .unwrap_or(0);
                self.finish(
                    o,
                    json!({
                        "phase": "Completed",
                        "completionTimestamp": now(),
                        "message": null,
                    }),
                )
                .await?;
                let seconds = since(status.accepted_timestamp.as_ref()).as_secs_f64();
                let node = status.node.as_deref().unwrap_or("");
                self.metrics
                    .restore_completed(node, total.max(0) as u64, seconds);
                self.event(
                    &o.dd,
                    "Normal",
                    "Completed",
                    &format!(
                        "target PVC {}/{} is bound to restored PV {pv}",
                        spec.namespace, spec.pvc
                    ),
                );
                Ok(())
            }
            // A transient API error is retried on the next pass, never a failure.
            Err(err) if err.is_transient() => Err(err.into()),
            Err(err) => self.fail(o, &format!("rebind failed: {err}")).await,
        }
    }

    /// A rebind waiting for the cluster (deletions, the PV controller's binding): a resource
    /// wait, bounded by spec.operationTimeout as Velero bounds it.
    async fn rebind_waiting(&self, o: &Observed, why: &str) -> Result<(), StepError> {
        let spec = &o.dd.spec.target_volume;
        tracing::debug!(data_download = %o.name, %why, "rebinding");
        let limit = o.dd.spec.operation_timeout_duration().unwrap_or_default();
        if let Some(moved) = data_moved_at(&o.dd)
            && !limit.is_zero()
            && since(Some(&moved)) > limit
        {
            let events = self
                .last_warning(&spec.namespace, "PersistentVolumeClaim", &spec.pvc)
                .await
                .map(|w| {
                    format!(
                        "; last event on target PVC {}/{}: {} {}",
                        spec.namespace, spec.pvc, w.reason, w.message
                    )
                })
                .unwrap_or_default();
            return self
                .fail(
                    o,
                    &format!(
                        "rebind timed out after {} (spec.operationTimeout): still waiting for {why}{events}",
                        human(limit)
                    ),
                )
                .await;
        }
        Ok(())
    }

    pub(super) async fn cancel(&self, o: &Observed) -> Result<(), StepError> {
        let previous = o.dd.status.as_ref().and_then(|s| s.message.clone());
        let reason = if o.dd.phase() != DataDownloadPhase::Canceling {
            // Whoever set spec.cancel may have said why in the message (Velero's node-agent,
            // restarting, cancels the InProgress DataDownloads on its node, whatever their
            // data mover, with "Resume InProgress datadownload failed …"): keep it.
            let reason = match previous.filter(|m| !m.is_empty()) {
                Some(m) => format!("spec.cancel was set (message then: {m})"),
                None => "spec.cancel was set".to_string(),
            };
            self.patch_status(&o.name, json!({ "phase": "Canceling", "message": reason }))
                .await?;
            self.event(
                &o.dd,
                "Normal",
                "Canceling",
                &format!("{reason}: removing the restore's objects"),
            );
            reason
        } else {
            previous.unwrap_or_else(|| "spec.cancel was set".to_string())
        };
        if self.exposer.cleanup(&o.name).await? {
            self.finish(
                o,
                json!({
                    "phase": "Canceled",
                    "completionTimestamp": now(),
                    "message": format!("canceled: {reason}"),
                }),
            )
            .await?;
            self.metrics.restore_canceled();
            self.event(
                &o.dd,
                "Normal",
                "Canceled",
                "restore canceled; its pod and PVC are removed",
            );
        }
        Ok(())
    }

    /// Removes the restore's objects and marks the DataDownload Failed with `message`.
    pub(super) async fn fail(&self, o: &Observed, message: &str) -> Result<(), StepError> {
        if let Err(err) = self.exposer.cleanup(&o.name).await {
            tracing::warn!(data_download = %o.name, error = %err, "cleanup after failure incomplete");
        }
        self.finish(
            o,
            json!({
                "phase": "Failed",
                "completionTimestamp": now(),
                "message": message,
            }),
        )
        .await?;
        self.metrics.restore_failed();
        self.event(&o.dd, "Warning", "Failed", message);
        tracing::warn!(data_download = %o.name, %message, "restore failed");
        Ok(())
    }

    /// A DataDownload being deleted: its restore objects are removed (the restore is
    /// canceled, whatever its phase), then the finalizer is released.
    pub(super) async fn deleted(&self, o: &Observed) -> Result<(), StepError> {
        if !has_finalizer(&o.dd) {
            return Ok(());
        }
        if !self.clean_up_and_let_go(o).await? {
            return Ok(());
        }
        if !o.dd.phase().is_terminal() {
            self.metrics.restore_canceled();
        }
        tracing::info!(data_download = %o.name, phase = o.dd.phase().as_str(), "deleted: restore objects removed");
        Ok(())
    }

    /// Removes the restore's objects, then lets go of its finalizer; false while something
    /// is left (the next pass goes on).
    async fn clean_up_and_let_go(&self, o: &Observed) -> Result<bool, StepError> {
        if !self.exposer.cleanup(&o.name).await? {
            return Ok(false);
        }
        self.patch_meta(&o.name, json!({ "finalizers": without_finalizer(&o.dd) }))
            .await?;
        Ok(true)
    }

    /// Writes a terminal status; the restore's objects are gone, so the finalizer goes too.
    pub(super) async fn finish(
        &self,
        o: &Observed,
        status: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let patch = if has_finalizer(&o.dd) {
            json!({ "metadata": { "finalizers": without_finalizer(&o.dd) }, "status": status })
        } else {
            json!({ "status": status })
        };
        self.downloads
            .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }
}
