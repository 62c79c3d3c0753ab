//! kubesim as a CSI snapshot driver (`hostpath.kubesim.io`), on kubesim (with its stand-in
//! snapshot-controller) and on the real control plane (with the real snapshot-controller):
//! a VolumeSnapshot is a point-in-time copy, a claim provisioned from it starts with that
//! copy, Velero's take-over (retain the content, a pre-provisioned content and snapshot in
//! another namespace) works, deleting the snapshots leaves nothing behind, and a snapshot
//! that cannot be taken says why.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use serde_json::json;

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind),
        plural,
    )
}

fn snapshots(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &resource("VolumeSnapshot", "volumesnapshots"),
    )
}

fn contents(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &resource("VolumeSnapshotContent", "volumesnapshotcontents"),
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

async fn claim(client: &kube::Client, ns: &str, name: &str, data_source: Option<&str>) {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"], "storageClassName": "immediate",
        "resources": {"requests": {"storage": "1Gi"}},
    });
    if let Some(source) = data_source {
        spec["dataSource"] = json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": source});
    }
    let pvc: PersistentVolumeClaim =
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
            .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pvc)
        .await
        .unwrap();
}

/// The data directory of claim `ns/name` once it is bound.
async fn bound_volume(client: &kube::Client, data_dir: &Path, ns: &str, name: &str) -> PathBuf {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pv = wait_for(&format!("claim {name} bound"), 40, || {
        let claims = claims.clone();
        async move {
            let c = claims.get(name).await.ok()?;
            (c.status?.phase.as_deref() == Some("Bound")).then_some(())?;
            c.spec?.volume_name
        }
    })
    .await;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv)
        .await
        .unwrap();
    let handle = pv.spec.unwrap().csi.unwrap().volume_handle;
    data_dir.join("volumes").join(handle)
}

async fn ready_snapshot(client: &kube::Client, ns: &str, name: &str) -> serde_json::Value {
    let api = snapshots(client, ns);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let s = api.get_opt(name).await.unwrap();
        let status = s.as_ref().and_then(|s| s.data.get("status").cloned());
        if let Some(status) = status.filter(|st| st["readyToUse"] == json!(true)) {
            return status;
        }
        if tokio::time::Instant::now() > deadline {
            let contents = contents(client).list(&ListParams::default()).await.unwrap();
            panic!(
                "snapshot {ns}/{name} not ready: {s:#?}\ncontents: {:#?}",
                contents.items
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn snapshot_error(client: &kube::Client, ns: &str, name: &str) -> String {
    let api = snapshots(client, ns);
    wait_for(&format!("snapshot {name} error"), 40, || {
        let api = api.clone();
        async move {
            let s = api.get(name).await.ok()?;
            s.data["status"]["error"]["message"]
                .as_str()
                .map(String::from)
        }
    })
    .await
}

fn write_tree(dir: &Path, content: &[u8]) {
    std::fs::create_dir_all(dir.join("sub/empty")).unwrap();
    std::fs::write(dir.join("sub/file"), content).unwrap();
    let _ = std::fs::remove_file(dir.join("link"));
    std::fs::hard_link(dir.join("sub/file"), dir.join("link")).unwrap();
}

async fn gone(api: &Api<DynamicObject>, what: &str) {
    wait_for(what, 40, || {
        let api = api.clone();
        async move {
            api.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
}

on_both_clusters! {
    async fn kubesim_is_a_csi_snapshot_driver(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("sim");
        let cluster = testenv::TestCluster::start(backend, testenv::ClusterConfig {
            nodes: 2, zones: 0, data_dir: data_dir.clone(), image_binaries: Default::default(),
        }).await.unwrap();
        let client = cluster.client();
        for ns in ["app", "mover"] {
            let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &obj).await.unwrap();
        }
        let classes: Api<DynamicObject> = Api::all_with(client.clone(), &resource("VolumeSnapshotClass", "volumesnapshotclasses"));
        create(&classes, json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": "kubesim", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
            "driver": "hostpath.kubesim.io", "deletionPolicy": "Delete",
        })).await;

        claim(&client, "app", "data", None).await;
        let volume = bound_volume(&client, &data_dir, "app", "data").await;
        write_tree(&volume, b"before");

        // A snapshot of the claim (default class), then the volume changes.
        let app_snapshots = snapshots(&client, "app");
        create(&app_snapshots, json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "snap", "namespace": "app"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}},
        })).await;
        let status = ready_snapshot(&client, "app", "snap").await;
        assert_eq!(status["restoreSize"], json!("1Gi"));
        let content_name = status["boundVolumeSnapshotContentName"].as_str().unwrap().to_string();
        std::fs::write(volume.join("sub/file"), b"after").unwrap();

        // A claim from the snapshot has the volume as it was.
        claim(&client, "app", "copy", Some("snap")).await;
        let copy = bound_volume(&client, &data_dir, "app", "copy").await;
        assert_eq!(std::fs::read(copy.join("sub/file")).unwrap(), b"before");
        assert_eq!(std::fs::metadata(copy.join("link")).unwrap().ino(), std::fs::metadata(copy.join("sub/file")).unwrap().ino());
        assert!(copy.join("sub/empty").is_dir());

        // Velero's take-over: a pre-provisioned content and snapshot in another namespace
        // for the same snapshot handle, the original content retained, then the original
        // snapshot and content deleted.
        let content = contents(&client).get(&content_name).await.unwrap();
        let handle = content.data["status"]["snapshotHandle"].as_str().unwrap().to_string();
        let mover_snapshots = snapshots(&client, "mover");
        create(&mover_snapshots, json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "backup", "namespace": "mover"},
            "spec": {"source": {"volumeSnapshotContentName": "backup-content"}, "volumeSnapshotClassName": "kubesim"},
        })).await;
        let backup_vs = mover_snapshots.get("backup").await.unwrap();
        create(&contents(&client), json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": "backup-content"},
            "spec": {
                "volumeSnapshotRef": {"name": "backup", "namespace": "mover", "uid": backup_vs.metadata.uid},
                "source": {"snapshotHandle": handle}, "deletionPolicy": "Delete",
                "driver": "hostpath.kubesim.io", "volumeSnapshotClassName": "kubesim",
            },
        })).await;
        contents(&client).patch(&content_name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"deletionPolicy": "Retain"}}))).await.unwrap();
        app_snapshots.delete("snap", &DeleteParams::default()).await.unwrap();
        gone(&app_snapshots, "the original snapshot deleted").await;
        contents(&client).delete(&content_name, &DeleteParams::default()).await.unwrap();
        wait_for("the original content deleted", 40, || {
            let api = contents(&client);
            let name = content_name.clone();
            async move { api.get_opt(&name).await.ok()?.is_none().then_some(()) }
        }).await;
        let status = ready_snapshot(&client, "mover", "backup").await;
        assert_eq!(status["boundVolumeSnapshotContentName"], json!("backup-content"));
        claim(&client, "mover", "backup", Some("backup")).await;
        let exposed = bound_volume(&client, &data_dir, "mover", "backup").await;
        assert_eq!(std::fs::read(exposed.join("sub/file")).unwrap(), b"before");

        // Deleting the last snapshot deletes its content and the stored copy.
        mover_snapshots.delete("backup", &DeleteParams::default()).await.unwrap();
        gone(&mover_snapshots, "the backup snapshot deleted").await;
        gone(&contents(&client), "every content deleted").await;
        let stored: Vec<_> = std::fs::read_dir(data_dir.join("snapshots")).unwrap().collect();
        assert!(stored.is_empty(), "snapshot data left behind: {stored:?}");

        // Snapshots deleted as soon as they are made (before, while or after their content
        // is made, as a failed backup deletes its snapshot) leave no content behind.
        // Each is deleted while later ones are made, so the controller meets them at every
        // step of their binding.
        let names: Vec<String> = (0..24).map(|i| format!("short-lived-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            create(&app_snapshots, json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": {"name": name, "namespace": "app"},
                "spec": {"source": {"persistentVolumeClaimName": "data"}},
            })).await;
            if i >= 3 {
                app_snapshots.delete(&names[i - 3], &DeleteParams::default()).await.unwrap();
            }
        }
        for name in &names[names.len() - 3..] {
            app_snapshots.delete(name, &DeleteParams::default()).await.unwrap();
        }
        gone(&app_snapshots, "the short-lived snapshots deleted").await;
        gone(&contents(&client), "the short-lived snapshots' contents deleted").await;
        let stored: Vec<_> = std::fs::read_dir(data_dir.join("snapshots")).unwrap().collect();
        assert!(stored.is_empty(), "snapshot data left behind: {stored:?}");

        // Snapshots that cannot be taken say why.
        create(&app_snapshots, json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "no-class", "namespace": "app"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "missing"},
        })).await;
        let message = snapshot_error(&client, "app", "no-class").await;
        assert!(message.contains("\\\"missing\\\" not found") || message.contains("\"missing\" not found"), "{message}");
        create(&app_snapshots, json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "no-claim", "namespace": "app"},
            "spec": {"source": {"persistentVolumeClaimName": "nothing"}},
        })).await;
        let message = snapshot_error(&client, "app", "no-claim").await;
        assert!(message.contains("nothing"), "{message}");
        cluster.stop().await;
    }
}
