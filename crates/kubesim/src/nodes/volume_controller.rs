//! The volume controller: kube-controller-manager's PV controller (binding, phases,
//! reclaim) plus kubesim's provisioner (a directory per PV, or a sparse file for Block).
//! Beside a real kube-controller-manager it plays only the provisioner
//! ([`VolumeRole::Provisioner`]), as an external CSI provisioner does: it provisions the
//! claims the PV controller hands to `hostpath.kubesim.io`, and deletes the Released volumes
//! it made whose policy is Delete.
//! Each round decides with [`decide_claim`]/[`decide_volume`] over a snapshot and runs the
//! resulting API calls concurrently. A decision is not repeated for the same object
//! resourceVersion unless it failed, which keeps a stale cache from doubling writes.
//!
//! It also removes the `kubernetes.io/pvc-protection` / `kubernetes.io/pv-protection`
//! finalizers when the API server adds them (the storage-object-in-use protection
//! controllers): a claim's once no running pod uses it, a PV's once it is not Bound.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::bootstrap::{HOSTNAME_LABEL, PROVISIONER, ZONE_LABEL};
use super::cache::{Changes, ClusterCache, ClusterSnapshot, ObjectKey, PvIndex, SnapshotGuard};
use super::events::{EventRecorder, object_reference};
use super::scheduling::pod_claim_names;
use super::snapshot_data;
use super::snapshotter::claim_snapshot_handle;
use super::volume_binding::{
    ClaimDecision, VolumeDecision, choose_node_for_immediate, decide_claim_indexed, decide_volume,
    provisioned_pv, provisioned_pv_name,
};
use super::volume_data::{pv_data_path, volume_path};
use super::volume_matching::*;

const CONCURRENCY: usize = 64;
/// How often every claim and PV is looked at again without a change.
const RESYNC_INTERVAL: Duration = Duration::from_secs(5);
const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

enum Work {
    Claim(Arc<PersistentVolumeClaim>, ClaimDecision),
    Volume(Arc<PersistentVolume>, VolumeDecision),
    RemoveClaimFinalizer(Arc<PersistentVolumeClaim>),
    RemoveVolumeFinalizer(Arc<PersistentVolume>),
}

/// What carrying out a decision needs from the cache, looked up while deciding (the cache
/// is not held across API calls).
#[derive(Default)]
struct Resolved {
    /// The PV to bind (ClaimDecision::Bind).
    pv: Option<Arc<PersistentVolume>>,
    /// The class and node to provision with and on.
    class: Option<Arc<StorageClass>>,
    node_name: Option<String>,
    node: Option<Arc<Node>>,
}

struct Job {
    uid: String,
    rv: String,
    fingerprint: String,
    work: Work,
    resolved: Resolved,
}

/// The claims and PVs to decide on this round: all of them, or the changed ones and those
/// whose decision depends on a change.
fn targets(
    snapshot: &SnapshotGuard,
    changes: &Changes,
    full: bool,
) -> (Vec<Arc<PersistentVolumeClaim>>, Vec<Arc<PersistentVolume>>) {
    if full {
        return (
            snapshot.pvcs.values().cloned().collect(),
            snapshot.pvs.values().cloned().collect(),
        );
    }
    let mut claims: HashSet<ObjectKey> = changes.claims.clone();
    let mut volumes: HashSet<String> = changes.volumes.clone();
    let mut all_claims = false;
    for name in &changes.volumes {
        match snapshot.pvs.get(name) {
            Some(pv) => match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                // A PV bound (or being bound) to one claim concerns that claim.
                Some(r) if r.uid.as_deref().is_some_and(|u| !u.is_empty()) => {
                    claims.insert((
                        r.namespace.clone().unwrap_or_default(),
                        r.name.clone().unwrap_or_default(),
                    ));
                }
                // Free or reserved without uid: any unbound claim may match it.
                _ => all_claims = true,
            },
            // Gone: claims naming it become Lost.
            None => all_claims = true,
        }
    }
    for key in &changes.claims {
        // The PVs that name the claim (release, reclaim, unbind), and the one it names.
        volumes.extend(
            snapshot
                .pvs_claiming(key)
                .map(|pv| name_of(pv.as_ref()).to_string()),
        );
        if let Some(name) = snapshot
            .pvc(&key.0, &key.1)
            .and_then(|c| claim_volume_name(c))
        {
            volumes.insert(name.to_string());
        }
    }
    // A pod's scheduling or deletion changes whether its claims are in use (pvc-protection); a
    // deleted pod's claims are unknown, so every claim being deleted is looked at.
    let mut pod_gone = false;
    for key in &changes.pods {
        match snapshot.pod(key) {
            Some(pod) => {
                for claim in pod_claim_names(pod) {
                    claims.insert((key.0.clone(), claim));
                }
            }
            None => pod_gone = true,
        }
    }
    if pod_gone {
        claims.extend(
            snapshot
                .pvcs
                .iter()
                .filter(|(_, c)| c.metadata.deletion_timestamp.is_some())
                .map(|(k, _)| k.clone()),
        );
    }
    let claims = if all_claims {
        snapshot.pvcs.values().cloned().collect()
    } else {
        claims
            .iter()
            .filter_map(|k| snapshot.pvcs.get(k).cloned())
            .collect()
    };
    let volumes = volumes
        .iter()
        .filter_map(|n| snapshot.pvs.get(n).cloned())
        .collect();
    (claims, volumes)
}

/// Decides this round's work; decisions already carried out for the same resourceVersion
/// are skipped.
fn plan(
    snapshot: &SnapshotGuard,
    changes: &Changes,
    full: bool,
    done: &mut HashMap<String, (String, String)>,
) -> Vec<Job> {
    let (claims, volumes) = targets(snapshot, changes, full);
    let mut jobs = Vec::new();
    let mut consider = |uid: &str, rv: Option<&String>, fingerprint: String, work: Work| {
        let rv = rv.cloned().unwrap_or_default();
        if done.get(uid) == Some(&(rv.clone(), fingerprint.clone())) {
            return;
        }
        jobs.push(Job {
            uid: uid.to_string(),
            rv,
            fingerprint,
            work,
            resolved: Resolved::default(),
        });
    };
    let mut used_claims: Option<HashSet<(String, String)>> = None;
    let claim_keys: Vec<ObjectKey> = claims
        .iter()
        .map(|c| {
            (
                namespace_of(c.as_ref()).to_string(),
                name_of(c.as_ref()).to_string(),
            )
        })
        .collect();
    let index = if full {
        PvIndex::new(snapshot)
    } else {
        snapshot.pv_index(&claim_keys)
    };
    for claim in &claims {
        if claim.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&claim.metadata, PVC_PROTECTION) {
                let used = used_claims.get_or_insert_with(|| claims_in_use(snapshot));
                if !used.contains(&(
                    namespace_of(claim.as_ref()).to_string(),
                    name_of(claim.as_ref()).to_string(),
                )) {
                    consider(
                        uid_of(claim.as_ref()),
                        claim.metadata.resource_version.as_ref(),
                        "unprotect".into(),
                        Work::RemoveClaimFinalizer(claim.clone()),
                    );
                }
            }
            continue;
        }
        let decision = decide_claim_indexed(claim, snapshot, &index);
        if decision != ClaimDecision::Nothing {
            consider(
                uid_of(claim.as_ref()),
                claim.metadata.resource_version.as_ref(),
                format!("{decision:?}"),
                Work::Claim(claim.clone(), decision),
            );
        }
    }
    for pv in &volumes {
        if pv.metadata.deletion_timestamp.is_some() {
            let protected = has_finalizer(&pv.metadata, PV_PROTECTION);
            if protected && pv_phase(pv) != "Bound" {
                consider(
                    uid_of(pv.as_ref()),
                    pv.metadata.resource_version.as_ref(),
                    "unprotect".into(),
                    Work::RemoveVolumeFinalizer(pv.clone()),
                );
            }
            // A protected Bound volume is still synced (its claim may be gone: Released,
            // then unprotected), as the PV controller syncs volumes being deleted.
            if !protected || pv_phase(pv) != "Bound" {
                continue;
            }
        }
        let decision = decide_volume(pv, snapshot);
        if decision != VolumeDecision::Nothing {
            consider(
                uid_of(pv.as_ref()),
                pv.metadata.resource_version.as_ref(),
                format!("{decision:?}"),
                Work::Volume(pv.clone(), decision),
            );
        }
    }
    if full {
        let current: HashSet<&str> = snapshot
            .pvcs
            .values()
            .map(|c| uid_of(c.as_ref()))
            .chain(snapshot.pvs.values().map(|p| uid_of(p.as_ref())))
            .collect();
        done.retain(|uid, _| current.contains(uid.as_str()));
    }
    // Immediate provisioning picks a node per claim here, so volumes spread.
    let mut per_node: Option<HashMap<String, usize>> = None;
    for job in &mut jobs {
        let Work::Claim(_, decision) = &job.work else {
            continue;
        };
        match decision {
            ClaimDecision::ProvisionAnywhere { class } => {
                let per_node = per_node.get_or_insert_with(|| volumes_per_node(snapshot));
                let class = snapshot.classes.get(class);
                let chosen = class.and_then(|c| choose_node_for_immediate(c, snapshot, per_node));
                if let Some(n) = &chosen {
                    *per_node.entry(n.clone()).or_default() += 1;
                    job.resolved.node = snapshot.node(n).cloned();
                }
                job.resolved.class = class.cloned();
                job.resolved.node_name = chosen;
            }
            ClaimDecision::Provision { node, class } => {
                job.resolved.class = snapshot.classes.get(class).cloned();
                job.resolved.node = snapshot.node(node).cloned();
                job.resolved.node_name = Some(node.clone());
            }
            ClaimDecision::Bind { pv } => job.resolved.pv = snapshot.pvs.get(pv).cloned(),
            _ => {}
        }
    }
    jobs
}

/// Which jobs the volume controller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeRole {
    /// The PV controller's binding, phases and reclaim, and the provisioner (kubesim's own
    /// API server has no controller manager).
    ControllerAndProvisioner,
    /// Only what an external provisioner does, beside a real PV controller.
    Provisioner,
}

/// In the provisioner role, whether a decision is the provisioner's to carry out: the PV
/// controller asked kubesim's driver for this claim (the storage-provisioner annotation), or
/// released a volume kubesim made.
fn provisioner_acts_on(work: &Work) -> bool {
    match work {
        Work::Claim(claim, decision) => {
            matches!(
                decision,
                ClaimDecision::Provision { .. }
                    | ClaimDecision::ProvisionAnywhere { .. }
                    | ClaimDecision::ProvisioningFailed { .. }
            ) && annotation(claim.as_ref(), STORAGE_PROVISIONER_ANNOTATION) == Some(PROVISIONER)
        }
        Work::Volume(pv, decision) => {
            *decision == VolumeDecision::ReleaseAndDelete && pv_phase(pv) == "Released"
        }
        Work::RemoveClaimFinalizer(_) | Work::RemoveVolumeFinalizer(_) => false,
    }
}

pub struct VolumeController {
    client: kube::Client,
    data_dir: PathBuf,
    role: VolumeRole,
    recorder: EventRecorder,
}

impl VolumeController {
    pub fn new(client: kube::Client, data_dir: &Path, role: VolumeRole) -> Self {
        let component = match role {
            VolumeRole::ControllerAndProvisioner => "persistentvolume-controller",
            VolumeRole::Provisioner => "hostpath.kubesim.io_kubesim",
        };
        VolumeController {
            recorder: EventRecorder::new(client.clone(), component),
            client,
            data_dir: data_dir.to_path_buf(),
            role,
        }
    }

    pub async fn run(self, cache: Arc<ClusterCache>, stop: CancellationToken) {
        let mut feed = cache.subscribe();
        // (uid) → (resourceVersion, decision) already carried out.
        let mut done: HashMap<String, (String, String)> = HashMap::new();
        let mut last_full = tokio::time::Instant::now();
        loop {
            let changes = feed.take();
            // Everything is looked at after a relist, when nodes or classes change, and
            // every 5 s (as the PV controller's resync); otherwise only the changed claims
            // and PVs and what depends on them.
            let full = changes.everything
                || changes.nodes
                || changes.classes
                || last_full.elapsed() >= RESYNC_INTERVAL;
            if full {
                last_full = tokio::time::Instant::now();
            }
            let jobs = {
                let snapshot = cache.read();
                let mut jobs = plan(&snapshot, &changes, full, &mut done);
                if self.role == VolumeRole::Provisioner {
                    jobs.retain(|job| provisioner_acts_on(&job.work));
                }
                jobs
            };
            if !jobs.is_empty() {
                let this = &self;
                let results: Vec<(String, String, String, bool)> = futures::stream::iter(jobs)
                    .map(|job| async move {
                        let ok = match this.perform(job.work, job.resolved).await {
                            Ok(()) => true,
                            Err(error) => {
                                tracing::debug!(%error, uid = job.uid, "kubesim volume controller: retrying later");
                                false
                            }
                        };
                        (job.uid, job.rv, job.fingerprint, ok)
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
                for (uid, rv, fingerprint, ok) in results {
                    if ok {
                        done.insert(uid, (rv, fingerprint));
                    } else {
                        done.remove(&uid);
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                r = feed.changed() => if !r { return },
                _ = tokio::time::sleep(RESYNC_INTERVAL) => {}
            }
        }
    }

    async fn perform(&self, work: Work, resolved: Resolved) -> anyhow::Result<()> {
        match work {
            Work::Claim(claim, decision) => self.perform_claim(&claim, decision, resolved).await,
            Work::Volume(pv, decision) => self.perform_volume(&pv, decision).await,
            Work::RemoveClaimFinalizer(claim) => {
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(self.client.clone(), namespace_of(claim.as_ref()));
                let finalizers = without(&claim.metadata, PVC_PROTECTION);
                let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": claim.metadata.resource_version}});
                api.patch(
                    name_of(claim.as_ref()),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Ok(())
            }
            Work::RemoveVolumeFinalizer(pv) => {
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                let finalizers = without(&pv.metadata, PV_PROTECTION);
                let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": pv.metadata.resource_version}});
                api.patch(
                    name_of(pv.as_ref()),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Ok(())
            }
        }
    }

    async fn perform_claim(
        &self,
        claim: &PersistentVolumeClaim,
        decision: ClaimDecision,
        resolved: Resolved,
    ) -> anyhow::Result<()> {
        let namespace = namespace_of(claim);
        let name = name_of(claim);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        match decision {
            ClaimDecision::Nothing => {}
            ClaimDecision::AssignDefaultClass(class) => {
                let patch = serde_json::json!({"spec": {"storageClassName": class}});
                claims
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            ClaimDecision::WaitForFirstConsumer => {
                self.recorder
                    .record(
                        object_reference(claim),
                        "Normal",
                        "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding",
                    )
                    .await;
            }
            ClaimDecision::ProvisioningFailed { message } => {
                if self.role == VolumeRole::ControllerAndProvisioner {
                    self.mark_provisioner(claim, &claims).await?;
                }
                self.recorder
                    .record(
                        object_reference(claim),
                        "Warning",
                        "ProvisioningFailed",
                        &message,
                    )
                    .await;
            }
            ClaimDecision::Lost { misbound } => {
                let patch = serde_json::json!({"status": {"phase": "Lost"}});
                claims
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                // The reasons and words of Kubernetes' PV controller.
                let (reason, message) = if misbound {
                    (
                        "ClaimMisbound",
                        "Two claims are bound to the same volume, this one is bound incorrectly",
                    )
                } else {
                    (
                        "ClaimLost",
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                    )
                };
                self.recorder
                    .record(object_reference(claim), "Warning", reason, message)
                    .await;
            }
            ClaimDecision::Provision { node, class } => {
                self.provision(claim, &class, &node, &resolved).await?
            }
            ClaimDecision::ProvisionAnywhere { class } => {
                let Some(node) = resolved.node_name.clone() else {
                    self.recorder
                        .record(object_reference(claim), "Warning", "ProvisioningFailed", &format!("failed to provision volume with StorageClass \"{class}\": no node satisfies the class's allowedTopologies"))
                        .await;
                    return Ok(());
                };
                self.provision(claim, &class, &node, &resolved).await?
            }
            ClaimDecision::Bind { pv } => {
                let Some(volume) = resolved.pv.as_ref() else {
                    anyhow::bail!("PV {pv} vanished");
                };
                self.bind(claim, volume, &claims, &pvs).await?;
            }
        }
        Ok(())
    }

    async fn mark_provisioner(
        &self,
        claim: &PersistentVolumeClaim,
        claims: &Api<PersistentVolumeClaim>,
    ) -> kube::Result<()> {
        if annotation(claim, STORAGE_PROVISIONER_ANNOTATION) == Some(PROVISIONER) {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"annotations": {
            STORAGE_PROVISIONER_ANNOTATION: PROVISIONER,
            BETA_STORAGE_PROVISIONER_ANNOTATION: PROVISIONER,
        }}});
        claims
            .patch(
                name_of(claim),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        class_name: &str,
        node: &str,
        resolved: &Resolved,
    ) -> anyhow::Result<()> {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), namespace_of(claim));
        if self.role == VolumeRole::ControllerAndProvisioner {
            self.mark_provisioner(claim, &claims).await?;
        }
        let Some(class) = resolved.class.as_ref() else {
            anyhow::bail!("StorageClass {class_name} vanished");
        };
        let Some(node_object) = resolved.node.as_ref() else {
            self.recorder
                .record(object_reference(claim), "Warning", "ProvisioningFailed", &format!("failed to provision volume with StorageClass \"{class_name}\": selected node \"{node}\" does not exist"))
                .await;
            return Ok(());
        };
        let name = provisioned_pv_name(claim);
        let path = volume_path(&self.data_dir, &name);
        let bytes = claim_request_bytes(claim).max(0.0) as u64;
        let block = claim_volume_mode(claim) == "Block";
        let source = match claim_snapshot_handle(&self.client, claim, bytes).await {
            Ok(source) => source,
            Err(message) => {
                let message = format!(
                    "failed to provision volume with StorageClass \"{class_name}\": {message}"
                );
                self.recorder
                    .record(
                        object_reference(claim),
                        "Warning",
                        "ProvisioningFailed",
                        &message,
                    )
                    .await;
                anyhow::bail!(message);
            }
        };
        let create_path = path.clone();
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            std::fs::create_dir_all(create_path.parent().expect("volumes dir"))?;
            if let Some(handle) = source {
                // A volume from a snapshot starts as a copy of it.
                snapshot_data::restore_into(&data_dir, &handle, &create_path, bytes)?;
            } else if block {
                // A sparse file of the requested size stands in for the block device.
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&create_path)?;
                file.set_len(bytes)?;
            } else {
                std::fs::create_dir_all(&create_path)?;
            }
            Ok(())
        })
        .await??;
        let zone = labels_of(node_object.as_ref()).get(ZONE_LABEL).cloned();
        let pv = provisioned_pv(claim, class, node, zone.as_deref(), &path);
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        match pvs.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                self.recorder
                    .record(
                        object_reference(claim),
                        "Normal",
                        "ProvisioningSucceeded",
                        &format!("Successfully provisioned volume {name}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// The PV controller's bind: PV claimRef, PV phase, claim volumeName and annotations,
    /// claim phase/capacity. Each step is skipped when already in place.
    async fn bind(
        &self,
        claim: &PersistentVolumeClaim,
        pv: &PersistentVolume,
        claims: &Api<PersistentVolumeClaim>,
        pvs: &Api<PersistentVolume>,
    ) -> anyhow::Result<()> {
        let pv_name = name_of(pv);
        let claim_ref_uid = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.uid.clone());
        if claim_ref_uid.as_deref() != Some(uid_of(claim)) {
            let mut patch = serde_json::json!({"spec": {"claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": namespace_of(claim), "name": name_of(claim),
                "uid": uid_of(claim), "resourceVersion": claim.metadata.resource_version,
            }}});
            if !pv_has_claim_ref(pv) {
                patch["metadata"] =
                    serde_json::json!({"annotations": {BOUND_BY_CONTROLLER_ANNOTATION: "yes"}});
            }
            pvs.patch(pv_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        if pv_phase(pv) != "Bound" {
            let patch =
                serde_json::json!({"status": {"phase": "Bound", "message": null, "reason": null}});
            pvs.patch_status(pv_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        if claim_volume_name(claim) != Some(pv_name)
            || annotation(claim, BIND_COMPLETED_ANNOTATION).is_none()
        {
            let mut annotations = serde_json::json!({BIND_COMPLETED_ANNOTATION: "yes"});
            if claim_volume_name(claim).is_none() {
                annotations[BOUND_BY_CONTROLLER_ANNOTATION] = "yes".into();
            }
            let patch = serde_json::json!({"metadata": {"annotations": annotations}, "spec": {"volumeName": pv_name}});
            claims
                .patch(
                    name_of(claim),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        if claim_phase(claim) != "Bound" {
            let spec = pv.spec.clone().unwrap_or_default();
            let patch = serde_json::json!({"status": {
                "phase": "Bound",
                "accessModes": spec.access_modes,
                "capacity": spec.capacity,
            }});
            claims
                .patch_status(
                    name_of(claim),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        Ok(())
    }

    async fn perform_volume(
        &self,
        pv: &PersistentVolume,
        decision: VolumeDecision,
    ) -> anyhow::Result<()> {
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let name = name_of(pv);
        let set_phase = |phase: &str, message: Option<String>| serde_json::json!({"status": {"phase": phase, "message": message}});
        match decision {
            VolumeDecision::Nothing => {}
            VolumeDecision::SetPhase(phase) => {
                pvs.patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&set_phase(&phase, None)),
                )
                .await?;
            }
            VolumeDecision::Release => {
                pvs.patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&set_phase("Released", None)),
                )
                .await?;
            }
            VolumeDecision::Unbind => {
                let patch = serde_json::json!({"spec": {"claimRef": null}, "metadata": {"annotations": {BOUND_BY_CONTROLLER_ANNOTATION: null}}});
                pvs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                pvs.patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&set_phase("Available", None)),
                )
                .await?;
            }
            VolumeDecision::Fail { message } => {
                pvs.patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&set_phase("Failed", Some(message.clone()))),
                )
                .await?;
                self.recorder
                    .record(
                        object_reference(pv),
                        "Warning",
                        "VolumeFailedDelete",
                        &message,
                    )
                    .await;
            }
            VolumeDecision::ReleaseAndDelete => {
                // As the PV controller's deleteVolumeOperation: read the PV again before
                // deleting, since the cache may show the claim's deletion before a change
                // to the PV (e.g. a reclaim policy just set to Retain). A changed PV is
                // decided again when its event arrives.
                let Some(fresh) = pvs.get_opt(name).await? else {
                    return Ok(());
                };
                let policy = |v: &PersistentVolume| {
                    v.spec
                        .as_ref()
                        .and_then(|s| s.persistent_volume_reclaim_policy.clone())
                };
                let claim_uid = |v: &PersistentVolume| {
                    v.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .and_then(|r| r.uid.clone())
                };
                // A volume being deleted already (held by pv-protection) is reclaimed too.
                if policy(&fresh) != policy(pv) || claim_uid(&fresh) != claim_uid(pv) {
                    return Ok(());
                }
                if pv_phase(pv) != "Released" {
                    pvs.patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&set_phase("Released", None)),
                    )
                    .await?;
                }
                // Only ever remove what kubesim itself made under its volumes directory.
                let volumes_dir = self.data_dir.join("volumes");
                let path = pv_data_path(pv, &self.data_dir);
                if let Some(path) = path.filter(|p| p.starts_with(&volumes_dir)) {
                    tokio::task::spawn_blocking(move || {
                        let result = if path.is_dir() {
                            std::fs::remove_dir_all(&path)
                        } else {
                            std::fs::remove_file(&path)
                        };
                        match result {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                            _ => Ok(()),
                        }
                    })
                    .await??;
                }
                match pvs.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

fn has_finalizer(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    finalizer: &str,
) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

fn without(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    finalizer: &str,
) -> Vec<String> {
    meta.finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect()
}

/// Claims that pvc-protection keeps: used by a pod scheduled to a node, whatever its phase
/// (a finished pod holds its claims until it is deleted), unless the kubelet is done with it
/// or it was force-deleted (deleting, with a grace period of 0).
fn claims_in_use(snapshot: &ClusterSnapshot) -> HashSet<(String, String)> {
    snapshot
        .pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
                && !(p.metadata.deletion_timestamp.is_some()
                    && p.metadata.deletion_grace_period_seconds == Some(0))
        })
        .flat_map(|p| {
            let namespace = namespace_of(p.as_ref()).to_string();
            pod_claim_names(p)
                .into_iter()
                .map(move |c| (namespace.clone(), c))
        })
        .collect()
}

/// kubesim volumes per node (by their hostname node affinity).
fn volumes_per_node(snapshot: &ClusterSnapshot) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for pv in snapshot.pvs.values() {
        if annotation(pv.as_ref(), PROVISIONED_BY_ANNOTATION) != Some(PROVISIONER) {
            continue;
        }
        let node = pv
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref())
            .and_then(|r| r.node_selector_terms.first())
            .and_then(|t| t.match_expressions.as_ref())
            .and_then(|e| e.iter().find(|r| r.key == HOSTNAME_LABEL))
            .and_then(|r| r.values.as_ref())
            .and_then(|v| v.first().cloned());
        if let Some(node) = node {
            *counts.entry(node).or_default() += 1;
        }
    }
    counts
}
