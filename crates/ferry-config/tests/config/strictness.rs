//! Strict (validate) versus lenient (controller) handling of unknown fields.

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
fn lenient_mode_still_rejects_real_errors() {
    let err = parse_config_json(
        r#"{"unknownThing": 1, "loadConcurrency": {"globalConfig": 0}}"#,
        Strictness::Lenient,
    )
    .unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].path, "loadConcurrency.globalConfig");
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
