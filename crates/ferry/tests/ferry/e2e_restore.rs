//! End-to-end restores on kubesim: real data backed up with ferry's engine, target PVCs and
//! DataDownloads created as Velero creates them, ferry's controller running in this process,
//! and restore pods running the ferry binary under test (kubesim's image → binary map).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ferry_controller::ControllerOptions;
use ferry_controller::crds::DataDownloadPhase;
use ferry_controller::start_controller;
use ferry_repo::backup::{BackupOptions, BackupSource};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

on_both_clusters! {
    async fn e2e_ignore_delay_binding_spreads_eight_restores_two_per_node(backend: Backend) {
        let env = env(backend, 4,
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
        assert_no_warning_events(&env).await;
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
}

on_both_clusters! {
    async fn e2e_default_mode_waits_for_the_workload_and_restores_on_its_node(backend: Backend) {
        let env = env(backend, 4, 0, json!({})).await;
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
}

on_both_clusters! {
    /// Rebind hands the PV over without the PV controller ever seeing two claims on it: no
    /// ClaimMisbound or ClaimLost ("Data on the volume is lost!") on the restore PVC, no
    /// Warning at all, for restores that waited for their workload.
    async fn e2e_successful_restores_leave_no_warning_events(backend: Backend) {
        let env = env(backend, 2, 0, json!({})).await;
        restores(&env, 3, "standard").await;
        let ctl = controller(&env).await;
        for i in 0..3 {
            workload_pod(&env, &format!("app-{i}"), &format!("pvc-{i}")).await;
        }
        for i in 0..3 {
            wait_completed(&env, &format!("dd-{i}"), 90).await;
            wait_pod_succeeded(&env, &format!("app-{i}")).await;
            assert_restored(&env, i).await;
        }
        assert_no_leftovers(&env).await;
        assert_no_warning_events(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_load_affinity_and_allowed_topologies_limit_the_nodes(backend: Backend) {
        let env = env(backend, 4,
            2,
            json!({"restorePVC": {"ignoreDelayBinding": true},
                   "loadConcurrency": {"globalConfig": 4},
                   "loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1", "node-2"]}]}}]}),
        )
        .await;
        // A class limited to zone-2 (node-2, node-4): with the loadAffinity only node-2 remains.
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "zone2"},
            "provisioner": "hostpath.kubesim.io",
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
}

on_both_clusters! {
    async fn e2e_bad_requests_fail_cleanly_and_other_data_movers_are_untouched(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
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
}

on_both_clusters! {
    async fn e2e_cancel_removes_everything(backend: Backend) {
        let env = env(backend, 2, 0, json!({})).await;
        restores(&env, 1, "standard").await;
        let ctl = controller(&env).await;
        // Waiting for a consumer; cancel it there.
        wait_phase(&env, "dd-0", &[DataDownloadPhase::Accepted], 30).await;
        set_cancel(&env, "dd-0").await;
        let dd = wait_phase(&env, "dd-0", DONE, 30).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Canceled);
        assert_target_unbound(&env, "pvc-0").await;
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_missing_configmap_is_a_startup_error(backend: Backend) {
        let env = env(backend, 1, 0, json!({})).await;
        let options = ControllerOptions::new(env.controller_client.clone(), NS, "no-such-config");
        let err = start_controller(options).await.err().expect("must fail");
        let text = err.to_string();
        assert!(text.contains("velero/no-such-config not found"), "{text}");
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_load_concurrency_one_never_runs_two_restores_on_a_node(backend: Backend) {
        let env = env(backend, 2,
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
}

on_both_clusters! {
    async fn e2e_block_volume_is_restored_onto_the_device(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
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
        let device = std::fs::read(env.cluster.nodes().volume_path(pv.metadata.name.as_ref().unwrap())).unwrap();
        assert!(device.len() >= image.len());
        assert!(
            device[..image.len()] == image[..],
            "device content differs from the backed-up image"
        );
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
