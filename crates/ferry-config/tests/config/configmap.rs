//! Velero's ConfigMap rules (exactly one data key holding JSON) and manifest files.

use std::collections::BTreeMap;

use ferry_config::{Strictness, from_configmap_data, load_manifest_or_json};

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn one_key_holding_json_is_read_whatever_the_key() {
    for key in ["node-agent-config.json", "config", "anything"] {
        let loaded = from_configmap_data(
            "node-agent-config",
            &data(&[(key, r#"{"restorePVC": {"ignoreDelayBinding": true}}"#)]),
            Strictness::Strict,
        )
        .unwrap();
        assert!(loaded.config.ignore_delay_binding());
    }
}

#[test]
fn no_data_is_an_error_naming_the_configmap() {
    let err = from_configmap_data("my-cm", &BTreeMap::new(), Strictness::Lenient).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].path, "data");
    assert!(
        err.problems[0]
            .message
            .contains("ConfigMap my-cm has no data"),
        "{err}"
    );
    assert!(err.to_string().contains("my-cm"));
}

#[test]
fn two_keys_is_an_error_naming_the_configmap_and_keys() {
    let err = from_configmap_data(
        "my-cm",
        &data(&[("a.json", "{}"), ("b.json", "{}")]),
        Strictness::Lenient,
    )
    .unwrap_err();
    assert_eq!(err.problems[0].path, "data");
    let message = &err.problems[0].message;
    assert!(message.contains("ConfigMap my-cm has 2 keys"), "{message}");
    assert!(message.contains("a.json, b.json"), "{message}");
}

#[test]
fn invalid_json_is_an_error_naming_the_configmap_and_key() {
    let err = from_configmap_data(
        "my-cm",
        &data(&[("config.json", "{\"loadConcurrency\": ")]),
        Strictness::Lenient,
    )
    .unwrap_err();
    assert_eq!(err.problems[0].path, "data[\"config.json\"]");
    assert!(err.problems[0].message.contains("ConfigMap my-cm"), "{err}");
    assert!(err.problems[0].message.contains("not valid JSON"), "{err}");
}

#[test]
fn config_problems_keep_their_paths_and_name_the_configmap() {
    let err = from_configmap_data(
        "my-cm",
        &data(&[("c", r#"{"loadConcurrency": {"globalConfig": 0}}"#)]),
        Strictness::Strict,
    )
    .unwrap_err();
    assert_eq!(err.problems[0].path, "loadConcurrency.globalConfig");
    assert!(
        err.to_string()
            .starts_with("invalid node-agent configuration in ConfigMap my-cm (data key \"c\")")
    );
}

const YAML_MANIFEST: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: node-agent-config
  namespace: velero
data:
  node-agent-config.json: |
    {
      "loadConcurrency": {"globalConfig": 2},
      "restorePVC": {"ignoreDelayBinding": true}
    }
"#;

#[test]
fn yaml_manifest() {
    let loaded = load_manifest_or_json(YAML_MANIFEST, Strictness::Strict).unwrap();
    assert!(loaded.config.ignore_delay_binding());
    assert_eq!(
        loaded.config.load_concurrency.unwrap().global_config,
        Some(2)
    );
}

#[test]
fn json_manifest() {
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "velero"},
        "data": {"cfg": "{\"loadConcurrency\": {\"prepareQueueLength\": 7}}"}
    })
    .to_string();
    let loaded = load_manifest_or_json(&manifest, Strictness::Strict).unwrap();
    assert_eq!(loaded.config.prepare_queue_length(), Some(7));
}

#[test]
fn bare_json_document() {
    let loaded =
        load_manifest_or_json(r#"  {"privilegedFsBackup": true}"#, Strictness::Strict).unwrap();
    assert!(loaded.config.privileged_fs_backup);
}

#[test]
fn manifest_without_data() {
    let err = load_manifest_or_json(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: empty-cm\n",
        Strictness::Strict,
    )
    .unwrap_err();
    assert_eq!(err.problems[0].path, "data");
    assert!(
        err.problems[0]
            .message
            .contains("ConfigMap empty-cm has no data")
    );
}

#[test]
fn manifest_with_two_keys() {
    let err = load_manifest_or_json(
        "kind: ConfigMap\nmetadata:\n  name: two\ndata:\n  a: '{}'\n  b: '{}'\n",
        Strictness::Strict,
    )
    .unwrap_err();
    assert!(err.problems[0].message.contains("ConfigMap two has 2 keys"));
}

#[test]
fn manifest_problems_keep_config_paths() {
    let manifest = YAML_MANIFEST.replace("\"globalConfig\": 2", "\"globalConfig\": 0");
    let err = load_manifest_or_json(&manifest, Strictness::Strict).unwrap_err();
    assert_eq!(err.problems[0].path, "loadConcurrency.globalConfig");
}

#[test]
fn other_kinds_and_yaml_configs_are_refused() {
    let err = load_manifest_or_json("kind: Secret\nmetadata:\n  name: s\n", Strictness::Strict)
        .unwrap_err();
    assert!(
        err.problems[0].message.contains("found kind Secret"),
        "{err}"
    );
    let err = load_manifest_or_json(
        "restorePVC:\n  ignoreDelayBinding: true\n",
        Strictness::Strict,
    )
    .unwrap_err();
    assert!(err.problems[0].message.contains("must be JSON"), "{err}");
    let err = load_manifest_or_json(r#"{"kind": "Secret"}"#, Strictness::Strict).unwrap_err();
    assert_eq!(err.problems[0].path, "kind");
}

#[test]
fn data_value_that_is_not_a_string() {
    let err = load_manifest_or_json(
        "kind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  cfg:\n    restorePVC: {}\n",
        Strictness::Strict,
    )
    .unwrap_err();
    assert_eq!(err.problems[0].path, "data.cfg");
    assert!(err.problems[0].message.contains("must be strings"));
}
