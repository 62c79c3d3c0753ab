//! `velero backup delete` for backups whose volume data ferry moved.
//!
//! Velero v1.18's backup deletion (`pkg/controller/backup_deletion_controller.go`) forgets the
//! snapshots of its own data mover only: `deleteMovedSnapshots` reads the snapshot-info
//! ConfigMaps that the DataUpload DeleteItemAction writes, and that action writes none for a
//! DataUpload whose `spec.datamover` is not Velero's (`IsBuiltInUploader`). What Velero does
//! for every data mover is to set the Backup's phase to `Deleting` and then delete the
//! DataUploads labelled `velero.io/backup-name` in its namespace ("Removing local
//! datauploads") — before it removes the backup from object storage and from the cluster.
//!
//! That deletion is ferry's hook. A DataUpload whose snapshot is in the repository holds the
//! finalizer [`SNAPSHOT_FINALIZER`]; when it is deleted, [`snapshot_fate`] decides from the
//! Backup (and Velero's DeleteBackupRequests) whether Velero is deleting that backup. If so, a
//! data mover pod runs `ferry data-mover forget` ([`forget_data_upload_snapshot`]), which
//! removes exactly the DataUpload's snapshot, after checking that its tags name that backup,
//! that DataUpload and ferry's uploader ([`forget_refusal`]). Otherwise (the DataUpload deleted
//! by hand, by `velero uninstall`, with its namespace) the snapshot is kept. The data only the
//! forgotten snapshots used stays in the repository until `ferry repo prune`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use crate::crds::{BACKUP_NAME_LABEL, BACKUP_UID_LABEL, DataUpload, DataUploadPhase};
use crate::expose::{
    DATA_MOVER_CONTAINER, DataMoverAccess, PodSettings, TERMINATION_MESSAGE_PATH, data_mover_args,
    data_mover_labels, data_mover_resources, data_mover_security_context, owner_reference,
};
use crate::expose_snapshot::DATA_UPLOAD_LABEL;
use ferry_config::NodeAgentConfig;

/// Held on a DataUpload of a Velero backup from the moment its snapshot is in the repository:
/// its deletion waits until ferry decided what becomes of the snapshot.
pub const SNAPSHOT_FINALIZER: &str = "ferry.io/repository-snapshot";
/// Set on a deleted DataUpload once ferry decided to forget its snapshot (the decision holds
/// even when the Backup is gone by the next pass).
pub const FORGET_ANNOTATION: &str = "ferry.io/forget-snapshot";
/// When the last forget pod of a DataUpload failed (the next one waits [`FORGET_RETRY`]).
pub const FORGET_FAILED_ANNOTATION: &str = "ferry.io/forget-failed-at";
/// How long after a failed forget pod the next one is started.
pub const FORGET_RETRY: Duration = Duration::from_secs(30);
/// Velero's phase of a Backup its deletion controller is deleting.
pub const BACKUP_PHASE_DELETING: &str = "Deleting";

pub fn backup_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("velero.io", "v1", "Backup"),
        "backups",
    )
}

pub fn delete_request_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("velero.io", "v1", "DeleteBackupRequest"),
        "deletebackuprequests",
    )
}

/// A Velero Backup as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupView {
    pub uid: String,
    pub phase: String,
}

impl BackupView {
    pub fn from_object(obj: &DynamicObject) -> Self {
        BackupView {
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            phase: obj.data["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// A Velero DeleteBackupRequest as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequestView {
    /// Its `velero.io/backup-name` and `velero.io/backup-uid` labels.
    pub backup_name: String,
    pub backup_uid: String,
    pub phase: String,
    pub errors: Vec<String>,
}

impl DeleteRequestView {
    pub fn from_object(obj: &DynamicObject) -> Self {
        let label = |k: &str| {
            obj.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(k))
                .cloned()
                .unwrap_or_default()
        };
        DeleteRequestView {
            backup_name: label(BACKUP_NAME_LABEL),
            backup_uid: label(BACKUP_UID_LABEL),
            phase: obj.data["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            errors: obj.data["status"]["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// What becomes of a deleted DataUpload's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotFate {
    /// Velero is deleting (or has deleted) the backup: forget the snapshot.
    Forget { backup: String },
    /// Keep the snapshot and let the DataUpload go; the text says why.
    Keep(String),
    /// Not decidable yet (Velero's deletion is between two of its steps): look again.
    Wait(String),
}

/// Decides what becomes of the snapshot of the deleted DataUpload `du`, from the Backup its
/// `velero.io/backup-name` label names (`None`: not in the cluster) and the
/// DeleteBackupRequests labelled with that name. The snapshot is forgotten only when Velero
/// is deleting that very backup (same uid when the DataUpload records one):
///
/// - the Backup is in phase `Deleting` (Velero's deletion controller sets it once it accepted
///   the request, then deletes the DataUploads; Velero forgets its own data mover's snapshots
///   at the same point);
/// - or the Backup is gone and a DeleteBackupRequest for its uid is `Processed` without
///   errors (Velero removed it everywhere; the DataUpload outlived it while ferry was away).
///
/// Anything else keeps the snapshot: a DataUpload deleted by hand or with its namespace, a
/// Backup gone without Velero's word (`velero uninstall`, a namespace deleted), another
/// backup that reuses the name.
pub fn snapshot_fate(
    du: &DataUpload,
    backup: Option<&BackupView>,
    requests: &[DeleteRequestView],
) -> SnapshotFate {
    let status = du.status.clone().unwrap_or_default();
    if du.phase() != DataUploadPhase::Completed
        || status.snapshot_id.as_deref().unwrap_or("").is_empty()
    {
        return SnapshotFate::Keep(format!(
            "the DataUpload is {} without a snapshot to forget",
            du.phase().as_str()
        ));
    }
    let Some(name) = du.label(BACKUP_NAME_LABEL) else {
        return SnapshotFate::Keep(format!(
            "the DataUpload has no {BACKUP_NAME_LABEL} label: no Velero backup owns the snapshot"
        ));
    };
    let uid = du.label(BACKUP_UID_LABEL);
    match backup {
        Some(b) if uid.is_some_and(|u| u != b.uid) => SnapshotFate::Keep(format!(
            "backup {name} in the cluster is another one (uid {}, the snapshot's backup had {})",
            b.uid,
            uid.unwrap_or_default()
        )),
        Some(b) if b.phase == BACKUP_PHASE_DELETING => SnapshotFate::Forget {
            backup: name.to_string(),
        },
        Some(b) => SnapshotFate::Keep(format!(
            "backup {name} exists and is not being deleted (phase {})",
            if b.phase.is_empty() { "none" } else { &b.phase }
        )),
        None => {
            let Some(uid) = uid else {
                return SnapshotFate::Keep(format!(
                    "backup {name} is gone and the DataUpload has no {BACKUP_UID_LABEL} label to match Velero's deletion request"
                ));
            };
            let mine = requests
                .iter()
                .filter(|r| r.backup_name == name && r.backup_uid == uid);
            let mut in_progress = false;
            for r in mine {
                if r.phase == "Processed" && r.errors.is_empty() {
                    return SnapshotFate::Forget {
                        backup: name.to_string(),
                    };
                }
                in_progress |= r.phase.is_empty() || r.phase == "New" || r.phase == "InProgress";
            }
            if in_progress {
                SnapshotFate::Wait(format!(
                    "backup {name} is gone and Velero's deletion request is still in progress"
                ))
            } else {
                SnapshotFate::Keep(format!(
                    "backup {name} is gone but no DeleteBackupRequest shows Velero deleted it"
                ))
            }
        }
    }
}

/// The name of the pod that forgets a DataUpload's snapshot.
pub fn forget_pod_name(du_name: &str) -> String {
    format!("{du_name}-forget")
}

/// The pod running `ferry data-mover forget` for the deleted DataUpload `du`: the data mover's
/// image, ServiceAccount, resources, priority and labels, no volume, anywhere the scheduler
/// likes; owned by the DataUpload.
pub fn forget_pod_for(
    du: &DataUpload,
    namespace: &str,
    config: &NodeAgentConfig,
    settings: &PodSettings,
) -> Pod {
    let du_name = du.metadata.name.clone().unwrap_or_default();
    let effective = config.effective();
    let args = data_mover_args(
        &[
            "data-mover",
            "forget",
            "--data-upload",
            &du_name,
            "--namespace",
            namespace,
        ],
        settings,
    );
    let labels = data_mover_labels(&effective, DATA_UPLOAD_LABEL, &du_name);
    Pod {
        metadata: ObjectMeta {
            name: Some(forget_pod_name(&du_name)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: effective.pod_annotations.clone(),
            owner_references: Some(vec![owner_reference(du)]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_string()),
            priority_class_name: effective.priority_class_name.clone(),
            service_account_name: settings.service_account.clone(),
            containers: vec![Container {
                name: DATA_MOVER_CONTAINER.to_string(),
                image: Some(settings.image.clone()),
                image_pull_policy: Some("IfNotPresent".to_string()),
                args: Some(args),
                termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
                termination_message_policy: Some("FallbackToLogsOnError".to_string()),
                resources: Some(data_mover_resources(&effective)),
                security_context: Some(data_mover_security_context(
                    DataMoverAccess::RepositoryOnly,
                )),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crds::{DataUploadSpec, DataUploadStatus};

    fn upload(
        labels: &[(&str, &str)],
        phase: DataUploadPhase,
        snapshot: Option<&str>,
    ) -> DataUpload {
        let mut du = DataUpload::new("b1-abcde", DataUploadSpec::default());
        du.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        du.status = Some(DataUploadStatus {
            phase: Some(phase),
            snapshot_id: snapshot.map(str::to_string),
            ..Default::default()
        });
        du
    }

    fn velero_upload() -> DataUpload {
        upload(
            &[(BACKUP_NAME_LABEL, "b1"), (BACKUP_UID_LABEL, "uid-1")],
            DataUploadPhase::Completed,
            Some("abc"),
        )
    }

    fn backup(uid: &str, phase: &str) -> BackupView {
        BackupView {
            uid: uid.into(),
            phase: phase.into(),
        }
    }

    fn request(name: &str, uid: &str, phase: &str, errors: &[&str]) -> DeleteRequestView {
        DeleteRequestView {
            backup_name: name.into(),
            backup_uid: uid.into(),
            phase: phase.into(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn forget() -> SnapshotFate {
        SnapshotFate::Forget {
            backup: "b1".into(),
        }
    }

    fn kept(fate: SnapshotFate) -> bool {
        matches!(fate, SnapshotFate::Keep(_))
    }

    #[test]
    fn a_backup_velero_is_deleting_has_its_snapshot_forgotten() {
        let du = velero_upload();
        assert_eq!(
            snapshot_fate(&du, Some(&backup("uid-1", "Deleting")), &[]),
            forget()
        );
    }

    #[test]
    fn a_backup_that_is_not_being_deleted_keeps_its_snapshot() {
        let du = velero_upload();
        for phase in ["Completed", "PartiallyFailed", "Finalizing", ""] {
            let fate = snapshot_fate(&du, Some(&backup("uid-1", phase)), &[]);
            assert!(kept(fate.clone()), "{phase}: {fate:?}");
        }
        // A processed request does not matter while the backup is there and not Deleting
        // (Velero refused: in progress, read-only or unavailable location).
        let refused = [request("b1", "uid-1", "Processed", &[])];
        assert!(kept(snapshot_fate(
            &du,
            Some(&backup("uid-1", "Completed")),
            &refused
        )));
    }

    #[test]
    fn another_backup_of_the_same_name_keeps_the_snapshot() {
        let du = velero_upload();
        assert!(kept(snapshot_fate(
            &du,
            Some(&backup("uid-2", "Deleting")),
            &[]
        )));
    }

    #[test]
    fn a_gone_backup_needs_velero_s_processed_request_for_its_uid() {
        let du = velero_upload();
        // Gone without any request: uninstall, namespace deleted — keep.
        assert!(kept(snapshot_fate(&du, None, &[])));
        // Velero deleted it without errors.
        assert_eq!(
            snapshot_fate(&du, None, &[request("b1", "uid-1", "Processed", &[])]),
            forget()
        );
        // Processed with errors (e.g. "backup not found"), or for another uid or name: keep.
        for r in [
            request("b1", "uid-1", "Processed", &["backup not found"]),
            request("b1", "uid-2", "Processed", &[]),
            request("b2", "uid-1", "Processed", &[]),
        ] {
            assert!(
                kept(snapshot_fate(&du, None, std::slice::from_ref(&r))),
                "{r:?}"
            );
        }
        // Still in progress: wait for Velero's verdict.
        assert!(matches!(
            snapshot_fate(&du, None, &[request("b1", "uid-1", "InProgress", &[])]),
            SnapshotFate::Wait(_)
        ));
    }

    #[test]
    fn without_velero_s_labels_or_a_snapshot_nothing_is_forgotten() {
        let deleting = backup("uid-1", "Deleting");
        let standalone = upload(&[], DataUploadPhase::Completed, Some("abc"));
        assert!(kept(snapshot_fate(&standalone, Some(&deleting), &[])));
        let failed = upload(
            &[(BACKUP_NAME_LABEL, "b1"), (BACKUP_UID_LABEL, "uid-1")],
            DataUploadPhase::Failed,
            None,
        );
        assert!(kept(snapshot_fate(&failed, Some(&deleting), &[])));
        // No uid label: only a Deleting backup of that name decides.
        let no_uid = upload(
            &[(BACKUP_NAME_LABEL, "b1")],
            DataUploadPhase::Completed,
            Some("abc"),
        );
        assert_eq!(snapshot_fate(&no_uid, Some(&deleting), &[]), forget());
        assert!(kept(snapshot_fate(
            &no_uid,
            None,
            &[request("b1", "", "Processed", &[])]
        )));
    }

    #[test]
    fn the_forget_pod_runs_the_data_mover_for_the_data_upload() {
        let du = velero_upload();
        let settings = PodSettings {
            image: "ferry/ferry:test".into(),
            service_account: Some("ferry-data-mover".into()),
            log_filter: None,
            password_secret: None,
            tolerations: vec![],
        };
        let pod = forget_pod_for(&du, "velero", &NodeAgentConfig::default(), &settings);
        assert_eq!(pod.metadata.name.as_deref(), Some("b1-abcde-forget"));
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()[DATA_UPLOAD_LABEL],
            "b1-abcde"
        );
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("ferry-data-mover")
        );
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert!(spec.volumes.is_none() && spec.node_selector.is_none());
        let args = spec.containers[0].args.clone().unwrap();
        assert_eq!(
            args[..6],
            [
                "data-mover",
                "forget",
                "--data-upload",
                "b1-abcde",
                "--namespace",
                "velero"
            ]
        );
    }
}
