//! Shared by the end-to-end tests, on kubesim and on the real control plane (see
//! docs/real-cluster.md): a cluster with what `ferry install` renders (CRDs, service
//! accounts, RBAC), a local BackupStorageLocation with a repository, the node-agent
//! ConfigMap, data backed up with ferry's engine, target PVCs and DataDownloads created as
//! Velero creates them, the controller running in this process (as ferry-controller's
//! service account on the real control plane), and checks that nothing of a restore is left
//! behind.
// Each test file uses its own subset of these helpers.

pub mod backups;
pub mod gate;
pub mod movers;
pub mod page_cache;
pub mod trees;

pub use testenv::Backend;

/// Defines a test that runs on both clusters: `NAME::kubesim` and `NAME::real`, each
/// calling the body with its [`Backend`]. In scope in every test module: `#[macro_use]` in main.rs.
macro_rules! on_both_clusters {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident: Backend) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kubesim() {
                run(Backend::Kubesim).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                run(Backend::Real).await
            }
        }
    };
}

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_controller::crds::{DataDownload, DataDownloadPhase, DataDownloadSpec, TargetVolumeSpec};
use ferry_controller::expose::{DATA_DOWNLOAD_LABEL, SELECTED_NODE_ANNOTATION};
use ferry_controller::install::{CONTROLLER_NAME, DATA_MOVER_NAME, InstallOptions, render};
use ferry_controller::{ControllerHandle, ControllerOptions, start_controller};
use ferry_repo::Repository;
use ferry_repo::backup::{BackupOptions, BackupSource};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use movers::DataMovers;

pub const NS: &str = "velero";
pub const APP: &str = "app";
pub const PASSWORD: &str = "e2e-password";
pub const CONFIGMAP: &str = "node-agent-config";

pub const DONE: &[DataDownloadPhase] = &[
    DataDownloadPhase::Completed,
    DataDownloadPhase::Failed,
    DataDownloadPhase::Canceled,
];

pub struct Env {
    pub dir: tempfile::TempDir,
    pub cluster: testenv::TestCluster,
    /// An administrator's client.
    pub client: kube::Client,
    /// What ferry's controller runs as: on the real control plane the `ferry-controller`
    /// service account, so the real authorizer judges every request by the rendered RBAC.
    pub controller_client: kube::Client,
    pub repo: Repository,
    /// The repository's directory (`<bsl path>/bucket/backups/plugins/ferry/app`).
    pub repo_dir: PathBuf,
    pub sources: PathBuf,
    pub movers: DataMovers,
}

/// A cluster of `nodes` nodes over `zones` zones, ready for restores: what `ferry install`
/// renders (its Deployment scaled to 0: the tests run the controller in-process), namespace
/// `app`, BackupStorageLocation `default` (provider local) with an initialized repository,
/// the password secret and the node-agent ConfigMap.
pub async fn env(backend: Backend, nodes: usize, zones: usize, config: serde_json::Value) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (movers, wrapper) = DataMovers::install(
        &dir.path().join("movers"),
        env!("CARGO_BIN_EXE_ferry").as_ref(),
    );
    let cluster = testenv::TestCluster::start(
        backend,
        testenv::ClusterConfig {
            nodes,
            zones,
            data_dir: dir.path().join("sim"),
            image_binaries: BTreeMap::from([("ferry".to_string(), wrapper)]),
        },
    )
    .await
    .unwrap();
    let client = cluster.client();
    let (repo, repo_dir) = install_restore_prerequisites(&client, dir.path()).await;
    let controller_client = cluster
        .service_account_client(NS, CONTROLLER_NAME)
        .await
        .unwrap();
    set_config(&client, config).await;
    let sources = dir.path().join("sources");
    Env {
        dir,
        cluster,
        client,
        controller_client,
        repo,
        repo_dir,
        sources,
        movers,
    }
}

/// What restores need before any DataDownload, set up as an admin would: what `ferry
/// install` renders (namespace `velero`, ferry's CRDs, the controller's and the data
/// mover's service accounts and RBAC; the Deployment at 0 replicas), namespace `app`,
/// BackupStorageLocation `default` (provider local) over an initialized repository below
/// `dir`, and the repository password secret. Returns the repository and its directory.
pub async fn install_restore_prerequisites(
    client: &kube::Client,
    dir: &Path,
) -> (Repository, PathBuf) {
    let mut manifests = render(&InstallOptions::new(CONFIGMAP)).unwrap();
    manifests.deployment.spec.as_mut().unwrap().replicas = Some(0);
    ferry_controller::install::apply(client, &manifests)
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": APP}})).unwrap();
    let _ = namespaces.create(&PostParams::default(), &obj).await;
    let downloads: Api<DataDownload> = Api::namespaced(client.clone(), NS);
    wait_for("DataDownload CRD served", 30, || {
        let d = downloads.clone();
        async move { d.list(&ListParams::default()).await.is_ok().then_some(()) }
    })
    .await;
    // Repository at <path>/<bucket>/<prefix>/plugins/ferry/<source namespace>.
    let bsl_root = dir.join("bsl");
    let repo_dir = bsl_root
        .join("bucket/backups")
        .join(ferry_mover::REPOSITORY_DIR)
        .join(APP);
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
    (repo, repo_dir)
}

/// Creates or replaces the node-agent ConfigMap.
pub async fn set_config(client: &kube::Client, config: serde_json::Value) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": CONFIGMAP, "namespace": NS},
        "data": {"config.json": config.to_string()},
    }))
    .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    maps.patch(
        CONFIGMAP,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&cm),
    )
    .await
    .unwrap();
}

/// The controller's options in these tests: as `ferry install` runs it (restore pods as the
/// `ferry-data-mover` service account), with quiet data movers.
pub fn options(client: kube::Client) -> ControllerOptions {
    let mut options = ControllerOptions::new(client, NS, CONFIGMAP);
    options.service_account = Some(DATA_MOVER_NAME.into());
    options.identity = "e2e-controller".into();
    options.data_mover_log = Some("warn".into());
    options
}

pub async fn controller(env: &Env) -> ControllerHandle {
    start_controller(options(env.controller_client.clone()))
        .await
        .unwrap()
}

/// A controller whose requests go through `client` (a gated one, see [`gate`]).
pub async fn controller_with(client: kube::Client) -> ControllerHandle {
    start_controller(options(client)).await.unwrap()
}

/// Waits until a just-started controller has made a few passes.
pub async fn settle(handle: &ControllerHandle) {
    wait_for("controller ready", 30, || async {
        handle.metrics.is_ready().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
}

pub async fn wait_for<T, F, Fut>(what: &str, seconds: u64, mut f: F) -> T
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Files for volume `i`: a few of distinct content.
pub fn volume_files(i: usize) -> BTreeMap<String, Vec<u8>> {
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

/// Backs up volume `i`'s files; returns the snapshot ID.
pub async fn backup(env: &Env, i: usize) -> String {
    let dir = env.sources.join(format!("vol-{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in volume_files(i) {
        std::fs::write(dir.join(&name), data).unwrap();
    }
    let summary = env
        .repo
        .backup(
            BackupSource::Contents(dir),
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

/// A target PVC as Velero's restore creates it (a selector nothing provisions).
pub async fn target_pvc(env: &Env, name: &str, class: &str, mode: &str) {
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

pub async fn data_download(env: &Env, name: &str, pvc: &str, snapshot: &str, mover: &str) {
    data_download_timed(env, name, pvc, snapshot, mover, "10m").await
}

/// [`data_download`] with `spec.operationTimeout` = `timeout` (Velero copies the backup's
/// csiSnapshotTimeout there, 10m by default).
pub async fn data_download_timed(
    env: &Env,
    name: &str,
    pvc: &str,
    snapshot: &str,
    mover: &str,
    timeout: &str,
) {
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
            operation_timeout: timeout.into(),
            ..Default::default()
        },
    );
    Api::<DataDownload>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &dd)
        .await
        .unwrap();
}

/// Backs up volume `i` and creates target PVC `pvc-i` and DataDownload `dd-i` for it.
pub async fn restore_of(env: &Env, i: usize, class: &str) {
    let snap = backup(env, i).await;
    target_pvc(env, &format!("pvc-{i}"), class, "Filesystem").await;
    data_download(env, &format!("dd-{i}"), &format!("pvc-{i}"), &snap, "ferry").await;
}

/// [`restore_of`] for volumes `0..n`.
pub async fn restores(env: &Env, n: usize, class: &str) {
    for i in 0..n {
        restore_of(env, i, class).await;
    }
}

pub async fn get_dd(env: &Env, name: &str) -> DataDownload {
    Api::<DataDownload>::namespaced(env.client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

pub async fn wait_phase(
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

/// Waits until `name` ends and asserts it Completed.
pub async fn wait_completed(env: &Env, name: &str, seconds: u64) -> DataDownload {
    let dd = wait_phase(env, name, DONE, seconds).await;
    assert_eq!(
        dd.phase(),
        DataDownloadPhase::Completed,
        "{name}: {:?}",
        dd.status
    );
    dd
}

pub async fn set_cancel(env: &Env, name: &str) {
    set_cancel_of::<DataDownload>(env, name).await
}

/// Sets `spec.cancel` of the data mover object `name` (a DataDownload or DataUpload), as
/// Velero or a user does.
pub async fn set_cancel_of<K>(env: &Env, name: &str)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(env.client.clone(), NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap();
}

/// The restored PV behind target PVC `pvc-i`: its directory holds exactly the backed-up
/// files, and it has its original reclaim policy (Delete) and no mark of ferry's.
pub async fn assert_restored(env: &Env, i: usize) -> PersistentVolume {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
    let pvc = pvcs.get(&format!("pvc-{i}")).await.unwrap();
    assert_eq!(pvc.status.unwrap().phase.as_deref(), Some("Bound"));
    assert!(
        !pvc.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ferry_controller::expose::BIND_REQUESTED_ANNOTATION),
        "pvc-{i} still carries the rebind's bind request"
    );
    let pv_name = pvc.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(env.client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let spec = pv.spec.as_ref().unwrap();
    let path = env.cluster.nodes().volume_path(&pv_name);
    for (name, data) in volume_files(i) {
        let got = std::fs::read(path.join(&name))
            .unwrap_or_else(|e| panic!("{name} in {}: {e}", path.display()));
        assert!(got == data, "pvc-{i}/{name} differs");
        assert_eq!(
            page_cache::unwritten_pages(&path.join(&name)),
            0,
            "pvc-{i}/{name}: the data mover reported the data back before it was on disk"
        );
    }
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete"),
        "reclaim policy restored"
    );
    assert!(
        !has_ferry_marks(&pv),
        "PV {pv_name} still carries ferry's marks"
    );
    pv
}

/// Target PVC `name` is still unbound (a failed or canceled restore gave it nothing).
pub async fn assert_target_unbound(env: &Env, name: &str) {
    let pvc = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), APP)
        .get(name)
        .await
        .unwrap();
    assert!(
        pvc.spec.as_ref().unwrap().volume_name.is_none(),
        "target {name} was bound: {:?}",
        pvc.spec
    );
}

fn has_ferry_marks(pv: &PersistentVolume) -> bool {
    pv.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(DATA_DOWNLOAD_LABEL))
        || pv
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.keys().any(|k| k.starts_with("ferry.io/")))
}

pub fn pv_node(pv: &PersistentVolume) -> String {
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

/// A PV as a leftover report names it: phase, policy, claim, finalizers, deletion.
fn describe_pv(pv: &PersistentVolume) -> String {
    let spec = pv.spec.as_ref();
    let claim = spec
        .and_then(|s| s.claim_ref.as_ref())
        .map(|c| {
            format!(
                "{}/{}",
                c.namespace.as_deref().unwrap_or_default(),
                c.name.as_deref().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    format!(
        "{} ({}, {}, claim {claim}, finalizers {:?}{})",
        pv.metadata.name.as_deref().unwrap_or_default(),
        pv.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("no phase"),
        spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("no policy"),
        pv.metadata.finalizers.as_deref().unwrap_or_default(),
        if pv.metadata.deletion_timestamp.is_some() {
            ", deleting"
        } else {
            ""
        },
    )
}

/// Nothing of the restores is left: no pod or PVC in ferry's namespace, and every PV is Bound
/// to a PVC of the application namespace, with the Delete policy and no mark of ferry's (no
/// Released, Available or retained restore PV).
pub async fn assert_no_leftovers(env: &Env) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let p = names(pods.list(&ListParams::default()).await.unwrap().items);
        let c = names(pvcs.list(&ListParams::default()).await.unwrap().items);
        let stray: Vec<String> = pvs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|pv| !is_settled_target_pv(pv))
            .map(|pv| describe_pv(&pv))
            .collect();
        if p.is_empty() && c.is_empty() && stray.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restore objects left behind: pods {p:?}, PVCs {c:?}, stray PVs {stray:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names<K: kube::Resource>(items: Vec<K>) -> Vec<String> {
    items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

fn is_settled_target_pv(pv: &PersistentVolume) -> bool {
    let spec = pv.spec.as_ref();
    let claim_ns = spec
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|c| c.namespace.as_deref());
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    claim_ns == Some(APP)
        && phase == Some("Bound")
        && spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete")
        && !has_ferry_marks(pv)
}

/// No Warning event on anything of the restores: the objects in ferry's and the application's
/// namespaces (restore PVCs and pods, target PVCs, workloads) and the PVs now bound in the
/// application's namespace. Operators who alert on Warnings must not be paged for a restore
/// that worked.
pub async fn assert_no_warning_events(env: &Env) {
    // Event recorders write asynchronously: give the last ones a moment to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pvs: BTreeSet<String> = Api::<PersistentVolume>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(is_settled_target_pv)
        .filter_map(|pv| pv.metadata.name)
        .collect();
    let warnings: Vec<String> = Api::<Event>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        // A target PVC as Velero makes it carries a selector, which a CSI provisioner refuses
        // once the workload's scheduling hands it the claim: Velero's doing, before ferry's.
        .filter(|e| {
            !(e.involved_object.namespace.as_deref() == Some(APP)
                && e.reason.as_deref() == Some("ProvisioningFailed")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.ends_with("claim Selector is not supported")))
        })
        .filter(|e| {
            let o = &e.involved_object;
            matches!(o.namespace.as_deref(), Some(NS) | Some(APP))
                || (o.kind.as_deref() == Some("PersistentVolume")
                    && o.name.as_ref().is_some_and(|n| pvs.contains(n)))
        })
        .map(|e| {
            let o = &e.involved_object;
            format!(
                "{} {}/{}: {}: {}",
                o.kind.clone().unwrap_or_default(),
                o.namespace.clone().unwrap_or_default(),
                o.name.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        warnings.is_empty(),
        "Warning events after successful restores:\n{}",
        warnings.join("\n")
    );
}

/// A workload pod mounting `pvc` that succeeds if the restored `file-0.bin` is there.
pub async fn workload_pod(env: &Env, name: &str, pvc: &str) {
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

/// Creates workload pod `name` on `pvc`, waits for the scheduler to pick its node, then makes
/// that node NotReady: a restore pinned there cannot be scheduled. Returns the node.
pub async fn workload_on_a_node_gone_not_ready(env: &Env, name: &str, pvc: &str) -> String {
    workload_pod(env, name, pvc).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
    let node = wait_for(&format!("the workload's node on {pvc}"), 30, || async {
        let claim = pvcs.get(pvc).await.unwrap();
        claim
            .metadata
            .annotations?
            .get(SELECTED_NODE_ANNOTATION)
            .cloned()
    })
    .await;
    env.cluster
        .nodes()
        .set_node_ready(&node, false)
        .await
        .unwrap();
    node
}

pub async fn wait_pod_succeeded(env: &Env, name: &str) -> Pod {
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

/// Every restore pod ever seen in ferry's namespace, by name, with all the uids it had: a
/// name with two uids is a restore pod created twice.
pub struct PodHistory {
    uids: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodHistory {
    pub fn start(env: &Env) -> PodHistory {
        let uids: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
        let api: Api<Pod> = Api::namespaced(env.client.clone(), NS);
        let seen = uids.clone();
        let task = tokio::spawn(async move {
            let mut events =
                kube::runtime::watcher(api, kube::runtime::watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                let pod = match event {
                    Ok(kube::runtime::watcher::Event::Apply(p))
                    | Ok(kube::runtime::watcher::Event::InitApply(p))
                    | Ok(kube::runtime::watcher::Event::Delete(p)) => p,
                    _ => continue,
                };
                let (Some(name), Some(uid)) = (pod.metadata.name, pod.metadata.uid) else {
                    continue;
                };
                seen.lock().unwrap().entry(name).or_default().insert(uid);
            }
        });
        PodHistory { uids, task }
    }

    /// Restore pods seen so far.
    pub fn names(&self) -> BTreeSet<String> {
        self.uids.lock().unwrap().keys().cloned().collect()
    }

    /// No restore pod was ever created twice.
    pub fn assert_each_created_once(&self) {
        let uids = self.uids.lock().unwrap();
        for (name, set) in uids.iter() {
            assert_eq!(
                set.len(),
                1,
                "restore pod {name} was created {} times",
                set.len()
            );
        }
    }
}

impl Drop for PodHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}
