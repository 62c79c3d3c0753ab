//! Turning the Rust types into the OpenAPI v3 schemas a CustomResourceDefinition carries.
//!
//! schemars describes the types in JSON Schema 2020-12; Kubernetes wants a *structural*
//! OpenAPI v3 subset. [`structural_schema`] inlines everything and rewrites the few constructs
//! that differ, so the CRD ferry installs is derived from the very types it deserializes into.
//! Fields Velero marks `nullable` say so on the field (`#[schemars(extend("nullable" = true))]`
//! or one of the `*_schema` functions here); plain `Option` fields are just "not required".

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::Value;

/// The structural OpenAPI v3 schema of `T`, with descriptions from its doc comments.
pub fn structural_schema<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let schema = SchemaGenerator::new(settings).into_root_schema_for::<T>();
    let mut value = schema.to_value();
    normalize(&mut value);
    value
}

/// Rewrites schemars' JSON Schema into the structural subset the API server accepts.
/// The walk is generic (it also visits `properties` maps); that is safe for ferry's types
/// because no field is called `$schema` or `title`, and a field called `default` or `type`
/// holds a schema object, never the values rewritten here.
fn normalize(value: &mut Value) {
    let Value::Object(map) = value else { return };
    map.remove("$schema");
    map.remove("title");
    // `Option<T>` becomes `type: [T, "null"]`; absence is already expressed by `required`.
    if let Some(Value::Array(types)) = map.get("type") {
        let non_null: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        if non_null.len() == 1 {
            map.insert("type".into(), non_null[0].clone());
        }
    }
    // ... or `anyOf: [T, {type: null}]` for types that cannot take a type list.
    if let Some(Value::Array(any_of)) = map.get("anyOf") {
        let non_null: Vec<Value> = any_of
            .iter()
            .filter(|s| s.get("type").and_then(Value::as_str) != Some("null"))
            .cloned()
            .collect();
        if non_null.len() == 1
            && let Value::Object(inner) = &non_null[0]
        {
            map.remove("anyOf");
            for (key, field) in inner {
                // The field's own description wins over the type's.
                map.entry(key.clone()).or_insert_with(|| field.clone());
            }
        }
    }
    // `Option<Enum>` adds `null` to the enum list; nullability is said with `nullable` instead.
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    // A `default: null` is what serde's `default` on an Option produces; it says nothing.
    if map.get("default") == Some(&Value::Null) {
        map.remove("default");
    }
    for child in map.values_mut() {
        match child {
            Value::Object(_) => normalize(child),
            Value::Array(items) => items.iter_mut().for_each(normalize),
            _ => {}
        }
    }
}

/// `metav1.Time` as Velero's schemas spell it (Go's omitempty does not drop a zero struct,
/// so it may arrive as `null`).
pub fn nullable_time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time", "nullable": true })
}

/// `[]byte`, base64 in JSON.
pub fn byte_string_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "byte" })
}

/// `corev1.SecretKeySelector` as controller-gen writes it.
pub fn secret_key_selector_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "A key of a Secret in the same namespace.",
        "properties": {
            "key": {
                "type": "string",
                "description": "The key of the secret to select from. Must be a valid secret key."
            },
            "name": {
                "type": "string",
                "default": "",
                "description": "Name of the Secret."
            },
            "optional": {
                "type": "boolean",
                "description": "Whether the Secret or its key may be absent."
            }
        },
        "required": ["key"],
        "x-kubernetes-map-type": "atomic"
    })
}
