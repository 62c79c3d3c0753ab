//! Backups as Velero's CSI plugin starts them, for the backup tests: source claims, kubesim's
//! VolumeSnapshotClass, a VolumeSnapshot and a DataUpload for ferry per claim, waiting for a
//! DataUpload to end, and the check that nothing of a backup is left behind.

use std::path::PathBuf;
use std::time::Duration;

use ferry_controller::crds::DataUpload;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::Api;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::json;

use super::{APP, Env, NS, PASSWORD, wait_for};

pub fn snapshot_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind),
        plural,
    )
}

pub fn snapshots(env: &Env, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        env.client.clone(),
        ns,
        &snapshot_resource("VolumeSnapshot", "volumesnapshots"),
    )
}

pub fn contents(env: &Env) -> Api<DynamicObject> {
    Api::all_with(
        env.client.clone(),
        &snapshot_resource("VolumeSnapshotContent", "volumesnapshotcontents"),
    )
}

pub async fn create(api: &Api<DynamicObject>, object: serde_json::Value) {
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap();
}

/// A bound claim of class `immediate` in the application namespace; returns its volume's
/// directory.
pub async fn source_volume(env: &Env, name: &str) -> PathBuf {
    source_volume_of_mode(env, name, "Filesystem").await
}

/// A bound claim of class `immediate` and volume mode `mode`; returns its volume's directory
/// (Filesystem) or the file standing in for its device (Block).
pub async fn source_volume_of_mode(env: &Env, name: &str, mode: &str) -> PathBuf {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": APP},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "immediate",
                 "volumeMode": mode, "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
    claims.create(&PostParams::default(), &pvc).await.unwrap();
    let pv = wait_for("source claim bound", 60, || {
        let claims = claims.clone();
        async move {
            let c = claims.get(name).await.ok()?;
            (c.status?.phase.as_deref() == Some("Bound")).then_some(())?;
            c.spec?.volume_name
        }
    })
    .await;
    env.cluster.nodes().volume_path(&pv)
}

/// The VolumeSnapshotClass of kubesim's CSI driver.
pub async fn snapshot_class(env: &Env) {
    let classes: Api<DynamicObject> = Api::all_with(
        env.client.clone(),
        &snapshot_resource("VolumeSnapshotClass", "volumesnapshotclasses"),
    );
    create(
        &classes,
        json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": "kubesim"},
            "driver": "hostpath.kubesim.io", "deletionPolicy": "Delete",
        }),
    )
    .await;
}

/// A VolumeSnapshot of `pvc` and a DataUpload for ferry of it, as Velero's CSI plugin makes
/// them.
pub async fn snapshot_and_upload(env: &Env, name: &str, pvc: &str) {
    source_snapshot(env, name, pvc).await;
    data_upload(env, name, name, pvc, "default").await;
}

/// A VolumeSnapshot `name` of `pvc` in the application's namespace (class `kubesim`).
pub async fn source_snapshot(env: &Env, name: &str, pvc: &str) {
    create(
        &snapshots(env, APP),
        json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": APP},
            "spec": {"source": {"persistentVolumeClaimName": pvc},
                     "volumeSnapshotClassName": "kubesim"},
        }),
    )
    .await;
}

/// Sets a wrong repository password in the credentials data movers get: each then fails.
pub async fn break_repository_password(env: &Env) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
    secrets
        .patch(
            "velero-repo-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"repository-password": "not-the-password"}})),
        )
        .await
        .unwrap();
}

pub async fn data_upload(env: &Env, name: &str, snapshot: &str, pvc: &str, location: &str) {
    let uploads: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &ApiResource::erase::<DataUpload>(&()),
    );
    create(
        &uploads,
        json!({
            "apiVersion": "velero.io/v2alpha1", "kind": "DataUpload",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"velero.io/backup-name": "e2e-backup"}},
            "spec": {"snapshotType": "CSI", "sourcePVC": pvc, "sourceNamespace": APP,
                     "backupStorageLocation": location, "operationTimeout": "10m0s",
                     "datamover": "ferry",
                     "csiSnapshot": {"volumeSnapshot": snapshot, "storageClass": "immediate",
                                     "snapshotClass": "kubesim", "driver": "hostpath.kubesim.io"}},
        }),
    )
    .await;
}

/// Waits until DataUpload `name` has ended; returns it.
pub async fn upload_ended(env: &Env, name: &str, seconds: u64) -> DataUpload {
    let uploads: Api<DataUpload> = Api::namespaced(env.client.clone(), NS);
    wait_for(&format!("DataUpload {name} ended"), seconds, || {
        let uploads = uploads.clone();
        async move {
            let du = uploads.get(name).await.ok()?;
            du.phase().is_terminal().then_some(du)
        }
    })
    .await
}

pub fn message(du: &DataUpload) -> String {
    du.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

/// Nothing of a backup is left: no pod, PVC or VolumeSnapshot in ferry's namespace, no
/// VolumeSnapshot in the application namespace, no VolumeSnapshotContent, no PV but the
/// application's.
pub async fn assert_no_backup_leftovers(env: &Env) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let names = |items: Vec<DynamicObject>| -> Vec<String> {
            items
                .into_iter()
                .map(|o| o.metadata.name.unwrap_or_default())
                .collect()
        };
        let left = (
            pods.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| p.metadata.name.unwrap_or_default())
                .collect::<Vec<_>>(),
            pvcs.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| p.metadata.name.unwrap_or_default())
                .collect::<Vec<_>>(),
            names(
                snapshots(env, NS)
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items,
            ),
            names(
                snapshots(env, APP)
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items,
            ),
            names(
                contents(env)
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items,
            ),
            pvs.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|pv| {
                    pv.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .and_then(|c| c.namespace.as_deref())
                        != Some(APP)
                })
                .map(|p| p.metadata.name.unwrap_or_default())
                .collect::<Vec<_>>(),
        );
        if left.0.is_empty()
            && left.1.is_empty()
            && left.2.is_empty()
            && left.3.is_empty()
            && left.4.is_empty()
            && left.5.is_empty()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backup objects left behind: pods {:?}, PVCs {:?}, snapshots {:?} and {:?}, contents {:?}, PVs {:?}",
            left.0,
            left.1,
            left.2,
            left.3,
            left.4,
            left.5
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn restic(env: &Env, args: &[&str]) -> String {
    let out = std::process::Command::new("restic")
        .arg("-r")
        .arg(&env.repo_dir)
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", env.dir.path().join("restic-cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
