//! Malformed configurations: each is rejected with a problem at the exact JSON path.

use crate::{assert_rejected_at, strict_errors};

#[test]
fn misspelt_field_gets_a_suggestion() {
    let errors = strict_errors(r#"{"restorePVC": {"ignoreDelayBindng": true}}"#);
    assert_eq!(errors.problems.len(), 1);
    assert_eq!(
        errors.problems[0].to_string(),
        "restorePVC.ignoreDelayBindng: unknown field; did you mean ignoreDelayBinding?"
    );
}

#[test]
fn misspelt_section_gets_a_suggestion() {
    assert_rejected_at(
        r#"{"loadConcurency": {}}"#,
        "loadConcurency",
        "did you mean loadConcurrency?",
    );
    assert_rejected_at(
        r#"{"loadConcurrency": {"perNodeConfig": [{"nodeSelector": {"matchLabel": {"a": "b"}}, "number": 1}]}}"#,
        "loadConcurrency.perNodeConfig[0].nodeSelector.matchLabel",
        "did you mean matchLabels?",
    );
}

#[test]
fn wrong_case_is_reported_with_the_right_spelling() {
    assert_rejected_at(
        r#"{"restorePVC": {"IgnoreDelayBinding": true}}"#,
        "restorePVC.IgnoreDelayBinding",
        "did you mean ignoreDelayBinding?",
    );
}

#[test]
fn field_at_the_wrong_level_points_to_its_place() {
    // Velero's own prepare-queue-length page shows it at the top level, where Velero ignores it.
    assert_rejected_at(
        r#"{"prepareQueueLength": 10}"#,
        "prepareQueueLength",
        "loadConcurrency.prepareQueueLength",
    );
    assert_rejected_at(
        r#"{"ignoreDelayBinding": true}"#,
        "ignoreDelayBinding",
        "restorePVC.ignoreDelayBinding",
    );
}

#[test]
fn cache_threshold_in_gb_is_pointed_to_the_mb_field() {
    assert_rejected_at(
        r#"{"cachePVC": {"thresholdInGB": 1, "storageClass": "sc"}}"#,
        "cachePVC.thresholdInGB",
        "residentThresholdInMB",
    );
}

#[test]
fn non_positive_per_node_number() {
    assert_rejected_at(
        r#"{"loadConcurrency": {"perNodeConfig": [
            {"nodeSelector": {"matchLabels": {"a": "b"}}, "number": 2},
            {"nodeSelector": {"matchLabels": {"c": "d"}}, "number": 0}]}}"#,
        "loadConcurrency.perNodeConfig[1].number",
        "must be at least 1",
    );
}

#[test]
fn negative_global_config() {
    assert_rejected_at(
        r#"{"loadConcurrency": {"globalConfig": -1}}"#,
        "loadConcurrency.globalConfig",
        "must be at least 1",
    );
}

#[test]
fn zero_prepare_queue_length() {
    assert_rejected_at(
        r#"{"loadConcurrency": {"prepareQueueLength": 0}}"#,
        "loadConcurrency.prepareQueueLength",
        "leave it out for no limit",
    );
}

#[test]
fn fractional_number() {
    assert_rejected_at(
        r#"{"loadConcurrency": {"globalConfig": 2.5}}"#,
        "loadConcurrency.globalConfig",
        "expected a whole number",
    );
}

#[test]
fn number_as_string() {
    assert_rejected_at(
        r#"{"loadConcurrency": {"globalConfig": "2"}}"#,
        "loadConcurrency.globalConfig",
        "found a string",
    );
}

#[test]
fn missing_rule_number_and_selector() {
    let json = r#"{"loadConcurrency": {"perNodeConfig": [{}]}}"#;
    assert_rejected_at(json, "loadConcurrency.perNodeConfig[0].number", "required");
    assert_rejected_at(
        json,
        "loadConcurrency.perNodeConfig[0].nodeSelector",
        "required",
    );
}

#[test]
fn boolean_as_string() {
    assert_rejected_at(
        r#"{"restorePVC": {"ignoreDelayBinding": "true"}}"#,
        "restorePVC.ignoreDelayBinding",
        "without quotes",
    );
}

#[test]
fn section_of_the_wrong_type() {
    assert_rejected_at(
        r#"{"loadAffinity": {"nodeSelector": {}}}"#,
        "loadAffinity",
        "expected an array",
    );
    assert_rejected_at(
        r#"{"restorePVC": true}"#,
        "restorePVC",
        "expected an object",
    );
    assert_rejected_at(
        r#"{"backupPVC": []}"#,
        "backupPVC",
        "keyed by storage class",
    );
    assert_rejected_at(r#"[]"#, "$", "expected an object");
}

#[test]
fn unknown_selector_operator() {
    assert_rejected_at(
        r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "in", "values": ["a"]}]}}]}"#,
        "loadAffinity[0].nodeSelector.matchExpressions[0].operator",
        "did you mean In?",
    );
}

#[test]
fn in_without_values() {
    assert_rejected_at(
        r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "In"}]}}]}"#,
        "loadAffinity[0].nodeSelector.matchExpressions[0].values",
        "needs at least one value",
    );
    assert_rejected_at(
        r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": []}]}}]}"#,
        "loadAffinity[0].nodeSelector.matchExpressions[0].values",
        "needs at least one value",
    );
}

#[test]
fn exists_with_values() {
    assert_rejected_at(
        r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [
            {"key": "a", "operator": "In", "values": ["x"]},
            {"key": "critical-workload", "operator": "DoesNotExist", "values": ["true"]}]}}]}"#,
        "loadAffinity[0].nodeSelector.matchExpressions[1].values",
        "takes no values",
    );
}

#[test]
fn invalid_label_key_in_match_labels() {
    // The invalid selector from Velero's own tests.
    assert_rejected_at(
        r#"{"loadConcurrency": {"perNodeConfig": [{"nodeSelector": {"matchLabels": {"inva/lid/": "x"}}, "number": 1}]}}"#,
        r#"loadConcurrency.perNodeConfig[0].nodeSelector.matchLabels["inva/lid/"]"#,
        "more than one '/'",
    );
}

#[test]
fn invalid_label_value() {
    assert_rejected_at(
        r#"{"loadConcurrency": {"perNodeConfig": [{"nodeSelector": {"matchLabels": {"host-name": "inva/lid"}}, "number": 1}]}}"#,
        "loadConcurrency.perNodeConfig[0].nodeSelector.matchLabels.host-name",
        "label value",
    );
}

#[test]
fn invalid_expression_key_and_value() {
    let json = r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [
        {"key": "Bad Key", "operator": "In", "values": ["ok", "not ok"]}]}}]}"#;
    assert_rejected_at(
        json,
        "loadAffinity[0].nodeSelector.matchExpressions[0].key",
        "name part",
    );
    assert_rejected_at(
        json,
        "loadAffinity[0].nodeSelector.matchExpressions[0].values[1]",
        "label value",
    );
}

#[test]
fn unparsable_quantity() {
    assert_rejected_at(
        r#"{"podResources": {"cpuRequest": "1 core"}}"#,
        "podResources.cpuRequest",
        "not a Kubernetes quantity",
    );
    assert_rejected_at(
        r#"{"podResources": {"memoryLimit": "4GB"}}"#,
        "podResources.memoryLimit",
        "unknown suffix",
    );
}

#[test]
fn quantity_as_number() {
    assert_rejected_at(
        r#"{"podResources": {"cpuLimit": 2}}"#,
        "podResources.cpuLimit",
        "put it in quotes",
    );
}

#[test]
fn negative_quantity() {
    assert_rejected_at(
        r#"{"podResources": {"memoryRequest": "-1Gi"}}"#,
        "podResources.memoryRequest",
        "negative",
    );
}

#[test]
fn request_above_limit() {
    assert_rejected_at(
        r#"{"podResources": {"memoryRequest": "2Gi", "memoryLimit": "1Gi"}}"#,
        "podResources.memoryRequest",
        "must not exceed its limit",
    );
    assert_rejected_at(
        r#"{"podResources": {"cpuRequest": "1500m", "cpuLimit": "1"}}"#,
        "podResources.cpuRequest",
        "must not exceed its limit",
    );
    assert_rejected_at(
        r#"{"podResources": {"ephemeralStorageRequest": "11Gi", "ephemeralStorageLimit": "10Gi"}}"#,
        "podResources.ephemeralStorageRequest",
        "must not exceed its limit",
    );
}

#[test]
fn annotation_value_not_a_string() {
    // Velero's backupPVC page shows exactly this, which Go cannot decode into map[string]string.
    assert_rejected_at(
        r#"{"backupPVC": {"storage-class-3": {"readOnly": true, "annotations": {"some-csi.provider.io/readOnlyClone": true}}}}"#,
        r#"backupPVC.storage-class-3.annotations["some-csi.provider.io/readOnlyClone"]"#,
        "put it in quotes",
    );
}

#[test]
fn invalid_storage_class_names() {
    assert_rejected_at(
        r#"{"backupPVC": {"Fast_SSD": {"storageClass": "x"}}}"#,
        "backupPVC.Fast_SSD",
        "not a storage class name",
    );
    assert_rejected_at(
        r#"{"backupPVC": {"fast": {"storageClass": "Backup Class"}}}"#,
        "backupPVC.fast.storageClass",
        "not a valid name",
    );
    assert_rejected_at(
        r#"{"loadAffinity": [{"nodeSelector": {}, "storageClass": "UPPER"}]}"#,
        "loadAffinity[0].storageClass",
        "not a valid name",
    );
    assert_rejected_at(
        r#"{"priorityClassName": "Low Priority"}"#,
        "priorityClassName",
        "not a valid name",
    );
}

#[test]
fn spc_no_relabeling_without_read_only() {
    assert_rejected_at(
        r#"{"backupPVC": {"fast": {"spcNoRelabeling": true}}}"#,
        "backupPVC.fast.spcNoRelabeling",
        "no effect without readOnly",
    );
}

#[test]
fn cache_pvc_without_storage_class() {
    assert_rejected_at(
        r#"{"cachePVC": {"residentThresholdInMB": 1024}}"#,
        "cachePVC.storageClass",
        "required",
    );
    assert_rejected_at(
        r#"{"cachePVC": {"storageClass": ""}}"#,
        "cachePVC.storageClass",
        "must not be empty",
    );
    assert_rejected_at(
        r#"{"cachePVC": {"storageClass": "sc", "residentThresholdInMB": -5}}"#,
        "cachePVC.residentThresholdInMB",
        "at least 0",
    );
}

#[test]
fn invalid_pod_labels() {
    assert_rejected_at(
        r#"{"podLabels": {"ok": "has space"}}"#,
        "podLabels.ok",
        "label value",
    );
    assert_rejected_at(
        r#"{"podAnnotations": {"/x": "v"}}"#,
        r#"podAnnotations["/x"]"#,
        "empty prefix",
    );
}

#[test]
fn shadowed_load_affinity_entries() {
    assert_rejected_at(
        r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"environment": "production"}}},
                             {"nodeSelector": {"matchLabels": {"disk-type": "ssd"}}}]}"#,
        "loadAffinity[1]",
        "combine the conditions in one nodeSelector",
    );
}

#[test]
fn not_json_at_all() {
    assert_rejected_at(
        r#"{"loadConcurrency": {"globalConfig": 2,}}"#,
        "$",
        "not valid JSON",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = strict_errors(
        r#"{
          "loadConcurrency": {"globalConfig": 0, "perNodeConfig": [
            {"nodeSelector": {"matchLabels": {"a": "b"}}, "number": 2},
            {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["v"]}]}, "number": -3}]},
          "restorePVC": {"ignoreDelayBindng": true},
          "podResources": {"cpuRequest": "lots", "memoryRequest": "2Gi", "memoryLimit": "1Gi"},
          "privilegedFsBackup": "yes",
          "cachePVC": {}
        }"#,
    );
    let mut paths: Vec<&str> = errors.problems.iter().map(|p| p.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "cachePVC.storageClass",
            "loadConcurrency.globalConfig",
            "loadConcurrency.perNodeConfig[1].nodeSelector.matchExpressions[0].values",
            "loadConcurrency.perNodeConfig[1].number",
            "podResources.cpuRequest",
            "podResources.memoryRequest",
            "privilegedFsBackup",
            "restorePVC.ignoreDelayBindng",
        ]
    );
    // Display lists them one per line.
    let text = errors.to_string();
    assert_eq!(text.lines().count(), 8, "{text}");
    assert!(
        text.contains(
            "restorePVC.ignoreDelayBindng: unknown field; did you mean ignoreDelayBinding?"
        )
    );
}

#[test]
fn a_field_of_several_sections_lists_every_place() {
    assert_rejected_at(
        r#"{"restorePVC": {"storageClass": "x"}}"#,
        "restorePVC.storageClass",
        "loadAffinity[].storageClass, backupPVC.<storage class>.storageClass or cachePVC.storageClass",
    );
}

#[test]
fn problems_come_in_path_order_with_numeric_indexes() {
    let rules: Vec<String> = (0..12)
        .map(|i| {
            let number = if i == 2 || i == 10 { 0 } else { 1 };
            format!(r#"{{"nodeSelector": {{}}, "number": {number}}}"#)
        })
        .collect();
    let json = format!(
        r#"{{"loadConcurrency": {{"perNodeConfig": [{}]}}}}"#,
        rules.join(",")
    );
    let errors = crate::strict_errors(&json);
    let paths: Vec<&str> = errors.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "loadConcurrency.perNodeConfig[2].number",
            "loadConcurrency.perNodeConfig[10].number"
        ]
    );
}
