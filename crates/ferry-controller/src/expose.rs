//! The generic restore exposer, as Velero's works: wait until the target PVC is consumed, then
//! create a restore PVC (same spec as the target, in ferry's namespace, owned by the
//! DataDownload) and a restore pod that mounts it and runs `ferry data-mover restore`; after
//! the data moved, rebind the restore PV to the target PVC. Every step is keyed on what the
//! cluster shows, so repeating a step (after a restart) is harmless.

use std::collections::BTreeMap;

use ferry_config::{EffectiveConfig, NodeAgentConfig};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, Node, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Toleration, Volume, VolumeDevice, VolumeMount,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff;
use serde_json::json;

use crate::cluster::{OpError, RestoreCluster};
use crate::crds::DataDownload;
use crate::rebind::{
    self, DeletedThisPass, RebindLost, RebindStep, RebindView, RestoreSide, bound_volume,
    has_label, pvc_phase, reclaim_policy,
};

/// Set by the scheduler on a WaitForFirstConsumer PVC once its consumer pod has a node.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
pub use crate::crds::DATA_DOWNLOAD_LABEL;
pub use crate::rebind::{
    BIND_REQUESTED_ANNOTATION, HANDED_OVER_ANNOTATION, ORIGINAL_RECLAIM_ANNOTATION,
};
/// The label the kubelet gives a node: its host name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The provisioner of StorageClasses whose volumes exist beforehand (local volumes).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// Where the restore pod sees the volume.
pub const FILESYSTEM_MOUNT_PATH: &str = "/restore-volume";
pub const BLOCK_DEVICE_PATH: &str = "/dev/restore-volume";
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
// What a finished data mover pod says is read in data_mover_exit; re-exported for the
// pod builders here and their callers.
pub use crate::data_mover_exit::{DATA_MOVER_CONTAINER, data_mover_error, termination_message};
const VOLUME_NAME: &str = "restore-volume";

/// Which way a data mover moves data. It names the PVC and pod the exposer makes ("restore
/// PVC", "backup pod") in messages, which the two sides otherwise share word for word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    Restore,
    Backup,
}

impl std::fmt::Display for Movement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Movement::Restore => "restore",
            Movement::Backup => "backup",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExposeError {
    #[error(
        "target PVC {0} not found: Velero's restore (or `ferry restore create`) must create it before the DataDownload"
    )]
    TargetNotFound(String),
    #[error(
        "target PVC {0} has already been bound, abort: a DataDownload restores only into a new, unbound PVC"
    )]
    TargetAlreadyBound(String),
    #[error("cannot create {0} PVC: {1}")]
    CreatePvc(Movement, OpError),
    #[error("cannot create {0} pod: {1}")]
    CreatePod(Movement, OpError),
    #[error("restore pod {pod} is in abnormal state {phase}{detail}")]
    PodAbnormal {
        pod: String,
        phase: String,
        detail: String,
    },
    #[error("cannot get target PVC {0}")]
    GetTarget(OpError),
    #[error("restore PVC {0} is not bound to a volume")]
    RestorePvcNotBound(String),
    #[error(
        "no restore PV found for DataDownload {0}: the restore PVC is gone and no PV carries its label"
    )]
    RestorePvMissing(String),
    #[error("cannot retain PV {pv}: {err}")]
    RetainPv { pv: String, err: OpError },
    #[error("cannot delete restore pod {pod}: {err}")]
    DeletePod { pod: String, err: OpError },
    #[error("cannot delete restore PVC {pvc}: {err}")]
    DeletePvc { pvc: String, err: OpError },
    #[error("cannot rebind PV {pv} to target PVC {target}: {err}")]
    RebindPv {
        pv: String,
        target: String,
        err: OpError,
    },
    #[error("cannot restore the reclaim policy of PV {pv}: {err}")]
    ResetReclaim { pv: String, err: OpError },
    #[error("{0}")]
    Cluster(#[from] OpError),
}

impl ExposeError {
    /// Whether the cluster call behind this error may succeed when retried.
    pub fn is_transient(&self) -> bool {
        match self {
            ExposeError::CreatePvc(_, e)
            | ExposeError::CreatePod(_, e)
            | ExposeError::GetTarget(e)
            | ExposeError::Cluster(e)
            | ExposeError::RetainPv { err: e, .. }
            | ExposeError::DeletePod { err: e, .. }
            | ExposeError::DeletePvc { err: e, .. }
            | ExposeError::RebindPv { err: e, .. }
            | ExposeError::ResetReclaim { err: e, .. } => e.transient,
            ExposeError::TargetNotFound(_)
            | ExposeError::TargetAlreadyBound(_)
            | ExposeError::PodAbnormal { .. }
            | ExposeError::RestorePvcNotBound(_)
            | ExposeError::RestorePvMissing(_) => false,
        }
    }
}

impl From<RebindLost> for ExposeError {
    fn from(lost: RebindLost) -> Self {
        match lost {
            RebindLost::RestorePvcNotBound(pvc) => ExposeError::RestorePvcNotBound(pvc),
            RebindLost::RestorePvMissing(dd) => ExposeError::RestorePvMissing(dd),
        }
    }
}

/// What the target PVC allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// WaitForFirstConsumer and no workload pod scheduled yet.
    WaitingForConsumer,
    /// Go ahead; `selected_node` when the workload's node is known.
    Ready { selected_node: Option<String> },
}

/// Whether a StorageClass delays binding until a consumer exists.
pub fn is_wait_for_first_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// Velero's "wait target PVC consumed" check, one observation at a time.
pub fn check_target(
    target_name: &str,
    target: Option<&PersistentVolumeClaim>,
    class: Option<&StorageClass>,
    ignore_delay_binding: bool,
) -> Result<TargetState, ExposeError> {
    let target = target.ok_or_else(|| ExposeError::TargetNotFound(target_name.to_string()))?;
    if bound_volume(target).is_some() {
        return Err(ExposeError::TargetAlreadyBound(target_name.to_string()));
    }
    let selected_node = target
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SELECTED_NODE_ANNOTATION))
        .filter(|n| !n.is_empty())
        .cloned();
    if ignore_delay_binding {
        // The workload's node is still the best place if it is known already.
        return Ok(TargetState::Ready { selected_node });
    }
    if is_wait_for_first_consumer(class) && selected_node.is_none() {
        return Ok(TargetState::WaitingForConsumer);
    }
    Ok(TargetState::Ready { selected_node })
}

/// Everything of the restore pod that is not the DataDownload's own.
#[derive(Debug, Clone, Default)]
pub struct PodSettings {
    /// ferry's image (the controller's own).
    pub image: String,
    pub service_account: Option<String>,
    /// Log filter given to the data mover (`--log`).
    pub log_filter: Option<String>,
    /// Password secret override (`--password-secret NAME`) for the data mover.
    pub password_secret: Option<String>,
    /// Tolerations for the taints of the node the pod is pinned to ([`tolerations_for`]).
    pub tolerations: Vec<Toleration>,
}

/// Taints Kubernetes sets for a node's condition (not ready, unreachable, pressure,
/// cordoned): never tolerated, a restore must not run on such a node.
const CONDITION_TAINT_PREFIXES: &[&str] =
    &["node.kubernetes.io/", "node.cloudprovider.kubernetes.io/"];

/// Tolerations for `node`'s taints, for a restore pinned to it: the workload using the target
/// PVC was scheduled there, so it tolerates them, and its volume can only be written there.
/// Taints of a node's condition are not tolerated.
pub fn tolerations_for(node: &Node) -> Vec<Toleration> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| {
            !CONDITION_TAINT_PREFIXES
                .iter()
                .any(|p| t.key.starts_with(p))
        })
        .map(|t| Toleration {
            key: Some(t.key.clone()),
            operator: Some(if t.value.is_some() { "Equal" } else { "Exists" }.to_string()),
            value: t.value.clone(),
            effect: Some(t.effect.clone()),
            toleration_seconds: None,
        })
        .collect()
}

/// The value of `node`'s `kubernetes.io/hostname` label, what the restore pod is pinned by
/// (it may differ from the node's name); the name when the label is missing.
pub fn hostname_of(node: &Node) -> String {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HOSTNAME_LABEL).cloned())
        .or_else(|| node.metadata.name.clone())
        .unwrap_or_default()
}

/// Annotations controllers set on a claim to track its binding and provisioning: not copied
/// from the target, they would mislead the PV controller about the restore PVC.
fn is_binding_annotation(key: &str) -> bool {
    key.starts_with("pv.kubernetes.io/")
        || key.starts_with("volume.kubernetes.io/")
        || key.starts_with("volume.beta.kubernetes.io/")
}

/// The owner reference every restore object carries, so deleting the DataDownload removes them.
/// Without `blockOwnerDeletion`, as Velero's: with it, an API server running the
/// OwnerReferencesPermissionEnforcement admission plugin refuses the object unless the
/// creator may update `datadownloads/finalizers`, and nothing here needs the owner's
/// deletion held back until its dependents are gone.
/// (Also used for the backup objects a DataUpload owns.)
pub fn owner_reference<K: kube::Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

fn is_block(target: &PersistentVolumeClaim) -> bool {
    target.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block")
}

/// The restore PVC: the target's access modes, class, volume mode and resources, in ferry's
/// namespace, named after and owned by the DataDownload.
pub fn restore_pvc_for(
    dd: &DataDownload,
    namespace: &str,
    target: &PersistentVolumeClaim,
    node: Option<&str>,
) -> PersistentVolumeClaim {
    let name = dd.metadata.name.clone().unwrap_or_default();
    let spec = target.spec.clone().unwrap_or_default();
    // The target's labels and annotations, as Velero copies them (a provisioner may read
    // parameters from them), but not those tracking the target's own binding.
    let mut annotations: BTreeMap<String, String> = target
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !is_binding_annotation(k))
        .collect();
    if let Some(n) = node {
        annotations.insert(SELECTED_NODE_ANNOTATION.to_string(), n.to_string());
    }
    let mut labels = target.metadata.labels.clone().unwrap_or_default();
    labels.insert(DATA_DOWNLOAD_LABEL.to_string(), name.clone());
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner_reference(dd)]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes,
            storage_class_name: spec.storage_class_name,
            volume_mode: spec.volume_mode,
            resources: spec.resources,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The annotations naming the provisioner asked to make a claim's volume. The PV controller
/// writes them on a claim it leaves to an external provisioner, and writes nothing when they
/// are there already.
pub const STORAGE_PROVISIONER_ANNOTATIONS: [&str; 2] = [
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];

/// The restore PVC with its class's provisioner named, where the PV controller's answer is
/// known beforehand: a WaitForFirstConsumer class with a provisioner and a node selected
/// (such a claim is never bound to an existing volume; the selected node asks for one to be
/// made). It spares the PV controller one claim update per restore, and a real cluster's
/// controller manager makes its writes at 20 a second by default. Classes of in-tree plugins
/// (`kubernetes.io/…`) are left to the PV controller, which may name a CSI driver for them.
pub fn with_provisioner_named(
    pvc: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
) -> PersistentVolumeClaim {
    let mut pvc = pvc.clone();
    let Some(class) = class.filter(|c| is_wait_for_first_consumer(Some(c))) else {
        return pvc;
    };
    let provisioner = class.provisioner.as_str();
    let Some(annotations) = pvc
        .metadata
        .annotations
        .as_mut()
        .filter(|a| a.contains_key(SELECTED_NODE_ANNOTATION))
    else {
        return pvc;
    };
    if provisioner == NO_PROVISIONER || provisioner.starts_with("kubernetes.io/") {
        return pvc;
    }
    for key in STORAGE_PROVISIONER_ANNOTATIONS {
        annotations.insert(key.to_string(), provisioner.to_string());
    }
    pvc
}

fn quantities(pairs: &[(&str, &Option<String>)]) -> Option<BTreeMap<String, Quantity>> {
    let map: BTreeMap<String, Quantity> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), Quantity(v.clone()))))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// A data mover's command line: `args`, then where it writes its result and what the pod
/// settings add (a password secret override, a log filter).
/// The command line of a data mover pod that moves a mounted volume: `ferry data-mover
/// <command> <object_flag> NAME` (restore: `--data-download`, backup: `--data-upload`).
pub(crate) fn volume_data_mover_args(
    command: &str,
    object_flag: &str,
    name: &str,
    namespace: &str,
    volume_path: &str,
    block: bool,
    settings: &PodSettings,
) -> Vec<String> {
    data_mover_args(
        &[
            "data-mover",
            command,
            object_flag,
            name,
            "--namespace",
            namespace,
            "--volume-path",
            volume_path,
            "--volume-mode",
            if block { "Block" } else { "Filesystem" },
        ],
        settings,
    )
}

pub(crate) fn data_mover_args(args: &[&str], settings: &PodSettings) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend([
        "--termination-message-path".to_string(),
        TERMINATION_MESSAGE_PATH.to_string(),
    ]);
    if let Some(secret) = &settings.password_secret {
        all.extend(["--password-secret".to_string(), secret.clone()]);
    }
    if let Some(filter) = &settings.log_filter {
        all.extend(["--log".to_string(), filter.clone()]);
    }
    all
}

/// A data mover pod's labels: the node-agent ConfigMap's, `owner_label` naming the
/// DataDownload or DataUpload it works for, and the app name.
pub(crate) fn data_mover_labels(
    effective: &EffectiveConfig,
    owner_label: &str,
    owner: &str,
) -> BTreeMap<String, String> {
    let mut labels = effective.pod_labels.clone().unwrap_or_default();
    labels.insert(owner_label.to_string(), owner.to_string());
    labels.insert(
        "app.kubernetes.io/name".to_string(),
        "ferry-data-mover".to_string(),
    );
    labels
}

/// What a data mover pod does to files, which decides the privileges it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataMoverAccess {
    /// Restore: writes files of every owner and mode and gives them back their owners and
    /// setuid/setgid modes.
    Restore,
    /// Backup: reads files of every owner and mode.
    Backup,
    /// Forget: touches the repository only, no volume.
    RepositoryOnly,
}

/// The uid and gid of ferry's image (`USER 65532:65532` in the Dockerfile, the controller's).
pub(crate) const IMAGE_USER: i64 = 65532;

/// Capabilities a data mover container keeps (all others are dropped).
///
/// A restore writes into directories and files whatever their modes (DAC_OVERRIDE), gives
/// files back their owners (CHOWN), sets modes, times and xattrs on files it no longer owns
/// (FOWNER), and keeps setgid bits whose group it is not in (FSETID). No MKNOD: a device node
/// in a snapshot is not created (a warning in the pod's log names it; the restore completes),
/// as device files rarely live on a volume. A backup only reads: DAC_OVERRIDE, not the
/// narrower DAC_READ_SEARCH, because Pod Security's `baseline` level allows only the container
/// runtime's default capabilities, and DAC_READ_SEARCH is not one of them. Forget needs none.
pub(crate) fn data_mover_capabilities(access: DataMoverAccess) -> &'static [&'static str] {
    match access {
        DataMoverAccess::Restore => &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"],
        DataMoverAccess::Backup => &["DAC_OVERRIDE"],
        DataMoverAccess::RepositoryOnly => &[],
    }
}

/// A data mover container's security context: every capability dropped but
/// [`data_mover_capabilities`], the RuntimeDefault seccomp profile, a read-only root file
/// system (the data mover writes only to its volume, the repository and the termination
/// message, which the kubelet mounts) and no privilege escalation.
///
/// Restore and backup pods run as uid/gid 0: ferry's image runs as a non-root user (right for
/// the controller), but the files of a volume have every owner and mode, and added
/// capabilities take effect only for uid 0 (Kubernetes sets no ambient capabilities, so a
/// non-root process loses them at exec); a restore also gives files back their owners only
/// when running as root. Velero's data mover pods run as root too. The forget pod touches no
/// files: it runs as the image's user.
pub(crate) fn data_mover_security_context(access: DataMoverAccess) -> SecurityContext {
    let add: Vec<String> = data_mover_capabilities(access)
        .iter()
        .map(|c| c.to_string())
        .collect();
    let uid = match access {
        DataMoverAccess::Restore | DataMoverAccess::Backup => 0,
        DataMoverAccess::RepositoryOnly => IMAGE_USER,
    };
    SecurityContext {
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        run_as_non_root: Some(uid != 0),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: (!add.is_empty()).then_some(add),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// The data mover container's requests and limits (the ConfigMap's `podResources`).
pub(crate) fn data_mover_resources(effective: &EffectiveConfig) -> ResourceRequirements {
    let r = &effective.pod_resources;
    ResourceRequirements {
        requests: quantities(&[
            ("cpu", &r.cpu_request),
            ("memory", &r.memory_request),
            ("ephemeral-storage", &r.ephemeral_storage_request),
        ]),
        limits: quantities(&[
            ("cpu", &r.cpu_limit),
            ("memory", &r.memory_limit),
            ("ephemeral-storage", &r.ephemeral_storage_limit),
        ]),
        ..ResourceRequirements::default()
    }
}

/// The restore pod: mounts the restore PVC (filesystem or block device per the target's
/// volume mode) and runs the data mover on a Linux node, pinned by `kubernetes.io/hostname`
/// to `node` (that label's value, see [`hostname_of`]) when one was chosen.
pub fn restore_pod_for(
    dd: &DataDownload,
    namespace: &str,
    target: &PersistentVolumeClaim,
    node: Option<&str>,
    config: &NodeAgentConfig,
    settings: &PodSettings,
) -> Pod {
    let name = dd.metadata.name.clone().unwrap_or_default();
    let effective = config.effective();
    let block = is_block(target);
    let volume_path = if block {
        BLOCK_DEVICE_PATH
    } else {
        FILESYSTEM_MOUNT_PATH
    };
    let args = volume_data_mover_args(
        "restore",
        "--data-download",
        &name,
        namespace,
        volume_path,
        block,
        settings,
    );
    let resources = data_mover_resources(&effective);
    let labels = data_mover_labels(&effective, DATA_DOWNLOAD_LABEL, &name);
    let container = Container {
        name: DATA_MOVER_CONTAINER.to_string(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Some(args),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        resources: Some(resources),
        // uid 0 with CHOWN, DAC_OVERRIDE, FOWNER and FSETID only, to give restored files their
        // owners and modes back (see data_mover_security_context).
        security_context: Some(data_mover_security_context(DataMoverAccess::Restore)),
        volume_mounts: (!block).then(|| {
            vec![VolumeMount {
                name: VOLUME_NAME.to_string(),
                mount_path: FILESYSTEM_MOUNT_PATH.to_string(),
                ..VolumeMount::default()
            }]
        }),
        volume_devices: block.then(|| {
            vec![VolumeDevice {
                name: VOLUME_NAME.to_string(),
                device_path: BLOCK_DEVICE_PATH.to_string(),
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
            owner_references: Some(vec![owner_reference(dd)]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_string()),
            node_selector: Some(
                [(crate::placement::OS_LABEL, "linux")]
                    .into_iter()
                    .chain(node.map(|n| (HOSTNAME_LABEL, n)))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
            priority_class_name: effective.priority_class_name.clone(),
            service_account_name: settings.service_account.clone(),
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: VOLUME_NAME.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: name,
                    read_only: Some(false),
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// Where expose stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExposeState {
    /// The restore pod exists.
    PodCreated,
    /// The restore PVC (created at `since`) waits for its provisioner; no pod yet.
    WaitingForVolume { since: Option<Time> },
}

/// Where rebind stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebindState {
    /// Waiting for the cluster (the restore pod and PVC to go); the text says for what.
    Waiting(String),
    /// Waiting for the PV controller to bind the target to the PV handed to it. It may have
    /// looked at the claim before it saw the PV, and then nothing ferry watches changes
    /// until its resync: the caller should look again (and touch the target) soon.
    WaitingForBinding(String),
    /// The target PVC is bound to the restored PV and its reclaim policy is back.
    Done { pv: String },
}

/// At most this many rebind steps in one pass (the whole path is six; a cluster that keeps
/// showing a stale object cannot hold a pass for long).
const MAX_REBIND_STEPS_PER_PASS: usize = 8;

/// Creates, inspects, rebinds and removes a restore's objects.
pub struct RestoreExposer<C> {
    pub cluster: C,
    /// ferry's namespace: restore PVCs and pods live here.
    pub namespace: String,
}

impl<C: RestoreCluster> RestoreExposer<C> {
    pub fn new(cluster: C, namespace: impl Into<String>) -> Self {
        Self {
            cluster,
            namespace: namespace.into(),
        }
    }

    /// Creates the restore PVC and, once its volume can be had, the restore pod (those that
    /// do not exist yet). If the pod cannot be created, the PVC is removed again.
    ///
    /// A PVC that a provisioner makes a volume for on its own (an Immediate class, or the
    /// selected-node annotation ferry sets) gets its pod only once it is Bound: a pod
    /// created at once would have the scheduler write the claim in its PreBind (it updates
    /// every claim it leaves to a provisioner) while the PV controller writes it too, and
    /// the loser of that race records a Warning event ("FailedScheduling … the object has
    /// been modified", "ProvisioningFailed: Error saving claim"), as would a pod that the
    /// scheduler sees before its claim ("persistentvolumeclaim not found"). A class without
    /// a provisioner (local volumes bound by the scheduler) needs the pod to bind at all.
    pub async fn expose(
        &self,
        movement: Movement,
        pvc: &PersistentVolumeClaim,
        pod: &Pod,
    ) -> Result<ExposeState, ExposeError> {
        let ns = &self.namespace;
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let existing = self.cluster.get_pvc(ns, &name).await?;
        // The class matters only until the claim is Bound: for naming its provisioner when it
        // is created, and for knowing whether its volume comes without a pod.
        let class = match &existing {
            Some(current) if pvc_phase(current) == "Bound" => None,
            _ => self.class_of(pvc).await?,
        };
        let current = match existing {
            Some(current) => current,
            None => {
                let pvc = with_provisioner_named(pvc, class.as_ref());
                self.cluster
                    .create_pvc(ns, &pvc)
                    .await
                    .map_err(|err| ExposeError::CreatePvc(movement, err))?;
                pvc
            }
        };
        let provisioned_without_pod = class.is_some_and(|c| c.provisioner != NO_PROVISIONER);
        if pvc_phase(&current) != "Bound" && provisioned_without_pod {
            return Ok(ExposeState::WaitingForVolume {
                since: current.metadata.creation_timestamp,
            });
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        if self.cluster.get_pod(ns, &pod_name).await?.is_none()
            && let Err(err) = self.cluster.create_pod(ns, pod).await
        {
            let _ = self.cluster.delete_pvc(ns, &name).await;
            return Err(ExposeError::CreatePod(movement, err));
        }
        Ok(ExposeState::PodCreated)
    }

    /// The PVC's StorageClass, if it names one that exists. A provisioner makes the volume
    /// without a pod when the class names one (not `kubernetes.io/no-provisioner`).
    async fn class_of(
        &self,
        pvc: &PersistentVolumeClaim,
    ) -> Result<Option<StorageClass>, ExposeError> {
        let Some(class_name) = pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .filter(|c| !c.is_empty())
        else {
            return Ok(None);
        };
        Ok(self.cluster.get_storage_class(class_name).await?)
    }

    /// Velero's PeekExposed: a restore pod that failed before the data mover reported is an
    /// error; a missing pod is not (yet).
    pub async fn peek_exposed(&self, name: &str) -> Result<Option<Pod>, ExposeError> {
        let pod = self.cluster.get_pod(&self.namespace, name).await?;
        if let Some((phase, detail)) = pod.as_ref().and_then(pod_abnormal) {
            return Err(ExposeError::PodAbnormal {
                pod: format!("{}/{name}", self.namespace),
                phase,
                detail,
            });
        }
        Ok(pod)
    }

    /// One pass of rebind: look at the cluster, ask [`rebind::next_step`] what follows, do
    /// it, and look again while the step needed no other controller's answer (the next look
    /// reads ferry's own writes): retaining the PV, deleting the restore pod and PVC and
    /// handing the PV to the target follow one another in one pass; waiting for the pod and
    /// claim to go, or for the PV controller to bind the target, ends it.
    pub async fn rebind(
        &self,
        dd_name: &str,
        target_ns: &str,
        target_name: &str,
    ) -> Result<RebindState, ExposeError> {
        let mut deleted = DeletedThisPass::default();
        for _ in 0..MAX_REBIND_STEPS_PER_PASS {
            let view = self
                .observe_rebind(dd_name, target_ns, target_name, deleted)
                .await?;
            let step = rebind::next_step(&view, &self.namespace)?;
            deleted.note(&step);
            if let Some(state) = self.act(step, dd_name, &view.target).await? {
                return Ok(state);
            }
        }
        Ok(RebindState::Waiting(format!(
            "rebind of restore {}/{dd_name} to go on in the next pass",
            self.namespace
        )))
    }

    /// What rebind needs to see, read in the order its steps go.
    async fn observe_rebind(
        &self,
        dd_name: &str,
        target_ns: &str,
        target_name: &str,
        deleted: DeletedThisPass,
    ) -> Result<RebindView, ExposeError> {
        let ns = &self.namespace;
        let target = self
            .cluster
            .get_pvc(target_ns, target_name)
            .await
            .map_err(ExposeError::GetTarget)?
            .ok_or_else(|| {
                ExposeError::GetTarget(OpError::permanent(format!(
                    "PVC {target_ns}/{target_name} not found"
                )))
            })?;
        let mut view = RebindView {
            dd_name: dd_name.to_string(),
            target,
            restore: None,
            marked_pv: None,
            now: jiff::Timestamp::now(),
        };
        if let Some(pvc) = self.cluster.get_pvc(ns, dd_name).await? {
            let pv = match bound_volume(&pvc) {
                Some(pv) => self.cluster.get_pv(&pv).await?,
                None => None,
            };
            let pod = self.cluster.get_pod(ns, dd_name).await?;
            view.restore = Some(RestoreSide {
                pvc,
                pv,
                pod,
                deleted,
            });
        } else {
            view.marked_pv = self
                .cluster
                .list_pvs(DATA_DOWNLOAD_LABEL, dd_name)
                .await?
                .into_iter()
                .next();
        }
        Ok(view)
    }

    /// Does one rebind step; says where rebind stands after it, or None when the pass goes on
    /// to the next step (this one needed no other controller's answer).
    async fn act(
        &self,
        step: RebindStep,
        dd_name: &str,
        target: &PersistentVolumeClaim,
    ) -> Result<Option<RebindState>, ExposeError> {
        let ns = &self.namespace;
        let target_ns = target.metadata.namespace.as_deref().unwrap_or_default();
        let target_name = target.metadata.name.as_deref().unwrap_or_default();
        let target_id = format!("{target_ns}/{target_name}");
        let state = match step {
            RebindStep::RetainPv { pv, patch } => {
                self.cluster
                    .patch_pv(&pv, &patch)
                    .await
                    .map_err(|err| ExposeError::RetainPv {
                        pv: pv.clone(),
                        err,
                    })?;
                return Ok(None);
            }
            RebindStep::DeleteRestorePod => {
                self.cluster.delete_pod(ns, dd_name).await.map_err(|err| {
                    ExposeError::DeletePod {
                        pod: dd_name.to_string(),
                        err,
                    }
                })?;
                return Ok(None);
            }
            RebindStep::DeleteRestorePvc => {
                self.cluster.delete_pvc(ns, dd_name).await.map_err(|err| {
                    ExposeError::DeletePvc {
                        pvc: dd_name.to_string(),
                        err,
                    }
                })?;
                return Ok(None);
            }
            RebindStep::HandToTarget { pv, patch } => {
                self.cluster
                    .patch_pv(&pv, &patch)
                    .await
                    .map_err(|err| ExposeError::RebindPv {
                        pv: pv.clone(),
                        target: target_id.clone(),
                        err,
                    })?;
                return Ok(None);
            }
            RebindStep::Wait {
                why,
                touch_target,
                binding,
            } => {
                // Best effort: without it the resync binds the claim a little later (an
                // RBAC from before this patch was needed, say).
                if let Some(patch) = touch_target
                    && let Err(err) = self.cluster.patch_pvc(target_ns, target_name, &patch).await
                {
                    tracing::warn!(target = %target_id, error = %err, "cannot annotate the target PVC to have it bound at once");
                }
                if binding {
                    RebindState::WaitingForBinding(why)
                } else {
                    RebindState::Waiting(why)
                }
            }
            RebindStep::Finish {
                pv,
                patch,
                untouch_target,
            } => {
                if let Some(untouch) = untouch_target {
                    match self
                        .cluster
                        .patch_pvc(target_ns, target_name, &untouch)
                        .await
                    {
                        Ok(()) => {}
                        Err(err) if err.transient => return Err(ExposeError::Cluster(err)),
                        Err(err) => {
                            tracing::warn!(target = %target_id, error = %err, "cannot remove ferry's annotation from the target PVC");
                        }
                    }
                }
                self.cluster.patch_pv(&pv, &patch).await.map_err(|err| {
                    ExposeError::ResetReclaim {
                        pv: pv.clone(),
                        err,
                    }
                })?;
                RebindState::Done { pv }
            }
            RebindStep::Done { pv } => RebindState::Done { pv },
        };
        Ok(Some(state))
    }

    /// Removes what the restore created: pod, PVC, and a PV rebind had retained but not yet
    /// handed to the target. Returns whether everything is gone.
    pub async fn cleanup(&self, dd_name: &str) -> Result<bool, ExposeError> {
        let ns = &self.namespace;
        self.cluster.delete_pod(ns, dd_name).await?;
        // A restore PV of a StorageClass that retains volumes would outlive its claim
        // (Released, forever): as Velero, it gets Delete before the claim goes.
        if let Some(pvc) = self.cluster.get_pvc(ns, dd_name).await?
            && let Some(pv_name) = bound_volume(&pvc)
            && let Some(pv) = self.cluster.get_pv(&pv_name).await?
            && reclaim_policy(&pv) != "Delete"
            && !has_label(&pv, dd_name)
        {
            self.cluster
                .patch_pv(
                    &pv_name,
                    &json!({ "spec": { "persistentVolumeReclaimPolicy": "Delete" } }),
                )
                .await?;
        }
        self.cluster.delete_pvc(ns, dd_name).await?;
        for pv in self.cluster.list_pvs(DATA_DOWNLOAD_LABEL, dd_name).await? {
            // Handed over once bound to the target from its side (claimRef with the target's
            // uid): the PV controller binds the claim to it whatever happens to the restore,
            // and the data is the workload's. A PV not yet handed over is ours to remove.
            let handed_over = pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some_and(|c| {
                    c.namespace.as_deref() != Some(ns.as_str())
                        && c.uid.as_deref().is_some_and(|u| !u.is_empty())
                });
            if !handed_over {
                let pv_name = pv.metadata.name.clone().unwrap_or_default();
                // Rebind made it Retain: with Delete, removing the PV also removes its
                // volume (a CSI provisioner deletes the storage of a PV deleted with Delete).
                if reclaim_policy(&pv) != "Delete" {
                    self.cluster
                        .patch_pv(
                            &pv_name,
                            &json!({ "spec": { "persistentVolumeReclaimPolicy": "Delete" } }),
                        )
                        .await?;
                }
                self.cluster.delete_pv(&pv_name).await?;
            }
        }
        let pod_gone = self.cluster.get_pod(ns, dd_name).await?.is_none();
        let pvc_gone = self.cluster.get_pvc(ns, dd_name).await?.is_none();
        Ok(pod_gone && pvc_gone)
    }
}

/// Container waiting reasons that do not heal by waiting (an image that cannot be pulled, a
/// data mover that keeps crashing): the restore fails at once with the reason instead of
/// waiting out the expose timeout. (CreateContainerConfigError is left to the expose timeout:
/// a secret or ConfigMap created late fixes it.)
const UNRECOVERABLE_WAITS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
];

/// The first container of `pod` waiting for an unrecoverable reason: (reason, message).
pub fn unrecoverable_wait(pod: &Pod) -> Option<(String, Option<String>)> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| UNRECOVERABLE_WAITS.contains(&r))
        })
        .map(|w| (w.reason.clone().unwrap_or_default(), w.message.clone()))
}

/// A data mover pod that will not get anywhere: failed (with the data mover's error, if it
/// wrote one) or waiting for what waiting will not fix. (phase or reason, ": detail" or "").
pub fn pod_abnormal(pod: &Pod) -> Option<(String, String)> {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Failed" || phase == "Unknown" {
        let detail = termination_message(pod)
            .map(|m| format!(": {}", data_mover_error(&m)))
            .unwrap_or_default();
        return Some((phase, detail));
    }
    unrecoverable_wait(pod).map(|(reason, message)| {
        (
            reason,
            message.map(|m| format!(": {m}")).unwrap_or_default(),
        )
    })
}

#[cfg(test)]
#[path = "expose_tests.rs"]
mod tests;
