//! The objects of a DataUpload's CSI snapshot exposure, as Velero's `csi_snapshot.go`
//! builds them (pure functions; the DataUpload reconciler creates them):
//!
//! - the take-over: a VolumeSnapshot in ferry's namespace named after the DataUpload, bound
//!   to a pre-provisioned VolumeSnapshotContent of the same name that carries the source
//!   content's `snapshotHandle` (policy Delete), so the source snapshot and its (retained)
//!   content can be deleted while the data stays;
//! - the backup PVC: `dataSource` that snapshot, size the snapshot's restore size, the
//!   ConfigMap's `backupPVC` entry for the source StorageClass (`storageClass`, `readOnly` →
//!   ReadOnlyMany, annotations);
//! - the backup pod: mounts it (read-only with `readOnly`, SELinux `spc_t` with
//!   `spcNoRelabeling` on a read-only volume) and runs `ferry data-mover backup`.

use std::collections::BTreeMap;

use ferry_config::{EffectiveBackupPvc, NodeAgentConfig};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    Pod, PodSecurityContext, PodSpec, SELinuxOptions, TypedLocalObjectReference, Volume,
    VolumeDevice, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::crds::DataUpload;
use crate::expose::{
    DATA_MOVER_CONTAINER, DataMoverAccess, HOSTNAME_LABEL, PodSettings, TERMINATION_MESSAGE_PATH,
    data_mover_labels, data_mover_resources, data_mover_security_context, owner_reference,
    volume_data_mover_args,
};

pub use crate::crds::DATA_UPLOAD_LABEL;
pub use crate::crds::{SNAPSHOT_GROUP, content_resource, snapshot_resource};

pub const BACKUP_MOUNT_PATH: &str = "/backup-volume";
pub const BACKUP_DEVICE_PATH: &str = "/dev/backup-volume";
const VOLUME_NAME: &str = "backup-volume";

fn name_of(du: &DataUpload) -> String {
    du.metadata.name.clone().unwrap_or_default()
}

/// The backup VolumeSnapshot (in ferry's namespace): bound to the pre-provisioned content of
/// the same name, the source snapshot's class and annotations.
pub fn backup_snapshot_for(
    du: &DataUpload,
    namespace: &str,
    source_snapshot: &serde_json::Value,
) -> serde_json::Value {
    let name = name_of(du);
    json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {DATA_UPLOAD_LABEL: name},
            "annotations": source_snapshot["metadata"]["annotations"],
        },
        "spec": {
            "source": {"volumeSnapshotContentName": name},
            "volumeSnapshotClassName": source_snapshot["spec"]["volumeSnapshotClassName"],
        },
    })
}

/// The backup VolumeSnapshotContent: the source content's snapshot handle, driver and class,
/// bound to the backup snapshot (`snapshot_uid`), deleted with it.
pub fn backup_content_for(
    du: &DataUpload,
    namespace: &str,
    source_content: &serde_json::Value,
    snapshot_uid: &str,
) -> serde_json::Value {
    let name = name_of(du);
    json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {
            "name": name,
            "labels": {DATA_UPLOAD_LABEL: name},
            "annotations": source_content["metadata"]["annotations"],
        },
        "spec": {
            "volumeSnapshotRef": {
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "name": name, "namespace": namespace, "uid": snapshot_uid,
            },
            "source": {"snapshotHandle": source_content["status"]["snapshotHandle"]},
            "deletionPolicy": "Delete",
            "driver": source_content["spec"]["driver"],
            "volumeSnapshotClassName": source_content["spec"]["volumeSnapshotClassName"],
        },
    })
}

/// The ConfigMap's `backupPVC` entry for the source StorageClass, if any.
pub fn backup_pvc_config(
    config: &NodeAgentConfig,
    storage_class: &str,
) -> Option<EffectiveBackupPvc> {
    config.effective().backup_pvc.get(storage_class).cloned()
}

/// Whether the backup pod mounts the volume read-only, and with SELinux `spc_t` (Velero
/// ignores `spcNoRelabeling` on a read-write volume).
pub fn read_only_and_spc(entry: Option<&EffectiveBackupPvc>) -> (bool, bool) {
    let read_only = entry.is_some_and(|e| e.read_only);
    (
        read_only,
        read_only && entry.is_some_and(|e| e.spc_no_relabeling),
    )
}

/// The backup PVC: from the backup snapshot, in ferry's namespace, owned by the DataUpload.
pub fn backup_pvc_for(
    du: &DataUpload,
    namespace: &str,
    source_storage_class: &str,
    size: Quantity,
    block: bool,
    config: &NodeAgentConfig,
) -> PersistentVolumeClaim {
    let name = name_of(du);
    let entry = backup_pvc_config(config, source_storage_class);
    let (read_only, _) = read_only_and_spc(entry.as_ref());
    let storage_class = entry
        .as_ref()
        .and_then(|e| e.storage_class.clone())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| source_storage_class.to_string());
    let annotations = entry.map(|e| e.annotations).filter(|a| !a.is_empty());
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                DATA_UPLOAD_LABEL.to_string(),
                name.clone(),
            )])),
            annotations,
            owner_references: Some(vec![owner_reference(du)]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![
                if read_only {
                    "ReadOnlyMany"
                } else {
                    "ReadWriteOnce"
                }
                .to_string(),
            ]),
            storage_class_name: Some(storage_class),
            volume_mode: Some(if block { "Block" } else { "Filesystem" }.to_string()),
            data_source: Some(TypedLocalObjectReference {
                api_group: Some(SNAPSHOT_GROUP.to_string()),
                kind: "VolumeSnapshot".to_string(),
                name,
            }),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The backup pod: mounts the backup PVC and runs `ferry data-mover backup`, pinned to `node`.
pub fn backup_pod_for(
    du: &DataUpload,
    namespace: &str,
    source_storage_class: &str,
    block: bool,
    node: Option<&str>,
    config: &NodeAgentConfig,
    settings: &PodSettings,
) -> Pod {
    let name = name_of(du);
    let effective = config.effective();
    let entry = backup_pvc_config(config, source_storage_class);
    let (read_only, spc) = read_only_and_spc(entry.as_ref());
    let volume_path = if block {
        BACKUP_DEVICE_PATH
    } else {
        BACKUP_MOUNT_PATH
    };
    let args = volume_data_mover_args(
        "backup",
        "--data-upload",
        &name,
        namespace,
        volume_path,
        block,
        settings,
    );
    let labels = data_mover_labels(&effective, DATA_UPLOAD_LABEL, &name);
    let container = Container {
        name: DATA_MOVER_CONTAINER.to_string(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Some(args),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        resources: Some(data_mover_resources(&effective)),
        // uid 0 with DAC_OVERRIDE only, to read every file whatever its owner and mode (see
        // data_mover_security_context).
        security_context: Some(data_mover_security_context(DataMoverAccess::Backup)),
        volume_mounts: (!block).then(|| {
            vec![VolumeMount {
                name: VOLUME_NAME.to_string(),
                mount_path: BACKUP_MOUNT_PATH.to_string(),
                read_only: read_only.then_some(true),
                ..VolumeMount::default()
            }]
        }),
        volume_devices: block.then(|| {
            vec![VolumeDevice {
                name: VOLUME_NAME.to_string(),
                device_path: BACKUP_DEVICE_PATH.to_string(),
            }]
        }),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: effective.pod_annotations.clone(),
            owner_references: Some(vec![owner_reference(du)]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_string()),
            node_selector: node
                .map(|n| BTreeMap::from([(HOSTNAME_LABEL.to_string(), n.to_string())])),
            priority_class_name: effective.priority_class_name.clone(),
            service_account_name: settings.service_account.clone(),
            security_context: spc.then(|| PodSecurityContext {
                se_linux_options: Some(SELinuxOptions {
                    type_: Some("spc_t".to_string()),
                    ..SELinuxOptions::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: VOLUME_NAME.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: name,
                    read_only: Some(read_only),
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crds::DataUploadSpec;

    fn du() -> DataUpload {
        let mut du = DataUpload::new(
            "du-1",
            DataUploadSpec {
                source_namespace: "app".into(),
                source_pvc: "data".into(),
                ..Default::default()
            },
        );
        du.metadata.uid = Some("uid-1".into());
        du
    }

    fn config(json: serde_json::Value) -> NodeAgentConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_take_over_keeps_the_handle_and_deletes_with_the_backup_snapshot() {
        let source_snapshot = json!({"metadata": {"annotations": {"a": "b"}},
            "spec": {"volumeSnapshotClassName": "csi"}});
        let vs = backup_snapshot_for(&du(), "velero", &source_snapshot);
        assert_eq!(vs["spec"]["source"]["volumeSnapshotContentName"], "du-1");
        assert_eq!(vs["spec"]["volumeSnapshotClassName"], "csi");
        assert_eq!(vs["metadata"]["annotations"]["a"], "b");
        let source_content = json!({"metadata": {}, "spec": {"driver": "d", "volumeSnapshotClassName": "csi"},
            "status": {"snapshotHandle": "h-1"}});
        let vsc = backup_content_for(&du(), "velero", &source_content, "vs-uid");
        assert_eq!(vsc["spec"]["source"]["snapshotHandle"], "h-1");
        assert_eq!(vsc["spec"]["deletionPolicy"], "Delete");
        assert_eq!(vsc["spec"]["driver"], "d");
        assert_eq!(vsc["spec"]["volumeSnapshotRef"]["uid"], "vs-uid");
        assert_eq!(vsc["spec"]["volumeSnapshotRef"]["namespace"], "velero");
    }

    #[test]
    fn the_backup_pvc_follows_the_configmap_for_the_source_class() {
        let plain = backup_pvc_for(
            &du(),
            "velero",
            "standard",
            Quantity("1Gi".into()),
            false,
            &config(json!({})),
        );
        let spec = plain.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
        assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(spec.data_source.unwrap().name, "du-1");
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "1Gi"
        );
        assert_eq!(plain.metadata.owner_references.unwrap()[0].uid, "uid-1");

        let configured = config(json!({"backupPVC": {"standard": {
            "storageClass": "fast", "readOnly": true, "spcNoRelabeling": true,
            "annotations": {"x": "y"}}}}));
        let pvc = backup_pvc_for(
            &du(),
            "velero",
            "standard",
            Quantity("1Gi".into()),
            true,
            &configured,
        );
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadOnlyMany"]);
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
        assert_eq!(pvc.metadata.annotations.unwrap()["x"], "y");
        // Another class's entry does not apply.
        let other = backup_pvc_for(
            &du(),
            "velero",
            "other",
            Quantity("1Gi".into()),
            false,
            &configured,
        );
        assert_eq!(other.spec.unwrap().access_modes.unwrap(), ["ReadWriteOnce"]);
    }

    #[test]
    fn the_backup_pod_mounts_read_only_and_relabels_only_a_read_only_volume() {
        let settings = PodSettings {
            image: "ferry/ferry:dev".into(),
            ..Default::default()
        };
        let read_only = config(
            json!({"backupPVC": {"standard": {"readOnly": true, "spcNoRelabeling": true}},
            "priorityClassName": "movers", "podResources": {"cpuRequest": "500m"}}),
        );
        let pod = backup_pod_for(
            &du(),
            "velero",
            "standard",
            false,
            Some("node-2"),
            &read_only,
            &settings,
        );
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_selector.unwrap()[HOSTNAME_LABEL], "node-2");
        assert_eq!(spec.priority_class_name.as_deref(), Some("movers"));
        assert_eq!(
            spec.security_context
                .unwrap()
                .se_linux_options
                .unwrap()
                .type_
                .as_deref(),
            Some("spc_t")
        );
        let container = &spec.containers[0];
        assert_eq!(
            container.volume_mounts.as_ref().unwrap()[0].read_only,
            Some(true)
        );
        assert_eq!(
            container
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["cpu"]
                .0,
            "500m"
        );
        let args = container.args.as_ref().unwrap();
        assert_eq!(
            &args[..4],
            ["data-mover", "backup", "--data-upload", "du-1"]
        );

        let read_write = config(json!({"backupPVC": {"standard": {"spcNoRelabeling": true}}}));
        let pod = backup_pod_for(
            &du(),
            "velero",
            "standard",
            true,
            None,
            &read_write,
            &settings,
        );
        let spec = pod.spec.unwrap();
        assert!(
            spec.security_context.is_none(),
            "spcNoRelabeling ignored on a read-write volume"
        );
        assert_eq!(
            spec.containers[0].volume_devices.as_ref().unwrap()[0].device_path,
            BACKUP_DEVICE_PATH
        );
    }
}
