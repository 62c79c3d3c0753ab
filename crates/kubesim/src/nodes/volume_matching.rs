//! Pure rules about which PersistentVolume can serve which claim on which node, shared by
//! the scheduler (VolumeBinding plugin) and the PV controller. They follow the matching in
//! Kubernetes' PV controller (`FindMatchingVolume`): pre-bound PVs first, then the smallest
//! Available PV of the claim's class, access modes, volume mode and selector.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};

use super::cache::ClusterSnapshot;
use super::matching::{label_selector_matches, node_selector_terms_match};
use super::quantity::quantity_value;

pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str =
    "volume.beta.kubernetes.io/storage-provisioner";

pub fn name_of<K: kube::Resource>(object: &K) -> &str {
    object.meta().name.as_deref().unwrap_or("")
}

pub fn namespace_of<K: kube::Resource>(object: &K) -> &str {
    object.meta().namespace.as_deref().unwrap_or("")
}

pub fn uid_of<K: kube::Resource>(object: &K) -> &str {
    object.meta().uid.as_deref().unwrap_or("")
}

pub fn annotation<'a, K: kube::Resource>(object: &'a K, key: &str) -> Option<&'a str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn empty_labels() -> &'static BTreeMap<String, String> {
    static EMPTY: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(BTreeMap::new)
}

pub fn labels_of<K: kube::Resource>(object: &K) -> &BTreeMap<String, String> {
    object
        .meta()
        .labels
        .as_ref()
        .unwrap_or_else(|| empty_labels())
}

/// The storage a claim asks for, in bytes.
pub fn claim_request_bytes(claim: &PersistentVolumeClaim) -> f64 {
    quantity_value(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    )
}

pub fn pv_capacity_bytes(pv: &PersistentVolume) -> f64 {
    quantity_value(
        pv.spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage")),
    )
}

pub fn claim_volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// `Filesystem` unless Block is asked for.
pub fn claim_volume_mode(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

pub fn pv_volume_mode(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

pub fn pv_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub fn pv_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The class name a claim effectively uses (the default class when unset).
pub fn claim_class_name(claim: &PersistentVolumeClaim, snapshot: &ClusterSnapshot) -> String {
    match claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
    {
        Some(name) => name.to_string(),
        None => snapshot
            .default_class()
            .map(|c| name_of(c.as_ref()).to_string())
            .unwrap_or_default(),
    }
}

/// Whether the PV's claimRef names this claim: namespace and name, and the uid when the
/// claimRef carries one (a claimRef without uid is a reservation, "pre-bound").
pub fn pv_claim_ref_names(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    claim_ref.name.as_deref() == Some(name_of(claim))
        && claim_ref.namespace.as_deref() == Some(namespace_of(claim))
        && claim_ref
            .uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|u| u == uid_of(claim))
}

pub fn pv_has_claim_ref(pv: &PersistentVolume) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some()
}

/// A PV's required node affinity against a node; a PV without one is reachable everywhere.
pub fn pv_reachable_from(pv: &PersistentVolume, node: &Node) -> bool {
    let terms = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice());
    match terms {
        None => true,
        Some(terms) => node_selector_terms_match(terms, name_of(node), labels_of(node)),
    }
}

fn access_modes_cover(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let offered = pv
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
        .iter()
        .all(|m| offered.contains(m))
}

/// Size, volume mode and not-being-deleted: what even a pre-bound PV must satisfy.
fn pv_fits_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    pv_capacity_bytes(pv) >= claim_request_bytes(claim)
        && pv_volume_mode(pv) == claim_volume_mode(claim)
        && pv.metadata.deletion_timestamp.is_none()
}

/// A PV reserved for this claim through its claimRef (with or without uid).
pub fn prebound_pv_for<'a>(
    claim: &PersistentVolumeClaim,
    pvs: impl Iterator<Item = &'a PersistentVolume>,
) -> Option<&'a PersistentVolume> {
    pvs.filter(|pv| pv_claim_ref_names(pv, claim))
        .find(|pv| pv_fits_claim(pv, claim))
}

/// Available, unreserved PVs a claim could bind to (class, size, modes, selector), smallest
/// first. Does not look at node affinity.
pub fn available_pvs_for<'a>(
    claim: &PersistentVolumeClaim,
    class_name: &str,
    pvs: impl Iterator<Item = &'a PersistentVolume>,
) -> Vec<&'a PersistentVolume> {
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut candidates: Vec<&PersistentVolume> = pvs
        .filter(|pv| !pv_has_claim_ref(pv))
        .filter(|pv| pv_phase(pv) == "Available")
        .filter(|pv| pv_class(pv) == class_name)
        .filter(|pv| pv_fits_claim(pv, claim))
        .filter(|pv| access_modes_cover(pv, claim))
        .filter(|pv| selector.is_none_or(|s| label_selector_matches(s, labels_of(*pv))))
        .collect();
    candidates.sort_by(|a, b| {
        pv_capacity_bytes(a)
            .total_cmp(&pv_capacity_bytes(b))
            .then_with(|| name_of(*a).cmp(name_of(*b)))
    });
    candidates
}

#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::api::core::v1::{
        ObjectReference, PersistentVolumeClaimSpec, PersistentVolumeSpec, PersistentVolumeStatus,
        VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    pub fn claim(
        namespace: &str,
        name: &str,
        size: &str,
        class: Option<&str>,
    ) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: class.map(Into::into),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                    limits: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn pv(name: &str, size: &str, class: &str, phase: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
                storage_class_name: Some(class.into()),
                persistent_volume_reclaim_policy: Some("Retain".into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    pub fn claim_ref(namespace: &str, name: &str, uid: Option<&str>) -> ObjectReference {
        ObjectReference {
            kind: Some("PersistentVolumeClaim".into()),
            api_version: Some("v1".into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            uid: uid.map(Into::into),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[test]
    fn prebound_pv_matches_by_name_and_optional_uid() {
        let c = claim("ns", "data", "1Gi", Some("standard"));
        let mut p = pv("pv-a", "2Gi", "standard", "Released");
        p.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "data", None));
        assert!(prebound_pv_for(&c, [&p].into_iter()).is_some());
        p.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "data", Some("other-uid")));
        assert!(prebound_pv_for(&c, [&p].into_iter()).is_none());
        p.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "data", Some("uid-data")));
        assert!(prebound_pv_for(&c, [&p].into_iter()).is_some());
        // Too small never binds, even when reserved.
        let small = {
            let mut s = pv("pv-s", "100Mi", "standard", "Available");
            s.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "data", None));
            s
        };
        assert!(prebound_pv_for(&c, [&small].into_iter()).is_none());
    }

    #[test]
    fn available_pvs_filter_by_class_size_selector_and_sort_smallest_first() {
        let mut c = claim("ns", "data", "1Gi", Some("manual"));
        let big = pv("big", "10Gi", "manual", "Available");
        let fit = pv("fit", "1Gi", "manual", "Available");
        let other_class = pv("other", "1Gi", "standard", "Available");
        let bound = pv("bound", "1Gi", "manual", "Bound");
        let all = [&big, &fit, &other_class, &bound];
        let found: Vec<&str> = available_pvs_for(&c, "manual", all.into_iter())
            .iter()
            .map(|p| name_of(*p))
            .collect();
        assert_eq!(found, vec!["fit", "big"]);
        c.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some([("disk".to_string(), "fast".to_string())].into()),
            match_expressions: None,
        });
        assert!(available_pvs_for(&c, "manual", all.into_iter()).is_empty());
    }
}
