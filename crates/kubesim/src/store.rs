//! The in-memory object store: JSON objects per resource and namespace, a cluster-wide
//! monotonic resourceVersion, a bounded per-resource event history for watch resumption, and
//! the object lifecycle rules (uid, generation, finalizers, deletionTimestamp).
//!
//! One lock guards everything; reads hand out `Arc`s so a list never copies objects while
//! the lock is held, and watch events are broadcast per resource as shared `Arc`s.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock, RwLock, RwLockWriteGuard};

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};

use crate::admission;
use crate::error::ApiError;
use crate::resources::{Registry, ResourceInfo, resources_for_crd, storage_key};

const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";
const NAMESPACE_KEY: &str = "/namespaces";
const STORAGE_CLASS_KEY: &str = "storage.k8s.io/storageclasses";
const BROADCAST_CAPACITY: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object; `object` is its state after the change (for DELETED, its last
/// state with the deletion's resourceVersion).
#[derive(Debug)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub rv: u64,
    pub object: Arc<Value>,
    /// For MODIFIED, the state before, so a filtered watch can turn a change into ADDED or
    /// DELETED when the object starts or stops matching its selectors.
    pub prev: Option<Arc<Value>>,
    /// The event serialized once as a watch line, shared by every watcher that wants the
    /// stored version as plain JSON.
    pub encoded: OnceLock<bytes::Bytes>,
}

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// The garbage collector deletes dependents after the owner is gone.
    #[default]
    Background,
    /// Approximated as Background: the owner does not wait for its dependents.
    Foreground,
    /// Owner references to the deleted owner are removed from its dependents.
    Orphan,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource: everything but status when the resource has a status
    /// subresource.
    Main,
    /// The status subresource: only status.
    Status,
    /// Spec and status together (the API server's own writes, e.g. pods/binding).
    Whole,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// The result of a delete: the object's last state and whether it is gone (false when
/// finalizers keep it with a deletionTimestamp).
pub struct Deleted {
    pub object: Arc<Value>,
    pub gone: bool,
}

/// Where a watch starts.
pub struct WatchStart {
    /// Events to send first (history replay, or synthetic ADDED for the current state).
    pub initial: Vec<Arc<WatchEvent>>,
    pub rx: broadcast::Receiver<Arc<WatchEvent>>,
    /// The store's resourceVersion when the watch started (for the initial bookmark).
    pub rv: u64,
}

/// (namespace, name); namespace is "" for cluster-scoped objects.
type ObjectKey = (String, String);

struct Collection {
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    history: VecDeque<Arc<WatchEvent>>,
    /// The history holds every event of this resource newer than this resourceVersion.
    complete_after: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

impl Collection {
    fn new() -> Self {
        Collection {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            complete_after: 0,
            tx: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }

    fn in_namespace<'a>(
        &'a self,
        ns: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + 'a> {
        match ns {
            None => Box::new(self.objects.iter()),
            Some(ns) => Box::new(
                self.objects
                    .range((
                        Bound::Included((ns.to_string(), String::new())),
                        Bound::Unbounded,
                    ))
                    .take_while(move |((n, _), _)| n == ns),
            ),
        }
    }
}

struct Inner {
    rv: u64,
    collections: HashMap<String, Collection>,
    /// uid → (storage key, namespace, name): owner lookups for garbage collection.
    uids: HashMap<String, (String, String, String)>,
}

impl Inner {
    fn collection(&mut self, key: &str) -> &mut Collection {
        self.collections
            .entry(key.to_string())
            .or_insert_with(Collection::new)
    }

    fn get(&self, key: &str, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.collections
            .get(key)?
            .objects
            .get(&(ns.to_string(), name.to_string()))
    }
}

pub struct Store {
    inner: RwLock<Inner>,
    registry: Registry,
    history_limit: usize,
    /// Woken after any deletion or deletionTimestamp, for the garbage collector and the
    /// namespace controller.
    pub deletions: Notify,
}

pub use crate::clock::now_rfc3339;

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// The 5-character suffix of generateName (Kubernetes avoids vowels and confusable digits).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

fn finalizers(obj: &Value) -> Vec<Value> {
    obj["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Kubernetes object names: lowercase alphanumerics, '-' and '.', at most 253 characters.
/// RBAC names may also contain ':' (system:…); kubesim accepts that everywhere.
/// The API server's own check, so kubesim keeps it rather than use ferry-config's `names`.
fn validate_name(info: &ResourceInfo, name: &str) -> Result<(), ApiError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c);
    let why = if name.len() > 253 {
        Some("must be no more than 253 characters")
    } else if name == "." || name == ".." {
        Some("may not be '.' or '..'")
    } else if !name.chars().all(ok_char) {
        Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
        )
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("must start and end with an alphanumeric character")
    } else {
        None
    };
    match why {
        Some(why) => Err(ApiError::invalid(
            info,
            name,
            "metadata.name",
            &format!("Invalid value: {name:?}: {why}"),
        )),
        None => Ok(()),
    }
}

/// Whether objects of a resource carry metadata.generation. Workloads, pods, CRDs and
/// custom resources do; plain data and most core objects do not.
fn tracks_generation(info: &ResourceInfo) -> bool {
    match info.group.as_str() {
        "" => info.plural == "pods",
        "storage.k8s.io"
        | "coordination.k8s.io"
        | "rbac.authorization.k8s.io"
        | "events.k8s.io" => false,
        _ => true,
    }
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_part(obj: &Value) -> Value {
    match obj {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Store {
            inner: RwLock::new(Inner {
                rv: 0,
                collections: HashMap::new(),
                uids: HashMap::new(),
            }),
            registry: Registry::with_builtins(),
            history_limit: history_limit.max(1),
            deletions: Notify::new(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().expect("store lock poisoned")
    }

    pub fn current_rv(&self) -> u64 {
        self.inner.read().expect("store lock poisoned").rv
    }

    pub fn get(&self, info: &ResourceInfo, ns: &str, name: &str) -> Option<Arc<Value>> {
        let inner = self.inner.read().expect("store lock poisoned");
        inner.get(&info.storage_key(), ns, name).cloned()
    }

    /// Objects of a resource, in one namespace or all, in (namespace, name) order, with the
    /// resourceVersion the list is consistent with.
    pub fn list(&self, info: &ResourceInfo, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.inner.read().expect("store lock poisoned");
        let objects = inner
            .collections
            .get(&info.storage_key())
            .map(|c| c.in_namespace(ns).map(|(_, v)| v.clone()).collect())
            .unwrap_or_default();
        (objects, inner.rv)
    }

    /// Subscribes to a resource's events. With `since`, replays the kept history after that
    /// resourceVersion (410 Expired when it is older than the history); without, starts
    /// with a synthetic ADDED per current object.
    pub fn watch(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        since: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let mut inner = self.write();
        let rv = inner.rv;
        let coll = inner.collection(&info.storage_key());
        let rx = coll.tx.subscribe();
        let initial = match since {
            Some(since) => {
                if since < coll.complete_after {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {since} ({})",
                        coll.complete_after + 1
                    )));
                }
                let start = coll.history.partition_point(|e| e.rv <= since);
                coll.history.range(start..).cloned().collect()
            }
            None => coll
                .in_namespace(ns)
                .map(|(_, o)| {
                    Arc::new(WatchEvent {
                        event_type: EventType::Added,
                        rv: o["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(rv),
                        object: o.clone(),
                        prev: None,
                        encoded: OnceLock::new(),
                    })
                })
                .collect(),
        };
        Ok(WatchStart { initial, rx, rv })
    }

    /// Records and broadcasts an event; for MODIFIED, call it before storing the new state
    /// (the stored one becomes the event's `prev`).
    fn emit(&self, inner: &mut Inner, key: &str, event_type: EventType, object: Arc<Value>) {
        let rv = inner.rv;
        let limit = self.history_limit;
        let coll = inner.collection(key);
        let prev = if event_type == EventType::Modified {
            let k = (
                meta_str(&object, "namespace").to_string(),
                meta_str(&object, "name").to_string(),
            );
            coll.objects.get(&k).cloned()
        } else {
            None
        };
        let event = Arc::new(WatchEvent {
            event_type,
            rv,
            object,
            prev,
            encoded: OnceLock::new(),
        });
        coll.history.push_back(event.clone());
        while coll.history.len() > limit {
            if let Some(old) = coll.history.pop_front() {
                coll.complete_after = old.rv;
            }
        }
        // No receivers is fine: nobody watches this resource.
        let _ = coll.tx.send(event);
    }

    fn default_storage_class(inner: &Inner) -> Option<String> {
        let coll = inner.collections.get(STORAGE_CLASS_KEY)?;
        coll.objects
            .values()
            .find(|sc| {
                sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
                    .as_str()
                    == Some("true")
            })
            .map(|sc| meta_str(sc, "name").to_string())
    }

    /// Creates an object; `ns` is the namespace of the request path.
    pub fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(kind) = obj["kind"].as_str()
            && kind != info.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({kind}) does not match the resource {} ({})",
                info.qualified_name(),
                info.kind
            )));
        }
        obj["apiVersion"] = json!(info.api_version());
        obj["kind"] = json!(info.kind);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let meta = obj["metadata"].as_object_mut().expect("object");
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    name = format!("{prefix}{}", random_suffix());
                }
                _ => {
                    return Err(ApiError::invalid(
                        info,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            }
        }
        meta.insert("name".into(), json!(name));
        let namespace = if info.namespaced {
            let body_ns = meta.get("namespace").and_then(Value::as_str);
            let ns = match (ns, body_ns) {
                (Some(p), Some(b)) if !b.is_empty() && p != b => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                (Some(p), _) => p.to_string(),
                (None, Some(b)) if !b.is_empty() => b.to_string(),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{} {name:?}: a namespace is required for a namespaced resource",
                        info.kind
                    )));
                }
            };
            meta.insert("namespace".into(), json!(ns));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        for field in [
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(field);
        }
        validate_name(info, &name)?;
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if tracks_generation(info) {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }

        let key = info.storage_key();
        let mut inner = self.write();
        if info.namespaced {
            match inner.get(NAMESPACE_KEY, "", &namespace) {
                None => return Err(ApiError::namespace_not_found(&namespace)),
                Some(ns_obj) if !ns_obj["metadata"]["deletionTimestamp"].is_null() => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                        info.qualified_name()
                    )));
                }
                Some(_) => {}
            }
        }
        if inner.get(&key, &namespace, &name).is_some() {
            return Err(ApiError::already_exists(info, &name));
        }
        admission::on_create(info, &mut obj, || Self::default_storage_class(&inner));
        if key == CRD_KEY {
            self.check_crd(&inner, info, &obj, &name)?;
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        inner.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        let obj = Arc::new(obj);
        let uid = meta_str(&obj, "uid").to_string();
        inner
            .uids
            .insert(uid, (key.clone(), namespace.clone(), name.clone()));
        inner
            .collection(&key)
            .objects
            .insert((namespace, name), obj.clone());
        self.emit(&mut inner, &key, EventType::Added, obj.clone());
        if key == CRD_KEY {
            self.registry
                .set_custom(meta_str(&obj, "name"), resources_for_crd(&obj));
        }
        Ok(obj)
    }

    /// A CRD's name must be `<plural>.<group>`, and its group/plural must be free.
    fn check_crd(
        &self,
        inner: &Inner,
        info: &ResourceInfo,
        crd: &Value,
        name: &str,
    ) -> Result<(), ApiError> {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        if group.is_empty() || plural.is_empty() || crd["spec"]["names"]["kind"].as_str().is_none()
        {
            return Err(ApiError::invalid(
                info,
                name,
                "spec",
                "Required value: spec.group, spec.names.plural and spec.names.kind are required",
            ));
        }
        if name != format!("{plural}.{group}") {
            return Err(ApiError::invalid(
                info,
                name,
                "metadata.name",
                &format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
            ));
        }
        let taken = inner.collections.get(CRD_KEY).is_some_and(|c| {
            c.objects.values().any(|o| {
                meta_str(o, "name") != name
                    && o["spec"]["group"] == crd["spec"]["group"]
                    && o["spec"]["names"]["plural"] == crd["spec"]["names"]["plural"]
            })
        });
        if taken {
            return Err(ApiError::conflict(
                info,
                name,
                "the names are already in use",
            ));
        }
        Ok(())
    }

    /// PUT of the whole object (`scope` says which part may change).
    pub fn update(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        new: Value,
        scope: Scope,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.write();
        let old = inner
            .get(&info.storage_key(), ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        self.update_locked(&mut inner, info, &old, new, scope, dry_run)
    }

    /// Applies `patch` to the current object under the lock (so concurrent patches never
    /// conflict unless the patch itself carries a resourceVersion). `create` makes the
    /// object from the patch applied to an empty object when it does not exist (apply).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        patch: impl FnOnce(&Value) -> Result<Value, ApiError>,
        scope: Scope,
        create: bool,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.write();
        let Some(old) = inner.get(&info.storage_key(), ns, name).cloned() else {
            if !create {
                return Err(ApiError::not_found(info, name));
            }
            drop(inner);
            let mut base = json!({ "metadata": { "name": name } });
            if info.namespaced {
                base["metadata"]["namespace"] = json!(ns);
            }
            let obj = patch(&base)?;
            return self.create(info, Some(ns).filter(|n| !n.is_empty()), obj, dry_run);
        };
        let new = patch(&old)?;
        self.update_locked(&mut inner, info, &old, new, scope, dry_run)
    }

    fn update_locked(
        &self,
        inner: &mut Inner,
        info: &ResourceInfo,
        old: &Arc<Value>,
        mut new: Value,
        scope: Scope,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let name = meta_str(old, "name").to_string();
        let ns = meta_str(old, "namespace").to_string();
        if !new.is_object() || (!new["metadata"].is_object() && !new["metadata"].is_null()) {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let new_name = meta_str(&new, "name");
        if !new_name.is_empty() && new_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({new_name}) does not match the name on the URL ({name})"
            )));
        }
        let new_ns = meta_str(&new, "namespace");
        if info.namespaced && !new_ns.is_empty() && new_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old_rv = meta_str(old, "resourceVersion").to_string();
        let new_rv = meta_str(&new, "resourceVersion");
        if !new_rv.is_empty() && new_rv != old_rv {
            return Err(ApiError::stale(info, &name));
        }
        let new_uid = meta_str(&new, "uid");
        if !new_uid.is_empty() && new_uid != meta_str(old, "uid") {
            return Err(ApiError::conflict(
                info,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {new_uid}, UID in object meta: {}",
                    meta_str(old, "uid")
                ),
            ));
        }

        let mut result = if scope == Scope::Status {
            // The status subresource changes only status.
            let mut r = (**old).clone();
            r["status"] = new["status"].take();
            if r["status"].is_null() {
                r.as_object_mut().expect("object").remove("status");
            }
            r
        } else {
            if info.has_status() && scope == Scope::Main {
                // The main resource ignores status when a status subresource exists.
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().expect("object").remove("status");
                    }
                }
            }
            new["apiVersion"] = json!(info.api_version());
            new["kind"] = json!(info.kind);
            if !new["metadata"].is_object() {
                new["metadata"] = json!({});
            }
            let meta = new["metadata"].as_object_mut().expect("object");
            meta.insert("name".into(), json!(name));
            if info.namespaced {
                meta.insert("namespace".into(), json!(ns));
            }
            meta.remove("managedFields");
            meta.remove("selfLink");
            // System-owned metadata cannot be changed by a client.
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old["metadata"].get(field) {
                    Some(v) => {
                        meta.insert(field.into(), v.clone());
                    }
                    None => {
                        meta.remove(field);
                    }
                }
            }
            new
        };
        if !old["metadata"]["deletionTimestamp"].is_null() {
            let before = finalizers(old);
            if finalizers(&result).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    info,
                    &name,
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        admission::on_update(info, &mut result);
        if info.storage_key() == CRD_KEY {
            self.check_crd(inner, info, &result, &name)?;
        }
        if tracks_generation(info) && spec_part(&result) != spec_part(old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            result["metadata"]["generation"] = json!(generation);
        }
        result["metadata"]["resourceVersion"] = json!(old_rv);
        if result == **old {
            // A no-op update changes nothing, not even the resourceVersion.
            return Ok(old.clone());
        }
        if dry_run {
            return Ok(Arc::new(result));
        }
        let key = info.storage_key();
        let finished = !result["metadata"]["deletionTimestamp"].is_null()
            && finalizers(&result).is_empty()
            && !(key == NAMESPACE_KEY && has_namespace_finalizers(&result));
        inner.rv += 1;
        result["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        let result = Arc::new(result);
        if finished {
            self.remove_locked(inner, &key, &ns, &name, Some(result.clone()));
            return Ok(result);
        }
        self.emit(inner, &key, EventType::Modified, result.clone());
        inner
            .collection(&key)
            .objects
            .insert((ns, name), result.clone());
        if key == CRD_KEY {
            self.registry
                .set_custom(meta_str(&result, "name"), resources_for_crd(&result));
        }
        Ok(result)
    }

    /// Removes an object for good: the DELETED event carries `last` (or the stored object)
    /// with a new resourceVersion. Deleting a CRD deletes its custom resources.
    fn remove_locked(
        &self,
        inner: &mut Inner,
        key: &str,
        ns: &str,
        name: &str,
        last: Option<Arc<Value>>,
    ) -> Option<Arc<Value>> {
        let stored = inner
            .collection(key)
            .objects
            .remove(&(ns.to_string(), name.to_string()))?;
        let mut last = last
            .map(|l| (*l).clone())
            .unwrap_or_else(|| (*stored).clone());
        inner.rv += 1;
        last["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        inner.uids.remove(meta_str(&last, "uid"));
        let last = Arc::new(last);
        self.emit(inner, key, EventType::Deleted, last.clone());
        if key == CRD_KEY {
            let group = last["spec"]["group"].as_str().unwrap_or_default();
            let plural = last["spec"]["names"]["plural"].as_str().unwrap_or_default();
            let cr_key = storage_key(group, plural);
            let names: Vec<(String, String)> = inner
                .collections
                .get(&cr_key)
                .map(|c| c.objects.keys().cloned().collect())
                .unwrap_or_default();
            for (ns, name) in names {
                self.remove_locked(inner, &cr_key, &ns, &name, None);
            }
            self.registry.set_custom(name, Vec::new());
        }
        self.deletions.notify_one();
        Some(last)
    }

    pub fn delete(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let mut inner = self.write();
        self.delete_locked(&mut inner, info, &info.storage_key(), ns, name, opts)
    }

    fn delete_locked(
        &self,
        inner: &mut Inner,
        info: &ResourceInfo,
        key: &str,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let obj = inner
            .get(key, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        let uid = meta_str(&obj, "uid").to_string();
        if let Some(want) = &opts.precondition_uid
            && *want != uid
        {
            return Err(ApiError::conflict(
                info,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        if let Some(want) = &opts.precondition_rv
            && want != meta_str(&obj, "resourceVersion")
        {
            return Err(ApiError::conflict(
                info,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                    meta_str(&obj, "resourceVersion")
                ),
            ));
        }
        if opts.dry_run {
            return Ok(Deleted {
                object: obj,
                gone: false,
            });
        }
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(inner, &uid);
        }
        let keep = !finalizers(&obj).is_empty()
            || (key == NAMESPACE_KEY && has_namespace_finalizers(&obj));
        if keep {
            if !obj["metadata"]["deletionTimestamp"].is_null() {
                return Ok(Deleted {
                    object: obj,
                    gone: false,
                });
            }
            let mut marked = (*obj).clone();
            marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if key == NAMESPACE_KEY {
                marked["status"]["phase"] = json!("Terminating");
            }
            inner.rv += 1;
            marked["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            let marked = Arc::new(marked);
            self.emit(inner, key, EventType::Modified, marked.clone());
            inner
                .collection(key)
                .objects
                .insert((ns.to_string(), name.to_string()), marked.clone());
            self.deletions.notify_one();
            return Ok(Deleted {
                object: marked,
                gone: false,
            });
        }
        let last = self
            .remove_locked(inner, key, ns, name, None)
            .expect("object present");
        Ok(Deleted {
            object: last,
            gone: true,
        })
    }

    /// Orphan propagation: dependents lose their owner reference to `uid`.
    fn orphan_dependents(&self, inner: &mut Inner, uid: &str) {
        let mut changes = Vec::new();
        for (key, coll) in &inner.collections {
            for (k, obj) in &coll.objects {
                let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
                    continue;
                };
                if refs.iter().any(|r| r["uid"] == uid) {
                    let mut o = (**obj).clone();
                    let kept: Vec<Value> =
                        refs.iter().filter(|r| r["uid"] != uid).cloned().collect();
                    if kept.is_empty() {
                        o["metadata"]
                            .as_object_mut()
                            .expect("meta")
                            .remove("ownerReferences");
                    } else {
                        o["metadata"]["ownerReferences"] = json!(kept);
                    }
                    changes.push((key.clone(), k.clone(), o));
                }
            }
        }
        for (key, k, mut o) in changes {
            inner.rv += 1;
            o["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            let o = Arc::new(o);
            self.emit(inner, &key, EventType::Modified, o.clone());
            inner.collection(&key).objects.insert(k, o);
        }
    }

    /// One pass of the garbage collector: deletes (in the background way) every object whose
    /// owner references all point at objects that no longer exist, and drops the dangling
    /// references of objects that still have a live owner (as the real collector does).
    /// Returns how many objects it changed, deleted or marked for deletion.
    pub fn collect_garbage(&self) -> usize {
        let mut inner = self.write();
        let mut doomed = Vec::new();
        let mut trimmed = Vec::new();
        for (key, coll) in &inner.collections {
            for ((ns, name), obj) in &coll.objects {
                let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
                    continue;
                };
                if refs.is_empty() || !obj["metadata"]["deletionTimestamp"].is_null() {
                    continue;
                }
                let live: Vec<&Value> = refs
                    .iter()
                    .filter(|r| {
                        inner
                            .uids
                            .contains_key(r["uid"].as_str().unwrap_or_default())
                    })
                    .collect();
                if live.is_empty() {
                    doomed.push((key.clone(), ns.clone(), name.clone()));
                } else if live.len() < refs.len() {
                    let mut o = (**obj).clone();
                    o["metadata"]["ownerReferences"] = json!(live);
                    trimmed.push((key.clone(), (ns.clone(), name.clone()), o));
                }
            }
        }
        let count = doomed.len() + trimmed.len();
        for (key, k, mut o) in trimmed {
            inner.rv += 1;
            o["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            let o = Arc::new(o);
            self.emit(&mut inner, &key, EventType::Modified, o.clone());
            inner.collection(&key).objects.insert(k, o);
        }
        for (key, ns, name) in doomed {
            let info = self.info_for_key(&key);
            let _ = self.delete_locked(
                &mut inner,
                &info,
                &key,
                &ns,
                &name,
                &DeleteOptions::default(),
            );
        }
        count
    }

    /// One pass of the namespace controller: for each terminating namespace, deletes its
    /// objects (finalizers still hold) and removes the namespace once it is empty.
    /// Simplification: all in one step, no NamespaceContentRemaining conditions.
    pub fn finalize_namespaces(&self) -> usize {
        let mut inner = self.write();
        let terminating: Vec<String> = inner
            .collections
            .get(NAMESPACE_KEY)
            .map(|c| {
                c.objects
                    .values()
                    .filter(|n| !n["metadata"]["deletionTimestamp"].is_null())
                    .map(|n| meta_str(n, "name").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut changed = 0;
        for ns in terminating {
            let mut contents = Vec::new();
            for (key, coll) in &inner.collections {
                for ((_, name), obj) in coll.in_namespace(Some(&ns)) {
                    if obj["metadata"]["deletionTimestamp"].is_null() {
                        contents.push((key.clone(), name.clone()));
                    }
                }
            }
            let remaining = inner
                .collections
                .values()
                .any(|c| c.in_namespace(Some(&ns)).next().is_some());
            for (key, name) in contents {
                let info = self.info_for_key(&key);
                let _ = self.delete_locked(
                    &mut inner,
                    &info,
                    &key,
                    &ns,
                    &name,
                    &DeleteOptions::default(),
                );
                changed += 1;
            }
            let remaining = remaining
                && inner
                    .collections
                    .values()
                    .any(|c| c.in_namespace(Some(&ns)).next().is_some());
            if !remaining {
                let finished = inner.get(NAMESPACE_KEY, "", &ns).cloned();
                if let Some(obj) = finished {
                    if !finalizers(&obj).is_empty() {
                        continue;
                    }
                    let mut last = (*obj).clone();
                    last["spec"]["finalizers"] = json!([]);
                    self.remove_locked(&mut inner, NAMESPACE_KEY, "", &ns, Some(Arc::new(last)));
                    changed += 1;
                }
            }
        }
        changed
    }

    /// A resource description for internal deletes (GC, namespaces) from a storage key.
    fn info_for_key(&self, key: &str) -> ResourceInfo {
        let (group, plural) = key.split_once('/').unwrap_or(("", key));
        self.registry
            .all()
            .into_iter()
            .find(|r| r.group == group && r.plural == plural)
            .map(|r| (*r).clone())
            .unwrap_or_else(|| ResourceInfo {
                group: group.to_string(),
                version: String::new(),
                plural: plural.to_string(),
                singular: String::new(),
                kind: String::new(),
                namespaced: true,
                short_names: Vec::new(),
                categories: Vec::new(),
                subresources: Vec::new(),
                printer_columns: Vec::new(),
            })
    }
}

fn has_namespace_finalizers(ns: &Value) -> bool {
    ns["spec"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}
