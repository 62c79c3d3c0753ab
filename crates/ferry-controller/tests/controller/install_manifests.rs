//! What `ferry install` renders: each object parses as the Kubernetes type it claims to be,
//! the Deployment runs `ferry controller` with the install's flags, RBAC has no wildcard and
//! grants what the controller needs, and the CRDs are ferry's Velero-compatible ones.

use ferry_controller::install::{
    CONTROLLER_HTTP_PORT, InstallOptions, cluster_role_rules, data_mover_role_rules,
    namespaced_role_rules, render, render_manifests,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn options() -> InstallOptions {
    InstallOptions {
        namespace: "backup-system".into(),
        image: "registry.example/ferry:1.2.3".into(),
        node_agent_configmap: "node-agent-config".into(),
        data_mover_name: "ferry".into(),
    }
}

fn of_kind<'a>(values: &'a [Value], kind: &str) -> Vec<&'a Value> {
    values.iter().filter(|v| v["kind"] == kind).collect()
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", value["kind"]))
}

#[test]
fn every_manifest_parses_as_the_type_it_claims() {
    let values = render_manifests(&options()).unwrap();
    let kinds: Vec<&str> = values.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Deployment",
        ],
        "apply order: namespace and CRDs first, Deployment last"
    );
    for value in &values {
        let expected_api_version = match value["kind"].as_str().unwrap() {
            "Namespace" | "ServiceAccount" => "v1",
            "CustomResourceDefinition" => "apiextensions.k8s.io/v1",
            "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => {
                "rbac.authorization.k8s.io/v1"
            }
            "Deployment" => "apps/v1",
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(value["apiVersion"], expected_api_version);
        assert_eq!(
            value["metadata"]["labels"]["app.kubernetes.io/managed-by"], "ferry",
            "{} carries ferry's label",
            value["kind"]
        );
        match value["kind"].as_str().unwrap() {
            "Namespace" => drop(parse::<Namespace>(value)),
            "CustomResourceDefinition" => drop(parse::<CustomResourceDefinition>(value)),
            "ServiceAccount" => drop(parse::<ServiceAccount>(value)),
            "ClusterRole" => drop(parse::<ClusterRole>(value)),
            "ClusterRoleBinding" => drop(parse::<ClusterRoleBinding>(value)),
            "Role" => drop(parse::<Role>(value)),
            "RoleBinding" => drop(parse::<RoleBinding>(value)),
            "Deployment" => drop(parse::<Deployment>(value)),
            _ => unreachable!(),
        }
    }
    let crd_names: Vec<&str> = of_kind(&values, "CustomResourceDefinition")
        .iter()
        .map(|v| v["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        crd_names,
        [
            "datadownloads.velero.io",
            "datauploads.velero.io",
            "backupstoragelocations.velero.io"
        ]
    );
}

#[test]
fn namespaced_objects_live_in_the_install_namespace() {
    let values = render_manifests(&options()).unwrap();
    assert_eq!(
        of_kind(&values, "Namespace")[0]["metadata"]["name"],
        "backup-system"
    );
    for kind in ["ServiceAccount", "Role", "RoleBinding", "Deployment"] {
        assert_eq!(
            of_kind(&values, kind)[0]["metadata"]["namespace"],
            "backup-system",
            "{kind}"
        );
    }
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    ] {
        assert!(
            of_kind(&values, kind)[0]["metadata"]
                .get("namespace")
                .is_none(),
            "{kind}"
        );
    }
}

#[test]
fn deployment_runs_the_controller_with_the_install_flags() {
    let manifests = render(&options()).unwrap();
    let deployment = manifests.deployment;
    let spec = deployment.spec.unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("ferry-controller")
    );
    assert_eq!(
        manifests.service_account.metadata.name.as_deref(),
        Some("ferry-controller")
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example/ferry:1.2.3")
    );
    assert_eq!(
        container.args.as_deref().unwrap(),
        [
            "controller",
            "--namespace",
            "backup-system",
            "--node-agent-configmap=node-agent-config",
            "--data-mover-name",
            "ferry",
            "--image",
            "registry.example/ferry:1.2.3",
            "--service-account",
            "ferry-data-mover",
            "--log-format",
            "json",
        ]
    );
    let port = &container.ports.as_ref().unwrap()[0];
    assert_eq!(port.container_port, CONTROLLER_HTTP_PORT);
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(probe_path(&container.liveness_probe), "/healthz");
    assert_eq!(probe_path(&container.readiness_probe), "/readyz");
    // Selector matches the pod template, or the Deployment would be rejected.
    let selector = spec.selector.match_labels.unwrap();
    let template_labels = spec.template.metadata.unwrap().labels.unwrap();
    for (key, value) in &selector {
        assert_eq!(
            template_labels.get(key),
            Some(value),
            "template lacks selector label {key}"
        );
    }
    let security = pod.security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    let container_security = container.security_context.as_ref().unwrap();
    assert_eq!(container_security.allow_privilege_escalation, Some(false));
    assert_eq!(container_security.read_only_root_filesystem, Some(true));
}

#[test]
fn data_mover_name_and_configmap_flow_into_the_args() {
    let custom = InstallOptions {
        data_mover_name: "ferry-staging".into(),
        node_agent_configmap: "restore-tuning".into(),
        ..options()
    };
    let deployment = render(&custom).unwrap().deployment;
    let args = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"--node-agent-configmap=restore-tuning".to_string()),
        "{args:?}"
    );
    let at = args.iter().position(|a| a == "--data-mover-name").unwrap();
    assert_eq!(args[at + 1], "ferry-staging");
}

/// The controller's rules (the data mover's are checked on their own).
fn all_rules() -> Vec<PolicyRule> {
    let mut rules = cluster_role_rules();
    rules.extend(namespaced_role_rules());
    rules
}

fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|rule| {
        rule.api_groups
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|g| g == group)
            && rule
                .resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|r| r == resource)
            && rule.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn rbac_has_no_wildcards() {
    for rule in all_rules().into_iter().chain(data_mover_role_rules()) {
        let all_words = rule
            .api_groups
            .iter()
            .flatten()
            .chain(rule.resources.iter().flatten())
            .chain(rule.verbs.iter())
            .chain(rule.resource_names.iter().flatten());
        for word in all_words {
            assert!(!word.contains('*'), "wildcard in {rule:?}");
        }
        assert!(rule.non_resource_urls.is_none(), "{rule:?}");
    }
}

#[test]
fn rbac_grants_what_the_controller_does_and_no_more() {
    let cluster = cluster_role_rules();
    let namespaced = namespaced_role_rules();
    // Cluster-wide: reading target PVCs, rebinding PVs, placement inputs.
    for (group, resource, verb) in [
        ("", "persistentvolumeclaims", "get"),
        ("", "persistentvolumeclaims", "watch"),
        ("", "persistentvolumes", "patch"),
        ("", "persistentvolumes", "delete"),
        ("", "persistentvolumes", "watch"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("storage.k8s.io", "storageclasses", "get"),
        ("storage.k8s.io", "storageclasses", "watch"),
    ] {
        assert!(
            grants(&cluster, group, resource, verb),
            "cluster: {verb} {group}/{resource}"
        );
    }
    // In ferry's namespace: DataDownloads, restore PVCs and pods, config, leases, events.
    for (group, resource, verb) in [
        ("velero.io", "datadownloads", "watch"),
        ("velero.io", "datadownloads", "patch"),
        ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumeclaims", "delete"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods", "watch"),
        ("", "configmaps", "watch"),
        ("coordination.k8s.io", "leases", "update"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
        ("", "events", "list"),
        // The backup half: DataUploads stepped like DataDownloads, the location checked, the
        // backup snapshot created here.
        ("velero.io", "datauploads", "watch"),
        ("velero.io", "datauploads", "patch"),
        ("velero.io", "backupstoragelocations", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "create"),
        // `velero backup delete`: is the deleted DataUpload's Backup being deleted, or did
        // a DeleteBackupRequest delete it?
        ("velero.io", "backups", "get"),
        ("velero.io", "deletebackuprequests", "list"),
    ] {
        assert!(
            grants(&namespaced, group, resource, verb),
            "namespace: {verb} {group}/{resource}"
        );
    }
    // Cluster-wide for backups: the source snapshot waited on (watched) and deleted after the
    // take-over, contents watched, retained, created and deleted.
    for (group, resource, verb) in [
        ("snapshot.storage.k8s.io", "volumesnapshots", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "list"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "watch"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "delete"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "list"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "watch"),
        (
            "snapshot.storage.k8s.io",
            "volumesnapshotcontents",
            "create",
        ),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "patch"),
        (
            "snapshot.storage.k8s.io",
            "volumesnapshotcontents",
            "delete",
        ),
    ] {
        assert!(
            grants(&cluster, group, resource, verb),
            "cluster: {verb} {group}/{resource}"
        );
    }
    // Never: secrets (the data mover reads those), writing locations, updating (rather than
    // patching) PVs, DataDownloads or DataUploads, deleting them, creating snapshots in the
    // workloads' namespaces, writing nodes.
    for (group, resource, verb) in [
        ("", "secrets", "get"),
        ("", "secrets", "list"),
        ("velero.io", "backupstoragelocations", "patch"),
        ("velero.io", "backupstoragelocations", "list"),
        ("velero.io", "datauploads", "update"),
        ("velero.io", "datauploads", "delete"),
        ("", "nodes", "update"),
        ("", "persistentvolumes", "update"),
        ("velero.io", "datadownloads", "update"),
        ("velero.io", "datadownloads", "delete"),
        ("", "pods/log", "get"),
        // Velero's objects are only read: Velero deletes backups and answers requests.
        ("velero.io", "backups", "list"),
        ("velero.io", "backups", "watch"),
        ("velero.io", "backups", "patch"),
        ("velero.io", "backups", "update"),
        ("velero.io", "backups", "delete"),
        ("velero.io", "deletebackuprequests", "get"),
        ("velero.io", "deletebackuprequests", "watch"),
        ("velero.io", "deletebackuprequests", "create"),
        ("velero.io", "deletebackuprequests", "patch"),
        ("velero.io", "deletebackuprequests", "update"),
        ("velero.io", "deletebackuprequests", "delete"),
    ] {
        assert!(
            !grants(&all_rules(), group, resource, verb),
            "must not grant {verb} {group}/{resource}"
        );
    }
    // Nothing is created outside ferry's namespace, nor deleted there but PVs and snapshots.
    for (group, resource, verb) in [
        ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumeclaims", "delete"),
        ("", "pods", "create"),
        ("", "configmaps", "get"),
        ("events.k8s.io", "events", "create"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "create"),
        ("velero.io", "backups", "get"),
        ("velero.io", "deletebackuprequests", "list"),
    ] {
        assert!(
            !grants(&cluster, group, resource, verb),
            "cluster-wide {verb} {group}/{resource}"
        );
    }
}

#[test]
fn the_data_mover_reads_its_inputs_and_reports_progress_only() {
    let rules = data_mover_role_rules();
    for (group, resource, verb) in [
        ("velero.io", "datadownloads", "get"),
        ("velero.io", "datadownloads", "patch"),
        ("velero.io", "datauploads", "get"),
        ("velero.io", "datauploads", "patch"),
        ("velero.io", "backupstoragelocations", "get"),
        ("", "secrets", "get"),
    ] {
        assert!(
            grants(&rules, group, resource, verb),
            "{verb} {group}/{resource}"
        );
    }
    for (group, resource, verb) in [
        ("", "secrets", "list"),
        ("velero.io", "datadownloads", "list"),
        ("velero.io", "datauploads", "list"),
        ("", "pods", "create"),
        ("", "persistentvolumes", "patch"),
        ("velero.io", "backupstoragelocations", "patch"),
        // The forget pod removes a snapshot; whether to is the controller's decision.
        ("velero.io", "datauploads", "delete"),
        ("velero.io", "backups", "get"),
        ("velero.io", "deletebackuprequests", "list"),
    ] {
        assert!(
            !grants(&rules, group, resource, verb),
            "must not: {verb} {group}/{resource}"
        );
    }
    let manifests = render(&options()).unwrap();
    let rb = &manifests.data_mover_role_binding;
    assert_eq!(
        (rb.role_ref.kind.as_str(), Some(&rb.role_ref.name)),
        ("Role", manifests.data_mover_role.metadata.name.as_ref())
    );
    let subject = &rb.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("ferry-data-mover", Some("backup-system"))
    );
    assert_eq!(
        manifests
            .data_mover_service_account
            .metadata
            .name
            .as_deref(),
        Some("ferry-data-mover")
    );
}

#[test]
fn bindings_point_at_the_roles_and_the_service_account() {
    let manifests = render(&options()).unwrap();
    let crb = &manifests.cluster_role_binding;
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(
        Some(&crb.role_ref.name),
        manifests.cluster_role.metadata.name.as_ref()
    );
    assert_eq!(
        crb.role_ref.name, "ferry-controller-backup-system",
        "cluster names carry the namespace"
    );
    let rb = &manifests.role_binding;
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(
        Some(&rb.role_ref.name),
        manifests.role.metadata.name.as_ref()
    );
    for subjects in [
        crb.subjects.as_ref().unwrap(),
        rb.subjects.as_ref().unwrap(),
    ] {
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, "ferry-controller");
        assert_eq!(subjects[0].namespace.as_deref(), Some("backup-system"));
    }
}

#[test]
fn invalid_options_render_nothing_and_name_the_flag() {
    let bad = InstallOptions {
        node_agent_configmap: "Node_Agent".into(),
        ..options()
    };
    let error = render_manifests(&bad).unwrap_err().to_string();
    assert!(
        error.contains("--node-agent-configmap") && error.contains("Node_Agent"),
        "{error}"
    );
}
