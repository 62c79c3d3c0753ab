//! Behaviour of the node-agent configuration, section by section.

mod configmap;
mod malformed;
mod resolution;
mod sections;
mod strictness;

use std::collections::BTreeMap;

use ferry_config::{ConfigErrors, Loaded, Strictness, parse_config_json};

pub fn strict(json: &str) -> Loaded {
    parse_config_json(json, Strictness::Strict)
        .unwrap_or_else(|e| panic!("expected {json} to be valid, got:\n{e}"))
}

pub fn strict_errors(json: &str) -> ConfigErrors {
    match parse_config_json(json, Strictness::Strict) {
        Ok(loaded) => panic!("expected {json} to be rejected, got {:?}", loaded.config),
        Err(e) => e,
    }
}

/// Asserts that the document is rejected with a problem at exactly `path` whose message
/// contains `needle`.
pub fn assert_rejected_at(json: &str, path: &str, needle: &str) {
    let errors = strict_errors(json);
    let problem = errors
        .at(path)
        .unwrap_or_else(|| panic!("no problem at {path} for {json}; got:\n{errors}"));
    assert!(
        problem.message.contains(needle),
        "problem at {path} says {:?}, expected it to mention {needle:?}",
        problem.message
    );
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
