//! The PV controller's decisions as pure functions over a snapshot (what Kubernetes'
//! `syncClaim`/`syncVolume` and an external provisioner decide), so they can be tested
//! without a server. The volume controller executes them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::bootstrap::{HOSTNAME_LABEL, PROVISIONER, ZONE_LABEL};
use super::cache::{ClusterSnapshot, PvIndex};
use super::matching::allowed_topologies_match;
use super::volume_data::PATH_ATTRIBUTE;
use super::volume_matching::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    Nothing,
    /// Retroactive default StorageClass assignment for a claim created without a class.
    AssignDefaultClass(String),
    /// Complete the binding of claim and PV on both sides (idempotent steps).
    Bind {
        pv: String,
    },
    /// kubesim's provisioner makes a volume on this node.
    Provision {
        node: String,
        class: String,
    },
    /// Immediate class, no node chosen yet: the provisioner picks one.
    ProvisionAnywhere {
        class: String,
    },
    /// The provisioner refuses (a ProvisioningFailed event).
    ProvisioningFailed {
        message: String,
    },
    /// WaitForFirstConsumer class, no consumer yet (a Normal event).
    WaitForFirstConsumer,
    /// The bound PV vanished (`misbound: false`) or names another claim (`true`: the PV
    /// controller's ClaimMisbound).
    Lost {
        misbound: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeDecision {
    Nothing,
    SetPhase(String),
    /// The claim is gone: Released, then Delete reclaim removes the volume.
    ReleaseAndDelete,
    /// The claim is gone: Released and kept (Retain).
    Release,
    /// A reclaim the provisioner cannot perform (not provisioned by kubesim, or Recycle).
    Fail {
        message: String,
    },
    /// Bound by the controller to a claim that bound elsewhere: make it Available again.
    Unbind,
}

fn claim_fully_bound_to(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    claim_volume_name(claim) == Some(name_of(pv))
        && claim_phase(claim) == "Bound"
        && annotation(claim, BIND_COMPLETED_ANNOTATION).is_some()
        && pv_phase(pv) == "Bound"
        && pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.uid.as_deref())
            == Some(uid_of(claim))
}

fn claim_was_bound(claim: &PersistentVolumeClaim) -> bool {
    annotation(claim, BIND_COMPLETED_ANNOTATION).is_some() || claim_phase(claim) == "Bound"
}

pub fn decide_claim(claim: &PersistentVolumeClaim, snapshot: &ClusterSnapshot) -> ClaimDecision {
    decide_claim_indexed(claim, snapshot, &PvIndex::new(snapshot))
}

pub fn decide_claim_indexed(
    claim: &PersistentVolumeClaim,
    snapshot: &ClusterSnapshot,
    index: &PvIndex,
) -> ClaimDecision {
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimDecision::Nothing;
    }
    let spec = claim.spec.clone().unwrap_or_default();
    if let Some(volume_name) = claim_volume_name(claim) {
        let Some(pv) = snapshot.pvs.get(volume_name) else {
            return if claim_was_bound(claim) && claim_phase(claim) != "Lost" {
                ClaimDecision::Lost { misbound: false }
            } else {
                ClaimDecision::Nothing
            };
        };
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        return match claim_ref {
            // Pre-bound by the claim (spec.volumeName): bind if the PV satisfies it.
            None => {
                let class_ok = pv_class(pv) == claim_class_name(claim, snapshot);
                if class_ok
                    && pv_capacity_bytes(pv) >= claim_request_bytes(claim)
                    && pv_volume_mode(pv) == claim_volume_mode(claim)
                {
                    ClaimDecision::Bind {
                        pv: volume_name.into(),
                    }
                } else {
                    ClaimDecision::Nothing
                }
            }
            Some(_) if pv_claim_ref_names(pv, claim) => {
                if claim_fully_bound_to(claim, pv) {
                    ClaimDecision::Nothing
                } else {
                    ClaimDecision::Bind {
                        pv: volume_name.into(),
                    }
                }
            }
            Some(_) if claim_was_bound(claim) && claim_phase(claim) != "Lost" => {
                ClaimDecision::Lost { misbound: true }
            }
            Some(_) => ClaimDecision::Nothing,
        };
    }
    // Unbound claim.
    if spec.storage_class_name.is_none()
        && let Some(default) = snapshot.default_class()
    {
        return ClaimDecision::AssignDefaultClass(name_of(default.as_ref()).to_string());
    }
    let reserved = index
        .claimed
        .get(&(namespace_of(claim), name_of(claim)))
        .into_iter()
        .flatten()
        .copied();
    if let Some(pv) = prebound_pv_for(claim, reserved) {
        return ClaimDecision::Bind {
            pv: name_of(pv).into(),
        };
    }
    let class = snapshot.class_of_claim(claim);
    let selected_node = annotation(claim, SELECTED_NODE_ANNOTATION).filter(|n| !n.is_empty());
    let delayed = class
        .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
        && selected_node.is_none();
    if !delayed {
        let class_name = claim_class_name(claim, snapshot);
        let node = selected_node.and_then(|n| snapshot.node(n));
        let found = available_pvs_for(claim, &class_name, index.free.iter().copied())
            .into_iter()
            .find(|pv| node.is_none_or(|n| pv_reachable_from(pv, n)));
        if let Some(pv) = found {
            return ClaimDecision::Bind {
                pv: name_of(pv).into(),
            };
        }
    }
    let Some(class) = class else {
        // No class: only static PVs can satisfy it.
        return ClaimDecision::Nothing;
    };
    if delayed {
        return ClaimDecision::WaitForFirstConsumer;
    }
    if class.provisioner != PROVISIONER {
        return ClaimDecision::Nothing;
    }
    let class_name = name_of(class.as_ref()).to_string();
    if spec.selector.is_some() {
        // As external-provisioner: a claim with a selector wants an existing PV.
        return ClaimDecision::ProvisioningFailed {
            message: format!(
                "failed to provision volume with StorageClass \"{class_name}\": claim Selector is not supported"
            ),
        };
    }
    match selected_node {
        Some(node) => ClaimDecision::Provision {
            node: node.into(),
            class: class_name,
        },
        None => ClaimDecision::ProvisionAnywhere { class: class_name },
    }
}

pub fn decide_volume(pv: &PersistentVolume, snapshot: &ClusterSnapshot) -> VolumeDecision {
    // A volume being deleted is synced too: held by pv-protection while Bound, it must be
    // seen Released (and reclaimed) once its claim is gone.
    let phase = pv_phase(pv);
    let set_phase = |wanted: &str| {
        if phase == wanted {
            VolumeDecision::Nothing
        } else {
            VolumeDecision::SetPhase(wanted.into())
        }
    };
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return set_phase("Available");
    };
    let Some(claim_uid) = claim_ref.uid.as_deref().filter(|u| !u.is_empty()) else {
        // Reserved for a claim that has not bound yet; the claim's sync binds it.
        return set_phase("Available");
    };
    let claim = snapshot
        .pvc(
            claim_ref.namespace.as_deref().unwrap_or(""),
            claim_ref.name.as_deref().unwrap_or(""),
        )
        .filter(|c| uid_of(c.as_ref()) == claim_uid);
    match claim {
        None => {
            if phase == "Failed" {
                return VolumeDecision::Nothing;
            }
            let policy = pv
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                .unwrap_or("Retain");
            match policy {
                "Delete" if annotation(pv, PROVISIONED_BY_ANNOTATION) == Some(PROVISIONER) => {
                    VolumeDecision::ReleaseAndDelete
                }
                "Delete" => VolumeDecision::Fail {
                    message: format!(
                        "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
                        name_of(pv)
                    ),
                },
                "Recycle" => VolumeDecision::Fail {
                    message: "Recycle reclaim policy is deprecated and not supported by kubesim"
                        .into(),
                },
                _ if phase == "Released" => VolumeDecision::Nothing,
                _ => VolumeDecision::Release,
            }
        }
        Some(claim) => match claim_volume_name(claim) {
            Some(name) if name == name_of(pv) => set_phase("Bound"),
            // The claim's sync finishes the binding.
            None => VolumeDecision::Nothing,
            Some(_) if annotation(pv, BOUND_BY_CONTROLLER_ANNOTATION).is_some() => {
                VolumeDecision::Unbind
            }
            Some(_) => VolumeDecision::Nothing,
        },
    }
}

/// For an Immediate claim: the node allowed by the class's topology that has the fewest
/// kubesim volumes, so volumes spread. Nodes tainted NotReady are avoided when possible.
pub fn choose_node_for_immediate(
    class: &StorageClass,
    snapshot: &ClusterSnapshot,
    volumes_per_node: &HashMap<String, usize>,
) -> Option<String> {
    let ready = |n: &k8s_openapi::api::core::v1::Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    };
    snapshot
        .nodes
        .iter()
        .filter(|n| {
            allowed_topologies_match(class.allowed_topologies.as_deref(), labels_of(n.as_ref()))
        })
        .min_by_key(|n| {
            (
                !ready(n),
                volumes_per_node
                    .get(name_of(n.as_ref()))
                    .copied()
                    .unwrap_or(0),
            )
        })
        .map(|n| name_of(n.as_ref()).to_string())
}

/// The PV kubesim's provisioner creates for a claim on a node: named `pvc-<claim uid>`, a CSI
/// volume of kubesim's driver whose handle is that name (its data at `path`), affine to
/// that node, pre-bound to the claim (claimRef with uid).
pub fn provisioned_pv(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    zone: Option<&str>,
    path: &Path,
) -> PersistentVolume {
    let name = provisioned_pv_name(claim);
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity("0".into()));
    let mut labels = BTreeMap::new();
    if let Some(zone) = zone {
        labels.insert(ZONE_LABEL.to_string(), zone.to_string());
    }
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY_ANNOTATION.to_string(),
                class.provisioner.clone(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(BTreeMap::from([("storage".to_string(), storage)])),
            claim_ref: Some(ObjectReference {
                kind: Some("PersistentVolumeClaim".into()),
                api_version: Some("v1".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: PROVISIONER.into(),
                volume_handle: name,
                // Where the data is on this machine, for people looking around; kubesim's
                // kubelets find it from the handle.
                volume_attributes: Some(BTreeMap::from([(
                    PATH_ATTRIBUTE.to_string(),
                    path.to_string_lossy().into_owned(),
                )])),
                ..Default::default()
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(claim_volume_mode(claim).to_string()),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn provisioned_pv_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", uid_of(claim))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::bootstrap::{node_object, storage_class};
    use super::super::volume_matching::fixtures::*;
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn snapshot(claims: &[PersistentVolumeClaim], pvs: &[PersistentVolume]) -> ClusterSnapshot {
        let mut s = ClusterSnapshot {
            nodes: (0..2).map(|i| Arc::new(node_object(i, 0))).collect(),
            ..Default::default()
        };
        for class in [
            storage_class("standard", "WaitForFirstConsumer", true),
            storage_class("immediate", "Immediate", false),
        ] {
            s.classes
                .insert(class.metadata.name.clone().unwrap(), Arc::new(class));
        }
        for c in claims {
            s.pvcs.insert(
                (namespace_of(c).into(), name_of(c).into()),
                Arc::new(c.clone()),
            );
        }
        for p in pvs {
            s.pvs.insert(name_of(p).into(), Arc::new(p.clone()));
        }
        s
    }

    fn annotate(claim: &mut PersistentVolumeClaim, key: &str, value: &str) {
        claim
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(key.into(), value.into());
    }

    #[test]
    fn wait_for_first_consumer_waits_then_provisions_on_selected_node() {
        let mut c = claim("ns", "data", "1Gi", Some("standard"));
        assert_eq!(
            decide_claim(&c, &snapshot(std::slice::from_ref(&c), &[])),
            ClaimDecision::WaitForFirstConsumer
        );
        annotate(&mut c, SELECTED_NODE_ANNOTATION, "node-2");
        assert_eq!(
            decide_claim(&c, &snapshot(std::slice::from_ref(&c), &[])),
            ClaimDecision::Provision {
                node: "node-2".into(),
                class: "standard".into()
            }
        );
    }

    #[test]
    fn immediate_provisions_anywhere_and_unset_class_gets_default() {
        let c = claim("ns", "data", "1Gi", Some("immediate"));
        assert_eq!(
            decide_claim(&c, &snapshot(std::slice::from_ref(&c), &[])),
            ClaimDecision::ProvisionAnywhere {
                class: "immediate".into()
            }
        );
        let unset = claim("ns", "data", "1Gi", None);
        assert_eq!(
            decide_claim(&unset, &snapshot(std::slice::from_ref(&unset), &[])),
            ClaimDecision::AssignDefaultClass("standard".into())
        );
    }

    #[test]
    fn selector_claim_is_never_provisioned() {
        let mut c = claim("ns", "data", "1Gi", Some("standard"));
        c.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some([("velero.io/restore-name".to_string(), "r1".to_string())].into()),
            match_expressions: None,
        });
        annotate(&mut c, SELECTED_NODE_ANNOTATION, "node-1");
        let decision = decide_claim(&c, &snapshot(std::slice::from_ref(&c), &[]));
        assert!(
            matches!(decision, ClaimDecision::ProvisioningFailed { ref message } if message.contains("claim Selector is not supported"))
        );
    }

    #[test]
    fn claim_ref_without_uid_binds_the_named_claim() {
        let c = claim("ns", "target", "1Gi", Some("standard"));
        let mut p = pv("restored", "1Gi", "standard", "Released");
        p.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "target", None));
        let s = snapshot(std::slice::from_ref(&c), std::slice::from_ref(&p));
        assert_eq!(
            decide_claim(&c, &s),
            ClaimDecision::Bind {
                pv: "restored".into()
            }
        );
        // The PV side only makes it Available (a reservation) and waits for the claim sync.
        assert_eq!(
            decide_volume(&p, &s),
            VolumeDecision::SetPhase("Available".into())
        );
    }

    #[test]
    fn released_volume_follows_its_reclaim_policy() {
        let mut p = pv("pv-1", "1Gi", "standard", "Bound");
        p.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "gone", Some("uid-gone")));
        let s = snapshot(&[], &[]);
        assert_eq!(decide_volume(&p, &s), VolumeDecision::Release);
        p.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Delete".into());
        p.metadata.annotations = Some(
            [(
                PROVISIONED_BY_ANNOTATION.to_string(),
                PROVISIONER.to_string(),
            )]
            .into(),
        );
        assert_eq!(decide_volume(&p, &s), VolumeDecision::ReleaseAndDelete);
        // A claim re-created under the same name (new uid) does not inherit the volume.
        let again = claim("ns", "gone", "1Gi", Some("standard"));
        let mut retained = p.clone();
        retained
            .spec
            .as_mut()
            .unwrap()
            .persistent_volume_reclaim_policy = Some("Retain".into());
        retained.status.as_mut().unwrap().phase = Some("Released".into());
        assert_eq!(
            decide_volume(&retained, &snapshot(&[again], &[])),
            VolumeDecision::Nothing
        );
    }

    #[test]
    fn bound_claim_whose_volume_vanished_is_lost() {
        let mut c = claim("ns", "data", "1Gi", Some("standard"));
        c.spec.as_mut().unwrap().volume_name = Some("pv-x".into());
        annotate(&mut c, BIND_COMPLETED_ANNOTATION, "yes");
        assert_eq!(
            decide_claim(&c, &snapshot(std::slice::from_ref(&c), &[])),
            ClaimDecision::Lost { misbound: false }
        );
    }

    #[test]
    fn bound_claim_whose_volume_names_another_claim_is_misbound() {
        let mut c = claim("ns", "data", "1Gi", Some("standard"));
        c.spec.as_mut().unwrap().volume_name = Some("pv-x".into());
        annotate(&mut c, BIND_COMPLETED_ANNOTATION, "yes");
        let mut p = pv("pv-x", "1Gi", "standard", "Bound");
        p.spec.as_mut().unwrap().claim_ref = Some(claim_ref("other", "target", None));
        assert_eq!(
            decide_claim(&c, &snapshot(std::slice::from_ref(&c), &[p])),
            ClaimDecision::Lost { misbound: true }
        );
    }

    #[test]
    fn static_available_pv_binds_immediate_claim_by_selector() {
        let mut c = claim("ns", "data", "1Gi", Some("immediate"));
        c.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some([("disk".to_string(), "fast".to_string())].into()),
            match_expressions: None,
        });
        let mut p = pv("fast-1", "5Gi", "immediate", "Available");
        p.metadata.labels = Some([("disk".to_string(), "fast".to_string())].into());
        assert_eq!(
            decide_claim(&c, &snapshot(std::slice::from_ref(&c), &[p])),
            ClaimDecision::Bind {
                pv: "fast-1".into()
            }
        );
    }

    #[test]
    fn provisioned_volume_is_node_affine_and_prebound() {
        let c = claim("ns", "data", "3Gi", Some("standard"));
        let class = storage_class("standard", "WaitForFirstConsumer", true);
        let p = provisioned_pv(
            &c,
            &class,
            "node-3",
            Some("zone-1"),
            Path::new("/d/volumes/pvc-uid-data"),
        );
        assert_eq!(name_of(&p), "pvc-uid-data");
        assert!(pv_claim_ref_names(&p, &c));
        assert!(pv_reachable_from(&p, &node_object(2, 0)));
        assert!(!pv_reachable_from(&p, &node_object(0, 0)));
        assert_eq!(pv_capacity_bytes(&p), 3.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(
            p.spec.unwrap().persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
    }
}
