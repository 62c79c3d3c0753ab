//! The controller's permissions, split by reach:
//!
//! - a ClusterRole for what lives cluster-wide or in the *workload's* namespace: target PVCs
//!   (read), PVs (rebind), nodes and StorageClasses (placement), events;
//! - a Role in ferry's namespace for everything else: the DataDownload/DataUpload/
//!   BackupStorageLocation objects, the restore PVCs and pods ferry creates there, the
//!   node-agent ConfigMap, the repository Secret and the leader-election Lease.
//!
//! No wildcard anywhere: each rule says which verbs on which resources, and why.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{CONTROLLER_NAME, InstallOptions, metadata};
use crate::crds::{BackupStorageLocation, DataDownload, DataUpload};

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// Cluster-wide rules.
pub fn cluster_role_rules() -> Vec<PolicyRule> {
    vec![
        // Target PVCs live in the workload's namespace: read their spec (to copy it into the
        // restore PVC), their selected-node annotation (WaitForFirstConsumer) and binding.
        rule("", &["persistentvolumeclaims"], &["get", "list", "watch"]),
        // Rebind: set the restored PV's reclaim policy to Retain and back, point its claimRef
        // at the target PVC and add the labels the target's selector asks for.
        rule(
            "",
            &["persistentvolumes"],
            &["get", "list", "watch", "update", "patch"],
        ),
        // Placement: node readiness and labels (loadAffinity, perNodeConfig, topology).
        rule("", &["nodes"], &["get", "list", "watch"]),
        // Placement: volumeBindingMode and allowedTopologies of the target's StorageClass.
        rule(
            "storage.k8s.io",
            &["storageclasses"],
            &["get", "list", "watch"],
        ),
        // Events about DataDownloads and target PVCs (kube-rs records through events.k8s.io;
        // the core group is listed for clients that still post core/v1 Events).
        rule("events.k8s.io", &["events"], &["create", "patch"]),
        rule("", &["events"], &["create", "patch"]),
    ]
}

/// Rules inside ferry's namespace.
pub fn namespaced_role_rules() -> Vec<PolicyRule> {
    vec![
        // Claim, progress and complete DataDownloads. Velero's CRDs have no status subresource,
        // so status is written with update/patch on the object itself.
        rule(
            DataDownload::GROUP,
            &[DataDownload::PLURAL],
            &["get", "list", "watch", "update", "patch"],
        ),
        // Same for DataUploads (the backup path).
        rule(
            DataUpload::GROUP,
            &[DataUpload::PLURAL],
            &["get", "list", "watch", "update", "patch"],
        ),
        // Should a CRD gain a status subresource (a newer Velero), status writes go there.
        rule(
            DataDownload::GROUP,
            &["datadownloads/status", "datauploads/status"],
            &["update", "patch"],
        ),
        // Read where the backup repository is; Velero owns these objects, ferry never writes.
        rule(
            BackupStorageLocation::GROUP,
            &[BackupStorageLocation::PLURAL],
            &["get", "list", "watch"],
        ),
        // Restore PVCs are created in ferry's namespace and deleted after the rebind; patch
        // removes ferry's finalizer or owner reference when a restore is abandoned.
        rule(
            "",
            &["persistentvolumeclaims"],
            &["create", "delete", "patch"],
        ),
        // Restore pods run the data mover; the controller watches and deletes them.
        rule("", &["pods"], &["get", "list", "watch", "create", "delete"]),
        // The last lines of a failed data mover pod's log go into the DataDownload's message.
        rule("", &["pods/log"], &["get"]),
        // The node-agent ConfigMap (--node-agent-configmap), watched for changes.
        rule("", &["configmaps"], &["get", "list", "watch"]),
        // The repository password and the BackupStorageLocation's credentials; read one by
        // name, never listed.
        rule("", &["secrets"], &["get"]),
        // Leader election, so only one controller replica acts at a time.
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"],
        ),
    ]
}

fn subject(options: &InstallOptions) -> Subject {
    Subject {
        kind: "ServiceAccount".to_string(),
        name: CONTROLLER_NAME.to_string(),
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
