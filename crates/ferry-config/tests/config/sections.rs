//! Every section parses into the typed configuration, and every default holds.

use ferry_config::{
    NodeAgentConfig, RESOURCE_CPU, RESOURCE_EPHEMERAL_STORAGE, RESOURCE_MEMORY, SelectorOperator,
};

use crate::{labels, strict};

#[test]
fn empty_document_is_all_defaults() {
    let loaded = strict("{}");
    assert_eq!(loaded.config, NodeAgentConfig::default());
    assert!(loaded.warnings.is_empty());
    let c = &loaded.config;
    assert_eq!(c.concurrency_for_node(&labels(&[])), 1);
    assert_eq!(c.prepare_queue_length(), None);
    assert!(c.load_affinity_for_storage_class(Some("gp3")).is_none());
    assert!(!c.ignore_delay_binding());
    assert!(!c.privileged_fs_backup);
    assert!(c.priority_class_name.is_none());
    assert!(c.cache_pvc.is_none());
    assert!(c.pod_labels.is_none() && c.pod_annotations.is_none());
    assert!(c.backup_pvc.is_empty());
}

#[test]
fn load_concurrency_section() {
    let c = strict(
        r#"{"loadConcurrency": {"globalConfig": 2, "prepareQueueLength": 15, "perNodeConfig": [
            {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node1"}}, "number": 3}]}}"#,
    )
    .config;
    let lc = c.load_concurrency.as_ref().unwrap();
    assert_eq!(lc.global_config, Some(2));
    assert_eq!(lc.prepare_queue_length, Some(15));
    assert_eq!(lc.per_node_config.len(), 1);
    assert_eq!(lc.per_node_config[0].number, 3);
    assert_eq!(
        lc.per_node_config[0].node_selector.match_labels,
        labels(&[("kubernetes.io/hostname", "node1")])
    );
    assert_eq!(c.prepare_queue_length(), Some(15));
}

#[test]
fn load_affinity_section_with_expressions() {
    let c = strict(
        r#"{"loadAffinity": [{"nodeSelector": {
            "matchLabels": {"beta.kubernetes.io/instance-type": "Standard_B4ms"},
            "matchExpressions": [
              {"key": "kubernetes.io/hostname", "values": ["node-1", "node-2", "node-3"], "operator": "In"},
              {"key": "critical-workload", "operator": "DoesNotExist"}]}},
          {"nodeSelector": {"matchLabels": {"environment": "staging"}}, "storageClass": "fast-ssd"}]}"#,
    )
    .config;
    assert_eq!(c.load_affinity.len(), 2);
    let sel = &c.load_affinity[0].node_selector;
    assert_eq!(sel.match_expressions.len(), 2);
    assert_eq!(sel.match_expressions[0].operator, SelectorOperator::In);
    assert_eq!(
        sel.match_expressions[0].values,
        ["node-1", "node-2", "node-3"]
    );
    assert_eq!(
        sel.match_expressions[1].operator,
        SelectorOperator::DoesNotExist
    );
    assert!(sel.match_expressions[1].values.is_empty());
    assert_eq!(c.load_affinity[0].storage_class, None);
    assert_eq!(
        c.load_affinity[1].storage_class.as_deref(),
        Some("fast-ssd")
    );
}

#[test]
fn backup_pvc_section_and_defaults() {
    let c = strict(
        r#"{"backupPVC": {
            "fast-storage": {"storageClass": "backup-optimized-class", "readOnly": true, "spcNoRelabeling": true},
            "slow-storage": {"storageClass": "backup-storage-2"},
            "storage-class-3": {"readOnly": true, "annotations": {"some-csi.provider.io/readOnlyClone": "true"}},
            "plain": {}}}"#,
    )
    .config;
    let fast = c.backup_pvc_for_storage_class("fast-storage").unwrap();
    assert_eq!(
        fast.storage_class.as_deref(),
        Some("backup-optimized-class")
    );
    assert!(fast.read_only && fast.spc_no_relabeling);
    let slow = c.backup_pvc_for_storage_class("slow-storage").unwrap();
    assert!(!slow.read_only && !slow.spc_no_relabeling && slow.annotations.is_empty());
    let third = &c.backup_pvc["storage-class-3"];
    assert_eq!(third.storage_class, None, "default: the source PVC's class");
    assert_eq!(
        third.annotations["some-csi.provider.io/readOnlyClone"],
        "true"
    );
    assert!(c.backup_pvc_for_storage_class("unknown").is_none());
    let effective = c.effective();
    assert_eq!(effective.backup_pvc["plain"].storage_class, None);
    assert!(!effective.backup_pvc["plain"].read_only);
}

#[test]
fn restore_pvc_section() {
    assert!(
        strict(r#"{"restorePVC": {"ignoreDelayBinding": true}}"#)
            .config
            .ignore_delay_binding()
    );
    assert!(
        !strict(r#"{"restorePVC": {"ignoreDelayBinding": false}}"#)
            .config
            .ignore_delay_binding()
    );
    assert!(
        !strict(r#"{"restorePVC": {}}"#)
            .config
            .ignore_delay_binding()
    );
}

#[test]
fn pod_resources_section() {
    let c = strict(
        r#"{"podResources": {"cpuRequest": "1000m", "cpuLimit": "2000m",
            "ephemeralStorageRequest": "5Gi", "ephemeralStorageLimit": "10Gi",
            "memoryRequest": "1Gi", "memoryLimit": "4Gi"}}"#,
    )
    .config;
    let r = c.pod_resources.as_ref().unwrap();
    let requests = r.requests();
    let limits = r.limits();
    assert_eq!(requests[RESOURCE_CPU].millis(), 1000);
    assert_eq!(limits[RESOURCE_CPU].millis(), 2000);
    assert_eq!(requests[RESOURCE_MEMORY].value(), 1 << 30);
    assert_eq!(limits[RESOURCE_MEMORY].value(), 4 << 30);
    assert_eq!(requests[RESOURCE_EPHEMERAL_STORAGE].value(), 5 << 30);
    assert_eq!(limits[RESOURCE_EPHEMERAL_STORAGE].as_str(), "10Gi");
    assert!(!r.is_best_effort());
}

#[test]
fn pod_resources_default_to_best_effort_and_zero_means_unset() {
    let c = strict(r#"{"podResources": {"cpuRequest": "0", "memoryLimit": ""}}"#).config;
    let r = c.pod_resources.as_ref().unwrap();
    assert!(r.is_best_effort());
    let e = c.effective().pod_resources;
    assert_eq!(e.cpu_request, None);
    assert_eq!(e.memory_limit, None);
    // Velero treats a zero limit as "no limit", so a request above it is fine.
    strict(r#"{"podResources": {"cpuRequest": "2", "cpuLimit": "0"}}"#);
}

#[test]
fn priority_class_and_privileged_fs_backup() {
    let c =
        strict(r#"{"priorityClassName": "backup-priority", "privilegedFsBackup": true}"#).config;
    assert_eq!(c.priority_class_name.as_deref(), Some("backup-priority"));
    assert!(c.privileged_fs_backup);
    let c = strict(r#"{"priorityClassName": ""}"#).config;
    assert_eq!(c.priority_class_name, None, "an empty name means none");
}

#[test]
fn cache_pvc_section_and_threshold_default() {
    let c = strict(r#"{"cachePVC": {"residentThresholdInMB": 1024, "storageClass": "sc-wffc"}}"#)
        .config;
    let cache = c.cache_pvc.as_ref().unwrap();
    assert_eq!(cache.storage_class, "sc-wffc");
    assert_eq!(cache.resident_threshold_in_mb, 1024);
    assert_eq!(cache.resident_threshold_bytes(), 1 << 30);
    let c = strict(r#"{"cachePVC": {"storageClass": "sc-1"}}"#).config;
    assert_eq!(
        c.cache_pvc.unwrap().resident_threshold_in_mb,
        0,
        "default: every restore gets one"
    );
}

#[test]
fn pod_labels_and_annotations() {
    let c = strict(
        r#"{"podLabels": {"spectrocloud.com/connection": "proxy", "gnp/k8s-api-access": ""},
            "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role", "prometheus.io/scrape": "true",
                               "note": "free text: any value is fine / here"}}"#,
    )
    .config;
    let l = c.pod_labels.as_ref().unwrap();
    assert_eq!(l["spectrocloud.com/connection"], "proxy");
    assert_eq!(l["gnp/k8s-api-access"], "");
    let a = c.pod_annotations.as_ref().unwrap();
    assert_eq!(a["iam.amazonaws.com/role"], "velero-backup-role");
    assert_eq!(a.len(), 3);
    // Set but empty is different from absent: it replaces the built-in labels with none.
    let c = strict(r#"{"podLabels": {}}"#).config;
    assert_eq!(c.pod_labels, Some(Default::default()));
}

#[test]
fn nulls_mean_absent() {
    let c = strict(
        r#"{"loadConcurrency": null, "restorePVC": {"ignoreDelayBinding": null}, "cachePVC": null,
            "podResources": {"cpuLimit": null}}"#,
    )
    .config;
    assert!(c.load_concurrency.is_none());
    assert!(!c.ignore_delay_binding());
    assert!(c.cache_pvc.is_none());
}

/// Velero's complete example from its node-agent configuration reference, with the documented
/// `cachePVC.thresholdInGB` corrected to the field Velero reads (`residentThresholdInMB`).
pub const VELERO_COMPLETE_EXAMPLE: &str = r#"{
  "loadConcurrency": {
    "globalConfig": 2,
    "prepareQueueLength": 15,
    "perNodeConfig": [
      {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node1"}}, "number": 3}
    ]
  },
  "loadAffinity": [
    {"nodeSelector": {"matchLabels": {"node-type": "backup"},
                      "matchExpressions": [{"key": "critical-workload", "operator": "DoesNotExist"}]}},
    {"nodeSelector": {"matchLabels": {"environment": "staging"}}, "storageClass": "fast-ssd"}
  ],
  "podResources": {"cpuRequest": "500m", "cpuLimit": "1000m", "ephemeralStorageRequest": "5Gi",
                   "ephemeralStorageLimit": "10Gi", "memoryRequest": "1Gi", "memoryLimit": "2Gi"},
  "priorityClassName": "backup-priority",
  "backupPVC": {
    "fast-storage": {"storageClass": "backup-optimized-class", "readOnly": true, "spcNoRelabeling": true},
    "slow-storage": {"storageClass": "backup-storage-2"}
  },
  "restorePVC": {"ignoreDelayBinding": true},
  "privilegedFsBackup": true,
  "cachePVC": {"residentThresholdInMB": 1024, "storageClass": "cache-optimized-storage"},
  "podLabels": {"spectrocloud.com/connection": "proxy", "gnp/k8s-api-access": "", "cp/inject-truststore": "extended"},
  "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role", "vault.hashicorp.com/agent-inject": "true"}
}"#;

#[test]
fn velero_complete_example_loads() {
    let c = strict(VELERO_COMPLETE_EXAMPLE).config;
    assert_eq!(
        c.concurrency_for_node(&labels(&[("kubernetes.io/hostname", "node1")])),
        3
    );
    assert_eq!(
        c.concurrency_for_node(&labels(&[("kubernetes.io/hostname", "node2")])),
        2
    );
    assert_eq!(c.prepare_queue_length(), Some(15));
    assert!(c.ignore_delay_binding());
    assert_eq!(
        c.load_affinity_for_storage_class(Some("fast-ssd"))
            .unwrap()
            .storage_class
            .as_deref(),
        Some("fast-ssd")
    );
    assert_eq!(
        c.load_affinity_for_storage_class(Some("gp3"))
            .unwrap()
            .storage_class,
        None
    );
}

#[test]
fn effective_config_fills_defaults_and_is_itself_valid() {
    let effective = strict("{}").config.effective();
    let json = serde_json::to_value(&effective).unwrap();
    assert_eq!(json["loadConcurrency"]["globalConfig"], 1);
    assert!(json["loadConcurrency"]["prepareQueueLength"].is_null());
    assert_eq!(
        json["loadConcurrency"]["perNodeConfig"],
        serde_json::json!([])
    );
    assert_eq!(json["restorePVC"]["ignoreDelayBinding"], false);
    assert_eq!(json["privilegedFsBackup"], false);
    assert!(json["podResources"]["cpuRequest"].is_null());
    assert!(json["cachePVC"].is_null());
    assert!(json["priorityClassName"].is_null());

    // Round trip: the effective configuration of Velero's example loads to the same thing.
    let c = strict(VELERO_COMPLETE_EXAMPLE).config;
    let text = serde_json::to_string_pretty(&c.effective()).unwrap();
    let again = strict(&text).config;
    assert_eq!(again.effective(), c.effective());
    assert_eq!(again.concurrency_for_node(&labels(&[])), 2);
}
