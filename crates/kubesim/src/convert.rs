//! The served form of stored objects. All versions of a custom resource share one storage
//! and differ only in apiVersion (no conversion webhooks). events.k8s.io/v1 Events share the
//! storage of core/v1 Events, as in Kubernetes, with their fields renamed both ways, so an
//! event a kube-rs `Recorder` writes shows in `kubectl get events` and vice versa.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;

/// events.k8s.io/v1 field ↔ core/v1 field.
const EVENT_FIELDS: [(&str, &str); 13] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("action", "action"),
    ("reason", "reason"),
    ("type", "type"),
];

fn is_new_event(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.plural == "events"
}

/// The resource whose storage holds `info`'s objects (core/v1 events for events.k8s.io).
pub fn storage_info(info: &ResourceInfo) -> Option<ResourceInfo> {
    is_new_event(info).then(|| ResourceInfo {
        group: String::new(),
        version: "v1".into(),
        plural: "events".into(),
        ..info.clone()
    })
}

fn rename(
    obj: &Value,
    api_version: &str,
    map: impl Iterator<Item = (&'static str, &'static str)>,
) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    out.insert("metadata".into(), obj["metadata"].clone());
    for (from, to) in map {
        if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(series) = out.get_mut("series").and_then(Value::as_object_mut) {
        // core/v1 series carries the same count/lastObservedTime.
        series.remove("state");
    }
    Value::Object(out)
}

/// A body written through `info` in the form the storage keeps.
pub fn to_storage(info: &ResourceInfo, obj: Value) -> Value {
    if !is_new_event(info) || !obj.is_object() {
        return obj;
    }
    rename(&obj, "v1", EVENT_FIELDS.iter().map(|(n, c)| (*n, *c)))
}

/// A stored object as `info` serves it.
pub fn served<'a>(info: &ResourceInfo, obj: &'a Value) -> Cow<'a, Value> {
    if is_new_event(info) {
        return Cow::Owned(rename(
            obj,
            "events.k8s.io/v1",
            EVENT_FIELDS.iter().map(|(n, c)| (*c, *n)),
        ));
    }
    let api_version = info.api_version();
    if obj["apiVersion"] == api_version.as_str() {
        Cow::Borrowed(obj)
    } else {
        let mut o = obj.clone();
        o["apiVersion"] = json!(api_version);
        Cow::Owned(o)
    }
}
