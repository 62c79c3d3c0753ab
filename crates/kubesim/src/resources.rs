//! The resource registry: which group/version/resource the API server serves, with the
//! discovery facts (kind, scope, short names, subresources) and the printer columns kubectl's
//! table output shows. Built-in resources are fixed; custom resources come and go with their
//! CustomResourceDefinitions.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

/// One printer column of `kubectl get`: a header and a simple JSONPath into the object.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date` (rendered as an age).
    pub type_: String,
    pub json_path: String,
    /// 0 is shown always, higher only with `-o wide`.
    pub priority: i64,
    pub description: String,
}

/// A served resource at one group/version.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresources served, e.g. `status`, `binding`.
    pub subresources: Vec<String>,
    pub printer_columns: Vec<PrinterColumn>,
}

impl ResourceInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Where objects live in the store: all versions of a resource share one storage
    /// (kubesim does no version conversion, it only rewrites apiVersion).
    pub fn storage_key(&self) -> String {
        storage_key(&self.group, &self.plural)
    }

    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    /// `pods` or `customresourcedefinitions.apiextensions.k8s.io`, as Kubernetes names a
    /// resource in error messages.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

pub fn storage_key(group: &str, plural: &str) -> String {
    format!("{group}/{plural}")
}

/// The served resources, shared by the HTTP layer and the CRD handling.
#[derive(Debug, Default)]
pub struct Registry {
    builtin: Vec<Arc<ResourceInfo>>,
    /// CRD name → resources it serves (one per served version).
    custom: RwLock<BTreeMap<String, Vec<Arc<ResourceInfo>>>>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        Registry {
            builtin: builtin_resources().into_iter().map(Arc::new).collect(),
            custom: RwLock::default(),
        }
    }

    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        let mut out = self.builtin.clone();
        for infos in self.custom.read().expect("registry lock").values() {
            out.extend(infos.iter().cloned());
        }
        out
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        let hit =
            |r: &Arc<ResourceInfo>| r.group == group && r.version == version && r.plural == plural;
        if let Some(r) = self.builtin.iter().find(|r| hit(r)) {
            return Some(r.clone());
        }
        let custom = self.custom.read().expect("registry lock");
        custom.values().flatten().find(|r| hit(r)).cloned()
    }

    /// Any served version of a resource of the given group and kind (for ownerReferences etc.).
    pub fn find_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.all()
            .into_iter()
            .find(|r| r.group == group && r.kind == kind)
    }

    /// Groups with their versions, in registration order (preferred version first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all() {
            if r.group.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        groups
    }

    /// Replaces the resources served for one CRD (empty to stop serving it).
    pub fn set_custom(&self, crd_name: &str, infos: Vec<ResourceInfo>) {
        let mut custom = self.custom.write().expect("registry lock");
        if infos.is_empty() {
            custom.remove(crd_name);
        } else {
            custom.insert(
                crd_name.to_string(),
                infos.into_iter().map(Arc::new).collect(),
            );
        }
    }
}

/// The resources one CRD object serves: each served version, with its scope, names,
/// status subresource and printer columns. Versions are ordered as Kubernetes orders them
/// for discovery only approximately: the storage version first, then the rest as declared.
pub fn resources_for_crd(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let short_names = strings(&names["shortNames"]);
    let categories = strings(&names["categories"]);
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut versions: Vec<&Value> = spec["versions"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|v| v["served"].as_bool().unwrap_or(true))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| !v["storage"].as_bool().unwrap_or(false));
    versions
        .into_iter()
        .filter_map(|v| {
            let version = v["name"].as_str()?.to_string();
            let mut subresources = Vec::new();
            if v["subresources"]["status"].is_object() {
                subresources.push("status".to_string());
            }
            let printer_columns = v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .filter_map(|c| {
                            Some(PrinterColumn {
                                name: c["name"].as_str()?.to_string(),
                                type_: c["type"].as_str().unwrap_or("string").to_string(),
                                json_path: c["jsonPath"].as_str()?.to_string(),
                                priority: c["priority"].as_i64().unwrap_or(0),
                                description: c["description"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(ResourceInfo {
                group: group.clone(),
                version,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                short_names: short_names.clone(),
                categories: categories.clone(),
                subresources,
                printer_columns,
            })
        })
        .collect()
}

fn col(name: &str, type_: &str, json_path: &str, priority: i64) -> PrinterColumn {
    PrinterColumn {
        name: name.to_string(),
        type_: type_.to_string(),
        json_path: json_path.to_string(),
        priority,
        description: String::new(),
    }
}

struct Spec<'a> {
    group: &'a str,
    version: &'a str,
    plural: &'a str,
    kind: &'a str,
    namespaced: bool,
    short: &'a [&'a str],
    sub: &'a [&'a str],
    columns: Vec<PrinterColumn>,
}

fn builtin_resources() -> Vec<ResourceInfo> {
    // Columns are a subset of what the real server prints, chosen to be useful in tests and
    // the demo; "Age" is added to every table by the table printer.
    let specs = vec![
        Spec {
            group: "",
            version: "v1",
            plural: "namespaces",
            kind: "Namespace",
            namespaced: false,
            short: &["ns"],
            sub: &["status", "finalize"],
            columns: vec![col("Status", "string", ".status.phase", 0)],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "nodes",
            kind: "Node",
            namespaced: false,
            short: &["no"],
            sub: &["status"],
            columns: vec![
                col("Status", "string", "@nodeStatus", 0),
                col("Version", "string", ".status.nodeInfo.kubeletVersion", 0),
                col(
                    "Zone",
                    "string",
                    ".metadata.labels.topology\\.kubernetes\\.io/zone",
                    1,
                ),
            ],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "pods",
            kind: "Pod",
            namespaced: true,
            short: &["po"],
            sub: &["status", "binding"],
            columns: vec![
                col("Ready", "string", "@podReady", 0),
                col("Status", "string", "@podStatus", 0),
                col("Restarts", "integer", "@podRestarts", 0),
                col("IP", "string", ".status.podIP", 1),
                col("Node", "string", ".spec.nodeName", 1),
            ],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "persistentvolumeclaims",
            kind: "PersistentVolumeClaim",
            namespaced: true,
            short: &["pvc"],
            sub: &["status"],
            columns: vec![
                col("Status", "string", ".status.phase", 0),
                col("Volume", "string", ".spec.volumeName", 0),
                col("Capacity", "string", ".status.capacity.storage", 0),
                col("Access Modes", "string", "@accessModes", 0),
                col("StorageClass", "string", ".spec.storageClassName", 0),
                col("VolumeMode", "string", ".spec.volumeMode", 1),
            ],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "persistentvolumes",
            kind: "PersistentVolume",
            namespaced: false,
            short: &["pv"],
            sub: &["status"],
            columns: vec![
                col("Capacity", "string", ".spec.capacity.storage", 0),
                col("Access Modes", "string", "@accessModes", 0),
                col(
                    "Reclaim Policy",
                    "string",
                    ".spec.persistentVolumeReclaimPolicy",
                    0,
                ),
                col("Status", "string", ".status.phase", 0),
                col("Claim", "string", "@pvClaim", 0),
                col("StorageClass", "string", ".spec.storageClassName", 0),
                col("Reason", "string", ".status.reason", 0),
            ],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "configmaps",
            kind: "ConfigMap",
            namespaced: true,
            short: &["cm"],
            sub: &[],
            columns: vec![col("Data", "integer", "@dataCount", 0)],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "secrets",
            kind: "Secret",
            namespaced: true,
            short: &[],
            sub: &[],
            columns: vec![
                col("Type", "string", ".type", 0),
                col("Data", "integer", "@dataCount", 0),
            ],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "events",
            kind: "Event",
            namespaced: true,
            short: &["ev"],
            sub: &[],
            columns: vec![
                col("Type", "string", ".type", 0),
                col("Reason", "string", ".reason", 0),
                col("Object", "string", "@involvedObject", 0),
                col("Message", "string", ".message", 0),
            ],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "serviceaccounts",
            kind: "ServiceAccount",
            namespaced: true,
            short: &["sa"],
            sub: &[],
            columns: vec![],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "services",
            kind: "Service",
            namespaced: true,
            short: &["svc"],
            sub: &["status"],
            columns: vec![
                col("Type", "string", ".spec.type", 0),
                col("Cluster-IP", "string", ".spec.clusterIP", 0),
            ],
        },
        Spec {
            group: "",
            version: "v1",
            plural: "endpoints",
            kind: "Endpoints",
            namespaced: true,
            short: &["ep"],
            sub: &[],
            columns: vec![],
        },
        Spec {
            group: "storage.k8s.io",
            version: "v1",
            plural: "storageclasses",
            kind: "StorageClass",
            namespaced: false,
            short: &["sc"],
            sub: &[],
            columns: vec![
                col("Provisioner", "string", ".provisioner", 0),
                col("ReclaimPolicy", "string", ".reclaimPolicy", 0),
                col("VolumeBindingMode", "string", ".volumeBindingMode", 0),
                col(
                    "AllowVolumeExpansion",
                    "boolean",
                    ".allowVolumeExpansion",
                    0,
                ),
            ],
        },
        Spec {
            group: "apps",
            version: "v1",
            plural: "deployments",
            kind: "Deployment",
            namespaced: true,
            short: &["deploy"],
            sub: &["status"],
            columns: vec![
                col("Ready", "string", "@replicasReady", 0),
                col("Up-to-date", "integer", ".status.updatedReplicas", 0),
                col("Available", "integer", ".status.availableReplicas", 0),
            ],
        },
        Spec {
            group: "apps",
            version: "v1",
            plural: "daemonsets",
            kind: "DaemonSet",
            namespaced: true,
            short: &["ds"],
            sub: &["status"],
            columns: vec![
                col("Desired", "integer", ".status.desiredNumberScheduled", 0),
                col("Current", "integer", ".status.currentNumberScheduled", 0),
                col("Ready", "integer", ".status.numberReady", 0),
            ],
        },
        Spec {
            group: "apps",
            version: "v1",
            plural: "replicasets",
            kind: "ReplicaSet",
            namespaced: true,
            short: &["rs"],
            sub: &["status"],
            columns: vec![],
        },
        Spec {
            group: "apps",
            version: "v1",
            plural: "statefulsets",
            kind: "StatefulSet",
            namespaced: true,
            short: &["sts"],
            sub: &["status"],
            columns: vec![],
        },
        Spec {
            group: "batch",
            version: "v1",
            plural: "jobs",
            kind: "Job",
            namespaced: true,
            short: &[],
            sub: &["status"],
            columns: vec![],
        },
        Spec {
            group: "coordination.k8s.io",
            version: "v1",
            plural: "leases",
            kind: "Lease",
            namespaced: true,
            short: &[],
            sub: &[],
            columns: vec![col("Holder", "string", ".spec.holderIdentity", 0)],
        },
        Spec {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            plural: "roles",
            kind: "Role",
            namespaced: true,
            short: &[],
            sub: &[],
            columns: vec![],
        },
        Spec {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            plural: "rolebindings",
            kind: "RoleBinding",
            namespaced: true,
            short: &[],
            sub: &[],
            columns: vec![col("Role", "string", "@roleRef", 0)],
        },
        Spec {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            plural: "clusterroles",
            kind: "ClusterRole",
            namespaced: false,
            short: &[],
            sub: &[],
            columns: vec![],
        },
        Spec {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            plural: "clusterrolebindings",
            kind: "ClusterRoleBinding",
            namespaced: false,
            short: &[],
            sub: &[],
            columns: vec![col("Role", "string", "@roleRef", 0)],
        },
        Spec {
            group: "events.k8s.io",
            version: "v1",
            plural: "events",
            kind: "Event",
            namespaced: true,
            short: &["ev"],
            sub: &[],
            columns: vec![
                col("Type", "string", ".type", 0),
                col("Reason", "string", ".reason", 0),
                col("Note", "string", ".note", 0),
            ],
        },
        Spec {
            group: "apiextensions.k8s.io",
            version: "v1",
            plural: "customresourcedefinitions",
            kind: "CustomResourceDefinition",
            namespaced: false,
            short: &["crd", "crds"],
            sub: &["status"],
            columns: vec![col("Created At", "date", ".metadata.creationTimestamp", 0)],
        },
    ];
    specs
        .into_iter()
        .map(|s| ResourceInfo {
            group: s.group.to_string(),
            version: s.version.to_string(),
            plural: s.plural.to_string(),
            singular: s.kind.to_lowercase(),
            kind: s.kind.to_string(),
            namespaced: s.namespaced,
            short_names: s.short.iter().map(|s| s.to_string()).collect(),
            // `kubectl get all` covers workloads and services, not config or storage.
            categories: if [
                "pods",
                "services",
                "deployments",
                "daemonsets",
                "replicasets",
                "statefulsets",
                "jobs",
            ]
            .contains(&s.plural)
            {
                vec!["all".to_string()]
            } else {
                Vec::new()
            },
            subresources: s.sub.iter().map(|s| s.to_string()).collect(),
            printer_columns: s.columns,
        })
        .collect()
}
