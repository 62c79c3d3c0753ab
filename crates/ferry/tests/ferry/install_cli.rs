//! `ferry install --dry-run` as a user runs it: the binary prints every manifest in YAML
//! (multi-document) or as a JSON List, each parsing as its Kubernetes type; bad flags fail
//! with a message naming the flag.

use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::Value;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run ferry")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "ferry failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Parses each manifest as the type its `kind` names and returns the kinds in order.
fn check_manifests(manifests: &[Value]) -> Vec<String> {
    fn parse<T: serde::de::DeserializeOwned>(value: &Value) {
        if let Err(err) = serde_json::from_value::<T>(value.clone()) {
            panic!("{} does not parse: {err}", value["kind"]);
        }
    }
    for value in manifests {
        match value["kind"].as_str().unwrap() {
            "Namespace" => parse::<Namespace>(value),
            "CustomResourceDefinition" => parse::<CustomResourceDefinition>(value),
            "ServiceAccount" => parse::<ServiceAccount>(value),
            "ClusterRole" => parse::<ClusterRole>(value),
            "ClusterRoleBinding" => parse::<ClusterRoleBinding>(value),
            "Role" => parse::<Role>(value),
            "RoleBinding" => parse::<RoleBinding>(value),
            "Deployment" => parse::<Deployment>(value),
            other => panic!("unexpected kind {other}"),
        }
    }
    manifests
        .iter()
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect()
}

const EXPECTED_KINDS: [&str; 13] = [
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
];

fn controller_args(manifests: &[Value]) -> Vec<String> {
    let deployment = manifests
        .iter()
        .find(|v| v["kind"] == "Deployment")
        .unwrap();
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .unwrap()
}

#[test]
fn dry_run_prints_yaml_documents() {
    let output = ferry(&[
        "install",
        "--node-agent-configmap=node-agent-config",
        "--namespace",
        "velero",
        "--dry-run",
    ]);
    let text = stdout_of(&output);
    assert!(text.starts_with("---\n"), "documents are separated by ---");
    let manifests: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML document"))
        .collect();
    assert_eq!(check_manifests(&manifests), EXPECTED_KINDS);
    let args = controller_args(&manifests);
    assert!(
        args.contains(&"--node-agent-configmap=node-agent-config".to_string()),
        "{args:?}"
    );
    assert_eq!(args[..3], ["controller", "--namespace", "velero"]);
}

#[test]
fn dry_run_prints_a_json_list() {
    let output = ferry(&[
        "install",
        "--node-agent-configmap",
        "tuning",
        "-n",
        "ferry-system",
        "--image",
        "registry.example/ferry:9",
        "--data-mover-name",
        "ferry-b",
        "--dry-run",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&stdout_of(&output)).expect("one JSON document");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    let manifests = list["items"].as_array().unwrap();
    assert_eq!(check_manifests(manifests), EXPECTED_KINDS);
    assert_eq!(
        controller_args(manifests),
        [
            "controller",
            "--namespace",
            "ferry-system",
            "--node-agent-configmap=tuning",
            "--data-mover-name",
            "ferry-b",
            "--image",
            "registry.example/ferry:9",
            "--service-account",
            "ferry-data-mover",
            "--log-format",
            "json",
        ]
    );
    let deployment = manifests
        .iter()
        .find(|v| v["kind"] == "Deployment")
        .unwrap();
    assert_eq!(deployment["metadata"]["namespace"], "ferry-system");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/ferry:9"
    );
}

#[test]
fn a_bad_name_fails_naming_the_flag_and_prints_nothing() {
    let output = ferry(&["install", "--node-agent-configmap=Node_Agent", "--dry-run"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--node-agent-configmap") && stderr.contains("Node_Agent"),
        "{stderr}"
    );
}

#[test]
fn the_configmap_flag_is_required_and_output_needs_dry_run() {
    let missing = ferry(&["install", "--dry-run"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--node-agent-configmap"));
    let output_without_dry_run = ferry(&["install", "--node-agent-configmap=c", "-o", "json"]);
    assert_eq!(output_without_dry_run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output_without_dry_run.stderr).contains("--dry-run"));
}

// ---- against an API server (kubesim) ----------------------------------------------------------

mod against_kubesim {
    use std::collections::BTreeMap;
    use std::path::Path;

    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, PostParams};
    use kube::{Client, Resource};
    use kubesim::ApiServer;

    const CRDS: [&str; 3] = [
        "datadownloads.velero.io",
        "datauploads.velero.io",
        "backupstoragelocations.velero.io",
    ];

    struct Run {
        code: Option<i32>,
        stdout: String,
        stderr: String,
    }

    async fn ferry_with(kubeconfig: &Path, args: &[&str]) -> Run {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .await
            .expect("run ferry");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn lines(run: &Run) -> Vec<&str> {
        assert_eq!(run.code, Some(0), "ferry failed: {}", run.stderr);
        run.stdout.lines().collect()
    }

    /// Every object install writes, by `kind/name`, with its resourceVersion (None: absent).
    async fn resource_versions(client: &Client, ns: &str) -> BTreeMap<String, Option<String>> {
        async fn rv<K>(api: Api<K>, name: &str) -> Option<String>
        where
            K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        {
            api.get_opt(name)
                .await
                .expect("read")
                .and_then(|o| o.meta().resource_version.clone())
        }
        let c = || client.clone();
        let cluster_name = format!("ferry-controller-{ns}");
        let mut out = BTreeMap::new();
        out.insert(
            format!("namespace/{ns}"),
            rv(Api::<Namespace>::all(c()), ns).await,
        );
        for crd in CRDS {
            out.insert(
                format!("crd/{crd}"),
                rv(Api::<CustomResourceDefinition>::all(c()), crd).await,
            );
        }
        let n = "ferry-controller";
        out.insert(
            "sa".into(),
            rv(Api::<ServiceAccount>::namespaced(c(), ns), n).await,
        );
        out.insert("role".into(), rv(Api::<Role>::namespaced(c(), ns), n).await);
        out.insert(
            "rb".into(),
            rv(Api::<RoleBinding>::namespaced(c(), ns), n).await,
        );
        out.insert(
            "deploy".into(),
            rv(Api::<Deployment>::namespaced(c(), ns), n).await,
        );
        // The restore pods' own identity.
        let m = "ferry-data-mover";
        out.insert(
            "mover-sa".into(),
            rv(Api::<ServiceAccount>::namespaced(c(), ns), m).await,
        );
        out.insert(
            "mover-role".into(),
            rv(Api::<Role>::namespaced(c(), ns), m).await,
        );
        out.insert(
            "mover-rb".into(),
            rv(Api::<RoleBinding>::namespaced(c(), ns), m).await,
        );
        out.insert(
            "cr".into(),
            rv(Api::<ClusterRole>::all(c()), &cluster_name).await,
        );
        out.insert(
            "crb".into(),
            rv(Api::<ClusterRoleBinding>::all(c()), &cluster_name).await,
        );
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn install_twice_changes_nothing_and_uninstall_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let server = ApiServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let client = server.client().unwrap();
        let install = [
            "install",
            "--node-agent-configmap=node-agent-config",
            "-n",
            "ferry-test",
        ];

        let first = ferry_with(&kubeconfig, &install).await;
        let first = lines(&first);
        assert_eq!(first.len(), 13, "{first:#?}");
        assert!(first.iter().all(|l| l.ends_with(" created")), "{first:#?}");
        assert!(
            first.contains(&"deployment.apps/ferry-controller created"),
            "{first:#?}"
        );
        let before = resource_versions(&client, "ferry-test").await;
        assert!(
            before.values().all(Option::is_some),
            "everything exists: {before:#?}"
        );

        let second = ferry_with(&kubeconfig, &install).await;
        let second = lines(&second);
        assert_eq!(second.len(), 13);
        assert!(
            second.iter().all(|l| l.ends_with(" unchanged")),
            "{second:#?}"
        );
        assert_eq!(
            resource_versions(&client, "ferry-test").await,
            before,
            "nothing was rewritten"
        );

        // A changed flag converges only the Deployment.
        let mut changed = install.to_vec();
        changed.push("--data-mover-name=ferry-two");
        let third = ferry_with(&kubeconfig, &changed).await;
        let configured: Vec<&str> = lines(&third)
            .into_iter()
            .filter(|l| !l.ends_with(" unchanged"))
            .collect();
        assert_eq!(configured, ["deployment.apps/ferry-controller configured"]);
        let deployment = Api::<Deployment>::namespaced(client.clone(), "ferry-test")
            .get("ferry-controller")
            .await
            .unwrap();
        let args = deployment.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert!(args.contains(&"ferry-two".to_string()), "{args:?}");

        // Uninstall removes the controller objects and the namespace ferry created; CRDs stay.
        let removed = ferry_with(&kubeconfig, &["uninstall", "-n", "ferry-test", "--force"]).await;
        let removed = lines(&removed);
        assert!(
            removed.iter().all(|l| l.ends_with(" deleted")),
            "{removed:#?}"
        );
        let after = resource_versions(&client, "ferry-test").await;
        for (object, version) in &after {
            if object.starts_with("crd/") {
                assert!(version.is_some(), "{object} kept without --crds");
            } else if object.starts_with("namespace/") {
                let ns = Api::<Namespace>::all(client.clone())
                    .get_opt("ferry-test")
                    .await
                    .unwrap();
                assert!(
                    ns.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
                    "namespace deleted or terminating"
                );
            } else {
                assert!(version.is_none(), "{object} deleted");
            }
        }

        let with_crds = ferry_with(
            &kubeconfig,
            &["uninstall", "-n", "ferry-test", "--crds", "--force"],
        )
        .await;
        let with_crds = lines(&with_crds);
        for crd in CRDS {
            let line = format!("customresourcedefinition.apiextensions.k8s.io/{crd} deleted");
            assert!(with_crds.contains(&line.as_str()), "{with_crds:#?}");
        }
        let again = ferry_with(
            &kubeconfig,
            &["uninstall", "-n", "ferry-test", "--crds", "--force"],
        )
        .await;
        assert!(
            lines(&again).iter().all(|l| l.ends_with(" not found")),
            "uninstall tolerates missing objects: {}",
            again.stdout
        );
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uninstall_asks_first_and_keeps_a_namespace_holding_the_users_objects() {
        let dir = tempfile::tempdir().unwrap();
        let server = ApiServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let client = server.client().unwrap();
        let ns = "ferry-keep";
        lines(
            &ferry_with(
                &kubeconfig,
                &["install", "--node-agent-configmap=cfg", "-n", ns],
            )
            .await,
        );
        // The user's password secret, as the quickstarts create it.
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "velero-repo-credentials", "namespace": ns},
                "stringData": {"repository-password": "secret"},
            }))
            .unwrap();
        let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns);
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let deployments = Api::<Deployment>::namespaced(client.clone(), ns);

        // Not on a terminal and without --force: nothing happens, and the error says why.
        let refused = ferry_with(&kubeconfig, &["uninstall", "-n", ns]).await;
        assert_eq!(refused.code, Some(1));
        assert!(
            refused.stderr.contains("confirm on a terminal, or pass --force")
                && refused.stderr.contains("namespace is kept, since it holds objects ferry did not create (secret/velero-repo-credentials)"),
            "{}",
            refused.stderr
        );
        assert!(
            deployments
                .get_opt("ferry-controller")
                .await
                .unwrap()
                .is_some()
        );

        // On a terminal it asks; anything but yes deletes nothing.
        let shell = format!(
            "KUBECONFIG={} {} uninstall -n {ns}",
            kubeconfig.display(),
            env!("CARGO_BIN_EXE_ferry")
        );
        let mut script = tokio::process::Command::new("script")
            .args(["-qec", &shell, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux gives ferry a terminal");
        use tokio::io::AsyncWriteExt;
        let mut stdin = script.stdin.take().unwrap();
        stdin.write_all(b"n\n").await.unwrap();
        let out = script.wait_with_output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Continue? [y/N]"), "{text}");
        assert!(text.contains("Nothing deleted."), "{text}");
        assert!(
            deployments
                .get_opt("ferry-controller")
                .await
                .unwrap()
                .is_some()
        );

        // --force uninstalls ferry, and keeps the namespace with the user's secret in it.
        let run = ferry_with(&kubeconfig, &["uninstall", "-n", ns, "--force"]).await;
        let report = lines(&run);
        assert!(
            report.contains(&"deployment.apps/ferry-controller deleted"),
            "{report:#?}"
        );
        assert!(
            report.contains(&"namespace/ferry-keep kept: it holds objects ferry did not create"),
            "{report:#?}"
        );
        assert!(
            report.contains(&"  secret/velero-repo-credentials"),
            "{report:#?}"
        );
        let namespaces = Api::<Namespace>::all(client.clone());
        let kept = namespaces.get(ns).await.unwrap();
        assert!(kept.metadata.deletion_timestamp.is_none());
        assert!(
            secrets
                .get_opt("velero-repo-credentials")
                .await
                .unwrap()
                .is_some()
        );

        // Told to, it removes the namespace with what it holds.
        let run = ferry_with(
            &kubeconfig,
            &[
                "uninstall",
                "-n",
                ns,
                "--force",
                "--with-namespace-contents",
            ],
        )
        .await;
        assert!(
            lines(&run).contains(&"namespace/ferry-keep deleted"),
            "{}",
            run.stdout
        );
        assert!(
            namespaces
                .get_opt(ns)
                .await
                .unwrap()
                .is_none_or(|n| n.metadata.deletion_timestamp.is_some())
        );
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crds_and_namespace_velero_installed_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let server = ApiServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let client = server.client().unwrap();
        // Velero's own DataDownload CRD and namespace, as `velero install` leaves them.
        let reference = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ferry-controller/tests/crds_reference/velero/velero.io_datadownloads.yaml");
        let velero_crd: CustomResourceDefinition =
            serde_yaml_ng::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
        let crds = Api::<CustomResourceDefinition>::all(client.clone());
        crds.create(&PostParams::default(), &velero_crd)
            .await
            .unwrap();
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "velero"}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let velero_version = |crd: CustomResourceDefinition| crd.metadata.resource_version;
        let before = velero_version(crds.get("datadownloads.velero.io").await.unwrap());

        let run = ferry_with(&kubeconfig, &["install", "--node-agent-configmap=cfg"]).await;
        let report = lines(&run);
        assert!(report.contains(
            &"customresourcedefinition.apiextensions.k8s.io/datadownloads.velero.io already present, not managed by ferry: left as is"
        ), "{report:#?}");
        assert!(
            report.contains(&"namespace/velero already present, not managed by ferry: left as is")
        );
        assert!(report.contains(
            &"customresourcedefinition.apiextensions.k8s.io/datauploads.velero.io created"
        ));
        assert_eq!(
            velero_version(crds.get("datadownloads.velero.io").await.unwrap()),
            before
        );

        let run = ferry_with(&kubeconfig, &["uninstall", "--crds", "--force"]).await;
        let report = lines(&run);
        assert!(report.contains(
            &"customresourcedefinition.apiextensions.k8s.io/datadownloads.velero.io already present, not managed by ferry: left as is"
        ), "{report:#?}");
        assert!(
            crds.get_opt("datadownloads.velero.io")
                .await
                .unwrap()
                .is_some(),
            "Velero's CRD survives"
        );
        assert!(
            crds.get_opt("datauploads.velero.io")
                .await
                .unwrap()
                .is_none(),
            "ferry's CRD is gone"
        );
        let ns = Api::<Namespace>::all(client.clone())
            .get_opt("velero")
            .await
            .unwrap();
        assert!(
            ns.is_some_and(|ns| ns.metadata.deletion_timestamp.is_none()),
            "Velero's namespace survives"
        );
        server.stop().await;
    }

    async fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
        // The pinned kubectl testenv/build makes (testenv/run-tests puts it first on PATH).
        let output = tokio::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .await
            .expect("kubectl on PATH: run the tests with testenv/run-tests");
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The dry-run output is what a user pipes to kubectl; applying it and then running
    /// `ferry install` finds nothing to change, and the installed CRDs serve ferry's typed
    /// DataDownloads with Velero's `kubectl get` columns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dry_run_output_applied_by_kubectl_serves_ferry_objects() {
        use ferry_controller::crds::{
            DataDownload, DataDownloadPhase, DataDownloadSpec, DataDownloadStatus,
            DataMoveOperationProgress, TargetVolumeSpec,
        };

        let dir = tempfile::tempdir().unwrap();
        let server = ApiServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let client = server.client().unwrap();
        let install = ["install", "--node-agent-configmap=cfg", "-n", "movers"];

        let mut dry_run = install.to_vec();
        dry_run.push("--dry-run");
        let manifests = dir.path().join("ferry.yaml");
        let rendered = ferry_with(&kubeconfig, &dry_run).await;
        assert_eq!(rendered.code, Some(0), "{}", rendered.stderr);
        std::fs::write(&manifests, &rendered.stdout).unwrap();
        let applied = kubectl(&kubeconfig, &["apply", "-f", manifests.to_str().unwrap()]).await;
        assert_eq!(applied.lines().count(), 13, "{applied}");

        let run = ferry_with(&kubeconfig, &install).await;
        let report = lines(&run);
        assert!(
            report.iter().all(|l| l.ends_with(" unchanged")),
            "{report:#?}"
        );

        let spec = DataDownloadSpec {
            target_volume: TargetVolumeSpec {
                pvc: "data-db-0".into(),
                pv: String::new(),
                namespace: "shop".into(),
            },
            backup_storage_location: "default".into(),
            datamover: Some("ferry".into()),
            snapshot_id: "6f1a9c3e".into(),
            source_namespace: "shop".into(),
            operation_timeout: "10m0s".into(),
            ..DataDownloadSpec::default()
        };
        let mut dd = DataDownload::new("restore-1-abcde", spec);
        dd.status = Some(DataDownloadStatus {
            phase: Some(DataDownloadPhase::InProgress),
            node: Some("node-3".into()),
            progress: Some(DataMoveOperationProgress {
                total_bytes: Some(4096),
                bytes_done: Some(1024),
            }),
            ..DataDownloadStatus::default()
        });
        let api = Api::<DataDownload>::namespaced(client.clone(), "movers");
        let created = api.create(&PostParams::default(), &dd).await.unwrap();
        assert_eq!(created.phase(), DataDownloadPhase::InProgress);

        let table = kubectl(&kubeconfig, &["get", "datadownloads", "-n", "movers"]).await;
        let header = table.lines().next().unwrap();
        for column in [
            "STATUS",
            "BYTES DONE",
            "TOTAL BYTES",
            "STORAGE LOCATION",
            "NODE",
        ] {
            assert!(header.contains(column), "{table}");
        }
        let row = table.lines().nth(1).unwrap();
        for cell in [
            "restore-1-abcde",
            "InProgress",
            "1024",
            "4096",
            "default",
            "node-3",
        ] {
            assert!(row.contains(cell), "{table}");
        }

        // Status is written on the object itself (no status subresource), as Velero does.
        let mut done = created.clone();
        done.status.as_mut().unwrap().phase = Some(DataDownloadPhase::Completed);
        api.replace("restore-1-abcde", &PostParams::default(), &done)
            .await
            .unwrap();
        let read = api.get("restore-1-abcde").await.unwrap();
        assert_eq!(read.phase(), DataDownloadPhase::Completed);
        assert_eq!(read.spec, dd.spec);
        server.stop().await;
    }
}
