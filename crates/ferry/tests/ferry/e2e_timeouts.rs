//! Timeouts as Velero means them: spec.operationTimeout (Velero copies the backup's
//! csiSnapshotTimeout there) bounds waits for resources, here rebind's; never the data
//! movement, which only a cancel ends. Waiting for the workload is bounded by the prepare
//! timeout.

use crate::common;

use std::time::Duration;

use common::*;
use ferry_controller::crds::DataDownloadPhase;
use ferry_controller::start_controller;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

on_both_clusters! {
    async fn e2e_data_movement_longer_than_the_operation_timeout_completes(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        let snap = backup(&env, 0).await;
        target_pvc(&env, "pvc-0", "standard", "Filesystem").await;
        // Long enough for the rebind after the move: on the real control plane the PV
        // controller may bind the target only on its next resync (15 s).
        data_download_timed(&env, "dd-0", "pvc-0", &snap, "ferry", "25s").await;
        env.movers.hold("dd-0");
        let mut options = options(env.controller_client.clone());
        // Passes every second, so a time limit on the move would fire while it is held.
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();
        env.movers.wait_started("dd-0", 60).await;
        wait_phase(&env, "dd-0", &[DataDownloadPhase::InProgress], 30).await;
        // The move outlasts spec.operationTimeout (time must pass: there is no condition to
        // wait for).
        tokio::time::sleep(Duration::from_secs(27)).await;
        let dd = get_dd(&env, "dd-0").await;
        assert_eq!(dd.phase(), DataDownloadPhase::InProgress, "{:?}", dd.status);
        env.movers.release("dd-0");
        wait_completed(&env, "dd-0", 60).await;
        assert_restored(&env, 0).await;
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_waiting_for_the_workload_is_bounded_by_the_prepare_timeout(backend: Backend) {
        // Default mode, WaitForFirstConsumer, and no workload ever.
        let env = env(backend, 1, 0, json!({})).await;
        let snap = backup(&env, 0).await;
        target_pvc(&env, "pvc-0", "standard", "Filesystem").await;
        data_download_timed(&env, "dd-0", "pvc-0", &snap, "ferry", "1s").await;
        let mut options = options(env.controller_client.clone());
        options.prepare_timeout = Duration::from_secs(3);
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();
        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let message = dd.status.unwrap().message.unwrap();
        // Not the 1s operationTimeout: the prepare timeout.
        assert!(
            message.contains("timed out after 3s (the prepare timeout, --prepare-timeout)")
                && message.contains("to be consumed"),
            "{message}"
        );
        assert_target_unbound(&env, "pvc-0").await;
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    /// A rebind that cannot finish (here: the restore PVC cannot go away, held by a
    /// finalizer) fails after spec.operationTimeout, saying what it still waits for.
    async fn e2e_rebind_that_cannot_finish_times_out_with_a_diagnosis(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        let snap = backup(&env, 0).await;
        target_pvc(&env, "pvc-0", "standard", "Filesystem").await;
        data_download_timed(&env, "dd-0", "pvc-0", &snap, "ferry", "2s").await;
        env.movers.hold("dd-0");
        let mut options = options(env.controller_client.clone());
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();
        env.movers.wait_started("dd-0", 60).await;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
        let claim = claims.get("dd-0").await.unwrap();
        let mut finalizers = claim.metadata.finalizers.unwrap_or_default();
        finalizers.push("e2e.ferry.io/hold".into());
        let hold = json!({"metadata": {"finalizers": finalizers}});
        claims
            .patch("dd-0", &PatchParams::default(), &Patch::Merge(&hold))
            .await
            .unwrap();
        env.movers.release("dd-0");

        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let status = dd.status.unwrap();
        let message = status.message.unwrap();
        assert!(
            message.contains("rebind timed out after 2s (spec.operationTimeout)")
                && message.contains("PVC velero/dd-0 to be deleted"),
            "{message}"
        );
        assert!(status.completion_timestamp.is_some());
        // Let the claim go; the failed restore leaves nothing behind.
        let claim = claims.get("dd-0").await.unwrap();
        let kept: Vec<String> = claim
            .metadata
            .finalizers
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != "e2e.ferry.io/hold")
            .collect();
        let release = json!({"metadata": {"finalizers": kept}});
        claims
            .patch("dd-0", &PatchParams::default(), &Patch::Merge(&release))
            .await
            .unwrap();
        assert_target_unbound(&env, "pvc-0").await;
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
