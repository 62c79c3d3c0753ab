//! End-to-end restores on kubesim: real data backed up with ferry's engine, target PVCs and
//! DataDownloads created as Velero creates them, ferry's controller running in this process,
//! and restore pods running the ferry binary under test (kubesim's image → binary map).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_controller::crds::{DataDownload, DataDownloadPhase, DataDownloadSpec, TargetVolumeSpec};
use ferry_controller::{ControllerHandle, ControllerOptions, start_controller};
use ferry_repo::Repository;
use ferry_repo::backup::{BackupOptions, BackupSource};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "velero";
const APP: &str = "app";
const PASSWORD: &str = "e2e-password";

struct Env {
    _dir: tempfile::TempDir,
    cluster: kubesim::Cluster,
    client: kube::Client,
    repo: Repository,
    sources: PathBuf,
}

async fn env(nodes: usize, zones: usize, config: serde_json::Value) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cluster = kubesim::Cluster::start(kubesim::ClusterConfig {
        nodes,
        zones,
        data_dir: dir.path().join("sim"),
        port: None,
        image_binaries: BTreeMap::from([(
            "ferry".to_string(),
            PathBuf::from(env!("CARGO_BIN_EXE_ferry")),
        )]),
    })
    .await
    .unwrap();
    let client = cluster.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ferry_controller::crds::all_crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, APP] {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        let _ = namespaces.create(&PostParams::default(), &obj).await;
    }
    let downloads: Api<DataDownload> = Api::namespaced(client.clone(), NS);
    wait_for("DataDownload CRD served", 30, || {
        let d = downloads.clone();
        async move { d.list(&ListParams::default()).await.is_ok().then_some(()) }
    })
    .await;
    // Repository at <path>/<bucket>/<prefix>/ferry/<source namespace>.
    let bsl_root = dir.path().join("bsl");
    let repo_dir = bsl_root.join("bucket/backups/ferry").join(APP);
    std::fs::create_dir_all(&repo_dir).unwrap();
    let backend = ferry_repo::backend::open(&repo_dir.to_string_lossy()).unwrap();
    let repo = Repository::init(backend, PASSWORD).await.unwrap();
    let bsl: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "default", "namespace": NS},
        "spec": {"provider": "local", "config": {"path": bsl_root.to_string_lossy()},
                 "objectStorage": {"bucket": "bucket", "prefix": "backups"}},
    }))
    .unwrap();
    let bsls: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
            "backupstoragelocations",
        ),
    );
    bsls.create(&PostParams::default(), &bsl).await.unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "velero-repo-credentials", "namespace": NS},
        "stringData": {"repository-password": PASSWORD},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    set_config(&client, config).await;
    let sources = dir.path().join("sources");
    Env {
        _dir: dir,
        cluster,
        client,
        repo,
        sources,
    }
}

async fn set_config(client: &kube::Client, config: serde_json::Value) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "node-agent-config", "namespace": NS},
        "data": {"config.json": config.to_string()},
    }))
    .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    maps.patch(
        "node-agent-config",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&cm),
    )
    .await
    .unwrap();
}

async fn controller(env: &Env) -> ControllerHandle {
    let mut options = ControllerOptions::new(env.client.clone(), NS, "node-agent-config");
    options.poll_interval = Duration::from_millis(200);
    options.identity = "e2e-controller".into();
    options.data_mover_log = Some("warn".into());
    start_controller(options).await.unwrap()
}

async fn wait_for<T, F, Fut>(what: &str, seconds: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Files for volume `i`: a few of distinct content.
fn volume_files(i: usize) -> BTreeMap<String, Vec<u8>> {
    (0..3)
        .map(|f| {
            let size = 1000 + 7919 * (i + 1) * (f + 1);
            let data: Vec<u8> = (0..size)
                .map(|b| ((b * 31 + i * 7 + f) % 251) as u8)
                .collect();
            (format!("file-{f}.bin"), data)
        })
        .collect()
}

async fn backup(env: &Env, i: usize) -> String {
    let dir = env.sources.join(format!("vol-{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for (name, data) in volume_files(i) {
        std::fs::write(dir.join(&name), data).unwrap();
        paths.push(dir.join(name));
    }
    let summary = env
        .repo
        .backup(
            BackupSource::Paths(paths),
            BackupOptions {
                no_parent: true,
                ..Default::default()
            },
            Arc::new(|_: &ferry_repo::RestoreProgress| {}),
        )
        .await
        .unwrap();
    summary.snapshot_id.to_string()
}

async fn target_pvc(env: &Env, name: &str, class: &str, mode: &str) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": APP},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "volumeMode": mode,
            "resources": {"requests": {"storage": "64Mi"}},
            "selector": {"matchLabels": {"velero.io/dynamic-pv-restore": format!("{APP}.{name}.e2e")}},
        },
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), APP)
        .create(&PostParams::default(), &pvc)
        .await
        .unwrap();
}

async fn data_download(env: &Env, name: &str, pvc: &str, snapshot: &str, mover: &str) {
    let dd = DataDownload::new(
        name,
        DataDownloadSpec {
            target_volume: TargetVolumeSpec {
                pvc: pvc.into(),
                pv: String::new(),
                namespace: APP.into(),
            },
            backup_storage_location: "default".into(),
            datamover: Some(mover.into()),
            snapshot_id: snapshot.into(),
            source_namespace: APP.into(),
            operation_timeout: "10m".into(),
            ..Default::default()
        },
    );
    Api::<DataDownload>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &dd)
        .await
        .unwrap();
}

/// Backs up `n` volumes and creates their target PVCs and DataDownloads (`dd-i`, `pvc-i`).
async fn restores(env: &Env, n: usize, class: &str) {
    for i in 0..n {
        let snap = backup(env, i).await;
        target_pvc(env, &format!("pvc-{i}"), class, "Filesystem").await;
        data_download(env, &format!("dd-{i}"), &format!("pvc-{i}"), &snap, "ferry").await;
    }
}

async fn get_dd(env: &Env, name: &str) -> DataDownload {
    Api::<DataDownload>::namespaced(env.client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

async fn wait_phase(
    env: &Env,
    name: &str,
    phases: &[DataDownloadPhase],
    seconds: u64,
) -> DataDownload {
    let phases = phases.to_vec();
    wait_for(&format!("{name} in {phases:?}"), seconds, || async {
        let dd = get_dd(env, name).await;
        phases.contains(&dd.phase()).then_some(dd)
    })
    .await
}

/// The restored PV behind target PVC `pvc-i`: its directory holds exactly the backed-up files.
async fn assert_restored(env: &Env, i: usize) -> PersistentVolume {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
    let pvc = pvcs.get(&format!("pvc-{i}")).await.unwrap();
    assert_eq!(pvc.status.unwrap().phase.as_deref(), Some("Bound"));
    let pv_name = pvc.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(env.client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let path = PathBuf::from(
        pv.spec
            .as_ref()
            .unwrap()
            .local
            .as_ref()
            .unwrap()
            .path
            .clone(),
    );
    for (name, data) in volume_files(i) {
        let got = std::fs::read(path.join(&name))
            .unwrap_or_else(|e| panic!("{name} in {}: {e}", path.display()));
        assert!(got == data, "pvc-{i}/{name} differs");
    }
    assert_eq!(
        pv.spec
            .as_ref()
            .unwrap()
            .persistent_volume_reclaim_policy
            .as_deref(),
        Some("Delete"),
        "reclaim policy restored"
    );
    pv
}

fn pv_node(pv: &PersistentVolume) -> String {
    pv.spec
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required
        .as_ref()
        .unwrap()
        .node_selector_terms[0]
        .match_expressions
        .as_ref()
        .unwrap()[0]
        .values
        .as_ref()
        .unwrap()[0]
        .clone()
}

/// Nothing of the restores is left in ferry's namespace.
async fn assert_no_leftovers(env: &Env) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
    wait_for("restore pods and PVCs removed", 30, || async {
        let p = pods.list(&ListParams::default()).await.unwrap().items.len();
        let c = pvcs.list(&ListParams::default()).await.unwrap().items.len();
        (p == 0 && c == 0).then_some(())
    })
    .await;
}

async fn workload_pod(env: &Env, name: &str, pvc: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": APP},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "app", "image": "busybox",
                "command": ["/bin/sh", "-c", "test -s /data/file-0.bin"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc}}],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(env.client.clone(), APP)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

async fn wait_pod_succeeded(env: &Env, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), APP);
    wait_for(&format!("workload pod {name} to succeed"), 60, || async {
        let pod = pods.get(name).await.ok()?;
        let phase = pod.status.as_ref()?.phase.clone()?;
        assert_ne!(
            phase, "Failed",
            "workload pod {name} failed to read its data"
        );
        (phase == "Succeeded").then_some(pod)
    })
    .await
}

const DONE: &[DataDownloadPhase] = &[
    DataDownloadPhase::Completed,
    DataDownloadPhase::Failed,
    DataDownloadPhase::Canceled,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_ignore_delay_binding_spreads_eight_restores_two_per_node() {
    let env = env(
        4,
        2,
        json!({"restorePVC": {"ignoreDelayBinding": true}, "loadConcurrency": {"globalConfig": 2}}),
    )
    .await;
    restores(&env, 8, "standard").await;
    let ctl = controller(&env).await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..8 {
        let dd = wait_phase(&env, &format!("dd-{i}"), DONE, 90).await;
        let status = dd.status.clone().unwrap();
        assert_eq!(
            dd.phase(),
            DataDownloadPhase::Completed,
            "dd-{i}: {:?}",
            status.message
        );
        assert!(
            status.accepted_timestamp.is_some()
                && status.start_timestamp.is_some()
                && status.completion_timestamp.is_some()
        );
        assert_eq!(status.accepted_by_node.as_deref(), Some("e2e-controller"));
        let progress = status.progress.unwrap();
        assert_eq!(progress.total_bytes, progress.bytes_done);
        assert!(progress.total_bytes.unwrap() > 0);
        let node = status.node.unwrap();
        let pv = assert_restored(&env, i).await;
        assert_eq!(pv_node(&pv), node, "dd-{i}: PV lives where the restore ran");
        *per_node.entry(node).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2, 2],
        "{per_node:?}"
    );
    assert_no_leftovers(&env).await;
    // Workloads created afterwards land on their PV's node and read the data.
    for i in [0, 5] {
        workload_pod(&env, &format!("app-{i}"), &format!("pvc-{i}")).await;
        let pod = wait_pod_succeeded(&env, &format!("app-{i}")).await;
        let pv = assert_restored(&env, i).await;
        assert_eq!(pod.spec.unwrap().node_name.unwrap(), pv_node(&pv));
    }
    ctl.stop().await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_default_mode_waits_for_the_workload_and_restores_on_its_node() {
    let env = env(4, 0, json!({})).await;
    restores(&env, 2, "standard").await;
    let ctl = controller(&env).await;
    // Accepted, waiting: no restore pod while no workload exists.
    for i in 0..2 {
        wait_for("waiting message", 30, || async {
            let dd = get_dd(&env, &format!("dd-{i}")).await;
            let msg = dd.status.and_then(|s| s.message).unwrap_or_default();
            msg.contains("to be consumed").then_some(())
        })
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        get_dd(&env, "dd-1").await.phase(),
        DataDownloadPhase::Accepted
    );
    // A workload for pvc-0 only: its restore runs on the workload's node.
    workload_pod(&env, "app-0", "pvc-0").await;
    let dd = wait_phase(&env, "dd-0", DONE, 60).await;
    assert_eq!(dd.phase(), DataDownloadPhase::Completed, "{:?}", dd.status);
    let pod = wait_pod_succeeded(&env, "app-0").await;
    let node = pod.spec.unwrap().node_name.unwrap();
    assert_eq!(dd.status.unwrap().node.unwrap(), node);
    let pv = assert_restored(&env, 0).await;
    assert_eq!(pv_node(&pv), node);
    assert_eq!(
        get_dd(&env, "dd-1").await.phase(),
        DataDownloadPhase::Accepted
    );
    ctl.stop().await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_load_affinity_and_allowed_topologies_limit_the_nodes() {
    let env = env(
        4,
        2,
        json!({"restorePVC": {"ignoreDelayBinding": true},
               "loadConcurrency": {"globalConfig": 4},
               "loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1", "node-2"]}]}}]}),
    )
    .await;
    // A class limited to zone-2 (node-2, node-4): with the loadAffinity only node-2 remains.
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "zone2"},
        "provisioner": "kubesim.io/hostpath",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
        "allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["zone-2"]}]}],
    }))
    .unwrap();
    Api::<StorageClass>::all(env.client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    restores(&env, 4, "standard").await;
    for i in 4..6 {
        let snap = backup(&env, i).await;
        target_pvc(&env, &format!("pvc-{i}"), "zone2", "Filesystem").await;
        data_download(
            &env,
            &format!("dd-{i}"),
            &format!("pvc-{i}"),
            &snap,
            "ferry",
        )
        .await;
    }
    let ctl = controller(&env).await;
    let mut nodes = BTreeMap::new();
    for i in 0..6 {
        let dd = wait_phase(&env, &format!("dd-{i}"), DONE, 90).await;
        assert_eq!(
            dd.phase(),
            DataDownloadPhase::Completed,
            "dd-{i}: {:?}",
            dd.status
        );
        assert_restored(&env, i).await;
        nodes.insert(i, dd.status.unwrap().node.unwrap());
    }
    let standard: BTreeSet<&String> = (0..4).map(|i| &nodes[&i]).collect();
    assert_eq!(
        standard,
        BTreeSet::from([&"node-1".to_string(), &"node-2".to_string()])
    );
    assert_eq!(nodes[&4], "node-2");
    assert_eq!(nodes[&5], "node-2");
    ctl.stop().await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_bad_requests_fail_cleanly_and_other_data_movers_are_untouched() {
    let env = env(2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
    let snap = backup(&env, 0).await;
    // Missing snapshot.
    target_pvc(&env, "pvc-missing", "standard", "Filesystem").await;
    data_download(
        &env,
        "dd-missing",
        "pvc-missing",
        "0123456789abcdef",
        "ferry",
    )
    .await;
    // Target already bound (a static PV pre-bound to it).
    target_pvc(&env, "pvc-bound", "standard", "Filesystem").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
    pvcs.patch(
        "pvc-bound",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"volumeName": "someone-elses-pv"}})),
    )
    .await
    .unwrap();
    data_download(&env, "dd-bound", "pvc-bound", &snap, "ferry").await;
    // Velero's own data mover's DataDownload.
    target_pvc(&env, "pvc-velero", "standard", "Filesystem").await;
    data_download(&env, "dd-velero", "pvc-velero", &snap, "velero").await;
    let ctl = controller(&env).await;
    let dd = wait_phase(&env, "dd-missing", DONE, 60).await;
    assert_eq!(dd.phase(), DataDownloadPhase::Failed);
    let msg = dd.status.unwrap().message.unwrap();
    assert!(
        msg.contains("0123456789abcdef") && msg.contains("not found"),
        "{msg}"
    );
    let dd = wait_phase(&env, "dd-bound", DONE, 30).await;
    assert_eq!(dd.phase(), DataDownloadPhase::Failed);
    assert!(
        dd.status
            .unwrap()
            .message
            .unwrap()
            .contains("already been bound")
    );
    assert_no_leftovers(&env).await;
    // Several passes later, Velero's DataDownload still has no status.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(get_dd(&env, "dd-velero").await.status.is_none());
    ctl.stop().await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_cancel_removes_everything() {
    let env = env(2, 0, json!({})).await;
    restores(&env, 1, "standard").await;
    let ctl = controller(&env).await;
    // Waiting for a consumer; cancel it there.
    wait_phase(&env, "dd-0", &[DataDownloadPhase::Accepted], 30).await;
    Api::<DataDownload>::namespaced(env.client.clone(), NS)
        .patch(
            "dd-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap();
    let dd = wait_phase(&env, "dd-0", DONE, 30).await;
    assert_eq!(dd.phase(), DataDownloadPhase::Canceled);
    assert_no_leftovers(&env).await;
    ctl.stop().await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_missing_configmap_is_a_startup_error() {
    let env = env(1, 0, json!({})).await;
    let mut options = ControllerOptions::new(env.client.clone(), NS, "no-such-config");
    options.poll_interval = Duration::from_millis(200);
    let err = start_controller(options).await.err().expect("must fail");
    let text = err.to_string();
    assert!(text.contains("velero/no-such-config not found"), "{text}");
    env.cluster.stop().await;
}

#[allow(dead_code)]
fn _unused(_: &Path) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_load_concurrency_one_never_runs_two_restores_on_a_node() {
    let env = env(
        2,
        0,
        json!({"restorePVC": {"ignoreDelayBinding": true}, "loadConcurrency": {"globalConfig": 1}}),
    )
    .await;
    restores(&env, 4, "standard").await;
    let ctl = controller(&env).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let mut max_per_node = 0;
    let mut seen_pods = BTreeSet::new();
    loop {
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for pod in pods.list(&ListParams::default()).await.unwrap().items {
            seen_pods.insert(pod.metadata.name.clone().unwrap());
            let node = pod
                .spec
                .as_ref()
                .unwrap()
                .node_selector
                .clone()
                .unwrap_or_default();
            *per_node
                .entry(node.values().next().cloned().unwrap_or_default())
                .or_default() += 1;
        }
        max_per_node = max_per_node.max(per_node.values().copied().max().unwrap_or(0));
        let mut all_done = true;
        for i in 0..4 {
            all_done &= get_dd(&env, &format!("dd-{i}")).await.phase().is_terminal();
        }
        if all_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..4 {
        assert_eq!(
            get_dd(&env, &format!("dd-{i}")).await.phase(),
            DataDownloadPhase::Completed
        );
        assert_restored(&env, i).await;
    }
    assert_eq!(
        seen_pods.len(),
        4,
        "one restore pod per DataDownload, never a second"
    );
    assert_eq!(
        max_per_node, 1,
        "at most one restore pod per node at any time"
    );
    ctl.stop().await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_block_volume_is_restored_onto_the_device() {
    let env = env(2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
    let image: Vec<u8> = (0..3_000_000u32)
        .map(|b| (b.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let summary = env
        .repo
        .backup(
            BackupSource::Stream {
                reader: Box::new(std::io::Cursor::new(image.clone())),
                filename: "disk.img".into(),
            },
            BackupOptions {
                no_parent: true,
                ..Default::default()
            },
            Arc::new(|_: &ferry_repo::RestoreProgress| {}),
        )
        .await
        .unwrap();
    target_pvc(&env, "pvc-block", "standard", "Block").await;
    data_download(
        &env,
        "dd-block",
        "pvc-block",
        &summary.snapshot_id.to_string(),
        "ferry",
    )
    .await;
    let ctl = controller(&env).await;
    let dd = wait_phase(&env, "dd-block", DONE, 60).await;
    assert_eq!(dd.phase(), DataDownloadPhase::Completed, "{:?}", dd.status);
    let pvc = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), APP)
        .get("pvc-block")
        .await
        .unwrap();
    let pv = Api::<PersistentVolume>::all(env.client.clone())
        .get(&pvc.spec.unwrap().volume_name.unwrap())
        .await
        .unwrap();
    assert_eq!(
        pv.spec.as_ref().unwrap().volume_mode.as_deref(),
        Some("Block")
    );
    let device = std::fs::read(&pv.spec.as_ref().unwrap().local.as_ref().unwrap().path).unwrap();
    assert!(device.len() >= image.len());
    assert!(
        device[..image.len()] == image[..],
        "device content differs from the backed-up image"
    );
    assert_no_leftovers(&env).await;
    ctl.stop().await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_controller_killed_mid_restore_is_finished_by_its_successor() {
    let env = env(
        2,
        0,
        json!({"restorePVC": {"ignoreDelayBinding": true}, "loadConcurrency": {"globalConfig": 2}}),
    )
    .await;
    restores(&env, 3, "standard").await;
    let first = controller(&env).await;
    // Kill it as soon as a restore is past acceptance.
    wait_for("a restore in flight", 30, || async {
        let dd = get_dd(&env, "dd-0").await;
        matches!(
            dd.phase(),
            DataDownloadPhase::Prepared
                | DataDownloadPhase::InProgress
                | DataDownloadPhase::Completed
        )
        .then_some(())
    })
    .await;
    first.kill();
    let uids: BTreeMap<String, String> = Api::<Pod>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.metadata.name.unwrap(), p.metadata.uid.unwrap()))
        .collect();
    let second = controller(&env).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let mut uids = uids;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        for p in pods.list(&ListParams::default()).await.unwrap().items {
            let (name, uid) = (p.metadata.name.unwrap(), p.metadata.uid.unwrap());
            let first_uid = uids.entry(name.clone()).or_insert(uid.clone());
            assert_eq!(*first_uid, uid, "restore pod {name} was created twice");
        }
        let mut done = true;
        for i in 0..3 {
            done &= get_dd(&env, &format!("dd-{i}")).await.phase().is_terminal();
        }
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restores did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..3 {
        let dd = wait_phase(&env, &format!("dd-{i}"), DONE, 60).await;
        assert_eq!(
            dd.phase(),
            DataDownloadPhase::Completed,
            "dd-{i}: {:?}",
            dd.status
        );
        assert_restored(&env, i).await;
    }
    assert!(!uids.is_empty());
    assert_no_leftovers(&env).await;
    second.stop().await;
    env.cluster.stop().await;
}
