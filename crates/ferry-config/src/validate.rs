//! Validation of a configuration document against the schema, by hand over a
//! `serde_json::Value`, so that every problem is found in one pass (serde stops at the first).
//!
//! The walker also normalises the tree for deserialisation: `null` and empty-string values that
//! mean "not set" are dropped, unknown fields are dropped, and (in lenient mode) fields spelt
//! with the wrong case are renamed, since Velero's Go decoder matches names case-insensitively.

use serde_json::{Map, Value};

use crate::label_selector::SelectorOperator;
use crate::names::{check_dns_subdomain, check_label_value, check_qualified_name};
use crate::problems::{ConfigProblem, Strictness, child_path, index_path};
use crate::quantity::parse_quantity;

/// A syntax check on a string, returning why it is invalid.
type NameCheck = fn(&str) -> Result<(), String>;

/// Field names of each object in the schema, used for unknown-field checks and suggestions.
const ROOT_FIELDS: &[&str] = &[
    "loadConcurrency",
    "loadAffinity",
    "backupPVC",
    "restorePVC",
    "podResources",
    "priorityClassName",
    "privilegedFsBackup",
    "cachePVC",
    "podAnnotations",
    "podLabels",
];
const LOAD_CONCURRENCY_FIELDS: &[&str] = &["globalConfig", "perNodeConfig", "prepareQueueLength"];
const PER_NODE_FIELDS: &[&str] = &["nodeSelector", "number"];
const LOAD_AFFINITY_FIELDS: &[&str] = &["nodeSelector", "storageClass"];
const SELECTOR_FIELDS: &[&str] = &["matchLabels", "matchExpressions"];
const EXPRESSION_FIELDS: &[&str] = &["key", "operator", "values"];
const BACKUP_PVC_FIELDS: &[&str] = &["storageClass", "readOnly", "spcNoRelabeling", "annotations"];
const RESTORE_PVC_FIELDS: &[&str] = &["ignoreDelayBinding"];
const POD_RESOURCES_FIELDS: &[&str] = &[
    "cpuRequest",
    "cpuLimit",
    "memoryRequest",
    "memoryLimit",
    "ephemeralStorageRequest",
    "ephemeralStorageLimit",
];
const CACHE_PVC_FIELDS: &[&str] = &["storageClass", "residentThresholdInMB"];

/// Where each section's fields live, to point a field written at the wrong level to its place
/// (`prepareQueueLength` at the top level belongs in `loadConcurrency`).
const SECTIONS: &[(&str, &[&str])] = &[
    ("", ROOT_FIELDS),
    ("loadConcurrency", LOAD_CONCURRENCY_FIELDS),
    ("loadConcurrency.perNodeConfig[]", PER_NODE_FIELDS),
    ("loadAffinity[]", LOAD_AFFINITY_FIELDS),
    ("backupPVC.<storage class>", BACKUP_PVC_FIELDS),
    ("restorePVC", RESTORE_PVC_FIELDS),
    ("podResources", POD_RESOURCES_FIELDS),
    ("cachePVC", CACHE_PVC_FIELDS),
];

/// Problems found, split by how bad they are.
pub(crate) struct Findings {
    /// Always errors.
    pub errors: Vec<ConfigProblem>,
    /// Unknown fields and settings without effect: errors in strict mode, warnings in lenient.
    pub doubts: Vec<ConfigProblem>,
}

/// Validates `doc` in place (normalising it as described in the module comment).
pub(crate) fn validate_document(doc: &mut Value, strictness: Strictness) -> Findings {
    let mut w = Walker {
        strictness,
        findings: Findings {
            errors: Vec::new(),
            doubts: Vec::new(),
        },
    };
    w.root(doc);
    w.findings
}

struct Walker {
    strictness: Strictness,
    findings: Findings,
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The closest known name to `key`, if it is close enough to be a likely misspelling.
fn closest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let key_lower = key.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            let d = strsim::damerau_levenshtein(&key_lower, &c.to_ascii_lowercase());
            (d, *c)
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

impl Walker {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.findings.errors.push(ConfigProblem::new(path, message));
    }

    fn doubt(&mut self, path: &str, message: impl Into<String>) {
        self.findings.doubts.push(ConfigProblem::new(path, message));
    }

    /// Checks the value is an object and sorts out its fields: drops nulls and unknown fields
    /// (reporting the latter with a suggestion), fixes the case of near-miss names in lenient
    /// mode. Returns `None` (after reporting) when the value is not an object.
    fn object<'v>(
        &mut self,
        path: &str,
        value: &'v mut Value,
        known: &[&str],
    ) -> Option<&'v mut Map<String, Value>> {
        let Value::Object(map) = value else {
            self.error(
                path,
                format!("expected an object, found {}", describe(value)),
            );
            return None;
        };
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if map.get(&key).is_some_and(Value::is_null) {
                map.remove(&key);
                continue;
            }
            if known.contains(&key.as_str()) {
                continue;
            }
            let field_path = child_path(path, &key);
            let same_but_case = known.iter().find(|k| k.eq_ignore_ascii_case(&key));
            if let Some(canonical) = same_but_case {
                let taken = map.contains_key(*canonical);
                self.doubt(
                    &field_path,
                    format!(
                        "unknown field; did you mean {canonical}? (Velero matches names case-insensitively, ferry wants the exact spelling{})",
                        if taken { format!("; {canonical} is also set and wins") } else { String::new() }
                    ),
                );
                let v = map.remove(&key).unwrap_or(Value::Null);
                if !taken && self.strictness == Strictness::Lenient {
                    map.insert(canonical.to_string(), v);
                }
                continue;
            }
            let message = self.unknown_field_message(path, &key, known);
            self.doubt(&field_path, message);
            map.remove(&key);
        }
        Some(map)
    }

    fn unknown_field_message(&self, path: &str, key: &str, known: &[&str]) -> String {
        if path == "cachePVC" && key == "thresholdInGB" {
            return "unknown field; did you mean residentThresholdInMB? (the threshold is given in MB)".into();
        }
        if let Some(suggestion) = closest(key, known) {
            return format!("unknown field; did you mean {suggestion}?");
        }
        // A known field of another section: point to where it belongs.
        let places: Vec<String> = SECTIONS
            .iter()
            .filter_map(|(section, fields)| {
                let name = fields.iter().find(|f| f.eq_ignore_ascii_case(key))?;
                if known.contains(name) {
                    return None;
                }
                Some(if section.is_empty() {
                    format!("the top level ({name})")
                } else {
                    format!("{section}.{name}")
                })
            })
            .collect();
        match places.as_slice() {
            [] => {}
            [one] => return format!("unknown field here; it belongs in {one}"),
            [init @ .., last] => {
                return format!(
                    "unknown field here; it belongs in {} or {last}",
                    init.join(", ")
                );
            }
        }
        format!("unknown field (known fields here: {})", known.join(", "))
    }

    /// A whole number of at least `min`. Reports and returns `None` otherwise.
    fn integer(&mut self, path: &str, value: &Value, min: i64, meaning: &str) -> Option<i64> {
        let n = match value {
            Value::Number(n) => n,
            other => {
                self.error(
                    path,
                    format!(
                        "expected a whole number ({meaning}), found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let Some(i) = n.as_i64() else {
            let msg = if n.as_u64().is_some() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                format!("{n} is too large")
            } else {
                format!("expected a whole number ({meaning}), found {n}")
            };
            self.error(path, msg);
            return None;
        };
        if i < min {
            let msg = if min == 1 {
                format!("must be at least 1 ({meaning}), found {i}")
            } else {
                format!("must be at least {min} ({meaning}), found {i}")
            };
            self.error(path, msg);
            return None;
        }
        Some(i)
    }

    fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" || s == "false" => {
                self.error(
                    path,
                    format!("expected a boolean, found the string {s:?}; write {s} without quotes"),
                );
                None
            }
            other => {
                self.error(
                    path,
                    format!("expected a boolean, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn string<'v>(&mut self, path: &str, value: &'v Value, what: &str) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            Value::Number(_) | Value::Bool(_) => {
                self.error(
                    path,
                    format!(
                        "expected a string ({what}), found {}; put it in quotes",
                        describe(value)
                    ),
                );
                None
            }
            other => {
                self.error(
                    path,
                    format!("expected a string ({what}), found {}", describe(other)),
                );
                None
            }
        }
    }

    /// An optional resource name (storage class, priority class). An empty string means unset
    /// and is removed from the parent.
    fn optional_name(&mut self, parent: &mut Map<String, Value>, parent_path: &str, field: &str) {
        let path = child_path(parent_path, field);
        let Some(value) = parent.get(field) else {
            return;
        };
        match self.string(&path, value, "a name") {
            Some("") => {
                parent.remove(field);
            }
            Some(name) => {
                if let Err(e) = check_dns_subdomain(name) {
                    self.error(&path, e);
                }
            }
            None => {}
        }
    }

    /// A string map whose keys are label/annotation keys; values checked by `value_check`.
    fn string_map(&mut self, path: &str, value: &mut Value, value_check: Option<NameCheck>) {
        let Value::Object(map) = value else {
            self.error(
                path,
                format!(
                    "expected an object of string keys and values, found {}",
                    describe(value)
                ),
            );
            return;
        };
        for (key, v) in map.iter() {
            let entry_path = child_path(path, key);
            if let Err(e) = check_qualified_name(key) {
                self.error(&entry_path, e);
            }
            match v {
                Value::String(s) => {
                    if let Some(check) = value_check
                        && let Err(e) = check(s)
                    {
                        self.error(&entry_path, e);
                    }
                }
                Value::Bool(_) | Value::Number(_) => self.error(
                    &entry_path,
                    format!(
                        "expected a string value, found {}; put it in quotes (\"{}\")",
                        describe(v),
                        v
                    ),
                ),
                other => self.error(
                    &entry_path,
                    format!("expected a string value, found {}", describe(other)),
                ),
            }
        }
    }

    fn array<'v>(&mut self, path: &str, value: &'v mut Value) -> Option<&'v mut Vec<Value>> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                let found = describe(other);
                self.error(path, format!("expected an array, found {found}"));
                None
            }
        }
    }

    // ---- the schema ----

    fn root(&mut self, doc: &mut Value) {
        let Some(map) = self.object("", doc, ROOT_FIELDS) else {
            return;
        };
        if let Some(v) = map.get_mut("loadConcurrency") {
            self.load_concurrency("loadConcurrency", v);
        }
        if let Some(v) = map.get_mut("loadAffinity") {
            self.load_affinity("loadAffinity", v);
        }
        if let Some(v) = map.get_mut("backupPVC") {
            self.backup_pvc("backupPVC", v);
        }
        if let Some(v) = map.get_mut("restorePVC")
            && let Some(m) = self.object("restorePVC", v, RESTORE_PVC_FIELDS)
            && let Some(b) = m.get("ignoreDelayBinding")
        {
            self.boolean("restorePVC.ignoreDelayBinding", b);
        }
        if let Some(v) = map.get_mut("podResources") {
            self.pod_resources("podResources", v);
        }
        self.optional_name(map, "", "priorityClassName");
        if let Some(v) = map.get("privilegedFsBackup") {
            self.boolean("privilegedFsBackup", v);
        }
        if let Some(v) = map.get_mut("cachePVC") {
            self.cache_pvc("cachePVC", v);
        }
        if let Some(v) = map.get_mut("podAnnotations") {
            self.string_map("podAnnotations", v, None);
        }
        if let Some(v) = map.get_mut("podLabels") {
            self.string_map("podLabels", v, Some(check_label_value));
        }
    }

    fn load_concurrency(&mut self, path: &str, value: &mut Value) {
        let Some(map) = self.object(path, value, LOAD_CONCURRENCY_FIELDS) else {
            return;
        };
        if let Some(v) = map.get("globalConfig") {
            self.integer(
                &child_path(path, "globalConfig"),
                v,
                1,
                "data mover pods per node",
            );
        }
        if let Some(v) = map.get("prepareQueueLength") {
            self.integer(
                &child_path(path, "prepareQueueLength"),
                v,
                1,
                "leave it out for no limit",
            );
        }
        if let Some(v) = map.get_mut("perNodeConfig") {
            let list_path = child_path(path, "perNodeConfig");
            if let Some(items) = self.array(&list_path, v) {
                for (i, item) in items.iter_mut().enumerate() {
                    let item_path = index_path(&list_path, i);
                    let Some(rule) = self.object(&item_path, item, PER_NODE_FIELDS) else {
                        continue;
                    };
                    match rule.get_mut("nodeSelector") {
                        Some(sel) => self.selector(&child_path(&item_path, "nodeSelector"), sel),
                        None => self.error(
                            &child_path(&item_path, "nodeSelector"),
                            "required: a label selector choosing the nodes this rule applies to (use {} for every node)",
                        ),
                    }
                    match rule.get("number") {
                        Some(n) => {
                            self.integer(
                                &child_path(&item_path, "number"),
                                n,
                                1,
                                "data mover pods per matching node",
                            );
                        }
                        None => self.error(
                            &child_path(&item_path, "number"),
                            "required: how many data mover pods may run at once on matching nodes",
                        ),
                    }
                }
            }
        }
    }

    fn selector(&mut self, path: &str, value: &mut Value) {
        let Some(map) = self.object(path, value, SELECTOR_FIELDS) else {
            return;
        };
        if let Some(v) = map.get_mut("matchLabels") {
            self.string_map(&child_path(path, "matchLabels"), v, Some(check_label_value));
        }
        let Some(v) = map.get_mut("matchExpressions") else {
            return;
        };
        let list_path = child_path(path, "matchExpressions");
        let Some(items) = self.array(&list_path, v) else {
            return;
        };
        for (i, item) in items.iter_mut().enumerate() {
            let item_path = index_path(&list_path, i);
            let Some(expr) = self.object(&item_path, item, EXPRESSION_FIELDS) else {
                continue;
            };
            let key_path = child_path(&item_path, "key");
            match expr.get("key") {
                Some(k) => {
                    if let Some(k) = self.string(&key_path, k, "a label key")
                        && let Err(e) = check_qualified_name(k)
                    {
                        self.error(&key_path, e);
                    }
                }
                None => self.error(&key_path, "required: the label key to test"),
            }
            let op_path = child_path(&item_path, "operator");
            let operator = match expr.get("operator") {
                Some(o) => match self.string(&op_path, o, "In, NotIn, Exists or DoesNotExist") {
                    Some(name) => {
                        let op = SelectorOperator::parse(name);
                        if op.is_none() {
                            let names: Vec<&str> =
                                SelectorOperator::ALL.iter().map(|(n, _)| *n).collect();
                            let hint = closest(name, &names)
                                .map(|s| format!("did you mean {s}? "))
                                .unwrap_or_default();
                            self.error(
                                &op_path,
                                format!(
                                    "{name:?} is not a label selector operator; {hint}(use In, NotIn, Exists or DoesNotExist)"
                                ),
                            );
                        }
                        op
                    }
                    None => None,
                },
                None => {
                    self.error(&op_path, "required: one of In, NotIn, Exists, DoesNotExist");
                    None
                }
            };
            let values_path = child_path(&item_path, "values");
            let mut count = 0;
            if let Some(v) = expr.get_mut("values")
                && let Some(values) = self.array(&values_path, v)
            {
                count = values.len();
                for (j, value) in values.iter().enumerate() {
                    let value_path = index_path(&values_path, j);
                    if let Some(s) = self.string(&value_path, value, "a label value")
                        && let Err(e) = check_label_value(s)
                    {
                        self.error(&value_path, e);
                    }
                }
            }
            if let Some(op) = operator {
                let name = SelectorOperator::ALL
                    .iter()
                    .find(|(_, o)| *o == op)
                    .map(|(n, _)| *n)
                    .unwrap_or_default();
                if op.takes_values() && count == 0 {
                    self.error(
                        &values_path,
                        format!("required: operator {name} needs at least one value"),
                    );
                } else if !op.takes_values() && count > 0 {
                    self.error(
                        &values_path,
                        format!("must be empty: operator {name} takes no values"),
                    );
                }
            }
        }
    }

    fn load_affinity(&mut self, path: &str, value: &mut Value) {
        let Some(items) = self.array(path, value) else {
            return;
        };
        // Velero picks the first entry for a storage class, else the first without one;
        // later duplicates are never used.
        let mut first_for_class: Vec<(Option<String>, usize)> = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            let item_path = index_path(path, i);
            let Some(entry) = self.object(&item_path, item, LOAD_AFFINITY_FIELDS) else {
                continue;
            };
            match entry.get_mut("nodeSelector") {
                Some(sel) => self.selector(&child_path(&item_path, "nodeSelector"), sel),
                None => self.error(
                    &child_path(&item_path, "nodeSelector"),
                    "required: a label selector choosing the nodes data mover pods may run on",
                ),
            }
            self.optional_name(entry, &item_path, "storageClass");
            let class = entry
                .get("storageClass")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some((_, first)) = first_for_class.iter().find(|(c, _)| *c == class) {
                let message = match &class {
                    Some(c) => format!(
                        "never used: {path}[{first}] already applies to storage class {c:?} and the first match wins; merge the two nodeSelectors"
                    ),
                    None => format!(
                        "never used: {path}[{first}] is already the entry for all storage classes and only the first one counts; combine the conditions in one nodeSelector"
                    ),
                };
                self.doubt(&item_path, message);
            } else {
                first_for_class.push((class, i));
            }
        }
    }

    fn backup_pvc(&mut self, path: &str, value: &mut Value) {
        let Value::Object(map) = value else {
            self.error(
                path,
                format!(
                    "expected an object keyed by storage class name, found {}",
                    describe(value)
                ),
            );
            return;
        };
        for (class, entry) in map.iter_mut() {
            let entry_path = child_path(path, class);
            if let Err(e) = check_dns_subdomain(class) {
                self.error(&entry_path, format!("key is not a storage class name: {e}"));
            }
            if entry.is_null() {
                continue;
            }
            let Some(fields) = self.object(&entry_path, entry, BACKUP_PVC_FIELDS) else {
                continue;
            };
            self.optional_name(fields, &entry_path, "storageClass");
            if let Some(v) = fields.get("readOnly") {
                self.boolean(&child_path(&entry_path, "readOnly"), v);
            }
            let spc_path = child_path(&entry_path, "spcNoRelabeling");
            let spc = fields
                .get("spcNoRelabeling")
                .and_then(|v| self.boolean(&spc_path, v));
            let read_only_off = matches!(fields.get("readOnly"), None | Some(Value::Bool(false)));
            if spc == Some(true) && read_only_off {
                self.doubt(&spc_path, "has no effect without readOnly: true");
            }
            if let Some(a) = fields.get_mut("annotations") {
                self.string_map(&child_path(&entry_path, "annotations"), a, None);
            }
        }
    }

    fn pod_resources(&mut self, path: &str, value: &mut Value) {
        let Some(map) = self.object(path, value, POD_RESOURCES_FIELDS) else {
            return;
        };
        let mut parsed = std::collections::BTreeMap::new();
        for field in POD_RESOURCES_FIELDS {
            let field_path = child_path(path, field);
            let Some(v) = map.get(*field) else {
                continue;
            };
            let Some(text) = self.string(&field_path, v, "a quantity such as \"500m\" or \"1Gi\"")
            else {
                continue;
            };
            if text.is_empty() {
                map.remove(*field);
                continue;
            }
            match parse_quantity(text) {
                Ok(q) if q.is_negative() => {
                    self.error(&field_path, format!("{text:?} is negative"))
                }
                Ok(q) => {
                    parsed.insert(*field, q);
                }
                Err(e) => self.error(&field_path, e.to_string()),
            }
        }
        for (request, limit) in [
            ("cpuRequest", "cpuLimit"),
            ("memoryRequest", "memoryLimit"),
            ("ephemeralStorageRequest", "ephemeralStorageLimit"),
        ] {
            // A zero limit means "no limit", as in Velero.
            if let (Some(r), Some(l)) = (parsed.get(request), parsed.get(limit))
                && !l.is_zero()
                && r > l
            {
                self.error(
                    &child_path(path, request),
                    format!("{request} {r} is more than {limit} {l}; a request must not exceed its limit"),
                );
            }
        }
    }

    fn cache_pvc(&mut self, path: &str, value: &mut Value) {
        let Some(map) = self.object(path, value, CACHE_PVC_FIELDS) else {
            return;
        };
        let class_path = child_path(path, "storageClass");
        match map.get("storageClass") {
            None => self.error(
                &class_path,
                "required: the storage class that provisions cache PVCs (without it there is no cache PVC; remove cachePVC to run without one)",
            ),
            Some(v) => match self.string(&class_path, v, "a storage class name") {
                Some("") => self.error(
                    &class_path,
                    "must not be empty: name the storage class that provisions cache PVCs",
                ),
                Some(name) => {
                    if let Err(e) = check_dns_subdomain(name) {
                        self.error(&class_path, e);
                    }
                }
                None => {}
            },
        }
        if let Some(v) = map.get("residentThresholdInMB") {
            self.integer(
                &child_path(path, "residentThresholdInMB"),
                v,
                0,
                "MB; 0 means every restore gets a cache PVC",
            );
        }
    }
}
