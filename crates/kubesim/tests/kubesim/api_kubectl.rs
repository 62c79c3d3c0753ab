//! kubectl (the pinned v1.34 that testenv/build makes, see `api_support::kubectl`) against the API server, through a kubeconfig file, as a
//! user would drive it.

use crate::api_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use api_support::{kubectl, start};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use kubesim::ApiServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Kubectl {
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &ApiServer) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl { kubeconfig, dir }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(kubectl());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            // kubectl caches discovery under $HOME; keep it per test.
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl and returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl, which must succeed, and returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  mode: fast
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: main
    image: busybox:1.36
    command: [sleep, "3600"]
"#;

#[tokio::test]
async fn kubectl_create_get_apply_label_patch_delete() {
    let (server, client) = start().await;
    let k = Kubectl::new(&server);
    let file = k.write("app.yaml", MANIFESTS);
    let out = k.ok(&["create", "-f", path_str(&file)]).await;
    assert!(
        out.contains("configmap/settings created") && out.contains("pod/web created"),
        "{out}"
    );

    // Table output: server-side columns.
    let table = k.ok(&["get", "pods"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");
    assert!(table.contains("Pending"), "{table}");
    let wide = k.ok(&["get", "po", "-o", "wide"]).await;
    assert!(wide.lines().next().unwrap().contains("NODE"), "{wide}");

    let json: Value =
        serde_json::from_str(&k.ok(&["get", "cm", "settings", "-o", "json"]).await).unwrap();
    assert_eq!(json["data"]["mode"], "fast");
    let yaml = k.ok(&["get", "configmap", "settings", "-o", "yaml"]).await;
    assert!(yaml.contains("mode: fast"), "{yaml}");
    let listed: Value = serde_json::from_str(
        &k.ok(&["get", "cm,pods", "-l", "app=web", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    // apply: first time on a created object, then a change.
    k.ok(&["apply", "-f", path_str(&file)]).await;
    let changed = k.write("app2.yaml", &MANIFESTS.replace("mode: fast", "mode: slow"));
    let out = k.ok(&["apply", "-f", path_str(&changed)]).await;
    assert!(out.contains("configmap/settings configured"), "{out}");
    assert!(out.contains("pod/web unchanged"), "{out}");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "slow"
    );

    k.ok(&["label", "cm", "settings", "tier=backend"]).await;
    k.ok(&["annotate", "cm", "settings", "owner=team-a"]).await;
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/data/mode"}]"#,
    ])
    .await;
    let cm = cms.get("settings").await.unwrap();
    assert_eq!(cm.metadata.labels.unwrap()["tier"], "backend");
    assert_eq!(cm.metadata.annotations.unwrap()["owner"], "team-a");
    let data = cm.data.unwrap();
    assert_eq!(data.get("extra").map(String::as_str), Some("1"));
    assert!(!data.contains_key("mode"));
    let names = k
        .ok(&["get", "cm", "-l", "tier in (backend),app", "-o", "name"])
        .await;
    assert_eq!(names.trim(), "configmap/settings");

    k.ok(&["delete", "-f", path_str(&file)]).await;
    let (ok, _, err) = k.run(&["get", "cm", "settings"]).await;
    assert!(!ok);
    assert!(
        err.contains("NotFound") && err.contains("configmaps \"settings\" not found"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn kubectl_get_watch_streams_changes() {
    let (server, client) = start().await;
    let k = Kubectl::new(&server);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &Default::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "watched", "labels": {"w": "me"}}, "data": {"a": "1"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let mut child = k
        // A list watch resumes from the list's resourceVersion, so a change made right after
        // the first line is never missed (a single-object watch starts at "0" and skips).
        .command(&[
            "get",
            "cm",
            "-l",
            "w=me",
            "-w",
            "--no-headers",
            "-o",
            "custom-columns=A:.data.a",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.trim().to_string());
            match line.trim() {
                "1" => {
                    cms.patch(
                        "watched",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"a": "2"}})),
                    )
                    .await
                    .unwrap();
                }
                "2" => break,
                _ => {}
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_err()
    {
        child.kill().await.unwrap();
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "kubectl get -w shows the change; saw {seen:?}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(seen, ["1", "2"]);
    child.kill().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn kubectl_wait_for_condition_jsonpath_and_delete() {
    let (server, client) = start().await;
    let k = Kubectl::new(&server);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let file = k.write("app.yaml", MANIFESTS);
    k.ok(&["create", "-f", path_str(&file)]).await;

    // --for=condition: made true by a status update while kubectl waits.
    let waiter = k
        .command(&["wait", "--for=condition=Ready", "pod/web", "--timeout=20s"])
        .output();
    let updater = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        pods.patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]}})),
        )
        .await
        .unwrap();
    };
    let (out, ()) = tokio::join!(waiter, updater);
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));

    // --for=jsonpath on a PVC phase.
    let pvc = k.write(
        "pvc.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: manual\n  resources: {requests: {storage: 1Gi}}\n",
    );
    k.ok(&["apply", "-f", path_str(&pvc)]).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.patch_status(
        "data",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .unwrap();
    k.ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Bound",
        "pvc/data",
        "--timeout=20s",
    ])
    .await;

    // --for=delete: a finalizer holds the pod until it is removed.
    pods.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    k.ok(&["delete", "pod", "web", "--wait=false"]).await;
    let waiter = k
        .command(&["wait", "--for=delete", "pod/web", "--timeout=20s"])
        .output();
    let releaser = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            pods.get("web")
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
        );
        pods.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    };
    let (out, ()) = tokio::join!(waiter, releaser);
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pods.get_opt("web").await.unwrap().is_none());
    server.stop().await;
}

#[tokio::test]
async fn kubectl_serves_custom_resources_with_printer_columns() {
    let (server, _client) = start().await;
    let k = Kubectl::new(&server);
    let crd = k.write(
        "crd.yaml",
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#,
    );
    k.ok(&["apply", "-f", path_str(&crd)]).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ])
    .await;
    let widget = k.write(
        "w.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n",
    );
    k.ok(&["apply", "-f", path_str(&widget)]).await;
    k.ok(&[
        "patch",
        "wd",
        "w1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"phase":"Ready"}}"#,
    ])
    .await;
    let table = k.ok(&["get", "wd"]).await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "PHASE", "SIZE", "AGE"]);
    assert_eq!(rows[1][..3], ["w1", "Ready", "3"]);
    let resources = k.ok(&["api-resources", "--api-group", "example.com"]).await;
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );
    server.stop().await;
}

/// kubectl's `create` subcommands send protobuf for built-in kinds.
#[tokio::test]
async fn kubectl_create_subcommands_send_protobuf_that_is_read() {
    use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
    let (server, client) = start().await;
    let k = Kubectl::new(&server);
    let out = k.ok(&["create", "namespace", "velero"]).await;
    assert!(out.contains("namespace/velero created"), "{out}");
    k.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "velero",
        "--from-literal=password=s3cret",
    ])
    .await;
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "velero",
        "--from-literal=mode=fast",
    ])
    .await;
    k.ok(&["create", "serviceaccount", "mover", "-n", "velero"])
        .await;

    let ns = Api::<Namespace>::all(client.clone())
        .get("velero")
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let secret = Api::<Secret>::namespaced(client.clone(), "velero")
        .get("creds")
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"s3cret");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "velero")
        .get("cfg")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["mode"], "fast");
    Api::<ServiceAccount>::namespaced(client.clone(), "velero")
        .get("mover")
        .await
        .unwrap();
    server.stop().await;
}
