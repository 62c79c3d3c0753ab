//! `ferry backup create|get|describe` and the conventions it shares with `ferry restore`
//! (`-n`, `-o table|yaml|json`, `--kubeconfig`, `--context`), the binary run as a user runs
//! it against kubesim. No controller runs: the DataUploads' status is patched in by hand, as
//! the controller would, so these tests check the command line alone.

use crate::common;

use std::process::Output;

use common::*;
use ferry_controller::crds::DataUpload;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::json;

const DRIVER: &str = "hostpath.kubesim.io";

fn command(env: &Env, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args)
        .env("KUBECONFIG", env.cluster.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

async fn ferry(env: &Env, args: &[&str]) -> Output {
    command(env, args).output().await.unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

#[track_caller]
fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(out),
        stderr(out)
    );
    stderr(out)
}

/// The DataUpload's name from "DataUpload velero/NAME created for … (VolumeSnapshot NS/NAME)".
fn created_name(out: &Output) -> String {
    let text = stdout(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("DataUpload "))
        .unwrap_or_else(|| panic!("no creation line in {text:?}"));
    let id = line.split_whitespace().nth(1).unwrap();
    id.strip_prefix("velero/").unwrap().to_string()
}

fn snapshot_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind),
        plural,
    )
}

fn snapshots(env: &Env) -> Api<DynamicObject> {
    Api::namespaced_with(
        env.client.clone(),
        APP,
        &snapshot_resource("VolumeSnapshot", "volumesnapshots"),
    )
}

async fn snapshot_class(env: &Env, name: &str, driver: &str, default: bool) {
    let classes: Api<DynamicObject> = Api::all_with(
        env.client.clone(),
        &snapshot_resource("VolumeSnapshotClass", "volumesnapshotclasses"),
    );
    let mut class = json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": name},
        "driver": driver, "deletionPolicy": "Delete",
    });
    if default {
        class["metadata"]["annotations"] =
            json!({"snapshot.storage.kubernetes.io/is-default-class": "true"});
    }
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(class).unwrap(),
        )
        .await
        .unwrap();
}

/// A claim of `class` in `app`; with `bound`, waits until it is Bound. Returns its uid.
async fn claim(env: &Env, name: &str, class: &str, bound: bool) -> String {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": APP},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
    let created = claims.create(&PostParams::default(), &pvc).await.unwrap();
    if bound {
        wait_for(&format!("claim {name} bound"), 40, || {
            let claims = claims.clone();
            async move {
                let c = claims.get(name).await.ok()?;
                (c.status?.phase.as_deref() == Some("Bound")).then_some(())
            }
        })
        .await;
    }
    created.metadata.uid.unwrap()
}

async fn data_upload(env: &Env, name: &str) -> DataUpload {
    Api::<DataUpload>::namespaced(env.client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

async fn count_uploads(env: &Env) -> usize {
    Api::<DataUpload>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

/// Merges `status` into the DataUpload, as the controller would (Velero's CRDs have no status
/// subresource).
async fn set_status(env: &Env, name: &str, status: serde_json::Value) {
    Api::<DataUpload>::namespaced(env.client.clone(), NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_create_get_describe() {
    let env = env(Backend::Kubesim, 1, 0, json!({})).await;
    let uid = claim(&env, "data", "immediate", true).await;

    // Refusals change nothing and name the cause.
    let err = fails(&ferry(&env, &["backup", "create", "--pvc", "app/data"]).await);
    assert!(
        err.contains("no VolumeSnapshotClass") && err.contains(DRIVER),
        "{err}"
    );
    let err = fails(&ferry(&env, &["backup", "create", "--pvc", "app/missing"]).await);
    assert!(
        err.contains("PersistentVolumeClaim app/missing not found"),
        "{err}"
    );
    let err = fails(&ferry(&env, &["backup", "create", "--pvc", "data"]).await);
    assert!(err.contains("NAMESPACE/PVC"), "{err}");
    // `standard` waits for a consumer: the claim stays Pending.
    claim(&env, "unbound", "standard", false).await;
    let err = fails(&ferry(&env, &["backup", "create", "--pvc", "app/unbound"]).await);
    assert!(err.contains("app/unbound is Pending, not Bound"), "{err}");
    // A claim bound to a volume that is not CSI.
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "static-pv"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "manual", "hostPath": {"path": "/tmp/static-pv"}},
    }))
    .unwrap();
    Api::<PersistentVolume>::all(env.client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .unwrap();
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "static", "namespace": APP},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                 "volumeName": "static-pv", "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
    claims.create(&PostParams::default(), &pvc).await.unwrap();
    wait_for("claim static bound", 40, || async {
        let c = claims.get("static").await.ok()?;
        (c.status?.phase.as_deref() == Some("Bound")).then_some(())
    })
    .await;
    let err = fails(&ferry(&env, &["backup", "create", "--pvc", "app/static"]).await);
    assert!(
        err.contains("PersistentVolume static-pv, which is not a CSI volume"),
        "{err}"
    );
    assert_eq!(count_uploads(&env).await, 0);
    let vs = snapshots(&env).list(&ListParams::default()).await.unwrap();
    assert!(vs.items.is_empty(), "{:?}", vs.items);

    // Two classes of the driver, neither default: ambiguous.
    snapshot_class(&env, "plain", DRIVER, false).await;
    snapshot_class(&env, "other-plain", DRIVER, false).await;
    let err = fails(&ferry(&env, &["backup", "create", "--pvc", "app/data"]).await);
    assert!(
        err.contains("several VolumeSnapshotClasses") && err.contains("--snapshot-class"),
        "{err}"
    );
    // A default class of another driver is not a candidate; the driver's default is.
    snapshot_class(&env, "foreign-default", "other.csi.example", true).await;
    snapshot_class(&env, "kubesim-default", DRIVER, true).await;
    let err = fails(
        &ferry(
            &env,
            &[
                "backup",
                "create",
                "--pvc",
                "app/data",
                "--snapshot-class",
                "foreign-default",
            ],
        )
        .await,
    );
    assert!(
        err.contains("other.csi.example") && err.contains(DRIVER),
        "{err}"
    );
    let err = fails(
        &ferry(
            &env,
            &[
                "backup",
                "create",
                "--pvc",
                "app/data",
                "--location",
                "nope",
            ],
        )
        .await,
    );
    assert!(
        err.contains("BackupStorageLocation velero/nope not found"),
        "{err}"
    );

    let out = ferry(&env, &["backup", "create", "--pvc", "app/data"]).await;
    let text = ok(&out);
    let name = created_name(&out);
    assert!(name.starts_with("data-"), "{name}");
    assert!(
        text.contains(&format!(
            "DataUpload velero/{name} created for app/data (VolumeSnapshot app/{name})"
        )),
        "{text}"
    );
    let vs = snapshots(&env).get(&name).await.unwrap();
    assert_eq!(
        vs.data["spec"],
        json!({"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "kubesim-default"})
    );
    let du = data_upload(&env, &name).await;
    assert_eq!(
        serde_json::to_value(&du.spec).unwrap(),
        json!({
            "snapshotType": "CSI",
            "csiSnapshot": {"volumeSnapshot": name, "storageClass": "immediate",
                            "snapshotClass": "kubesim-default", "driver": DRIVER},
            "sourcePVC": "data",
            "datamover": "ferry",
            "backupStorageLocation": "default",
            "sourceNamespace": "app",
            "operationTimeout": "10m0s",
        })
    );
    let labels = du.metadata.labels.clone().unwrap();
    assert_eq!(labels["ferry.io/backup"], name);
    assert_eq!(labels["velero.io/pvc-uid"], uid);
    assert_eq!(vs.metadata.labels.unwrap()["ferry.io/backup"], name);
    // kubesim's snapshot controller takes the snapshot the command asked for.
    wait_for("the VolumeSnapshot ready", 40, || async {
        let vs = snapshots(&env).get(&name).await.ok()?;
        (vs.data["status"]["readyToUse"] == json!(true)).then_some(())
    })
    .await;

    // Explicit name, class, location and timeout; another data mover's upload is not listed.
    let out = ferry(
        &env,
        &[
            "backup",
            "create",
            "--pvc",
            "app/data",
            "--name",
            "named",
            "--snapshot-class",
            "plain",
            "--location",
            "default",
            "--operation-timeout",
            "1h0m0s",
            "-n",
            "velero",
        ],
    )
    .await;
    ok(&out);
    assert_eq!(created_name(&out), "named");
    assert_eq!(
        snapshots(&env).get("named").await.unwrap().data["spec"]["volumeSnapshotClassName"],
        "plain"
    );
    let du = data_upload(&env, "named").await;
    assert_eq!(du.spec.operation_timeout, "1h0m0s");
    assert_eq!(
        du.spec.csi_snapshot.unwrap().snapshot_class.as_deref(),
        Some("plain")
    );
    ok(&ferry(
        &env,
        &[
            "backup",
            "create",
            "--pvc",
            "app/data",
            "--name",
            "velero-builtin",
            "--data-mover-name",
            "velero",
        ],
    )
    .await);
    // A location marked spec.default wins over the one named `default`.
    let bsl: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "primary", "namespace": NS},
        "spec": {"provider": "local", "default": true, "config": {"path": "/nowhere"},
                 "objectStorage": {"bucket": "bucket"}},
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
            "backupstoragelocations",
        ),
    )
    .create(&PostParams::default(), &bsl)
    .await
    .unwrap();
    ok(&ferry(
        &env,
        &[
            "backup",
            "create",
            "--pvc",
            "app/data",
            "--name",
            "to-primary",
            "--data-mover-name",
            "velero",
        ],
    )
    .await);
    assert_eq!(
        data_upload(&env, "to-primary")
            .await
            .spec
            .backup_storage_location,
        "primary"
    );

    // The controller's part, by hand: one Completed upload and an Event about it.
    set_status(
        &env,
        "named",
        json!({
            "phase": "Completed", "node": "node-0", "snapshotID": "0123456789abcdef0123",
            "path": "/backup-volume", "message": "all done",
            "progress": {"totalBytes": 4096, "bytesDone": 4096},
            "startTimestamp": "2026-01-02T03:04:05Z", "completionTimestamp": "2026-01-02T03:05:05Z",
        }),
    )
    .await;
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "named.1", "namespace": NS},
        "involvedObject": {"kind": "DataUpload", "name": "named", "namespace": NS,
                           "apiVersion": "velero.io/v2alpha1"},
        "reason": "BackupCompleted", "message": "snapshot 01234567 written", "type": "Normal",
        "firstTimestamp": "2026-01-02T03:05:05Z", "lastTimestamp": "2026-01-02T03:05:05Z",
        "count": 1, "source": {"component": "ferry"},
    }))
    .unwrap();
    Api::<Event>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &event)
        .await
        .unwrap();

    let get = ok(&ferry(&env, &["backup", "get"]).await);
    let header: Vec<&str> = get.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SOURCE", "PHASE", "NODE", "PROGRESS", "SNAPSHOT", "DURATION", "AGE"
        ],
        "{get}"
    );
    let row = |name: &str| -> Vec<String> {
        get.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed: {get}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    // PROGRESS is a percentage and human sizes (`100% 4.0 KiB/4.0 KiB`: three words here).
    assert_eq!(
        row("named")[..10],
        [
            "named",
            "app/data",
            "Completed",
            "node-0",
            "100%",
            "4.0",
            "KiB/4.0",
            "KiB",
            "01234567",
            "1m0s"
        ]
    );
    assert_eq!(
        row(&name)[..7],
        [name.as_str(), "app/data", "New", "-", "-", "-", "-"]
    );
    assert!(!get.contains("velero-builtin"), "{get}");

    let wide = ok(&ferry(&env, &["backup", "get", "-o", "wide"]).await);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[8..], ["LOCATION", "VOLUMESNAPSHOT"], "{wide}");
    let row = wide.lines().find(|l| l.starts_with("named ")).unwrap();
    assert!(row.ends_with(" default          app/named"), "{row}");

    let json_out = ok(&ferry(&env, &["backup", "get", "-o", "json"]).await);
    let list: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"named") && names.contains(&name.as_str()));
    let named = items
        .iter()
        .find(|i| i["metadata"]["name"] == "named")
        .unwrap();
    assert_eq!(named["kind"], "DataUpload");
    assert_eq!(named["apiVersion"], "velero.io/v2alpha1");
    assert_eq!(named["status"]["snapshotID"], "0123456789abcdef0123");
    assert_eq!(named["spec"]["sourcePVC"], "data");

    let describe = ok(&ferry(&env, &["backup", "describe", "named"]).await);
    for expected in [
        "Name:               velero/named",
        "Source:             app/data",
        "VolumeSnapshot:     app/named",
        "Snapshot class:     plain",
        "CSI driver:         hostpath.kubesim.io",
        "Location:           default",
        "Phase:              Completed",
        "Node:               node-0",
        "Started:            2026-01-02 03:04:05 UTC (",
        "Completed:          2026-01-02 03:05:05 UTC (",
        "Duration:           1m0s",
        "Progress:           100% (4.0 KiB of 4.0 KiB)",
        "Rate:               68 B/s",
        "Snapshot ID:        0123456789abcdef0123",
        "Path:               /backup-volume",
        "Message:            all done",
        "BackupCompleted",
        "snapshot 01234567 written",
    ] {
        assert!(describe.contains(expected), "{expected:?} in\n{describe}");
    }
    let yaml = ok(&ferry(&env, &["backup", "describe", "named", "-o", "yaml"]).await);
    let object: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(object["kind"], "DataUpload");
    assert_eq!(object["status"]["phase"], "Completed");
    assert_eq!(object["metadata"]["labels"]["ferry.io/backup"], "named");
    let err = fails(&ferry(&env, &["backup", "describe", "no-such-backup"]).await);
    assert!(err.contains("velero/no-such-backup not found"), "{err}");

    // ferry restore shares the conventions.
    data_download(&env, "dd-0", "pvc-0", "feedbeef", "ferry").await;
    let yaml = ok(&ferry(&env, &["restore", "get", "-o", "yaml"]).await);
    let list: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "DataDownload");
    assert_eq!(list["items"][0]["spec"]["snapshotID"], "feedbeef");
    let json_out = ok(&ferry(&env, &["restore", "describe", "dd-0", "-o", "json"]).await);
    let object: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(object["metadata"]["name"], "dd-0");
    let table = ok(&ferry(&env, &["restore", "get", "--namespace", "velero"]).await);
    assert!(table.lines().any(|l| l.starts_with("dd-0 ")), "{table}");
    // -o wide adds the snapshot and the location.
    let wide = ok(&ferry(&env, &["restore", "get", "-o", "wide"]).await);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[7..], ["SNAPSHOT", "LOCATION", "MESSAGE"], "{wide}");
    let row = wide.lines().find(|l| l.starts_with("dd-0 ")).unwrap();
    assert!(
        row.contains(" feedbeef ") && row.contains(" default "),
        "{row}"
    );
    // As `backup get`, only this data mover's: Velero's own node-agent's are not listed.
    data_download(&env, "dd-velero", "pvc-1", "feedbeef", "velero").await;
    let table = ok(&ferry(&env, &["restore", "get"]).await);
    assert!(!table.contains("dd-velero"), "{table}");
    let table = ok(&ferry(&env, &["restore", "get", "--data-mover-name", "velero"]).await);
    assert!(
        table.lines().any(|l| l.starts_with("dd-velero ")),
        "{table}"
    );
    assert!(!table.contains("dd-0 "), "{table}");
    let describe = ok(&ferry(&env, &["restore", "describe", "dd-0", "-n", "velero"]).await);
    assert!(
        describe.contains("Snapshot:           feedbeef"),
        "{describe}"
    );
    assert!(describe.contains("Started:            <n/a>"), "{describe}");
    assert!(
        describe.contains("Progress:           no progress reported yet"),
        "{describe}"
    );
    // Another namespace has none of them.
    let empty = ok(&ferry(&env, &["restore", "get", "-n", APP, "-o", "json"]).await);
    let list: serde_json::Value = serde_json::from_str(&empty).unwrap();
    assert_eq!(list["items"], json!([]));

    // --kubeconfig and --context pick the cluster, with KUBECONFIG unset.
    let kubeconfig = env.cluster.kubeconfig_path().to_string_lossy().into_owned();
    let context = serde_yaml_ng::from_str::<serde_json::Value>(
        &std::fs::read_to_string(&kubeconfig).unwrap(),
    )
    .unwrap()["current-context"]
        .as_str()
        .unwrap()
        .to_string();
    let home = env.dir.path().join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(&args)
            .env_remove("KUBECONFIG")
            .env("HOME", &home)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .kill_on_drop(true);
        async move { cmd.output().await.unwrap() }
    };
    let args = |extra: &[&str]| -> Vec<String> {
        ["backup", "get"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let out = run(args(&["--kubeconfig", &kubeconfig])).await;
    assert!(ok(&out).contains("named"));
    let out = run(args(&["--kubeconfig", &kubeconfig, "--context", &context])).await;
    assert!(ok(&out).contains("named"));
    let out = run(args(&[
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "no-such-context",
    ]))
    .await;
    let err = fails(&out);
    assert!(err.contains("no-such-context"), "{err}");
    let out = run(args(&[])).await;
    assert!(!out.status.success(), "no kubeconfig, no cluster");
    let out = run(vec![
        "restore".into(),
        "get".into(),
        "--kubeconfig".into(),
        kubeconfig.clone(),
    ])
    .await;
    assert!(ok(&out).contains("dd-0"));
    env.cluster.stop().await;
}

/// `--wait` follows the DataUpload (patched by hand here) and exits by its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_create_wait() {
    let env = env(Backend::Kubesim, 1, 0, json!({})).await;
    claim(&env, "data", "immediate", true).await;
    snapshot_class(&env, "kubesim", DRIVER, false).await;

    for (name, outcome) in [("ok", "Completed"), ("bad", "Failed")] {
        let child = command(
            &env,
            &[
                "backup", "create", "--pvc", "app/data", "--name", name, "--wait",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let uploads: Api<DataUpload> = Api::namespaced(env.client.clone(), NS);
        wait_for(&format!("DataUpload {name}"), 30, || async {
            uploads.get_opt(name).await.unwrap().map(|_| ())
        })
        .await;
        set_status(
            &env,
            name,
            json!({"phase": "InProgress", "node": "node-0",
                   "progress": {"totalBytes": 1000, "bytesDone": 250}}),
        )
        .await;
        // Let the poller see the in-between state (it polls every second).
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let end = if outcome == "Completed" {
            json!({"phase": "Completed", "snapshotID": "cafe0123",
                   "progress": {"totalBytes": 1000, "bytesDone": 1000}})
        } else {
            json!({"phase": "Failed", "message": "repository unreachable"})
        };
        set_status(&env, name, end).await;
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("--wait returns once the DataUpload ends")
                .unwrap();
        let text = stdout(&out);
        assert!(
            text.contains("InProgress  node-0           25% 250 B/1000 B"),
            "{text}"
        );
        if outcome == "Completed" {
            ok(&out);
            assert!(
                text.contains("Completed on node-0: 100% 1000 B/1000 B"),
                "{text}"
            );
            assert!(text.contains("Snapshot ID: cafe0123"), "{text}");
        } else {
            fails(&out);
            assert!(text.contains("Failed: repository unreachable"), "{text}");
        }
    }
    env.cluster.stop().await;
}
