//! The controller Deployment: one replica of `ferry controller`, non-root, read-only root
//! filesystem, probed over its HTTP port.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CONTROLLER_NAME, DATA_MOVER_NAME, InstallOptions, common_labels, metadata};

/// Port the controller serves `/metrics`, `/healthz` and `/readyz` on (all interfaces).
/// `ferry controller` must listen here by default: the Deployment passes no flag for it.
pub const CONTROLLER_HTTP_PORT: i32 = 8080;
/// Name of that container port (Prometheus scrape configs refer to it).
pub const CONTROLLER_HTTP_PORT_NAME: &str = "http";

/// User and group the controller runs as (no shell or root needed).
const RUN_AS_USER: i64 = 65532;

/// The container's arguments: `controller --namespace NS --node-agent-configmap=NAME
/// --data-mover-name NAME --image IMAGE --service-account ferry-data-mover`: restore pods run
/// the controller's own image, as the data mover's ServiceAccount (its own, narrow Role).
pub fn controller_args(options: &InstallOptions) -> Vec<String> {
    vec![
        "controller".to_string(),
        "--namespace".to_string(),
        options.namespace.clone(),
        format!("--node-agent-configmap={}", options.node_agent_configmap),
        "--data-mover-name".to_string(),
        options.data_mover_name.clone(),
        "--image".to_string(),
        options.image.clone(),
        "--service-account".to_string(),
        DATA_MOVER_NAME.to_string(),
        // Pod logs go to collectors: one JSON object per line.
        "--log-format".to_string(),
        "json".to_string(),
    ]
}

fn selector_labels() -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "ferry"),
        ("app.kubernetes.io/component", "controller"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn http_probe(path: &str, initial_delay_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(CONTROLLER_HTTP_PORT_NAME.to_string()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay_seconds),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

pub(super) fn deployment(options: &InstallOptions) -> Deployment {
    let mut labels = common_labels();
    labels.extend(selector_labels());
    let container = Container {
        name: "controller".to_string(),
        image: Some(options.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Some(controller_args(options)),
        env: Some(vec![
            // Identity for leader election and for events the controller records.
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(CONTROLLER_HTTP_PORT_NAME.to_string()),
            container_port: CONTROLLER_HTTP_PORT,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(http_probe("/healthz", 5)),
        readiness_probe: Some(http_probe("/readyz", 2)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
            limits: Some(quantities(&[("memory", "512Mi")])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Deployment {
        metadata: ObjectMeta {
            labels: Some(labels.clone()),
            ..metadata(CONTROLLER_NAME, Some(&options.namespace))
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector_labels()),
                ..LabelSelector::default()
            },
            // Never two controllers at once, even briefly during an upgrade.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_string()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(CONTROLLER_NAME.to_string()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
