//! Velero's resolution rules: which concurrency a node gets, which `loadAffinity` entry applies
//! to a storage class, and every default, as library functions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::quantity::parse_quantity;
use crate::types::{
    BackupPvcConfig, CachePvcConfig, LoadAffinity, NodeAgentConfig, PerNodeConcurrency,
    PodResources, RestorePvcConfig,
};

/// Data mover pods per node when neither `globalConfig` nor a `perNodeConfig` rule says
/// otherwise.
pub const DEFAULT_CONCURRENCY: usize = 1;

impl NodeAgentConfig {
    /// How many data mover pods may run at once on a node with these labels.
    ///
    /// Velero's rule: the smallest `number` among the `perNodeConfig` rules whose selector
    /// matches the node, even when it is larger than `globalConfig`; with no matching rule,
    /// `globalConfig`; without that, 1. Non-positive numbers never pass validation, but are
    /// skipped here as Velero skips them.
    pub fn concurrency_for_node(&self, node_labels: &BTreeMap<String, String>) -> usize {
        let Some(lc) = &self.load_concurrency else {
            return DEFAULT_CONCURRENCY;
        };
        let global = lc
            .global_config
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_CONCURRENCY);
        lc.per_node_config
            .iter()
            .filter(|rule| rule.number > 0 && rule.node_selector.matches(node_labels))
            .map(|rule| rule.number)
            .min()
            .unwrap_or(global)
    }

    /// The most DataUploads/DataDownloads that may wait accepted or prepared but not yet
    /// running, across the cluster; `None`: no limit (Velero's default).
    pub fn prepare_queue_length(&self) -> Option<usize> {
        self.load_concurrency
            .as_ref()
            .and_then(|lc| lc.prepare_queue_length)
            .filter(|n| *n > 0)
    }

    /// The `loadAffinity` entry that constrains data mover pods for a volume of this storage
    /// class. Velero's rule: the first entry whose `storageClass` is this class; otherwise the
    /// first entry without `storageClass`; otherwise none (any node).
    pub fn load_affinity_for_storage_class(
        &self,
        storage_class: Option<&str>,
    ) -> Option<&LoadAffinity> {
        let storage_class = storage_class.filter(|s| !s.is_empty());
        if let Some(class) = storage_class
            && let Some(entry) = self
                .load_affinity
                .iter()
                .find(|a| a.storage_class.as_deref() == Some(class))
        {
            return Some(entry);
        }
        self.load_affinity
            .iter()
            .find(|a| a.storage_class.as_deref().is_none_or(str::is_empty))
    }

    /// `restorePVC.ignoreDelayBinding`, default false: wait for `WaitForFirstConsumer`
    /// volumes' workload pods to be scheduled and restore on their node.
    pub fn ignore_delay_binding(&self) -> bool {
        self.restore_pvc
            .as_ref()
            .is_some_and(|r| r.ignore_delay_binding)
    }

    /// The `backupPVC` entry for a source volume of this storage class, if any.
    pub fn backup_pvc_for_storage_class(&self, storage_class: &str) -> Option<&BackupPvcConfig> {
        self.backup_pvc.get(storage_class)
    }

    /// The configuration with every default written out.
    pub fn effective(&self) -> EffectiveConfig {
        let lc = self.load_concurrency.clone().unwrap_or_default();
        let pod_resources = self.pod_resources.clone().unwrap_or_default();
        // "0" and "" mean "not set", as in Velero.
        let set = |v: &Option<String>| {
            v.clone()
                .filter(|t| parse_quantity(t).is_ok_and(|q| !q.is_zero()))
        };
        EffectiveConfig {
            load_concurrency: EffectiveLoadConcurrency {
                global_config: lc
                    .global_config
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_CONCURRENCY),
                per_node_config: lc.per_node_config,
                prepare_queue_length: self.prepare_queue_length(),
            },
            load_affinity: self.load_affinity.clone(),
            backup_pvc: self
                .backup_pvc
                .iter()
                .map(|(class, c)| {
                    (
                        class.clone(),
                        EffectiveBackupPvc {
                            storage_class: c.storage_class.clone(),
                            read_only: c.read_only,
                            spc_no_relabeling: c.spc_no_relabeling,
                            annotations: c.annotations.clone(),
                        },
                    )
                })
                .collect(),
            restore_pvc: self.restore_pvc.clone().unwrap_or_default(),
            pod_resources: EffectivePodResources {
                cpu_request: set(&pod_resources.cpu_request),
                cpu_limit: set(&pod_resources.cpu_limit),
                memory_request: set(&pod_resources.memory_request),
                memory_limit: set(&pod_resources.memory_limit),
                ephemeral_storage_request: set(&pod_resources.ephemeral_storage_request),
                ephemeral_storage_limit: set(&pod_resources.ephemeral_storage_limit),
            },
            priority_class_name: self.priority_class_name.clone().filter(|s| !s.is_empty()),
            privileged_fs_backup: self.privileged_fs_backup,
            cache_pvc: self.cache_pvc.clone(),
            pod_annotations: self.pod_annotations.clone(),
            pod_labels: self.pod_labels.clone(),
        }
    }
}

/// [`NodeAgentConfig`] with defaults filled in. Serialises every field (`null` where a setting
/// has no value: no queue limit, no priority class, no cache PVC, no resources, the built-in
/// pod labels/annotations), and is itself a valid configuration document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveConfig {
    pub load_concurrency: EffectiveLoadConcurrency,
    pub load_affinity: Vec<LoadAffinity>,
    #[serde(rename = "backupPVC")]
    pub backup_pvc: BTreeMap<String, EffectiveBackupPvc>,
    #[serde(rename = "restorePVC")]
    pub restore_pvc: RestorePvcConfig,
    pub pod_resources: EffectivePodResources,
    pub priority_class_name: Option<String>,
    pub privileged_fs_backup: bool,
    #[serde(rename = "cachePVC")]
    pub cache_pvc: Option<CachePvcConfig>,
    pub pod_annotations: Option<BTreeMap<String, String>>,
    pub pod_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveLoadConcurrency {
    pub global_config: usize,
    pub per_node_config: Vec<PerNodeConcurrency>,
    /// `null`: no limit.
    pub prepare_queue_length: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveBackupPvc {
    /// `null`: the source PVC's storage class.
    pub storage_class: Option<String>,
    pub read_only: bool,
    pub spc_no_relabeling: bool,
    pub annotations: BTreeMap<String, String>,
}

/// `null` for a resource that is not set (all `null`: BestEffort pods).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectivePodResources {
    pub cpu_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
    pub ephemeral_storage_request: Option<String>,
    pub ephemeral_storage_limit: Option<String>,
}

impl EffectivePodResources {
    /// The same settings as a [`PodResources`].
    pub fn to_pod_resources(&self) -> PodResources {
        PodResources {
            cpu_request: self.cpu_request.clone(),
            cpu_limit: self.cpu_limit.clone(),
            memory_request: self.memory_request.clone(),
            memory_limit: self.memory_limit.clone(),
            ephemeral_storage_request: self.ephemeral_storage_request.clone(),
            ephemeral_storage_limit: self.ephemeral_storage_limit.clone(),
        }
    }
}
