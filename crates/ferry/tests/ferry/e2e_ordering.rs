//! Velero's order: its PVC restore item action creates the DataDownload before the restore
//! creates the target PVC. The DataDownload waits for its target, saying so in its status,
//! bounded by the prepare timeout (not spec.operationTimeout, and not failing at once).

use crate::common;

use std::time::Duration;

use common::*;
use ferry_controller::crds::DataDownloadPhase;
use ferry_controller::start_controller;
use serde_json::json;

on_both_clusters! {
    async fn e2e_data_download_created_before_its_target_pvc_waits_and_completes(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        let snap = backup(&env, 0).await;
        data_download(&env, "dd-0", "pvc-0", &snap, "ferry").await;
        let ctl = controller(&env).await;
        let dd = wait_for("the wait for the target PVC in the status", 30, || async {
            let dd = get_dd(&env, "dd-0").await;
            let message = dd.status.as_ref()?.message.clone()?;
            message
                .contains("waiting for target PVC app/pvc-0 to be created")
                .then_some(dd)
        })
        .await;
        assert_eq!(dd.phase(), DataDownloadPhase::Accepted, "{:?}", dd.status);
        assert_eq!(env.movers.starts_of("dd-0"), 0);

        // Velero's restore creates the target PVC afterwards.
        target_pvc(&env, "pvc-0", "standard", "Filesystem").await;
        let dd = wait_completed(&env, "dd-0", 60).await;
        assert_eq!(dd.status.unwrap().message, None, "the wait message is cleared");
        assert_restored(&env, 0).await;
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_target_pvc_never_created_fails_after_the_prepare_timeout(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        let snap = backup(&env, 0).await;
        // A short operationTimeout: it does not bound this wait, the prepare timeout does.
        data_download_timed(&env, "dd-0", "pvc-0", &snap, "ferry", "1s").await;
        let mut options = options(env.controller_client.clone());
        options.prepare_timeout = Duration::from_secs(3);
        // Timeouts are noticed on the periodic resync (nothing changes meanwhile).
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();
        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Failed, "{:?}", dd.status);
        let status = dd.status.unwrap();
        let message = status.message.unwrap();
        assert!(
            message.contains("timed out after 3s waiting for target PVC app/pvc-0 to be created")
                && message.contains("--prepare-timeout"),
            "{message}"
        );
        assert!(status.completion_timestamp.is_some());
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
