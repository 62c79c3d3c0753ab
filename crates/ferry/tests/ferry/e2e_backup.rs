//! Backups through ferry's controller (DataUploads from CSI snapshots), on kubesim and on the
//! real control plane (the controller as the `ferry-controller` service account, so the
//! rendered RBAC is judged by the real authorizer): volumes backed up under `loadConcurrency`,
//! spread over the nodes, nothing of the backup left behind (pods, PVCs, snapshots and their
//! contents), restic reads what the data mover wrote, and restoring the snapshots through
//! DataDownloads gives every byte, mode, owner, time and link back. Bad input ends Failed with
//! a message naming the cause.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::backups::*;
use common::trees::{describe, fill};
use common::*;
use ferry_controller::crds::{DataUpload, DataUploadPhase};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

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
        // The controller waits for the snapshot controller from its watches: it asks the API
        // server for a snapshot or content only when its watch cannot tell yet (its own write
        // not shown, the first passes). Polling them cost hundreds of reads per backup.
        let events = env.cluster.audit().events().unwrap();
        let controller_user =
            format!("system:serviceaccount:{NS}:{}", ferry_controller::install::CONTROLLER_NAME);
        let reads = events
            .iter()
            .filter(|e| e.user == controller_user && e.verb == "get")
            .filter(|e| matches!(e.resource.as_str(), "volumesnapshots" | "volumesnapshotcontents"))
            .count();
        eprintln!("{reads} reads of snapshots and contents for {VOLUMES} backups");
        assert!(reads <= 8 * VOLUMES, "{reads} reads of snapshots and contents for {VOLUMES} backups");
        // Nor does it read back the backup pod and PVC it has just deleted: completion needs
        // only their removal requested.
        let mut deleted = BTreeSet::new();
        let mut read_back = Vec::new();
        for e in &events {
            if e.user != controller_user
                || e.namespace.as_deref() != Some(NS)
                || !matches!(e.resource.as_str(), "pods" | "persistentvolumeclaims")
            {
                continue;
            }
            let object = (e.resource.clone(), e.name.clone());
            match e.verb.as_str() {
                "delete" => {
                    deleted.insert(object);
                }
                "get" if deleted.contains(&object) => read_back.push(object),
                _ => {}
            }
        }
        assert!(!deleted.is_empty());
        assert!(read_back.is_empty(), "read back after their deletion: {read_back:?}");

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

        // The DataUploads of a Velero backup hold their snapshot; deleted while no Velero is
        // deleting that backup (there is no Backup at all here), they go and the snapshots stay.
        let uploads: Api<ferry_controller::crds::DataUpload> = Api::namespaced(env.client.clone(), NS);
        for i in 0..VOLUMES {
            let du = uploads.get(&format!("du-{i}")).await.unwrap();
            assert!(du.metadata.finalizers.unwrap_or_default().contains(&ferry_controller::backup_deletion::SNAPSHOT_FINALIZER.to_string()));
            uploads.delete(&format!("du-{i}"), &DeleteParams::default()).await.unwrap();
        }
        wait_for("the deleted DataUploads gone", 60, || {
            let uploads = uploads.clone();
            async move { uploads.list(&Default::default()).await.ok()?.items.is_empty().then_some(()) }
        })
        .await;
        let listed: serde_json::Value =
            serde_json::from_str(&restic(&env, &["snapshots", "--json", "--tag", "backup=e2e-backup"])).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), VOLUMES, "the snapshots are kept");
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
        source_snapshot(&env, "snap-a", "src").await;
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

        // A VolumeSnapshotClass that does not exist: the snapshot never becomes ready.
        create(
            &snapshots(&env, APP),
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                   "metadata": {"name": "snap-c", "namespace": APP},
                   "spec": {"source": {"persistentVolumeClaimName": "src"}, "volumeSnapshotClassName": "no-such-class"}}),
        )
        .await;
        data_upload(&env, "no-class", "snap-c", "src", "default").await;
        let du = upload_ended(&env, "no-class", 60).await;
        assert_eq!(du.phase(), DataUploadPhase::Failed);
        assert!(message(&du).contains("VolumeSnapshot app/snap-c"), "{}", message(&du));

        // A VolumeSnapshot that does not exist.
        data_upload(&env, "no-snapshot", "never-made", "src", "default").await;
        let du = upload_ended(&env, "no-snapshot", 60).await;
        assert_eq!(du.phase(), DataUploadPhase::Failed);
        assert!(message(&du).contains("VolumeSnapshot app/never-made not found"), "{}", message(&du));

        // The repository's password is wrong: the data mover's error, and the taken-over
        // snapshot is gone with everything else.
        break_repository_password(&env).await;
        // A failed backup's snapshot, made for it alone, is deleted with it, as Velero's
        // exposer cleans up.
        for snapshot in ["snap-a", "snap-b", "snap-c"] {
            wait_for(&format!("VolumeSnapshot {snapshot} deleted"), 60, || async {
                snapshots(&env, APP).get_opt(snapshot).await.unwrap().is_none().then_some(())
            })
            .await;
        }
        source_snapshot(&env, "snap-d", "src").await;
        data_upload(&env, "wrong-password", "snap-d", "src", "default").await;
        let du = upload_ended(&env, "wrong-password", 120).await;
        assert_eq!(du.phase(), DataUploadPhase::Failed);
        assert!(message(&du).contains("data mover failed"), "{}", message(&du));
        assert!(message(&du).to_lowercase().contains("password"), "{}", message(&du));
        assert_no_backup_leftovers(&env).await;
        ctl.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_block_volume_backed_up_and_restored_byte_for_byte(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        snapshot_class(&env).await;
        let device = source_volume_of_mode(&env, "disk", "Block").await;
        // A disk image with data, a hole and data again.
        let mut image: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        image[1 << 20..2 << 20].fill(0);
        std::fs::write(&device, &image).unwrap();
        snapshot_and_upload(&env, "du-disk", "disk").await;
        let ctl = controller(&env).await;
        let du = upload_ended(&env, "du-disk", 120).await;
        assert_eq!(du.phase(), DataUploadPhase::Completed, "{}", message(&du));
        let status = du.status.unwrap();
        assert_eq!(status.path.as_deref(), Some("/dev/backup-volume"));
        assert_no_backup_leftovers(&env).await;

        let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
        claims.delete("disk", &DeleteParams::default()).await.unwrap();
        target_pvc(&env, "pvc-disk", "standard", "Block").await;
        data_download(&env, "dd-disk", "pvc-disk", &status.snapshot_id.unwrap(), "ferry").await;
        wait_completed(&env, "dd-disk", 120).await;
        let pv = claims.get("pvc-disk").await.unwrap().spec.unwrap().volume_name.unwrap();
        let restored = std::fs::read(env.cluster.nodes().volume_path(&pv)).unwrap();
        assert!(restored.len() >= image.len());
        assert!(restored[..image.len()] == image[..], "the restored device differs from the backed-up one");
        ctl.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_statefulset_of_eight_backed_up_namespace_deleted_and_restored_in_both_modes(backend: Backend) {
        const VOLUMES: usize = 8;
        const NODES: usize = 4;
        let env = env(backend, NODES, 0, json!({"loadConcurrency": {"globalConfig": 1}})).await;
        snapshot_class(&env).await;
        // The claims a StatefulSet `web` with a volumeClaimTemplate `data` makes.
        let claim = |i: usize| format!("data-web-{i}");
        let mut expected = BTreeMap::new();
        for i in 0..VOLUMES {
            let dir = source_volume(&env, &claim(i)).await;
            fill(&dir);
            for (name, data) in volume_files(i) {
                std::fs::write(dir.join(name), data).unwrap();
            }
            expected.insert(i, describe(&dir));
        }
        for i in 0..VOLUMES {
            snapshot_and_upload(&env, &format!("web-{i}"), &claim(i)).await;
        }
        let ctl = controller(&env).await;
        let mut nodes = BTreeSet::new();
        let mut snapshot_ids = BTreeMap::new();
        for i in 0..VOLUMES {
            let du = upload_ended(&env, &format!("web-{i}"), 300).await;
            assert_eq!(du.phase(), DataUploadPhase::Completed, "web-{i}: {}", message(&du));
            let status = du.status.unwrap();
            nodes.insert(status.node.unwrap());
            snapshot_ids.insert(i, status.snapshot_id.unwrap());
        }
        assert_eq!(nodes.len(), NODES, "the backups are spread over every node: {nodes:?}");
        assert_no_backup_leftovers(&env).await;

        // The disaster: the application's namespace goes, with its claims and their volumes.
        let namespaces: Api<Namespace> = Api::all(env.client.clone());
        namespaces.delete(APP, &DeleteParams::default()).await.unwrap();
        wait_for("namespace app gone", 180, || {
            let namespaces = namespaces.clone();
            async move { namespaces.get_opt(APP).await.unwrap().is_none().then_some(()) }
        })
        .await;
        namespaces
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": APP}})).unwrap())
            .await
            .unwrap();

        // Restored twice from the same snapshots: by default each restore waits for its
        // workload pod; with ignoreDelayBinding they start at once.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), APP);
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), APP);
        for (mode, ignore_delay_binding) in [("default", false), ("idb", true)] {
            set_config(
                &env.client,
                json!({"loadConcurrency": {"globalConfig": 1},
                       "restorePVC": {"ignoreDelayBinding": ignore_delay_binding}}),
            )
            .await;
            for (i, id) in &snapshot_ids {
                let pvc = format!("{mode}-{}", claim(*i));
                target_pvc(&env, &pvc, "standard", "Filesystem").await;
                data_download(&env, &format!("dd-{mode}-{i}"), &pvc, id, "ferry").await;
                if !ignore_delay_binding {
                    workload_pod(&env, &format!("web-{i}-{mode}"), &pvc).await;
                }
            }
            for i in 0..VOLUMES {
                wait_completed(&env, &format!("dd-{mode}-{i}"), 300).await;
                let pvc = claims.get(&format!("{mode}-{}", claim(i))).await.unwrap();
                let pv = pvc.spec.unwrap().volume_name.unwrap();
                let restored = describe(&env.cluster.nodes().volume_path(&pv));
                assert_eq!(restored, expected[&i], "{mode}: volume {i} restored as backed up");
            }
            for pod in pods.list(&ListParams::default()).await.unwrap().items {
                pods.delete(&pod.metadata.name.unwrap(), &DeleteParams::default()).await.unwrap();
            }
        }
        ctl.stop().await;
    }
}

/// Sets or removes a finalizer of the test's own on the snapshot object `name` of `api`: the
/// object cannot go while it holds it, as when its controller is slow to release its own.
/// Written with the version read as a precondition (the snapshot controller changes its own
/// finalizers meanwhile), again on a conflict.
async fn hold_snapshot(api: &Api<DynamicObject>, name: &str, hold: bool) {
    const HOLD: &str = "e2e.ferry.io/hold";
    loop {
        let object = api.get(name).await.unwrap();
        let mut finalizers: Vec<String> = object.metadata.finalizers.unwrap_or_default();
        finalizers.retain(|f| f != HOLD);
        if hold {
            finalizers.push(HOLD.to_string());
        }
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.metadata.resource_version}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("cannot change the finalizers of {name}: {e}"),
        }
    }
}

on_both_clusters! {
    async fn e2e_backup_completes_once_the_removal_of_its_objects_is_requested(backend: Backend) {
        let env = env(backend, 1, 0, json!({})).await;
        snapshot_class(&env).await;
        source_volume(&env, "src").await;
        env.movers.hold("du-held");
        snapshot_and_upload(&env, "du-held", "src").await;
        let ctl = controller(&env).await;
        env.movers.wait_started("du-held", 90).await;
        // The backup snapshot cannot go while this finalizer is on it (a snapshot controller
        // slow to remove its own, as at its rate limit): the backup must not wait for that.
        hold_snapshot(&snapshots(&env, NS), "du-held", true).await;
        env.movers.release("du-held");
        let du = upload_ended(&env, "du-held", 120).await;
        assert_eq!(du.phase(), DataUploadPhase::Completed, "{}", message(&du));
        assert!(
            !du.metadata.finalizers.unwrap_or_default().contains(&ferry_controller::reconciler::UPLOAD_FINALIZER.to_string()),
            "the cleanup finalizer is released with Completed"
        );
        let held = snapshots(&env, NS).get("du-held").await.unwrap();
        assert!(held.metadata.deletion_timestamp.is_some(), "the backup snapshot is being deleted when the backup completes");
        // Once its finalizer goes, everything of the backup goes without the controller.
        ctl.stop().await;
        hold_snapshot(&snapshots(&env, NS), "du-held", false).await;
        assert_no_backup_leftovers(&env).await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_backup_failed_while_its_source_snapshot_goes_still_removes_its_content(backend: Backend) {
        let env = env(backend, 1, 0, json!({})).await;
        snapshot_class(&env).await;
        source_volume(&env, "src").await;
        // The source snapshot stays terminating after the take-over deletes it, and the
        // data mover fails (a wrong password): the backup fails while the source content,
        // retained and deleted only once its snapshot is gone, is still to be deleted.
        source_snapshot(&env, "snap", "src").await;
        hold_snapshot(&snapshots(&env, APP), "snap", true).await;
        break_repository_password(&env).await;
        let ctl = controller(&env).await;
        data_upload(&env, "held-source", "snap", "src", "default").await;
        let du = upload_ended(&env, "held-source", 120).await;
        assert_eq!(du.phase(), DataUploadPhase::Failed);
        assert!(message(&du).contains("data mover failed"), "{}", message(&du));
        let finalizers = du.metadata.finalizers.clone().unwrap_or_default();
        assert!(finalizers.contains(&ferry_controller::reconciler::UPLOAD_FINALIZER.to_string()), "a cleanup step is left: {finalizers:?}");
        let source_content = du.metadata.annotations.clone().unwrap_or_default()
            [ferry_controller::reconciler::SOURCE_CONTENT_ANNOTATION]
            .clone();
        assert!(contents(&env).get_opt(&source_content).await.unwrap().is_some(), "the source content waits for its snapshot");

        hold_snapshot(&snapshots(&env, APP), "snap", false).await;
        let uploads: Api<DataUpload> = Api::namespaced(env.client.clone(), NS);
        wait_for("the cleanup finalizer released", 60, || {
            let uploads = uploads.clone();
            async move {
                let du = uploads.get("held-source").await.ok()?;
                (!du.metadata.finalizers.unwrap_or_default().contains(&ferry_controller::reconciler::UPLOAD_FINALIZER.to_string()))
                    .then_some(())
            }
        })
        .await;
        assert_no_backup_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_backup_waits_out_a_snapshot_error_that_passes(backend: Backend) {
        let env = env(backend, 1, 0, json!({})).await;
        snapshot_class(&env).await;
        let ctl = controller(&env).await;
        // A snapshot of a claim not made yet: the snapshot controller reports an error and
        // retries. The backup waits, showing it, and goes on once the claim is there.
        source_snapshot(&env, "early", "late").await;
        data_upload(&env, "early", "early", "late", "default").await;
        let uploads: Api<DataUpload> = Api::namespaced(env.client.clone(), NS);
        let waiting = wait_for("the snapshot's error shown while the backup waits", 30, || {
            let uploads = uploads.clone();
            async move {
                let du = uploads.get("early").await.ok()?;
                message(&du).contains("it reports").then_some(du)
            }
        })
        .await;
        assert_eq!(waiting.phase(), DataUploadPhase::Accepted, "{}", message(&waiting));
        source_volume(&env, "late").await;
        let du = upload_ended(&env, "early", 120).await;
        assert_eq!(du.phase(), DataUploadPhase::Completed, "{}", message(&du));
        assert_no_backup_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
