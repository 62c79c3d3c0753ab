//! Reading the configuration: from a JSON document, from a ConfigMap's `data` (Velero's rule:
//! exactly one key, whose value is the JSON document), or from a file holding either a ConfigMap
//! manifest (YAML or JSON) or the bare JSON document.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::NodeAgentConfig;
use crate::problems::{ConfigErrors, ConfigProblem, Loaded, Strictness, child_path};
use crate::repair::drop_as_velero;
use crate::validate::validate_document;

/// Parses and validates the JSON configuration document.
pub fn parse_config_json(text: &str, strictness: Strictness) -> Result<Loaded, ConfigErrors> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| ConfigErrors::single("$", format!("not valid JSON: {e}")))?;
    from_json_value(doc, strictness)
}

/// Validates an already parsed JSON document.
pub fn from_json_value(mut doc: Value, strictness: Strictness) -> Result<Loaded, ConfigErrors> {
    let mut findings = validate_document(&mut doc, strictness);
    let mut repaired = Vec::new();
    if strictness == Strictness::Lenient {
        // Drop what Velero would ignore, one problem at a time (dropping a list item shifts
        // the paths of the rest), until only problems Velero refuses too are left.
        for _ in 0..256 {
            let Some(fix) = findings
                .errors
                .iter()
                .find_map(|problem| drop_as_velero(&mut doc, problem))
            else {
                break;
            };
            repaired.push(fix);
            findings = validate_document(&mut doc, strictness);
        }
    }
    let (mut errors, warnings) = match strictness {
        Strictness::Strict => {
            let mut all = findings.errors;
            all.extend(findings.doubts);
            (all, Vec::new())
        }
        Strictness::Lenient => {
            let mut warnings = findings.doubts;
            warnings.extend(repaired);
            (findings.errors, warnings)
        }
    };
    if !errors.is_empty() {
        sort_by_position(&mut errors);
        return Err(ConfigErrors::new(errors));
    }
    let config: NodeAgentConfig = serde_json::from_value(doc).map_err(|e| {
        // Validation accepts only what deserialises; reaching this is a bug in ferry.
        ConfigErrors::single(
            "$",
            format!("internal error: validated document did not deserialise: {e}"),
        )
    })?;
    let mut warnings = warnings;
    sort_by_position(&mut warnings);
    Ok(Loaded { config, warnings })
}

/// Problems sorted by path, with list indexes compared as numbers (`[2]` before `[10]`); the
/// sort is stable, so problems at one path keep the order they were found in.
fn sort_by_position(problems: &mut [ConfigProblem]) {
    problems.sort_by_cached_key(|p| path_sort_key(&p.path));
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PathPiece {
    Text(String),
    Number(u64),
}

fn path_sort_key(path: &str) -> Vec<PathPiece> {
    let mut pieces = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            pieces.push(PathPiece::Number(
                rest[..digits].parse().unwrap_or(u64::MAX),
            ));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            pieces.push(PathPiece::Text(rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    pieces
}

/// Reads the configuration from a ConfigMap's `data`, with Velero's rule: exactly one key,
/// whose value is the JSON document. Errors name the ConfigMap.
pub fn from_configmap_data(
    configmap_name: &str,
    data: &BTreeMap<String, String>,
    strictness: Strictness,
) -> Result<Loaded, ConfigErrors> {
    let source = format!("ConfigMap {configmap_name}");
    let mut entries = data.iter();
    let (key, text) = match (entries.next(), data.len()) {
        (None, _) => {
            return Err(ConfigErrors::single(
                "data",
                format!(
                    "ConfigMap {configmap_name} has no data: put the node-agent configuration JSON under exactly one key (kubectl create configmap {configmap_name} --from-file=node-agent-config.json)"
                ),
            )
            .with_source(source));
        }
        (Some(entry), 1) => entry,
        (Some(_), n) => {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            return Err(ConfigErrors::single(
                "data",
                format!(
                    "ConfigMap {configmap_name} has {n} keys in data ({}); it must have exactly one, whose value is the node-agent configuration JSON",
                    keys.join(", ")
                ),
            )
            .with_source(source));
        }
    };
    let source = format!("ConfigMap {configmap_name} (data key {key:?})");
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        ConfigErrors::single(
            child_path("data", key),
            format!(
                "ConfigMap {configmap_name}: the value of data key {key:?} is not valid JSON: {e}"
            ),
        )
        .with_source(source.clone())
    })?;
    from_json_value(doc, strictness).map_err(|e| e.with_source(source))
}

/// Reads a file's text: a ConfigMap manifest (YAML or JSON, e.g. from `kubectl get cm -o yaml`)
/// or the bare JSON configuration document.
pub fn load_manifest_or_json(text: &str, strictness: Strictness) -> Result<Loaded, ConfigErrors> {
    if text.trim_start().starts_with('{') {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| ConfigErrors::single("$", format!("not valid JSON: {e}")))?;
        if is_manifest(&doc) {
            return from_manifest(&doc, strictness);
        }
        return from_json_value(doc, strictness);
    }

    let mut configmaps = Vec::new();
    let mut others = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let yaml =
            <serde_yaml_ng::Value as serde::Deserialize>::deserialize(document).map_err(|e| {
                ConfigErrors::single(
                    "$",
                    format!(
                        "neither a JSON configuration nor a valid YAML ConfigMap manifest: {e}"
                    ),
                )
            })?;
        if yaml.is_null() {
            continue;
        }
        let doc = serde_json::to_value(&yaml).map_err(|e| {
            ConfigErrors::single("$", format!("the YAML cannot be read as a manifest: {e}"))
        })?;
        if doc.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
            configmaps.push(doc);
        } else {
            others.push(doc);
        }
    }
    match configmaps.len() {
        1 => from_manifest(&configmaps[0], strictness),
        0 => {
            let found = others
                .first()
                .and_then(|d| d.get("kind"))
                .and_then(Value::as_str)
                .map(|k| format!("found kind {k}"))
                .unwrap_or_else(|| "found no kind".to_string());
            Err(ConfigErrors::single(
                "$",
                format!(
                    "expected a ConfigMap manifest (YAML or JSON) or a JSON configuration document starting with '{{', {found}; the configuration itself must be JSON, as Velero reads it"
                ),
            ))
        }
        n => Err(ConfigErrors::single(
            "$",
            format!(
                "the file holds {n} ConfigMaps; give one ConfigMap (the node-agent configuration)"
            ),
        )),
    }
}

fn is_manifest(doc: &Value) -> bool {
    doc.get("kind").is_some_and(Value::is_string)
        || doc.get("apiVersion").is_some_and(Value::is_string)
}

fn from_manifest(doc: &Value, strictness: Strictness) -> Result<Loaded, ConfigErrors> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "ConfigMap" {
        return Err(ConfigErrors::single(
            "kind",
            format!("expected a ConfigMap (or a bare JSON configuration), found kind {kind:?}"),
        ));
    }
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let mut data = BTreeMap::new();
    match doc.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            let mut problems = Vec::new();
            for (key, value) in map {
                match value {
                    Value::String(s) => {
                        data.insert(key.clone(), s.clone());
                    }
                    other => problems.push(ConfigProblem::new(
                        child_path("data", key),
                        format!(
                            "ConfigMap {name}: data values must be strings, found {}",
                            match other {
                                Value::Object(_) => "an object (write the JSON as a string, e.g. with a YAML block `|`)".to_string(),
                                v => format!("{v}"),
                            }
                        ),
                    )),
                }
            }
            if !problems.is_empty() {
                return Err(ConfigErrors::new(problems).with_source(format!("ConfigMap {name}")));
            }
        }
        Some(_) => {
            return Err(ConfigErrors::single(
                "data",
                format!("ConfigMap {name}: data must be a map of keys to strings"),
            )
            .with_source(format!("ConfigMap {name}")));
        }
    }
    from_configmap_data(name, &data, strictness)
}
