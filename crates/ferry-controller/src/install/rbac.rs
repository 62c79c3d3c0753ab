//! Permissions, split by who needs them and how far they must reach:
//!
//! - the controller's ClusterRole, for what lives cluster-wide or in the *workload's*
//!   namespace: target PVCs (read), PVs (rebind), nodes and StorageClasses (placement);
//! - the controller's Role in ferry's namespace: DataDownloads, the restore PVCs and pods it
//!   creates there, the node-agent ConfigMap, the leader-election Lease, events;
//! - the data mover's Role (its own ServiceAccount, which the restore, backup and forget pods
//!   run as): its DataDownload or DataUpload, the BackupStorageLocation and the repository
//!   secrets. The controller never reads secrets (it never opens a repository: forgetting a
//!   deleted backup's snapshot runs in a data mover pod too), and the pods that mount user
//!   data cannot create pods or touch PVs.
//!
//! No wildcard anywhere, and only what the code really requests: `rbac_covers_requests`
//! (crates/ferry) records every request of a restore on kubesim and checks it against these.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{CONTROLLER_NAME, DATA_MOVER_NAME, InstallOptions, metadata};
use crate::crds::{BackupStorageLocation, DataDownload, DataUpload};

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// Cluster-wide rules of the controller.
pub fn cluster_role_rules() -> Vec<PolicyRule> {
    vec![
        // Target PVCs live in the workloads' namespaces: their spec is copied into the restore
        // PVC, their selected-node annotation and binding are waited on (watched, served from
        // a cache; get when the cache is behind the controller's own write). Also covers
        // reading the restore PVCs in ferry's namespace. Patch: a target waiting for the PV
        // reserved for it is annotated, so the PV controller binds it at once (it looks at a
        // claim only when the claim changes or every 15 s), and the annotation removed after.
        rule(
            "",
            &["persistentvolumeclaims"],
            &["get", "list", "watch", "patch"],
        ),
        // Rebind: the restored PV's reclaim policy to Retain and back, claimRef to the target
        // PVC, the labels the target's selector asks for (all merge patches, never update);
        // delete: a retained PV of a failed or canceled restore is removed in cleanup.
        rule(
            "",
            &["persistentvolumes"],
            &["get", "list", "watch", "patch", "delete"],
        ),
        // A rebind that times out quotes the last Warning event on the target PVC (in the
        // workload's namespace): list only.
        rule("", &["events"], &["list"]),
        // A priorityClassName naming no PriorityClass is dropped at start (as Velero does).
        rule("scheduling.k8s.io", &["priorityclasses"], &["get"]),
        // Placement: node readiness, taints and labels, from a watch (never one node by name).
        rule("", &["nodes"], &["list", "watch"]),
        // Placement: volumeBindingMode and allowedTopologies of the target's StorageClass.
        rule(
            "storage.k8s.io",
            &["storageclasses"],
            &["get", "list", "watch"],
        ),
        // Backups: a DataUpload's VolumeSnapshot (in the workload's namespace) is waited on
        // (from a watch), then deleted once its data is taken over; the backup snapshot in
        // ferry's namespace is read and deleted in cleanup (created by the namespaced rule).
        rule(
            "snapshot.storage.k8s.io",
            &["volumesnapshots"],
            &["get", "list", "watch", "delete"],
        ),
        // The take-over: the source content is retained (patch) and deleted, the backup
        // content created with its snapshot handle (contents are cluster-scoped).
        rule(
            "snapshot.storage.k8s.io",
            &["volumesnapshotcontents"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
    ]
}

/// Rules of the controller inside ferry's namespace.
pub fn namespaced_role_rules() -> Vec<PolicyRule> {
    vec![
        // Claim, step and complete DataDownloads: watched, status merge-patched on the object
        // (Velero's CRDs have no status subresource); get when the cache is behind a write.
        rule(
            DataDownload::GROUP,
            &[DataDownload::PLURAL],
            &["get", "list", "watch", "patch"],
        ),
        // Step and complete DataUploads, as DataDownloads.
        rule(
            DataUpload::GROUP,
            &[DataUpload::PLURAL],
            &["get", "list", "watch", "patch"],
        ),
        // A DataUpload's location must exist before its snapshot is taken over.
        rule(
            BackupStorageLocation::GROUP,
            &[BackupStorageLocation::PLURAL],
            &["get"],
        ),
        // `velero backup delete`: a deleted DataUpload's snapshot is forgotten only if its
        // Backup is being deleted (read by name), or is gone and one of Velero's
        // DeleteBackupRequests for it (listed by the backup-name label) is Processed.
        rule("velero.io", &["backups"], &["get"]),
        rule("velero.io", &["deletebackuprequests"], &["list"]),
        // The backup snapshot that carries the data to the backup PVC.
        rule("snapshot.storage.k8s.io", &["volumesnapshots"], &["create"]),
        // Restore and backup PVCs are created here and deleted after the rebind or backup
        // (read cluster-wide above).
        rule("", &["persistentvolumeclaims"], &["create", "delete"]),
        // Restore, backup and forget pods run the data mover; watched, created, deleted after
        // the data moved (or the snapshot was forgotten).
        rule("", &["pods"], &["get", "list", "watch", "create", "delete"]),
        // The node-agent ConfigMap (--node-agent-configmap): read at startup, then watched.
        rule("", &["configmaps"], &["get", "list", "watch"]),
        // Leader election, so only one controller replica acts at a time.
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"],
        ),
        // Events on DataDownloads and DataUploads (events.k8s.io/v1, in this namespace; patch:
        // a repeated event is counted in its series); list (core/v1): a restore that times out
        // quotes the last Warning event on its pod or PVC.
        rule("events.k8s.io", &["events"], &["create", "patch"]),
        rule("", &["events"], &["list"]),
    ]
}

/// Rules of the data mover pods (ServiceAccount `ferry-data-mover`), in ferry's namespace.
pub fn data_mover_role_rules() -> Vec<PolicyRule> {
    vec![
        // Read its DataDownload (snapshot, target) or DataUpload (source PVC and namespace,
        // labels for the snapshot's tags) and merge-patch progress into its status.
        rule(
            DataDownload::GROUP,
            &[DataDownload::PLURAL, DataUpload::PLURAL],
            &["get", "patch"],
        ),
        // Where the repository is (spec.backupStorageLocation).
        rule(
            BackupStorageLocation::GROUP,
            &[BackupStorageLocation::PLURAL],
            &["get"],
        ),
        // The repository password and the location's credentials, read by name.
        rule("", &["secrets"], &["get"]),
    ]
}

fn subject(options: &InstallOptions) -> Subject {
    account(options, CONTROLLER_NAME)
}

fn account(options: &InstallOptions, name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_string(),
        name: name.to_string(),
        namespace: Some(options.namespace.clone()),
        ..Subject::default()
    }
}

pub(super) fn cluster_role(options: &InstallOptions) -> ClusterRole {
    ClusterRole {
        metadata: metadata(&options.cluster_rbac_name(), None),
        rules: Some(cluster_role_rules()),
        ..ClusterRole::default()
    }
}

pub(super) fn cluster_role_binding(options: &InstallOptions) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(&options.cluster_rbac_name(), None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: options.cluster_rbac_name(),
        },
        subjects: Some(vec![subject(options)]),
    }
}

pub(super) fn role(options: &InstallOptions) -> Role {
    Role {
        metadata: metadata(CONTROLLER_NAME, Some(&options.namespace)),
        rules: Some(namespaced_role_rules()),
    }
}

pub(super) fn role_binding(options: &InstallOptions) -> RoleBinding {
    RoleBinding {
        metadata: metadata(CONTROLLER_NAME, Some(&options.namespace)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: CONTROLLER_NAME.to_string(),
        },
        subjects: Some(vec![subject(options)]),
    }
}

pub(super) fn data_mover_role(options: &InstallOptions) -> Role {
    Role {
        metadata: metadata(DATA_MOVER_NAME, Some(&options.namespace)),
        rules: Some(data_mover_role_rules()),
    }
}

pub(super) fn data_mover_role_binding(options: &InstallOptions) -> RoleBinding {
    RoleBinding {
        metadata: metadata(DATA_MOVER_NAME, Some(&options.namespace)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: DATA_MOVER_NAME.to_string(),
        },
        subjects: Some(vec![account(options, DATA_MOVER_NAME)]),
    }
}
