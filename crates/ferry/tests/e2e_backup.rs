//! Backups through ferry's controller (DataUploads from CSI snapshots), on kubesim and on the
//! real control plane (the controller as the `ferry-controller` service account, so the
//! rendered RBAC is judged by the real authorizer): volumes backed up under `loadConcurrency`,
//! spread over the nodes, nothing of the backup left behind (pods, PVCs, snapshots and their
//! contents), restic reads what the data mover wrote, and restoring the snapshots through
//! DataDownloads gives every byte, mode, owner, time and link back. Bad input ends Failed with
//! a message naming the cause.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use common::trees::{describe, fill};
use common::*;
use ferry_controller::crds::{DataUpload, DataUploadPhase};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use serde_json::json;

fn snapshot_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind),
        plural,
    )
}

fn snapshots(env: &Env, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        env.client.clone(),
        ns,
        &snapshot_resource("VolumeSnapshot", "volumesnapshots"),
    )
}

fn contents(env: &Env) -> Api<DynamicObject> {
    Api::all_with(
        env.client.clone(),
        &snapshot_resource("VolumeSnapshotContent", "volumesnapshotcontents"),
    )
}

async fn create(api: &Api<DynamicObject>, object: serde_json::Value) {
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap();
}

/// A bound claim of class `immediate` in the application namespace; returns its volume's
/// directory.
async fn source_volume(env: &Env, name: &str) -> PathBuf {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": APP},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "immediate",
                 "resources": {"requests": {"storage": "1Gi"}}},
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
async fn snapshot_class(env: &Env) {
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
async fn snapshot_and_upload(env: &Env, name: &str, pvc: &str) {
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
    data_upload(env, name, name, pvc, "default").await;
}

async fn data_upload(env: &Env, name: &str, snapshot: &str, pvc: &str, location: &str) {
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
async fn upload_ended(env: &Env, name: &str, seconds: u64) -> DataUpload {
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

fn message(du: &DataUpload) -> String {
    du.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

/// Nothing of a backup is left: no pod, PVC or VolumeSnapshot in ferry's namespace, no
/// VolumeSnapshot in the application namespace, no VolumeSnapshotContent, no PV but the
/// application's.
async fn assert_no_backup_leftovers(env: &Env) {
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

fn restic(env: &Env, args: &[&str]) -> String {
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

on_both_clusters! {
    async fn e2e_backup_through_data_uploads_and_restore_every_byte(backend: Backend) {
        const VOLUMES: usize = 4;
        let env = env(
            backend,
            2,
            0,
            json!({"loadConcurrency": {"globalConfig": 1}, "restorePVC": {"ignoreDelayBinding": true}}),
        )
        .await;
        snapshot_class(&env).await;
        let mut expected = BTreeMap::new();
        for i in 0..VOLUMES {
            let dir = source_volume(&env, &format!("src-{i}")).await;
            fill(&dir);
            std::fs::write(dir.join("which"), format!("volume {i}")).unwrap();
            expected.insert(i, describe(&dir));
        }
        for i in 0..VOLUMES {
            snapshot_and_upload(&env, &format!("du-{i}"), &format!("src-{i}")).await;
        }
        let ctl = controller(&env).await;

        let mut nodes = BTreeSet::new();
        let mut snapshot_ids = BTreeMap::new();
        for i in 0..VOLUMES {
            let du = upload_ended(&env, &format!("du-{i}"), 180).await;
            assert_eq!(du.phase(), DataUploadPhase::Completed, "du-{i}: {}", message(&du));
            let status = du.status.unwrap();
            let progress = status.progress.unwrap();
            assert!(progress.total_bytes.unwrap() > 32 << 20, "{progress:?}");
            assert_eq!(progress.bytes_done, progress.total_bytes);
            assert_eq!(status.path.as_deref(), Some("/backup-volume"));
            assert!(status.completion_timestamp.is_some() && status.start_timestamp.is_some());
            nodes.insert(status.node.unwrap());
            snapshot_ids.insert(i, status.snapshot_id.unwrap());
        }
        assert_eq!(nodes.len(), 2, "the backups are spread over both nodes: {nodes:?}");
        assert_no_backup_leftovers(&env).await;

        // restic reads what the data mover wrote: the snapshots with Velero's tags.
        restic(&env, &["check", "--read-data"]);
        let listed: serde_json::Value =
            serde_json::from_str(&restic(&env, &["snapshots", "--json", "--tag", "backup=e2e-backup"])).unwrap();
        let ids: BTreeSet<String> = listed.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids, snapshot_ids.values().cloned().collect());

        // The volumes are lost; the backups bring them back through DataDownloads.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
        for i in 0..VOLUMES {
            claims.delete(&format!("src-{i}"), &DeleteParams::default()).await.unwrap();
        }
        for (i, id) in &snapshot_ids {
            target_pvc(&env, &format!("pvc-{i}"), "standard", "Filesystem").await;
            data_download(&env, &format!("dd-{i}"), &format!("pvc-{i}"), id, "ferry").await;
        }
        for i in 0..VOLUMES {
            wait_completed(&env, &format!("dd-{i}"), 180).await;
            let pvc = claims.get(&format!("pvc-{i}")).await.unwrap();
            let pv = pvc.spec.unwrap().volume_name.unwrap();
            let restored = describe(&env.cluster.nodes().volume_path(&pv));
            assert_eq!(restored, expected[&i], "volume {i} restored as backed up");
        }
        ctl.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_backups_of_bad_input_fail_naming_the_cause(backend: Backend) {
        let env = env(backend, 1, 0, json!({})).await;
        snapshot_class(&env).await;
        source_volume(&env, "src").await;
        let ctl = controller(&env).await;

        // A location that does not exist.
        create(
            &snapshots(&env, APP),
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                   "metadata": {"name": "snap-a", "namespace": APP},
                   "spec": {"source": {"persistentVolumeClaimName": "src"}, "volumeSnapshotClassName": "kubesim"}}),
        )
        .await;
        data_upload(&env, "no-location", "snap-a", "src", "nowhere").await;
        let du = upload_ended(&env, "no-location", 60).await;
        assert_eq!(du.phase(), DataUploadPhase::Failed);
        assert!(message(&du).contains("BackupStorageLocation velero/nowhere not found"), "{}", message(&du));

        // A snapshot of a claim that does not exist never becomes ready: its error is named.
        create(
            &snapshots(&env, APP),
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                   "metadata": {"name": "snap-b", "namespace": APP},
                   "spec": {"source": {"persistentVolumeClaimName": "missing"}, "volumeSnapshotClassName": "kubesim"}}),
        )
        .await;
        data_upload(&env, "bad-snapshot", "snap-b", "missing", "default").await;
        let du = upload_ended(&env, "bad-snapshot", 60).await;
        assert_eq!(du.phase(), DataUploadPhase::Failed);
        assert!(message(&du).contains("VolumeSnapshot app/snap-b"), "{}", message(&du));

        // A VolumeSnapshot that does not exist.
        data_upload(&env, "no-snapshot", "never-made", "src", "default").await;
        let du = upload_ended(&env, "no-snapshot", 60).await;
        assert_eq!(du.phase(), DataUploadPhase::Failed);
        assert!(message(&du).contains("VolumeSnapshot app/never-made not found"), "{}", message(&du));

        // The repository's password is wrong: the data mover's error, and the taken-over
        // snapshot is gone with everything else.
        let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
        secrets
            .patch(
                "velero-repo-credentials",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"repository-password": "not-the-password"}})),
            )
            .await
            .unwrap();
        snapshots(&env, APP).delete("snap-b", &DeleteParams::default()).await.unwrap();
        data_upload(&env, "wrong-password", "snap-a", "src", "default").await;
        let du = upload_ended(&env, "wrong-password", 120).await;
        assert_eq!(du.phase(), DataUploadPhase::Failed);
        assert!(message(&du).contains("data mover failed"), "{}", message(&du));
        assert!(message(&du).to_lowercase().contains("password"), "{}", message(&du));
        assert_no_backup_leftovers(&env).await;
        ctl.stop().await;
    }
}
