//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! and server-side apply.
//!
//! Simplifications: the real strategic merge patch reads merge keys from each Go type's
//! struct tags; kubesim approximates it with a table of list field names that are merged by
//! key wherever they appear (containers/volumes/env by name, …) and `finalizers` merged as a
//! set. Server-side apply is approximated as a strategic merge of the applied configuration
//! into the live object (creating it when absent), without field ownership: fields dropped
//! from the applied configuration are not removed.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Parses a body of the given type and applies it to `target`.
pub fn apply_patch(target: &Value, patch_type: PatchType, body: &[u8]) -> Result<Value, String> {
    let mut out = target.clone();
    match patch_type {
        PatchType::Merge => {
            let patch: Value =
                serde_json::from_slice(body).map_err(|e| format!("invalid merge patch: {e}"))?;
            json_patch::merge(&mut out, &patch);
        }
        PatchType::Json => {
            let patch: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| format!("invalid JSON patch: {e}"))?;
            json_patch::patch(&mut out, &patch).map_err(|e| format!("JSON patch failed: {e}"))?;
        }
        PatchType::Strategic => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| format!("invalid strategic merge patch: {e}"))?;
            strategic_merge(&mut out, &patch);
        }
        PatchType::Apply => {
            let patch = parse_apply_body(body)?;
            strategic_merge(&mut out, &patch);
        }
    }
    Ok(out)
}

/// An apply body is YAML (JSON is YAML too).
pub fn parse_apply_body(body: &[u8]) -> Result<Value, String> {
    serde_yaml_ng::from_slice::<Value>(body).map_err(|e| format!("invalid apply body: {e}"))
}

/// The merge key of a list field, when that list is merged element by element.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "taints" => "key",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of scalars merged as sets.
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target_map = target.as_object_mut().expect("object");
    for (key, pv) in patch_map {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) =
                (target_map.get_mut(field), pv)
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if pv.is_null() {
            target_map.remove(key);
            continue;
        }
        match (target_map.get_mut(key), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => strategic_merge(tv, pv),
            (Some(Value::Array(tl)), Value::Array(pl)) if merge_key(key).is_some() => {
                merge_keyed_list(tl, pl, merge_key(key).expect("key"));
            }
            (Some(Value::Array(tl)), Value::Array(pl)) if is_set_list(key) => {
                for v in pl {
                    if !tl.contains(v) {
                        tl.push(v.clone());
                    }
                }
            }
            (_, pv) => {
                target_map.insert(key.clone(), strip_directives(pv));
            }
        }
    }
}

fn merge_keyed_list(target: &mut Vec<Value>, patch: &[Value], key: &str) {
    for item in patch {
        let id = &item[key];
        let pos = target.iter().position(|t| !id.is_null() && t[key] == *id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                target.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut target[i], item),
            (None, false) => target.push(strip_directives(item)),
        }
    }
}

/// Removes `$…` directive keys from a value inserted as a whole.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name_and_finalizers_as_set() {
        let mut pod = json!({
            "metadata": {"finalizers": ["a"], "labels": {"x": "1"}},
            "spec": {"containers": [
                {"name": "main", "image": "busybox", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "busybox"}
            ]}
        });
        strategic_merge(
            &mut pod,
            &json!({
                "metadata": {"finalizers": ["b", "a"], "labels": {"x": null, "y": "2"}},
                "spec": {"containers": [
                    {"name": "main", "env": [{"name": "B", "value": "2"}]},
                    {"name": "side", "$patch": "delete"}
                ]}
            }),
        );
        assert_eq!(pod["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(pod["metadata"]["labels"], json!({"y": "2"}));
        let containers = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["image"], "busybox");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
    }

    #[test]
    fn json_patch_and_merge_patch() {
        let obj = json!({"spec": {"a": 1, "b": [1, 2]}});
        let merged = apply_patch(&obj, PatchType::Merge, br#"{"spec":{"a":null,"c":3}}"#).unwrap();
        assert_eq!(merged, json!({"spec": {"b": [1, 2], "c": 3}}));
        let patched = apply_patch(
            &obj,
            PatchType::Json,
            br#"[{"op":"add","path":"/spec/b/-","value":3},{"op":"remove","path":"/spec/a"}]"#,
        )
        .unwrap();
        assert_eq!(patched, json!({"spec": {"b": [1, 2, 3]}}));
        assert!(
            apply_patch(
                &obj,
                PatchType::Json,
                br#"[{"op":"test","path":"/spec/a","value":2}]"#
            )
            .is_err()
        );
    }
}
