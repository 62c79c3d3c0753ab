//! `ferry data-mover backup` in a pod (as the `ferry-data-mover` service account on the real
//! control plane), on both clusters: it backs up the mounted volume into the location's
//! repository for the source namespace, with the volume's entries at the snapshot's root,
//! Velero-style tags and progress in the DataUpload; a second backup of the same volume has
//! the first as its parent; restic itself checks the repository and restores the snapshot
//! byte for byte, with modes, owners, times, symlinks, hard links, empty directories and a
//! sparse file's content.

use crate::common;

use std::path::PathBuf;

use common::backups::restic;
use common::trees::{describe, fill};
use common::*;
use ferry_controller::crds::DataUpload;
use ferry_controller::data_mover_exit::parse_termination_message;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use serde_json::json;

async fn source_volume(env: &Env, name: &str) -> PathBuf {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "immediate",
                 "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
    claims.create(&PostParams::default(), &pvc).await.unwrap();
    let pv = wait_for("source claim bound", 40, || {
        let claims = claims.clone();
        async move {
            let c = claims.get(name).await.ok()?;
            (c.status?.phase.as_deref() == Some("Bound")).then_some(())?;
            c.spec?.volume_name
        }
    })
    .await;
    let pv = Api::<PersistentVolume>::all(env.client.clone())
        .get(&pv)
        .await
        .unwrap();
    env.dir
        .path()
        .join("sim/volumes")
        .join(pv.spec.unwrap().csi.unwrap().volume_handle)
}

async fn data_upload(env: &Env, name: &str, pvc: &str) {
    let du: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v2alpha1", "kind": "DataUpload",
        "metadata": {"name": name, "namespace": NS, "labels": {"velero.io/backup-name": "nightly"}},
        "spec": {"snapshotType": "CSI", "sourcePVC": pvc, "sourceNamespace": APP,
                 "backupStorageLocation": "default", "operationTimeout": "10m0s",
                 "datamover": "someone-else",
                 "csiSnapshot": {"volumeSnapshot": "unused", "storageClass": "immediate"}},
    }))
    .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &kube::discovery::ApiResource::erase::<DataUpload>(&()),
    );
    api.create(&PostParams::default(), &du).await.unwrap();
}

/// Runs `ferry data-mover backup` for DataUpload `du` on claim `pvc`; returns the snapshot id.
async fn run_mover(env: &Env, du: &str, pvc: &str) -> String {
    data_upload(env, du, pvc).await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": du, "namespace": NS},
        "spec": {
            "restartPolicy": "Never", "serviceAccountName": "ferry-data-mover",
            "containers": [{"name": "mover", "image": "ferry/ferry:dev",
                "command": ["/ferry", "data-mover", "backup", "--data-upload", du,
                            "--namespace", NS, "--volume-path", "/data",
                            "--progress-interval", "0.2",
                            "--termination-message-path", "/dev/termination-log"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc}}],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let pod = wait_for(&format!("data mover {du} done"), 60, || {
        let pods = pods.clone();
        async move {
            let p = pods.get(du).await.ok()?;
            matches!(
                p.status.as_ref()?.phase.as_deref(),
                Some("Succeeded" | "Failed")
            )
            .then_some(p)
        }
    })
    .await;
    let message = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap_or_default();
    let result = parse_termination_message(&message)
        .unwrap_or_else(|| panic!("termination message {message:?}"));
    assert!(result.ok, "{:?}", result.error);
    let uploads: Api<DataUpload> = Api::namespaced(env.client.clone(), NS);
    let progress = uploads
        .get(du)
        .await
        .unwrap()
        .status
        .unwrap()
        .progress
        .unwrap();
    assert_eq!(progress.total_bytes, Some(result.total_bytes as i64));
    assert_eq!(progress.bytes_done, progress.total_bytes);
    result.snapshot_id
}

on_both_clusters! {
    async fn the_data_mover_backs_up_a_volume_restic_can_restore(backend: Backend) {
        let env = env(backend, 2, 0, json!({})).await;
        let volume = source_volume(&env, "source").await;
        fill(&volume);
        let first = run_mover(&env, "du-1", "source").await;
        let expected = describe(&volume);

        // Incremental: a second backup of the same volume has the first as its parent.
        std::fs::write(volume.join("data/file-0.bin"), b"changed").unwrap();
        let second = run_mover(&env, "du-2", "source").await;
        let snapshots: serde_json::Value = serde_json::from_str(&restic(&env, &["snapshots", "--json"])).unwrap();
        let second_json = snapshots.as_array().unwrap().iter().find(|s| s["id"] == json!(second)).unwrap();
        assert_eq!(second_json["parent"], json!(first));
        let tags: Vec<&str> = second_json["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        for tag in ["backup=nightly", "ns=app", "pvc=source", "volume-mode=Filesystem", "data-upload=du-2", "snapshot-uploader=ferry"] {
            assert!(tags.contains(&tag), "{tag} missing from {tags:?}");
        }

        // restic checks the repository and restores the first snapshot as the volume was.
        restic(&env, &["check", "--read-data"]);
        let target = env.dir.path().join("restic-restore");
        restic(&env, &["restore", &first, "--target", &target.to_string_lossy()]);
        // (restic 0.14 writes holes as zeros, so only the content of the sparse file is
        // compared.)
        assert_eq!(describe(&target), expected);
    }
}
