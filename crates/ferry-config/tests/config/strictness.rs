//! Strict (validate) versus lenient (controller) handling of unknown fields and of values
//! Velero tolerates.

use std::collections::BTreeMap;

use ferry_config::{Strictness, parse_config_json};

#[test]
fn lenient_mode_turns_unknown_fields_into_warnings() {
    let json = r#"{"restorePVC": {"ignoreDelayBinding": true, "someFutureOption": 3},
                   "futureSection": {"x": 1}}"#;
    assert!(parse_config_json(json, Strictness::Strict).is_err());
    let loaded = parse_config_json(json, Strictness::Lenient).unwrap();
    assert!(loaded.config.ignore_delay_binding());
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("futureSection: unknown field"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("restorePVC.someFutureOption: unknown field"),
        "{warnings:?}"
    );
}

#[test]
fn lenient_mode_reads_wrong_case_names_like_velero() {
    // Go's JSON decoder matches field names case-insensitively, so Velero honours this.
    let loaded = parse_config_json(
        r#"{"restorePVC": {"IgnoreDelayBinding": true}}"#,
        Strictness::Lenient,
    )
    .unwrap();
    assert!(loaded.config.ignore_delay_binding());
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].path, "restorePVC.IgnoreDelayBinding");
}

#[test]
fn lenient_mode_still_rejects_what_velero_cannot_decode() {
    // A string where a number belongs fails Velero's decoder too.
    let err = parse_config_json(
        r#"{"unknownThing": 1, "loadConcurrency": {"globalConfig": "many"}}"#,
        Strictness::Lenient,
    )
    .unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].path, "loadConcurrency.globalConfig");
}

#[test]
fn lenient_mode_accepts_what_velero_accepts_with_a_warning() {
    let json = r#"{
        "loadConcurrency": {"globalConfig": 0, "prepareQueueLength": -1, "perNodeConfig": [
            {"nodeSelector": {"matchLabels": {"a": "b"}}, "number": 0},
            {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Maybe"}]}, "number": 2},
            {"nodeSelector": {"matchLabels": {"tier": "big"}}, "number": 4}]},
        "podResources": {"cpuRequest": "2", "cpuLimit": "1", "memoryRequest": "1Gi"},
        "cachePVC": {"residentThresholdInMB": 10},
        "restorePVC": {"ignoreDelayBinding": true}
    }"#;
    // ferry config validate (strict) reports every one of them.
    let strict = parse_config_json(json, Strictness::Strict).unwrap_err();
    assert_eq!(strict.problems.len(), 6, "{strict}");
    let loaded = parse_config_json(json, Strictness::Lenient).unwrap();
    let config = &loaded.config;
    // globalConfig 0 means 1; the two broken rules are skipped; no queue limit.
    let small = BTreeMap::from([("a".to_string(), "b".to_string())]);
    let big = BTreeMap::from([("tier".to_string(), "big".to_string())]);
    assert_eq!(config.concurrency_for_node(&small), 1);
    assert_eq!(config.concurrency_for_node(&big), 4);
    assert_eq!(config.prepare_queue_length(), None);
    // The whole podResources section is dropped (Velero), and there is no cache PVC.
    assert!(config.pod_resources.is_none());
    assert!(config.cache_pvc.is_none());
    assert!(config.ignore_delay_binding());
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 6, "{warnings:#?}");
    assert!(
        warnings.iter().all(|w| w.contains("as Velero does")),
        "{warnings:#?}"
    );
}

#[test]
fn strict_mode_has_no_warnings() {
    let loaded = parse_config_json(
        r#"{"restorePVC": {"ignoreDelayBinding": true}}"#,
        Strictness::Strict,
    )
    .unwrap();
    assert!(loaded.warnings.is_empty());
}
