//! The node-agent configuration: the JSON document inside the ConfigMap named by
//! `--node-agent-configmap`, with Velero's field names (camelCase, `backupPVC` etc.).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::label_selector::LabelSelector;
use crate::quantity::{Quantity, parse_quantity};

/// The whole document. Every section is optional; an absent section means Velero's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_concurrency: Option<LoadConcurrency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_affinity: Vec<LoadAffinity>,
    /// Keyed by the storage class of the source PVC.
    #[serde(
        default,
        rename = "backupPVC",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub backup_pvc: BTreeMap<String, BackupPvcConfig>,
    #[serde(
        default,
        rename = "restorePVC",
        skip_serializing_if = "Option::is_none"
    )]
    pub restore_pvc: Option<RestorePvcConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_resources: Option<PodResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged_fs_backup: bool,
    #[serde(default, rename = "cachePVC", skip_serializing_if = "Option::is_none")]
    pub cache_pvc: Option<CachePvcConfig>,
    /// When set, replaces the in-tree third-party annotations on data mover pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,
    /// When set, replaces the in-tree third-party labels on data mover pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
}

/// `loadConcurrency`: how many data mover pods may run at once per node, and how many may wait
/// in preparation across the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadConcurrency {
    /// Concurrency for nodes no `perNodeConfig` rule matches (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_config: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_node_config: Vec<PerNodeConcurrency>,
    /// Upper bound on DataUploads/DataDownloads accepted or prepared but not yet running
    /// (default: no bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_queue_length: Option<usize>,
}

/// One `perNodeConfig` rule (Velero calls it `RuledConfigs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PerNodeConcurrency {
    pub node_selector: LabelSelector,
    pub number: usize,
}

/// One `loadAffinity` entry: which nodes may run data mover pods, for one storage class or
/// (without `storageClass`) for all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadAffinity {
    pub node_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// One `backupPVC` entry: how to create the intermediate PVC when backing up a volume of the
/// storage class it is keyed by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupPvcConfig {
    /// Storage class for the backup PVC; absent: the source PVC's storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `ReadOnlyMany` access mode instead of `ReadWriteOnce`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// SELinux type `spc_t` for the pod; only has an effect with `readOnly`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spc_no_relabeling: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `restorePVC`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestorePvcConfig {
    /// Start restores at once on any eligible node instead of waiting for the workload pod of
    /// a `WaitForFirstConsumer` volume to be scheduled.
    #[serde(default)]
    pub ignore_delay_binding: bool,
}

/// `podResources`: requests and limits of data mover pods, as Kubernetes quantity strings.
/// Absent (or `"0"`) means not set; with nothing set the pods are BestEffort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_limit: Option<String>,
}

/// The Kubernetes resource names, as they appear in a container's `resources`.
pub const RESOURCE_CPU: &str = "cpu";
pub const RESOURCE_MEMORY: &str = "memory";
pub const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";

impl PodResources {
    /// Requests that are set and non-zero, keyed by Kubernetes resource name
    /// (`cpu`, `memory`, `ephemeral-storage`). Unparsable values are left out (validation
    /// rejects them before a config gets here).
    pub fn requests(&self) -> BTreeMap<&'static str, Quantity> {
        Self::collect([
            (RESOURCE_CPU, &self.cpu_request),
            (RESOURCE_MEMORY, &self.memory_request),
            (RESOURCE_EPHEMERAL_STORAGE, &self.ephemeral_storage_request),
        ])
    }

    /// Limits that are set and non-zero, keyed like [`PodResources::requests`].
    pub fn limits(&self) -> BTreeMap<&'static str, Quantity> {
        Self::collect([
            (RESOURCE_CPU, &self.cpu_limit),
            (RESOURCE_MEMORY, &self.memory_limit),
            (RESOURCE_EPHEMERAL_STORAGE, &self.ephemeral_storage_limit),
        ])
    }

    /// No request and no limit: BestEffort pods.
    pub fn is_best_effort(&self) -> bool {
        self.requests().is_empty() && self.limits().is_empty()
    }

    fn collect(fields: [(&'static str, &Option<String>); 3]) -> BTreeMap<&'static str, Quantity> {
        fields
            .into_iter()
            .filter_map(|(name, text)| {
                let text = text.as_deref().filter(|t| !t.is_empty())?;
                let quantity = parse_quantity(text).ok()?;
                (!quantity.is_zero()).then_some((name, quantity))
            })
            .collect()
    }
}

/// `cachePVC`: a dedicated volume for the repository cache of restore pods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachePvcConfig {
    /// Storage class that provisions cache PVCs (required).
    pub storage_class: String,
    /// Restores of backups smaller than this many MiB use no cache PVC (default 0: always).
    #[serde(default, rename = "residentThresholdInMB")]
    pub resident_threshold_in_mb: u64,
}

impl CachePvcConfig {
    /// The threshold in bytes (Velero shifts the MB figure by 20 bits: MiB).
    pub fn resident_threshold_bytes(&self) -> u64 {
        self.resident_threshold_in_mb.saturating_mul(1 << 20)
    }
}
