//! What the real API server's registry strategies and default admission plugins do to an
//! object on create: reset status where the status is the system's to write, fill in the
//! defaults kube-apiserver fills in (a subset, see below), protect claims and volumes in use
//! (StorageObjectInUseProtection), and derive CRD status.

use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;

/// Resources whose status is reset on create because controllers own it (as the real
/// registry strategies do). Nodes keep theirs: a kubelet registers a node with its status.
fn status_reset_on_create(info: &ResourceInfo) -> bool {
    if !info.has_status() {
        return false;
    }
    !matches!(
        (info.group.as_str(), info.plural.as_str()),
        ("", "nodes") | ("", "namespaces") | ("apiextensions.k8s.io", _)
    )
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v[key].is_object() {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("object")
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key.to_string()).or_insert(value);
}

/// Applies create-time defaults. `default_storage_class` returns the name of the class
/// annotated `storageclass.kubernetes.io/is-default-class=true`, as the DefaultStorageClass
/// admission plugin looks it up.
pub fn on_create(
    info: &ResourceInfo,
    obj: &mut Value,
    default_storage_class: impl FnOnce() -> Option<String>,
) {
    if status_reset_on_create(info) {
        obj.as_object_mut().expect("object").remove("status");
    }
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => {
            let name = obj["metadata"]["name"].clone();
            default(
                obj_mut(&mut obj["metadata"], "labels"),
                "kubernetes.io/metadata.name",
                name,
            );
            default(obj_mut(obj, "spec"), "finalizers", json!(["kubernetes"]));
            obj["status"] = json!({ "phase": "Active" });
        }
        ("", "pods") => default_pod(obj),
        ("", "persistentvolumeclaims") => {
            let spec = obj_mut(obj, "spec");
            default(spec, "volumeMode", json!("Filesystem"));
            // DefaultStorageClass admission: only when the field is absent, not when it is
            // "" (which explicitly asks for no class).
            if !spec.contains_key("storageClassName")
                && let Some(class) = default_storage_class()
            {
                spec.insert("storageClassName".into(), json!(class));
            }
            obj["status"] = json!({ "phase": "Pending" });
            protect(obj, "kubernetes.io/pvc-protection");
        }
        ("", "persistentvolumes") => {
            let spec = obj_mut(obj, "spec");
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            default(spec, "volumeMode", json!("Filesystem"));
            obj["status"] = json!({ "phase": "Pending" });
            protect(obj, "kubernetes.io/pv-protection");
        }
        ("", "secrets") => default(
            obj.as_object_mut().expect("object"),
            "type",
            json!("Opaque"),
        ),
        ("storage.k8s.io", "storageclasses") => {
            let sc = obj.as_object_mut().expect("object");
            default(sc, "reclaimPolicy", json!("Delete"));
            default(sc, "volumeBindingMode", json!("Immediate"));
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => crd_status(obj),
        _ => {}
    }
}

/// The StorageObjectInUseProtection admission plugin: a claim, or a volume, gets the finalizer
/// that keeps it while a pod uses it, or while it is bound (the volume controller removes it).
fn protect(obj: &mut Value, finalizer: &str) {
    let meta = obj_mut(obj, "metadata");
    if !meta.get("finalizers").is_some_and(Value::is_array) {
        meta.insert("finalizers".into(), json!([]));
    }
    let finalizers = meta["finalizers"].as_array_mut().expect("array");
    if !finalizers.iter().any(|f| f == finalizer) {
        finalizers.push(json!(finalizer));
    }
}

/// On update the CRD's status follows its spec (names accepted at once).
pub fn on_update(info: &ResourceInfo, obj: &mut Value) {
    if (info.group.as_str(), info.plural.as_str())
        == ("apiextensions.k8s.io", "customresourcedefinitions")
    {
        crd_status(obj);
    }
}

/// Pod defaults, a subset of what kube-apiserver's defaulting and the ServiceAccount
/// admission plugin set (no token volume is injected).
fn default_pod(pod: &mut Value) {
    let spec = obj_mut(pod, "spec");
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "serviceAccountName", json!("default"));
    let sa = spec["serviceAccountName"].clone();
    default(spec, "serviceAccount", sa);
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "priority", json!(0));
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                let last = image.rsplit('/').next().unwrap_or_default();
                let pull = if !last.contains(':') || last.ends_with(":latest") {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                default(c, "imagePullPolicy", json!(pull));
                default(c, "resources", json!({}));
            }
        }
    }
    let qos = pod_qos_class(&pod["spec"]);
    pod["status"] = json!({ "phase": "Pending", "qosClass": qos });
}

/// BestEffort when no container asks for resources, Guaranteed when every container's
/// requests equal its limits for cpu and memory, Burstable otherwise.
fn pod_qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| spec[*l].as_array())
        .flatten()
        .collect();
    let any = containers.iter().any(|c| {
        let r = &c["resources"];
        r["requests"].as_object().is_some_and(|m| !m.is_empty())
            || r["limits"].as_object().is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let r = &c["resources"];
        ["cpu", "memory"].iter().all(|k| {
            let limit = &r["limits"][*k];
            !limit.is_null() && (r["requests"][*k].is_null() || r["requests"][*k] == *limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Fills a CRD's derived names and its status: names accepted and Established at once
/// (the real apiextensions controller does this within moments of creation).
fn crd_status(crd: &mut Value) {
    if let Some(names) = crd["spec"]["names"].as_object_mut() {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        default(names, "singular", json!(kind.to_lowercase()));
        default(names, "listKind", json!(format!("{kind}List")));
    }
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let now = crate::clock::now_rfc3339();
    let prev_stored = crd["status"]["storedVersions"].as_array().cloned();
    let mut stored = prev_stored.unwrap_or_default();
    for v in storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    // A condition that was True already keeps its transition time: restamping it would
    // make every write a change (a second `ferry install` would report "configured").
    let previous = crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let condition = |type_: &str, reason: &str, message: &str| {
        let since = previous
            .iter()
            .find(|c| c["type"] == type_ && c["status"] == "True")
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now));
        json!({
            "type": type_, "status": "True", "lastTransitionTime": since,
            "reason": reason, "message": message,
        })
    };
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    });
}
