//! The Kubernetes objects the demo creates, as Velero and a StatefulSet would create them:
//! the workload's PVCs and pods, the restore targets, DataDownloads, the
//! BackupStorageLocation, the repository password secret and the node-agent ConfigMap.
//! Pure builders: names and specs in, objects out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, Secret, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

/// Where the sample workload lives.
pub const WORKLOAD_NAMESPACE: &str = "ledger";
/// Where ferry's controller runs and the DataDownloads, location and secret live.
pub const FERRY_NAMESPACE: &str = "ferry";
/// The WaitForFirstConsumer class kubesim serves.
pub const STORAGE_CLASS: &str = "standard";
/// The node-agent ConfigMap the controller reads.
pub const NODE_AGENT_CONFIGMAP: &str = "node-agent-config";
/// The BackupStorageLocation the DataDownloads name.
pub const LOCATION: &str = "default";
pub const LOCATION_BUCKET: &str = "demo";
pub const LOCATION_PREFIX: &str = "backups";
/// Velero's repository password secret and key.
pub const REPO_SECRET: &str = "velero-repo-credentials";
pub const REPO_SECRET_KEY: &str = "repository-password";
/// The label Velero puts in a restore target's selector so nothing else provisions it.
pub const DYNAMIC_PV_RESTORE_LABEL: &str = "velero.io/dynamic-pv-restore";
/// Where the workload's containers mount their volume.
pub const MOUNT_PATH: &str = "/var/lib/ledger";

/// The DataDownload kind (velero.io/v2alpha1), served by kubesim as a CRD.
pub fn data_download_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "velero.io",
        "v2alpha1",
        "DataDownload",
    ))
}

/// The BackupStorageLocation kind (velero.io/v1).
pub fn location_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "velero.io",
        "v1",
        "BackupStorageLocation",
    ))
}

/// A capacity request comfortably above the data (kubesim's volumes are directories).
pub fn capacity_for(bytes: u64) -> String {
    let mib = (bytes * 2).div_ceil(1 << 20).max(64);
    format!("{mib}Mi")
}

fn claim_spec(capacity: &str, selector: Option<LabelSelector>) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        storage_class_name: Some(STORAGE_CLASS.into()),
        volume_mode: Some("Filesystem".into()),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(capacity.to_string()),
            )])),
            ..Default::default()
        }),
        selector,
        ..Default::default()
    }
}

fn app_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), super::workload::STATEFULSET.to_string())])
}

/// The workload's claim, as a StatefulSet's volumeClaimTemplate creates it.
pub fn workload_claim(name: &str, capacity: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(WORKLOAD_NAMESPACE.into()),
            labels: Some(app_labels()),
            ..Default::default()
        },
        spec: Some(claim_spec(capacity, None)),
        ..Default::default()
    }
}

/// The restore target, as Velero creates it: the same spec, with a selector no PV has yet,
/// so only the data mover's rebind binds it.
pub fn restore_target_claim(name: &str, capacity: &str) -> PersistentVolumeClaim {
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            DYNAMIC_PV_RESTORE_LABEL.to_string(),
            format!("{WORKLOAD_NAMESPACE}.{name}"),
        )])),
        ..Default::default()
    };
    let mut claim = workload_claim(name, capacity);
    claim.spec = Some(claim_spec(capacity, Some(selector)));
    claim
}

/// A workload pod mounting its claim; `command` is what its container runs.
pub fn workload_pod(name: &str, claim: &str, image: &str, command: Vec<String>) -> Pod {
    let mut labels = app_labels();
    labels.insert(
        "statefulset.kubernetes.io/pod-name".to_string(),
        name.to_string(),
    );
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(WORKLOAD_NAMESPACE.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "ledger".into(),
                image: Some(image.into()),
                command: Some(command),
                volume_mounts: Some(vec![VolumeMount {
                    name: "data".into(),
                    mount_path: MOUNT_PATH.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            volumes: Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    read_only: None,
                }),
                ..Default::default()
            }]),
            restart_policy: Some("Always".into()),
            termination_grace_period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The DataDownload Velero would create for one volume.
pub fn data_download(
    name: &str,
    snapshot_id: &str,
    target_claim: &str,
    bytes: u64,
) -> DynamicObject {
    let mut object = DynamicObject::new(name, &data_download_resource()).within(FERRY_NAMESPACE);
    object.metadata.labels = Some(BTreeMap::from([(
        "ferry.dev/demo".to_string(),
        "true".to_string(),
    )]));
    object.data = json!({
        "spec": {
            "datamover": "ferry",
            "backupStorageLocation": LOCATION,
            "snapshotID": snapshot_id,
            "snapshotSize": bytes,
            "sourceNamespace": WORKLOAD_NAMESPACE,
            "operationTimeout": "10m0s",
            "targetVolume": {
                "namespace": WORKLOAD_NAMESPACE,
                "pvc": target_claim,
                "pv": "",
            },
        }
    });
    object
}

/// A local-directory BackupStorageLocation: the repository lives at
/// `<path>/<bucket>/<prefix>/plugins/ferry/<source namespace>`.
pub fn backup_storage_location(path: &str) -> DynamicObject {
    let mut object = DynamicObject::new(LOCATION, &location_resource()).within(FERRY_NAMESPACE);
    object.data = json!({
        "spec": {
            "provider": "local",
            "objectStorage": { "bucket": LOCATION_BUCKET, "prefix": LOCATION_PREFIX },
            "config": { "path": path },
        }
    });
    object
}

pub fn repository_secret(password: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(REPO_SECRET.into()),
            namespace: Some(FERRY_NAMESPACE.into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            REPO_SECRET_KEY.to_string(),
            password.to_string(),
        )])),
        ..Default::default()
    }
}

/// The node-agent ConfigMap for a mode. Two data movements per node at once, so that with
/// ignoreDelayBinding every restore starts at once (Velero's default is one).
pub fn node_agent_config(ignore_delay_binding: bool) -> ConfigMap {
    node_agent_config_with(ignore_delay_binding, 2)
}

/// The node-agent ConfigMap with `load_concurrency` data movements per node at once.
pub fn node_agent_config_with(ignore_delay_binding: bool, load_concurrency: u16) -> ConfigMap {
    let config = json!({
        "loadConcurrency": { "globalConfig": load_concurrency },
        "restorePVC": { "ignoreDelayBinding": ignore_delay_binding },
    });
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(NODE_AGENT_CONFIGMAP.into()),
            namespace: Some(FERRY_NAMESPACE.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "node-agent-config.json".to_string(),
            serde_json::to_string_pretty(&config).expect("JSON values serialise"),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_target_carries_velero_selector_and_same_spec() {
        let workload = workload_claim("data-ledger-0", "64Mi");
        let target = restore_target_claim("data-ledger-0", "64Mi");
        let (w, t) = (workload.spec.unwrap(), target.spec.unwrap());
        assert!(w.selector.is_none());
        let labels = t.selector.unwrap().match_labels.unwrap();
        assert_eq!(labels[DYNAMIC_PV_RESTORE_LABEL], "ledger.data-ledger-0");
        assert_eq!(w.storage_class_name, t.storage_class_name);
        assert_eq!(w.resources, t.resources);
        assert_eq!(w.access_modes, t.access_modes);
    }

    #[test]
    fn data_download_names_the_snapshot_target_and_data_mover() {
        let dd = data_download("ledger-0-restore", "abc123", "data-ledger-0", 42);
        let value = serde_json::to_value(&dd).unwrap();
        assert_eq!(value["apiVersion"], "velero.io/v2alpha1");
        assert_eq!(value["kind"], "DataDownload");
        assert_eq!(value["metadata"]["namespace"], FERRY_NAMESPACE);
        assert_eq!(value["spec"]["datamover"], "ferry");
        assert_eq!(value["spec"]["snapshotID"], "abc123");
        assert_eq!(value["spec"]["targetVolume"]["pvc"], "data-ledger-0");
        assert_eq!(
            value["spec"]["targetVolume"]["namespace"],
            WORKLOAD_NAMESPACE
        );
        assert_eq!(value["spec"]["backupStorageLocation"], LOCATION);
    }

    #[test]
    fn node_agent_config_sets_ignore_delay_binding() {
        let config = node_agent_config(true);
        let text = config.data.unwrap().into_values().next().unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["restorePVC"]["ignoreDelayBinding"], true);
        let config = node_agent_config(false);
        let text = config.data.unwrap().into_values().next().unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["restorePVC"]["ignoreDelayBinding"], false);
    }

    #[test]
    fn node_agent_config_sets_load_concurrency() {
        let text = node_agent_config_with(true, 7)
            .data
            .unwrap()
            .into_values()
            .next()
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["loadConcurrency"]["globalConfig"], 7);
        assert_eq!(value["restorePVC"]["ignoreDelayBinding"], true);
    }

    #[test]
    fn capacity_leaves_room_and_has_a_floor() {
        assert_eq!(capacity_for(1 << 20), "64Mi");
        assert_eq!(capacity_for(100 << 20), "200Mi");
    }
}
