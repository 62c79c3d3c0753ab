//! The objects `ferry install` renders and applies: the namespace, the Velero CRDs ferry needs,
//! RBAC for the controller, and the controller Deployment.
//!
//! Rendering is pure ([`render`]) so the manifests are tested without a cluster; [`apply`]
//! writes them idempotently (get, then create or replace only what differs) and
//! [`uninstall`] removes them again.

pub mod apply;
mod deployment;
mod names;
mod rbac;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

pub use apply::{
    AppliedObject, ApplyError, ApplyOutcome, UninstallOptions, apply, foreign_objects, uninstall,
};
pub use deployment::{CONTROLLER_HTTP_PORT, CONTROLLER_HTTP_PORT_NAME, controller_args};
pub use names::{InstallError, validate_options};
pub use rbac::{cluster_role_rules, data_mover_role_rules, namespaced_role_rules};

use crate::crds::all_crds;
use crate::crds::definition::MANAGED_BY_LABEL;

/// Default namespace, the one Velero installs into, so ferry sits next to Velero.
pub const DEFAULT_NAMESPACE: &str = "velero";
/// Default `spec.datamover` value the controller claims DataDownloads for.
pub const DEFAULT_DATA_MOVER_NAME: &str = "ferry";
/// Default controller image: this build's version of the ferry image (see the Dockerfile).
pub const DEFAULT_IMAGE: &str = concat!("ferry:", env!("CARGO_PKG_VERSION"));
/// Name of the ServiceAccount, Role, RoleBinding and Deployment inside the namespace.
pub const CONTROLLER_NAME: &str = "ferry-controller";
/// ServiceAccount (and its Role, RoleBinding) the restore pods' data mover runs as.
pub const DATA_MOVER_NAME: &str = "ferry-data-mover";

/// What `ferry install` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOptions {
    /// Namespace for the controller; also where it watches DataDownloads.
    pub namespace: String,
    /// Container image for the controller.
    pub image: String,
    /// Name of the node-agent ConfigMap in `namespace` (Velero's `--node-agent-configmap`).
    pub node_agent_configmap: String,
    /// `spec.datamover` value the controller handles.
    pub data_mover_name: String,
}

impl InstallOptions {
    /// Options with the defaults for everything but the ConfigMap name.
    pub fn new(node_agent_configmap: &str) -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_string(),
            image: DEFAULT_IMAGE.to_string(),
            node_agent_configmap: node_agent_configmap.to_string(),
            data_mover_name: DEFAULT_DATA_MOVER_NAME.to_string(),
        }
    }

    /// Cluster-scoped RBAC objects carry the namespace in their name, so two installs in two
    /// namespaces do not overwrite (or uninstall) each other's.
    pub fn cluster_rbac_name(&self) -> String {
        format!("{CONTROLLER_NAME}-{}", self.namespace)
    }
}

/// Everything `ferry install` creates, typed.
#[derive(Clone, Debug)]
pub struct Manifests {
    pub namespace: Namespace,
    pub crds: Vec<CustomResourceDefinition>,
    pub service_account: ServiceAccount,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub role: Role,
    pub role_binding: RoleBinding,
    /// The restore pods' identity: ServiceAccount, Role and RoleBinding `ferry-data-mover`.
    pub data_mover_service_account: ServiceAccount,
    pub data_mover_role: Role,
    pub data_mover_role_binding: RoleBinding,
    pub deployment: Deployment,
}

impl Manifests {
    /// Every ClusterRole rendered (for permission checks).
    pub fn cluster_roles(&self) -> Vec<ClusterRole> {
        vec![self.cluster_role.clone()]
    }

    pub fn cluster_role_bindings(&self) -> Vec<ClusterRoleBinding> {
        vec![self.cluster_role_binding.clone()]
    }

    /// Every Role rendered, each in its namespace.
    pub fn roles(&self) -> Vec<Role> {
        vec![self.role.clone(), self.data_mover_role.clone()]
    }

    pub fn role_bindings(&self) -> Vec<RoleBinding> {
        vec![
            self.role_binding.clone(),
            self.data_mover_role_binding.clone(),
        ]
    }

    /// The objects as JSON, in the order they must be applied (namespace and CRDs first, the
    /// Deployment last, once the permissions it runs with exist).
    pub fn to_values(&self) -> Vec<Value> {
        let mut values = vec![to_value(&self.namespace)];
        values.extend(self.crds.iter().map(to_value));
        values.push(to_value(&self.service_account));
        values.push(to_value(&self.cluster_role));
        values.push(to_value(&self.cluster_role_binding));
        values.push(to_value(&self.role));
        values.push(to_value(&self.role_binding));
        values.push(to_value(&self.data_mover_service_account));
        values.push(to_value(&self.data_mover_role));
        values.push(to_value(&self.data_mover_role_binding));
        values.push(to_value(&self.deployment));
        values
    }
}

fn to_value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("Kubernetes objects serialize to JSON")
}

/// Labels on every object ferry installs.
pub fn common_labels() -> std::collections::BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "ferry"),
        (MANAGED_BY_LABEL.0, MANAGED_BY_LABEL.1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Metadata with ferry's labels.
fn metadata(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(common_labels()),
        ..ObjectMeta::default()
    }
}

/// Renders every object, after checking the options (each error names the flag to fix).
pub fn render(options: &InstallOptions) -> Result<Manifests, InstallError> {
    validate_options(options)?;
    let namespace = options.namespace.as_str();
    Ok(Manifests {
        namespace: Namespace {
            metadata: metadata(namespace, None),
            ..Namespace::default()
        },
        crds: all_crds(),
        service_account: ServiceAccount {
            metadata: metadata(CONTROLLER_NAME, Some(namespace)),
            ..ServiceAccount::default()
        },
        cluster_role: rbac::cluster_role(options),
        cluster_role_binding: rbac::cluster_role_binding(options),
        role: rbac::role(options),
        role_binding: rbac::role_binding(options),
        data_mover_service_account: ServiceAccount {
            metadata: metadata(DATA_MOVER_NAME, Some(namespace)),
            // The data mover talks to the API server with this account's token.
            ..ServiceAccount::default()
        },
        data_mover_role: rbac::data_mover_role(options),
        data_mover_role_binding: rbac::data_mover_role_binding(options),
        deployment: deployment::deployment(options),
    })
}

/// [`render`] as JSON values in apply order, each with `apiVersion` and `kind`.
pub fn render_manifests(options: &InstallOptions) -> Result<Vec<Value>, InstallError> {
    Ok(render(options)?.to_values())
}
