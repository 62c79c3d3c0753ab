//! Velero's resolution rules: concurrency per node, load affinity per storage class, queue
//! length, delay binding.

use crate::{labels, strict};

const RULES: &str = r#"{"loadConcurrency": {"globalConfig": 2, "perNodeConfig": [
    {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node1"}}, "number": 3},
    {"nodeSelector": {"matchLabels": {"beta.kubernetes.io/instance-type": "Standard_B4ms"}}, "number": 5}]}}"#;

#[test]
fn global_concurrency_applies_to_nodes_no_rule_matches() {
    let c = strict(RULES).config;
    assert_eq!(
        c.concurrency_for_node(&labels(&[("kubernetes.io/hostname", "node9")])),
        2
    );
    assert_eq!(c.concurrency_for_node(&labels(&[])), 2);
}

#[test]
fn a_matching_rule_overrides_global_even_when_larger() {
    let c = strict(RULES).config;
    assert_eq!(
        c.concurrency_for_node(&labels(&[(
            "beta.kubernetes.io/instance-type",
            "Standard_B4ms"
        )])),
        5
    );
    assert_eq!(
        c.concurrency_for_node(&labels(&[("kubernetes.io/hostname", "node1")])),
        3
    );
}

#[test]
fn several_matching_rules_give_the_smallest_number() {
    let c = strict(RULES).config;
    let node1_b4ms = labels(&[
        ("kubernetes.io/hostname", "node1"),
        ("beta.kubernetes.io/instance-type", "Standard_B4ms"),
    ]);
    assert_eq!(c.concurrency_for_node(&node1_b4ms), 3);

    // The order of the rules does not matter.
    let reversed = strict(
        r#"{"loadConcurrency": {"globalConfig": 2, "perNodeConfig": [
        {"nodeSelector": {"matchLabels": {"beta.kubernetes.io/instance-type": "Standard_B4ms"}}, "number": 5},
        {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node1"}}, "number": 3}]}}"#,
    )
    .config;
    assert_eq!(reversed.concurrency_for_node(&node1_b4ms), 3);
}

#[test]
fn smaller_rule_than_global_wins_too() {
    let c = strict(
        r#"{"loadConcurrency": {"globalConfig": 8, "perNodeConfig": [
        {"nodeSelector": {"matchExpressions": [{"key": "critical", "operator": "Exists"}]}, "number": 1}]}}"#,
    )
    .config;
    assert_eq!(c.concurrency_for_node(&labels(&[("critical", "yes")])), 1);
    assert_eq!(c.concurrency_for_node(&labels(&[])), 8);
}

#[test]
fn concurrency_defaults_to_one() {
    assert_eq!(strict("{}").config.concurrency_for_node(&labels(&[])), 1);
    let c = strict(r#"{"loadConcurrency": {"prepareQueueLength": 4}}"#).config;
    assert_eq!(c.concurrency_for_node(&labels(&[("any", "node")])), 1);
    // Rules without a global number: unmatched nodes get 1.
    let c = strict(
        r#"{"loadConcurrency": {"perNodeConfig": [
        {"nodeSelector": {"matchLabels": {"big": "true"}}, "number": 6}]}}"#,
    )
    .config;
    assert_eq!(c.concurrency_for_node(&labels(&[("big", "true")])), 6);
    assert_eq!(c.concurrency_for_node(&labels(&[("big", "false")])), 1);
}

#[test]
fn an_empty_selector_rule_matches_every_node() {
    let c = strict(
        r#"{"loadConcurrency": {"globalConfig": 4, "perNodeConfig": [{"nodeSelector": {}, "number": 2}]}}"#,
    )
    .config;
    assert_eq!(c.concurrency_for_node(&labels(&[("x", "y")])), 2);
}

#[test]
fn prepare_queue_length_defaults_to_no_limit() {
    assert_eq!(strict("{}").config.prepare_queue_length(), None);
    assert_eq!(
        strict(r#"{"loadConcurrency": {"globalConfig": 3}}"#)
            .config
            .prepare_queue_length(),
        None
    );
    assert_eq!(
        strict(r#"{"loadConcurrency": {"prepareQueueLength": 10}}"#)
            .config
            .prepare_queue_length(),
        Some(10)
    );
}

const AFFINITY: &str = r#"{"loadAffinity": [
    {"nodeSelector": {"matchLabels": {"environment": "production"}}, "storageClass": "fast-ssd"},
    {"nodeSelector": {"matchLabels": {"beta.kubernetes.io/instance-type": "Standard_B4ms"}}},
    {"nodeSelector": {"matchLabels": {"environment": "backup"}}, "storageClass": "hdd"}]}"#;

fn env_of(entry: Option<&ferry_config::LoadAffinity>) -> Option<String> {
    entry.map(|e| {
        e.node_selector
            .match_labels
            .values()
            .next()
            .cloned()
            .unwrap_or_default()
    })
}

#[test]
fn load_affinity_prefers_the_entry_for_the_storage_class() {
    let c = strict(AFFINITY).config;
    assert_eq!(
        env_of(c.load_affinity_for_storage_class(Some("fast-ssd"))).as_deref(),
        Some("production")
    );
    assert_eq!(
        env_of(c.load_affinity_for_storage_class(Some("hdd"))).as_deref(),
        Some("backup")
    );
}

#[test]
fn load_affinity_falls_back_to_the_entry_without_storage_class() {
    let c = strict(AFFINITY).config;
    assert_eq!(
        env_of(c.load_affinity_for_storage_class(Some("gp3"))).as_deref(),
        Some("Standard_B4ms")
    );
    assert_eq!(
        env_of(c.load_affinity_for_storage_class(None)).as_deref(),
        Some("Standard_B4ms")
    );
    assert_eq!(
        env_of(c.load_affinity_for_storage_class(Some(""))).as_deref(),
        Some("Standard_B4ms")
    );
}

#[test]
fn load_affinity_without_a_general_entry_leaves_other_classes_unconstrained() {
    let c = strict(
        r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"a": "b"}}, "storageClass": "fast-ssd"}]}"#,
    )
    .config;
    assert!(c.load_affinity_for_storage_class(Some("hdd")).is_none());
    assert!(c.load_affinity_for_storage_class(None).is_none());
    assert!(
        c.load_affinity_for_storage_class(Some("fast-ssd"))
            .is_some()
    );
}

#[test]
fn load_affinity_first_match_wins_in_lenient_mode() {
    // Velero's documented example: two entries for fast-ssd, the first is chosen; and only the
    // first entry without storageClass counts. Strict validation rejects the dead entries;
    // lenient loading keeps Velero's behaviour.
    let json = r#"{"loadAffinity": [
        {"nodeSelector": {"matchLabels": {"environment": "production"}}, "storageClass": "fast-ssd"},
        {"nodeSelector": {"matchLabels": {"environment": "staging"}}, "storageClass": "fast-ssd"},
        {"nodeSelector": {"matchLabels": {"environment": "first-general"}}},
        {"nodeSelector": {"matchLabels": {"environment": "second-general"}}}]}"#;
    let loaded = ferry_config::parse_config_json(json, ferry_config::Strictness::Lenient).unwrap();
    let c = loaded.config;
    assert_eq!(
        env_of(c.load_affinity_for_storage_class(Some("fast-ssd"))).as_deref(),
        Some("production")
    );
    assert_eq!(
        env_of(c.load_affinity_for_storage_class(Some("x"))).as_deref(),
        Some("first-general")
    );
    let paths: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["loadAffinity[1]", "loadAffinity[3]"]);
}

#[test]
fn selected_nodes_follow_the_chosen_selector() {
    let c = strict(
        r#"{"loadAffinity": [{"nodeSelector": {
            "matchLabels": {"node-type": "backup"},
            "matchExpressions": [{"key": "critical-workload", "operator": "DoesNotExist"},
                                 {"key": "zone", "operator": "NotIn", "values": ["z3"]}]}}]}"#,
    )
    .config;
    let sel = &c
        .load_affinity_for_storage_class(None)
        .unwrap()
        .node_selector;
    assert!(sel.matches(&labels(&[("node-type", "backup"), ("zone", "z1")])));
    assert!(sel.matches(&labels(&[("node-type", "backup")])));
    assert!(!sel.matches(&labels(&[("node-type", "backup"), ("zone", "z3")])));
    assert!(!sel.matches(&labels(&[
        ("node-type", "backup"),
        ("critical-workload", "")
    ])));
    assert!(!sel.matches(&labels(&[("node-type", "app")])));
}

#[test]
fn ignore_delay_binding_defaults_to_false() {
    assert!(!strict("{}").config.ignore_delay_binding());
    assert!(
        !strict(r#"{"restorePVC": {}}"#)
            .config
            .ignore_delay_binding()
    );
    assert!(
        strict(r#"{"restorePVC": {"ignoreDelayBinding": true}}"#)
            .config
            .ignore_delay_binding()
    );
}
