//! Rebind, decided apart from done: what one look at the cluster shows ([`RebindView`]), the
//! one step that follows from it ([`next_step`], pure and table-tested), and the patches those
//! steps write. [`crate::expose::RestoreExposer::rebind`] looks, asks, and acts.
//!
//! The path, each step keyed on what the cluster shows so that repeating one (after a restart)
//! is harmless: the restore PV gets Retain and ferry's label (so it outlives its claim), the
//! restore pod and then the restore PVC are deleted (the claim's protection keeps it until
//! the pod is gone), the PV's claimRef is pointed at the target PVC, the PV controller binds
//! the two, and the PV gets its reclaim policy back. One pass goes through the steps until one
//! must wait for another controller: the pod and claim to go, the target to be bound.
//!
//! Why this order is safe: the restore PVC is deleted only after the API server accepted
//! Retain, so every version of the PV that says Released also says Retain. The PV controller
//! writes Released with the resourceVersion it read (a stale view of the PV conflicts and is
//! read again), and provisioners delete only a PV whose phase is Released and whose policy is
//! Delete in the same version; the policy goes back only once the PV is Bound to the target.
//!
//! Why not reserve the PV for the target first: the restore PVC would then be a bound claim
//! whose PV names another claim, and the PV controller marks it Lost (Warning events
//! ClaimMisbound/ClaimLost, "Data on the volume is lost!") when its deletion updates it. A
//! successful restore leaves no Warning.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::crds::DATA_DOWNLOAD_LABEL;

/// The restore PV's reclaim policy before rebind set it to Retain.
pub const ORIGINAL_RECLAIM_ANNOTATION: &str = "ferry.io/original-reclaim-policy";
/// On a target PVC while the PV reserved for it waits to be bound: when ferry last asked the
/// PV controller to look at the claim (RFC 3339), so that it looks now rather than at its
/// next resync. Removed once bound.
pub const BIND_REQUESTED_ANNOTATION: &str = "ferry.io/bind-requested";
/// On the restore PV from its hand-over to the target until the target is bound: when
/// ferry pointed it at the target (RFC 3339). The PV controller binds a claim whose PV names
/// its uid as soon as it sees the PV, so the target is touched only once this is a while ago.
pub const HANDED_OVER_ANNOTATION: &str = "ferry.io/handed-over";
/// How long after the hand-over, and then how often, a waiting target is touched.
const BIND_REQUEST_INTERVAL: SignedDuration = SignedDuration::from_secs(2);

/// What one pass of rebind sees.
#[derive(Debug, Clone)]
pub struct RebindView {
    /// The DataDownload's name: the restore PVC, the restore pod and ferry's PV label.
    pub dd_name: String,
    pub target: PersistentVolumeClaim,
    /// The restore PVC, its PV and its pod, while the restore PVC exists.
    pub restore: Option<RestoreSide>,
    /// Once the restore PVC is gone: the PV that ferry's label marks as this restore's.
    pub marked_pv: Option<PersistentVolume>,
    pub now: Timestamp,
}

/// The restore's own objects, in ferry's namespace.
#[derive(Debug, Clone)]
pub struct RestoreSide {
    pub pvc: PersistentVolumeClaim,
    /// The PV the restore PVC is bound to (None: not bound, or the PV is gone).
    pub pv: Option<PersistentVolume>,
    pub pod: Option<Pod>,
    /// What this pass deleted already (a slow API may still show it unchanged).
    pub deleted: DeletedThisPass,
}

/// The restore's objects that this pass of rebind has deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeletedThisPass {
    pub pod: bool,
    pub pvc: bool,
}

impl DeletedThisPass {
    /// Remembers what `step` deletes.
    pub fn note(&mut self, step: &RebindStep) {
        match step {
            RebindStep::DeleteRestorePod => self.pod = true,
            RebindStep::DeleteRestorePvc => self.pvc = true,
            _ => {}
        }
    }
}

/// The one thing rebind does next.
#[derive(Debug, Clone, PartialEq)]
pub enum RebindStep {
    /// Mark the PV with ferry's label and set Retain, keeping its policy in an annotation.
    RetainPv { pv: String, patch: Value },
    /// Remove the restore pod (it mounts the volume).
    DeleteRestorePod,
    /// Remove the restore PVC (gone once its pod is); its PV stays (Retain).
    DeleteRestorePvc,
    /// Point the free PV's claimRef at the target.
    HandToTarget { pv: String, patch: Value },
    /// Wait for the cluster; with `touch_target`, annotate the target first so that the PV
    /// controller looks at it now. `binding`: the wait is for the PV controller's binding,
    /// which no change ferry watches need announce (so look again at the touch interval).
    Wait {
        why: String,
        touch_target: Option<Value>,
        binding: bool,
    },
    /// Both sides are bound: give the PV its policy back and drop ferry's marks.
    Finish {
        pv: String,
        patch: Value,
        untouch_target: Option<Value>,
    },
    /// Nothing left to do.
    Done { pv: String },
}

/// What the cluster shows that no step can mend: the restore's volume is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebindLost {
    /// The restore PVC (`namespace/name`) has no volume.
    RestorePvcNotBound(String),
    /// Neither the restore PVC's PV nor a PV with ferry's label (DataDownload name).
    RestorePvMissing(String),
}

/// The step that follows from what the cluster shows.
pub fn next_step(view: &RebindView, namespace: &str) -> Result<RebindStep, RebindLost> {
    let dd_name = view.dd_name.as_str();
    if let Some(restore) = &view.restore {
        let pv_name = bound_volume(&restore.pvc)
            .ok_or_else(|| RebindLost::RestorePvcNotBound(format!("{namespace}/{dd_name}")))?;
        let pv = restore
            .pv
            .as_ref()
            .ok_or_else(|| RebindLost::RestorePvMissing(dd_name.to_string()))?;
        if !has_label(pv, dd_name) {
            return Ok(RebindStep::RetainPv {
                pv: pv_name,
                patch: retain_patch(pv, dd_name),
            });
        }
        let pod_going = restore
            .pod
            .as_ref()
            .map(|pod| restore.deleted.pod || pod.metadata.deletion_timestamp.is_some());
        if pod_going == Some(false) {
            return Ok(RebindStep::DeleteRestorePod);
        }
        // The claim may be deleted while its pod is still going: its protection finalizer
        // keeps it until the pod is gone, and the PV is retained already.
        let pvc_going = restore.deleted.pvc || restore.pvc.metadata.deletion_timestamp.is_some();
        if !pvc_going {
            return Ok(RebindStep::DeleteRestorePvc);
        }
        let why = match pod_going {
            Some(_) => format!("restore pod and PVC {namespace}/{dd_name} to be deleted"),
            None => format!("restore PVC {namespace}/{dd_name} to be deleted"),
        };
        return Ok(RebindStep::Wait {
            why,
            touch_target: None,
            binding: false,
        });
    }

    let target = &view.target;
    let target_id = format!(
        "{}/{}",
        target.metadata.namespace.as_deref().unwrap_or_default(),
        target.metadata.name.as_deref().unwrap_or_default()
    );
    let bound_to = bound_volume(target);
    let Some(pv) = &view.marked_pv else {
        // Done already: the target is bound to a PV that ferry no longer marks.
        return match bound_to {
            Some(pv) if pvc_phase(target) == "Bound" => Ok(RebindStep::Done { pv }),
            _ => Err(RebindLost::RestorePvMissing(dd_name.to_string())),
        };
    };
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    if !points_at(pv, target) {
        return Ok(RebindStep::HandToTarget {
            patch: hand_to_target_patch(target, view.now),
            pv: pv_name,
        });
    }
    let pv_phase = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if bound_to.as_deref() != Some(pv_name.as_str())
        || pvc_phase(target) != "Bound"
        || pv_phase != "Bound"
    {
        // The PV controller binds a claim to the PV reserved for it only when it looks at
        // the claim: when the claim changes, or at its periodic resync (15 s by default).
        // A change to the target makes it look now.
        let touch_target =
            (bound_to.is_none() && bind_request_due(target, pv, view.now)).then(|| {
                json!({ "metadata": { "annotations": {
                BIND_REQUESTED_ANNOTATION: rfc3339_millis(view.now),
            } } })
            });
        return Ok(RebindStep::Wait {
            why: format!(
                "target PVC {target_id} and PV {pv_name} to be Bound (PVC {}, PV {pv_phase})",
                pvc_phase(target),
            ),
            touch_target,
            binding: true,
        });
    }
    let untouch_target = has_annotation(target, BIND_REQUESTED_ANNOTATION)
        .then(|| json!({ "metadata": { "annotations": { BIND_REQUESTED_ANNOTATION: null } } }));
    Ok(RebindStep::Finish {
        patch: reset_patch(pv),
        pv: pv_name,
        untouch_target,
    })
}

/// Keep the PV whatever happens to its claims: Retain, its policy kept, ferry's label on it.
fn retain_patch(pv: &PersistentVolume, dd_name: &str) -> Value {
    let original = reclaim_policy(pv);
    json!({
        "metadata": {
            "labels": { DATA_DOWNLOAD_LABEL: dd_name },
            "annotations": { ORIGINAL_RECLAIM_ANNOTATION: original },
        },
        "spec": { "persistentVolumeReclaimPolicy": "Retain" },
    })
}

/// The PV's claimRef pointed at the target PVC, with the labels the target's selector asks
/// for and the time of the hand-over.
fn hand_to_target_patch(target: &PersistentVolumeClaim, now: Timestamp) -> Value {
    let labels: serde_json::Map<String, Value> = target
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    json!({
        "metadata": {
            "labels": labels,
            "annotations": {
                "pv.kubernetes.io/bound-by-controller": null,
                HANDED_OVER_ANNOTATION: rfc3339_millis(now),
            },
        },
        "spec": { "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": target.metadata.namespace,
            "name": target.metadata.name,
            // With the claim's uid the PV is bound to it from its side, as a provisioner
            // leaves a new PV, and the PV controller syncs the claim as soon as it sees the
            // PV; without it the PV is only reserved (Available), and the claim is synced only
            // when it changes or at the PV controller's resync.
            "uid": target.metadata.uid,
            "resourceVersion": null,
        }},
    })
}

/// The PV's own reclaim policy back, ferry's label and annotation gone.
fn reset_patch(pv: &PersistentVolume) -> Value {
    let original = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ORIGINAL_RECLAIM_ANNOTATION).cloned())
        .unwrap_or_else(|| "Delete".to_string());
    json!({
        "metadata": {
            "labels": { DATA_DOWNLOAD_LABEL: null },
            "annotations": { ORIGINAL_RECLAIM_ANNOTATION: null, HANDED_OVER_ANNOTATION: null },
        },
        "spec": { "persistentVolumeReclaimPolicy": original },
    })
}

/// The PV a claim is bound to, if any.
pub(crate) fn bound_volume(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
}

/// Whether the PV's claimRef names the target.
fn points_at(pv: &PersistentVolume, target: &PersistentVolumeClaim) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|c| c.namespace == target.metadata.namespace && c.name == target.metadata.name)
}

pub(crate) fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Delete")
}

/// Whether ferry's label marks the PV as this restore's.
pub(crate) fn has_label(pv: &PersistentVolume, dd_name: &str) -> bool {
    pv.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(DATA_DOWNLOAD_LABEL))
        .is_some_and(|v| v == dd_name)
}

/// A claim's phase; Pending before the API server wrote one.
pub(crate) fn pvc_phase(pvc: &PersistentVolumeClaim) -> String {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_string())
}

fn has_annotation(pvc: &PersistentVolumeClaim, key: &str) -> bool {
    annotation(&pvc.metadata, key).is_some()
}

/// Whether a target waiting for its PV should be touched: the hand-over and the last touch
/// (if any) are a while ago. A time that cannot be read counts as long ago.
fn bind_request_due(target: &PersistentVolumeClaim, pv: &PersistentVolume, now: Timestamp) -> bool {
    let long_ago = |at: Option<&String>| {
        at.and_then(|v| v.parse::<Timestamp>().ok())
            .is_none_or(|at| now.duration_since(at) >= BIND_REQUEST_INTERVAL)
    };
    long_ago(annotation(&pv.metadata, HANDED_OVER_ANNOTATION))
        && long_ago(annotation(&target.metadata, BIND_REQUESTED_ANNOTATION))
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a String> {
    meta.annotations.as_ref().and_then(|a| a.get(key))
}

/// A time as ferry writes it in annotations: RFC 3339 to the millisecond.
fn rfc3339_millis(t: Timestamp) -> String {
    t.round(k8s_openapi::jiff::Unit::Millisecond)
        .unwrap_or(t)
        .to_string()
}

#[cfg(test)]
#[path = "rebind_tests.rs"]
mod tests;
