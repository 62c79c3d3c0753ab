//! ferry's CRDs against Velero's (tests/crds_reference/velero/): the same structural schema
//! (every property, type, format, enum, nullable, required list), the same names, scope and
//! `kubectl get` columns, no status subresource on either side; and sample objects that are
//! valid under Velero's schemas go through ferry's types and come back unchanged.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ferry_controller::crds::{
    BackupStorageLocation, DataDownload, DataDownloadPhase, DataUpload, all_crds,
    backup_storage_location_crd, data_download_crd, data_upload_crd,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/crds_reference")
}

fn read_yaml(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn velero_crd(plural: &str) -> Value {
    read_yaml(reference_dir().join(format!("velero/velero.io_{plural}.yaml")))
}

fn sample(name: &str) -> Value {
    read_yaml(reference_dir().join("samples").join(name))
}

fn version(crd: &Value) -> &Value {
    let versions = crd["spec"]["versions"].as_array().expect("spec.versions");
    assert_eq!(versions.len(), 1, "one served version");
    &versions[0]
}

fn root_schema(crd: &Value) -> &Value {
    &version(crd)["schema"]["openAPIV3Schema"]
}

/// The structural facts of a schema node that decide which objects it accepts.
const VALIDATING_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "enum",
    "nullable",
    "default",
    "x-kubernetes-map-type",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
];

/// Walks both schemas and lists every difference that could change what is accepted.
fn compare_schemas(path: &str, velero: &Value, ours: &Value, differences: &mut Vec<String>) {
    for keyword in VALIDATING_KEYWORDS {
        let (v, o) = (velero.get(*keyword), ours.get(*keyword));
        // `nullable: false` is the same as no `nullable`.
        let normal = |x: Option<&Value>| x.filter(|x| **x != Value::Bool(false)).cloned();
        if normal(v) != normal(o) {
            differences.push(format!(
                "{path}: {keyword} is {v:?} in Velero, {o:?} in ferry"
            ));
        }
    }
    let required = |s: &Value| -> BTreeSet<String> {
        s.get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    if required(velero) != required(ours) {
        differences.push(format!(
            "{path}: required is {:?} in Velero, {:?} in ferry",
            required(velero),
            required(ours)
        ));
    }
    let empty = serde_json::Map::new();
    let props = |s: &Value| {
        s.get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
            .clone()
    };
    let (vp, op) = (props(velero), props(ours));
    for name in vp.keys().filter(|k| !op.contains_key(*k)) {
        differences.push(format!(
            "{path}.{name}: in Velero's schema, missing in ferry's"
        ));
    }
    for name in op.keys().filter(|k| !vp.contains_key(*k)) {
        differences.push(format!(
            "{path}.{name}: in ferry's schema, not in Velero's (would be pruned)"
        ));
    }
    for (name, v) in &vp {
        if let Some(o) = op.get(name) {
            compare_schemas(&format!("{path}.{name}"), v, o, differences);
        }
    }
    for child in ["additionalProperties", "items"] {
        match (velero.get(child), ours.get(child)) {
            (Some(v), Some(o)) => compare_schemas(&format!("{path}[{child}]"), v, o, differences),
            (None, None) => {}
            (v, o) => differences.push(format!(
                "{path}: {child} is {v:?} in Velero, {o:?} in ferry"
            )),
        }
    }
}

fn assert_same_schema(plural: &str, ours: &CustomResourceDefinition) {
    let velero = velero_crd(plural);
    let ours = serde_json::to_value(ours).unwrap();
    let mut differences = Vec::new();
    compare_schemas(
        "",
        root_schema(&velero),
        root_schema(&ours),
        &mut differences,
    );
    assert!(
        differences.is_empty(),
        "{plural}: schemas differ:\n{}",
        differences.join("\n")
    );
}

#[test]
fn data_download_schema_matches_velero() {
    assert_same_schema("datadownloads", &data_download_crd());
}

#[test]
fn data_upload_schema_matches_velero() {
    assert_same_schema("datauploads", &data_upload_crd());
}

#[test]
fn backup_storage_location_schema_matches_velero() {
    assert_same_schema("backupstoragelocations", &backup_storage_location_crd());
}

#[test]
fn the_comparison_notices_a_changed_schema() {
    // Guards the guard: a missing property, a type change and a required change are reported.
    let velero = velero_crd("datadownloads");
    let mut ours = serde_json::to_value(data_download_crd()).unwrap();
    let spec = &mut ours["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    spec["properties"].as_object_mut().unwrap().remove("cancel");
    spec["properties"]["snapshotSize"]["type"] = Value::from("string");
    spec["required"].as_array_mut().unwrap().pop();
    let mut differences = Vec::new();
    compare_schemas(
        "",
        root_schema(&velero),
        root_schema(&ours),
        &mut differences,
    );
    assert_eq!(differences.len(), 3, "{differences:#?}");
}

#[test]
fn names_scope_versions_and_subresources_match_velero() {
    for ours in all_crds() {
        let ours = serde_json::to_value(&ours).unwrap();
        let plural = ours["spec"]["names"]["plural"]
            .as_str()
            .unwrap()
            .to_string();
        let velero = velero_crd(&plural);
        assert_eq!(
            ours["metadata"]["name"], velero["metadata"]["name"],
            "{plural}"
        );
        assert_eq!(ours["spec"]["group"], velero["spec"]["group"], "{plural}");
        assert_eq!(ours["spec"]["names"], velero["spec"]["names"], "{plural}");
        assert_eq!(ours["spec"]["scope"], velero["spec"]["scope"], "{plural}");
        let (v, o) = (version(&velero), version(&ours));
        for key in ["name", "served", "storage", "subresources"] {
            assert_eq!(o[key], v[key], "{plural}: versions[0].{key}");
        }
        // No status subresource: status is written through the main resource on both sides.
        assert_eq!(o["subresources"], serde_json::json!({}), "{plural}");
    }
}

#[test]
fn printer_columns_match_velero() {
    for ours in all_crds() {
        let ours = serde_json::to_value(&ours).unwrap();
        let plural = ours["spec"]["names"]["plural"]
            .as_str()
            .unwrap()
            .to_string();
        let velero = velero_crd(&plural);
        let columns = |crd: &Value| -> Vec<Vec<Value>> {
            version(crd)["additionalPrinterColumns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    ["name", "jsonPath", "type", "format", "priority"]
                        .iter()
                        .map(|k| c.get(*k).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect()
        };
        assert_eq!(columns(&ours), columns(&velero), "{plural}");
    }
    // The columns an operator watches during a restore.
    let dd = serde_json::to_value(data_download_crd()).unwrap();
    let paths: Vec<&str> = version(&dd)["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["jsonPath"].as_str().unwrap())
        .collect();
    for wanted in [
        ".status.phase",
        ".status.node",
        ".status.progress.bytesDone",
    ] {
        assert!(paths.contains(&wanted), "missing column {wanted}");
    }
}

#[test]
fn velero_crds_parse_as_custom_resource_definitions() {
    for plural in ["datadownloads", "datauploads", "backupstoragelocations"] {
        let _: CustomResourceDefinition =
            serde_json::from_value(velero_crd(plural)).unwrap_or_else(|e| panic!("{plural}: {e}"));
    }
}

// ---- a small validator for Velero's structural schemas --------------------------------------

/// Validates `value` against a structural schema the way the API server does, except that an
/// unknown field is an error here (the server would silently prune it and lose data).
fn validate(path: &str, schema: &Value, value: &Value, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{path}: null but not nullable"));
        }
        return;
    }
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!("{path}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} not in {allowed:?}"));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && value
            .as_str()
            .is_some_and(|s| s.parse::<k8s_openapi::jiff::Timestamp>().is_err())
    {
        errors.push(format!("{path}: {value} is not an RFC 3339 date-time"));
    }
    let Some(object) = value.as_object() else {
        return;
    };
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                errors.push(format!("{path}.{name}: required"));
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, field) in object {
        let child = format!("{path}.{name}");
        if let Some(field_schema) = properties.and_then(|p| p.get(name)) {
            validate(&child, field_schema, field, errors);
        } else if let Some(additional) = schema.get("additionalProperties") {
            validate(&child, additional, field, errors);
        } else if path.is_empty() || schema.get("x-kubernetes-preserve-unknown-fields").is_none() {
            // `metadata` is `type: object` without properties: the server validates it itself.
            if properties.is_some() {
                errors.push(format!("{child}: unknown field (would be pruned)"));
            }
        }
    }
}

fn velero_errors(plural: &str, object: &Value) -> Vec<String> {
    let velero = velero_crd(plural);
    let mut errors = Vec::new();
    validate("", root_schema(&velero), object, &mut errors);
    errors
}

/// Null fields and absent ones mean the same thing to Go and to ferry.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn assert_round_trip<K>(plural: &str, file: &str) -> K
where
    K: serde::de::DeserializeOwned + serde::Serialize,
{
    let original = sample(file);
    let errors = velero_errors(plural, &original);
    assert!(
        errors.is_empty(),
        "{file} is not valid under Velero's schema: {errors:#?}"
    );
    let typed: K =
        serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        back,
        without_nulls(&original),
        "{file} changed in the round trip"
    );
    let errors = velero_errors(plural, &back);
    assert!(
        errors.is_empty(),
        "{file} as written by ferry is invalid under Velero's schema: {errors:#?}"
    );
    typed
}

#[test]
fn data_download_samples_round_trip_without_loss() {
    let full: DataDownload = assert_round_trip("datadownloads", "datadownload-full.yaml");
    assert_eq!(full.phase(), DataDownloadPhase::InProgress);
    assert!(full.spec.is_for_data_mover("ferry"));
    assert_eq!(
        full.spec.operation_timeout_duration().unwrap(),
        std::time::Duration::from_secs(600)
    );
    assert_eq!(
        full.status
            .as_ref()
            .unwrap()
            .progress
            .as_ref()
            .unwrap()
            .bytes_done,
        Some(536870912)
    );
    let minimal: DataDownload = assert_round_trip("datadownloads", "datadownload-minimal.yaml");
    assert_eq!(minimal.phase(), DataDownloadPhase::New);
    assert!(minimal.status.is_none());
    let zero: DataDownload = assert_round_trip("datadownloads", "datadownload-go-zero-values.yaml");
    let status = zero.status.unwrap();
    assert!(status.start_timestamp.is_none() && status.completion_timestamp.is_some());
}

#[test]
fn data_upload_samples_round_trip_without_loss() {
    let du: DataUpload = assert_round_trip("datauploads", "dataupload-full.yaml");
    assert_eq!(
        du.spec.csi_snapshot.unwrap().volume_snapshot,
        "velero-data-db-0-abcde"
    );
    assert_eq!(du.status.unwrap().incremental_bytes, Some(4096));
}

#[test]
fn backup_storage_location_samples_round_trip_without_loss() {
    let bsl: BackupStorageLocation =
        assert_round_trip("backupstoragelocations", "backupstoragelocation-full.yaml");
    assert_eq!(bsl.spec.object_storage.prefix.as_deref(), Some("cluster-a"));
    assert_eq!(
        bsl.spec.object_storage.ca_cert.as_ref().unwrap().0,
        b"-----BEGIN CERTIFICATE-----\n".to_vec()
    );
    assert_eq!(
        bsl.spec.backup_sync_period_duration().unwrap().unwrap(),
        std::time::Duration::from_secs(60)
    );
    let _: BackupStorageLocation = assert_round_trip(
        "backupstoragelocations",
        "backupstoragelocation-minimal.yaml",
    );
}

#[test]
fn the_validator_rejects_what_velero_rejects() {
    let mut dd = sample("datadownload-minimal.yaml");
    dd["spec"].as_object_mut().unwrap().remove("snapshotID");
    dd["spec"]["snapshotSize"] = Value::from("big");
    dd["spec"]["nodeOS"] = Value::from("plan9");
    dd["spec"]["surprise"] = Value::from(1);
    let errors = velero_errors("datadownloads", &dd);
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[test]
fn a_phase_from_a_newer_velero_is_kept() {
    let mut dd = sample("datadownload-full.yaml");
    dd["status"]["phase"] = Value::from("Paused");
    let typed: DataDownload = serde_json::from_value(dd.clone()).unwrap();
    assert_eq!(typed.phase(), DataDownloadPhase::Unknown("Paused".into()));
    assert_eq!(serde_json::to_value(&typed).unwrap(), dd);
}
