//! Writing the rendered objects to a cluster, and removing them again.
//!
//! Install is server-side apply under the field manager [`FIELD_MANAGER`], as `kubectl apply
//! --server-side` does: the API server merges ferry's fields into the object and keeps fields
//! that others own (a replica count an autoscaler set, an annotation another tool added). An
//! apply that changes nothing is not written, so a second install leaves every
//! resourceVersion as it was, and that is how "unchanged" is told from "configured". Objects
//! ferry did not create — a namespace or a Velero CRD that was already there — are never
//! modified or deleted.

use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CONTROLLER_NAME, DATA_MOVER_NAME, InstallOptions, Manifests};
use crate::crds::all_crds;
use crate::crds::definition::MANAGED_BY_LABEL;

/// The field manager of ferry's install: the owner of the fields it applies.
pub const FIELD_MANAGER: &str = "ferry-install";

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// It did not exist and was created.
    Created,
    /// It existed with different content and was replaced.
    Updated,
    /// It existed with the same content; nothing was written.
    Unchanged,
    /// It existed and was not created by ferry (for example Velero's CRD); left as it is.
    KeptExisting,
    /// It was deleted.
    Deleted,
    /// It was to be deleted but did not exist.
    NotFound,
    /// ferry's namespace, kept because it holds objects ferry did not create.
    KeptInUse,
}

impl ApplyOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "configured",
            Self::Unchanged => "unchanged",
            Self::KeptExisting => "already present, not managed by ferry: left as is",
            Self::Deleted => "deleted",
            Self::NotFound => "not found",
            Self::KeptInUse => "kept: it holds objects ferry did not create",
        }
    }
}

/// One line of the install or uninstall report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedObject {
    /// Lower-case kind, as kubectl prints it (`deployment.apps`, `namespace`, ...).
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub outcome: ApplyOutcome,
}

impl fmt::Display for AppliedObject {
    /// `kind/name outcome`, the way kubectl reports applies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.kind, self.name, self.outcome.as_str())
    }
}

/// A request the API server refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {kind} {name:?}{}: {source}", namespace.as_ref().map(|n| format!(" in namespace {n:?}")).unwrap_or_default())]
pub struct ApplyError {
    pub action: &'static str,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    #[source]
    pub source: kube::Error,
}

/// How to treat an object that already exists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WhenPresent {
    /// Bring it to the rendered content.
    Converge,
    /// Converge only when ferry created it (it carries ferry's managed-by label).
    ConvergeIfOurs,
}

fn kind_name<K: Resource<DynamicType = ()>>() -> String {
    let group = K::group(&());
    let kind = K::kind(&()).to_lowercase();
    if group.is_empty() {
        kind
    } else {
        format!("{kind}.{group}")
    }
}

fn is_ours<K: Resource>(object: &K) -> bool {
    object
        .meta()
        .labels
        .as_ref()
        .and_then(|labels| labels.get(MANAGED_BY_LABEL.0))
        .is_some_and(|value| value == MANAGED_BY_LABEL.1)
}

fn api_error<K: Resource<DynamicType = ()>>(
    action: &'static str,
    name: &str,
    namespace: Option<&str>,
) -> impl FnOnce(kube::Error) -> ApplyError {
    let kind = kind_name::<K>();
    let name = name.to_string();
    let namespace = namespace.map(str::to_string);
    move |source| ApplyError {
        action,
        kind,
        name,
        namespace,
        source,
    }
}

async fn apply_one<K>(
    api: Api<K>,
    desired: &K,
    when_present: WhenPresent,
) -> Result<AppliedObject, ApplyError>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + fmt::Debug,
{
    let name = desired.name_any();
    let namespace = desired.namespace();
    let report = |outcome| AppliedObject {
        kind: kind_name::<K>(),
        name: name.clone(),
        namespace: namespace.clone(),
        outcome,
    };
    let existing =
        api.get_opt(&name)
            .await
            .map_err(api_error::<K>("read", &name, namespace.as_deref()))?;
    if let Some(existing) = &existing
        && when_present == WhenPresent::ConvergeIfOurs
        && !is_ours(existing)
    {
        return Ok(report(ApplyOutcome::KeptExisting));
    }
    // Forced: fields another manager set before (an older ferry's create or replace) become
    // ferry's where ferry renders them; `kubectl apply --server-side --force-conflicts` alike.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&name, &params, &Patch::Apply(desired))
        .await
        .map_err(api_error::<K>("apply", &name, namespace.as_deref()))?;
    Ok(report(match existing {
        None => ApplyOutcome::Created,
        Some(before) if before.resource_version() == applied.resource_version() => {
            ApplyOutcome::Unchanged
        }
        Some(_) => ApplyOutcome::Updated,
    }))
}

/// Applies every rendered object in order and reports what happened to each.
/// An existing namespace or CRD that ferry did not create is left untouched.
pub async fn apply(
    client: &Client,
    manifests: &Manifests,
) -> Result<Vec<AppliedObject>, ApplyError> {
    use WhenPresent::{Converge, ConvergeIfOurs};
    let ns = manifests.namespace.name_any();
    let all = || client.clone();
    let mut report = Vec::new();
    report.push(apply_one(Api::all(all()), &manifests.namespace, ConvergeIfOurs).await?);
    for crd in &manifests.crds {
        report.push(apply_one(Api::all(all()), crd, ConvergeIfOurs).await?);
    }
    let sa_api = Api::namespaced(all(), &ns);
    report.push(apply_one(sa_api, &manifests.service_account, Converge).await?);
    report.push(apply_one(Api::all(all()), &manifests.cluster_role, Converge).await?);
    report.push(apply_one(Api::all(all()), &manifests.cluster_role_binding, Converge).await?);
    report.push(apply_one(Api::namespaced(all(), &ns), &manifests.role, Converge).await?);
    report.push(
        apply_one(
            Api::namespaced(all(), &ns),
            &manifests.role_binding,
            Converge,
        )
        .await?,
    );
    let sa = &manifests.data_mover_service_account;
    report.push(apply_one(Api::namespaced(all(), &ns), sa, Converge).await?);
    report.push(
        apply_one(
            Api::namespaced(all(), &ns),
            &manifests.data_mover_role,
            Converge,
        )
        .await?,
    );
    report.push(
        apply_one(
            Api::namespaced(all(), &ns),
            &manifests.data_mover_role_binding,
            Converge,
        )
        .await?,
    );
    report.push(apply_one(Api::namespaced(all(), &ns), &manifests.deployment, Converge).await?);
    Ok(report)
}

/// What `ferry uninstall` removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UninstallOptions {
    /// The namespace given to `ferry install`.
    pub namespace: String,
    /// Also delete the CRDs ferry created (never Velero's). This deletes every DataDownload,
    /// DataUpload and BackupStorageLocation in the cluster with them.
    pub remove_crds: bool,
    /// Keep the namespace even if ferry created it (for example when Velero now lives there).
    pub keep_namespace: bool,
    /// Delete the namespace ferry created even when it holds objects ferry did not create
    /// (secrets, storage locations, DataUploads...), and them with it.
    pub delete_foreign: bool,
}

async fn delete_one<K>(
    api: Api<K>,
    name: &str,
    namespace: Option<&str>,
    only_if_ours: bool,
) -> Result<AppliedObject, ApplyError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    let report = |outcome| AppliedObject {
        kind: kind_name::<K>(),
        name: name.to_string(),
        namespace: namespace.map(str::to_string),
        outcome,
    };
    if only_if_ours {
        match api
            .get_opt(name)
            .await
            .map_err(api_error::<K>("read", name, namespace))?
        {
            None => return Ok(report(ApplyOutcome::NotFound)),
            Some(existing) if !is_ours(&existing) => return Ok(report(ApplyOutcome::KeptExisting)),
            Some(_) => {}
        }
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(report(ApplyOutcome::Deleted)),
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            Ok(report(ApplyOutcome::NotFound))
        }
        Err(err) => Err(api_error::<K>("delete", name, namespace)(err)),
    }
}

/// Deletes what `ferry install` created, in reverse order; missing objects are fine.
pub async fn uninstall(
    client: &Client,
    options: &UninstallOptions,
) -> Result<Vec<AppliedObject>, ApplyError> {
    let ns = options.namespace.as_str();
    let cluster_name = format!("{CONTROLLER_NAME}-{ns}");
    let c = || client.clone();
    let mut report = vec![
        delete_one::<Deployment>(Api::namespaced(c(), ns), CONTROLLER_NAME, Some(ns), false)
            .await?,
        delete_one::<RoleBinding>(Api::namespaced(c(), ns), DATA_MOVER_NAME, Some(ns), false)
            .await?,
        delete_one::<Role>(Api::namespaced(c(), ns), DATA_MOVER_NAME, Some(ns), false).await?,
        delete_one::<ServiceAccount>(Api::namespaced(c(), ns), DATA_MOVER_NAME, Some(ns), false)
            .await?,
        delete_one::<RoleBinding>(Api::namespaced(c(), ns), CONTROLLER_NAME, Some(ns), false)
            .await?,
        delete_one::<Role>(Api::namespaced(c(), ns), CONTROLLER_NAME, Some(ns), false).await?,
        delete_one::<ClusterRoleBinding>(Api::all(c()), &cluster_name, None, false).await?,
        delete_one::<ClusterRole>(Api::all(c()), &cluster_name, None, false).await?,
        delete_one::<ServiceAccount>(Api::namespaced(c(), ns), CONTROLLER_NAME, Some(ns), false)
            .await?,
    ];
    if options.remove_crds {
        for crd in all_crds() {
            let name = crd.name_any();
            let api = Api::<CustomResourceDefinition>::all(c());
            report.push(delete_one(api, &name, None, true).await?);
        }
    }
    if !options.keep_namespace {
        let foreign = if options.delete_foreign {
            Vec::new()
        } else {
            foreign_objects(client, ns).await?
        };
        if foreign.is_empty() {
            report.push(delete_one::<Namespace>(Api::all(c()), ns, None, true).await?);
        } else {
            report.push(AppliedObject {
                kind: kind_name::<Namespace>(),
                name: ns.to_string(),
                namespace: None,
                outcome: ApplyOutcome::KeptInUse,
            });
        }
    }
    Ok(report)
}

/// What the namespace holds that ferry did not put there, as `kind/name`: the user's
/// secrets, ConfigMaps, claims, storage locations, DataUploads and DataDownloads, and
/// Deployments. Objects Kubernetes adds by itself (`kube-root-ca.crt`, service account
/// tokens) do not count; kinds whose CRD is not installed are skipped.
pub async fn foreign_objects(client: &Client, namespace: &str) -> Result<Vec<String>, ApplyError> {
    let mut found = Vec::new();
    let secrets = list_names::<k8s_openapi::api::core::v1::Secret>(client, namespace, |s| {
        s.type_.as_deref() != Some("kubernetes.io/service-account-token")
    })
    .await?;
    found.extend(secrets);
    found.extend(
        list_names::<k8s_openapi::api::core::v1::ConfigMap>(client, namespace, |c| {
            c.metadata.name.as_deref() != Some("kube-root-ca.crt")
        })
        .await?,
    );
    found.extend(
        list_names::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(client, namespace, |_| {
            true
        })
        .await?,
    );
    found.extend(list_names::<Deployment>(client, namespace, |_| true).await?);
    found.extend(
        list_names::<crate::crds::BackupStorageLocation>(client, namespace, |_| true).await?,
    );
    found.extend(list_names::<crate::crds::DataUpload>(client, namespace, |_| true).await?);
    found.extend(list_names::<crate::crds::DataDownload>(client, namespace, |_| true).await?);
    Ok(found)
}

/// `kind/name` of the objects in `namespace` that ferry did not create and `counts` keeps.
async fn list_names<K>(
    client: &Client,
    namespace: &str,
    counts: impl Fn(&K) -> bool,
) -> Result<Vec<String>, ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.list(&Default::default()).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .filter(|o| !is_ours(*o) && counts(o))
            .map(|o| format!("{}/{}", kind_name::<K>(), o.name_any()))
            .collect()),
        // A kind whose CRD is not installed holds nothing (the API server answers a bare 404).
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(err) => Err(api_error::<K>("list", "", Some(namespace))(err)),
    }
}

impl UninstallOptions {
    /// Uninstall from `namespace`, keeping CRDs and removing the namespace if ferry made it.
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            remove_crds: false,
            keep_namespace: false,
            delete_foreign: false,
        }
    }
}

impl From<&InstallOptions> for UninstallOptions {
    fn from(options: &InstallOptions) -> Self {
        Self::new(&options.namespace)
    }
}
